"""The "not a digit" class: letters, signs, shapes, scribbles and crossed-out digits, and adding it
to a trained model.

Try: `digitrec add-non-digit runs/shipped/shipped.safetensors --out runs/shipped/open.safetensors`,
or `python -c "from digitrec.training.nondigit import nondigit_examples;
print(nondigit_examples(20, seed=0).shape)"`

A network trained on digits alone reads whatever ink it is shown as some digit, a handwritten
"A" as a 4 at full confidence. The negatives come from `data.negatives` (fonts distorted to look
handwritten, stroke-drawn letters and signs, scribbles, doodles, crossed-out digits). Each is
met the way the recogniser meets it: half are rendered as a user's photo, scan or canvas and cut
by segmentation, half are taken as MNIST-format glyphs. The new output's row is fitted on the
frozen features (`heads.append_output`) beside the training digits and number pieces, so every
digit reads exactly as before; only the share the new output takes changes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..constants import NON_DIGIT, NOT_ONE_DIGIT
from ..errors import DigitrecError
from ..nn.augment import augment_batch
from ..nn.augment_config import AugmentConfig
from ..nn.predict import predict_logits, prepare_batch
from .config import DEGRADED, NONDIGIT_EPOCHS, NONDIGIT_NEGATIVES, NONDIGIT_NUMBERS, NONDIGIT_SEED
from .heads import HeadReport, add_output_to_checkpoint, append_output, last_linear
from .loop import softened_kl
from .negative_examples import nondigit_examples
from .notdigit import segment_examples

# Fine-tuning after the head is fitted (`epochs`): the whole network learns the new class while
# the old model, as a teacher, holds every logit it had on digits and pieces. Off by default: it
# gained little over the head alone (docs/decisions/non-digit-head.md).
FINETUNE_BATCH = 256
FINETUNE_LR = 0.002  # peak, cosine decay to zero; 0.01 diverged
FINETUNE_MOMENTUM = 0.9
FINETUNE_WEIGHT_DECAY = 5e-4
DISTILL_WEIGHT = 1.0  # the teacher's share beside the "not a digit" loss
DISTILL_TEMPERATURE = 2.0


def finetune(
    model: nn.Module,
    teacher: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    seed: int,
    augment: AugmentConfig = DEGRADED,
    progress: bool = False,
) -> nn.Module:
    """Train every weight of `model` (12 outputs) on uint8 (N, 28, 28) `images` with `labels`
    (0-9, NOT_ONE_DIGIT, NON_DIGIT) for `epochs`, each batch distorted as `augment` says (the
    robust preset's degradations by default). The loss: "not a digit" against all the other
    outputs (a logistic loss on the margin of its logit over their log-sum-exp), plus the
    distillation of `teacher`'s logits (the digits and "not one digit") on every image that is
    not a negative. Batch norm keeps the statistics it had. Returns `model`, in eval mode."""
    torch.manual_seed(seed)
    outputs = last_linear(teacher)[1].out_features
    model.eval().requires_grad_(True)  # eval: batch norm keeps the statistics of the digits
    teacher.eval().requires_grad_(False)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=FINETUNE_LR,
        momentum=FINETUNE_MOMENTUM,
        nesterov=True,
        weight_decay=FINETUNE_WEIGHT_DECAY,
    )
    y_all = torch.from_numpy(np.asarray(labels, np.int64))
    steps = epochs * math.ceil(len(images) / FINETUNE_BATCH)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc="fine-tuning", unit="step", disable=not progress, leave=False)
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=generator).split(FINETUNE_BATCH):
            x = prepare_batch(augment_batch(torch.from_numpy(images[idx.numpy()]).float() / 255, augment))
            y = y_all[idx]
            logits = model(x)
            kept = y != NON_DIGIT
            # "Not a digit" against everything else, so the digits' own logits answer to the teacher alone.
            margin = logits[:, NON_DIGIT] - torch.logsumexp(logits[:, :NON_DIGIT], 1)
            loss = nn.functional.binary_cross_entropy_with_logits(margin, (~kept).float())
            if kept.any():
                with torch.no_grad():
                    target = teacher(x[kept])
                loss = loss + DISTILL_WEIGHT * softened_kl(logits[kept, :outputs], target, DISTILL_TEMPERATURE)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            bar.update()
    bar.close()
    return model.eval().requires_grad_(False)


@dataclass(frozen=True)
class NonDigitFit:
    """What `add_nondigit_class` did, as saved in the checkpoint's metadata ("non_digit")."""

    drawn: int  # negatives drawn from the fit sources of data.negatives
    negatives: int  # pieces and glyphs fitted on as "not a digit"
    numbers: int  # numbers of training digits cut into pieces, fitted on as what they are
    seed: int
    fitted_on: str  # the training digits besides them, e.g. "60000 training digits"
    epochs: int  # of fine-tuning the whole network after the head (0: the head alone)
    caught: float  # share of the negatives the new output takes (on what it was fitted on)
    digits_taken_for_not: float  # share of the digits and number pieces it takes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def add_nondigit_class(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    drawn: int = NONDIGIT_NEGATIVES,
    numbers: int = NONDIGIT_NUMBERS,
    epochs: int = NONDIGIT_EPOCHS,
    seed: int = NONDIGIT_SEED,
    progress: bool = False,
) -> tuple[nn.Module, NonDigitFit]:
    """`model` (ten digits and "not one digit", a final nn.Linear) with a 12th output, "not a
    digit", fitted on its frozen features: the training digits `images`/`labels`, the pieces of
    `numbers` numbers rendered from them (as what they are: a digit or "not one digit"), and the
    pieces of `drawn` negatives of the fit sources (`nondigit_examples`). Returns (the new model,
    in eval mode, and what was done)."""
    _, head = last_linear(model)
    if head.out_features != NOT_ONE_DIGIT + 1:
        raise DigitrecError(
            f'the model has {head.out_features} outputs; adding "not a digit" needs the ten digits and '
            '"not one digit" (11): run `digitrec add-not-a-digit` first'
            + (', it has its "not a digit" class already' if head.out_features > NON_DIGIT else "")
        )
    pieces, piece_labels = segment_examples(images, labels, numbers, seed=seed, progress=progress)
    negatives = nondigit_examples(drawn, seed=seed, digits=images, progress=progress)
    x = np.concatenate([images, pieces, negatives])
    y = np.concatenate([np.asarray(labels, np.int64), piece_labels, np.full(len(negatives), NON_DIGIT, np.int64)])
    appended = append_output(model, x, y, seed=seed)
    new = appended.model
    logits = appended.logits
    if epochs:
        new = finetune(new, model, x, y, epochs=epochs, seed=seed, progress=progress)
        logits = predict_logits(new, x)
    said_not = (logits.argmax(1) == NON_DIGIT).numpy()
    is_not = y == NON_DIGIT
    fit = NonDigitFit(
        drawn=drawn,
        negatives=int(is_not.sum()),
        numbers=numbers,
        seed=seed,
        fitted_on=f"{len(images)} training digits",
        epochs=epochs,
        caught=round(float(said_not[is_not].mean()), 4),
        digits_taken_for_not=round(float(said_not[~is_not].mean()), 4),
    )
    return new, fit


def add_nondigit_to_checkpoint(
    path: str | Path,
    out: str | Path | None = None,
    *,
    data_dir: Path | None = None,
    drawn: int = NONDIGIT_NEGATIVES,
    numbers: int = NONDIGIT_NUMBERS,
    epochs: int = NONDIGIT_EPOCHS,
    seed: int = NONDIGIT_SEED,
    progress: bool = True,
) -> HeadReport[NonDigitFit]:
    """`add_nondigit_class` for the checkpoint at `path`, on the MNIST training digits its run
    trained on and the fit sources of `data.negatives`, saved to `out` (default: in place) and
    calibrated again."""
    return add_output_to_checkpoint(
        path,
        out,
        "non_digit",
        partial(add_nondigit_class, drawn=drawn, numbers=numbers, epochs=epochs, seed=seed, progress=progress),
        data_dir=data_dir,
        progress=progress,
    )
