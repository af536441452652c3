"""The "not a digit" class: letters, signs, shapes, scribbles and crossed-out digits, and adding it
to a trained model.

Try: `digitrec add-non-digit runs/shipped/shipped.safetensors --out runs/shipped/open.safetensors`,
or `python -c "from digitrec.training.nondigit import nondigit_examples;
print(nondigit_examples(['scribbles:zigzag'], 20, seed=0).shape)"`

A network trained on digits alone reads whatever ink it is shown as some digit, a handwritten
"A" as a 4 at full confidence. The negatives come from `data.negatives` (fonts distorted to look
handwritten, stroke-drawn letters and signs, scribbles, doodles, crossed-out digits). Each is
met the way the recogniser meets it: half are rendered as a user's photo, scan or canvas and cut
by segmentation, half are taken as MNIST-format glyphs. The new output's row is fitted on the
frozen features (`heads.append_output`) beside the training digits and number pieces, so every
digit reads exactly as before; only the share the new output takes changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..constants import IMAGE_SIZE, NON_DIGIT, NOT_ONE_DIGIT
from ..data.mnist import holdout_split, load_mnist
from ..data.negatives import FIT_SOURCES, negative_glyphs, render_input
from ..errors import DigitrecError
from ..image.decode import to_uint8
from ..image.segmentation import segment
from ..metadata import holdout_of
from ..nn.checkpoint import load_checkpoint, save_tensors
from ..nn.models.registry import model_config
from .calibration import Calibration, calibrate_checkpoint, calibration_digits
from .config import NEGATIVES_PER_SOURCE, NONDIGIT_NUMBERS, NONDIGIT_SEED
from .heads import append_output, last_linear
from .notdigit import segment_examples

RENDERED_SHARE = 0.5  # negatives rendered as a user's input and cut by segmentation; the rest as glyphs


def nondigit_examples(
    sources: Sequence[str],
    per_source: int,
    *,
    seed: int,
    digits: np.ndarray | None = None,
    rendered: float = RENDERED_SHARE,
    progress: bool = False,
) -> np.ndarray:
    """uint8 (M, 28, 28) MNIST-format pieces that are not digits: `per_source` negatives of each
    source (`data.negatives`), a `rendered` share of them rendered as a photo, scan or canvas and
    cut by `segment` as the recogniser would (every piece it keeps), the rest as glyphs.
    `digits`: uint8 (N, 28, 28) MNIST digits for the crossed-out sources. Deterministic for `seed`."""
    out: list[np.ndarray] = []
    for k, source in enumerate(tqdm(sources, desc="negatives", unit="source", disable=not progress, leave=False)):
        glyphs = negative_glyphs(source, per_source, seed=seed * 1_000 + k, digits=digits)
        rng = np.random.default_rng([seed, k])
        for glyph in glyphs:
            if rng.random() < rendered:
                out += [to_uint8(crop.image) for crop in segment(render_input(glyph, rng))]
            else:
                out.append(glyph)
    return np.stack(out) if out else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


@dataclass(frozen=True)
class NonDigitFit:
    """What `add_nondigit_class` did, as saved in the checkpoint's metadata ("non_digit")."""

    sources: list[str]  # the negative sources fitted on
    per_source: int
    negatives: int  # pieces and glyphs fitted on as "not a digit"
    numbers: int  # numbers of training digits cut into pieces, fitted on as what they are
    seed: int
    fitted_on: str  # the training digits besides them, e.g. "60000 training digits"
    caught: float  # share of the negatives the new output takes (on what it was fitted on)
    digits_taken_for_not: float  # share of the digits and number pieces it takes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NonDigitReport:
    """What `add_nondigit_to_checkpoint` did: the fit, and the calibration fitted again after it."""

    fit: NonDigitFit
    calibration: Calibration

    def to_dict(self) -> dict[str, Any]:
        """The JSON `digitrec add-non-digit --json` prints: the fit's keys and "calibration"."""
        return {**self.fit.to_dict(), "calibration": self.calibration.to_dict()}


def add_nondigit_class(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    sources: Sequence[str] = FIT_SOURCES,
    per_source: int = NEGATIVES_PER_SOURCE,
    numbers: int = NONDIGIT_NUMBERS,
    seed: int = NONDIGIT_SEED,
    progress: bool = False,
) -> tuple[torch.nn.Module, NonDigitFit]:
    """`model` (ten digits and "not one digit", a final nn.Linear) with a 12th output, "not a
    digit", fitted on its frozen features: the training digits `images`/`labels`, the pieces of
    `numbers` numbers rendered from them (as what they are: a digit or "not one digit"), and the
    negatives of `sources` (`nondigit_examples`). Returns (the new model, in eval mode, what was done)."""
    _, head = last_linear(model)
    if head.out_features != NOT_ONE_DIGIT + 1:
        raise DigitrecError(
            f'the model has {head.out_features} outputs; adding "not a digit" needs the ten digits and '
            '"not one digit" (11): run `digitrec add-not-a-digit` first'
            + (', it has its "not a digit" class already' if head.out_features > NON_DIGIT else "")
        )
    pieces, piece_labels = segment_examples(images, labels, numbers, seed=seed, progress=progress)
    negatives = nondigit_examples(sources, per_source, seed=seed, digits=images, progress=progress)
    x = np.concatenate([images, pieces, negatives])
    y = np.concatenate([np.asarray(labels, np.int64), piece_labels, np.full(len(negatives), NON_DIGIT, np.int64)])
    appended = append_output(model, x, y, seed=seed)
    said_not = (appended.logits.argmax(1) == NON_DIGIT).numpy()
    is_not = y == NON_DIGIT
    fit = NonDigitFit(
        sources=list(sources),
        per_source=per_source,
        negatives=int(is_not.sum()),
        numbers=numbers,
        seed=seed,
        fitted_on=f"{len(images)} training digits",
        caught=round(float(said_not[is_not].mean()), 4),
        digits_taken_for_not=round(float(said_not[~is_not].mean()), 4),
    )
    return appended.model, fit


def add_nondigit_to_checkpoint(
    path: str | Path,
    out: str | Path | None = None,
    *,
    data_dir: Path | None = None,
    per_source: int = NEGATIVES_PER_SOURCE,
    numbers: int = NONDIGIT_NUMBERS,
    seed: int = NONDIGIT_SEED,
    progress: bool = True,
) -> NonDigitReport:
    """`add_nondigit_class` for the checkpoint at `path`, on the MNIST training digits its run
    trained on and the fit sources of `data.negatives`, saved to `out` (default: in place) and
    calibrated again."""
    path = Path(path)
    out = Path(out) if out is not None else path
    ckpt = load_checkpoint(path)
    holdout = holdout_of(ckpt.metadata)
    train = load_mnist("train", data_dir, progress=progress)
    kept = holdout_split(len(train.images), holdout)[0] if holdout else np.arange(len(train.images))
    model, fit = add_nondigit_class(
        ckpt.model,
        train.images[kept],
        train.labels[kept],
        per_source=per_source,
        numbers=numbers,
        seed=seed,
        progress=progress,
    )
    metadata = {k: v for k, v in ckpt.metadata.items() if k != "calibration"}  # fitted again below
    metadata["model"] = {**metadata["model"], "config": model_config(model)}
    metadata["non_digit"] = fit.to_dict()
    save_tensors(out, model.state_dict(), metadata)
    calibration = calibrate_checkpoint(out, *calibration_digits(train.images, train.labels, holdout))
    return NonDigitReport(fit, calibration)
