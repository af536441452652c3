"""Confidence calibration: one temperature that makes a model's probabilities mean what they say.

Try: `digitrec calibrate runs/default/model.safetensors` (`digitrec train` does it when done).

Label smoothing and an average of the weights (EMA) leave a network under-confident, so a
rejection threshold flags correct digits. Dividing the logits by a temperature fitted on digits
(minimum negative log-likelihood, Guo et al. 2017) fixes the scale without changing any
prediction. The temperature is saved in the checkpoint's metadata, which export copies into the
ONNX file; `Recognizer` and `digitrec evaluate` apply it.
See docs/decisions/temperature-calibration.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..constants import NUM_CLASSES
from ..data.mnist import holdout_split, load_mnist
from ..metadata import holdout_of
from ..nn.checkpoint import load_checkpoint, read_metadata, save_tensors
from ..nn.predict import predict_logits

TEMPERATURE_RANGE = (0.05, 20.0)  # searched on a log scale; 1.0 leaves the logits as they are
SEARCH_STEPS = 60  # golden-section steps: the range shrinks to ~1e-12 of its log width
CALIBRATION_DIGITS = 10_000  # training digits used when the run held none out
CALIBRATION_SEED = 2  # which training digits those are


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature)."""
    z = np.asarray(logits, np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float((log_norm - z[np.arange(len(z)), np.asarray(labels, np.int64)]).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in TEMPERATURE_RANGE with the least NLL (it is convex in 1/T)."""
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(SEARCH_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return math.exp((lo + hi) / 2)


def calibration_digits(images: np.ndarray, labels: np.ndarray, holdout: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The digits to calibrate on: the run's held-out training digits when it had some (the
    same split as training), else CALIBRATION_DIGITS training digits. The model has seen
    those, but they give the temperature unseen digits give, so the test set chooses nothing
    (docs/decisions/calibration-digits.md)."""

    if holdout > 0:
        held = holdout_split(len(images), holdout)[1]
        return images[held], labels[held], f"{holdout} held-out training digits"
    n = min(CALIBRATION_DIGITS, len(images))
    pick = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(len(images), n, replace=False))
    return images[pick], labels[pick], f"{n} training digits"


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature, as saved in a checkpoint's metadata ("calibration")."""

    temperature: float
    fitted_on: str  # which digits, e.g. "10000 training digits"
    nll_before: float  # mean negative log-likelihood of those digits at temperature 1
    nll_after: float  # ... and at the fitted temperature

    def to_dict(self) -> dict[str, float | str]:
        """The metadata entry, and the JSON `digitrec calibrate --json` prints."""
        return asdict(self)


def calibrate_checkpoint(path: str | Path, images: np.ndarray, labels: np.ndarray, source: str) -> Calibration:
    """Fit the temperature of the checkpoint at `path` on `images`/`labels` and save it in the
    checkpoint's metadata ("calibration"); the weights stay as they are. Returns what was saved."""

    ckpt = load_checkpoint(path)
    # The digits' logits alone, as probabilities.digit_probabilities uses them.
    logits = predict_logits(ckpt.model, images).numpy()[:, :NUM_CLASSES]
    temperature = fit_temperature(logits, labels)
    calibration = Calibration(
        temperature=round(temperature, 6),
        fitted_on=source,
        nll_before=round(nll(logits, labels), 6),
        nll_after=round(nll(logits, labels, temperature), 6),
    )
    save_tensors(path, ckpt.model.state_dict(), {**ckpt.metadata, "calibration": calibration.to_dict()})
    return calibration


def calibrate_on_mnist(path: str | Path, data_dir: Path | None = None, progress: bool = True) -> Calibration:
    """`calibrate_checkpoint` on the MNIST training digits `calibration_digits` picks for the
    checkpoint's run (its held-out digits, when it had some)."""

    holdout = holdout_of(read_metadata(path))
    train = load_mnist("train", data_dir, progress=progress)
    return calibrate_checkpoint(path, *calibration_digits(train.images, train.labels, holdout))
