"""Turn the images people have into MNIST's format: a 28x28 float digit, ink bright on black.

Try: `python -c "from digitrec.preprocessing import load_image, preprocess;
print(preprocess(load_image('digit.png')).round(1))"`

The pipeline, one small function per stage:

    load_image   any common file -> float32 grey [0, 1]: EXIF orientation, alpha, 16-bit, palette
    normalise    working resolution -> denoise -> background (lighting) -> polarity -> ink map + mask
    to_mnist     crop to the ink -> stroke width -> fit the 20x20 box -> contrast -> centre of mass
    has_digit    "is there a digit at all?", decided from the ink map without a network

`preprocess` is `normalise` followed by `to_mnist`; segmentation reuses both halves.
MNIST's format, measured on its training set: background exactly 0, stroke centres ~1.0, the
non-zero pixels fit a 20x20 box (longest side exactly 20), centre of mass at (14.0, 14.0).
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage as ndi

from digitrec.constants import DIGIT_BOX, IMAGE_SIZE
from digitrec.errors import DigitrecError

# --- input limits ---------------------------------------------------------------------------
MAX_BYTES = 64 * 2**20  # larger files are refused before decoding
MAX_PIXELS = 40_000_000  # decompression-bomb cap, checked from the header before decoding
MAX_ASPECT = 40  # a 20-digit number cropped tightly is ~16:1; a 50000x50 strip is refused
FORMATS = "PNG, JPEG, BMP, TIFF, WebP or GIF"

# --- working resolution ---------------------------------------------------------------------
WORK_PIXELS = 640 * 640  # single digits: larger images are box-averaged down to about this
BACKGROUND_GRID = 48  # the lighting estimate works on a copy at most this many pixels wide
BACKGROUND_WINDOW = 0.5  # median window for the lighting estimate, as a fraction of the grid

# --- thresholds (grey levels are in [0, 1]) -------------------------------------------------
FLAT_BORDER_SPREAD = 0.06  # border p10..p90 below this: evenly lit, one background level
NOISE_TO_DENOISE = 0.01  # pixel noise above this gets a 3x3 median filter
NOISE_K = 4.0  # ink must stand this many background standard deviations out
MIN_CONTRAST = 0.1  # ink must differ from the paper by at least this much
INK_LEVEL_PERCENTILE = 90  # "full ink" is this percentile of the clearly-inked pixels
MASK_FRACTION = 0.5  # a pixel is ink when above this fraction of the full ink level
MASK_MARGIN = 2  # the soft ink keeps anti-aliased edges this many pixels around the mask
SPECK_FRACTION = 0.05  # components smaller than this fraction of the largest one are specks
STAT_SAMPLES = 20_000  # medians are taken on a strided sample of about this many pixels

# --- the MNIST format (measured on the training set) ----------------------------------------
MASS_CENTER = (14.0, 14.0)  # mean centre of mass (row, column) of MNIST digits
FRINGE = 0.05  # soft ink below this does not count for the bounding box
STROKE_SCALE = 4 * DIGIT_BOX  # stroke width is measured with the digit's long side at 80 px
STROKE_TARGET = 0.134  # median MNIST stroke width / digit extent at that scale
STROKE_RANGE = (0.085, 0.22)  # ~5th..95th percentile of MNIST: outside it, the pen is adjusted
OUTPUT_LEVEL_PERCENTILE = 90  # MNIST: 90th percentile of a digit's ink pixels is ~0.99
ZERO_BELOW = 1.5 / 255  # output pixels this faint are set to exactly 0, as in MNIST

# --- "is there a digit?" --------------------------------------------------------------------
MIN_SNR = 8.0  # full ink level over the background's standard deviation
MIN_EXTENT_PIXELS = 6  # the ink's bounding box must be at least this long ...
MIN_EXTENT_FRACTION = 0.03  # ... and this fraction of the image's longest side
MIN_ELONGATION = 2.5  # extent / stroke width: below this the ink is a blob or a dot
MAX_INK_FRACTION = 0.5  # more "ink" than paper is a dark scene, not a digit

EIGHT = np.ones((3, 3), bool)  # 8-connectivity for labelling


# ============================================================================================
# Loading
# ============================================================================================


def load_image(
    source: bytes | str | os.PathLike[str], *, name: str | None = None, reduce_to: int | None = None
) -> np.ndarray:
    """Decode an image file (path or bytes) to a float32 grey array (H, W) in [0, 1].

    Applies EXIF orientation, composites transparency onto the background (see
    `composite_alpha`) and scales 16-bit images correctly. With `reduce_to`, a JPEG is decoded
    at 1/2, 1/4 or 1/8 scale (much faster for phone photos) so that it keeps at least
    `reduce_to` pixels; coordinates then refer to the reduced image. Every failure is a
    DigitrecError naming `name` (default: the path, or "image" for bytes).
    """
    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    label = name or ("image" if is_bytes else os.fspath(source))
    data = bytes(source) if is_bytes else _read_file(source, label)
    if not data:
        raise DigitrecError(f"{label}: the file is empty; give a {FORMATS} image")
    if len(data) > MAX_BYTES:
        raise DigitrecError(
            f"{label}: {len(data) / 2**20:.0f} MiB is too large (limit {MAX_BYTES // 2**20} MiB); "
            "resize or compress the image first"
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            _check_dimensions(img.size, label)
            if reduce_to and img.format == "JPEG":
                w, h = img.size
                k = math.sqrt(reduce_to / (w * h))
                if k < 1:
                    img.draft("RGB" if img.mode == "RGB" else img.mode, (int(w * k), int(h * k)))
            img.load()
            return _pil_to_gray(_upright(img))
    except DigitrecError:
        raise
    except Image.DecompressionBombError:
        raise DigitrecError(
            f"{label}: the image has too many pixels (limit {MAX_PIXELS:,}); resize it first"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on bad input
        # OSError (truncated), UnidentifiedImageError, ValueError, SyntaxError, EOFError,
        # struct.error, IndexError, ... all mean the same thing to the user.
        raise DigitrecError(
            f"{label}: cannot read this image ({type(exc).__name__}: {exc}); "
            f"give a valid {FORMATS} file"
        ) from None


def _read_file(path: str | os.PathLike[str], label: str) -> bytes:
    try:
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise DigitrecError(
                f"{label}: {size / 2**20:.0f} MiB is too large (limit {MAX_BYTES // 2**20} MiB); "
                "resize or compress the image first"
            )
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DigitrecError(f"{label}: no such file; check the path") from None
    except IsADirectoryError:
        raise DigitrecError(f"{label}: is a folder, not an image file") from None
    except OSError as exc:
        raise DigitrecError(f"{label}: cannot read the file ({exc.strerror or exc})") from None


def _check_dimensions(size: tuple[int, int], label: str) -> None:
    """Refuse empty, oversized and absurdly thin images from the header, before decoding."""
    w, h = size
    if w <= 0 or h <= 0:
        raise DigitrecError(f"{label}: the image is {w}x{h} pixels, it has no content")
    if w * h > MAX_PIXELS:
        raise DigitrecError(
            f"{label}: {w}x{h} is too many pixels (limit {MAX_PIXELS:,}); resize the image first"
        )
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise DigitrecError(
            f"{label}: a {w}x{h} image is too thin (aspect limit {MAX_ASPECT}:1); "
            "crop it to the digits"
        )


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phones store photos sideways and say so in EXIF)."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a broken EXIF block should not make the image unreadable
        return img


def _pil_to_gray(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> float32 grey [0, 1], alpha composited."""
    mode = img.mode
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.float32) / 65535.0
    if mode in ("I", "F"):
        return to_gray(np.asarray(img))
    has_alpha = "A" in mode or mode.endswith("a") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        grey = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        return composite_alpha(grey, alpha)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def composite_alpha(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fill transparent pixels with a background that keeps the drawing visible.

    When few pixels are opaque they are the strokes (a canvas export): transparency becomes
    white behind dark strokes and black behind light ones. When most are opaque, they are
    mostly paper (a photo with transparent corners): transparency becomes the paper's level.
    """
    if alpha.min() >= 1.0:
        return grey
    opaque = alpha > 0.5
    if opaque.mean() < 0.5:
        weight = alpha.sum()
        ink = float((grey * alpha).sum() / weight) if weight > 0 else 0.0
        fill = 1.0 if ink < 0.5 else 0.0
    else:
        fill = float(np.median(grey[opaque]))
    return (grey * alpha + fill * (1.0 - alpha)).astype(np.float32)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any numeric array (H, W), (H, W, 1|3|4), bool/uint8/uint16/int/float -> float32 [0, 1].

    Integers are scaled by their type's range (uint8 /255, uint16 /65535); other integer and
    float arrays by 255 or 65535 when their maximum says they use that range.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise DigitrecError(
            f"image array has shape {a.shape}; give (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA"
        )
    if a.size == 0 or a.shape[0] == 0 or a.shape[1] == 0:
        raise DigitrecError(f"image array has shape {a.shape}, it has no pixels")
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif a.dtype == bool:
        f = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.number):
        f = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(f.max()) if f.size else 0.0
        if top > 255.0:
            f = f / 65535.0
        elif top > 1.0:
            f = f / 255.0
    else:
        raise DigitrecError(f"image array has dtype {a.dtype}; give numbers")
    if f.ndim == 3:
        grey = f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114  # ITU-R 601, as Pillow
        if f.shape[2] == 4:
            grey = composite_alpha(grey, np.clip(f[..., 3], 0.0, 1.0))
        f = grey
    return np.ascontiguousarray(np.clip(f, 0.0, 1.0), dtype=np.float32)


# ============================================================================================
# Normalising a whole image to an ink map
# ============================================================================================


@dataclass(frozen=True)
class InkMap:
    """An image reduced to "how much ink is here", at a bounded working resolution."""

    ink: np.ndarray  # float32 (h, w) in [0, 1]: 0 on paper, ~1 in stroke centres
    mask: np.ndarray  # bool (h, w): the ink pixels, specks removed
    scale: int  # input pixels per working pixel along each axis
    level: float  # the full-ink level before stretching (contrast against the paper)
    noise: float  # the background's standard deviation, same units as `level`


def reduce_resolution(grey: np.ndarray, max_pixels: int) -> tuple[np.ndarray, int]:
    """Box-average by the smallest integer factor that brings the image to <= max_pixels."""
    h, w = grey.shape
    k = math.ceil(math.sqrt(h * w / max_pixels))
    if k <= 1:
        return grey, 1
    return np.asarray(Image.fromarray(grey).reduce(k)), k


def _sample(a: np.ndarray) -> np.ndarray:
    """A strided sample of about STAT_SAMPLES pixels (medians of whole photos are slow)."""
    step = max(1, int(math.sqrt(a.size / STAT_SAMPLES)))
    return a[::step, ::step]


def estimate_noise(grey: np.ndarray) -> float:
    """Pixel noise (standard deviation) from neighbour differences, robust to edges."""
    s = _sample(grey)
    if s.shape[1] < 2:
        return 0.0
    d = np.abs(np.diff(s, axis=1))
    if np.count_nonzero(d) * 2 <= d.size:  # synthetic / canvas images: mostly flat
        return 0.0
    return float(np.median(d)) * 1.4826 / math.sqrt(2.0)


def denoise(grey: np.ndarray, noise: float) -> np.ndarray:
    """A 3x3 median filter for noisy photos: removes grain and salt, keeps stroke edges."""
    if noise <= NOISE_TO_DENOISE:
        return grey
    return ndi.median_filter(grey, size=3, mode="nearest")


def _border(grey: np.ndarray) -> np.ndarray:
    return np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])


def estimate_background(grey: np.ndarray) -> float | np.ndarray:
    """The paper's level: one number when evenly lit, else a smooth map of the lighting.

    The map is a large median filter of a small copy: ink covers far less than half of any
    window, so the median is paper, and a lighting gradient or soft shadow is followed.
    """
    border = _border(grey)
    lo, hi = np.percentile(border, [10, 90])
    if hi - lo < FLAT_BORDER_SPREAD:
        return float(np.median(border))
    h, w = grey.shape
    k = max(1, math.ceil(max(h, w) / BACKGROUND_GRID))
    small = np.asarray(Image.fromarray(grey).reduce(k)) if k > 1 else grey
    window = max(3, round(max(small.shape) * BACKGROUND_WINDOW) | 1)
    bg = ndi.median_filter(small, size=window, mode="nearest")
    bg = ndi.gaussian_filter(bg, sigma=1.0, mode="nearest")
    return np.asarray(Image.fromarray(bg).resize((w, h), Image.Resampling.BILINEAR))


def ink_is_dark(grey: np.ndarray, background: float | np.ndarray, noise: float) -> bool:
    """Polarity: is the ink darker than the paper? Compares the mass that stands out each way."""
    d = grey - background
    margin = NOISE_K * noise + MIN_CONTRAST / 2
    dark = np.clip(-d - margin, 0.0, None).sum()
    bright = np.clip(d - margin, 0.0, None).sum()
    return bool(dark > bright)


def flatten(grey: np.ndarray, background: float | np.ndarray, dark: bool) -> np.ndarray:
    """Ink signal >= 0 with the lighting removed.

    Dark ink on paper is measured relative to the local paper brightness (reflectance ratio),
    which cancels both gradients and shadows; light ink on dark is the plain difference.
    """
    if dark:
        ink = (background - grey) / np.maximum(background, 0.05)
    else:
        ink = grey - background
    return np.clip(ink, 0.0, None).astype(np.float32)


def robust_std(a: np.ndarray) -> float:
    """Standard deviation of the majority (the paper), ignoring the ink: 1.4826 * MAD."""
    s = _sample(a)
    med = np.median(s)
    return float(np.median(np.abs(s - med))) * 1.4826


def ink_mask(ink: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Threshold the ink signal; return (soft ink in [0, 1], mask, full-ink level).

    The level is a high percentile of the pixels clearly above the noise (stroke centres);
    the mask is everything above half of it. The soft ink keeps the anti-aliased grey levels
    (MNIST digits are not binary): stretched so stroke centres reach ~1, noise floor at 0.
    """
    floor = max(NOISE_K * noise, MIN_CONTRAST)
    strong = ink[ink > floor]
    if strong.size < MIN_EXTENT_PIXELS:
        return np.zeros_like(ink), np.zeros(ink.shape, bool), 0.0
    level = float(np.percentile(strong, INK_LEVEL_PERCENTILE))
    mask = ink > max(MASK_FRACTION * level, floor)
    lo = min(2.0 * noise, 0.5 * MASK_FRACTION * level)
    soft = np.clip((ink - lo) / max(level - lo, 1e-6), 0.0, 1.0)
    return soft.astype(np.float32), mask, level


def remove_specks(mask: np.ndarray, fraction: float = SPECK_FRACTION) -> np.ndarray:
    """Drop connected components smaller than `fraction` of the largest one."""
    labels, n = ndi.label(mask, structure=EIGHT)
    if n <= 1:
        return mask
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    keep = areas >= fraction * areas.max()
    keep[0] = False
    return keep[labels]


def normalise(
    image: np.ndarray,
    *,
    max_pixels: int = WORK_PIXELS,
    speck_fraction: float = SPECK_FRACTION,
    debug: dict[str, np.ndarray] | None = None,
) -> InkMap:
    """A whole image -> InkMap: ink bright on black, lighting and noise removed, plus its mask."""
    grey = to_gray(image)
    if debug is not None:
        debug["0_input"] = grey
    grey, scale = reduce_resolution(grey, max_pixels)
    noise = estimate_noise(grey)
    grey = denoise(grey, noise)
    if debug is not None:
        debug["1_gray"] = grey
    background = estimate_background(grey)
    dark = ink_is_dark(grey, background, noise)
    ink = flatten(grey, background, dark)
    if debug is not None:
        debug["2_background"] = np.broadcast_to(np.float32(background), grey.shape).copy()
        debug["3_flattened"] = np.clip(ink, 0.0, 1.0)
    # Relative darkness scales the noise by 1/paper level; measure it on the ink signal itself.
    bg_noise = robust_std(ink)
    soft, mask, level = ink_mask(ink, bg_noise)
    if mask.any() and speck_fraction > 0:
        mask = remove_specks(mask, speck_fraction)
    if mask.any():
        # Keep the anti-aliased edges next to the strokes, drop everything else (noise, specks).
        near = ndi.binary_dilation(mask, structure=EIGHT, iterations=MASK_MARGIN)
        soft = soft * near
    if debug is not None:
        debug["4_ink"] = soft
        debug["5_mask"] = mask.astype(np.float32)
    return InkMap(ink=soft, mask=mask, scale=scale, level=level, noise=bg_noise)


# ============================================================================================
# One digit's ink -> MNIST 28x28
# ============================================================================================


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), end-exclusive, of the True pixels; None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


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


def resize(a: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased float resize (Lanczos: sharp like MNIST, ringing clipped away)."""
    if a.shape == (height, width):
        return a
    out = Image.fromarray(np.ascontiguousarray(a, np.float32)).resize(
        (width, height), Image.Resampling.LANCZOS
    )
    return np.clip(np.asarray(out), 0.0, 1.0)


def _fit(a: np.ndarray, long_side: int) -> np.ndarray:
    h, w = a.shape
    s = long_side / max(h, w)
    return resize(a, max(1, round(w * s)), max(1, round(h * s)))


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: ink area per unit of stroke length (half the outline)."""
    area = int(mask.sum())
    if area == 0:
        return 0.0
    outline = int((mask & ~ndi.binary_erosion(mask, structure=EIGHT)).sum())
    return area / max(outline / 2.0, 1.0)


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius + radius  # slightly fuller than a strict disk


def normalise_stroke(crop: np.ndarray) -> np.ndarray:
    """Bring an unusually thin or thick pen into MNIST's range of stroke widths.

    Measured with the digit's long side at STROKE_SCALE px; returns the crop unchanged when
    the width is already within STROKE_RANGE, else the adjusted digit at that scale. A very
    thin pen would otherwise become faint grey hairlines at 28x28.
    """
    work = _fit(crop, STROKE_SCALE)
    ratio = stroke_width(work > 0.5) / STROKE_SCALE
    low, high = STROKE_RANGE
    if low <= ratio <= high or ratio == 0.0:
        return crop
    radius = round(abs(STROKE_TARGET - ratio) * STROKE_SCALE / 2)
    if ratio > high:  # thinning must not erase strokes: keep at least a third of the width
        radius = min(radius, int(ratio * STROKE_SCALE / 3))
    if radius < 1:
        return crop
    pad = np.pad(work, radius + 1)
    if ratio < low:
        out = ndi.grey_dilation(pad, footprint=_disk(radius))
    else:
        out = ndi.grey_erosion(pad, footprint=_disk(radius))
    box = bounding_box(out >= FRINGE)
    if box is None:
        return crop
    y0, y1, x0, x1 = box
    return out[y0:y1, x0:x1]


def normalise_contrast(digit: np.ndarray) -> np.ndarray:
    """Stretch so stroke centres reach 1.0 like MNIST's, and the faintest pixels are exactly 0."""
    inked = digit[digit > 0.1]
    if inked.size:
        level = float(np.percentile(inked, OUTPUT_LEVEL_PERCENTILE))
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

    A blank image gives all zeros; call `has_digit` to tell "no digit" apart. With a `debug`
    dict, every stage's image is stored in it, in order ("0_input" ... "8_centered").
    """
    inkmap = normalise(image, debug=debug)
    return to_mnist(inkmap.ink, inkmap.mask, debug=debug)


# ============================================================================================
# "Is there a digit?"
# ============================================================================================


@dataclass(frozen=True)
class InkStats:
    """What the ink looks like, for deciding "no digit" without a network."""

    snr: float  # full-ink level / background noise
    level: float  # full-ink level (contrast against the paper)
    ink_fraction: float  # share of the image that is ink
    extent: int  # longest side of the ink's bounding box, working pixels
    extent_fraction: float  # ... as a fraction of the image's longest side
    stroke_width: float  # mean stroke width, working pixels

    @property
    def elongation(self) -> float:
        """Extent over stroke width: a digit is made of strokes, a dot or a stain is not."""
        return self.extent / self.stroke_width if self.stroke_width > 0 else 0.0


def ink_stats(image: np.ndarray | InkMap) -> InkStats:
    """Measure the ink of an image (or of an already computed InkMap)."""
    inkmap = image if isinstance(image, InkMap) else normalise(image)
    mask = inkmap.mask
    box = bounding_box(mask)
    if box is None:
        return InkStats(0.0, inkmap.level, 0.0, 0, 0.0, 0.0)
    y0, y1, x0, x1 = box
    extent = max(y1 - y0, x1 - x0)
    sub = mask[y0:y1, x0:x1]
    return InkStats(
        snr=inkmap.level / inkmap.noise if inkmap.noise > 0 else math.inf,
        level=inkmap.level,
        ink_fraction=float(sub.sum()) / mask.size,
        extent=extent,
        extent_fraction=extent / max(mask.shape),
        stroke_width=stroke_width(np.pad(sub, 1)),
    )


def looks_like_digit(stats: InkStats) -> bool:
    """The "no digit" rule: enough contrast over the noise, big enough, made of strokes."""
    return (
        stats.extent > 0
        and stats.level >= MIN_CONTRAST
        and stats.snr >= MIN_SNR
        and stats.extent >= MIN_EXTENT_PIXELS
        and stats.extent_fraction >= MIN_EXTENT_FRACTION
        and stats.elongation >= MIN_ELONGATION
        and stats.ink_fraction <= MAX_INK_FRACTION
    )


def has_digit(image: np.ndarray | InkMap) -> bool:
    """False for a blank page, noise, a speck, an evenly or unevenly lit empty sheet."""
    return looks_like_digit(ink_stats(image))
