"""The "not one digit" class: what segmentation cuts out of a number that is not one whole digit
(two touching digits taken as one, a digit with half its neighbour, half a digit), its training
examples, and adding it to a trained model.

Try: `digitrec add-not-a-digit runs/robust/model.safetensors --out runs/robust/numbers.safetensors`,
or `python -c "import numpy as np; from digitrec.training import notdigit as n; from digitrec.data import synthetic as s;
r = np.random.default_rng(0); d = np.stack([s.draw_digit(i % 10, r) for i in range(50)]);
print(n.segment_examples(d, np.arange(50) % 10, 20, seed=0)[0].shape)"`

A network trained on single digits reads two touching digits ("18") as one digit (an 8) with
full confidence, so reading confidence cannot choose between cutting such a group and keeping
it whole. With an extra class for these pieces (LeCun et al. 1998's "garbage" class), the
network says when a crop is not one digit, and `recognition.decoder.choose_readings` keeps the reading
whose pieces are digits. The examples are made the way the recogniser meets them: numbers of
training digits are rendered (synthetic.render_number), cut by segment_slots into every
candidate piece, and each piece is labelled by how much of each true digit's columns it covers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..constants import IMAGE_SIZE, NON_DIGIT, NOT_ONE_DIGIT
from ..data import synthetic as syn
from ..errors import DigitrecError
from ..image.decode import to_uint8
from ..image.segmentation import segment_slots
from .config import HEAD_NUMBERS, HEAD_REFIT_NEGATIVES, HEAD_SEED
from .heads import HeadReport, add_output_to_checkpoint, fit_output, last_linear
from .negative_examples import nondigit_examples

WHOLE = 0.9  # a piece holding this share of a digit's columns holds the whole digit ...
STRAY = 0.15  # ... and is that digit when it holds no more than this share of any other digit
PART = 0.6  # a piece with less than this share of every digit's columns is a fragment
TOUCHING_SHARE = 0.5  # share of the rendered gaps between digits that are touching
DIGITS_PER_NUMBER = (2, 5)  # numbers of 2 to 4 digits: short lines, many gaps per pixel


def label_piece(span: tuple[int, int], truth: list[tuple[int, int]]) -> int | None:
    """The class of a piece spanning columns [x0, x1) of a number whose digits span `truth`
    (left to right): the digit's index in `truth` when it is one whole digit, NOT_ONE_DIGIT for
    two digits or a fragment, None when it is neither clearly (left out of training)."""
    x0, x1 = span
    shares = [max(0, min(x1, b) - max(x0, a)) / max(1, b - a) for a, b in truth]
    whole = [i for i, s in enumerate(shares) if s >= WHOLE]
    if len(whole) == 1 and all(s <= STRAY for i, s in enumerate(shares) if i != whole[0]):
        return whole[0]
    if len(whole) >= 2 or max(shares) < PART or sum(s >= PART for s in shares) >= 2:
        return NOT_ONE_DIGIT
    return None


def segment_examples(
    images: np.ndarray,
    labels: np.ndarray,
    n_numbers: int,
    *,
    seed: int,
    touching: float = TOUCHING_SHARE,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (M, 28, 28), labels (M,)): every piece segment_slots offers for `n_numbers`
    rendered numbers of the given MNIST-format digits, labelled by `label_piece` (0-9 or
    NOT_ONE_DIGIT; unclear pieces left out). Deterministic for `seed`."""
    rng = np.random.default_rng(seed)
    out_images, out_labels = [], []
    for _ in tqdm(
        range(n_numbers), desc="cutting numbers into pieces", unit="number", disable=not progress, leave=False
    ):
        k = int(rng.integers(*DIGITS_PER_NUMBER))
        idx = rng.choice(len(images), size=k, replace=False)
        spacing = "touching" if rng.random() < touching else None
        image, boxes = syn.render_number(
            [images[i] for i in idx], rng, kind=str(rng.choice(["photo", "scan"])), spacing=spacing
        )
        truth = [(b[0], b[2]) for b in boxes]
        for slot in segment_slots(image):
            for crop in slot.crops:
                label = label_piece((crop.box[0], crop.box[2]), truth)
                if label is None:
                    continue
                out_images.append(to_uint8(crop.image))
                out_labels.append(NOT_ONE_DIGIT if label == NOT_ONE_DIGIT else int(labels[idx[label]]))
    if not out_images:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), np.zeros(0, np.int64)
    return np.stack(out_images), np.asarray(out_labels, np.int64)


# --------------------------------------------------------------------------------------------
# Adding the class to a trained model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotADigitFit:
    """What `add_class` did, as saved in the checkpoint's metadata ("not_a_digit")."""

    numbers: int  # numbers rendered and cut into pieces
    seed: int
    pieces: int  # pieces fitted on
    not_one_digit: int  # ... of which not one digit
    fitted_on: str  # the training digits fitted on besides the pieces, e.g. "54000 training digits"
    negatives: int  # pieces of negatives fitted on as "not a digit" (a model that has that output)
    caught: float  # share of the pieces that are not one digit that the class takes (on what it was fitted on)
    digits_taken_for_not: float  # share of the digits and one-digit pieces it takes for not one digit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def add_class(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    numbers: int = HEAD_NUMBERS,
    seed: int = HEAD_SEED,
    drawn: int = HEAD_REFIT_NEGATIVES,
    progress: bool = False,
) -> tuple[Any, NotADigitFit]:
    """`model` (ten digit outputs, a final nn.Linear) with an 11th output, "not one digit",
    fitted on its frozen features (a model trained with "not a digit" as its 12th output and no
    pieces has that 11th row already, untaught: it is fitted in place, beside the pieces of
    `drawn` negatives labelled "not a digit"): the training digits `images`/`labels` and the pieces of
    `numbers` numbers rendered from them (`segment_examples`). Only the new output's row of the
    last layer is fitted, so the ten digit logits stay exactly as trained: training with the
    pieces from the start costs clean accuracy (docs/decisions/not-a-digit-head.md).
    Returns (the new model, in eval mode, and what was done)."""
    _, head = last_linear(model)
    if head.out_features not in (NOT_ONE_DIGIT, NON_DIGIT + 1):
        raise DigitrecError(
            f"the model has {head.out_features} outputs, not the {NOT_ONE_DIGIT} digits alone; "
            'it has its "not one digit" class already'
        )
    pieces, piece_labels = segment_examples(images, labels, numbers, seed=seed, progress=progress)
    negatives = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    if head.out_features > NON_DIGIT:
        negatives = nondigit_examples(drawn, seed=seed, digits=images, progress=progress)
    x = np.concatenate([images, pieces, negatives])
    y = np.concatenate([np.asarray(labels, np.int64), piece_labels, np.full(len(negatives), NON_DIGIT)])
    appended = fit_output(model, x, y, index=NOT_ONE_DIGIT, seed=seed)
    said_not = appended.logits.argmax(1) == NOT_ONE_DIGIT
    is_not = torch.from_numpy(y) == NOT_ONE_DIGIT
    is_digit = torch.from_numpy(y) < NOT_ONE_DIGIT
    new = appended.model
    fit = NotADigitFit(
        numbers=numbers,
        seed=seed,
        pieces=len(piece_labels),
        not_one_digit=int(is_not.sum()),
        fitted_on=f"{len(images)} training digits",
        negatives=len(negatives),
        caught=round(float(said_not[is_not].float().mean()), 4),
        digits_taken_for_not=round(float(said_not[is_digit].float().mean()), 4),
    )
    return new.eval(), fit


def add_class_to_checkpoint(
    path: str | Path,
    out: str | Path | None = None,
    *,
    data_dir: Path | None = None,
    numbers: int = HEAD_NUMBERS,
    seed: int = HEAD_SEED,
    progress: bool = True,
) -> HeadReport[NotADigitFit]:
    """`add_class` for the checkpoint at `path`, fitted on the MNIST training digits its run
    trained on (not its held-out ones), saved to `out` (default: in place) and calibrated
    again. Returns what was done: the fit, as saved in the metadata ("not_a_digit"), and the
    calibration."""
    return add_output_to_checkpoint(
        path,
        out,
        "not_a_digit",
        partial(add_class, numbers=numbers, seed=seed, progress=progress),
        data_dir=data_dir,
        progress=progress,
    )
