"""A person's profile: a few labelled digits of their hand, as evidence added to the model's logits.

Try: `python -c "import numpy as np; from digitrec.recognition.profile import adapt; print(adapt(np.eye(4, 8, dtype=np.float32), np.array([0, 1, 2, 3])))"`

The base model is never changed. A profile holds, per digit, the prototype of that person's
samples: the mean direction of their features (the input of the model's last linear layer,
which the ONNX model gives as a second output). A piece whose features point close to a
prototype gets that digit's logit raised by `strength * (cosine - margin)`; pieces far from
every prototype, and digits the person gave no samples of, are read as the base model reads
them. Only raising, never lowering, means a profile cannot make a digit it has not seen less
likely, and a close match is also evidence against "not a digit". Chosen against a refit of the
last layer on writers far from and close to MNIST: docs/decisions/personal-profiles.md
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..constants import NUM_CLASSES
from ..errors import DigitrecError

# Logit added per unit of cosine over the margin, and the cosine below which a sample's digit
# adds nothing; chosen on held-out writers (benchmarks/personalize.py --choose):
# docs/decisions/personal-profiles.md
PROFILE_STRENGTH = 60.0
PROFILE_MARGIN = 0.75
MAX_FEATURES = 16384  # the widest feature vector a profile is made for (DigitNet's is 1152)

__all__ = ["MAX_FEATURES", "PROFILE_MARGIN", "PROFILE_STRENGTH", "Profile", "adapt"]


@dataclass(frozen=True)
class Profile:
    """Per-digit prototypes of one person's samples, and how strongly they count."""

    prototypes: np.ndarray  # (10, D) float32, unit rows; zero for a digit without samples
    counts: np.ndarray  # (10,) int64: samples per digit
    strength: float = PROFILE_STRENGTH
    margin: float = PROFILE_MARGIN

    @property
    def samples(self) -> int:
        return int(self.counts.sum())

    def adjust(self, logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Logits (B, C >= 10) with the digits' first ten raised where `features` (B, D) are close
        to a prototype; the other outputs ("not one digit", "not a digit") are left as they are.

        >>> p = adapt(np.array([[1, 0], [0, 1]], np.float32), np.array([3, 5]), strength=10, margin=0.5)
        >>> p.adjust(np.zeros((1, 10), np.float32), np.array([[1, 0]], np.float32))[0, [3, 5]].tolist()
        [5.0, 0.0]
        """
        if self.samples == 0:
            return np.array(logits, dtype=np.float32, copy=True)
        if features.shape[1] != self.prototypes.shape[1]:
            raise DigitrecError(
                f"this profile was made for features of width {self.prototypes.shape[1]}, the model gives "
                f"{features.shape[1]}; personalise again with this model"
            )
        unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        cosine = unit @ self.prototypes.T  # (B, 10); 0 against a digit without samples
        out = np.array(logits, dtype=np.float32, copy=True)
        out[:, :NUM_CLASSES] += self.strength * np.maximum(cosine - self.margin, 0.0)
        return out

    def to_bytes(self) -> bytes:
        """The profile as an .npz file's bytes (no pickle): what a store may cache."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            prototypes=self.prototypes,
            counts=self.counts,
            settings=np.array([self.strength, self.margin], np.float64),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            strength, margin = z["settings"].tolist()
            return cls(z["prototypes"].astype(np.float32), z["counts"].astype(np.int64), strength, margin)

    def __repr__(self) -> str:
        per_digit = " ".join(f"{d}:{n}" for d, n in enumerate(self.counts.tolist()) if n)
        return f"Profile({self.samples} samples [{per_digit}], width {self.prototypes.shape[1]})"


def adapt(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    strength: float = PROFILE_STRENGTH,
    margin: float = PROFILE_MARGIN,
) -> Profile:
    """The profile of samples whose features are (N, D) and digits `labels` (N,) in 0..9.

    >>> adapt(np.ones((2, 3), np.float32), np.array([7, 7])).counts.tolist()
    [0, 0, 0, 0, 0, 0, 0, 2, 0, 0]
    """
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels) or not 0 < features.shape[1] <= MAX_FEATURES:
        raise DigitrecError(f"features (N, D) and N labels expected; got {features.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DigitrecError(f"sample labels must be digits 0-9; got {sorted(set(labels.tolist()))}")
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    prototypes = np.zeros((NUM_CLASSES, features.shape[1]), np.float32)
    np.add.at(prototypes, labels.astype(np.int64), unit)
    norms = np.linalg.norm(prototypes, axis=1, keepdims=True)
    prototypes = np.where(norms > 0, prototypes / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
    counts = np.bincount(labels.astype(np.int64), minlength=NUM_CLASSES).astype(np.int64)
    return Profile(prototypes, counts, float(strength), float(margin))
