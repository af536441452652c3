"""Is there a digit at all? Decided from the ink map, without a network.

Try: `python -c "import numpy as np; from digitrec.image.presence import has_digit; print(has_digit(np.ones((50, 50))))"`

A blank page, noise, a speck, an evenly or unevenly lit empty sheet are "no ink"; a digit is
enough contrast over the noise, big enough, and made of strokes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .inkmap import MIN_EXTENT_PIXELS, InkMap, InkSignal, bounding_box, ink_mask, label_pieces, normalise, piece_areas
from .mnist_format import stroke_width

MIN_SNR = 8.0  # full ink level over the background's standard deviation
MIN_INK_LEVEL = 0.22  # full ink at least this much darker (or brighter) than the paper; an
MIN_EXTENT_FRACTION = 0.03  # ... and this fraction of the image's longest side
MIN_ELONGATION = 2.7  # extent / stroke width: a dot or a stain is ~2.0-2.5, digits 3+
MAX_INK_FRACTION = 0.5  # more "ink" than paper is a dark scene, not a digit


@dataclass(frozen=True)
class InkStats:
    """What the ink looks like, for deciding "no digit" without a network."""

    snr: float  # full-ink level / background noise
    level: float  # full-ink level (contrast against the paper)
    ink_fraction: float  # share of the image that is ink
    extent: int  # longest side of the largest ink piece's bounding box, working pixels
    extent_fraction: float  # ... as a fraction of the image's longest side
    stroke_width: float  # mean stroke width of that piece, working pixels

    @property
    def elongation(self) -> float:
        """Extent over stroke width: a digit is made of strokes, a dot or a stain is not."""
        return self.extent / self.stroke_width if self.stroke_width > 0 else 0.0


def ink_stats(image: np.ndarray | InkMap) -> InkStats:
    """Measure the ink of an image (or of an already computed InkMap).

    Size and shape are those of the largest connected piece of ink: scattered specks do not
    add up to a digit, while a digit's main stroke is most of the digit.
    """
    inkmap = image if isinstance(image, InkMap) else normalise(image)
    return _stats(inkmap.mask, inkmap.labels, inkmap.level, inkmap.noise)


def signal_stats(signal: InkSignal) -> InkStats:
    """`ink_stats(threshold_ink(signal))`, without making the soft ink that it does not use."""
    mask, level, _, labels = ink_mask(signal.signal, signal.noise)
    return _stats(mask, labels, level, signal.noise)


def _stats(mask: np.ndarray, labels: np.ndarray | None, level: float, noise: float) -> InkStats:
    """InkStats of a mask; `labels`: its pieces numbered, when known (else labelled here)."""
    if not mask.any():
        return InkStats(0.0, level, 0.0, 0, 0.0, 0.0)
    if labels is None:
        labels = label_pieces(mask)[0]
    areas = piece_areas(labels)
    biggest = int(areas.argmax())  # the first of equals: the same piece whatever the numbering
    y0, y1, x0, x1 = bounding_box(labels == biggest) or (0, 0, 0, 0)
    extent = max(y1 - y0, x1 - x0)
    piece = np.zeros((y1 - y0 + 2, x1 - x0 + 2), bool)  # a frame of paper (np.pad, faster)
    piece[1:-1, 1:-1] = labels[y0:y1, x0:x1] == biggest
    return InkStats(
        snr=level / noise if noise > 0 else math.inf,
        level=level,
        ink_fraction=float(np.count_nonzero(mask)) / mask.size,
        extent=extent,
        extent_fraction=extent / max(mask.shape),
        stroke_width=stroke_width(piece),
    )


def looks_like_digit(stats: InkStats) -> bool:
    """The "no digit" rule: enough contrast over the noise, big enough, made of strokes."""
    return (
        stats.extent > 0
        and stats.level >= MIN_INK_LEVEL
        and stats.snr >= MIN_SNR
        and stats.extent >= MIN_EXTENT_PIXELS
        and stats.extent_fraction >= MIN_EXTENT_FRACTION
        and stats.elongation >= MIN_ELONGATION
        and stats.ink_fraction <= MAX_INK_FRACTION
    )


def has_digit(image: np.ndarray | InkMap) -> bool:
    """False for a blank page, noise, a speck, an evenly or unevenly lit empty sheet."""
    return looks_like_digit(ink_stats(image))
