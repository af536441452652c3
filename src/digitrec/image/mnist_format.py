"""One digit's ink -> MNIST's format: a 28x28 float digit, ink bright on black.

Try: `python -c "from digitrec.image.decode import load_image; from digitrec.image.mnist_format import preprocess;
print(preprocess(load_image('digit.png')).round(1))"`

    to_mnist   crop to the ink -> stroke width -> fit the 20x20 box -> contrast -> centre of mass

MNIST's format, measured on its training set: background exactly 0, stroke centres ~1.0, the
non-zero pixels fit a 20x20 box (longest side exactly 20), centre of mass at (14.0, 14.0).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from ..constants import DIGIT_BOX, IMAGE_SIZE
from .inkmap import MASK_FRACTION, MASK_MARGIN, bounding_box, nearest_rank_percentile, normalise

MASS_CENTER = (14.0, 14.0)  # mean centre of mass (row, column) of MNIST digits
FRINGE = 0.05  # soft ink below this does not count for the bounding box
REDUCING_GAP = 2.0  # large downscales first box-reduce by an integer factor (Pillow): faster
STROKE_SCALE = 4 * DIGIT_BOX  # stroke width is measured with the digit's long side at 80 px
STROKE_GAIN = 0.7  # stroke_width() reads ~70% of a drawn width change (8-connected outline)
STROKE_RANGE = (0.057, 0.17)  # ~2nd..98th percentile of MNIST: outside it, the pen is adjusted
STROKE_RETRIES = 2  # ... with at most this many larger disks when the first falls short
OUTPUT_LEVEL_PERCENTILE = 90  # MNIST: 90th percentile of a digit's ink pixels is ~0.99
ZERO_BELOW = 1.5 / 255  # output pixels this faint are set to exactly 0, as in MNIST


def crop_to_ink(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Crop to the mask's box widened to the anti-aliased fringe that belongs to it."""
    box = bounding_box(mask)
    if box is None:
        return np.zeros((0, 0), np.float32)
    y0, y1, x0, x1 = box
    h, w = ink.shape
    y0, y1 = max(0, y0 - MASK_MARGIN), min(h, y1 + MASK_MARGIN)
    x0, x1 = max(0, x0 - MASK_MARGIN), min(w, x1 + MASK_MARGIN)
    crop = ink[y0:y1, x0:x1]
    fringe = bounding_box(crop >= FRINGE)
    if fringe is None:
        return np.zeros((0, 0), np.float32)
    fy0, fy1, fx0, fx1 = fringe
    return crop[fy0:fy1, fx0:fx1]


def resize(a: np.ndarray, width: int, height: int, method: Image.Resampling = Image.Resampling.LANCZOS) -> np.ndarray:
    """Anti-aliased float resize (Lanczos: sharp like MNIST, ringing clipped away)."""
    if a.shape == (height, width):
        return a
    out = Image.fromarray(np.ascontiguousarray(a, np.float32)).resize(
        (width, height), method, reducing_gap=REDUCING_GAP
    )
    return np.clip(np.asarray(out), 0.0, 1.0)


def _fit(a: np.ndarray, long_side: int, method: Image.Resampling = Image.Resampling.LANCZOS) -> np.ndarray:
    h, w = a.shape
    s = long_side / max(h, w)
    return resize(a, max(1, round(w * s)), max(1, round(h * s)), method)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: ink area per unit of stroke length (half the outline)."""
    area = int(np.count_nonzero(mask))
    if area == 0:
        return 0.0
    # Inner pixels: all 3x3 neighbours inked (outside the array counts as paper). A separable
    # erosion by slices: far cheaper than a filter call on these small masks.
    rows = mask[:, :-2] & mask[:, 1:-1] & mask[:, 2:]
    inner = np.count_nonzero(rows[:-2] & rows[1:-1] & rows[2:])
    outline = area - inner
    return area / max(outline / 2.0, 1.0)


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius + radius  # slightly fuller than a strict disk


def stroke_ratio(crop: np.ndarray) -> float:
    """Stroke width over the digit's extent, measured with the long side near STROKE_SCALE px."""
    long_side = max(crop.shape)
    if STROKE_SCALE * 0.75 <= long_side <= STROKE_SCALE * 2:  # near the calibrated scale: as is
        return stroke_width(crop > 0.5) / long_side
    return stroke_width(_fit(crop, STROKE_SCALE, Image.Resampling.BILINEAR) > 0.5) / STROKE_SCALE


def normalise_stroke(crop: np.ndarray) -> np.ndarray:
    """Bring an unusually thin or thick pen into MNIST's range of stroke widths.

    Returns the crop unchanged when its stroke_ratio is within STROKE_RANGE, else the digit
    at STROKE_SCALE with its strokes grown or thinned (grey dilation / erosion by a disk) to
    just inside the range, no further: a pen just outside it changes little, and a digit
    already like MNIST's is not redrawn with another pen. A very thin pen would otherwise
    become faint grey hairlines at 28x28, a marker a blob.
    """
    ratio = stroke_ratio(crop)
    low, high = STROKE_RANGE
    if low <= ratio <= high or ratio == 0.0:
        return crop
    target = min(max(ratio, low), high)
    # Growing by a disk of radius r widens strokes by 2r, which stroke_width reads as ~1.4r:
    # a first guess, then up to STROKE_RETRIES larger disks until the range is reached.
    radius = max(1, round(abs(target - ratio) * STROKE_SCALE / (2 * STROKE_GAIN)))
    # Thinning must not erase strokes: it keeps at least a third of the width.
    most = int(ratio * STROKE_SCALE / 3) if ratio > high else radius + STROKE_RETRIES
    work = _fit(crop, STROKE_SCALE)
    out = crop
    for r in range(min(radius, most), min(radius + STROKE_RETRIES, most) + 1):
        pad = np.pad(work, r + 1)
        grown = ndi.grey_dilation(pad, footprint=_disk(r)) if ratio < low else ndi.grey_erosion(pad, footprint=_disk(r))
        box = bounding_box(grown >= FRINGE)
        if box is None:
            break
        y0, y1, x0, x1 = box
        out = grown[y0:y1, x0:x1]
        if low <= stroke_ratio(out) <= high:
            break
    return out


def normalise_contrast(digit: np.ndarray) -> np.ndarray:
    """Stretch so stroke centres reach 1.0 like MNIST's, and the faintest pixels are exactly 0."""
    inked = digit[digit > 0.1]
    if inked.size:
        level = nearest_rank_percentile(inked, OUTPUT_LEVEL_PERCENTILE)
        if 0 < level < 0.99:
            digit = np.clip(digit / level, 0.0, 1.0)
    return np.where(digit < ZERO_BELOW, 0.0, digit).astype(np.float32)


def center_by_mass(digit: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Place the digit in a size x size frame with its centre of mass at MASS_CENTER.

    Integer shifts (no resampling blur); the digit is kept wholly inside the frame.
    """
    out = np.zeros((size, size), np.float32)
    h, w = digit.shape
    total = float(digit.sum())
    if total <= 0:
        return out
    cy = float((digit.sum(axis=1) * np.arange(h)).sum() / total)
    cx = float((digit.sum(axis=0) * np.arange(w)).sum() / total)
    oy = min(max(round(MASS_CENTER[0] - cy), 0), size - h)
    ox = min(max(round(MASS_CENTER[1] - cx), 0), size - w)
    out[oy : oy + h, ox : ox + w] = digit
    return out


def to_mnist(
    ink: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    debug: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """One digit's ink map (bright on black, background 0) -> float32 (28, 28) MNIST-like.

    Without `mask`, the ink above half its maximum is the digit. An empty mask gives zeros.
    """
    ink = np.asarray(ink, np.float32)
    if mask is None:
        top = float(ink.max()) if ink.size else 0.0
        mask = ink > MASK_FRACTION * top if top > 0 else np.zeros(ink.shape, bool)
    crop = crop_to_ink(ink, mask)
    if crop.size == 0:
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    crop = normalise_stroke(crop)
    if debug is not None:
        debug["6_cropped"] = crop
    digit = normalise_contrast(_fit(crop, DIGIT_BOX))
    if debug is not None:
        debug["7_scaled"] = digit
    out = center_by_mass(digit)
    if debug is not None:
        debug["8_centered"] = out
    return out


def preprocess(image: np.ndarray, *, debug: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Any single-digit image array -> float32 (28, 28) in [0, 1], MNIST-like.

    A blank image gives all zeros; call `has_digit` to tell "no digit" apart.
    With a `debug` dict, every stage's image is stored in it, in order: "0_input",
    "1_gray" (working resolution, denoised), "2_background", "3_flattened", "4_ink",
    "5_mask", "6_cropped", "7_scaled", "8_centered".
    """
    inkmap = normalise(image, debug=debug)
    return to_mnist(inkmap.ink, inkmap.mask, debug=debug)
