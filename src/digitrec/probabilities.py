"""Probabilities from a model's logits: softmax, the digits' share, the most probable labels.

Try: `python -c "import numpy as np; from digitrec.probabilities import softmax; print(softmax(np.zeros((1, 10))))"`

A model has ten digit outputs and may have an 11th, "not one digit" (constants.NOT_ONE_DIGIT).
Every function is a pure function of numpy arrays, shared by the recogniser and the reports.
"""

from __future__ import annotations

import numpy as np

from .constants import LABELS, NON_DIGIT, NUM_CLASSES

DEFAULT_TOPK = 3


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature (calibration.py) in float32, stable for large logits."""
    z = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def digit_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The ten digits' probabilities (N, 10) from a model's logits: the softmax of the digits'
    logits / temperature. A model's "not one digit" output (constants.NOT_ONE_DIGIT) is left out:
    it serves to choose how to cut a number (`piece_probabilities`), and a single digit's
    confidence stays what it was without it."""
    return softmax(np.asarray(logits)[:, :NUM_CLASSES], temperature)


def piece_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The ten digits' probabilities (N, 10) for pieces segmentation may cut a number into: with
    a "not one digit" output, the digits' share of the softmax over the digits and it, so that a
    piece holding two digits or a fragment reads with low confidence (decoder.choose_readings).
    A "not a digit" output (constants.NON_DIGIT) is left out: adding it to a model changes no
    reading of a number; it only flags the pieces that are no digit (`non_digit_share`)."""
    return softmax(np.asarray(logits)[:, :NON_DIGIT], temperature)[:, :NUM_CLASSES]


def topk(probs: np.ndarray, k: int = DEFAULT_TOPK, labels: tuple[str, ...] = LABELS) -> list[list[tuple[str, float]]]:
    """For each row of `probs`, the `k` most probable labels with their probabilities, best first."""
    probs = np.atleast_2d(np.asarray(probs))
    k = max(1, min(k, probs.shape[1]))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(labels[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]
