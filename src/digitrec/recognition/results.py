"""What recognising an image returns: a `Recognition` holding one `DigitResult` per digit.

Try: `digitrec predict --json digit.png` prints `Recognition.to_dict()`.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image

from ..constants import Box
from ..image.decode import to_uint8

# Why an image that could be read was rejected (`Recognition.reason`); the JSON holds these strings.
Reason = Literal["no ink", "not a digit", "low confidence", "no valid reading"]
NO_INK: Reason = "no ink"  # no digit-like ink at all: blank, a dot, a line
NOT_A_DIGIT: Reason = "not a digit"  # ink the model reads as no digit (letters, signs, shapes)
LOW_CONFIDENCE: Reason = "low confidence"  # digits, but none read surely enough
NO_VALID_READING: Reason = "no valid reading"  # constraints given, and no reading satisfies them surely enough
REASONS: tuple[Reason, ...] = get_args(Reason)
NOT_A_DIGIT_MARK = "?"  # a non-digit piece's `digit` and its place in `text`


@dataclass
class DigitResult:
    """One recognised digit: what, how sure, and where in the input image."""

    digit: str
    confidence: float
    probabilities: list[float]
    box: Box  # in the input image's pixels
    flagged: bool  # confidence under the rejection threshold, or a non-digit piece
    top_k: list[tuple[str, float]]
    image: np.ndarray  # (28, 28) float32: what the network saw
    not_one_digit: float | None = None  # the chance the piece is not one digit; None: the model cannot tell
    not_digit: float | None = None  # the chance the piece is no digit at all; None: the model cannot tell

    @property
    def is_digit(self) -> bool:
        """False for a piece read as no digit at all (its `digit` is NOT_A_DIGIT_MARK)."""
        return self.digit != NOT_A_DIGIT_MARK

    def to_dict(self, *, include_image: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "digit": self.digit,
            "confidence": round(self.confidence, 6),
            "probabilities": [round(p, 6) for p in self.probabilities],
            "box": list(self.box),
            "flagged": self.flagged,
            "top_k": [{"digit": d, "probability": round(p, 6)} for d, p in self.top_k],
            "not_one_digit": None if self.not_one_digit is None else round(self.not_one_digit, 6),
            "not_digit": None if self.not_digit is None else round(self.not_digit, 6),
        }
        if include_image:
            d["image"] = png_data_url(self.image)
        return d


@dataclass(frozen=True)
class Alternative:
    """A reading that satisfies the constraints, and its probability: the product of its pieces'
    probabilities of being the digits it says."""

    text: str
    probability: float


@dataclass(frozen=True)
class Constrained:
    """How a reading with constraints went. `readings`: those that satisfy them, most probable
    first (the first is the text, unless rejected); `share`: the first one's probability over
    the sum of theirs; `ratio`: the first one's probability over that of the best reading of
    the same length, valid or not (1: the constraints cost nothing); `unconstrained`: the text
    read without them (with the digit count they imply, if they imply one); `exact`: False
    when the search stopped at its bound (lattice.MAX_EXPANSIONS) before it was done."""

    readings: list[Alternative]
    share: float
    ratio: float
    unconstrained: str
    exact: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "readings": [{"text": a.text, "probability": round(a.probability, 6)} for a in self.readings],
            "share": round(self.share, 6),
            "ratio": round(self.ratio, 6),
            "unconstrained": self.unconstrained,
            "exact": self.exact,
        }


@dataclass
class Recognition:
    """The result for one input image; `text` is the number read ("" when rejected), a
    NOT_A_DIGIT_MARK in place of each piece that is no digit. `reason`: why it was rejected;
    None when accepted, or when the image could not be read at all (`error` says why)."""

    text: str
    digits: list[DigitResult]
    rejected: bool
    path: str | None = None
    error: str | None = None
    reason: Reason | None = None
    # Read with constraints (recognition/constraints.py) only; None otherwise:
    constrained: Constrained | None = None
    # What the reader should know about how the image was read ("only the first of 3 frames").
    notes: list[str] = field(default_factory=list)

    def to_dict(self, *, include_images: bool = False) -> dict[str, Any]:
        return {
            "path": self.path,
            "text": self.text,
            "digits": [d.to_dict(include_image=include_images) for d in self.digits],
            "rejected": self.rejected,
            "reason": self.reason,
            "error": self.error,
            **({} if self.constrained is None else {"constrained": self.constrained.to_dict()}),
            **({"notes": list(self.notes)} if self.notes else {}),
        }


def png_data_url(image: np.ndarray) -> str:
    """A float image in [0, 1] as a `data:image/png;base64,...` URL (for JSON and web pages)."""

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
