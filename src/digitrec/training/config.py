"""Training recipes: the typed `TrainConfig` and the named presets. Torch-free, so the CLI can
list presets without importing torch.

Try: `python -c "from digitrec.training.config import PRESETS; print(PRESETS['default'])"`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import DigitrecError
from ..nn.augment_config import AugmentConfig


@dataclass(frozen=True)
class TrainConfig:
    model: str = "default"
    model_options: dict[str, Any] = field(default_factory=dict)  # overrides of the model's config
    epochs: int = 4
    batch_size: int = 256
    optimizer: str = "sgd"  # sgd | adadelta | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | step (x step_gamma each epoch) | onecycle
    step_gamma: float = 0.7
    warmup: float = 0.2  # onecycle: share of the steps spent warming up, then linear to zero
    label_smoothing: float = 0.0
    bf16: bool = False  # bfloat16 autocast for the forward pass
    channels_last: bool = False
    augment: AugmentConfig | None = None
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off); the EMA is what is saved
    holdout: int = 0  # training images held out for validation (model selection never sees test)
    # Numbers of training digits rendered and cut into every piece segmentation considers; the
    # pieces join the training set, those that are not one digit as an 11th class (notdigit.py).
    # Figures: docs/decisions/robust-preset.md.
    pieces: int = 0
    # Negatives (data.negatives, fit sources) that join the training set as a 12th class, "not a
    # digit" (nondigit.py). Without `pieces` the 11th output learns nothing here, and
    # `digitrec add-not-a-digit` fits it afterwards.
    negatives: int = 0
    # Knowledge distillation (Hinton et al. 2015): checkpoints whose averaged logits, softened by
    # `distill_temperature`, the model also learns from, with weight `distill` (0: off). Teachers
    # must have held out the same training digits (`holdout`), or validation would see them.
    teachers: tuple[str, ...] = ()
    distill: float = 0.0
    distill_temperature: float = 4.0
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of dataclasses.asdict, for configs read back from JSON."""
        d = dict(d)
        if d.get("augment") is not None:
            d["augment"] = AugmentConfig(**d["augment"])
        if "teachers" in d:
            d["teachers"] = tuple(d["teachers"])
        return cls(**d)


# Mild distortions a hand really makes. How these were chosen: docs/decisions/default-preset.md
HANDWRITING = AugmentConfig(rotate=10, scale=0.1, shift=2, shear=10)

# HANDWRITING plus the degradations of real inputs, each on 15% of the images: what the
# `robust` preset trains with (the corruption benchmark's own corruptions are never used).
DEGRADED = dataclasses.replace(
    HANDWRITING,
    corrupt_p=0.15,
    thickness=True,
    blur=1.5,
    impulse=0.1,
    fog=0.6,
    lines=1.0,
    outline=True,
    invert=True,
    noise=0.05,
)

# The training digits held out by the runs that chose `best`'s settings (scripts/choose_tta.py
# splits off the same ones).
BEST_CHOICE_HOLDOUT = 5000

PRESETS: dict[str, TrainConfig] = {
    # A minimal baseline recipe (a small SimpleCNN, plain SGD, batch 4), to show what the rest adds.
    "seed": TrainConfig(model="seed-cnn", epochs=2, batch_size=4, optimizer="sgd", lr=0.001, momentum=0.9),
    # The PyTorch examples' MNIST recipe: the benchmarks' reference.
    "reference": TrainConfig(
        model="torch-example", epochs=14, batch_size=64, optimizer="adadelta", lr=1.0, schedule="step", step_gamma=0.7
    ),
    # 99% as soon as possible: a narrow network, one epoch, small batches (more steps per image
    # seen), no label smoothing (it slows the first epoch down).
    "fast": TrainConfig(
        model="default",
        model_options={"widths": (16, 32, 64)},
        epochs=1,
        batch_size=128,
        optimizer="sgd",
        lr=0.1,
        nesterov=True,
        weight_decay=5e-4,
        schedule="onecycle",
        bf16=True,
        channels_last=True,
    ),
    # The project's own: one-cycle Nesterov SGD, label smoothing, mild augmentation, bfloat16
    # autocast and channels-last on the CPU; six epochs, no EMA (more epochs or an EMA gained nothing).
    # How these were chosen: docs/decisions/default-preset.md
    "default": TrainConfig(
        model="default",
        epochs=6,
        batch_size=256,
        optimizer="sgd",
        lr=0.2,
        nesterov=True,
        weight_decay=5e-4,
        schedule="onecycle",
        label_smoothing=0.1,
        augment=HANDWRITING,
        bf16=True,
        channels_last=True,
    ),
    # `default` trained on degraded digits too: keeps its accuracy under noise, blur and stray
    # strokes (digitrec robustness). Trained with `--pieces` it loses clean accuracy, so the shipped
    # model gets the "not one digit" class afterwards (`digitrec add-not-a-digit`), its digits
    # untouched. 24 epochs: they read held-out digits and numbers best of 12, 24 and 36.
    # How these were chosen: docs/decisions/robust-preset.md
    "robust": TrainConfig(
        model="default",
        epochs=24,
        batch_size=256,
        optimizer="sgd",
        lr=0.2,
        nesterov=True,
        weight_decay=5e-4,
        schedule="onecycle",
        label_smoothing=0.1,
        augment=DEGRADED,
        ema=0.999,
        bf16=True,
        channels_last=True,
    ),
    # The most accurate single model within 45 CPU-minutes: `default`'s recipe with two convolutions
    # per stage, twice the epochs and an EMA of the weights. Every setting was chosen by runs that
    # held out BEST_CHOICE_HOLDOUT training digits (`--holdout 5000`; the test set never chooses
    # anything); the preset then trains on all 60,000 with them, as a final model is fitted once
    # its settings are fixed. Stronger or elastic augmentation, more epochs, distillation, wider
    # stages and 5x5 kernels gained nothing on the held-out digits.
    # How these were chosen: docs/decisions/best-preset.md
    "best": TrainConfig(
        model="default",
        model_options={"widths": (32, 64, 128), "depth": 2},
        epochs=15,
        batch_size=256,
        optimizer="sgd",
        lr=0.2,
        nesterov=True,
        weight_decay=5e-4,
        schedule="onecycle",
        label_smoothing=0.1,
        augment=HANDWRITING,
        ema=0.999,
        bf16=True,
        channels_last=True,
    ),
}
OPTIMIZERS = ("sgd", "adadelta", "adamw")
SCHEDULES = ("constant", "step", "onecycle")
# The augmentations `digitrec train --augment NAME` names: none, or one of the presets' own.
AUGMENTATIONS: dict[str, AugmentConfig | None] = {"none": None, "handwriting": HANDWRITING, "degraded": DEGRADED}


def list_presets() -> list[str]:
    return list(PRESETS)


def make_config(preset: str, **overrides: Any) -> TrainConfig:
    """The preset's config with the given fields replaced (None means: keep the preset's)."""
    if preset not in PRESETS:
        raise DigitrecError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    base = PRESETS[preset]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(overrides.get("augment"), str):  # a name from the command line ("none" turns it off)
        name = overrides["augment"]
        if name not in AUGMENTATIONS:
            raise DigitrecError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENTATIONS)}")
        overrides["augment"] = AUGMENTATIONS[name]
    if overrides.get("model", base.model) != base.model:
        overrides.setdefault("model_options", {})  # the preset's options belong to its own model
    config = dataclasses.replace(base, **overrides)
    if config.optimizer not in OPTIMIZERS:
        raise DigitrecError(f"unknown optimizer {config.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
    if config.schedule not in SCHEDULES:
        raise DigitrecError(f"unknown schedule {config.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    for name in ("epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise DigitrecError(f"--{name.replace('_', '-')} must be at least 1")
    if config.lr <= 0:
        raise DigitrecError("--lr must be positive")
    if config.weight_decay < 0:
        raise DigitrecError(f"--weight-decay must be at least 0; got {config.weight_decay}")
    if not 0 <= config.label_smoothing < 1:
        raise DigitrecError(f"--label-smoothing must be in [0, 1): a share such as 0.1; got {config.label_smoothing}")
    if not 0 <= config.distill <= 1:
        raise DigitrecError(f"--distill must be in [0, 1]: the teachers' share of the loss; got {config.distill}")
    if bool(config.teachers) != bool(config.distill):
        raise DigitrecError(
            "--teacher and --distill go together: the teachers' checkpoints and their share of the loss"
        )
    if config.teachers and config.pieces:
        raise DigitrecError('--teacher and --pieces do not go together: a teacher has no "not one digit" class')
    if not 0 <= config.ema < 1:
        raise DigitrecError(f"--ema must be in [0, 1): a decay such as 0.999; got {config.ema}")
    return config


HEAD_NUMBERS = 8000  # numbers cut into pieces for fitting the class: about 35,000 pieces
HEAD_SEED = 0  # picks and renders those numbers
# A model trained with "not a digit" gets its "not one digit" row fitted beside this many negatives
# as well, so that the row learns to stay low on them: fitted on digits and pieces alone, it took
# the share of scribbles and signs from "not a digit" (docs/decisions/non-digit-head.md).
HEAD_REFIT_NEGATIVES = 12_000
# `digitrec add-non-digit`: the "not a digit" output, fitted on negatives of the fit sources of
# data.negatives and the pieces of rendered numbers. How these were chosen: docs/decisions/non-digit-head.md
NONDIGIT_NEGATIVES = 24_000  # negatives drawn from the fit sources, family by family
NONDIGIT_NUMBERS = 2000  # numbers cut into pieces, so that number pieces keep reading as they did
NONDIGIT_EPOCHS = 0  # of fine-tuning the whole network after the head, the old model as its teacher
NONDIGIT_SEED = 0  # picks and renders the negatives and the numbers
