"""Turn the images people have into MNIST's format: a 28x28 float digit, ink bright on black.

Try: `python -c "from digitrec.preprocessing import load_image, preprocess;
print(preprocess(load_image('digit.png')).round(1))"`

The pipeline, one small function per stage:

    load_image   any common file -> float32 grey [0, 1]: EXIF orientation, alpha, 16-bit, palette
    normalise    working resolution -> denoise -> background (lighting) -> polarity -> ink map + mask
    to_mnist     crop to the ink -> stroke width -> fit the 20x20 box -> contrast -> centre of mass
    has_digit    "is there a digit at all?", decided from the ink map without a network

`preprocess` is `normalise` followed by `to_mnist`; segmentation reuses both halves.
`normalise` is `ink_signal` (up to the polarity) then `threshold_ink`: the "no digit" check
and segmentation threshold one signal differently (segmentation.stats_and_inkmap).
MNIST's format, measured on its training set: background exactly 0, stroke centres ~1.0, the
non-zero pixels fit a 20x20 box (longest side exactly 20), centre of mass at (14.0, 14.0).
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage as ndi

from digitrec.constants import DIGIT_BOX, IMAGE_SIZE
from digitrec.errors import DigitrecError

# --- input limits ---------------------------------------------------------------------------
MAX_BYTES = 64 * 2**20  # larger files are refused before decoding
MAX_PIXELS = 40_000_000  # decompression-bomb cap, checked from the header before decoding
MAX_ASPECT = 40  # a 20-digit number cropped tightly is ~16:1; a 50000x50 strip is refused
FORMATS = "PNG, JPEG, BMP, TIFF, WebP or GIF"
OBJECT_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")  # "<_io.BytesIO object at 0x7f...>"

# --- working resolution ---------------------------------------------------------------------
WORK_PIXELS = 640 * 640  # single digits: larger images are box-averaged down to about this
CLEAN_WORK_PIXELS = 100 * 100  # ... and noise-free ones (canvas exports) to about this,
CLEAN_MIN_EXTENT = 60  # ... as long as the digit keeps this many pixels
BACKGROUND_GRID = 48  # the lighting estimate works on a copy at most this many pixels wide
BACKGROUND_WINDOW = 0.5  # median window for the lighting estimate, as a fraction of the grid

# --- thresholds (grey levels are in [0, 1]) -------------------------------------------------
FLAT_BORDER_SPREAD = 0.06  # border p10..p90 below this: evenly lit, one background level
POLARITY_PEAK = 0.3  # polarity counts pixels deviating by this fraction of the strongest one
NOISE_TO_DENOISE = 0.01  # pixel noise above this gets a 3x3 median filter
NOISE_K = 4.0  # ink must stand this many background standard deviations out
MIN_CONTRAST = 0.1  # never ink: differences from the paper smaller than this
INK_LEVEL_PERCENTILE = 90  # "full ink" is this percentile of the clearly-inked pixels
MASK_FRACTION = 0.5  # a pixel is ink when above this fraction of the full ink level ...
HYSTERESIS_FRACTION = 0.25  # ... or above this one and connected to such pixels
MASK_MARGIN = 2  # the soft ink keeps anti-aliased edges this many pixels around the mask
SPECK_FRACTION = 0.05  # components smaller than this fraction of the largest one are specks
STAT_SAMPLES = 8_000  # statistics are taken on a strided sample of about this many pixels

# --- the MNIST format (measured on the training set) ----------------------------------------
MASS_CENTER = (14.0, 14.0)  # mean centre of mass (row, column) of MNIST digits
FRINGE = 0.05  # soft ink below this does not count for the bounding box
REDUCING_GAP = 2.0  # large downscales first box-reduce by an integer factor (Pillow): faster
STROKE_SCALE = 4 * DIGIT_BOX  # stroke width is measured with the digit's long side at 80 px
STROKE_GAIN = 0.7  # stroke_width() reads ~70% of a drawn width change (8-connected outline)
STROKE_RANGE = (0.057, 0.17)  # ~2nd..98th percentile of MNIST: outside it, the pen is adjusted
STROKE_RETRIES = 2  # ... with at most this many larger disks when the first falls short
OUTPUT_LEVEL_PERCENTILE = 90  # MNIST: 90th percentile of a digit's ink pixels is ~0.99
ZERO_BELOW = 1.5 / 255  # output pixels this faint are set to exactly 0, as in MNIST

# --- "is there a digit?" --------------------------------------------------------------------
MIN_SNR = 8.0  # full ink level over the background's standard deviation
MIN_INK_LEVEL = 0.22  # full ink at least this much darker (or brighter) than the paper; an
#                       empty sheet's leftover shadow edges stay below ~0.18, pens above ~0.3
MIN_EXTENT_PIXELS = 6  # the ink's bounding box must be at least this long ...
MIN_EXTENT_FRACTION = 0.03  # ... and this fraction of the image's longest side
MIN_ELONGATION = 2.7  # extent / stroke width: a dot or a stain is ~2.0-2.5, digits 3+
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
            if _fast_png(img):
                # libspng decodes in about 40% of Pillow's time (0.25 against 0.6 ms for a
                # 280x280 canvas drawing): the largest single cost of recognising one.
                return _pil_to_gray(Image.fromarray(_spng().load(data, format=img.mode)))
            img.load()
            return _pil_to_gray(_upright(img))
    except DigitrecError:
        raise
    except Image.DecompressionBombError:
        raise DigitrecError(
            f"{label}: the image has too many pixels (limit {MAX_PIXELS:,}); resize it first"
        ) from None
    except UnidentifiedImageError:
        # Pillow's own text names the stream object ("<_io.BytesIO object at 0x...>"): useless.
        raise DigitrecError(
            f"{label}: cannot read: not a {FORMATS} image (cannot identify the format)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on bad input
        # OSError (truncated), ValueError, SyntaxError, EOFError, struct.error, IndexError, ...
        # all mean the same thing to the user: a damaged file.
        raise DigitrecError(
            f"{label}: cannot read this image, the file is damaged ({_reason(exc)}); "
            f"give a valid {FORMATS} file"
        ) from None


@functools.cache
def _spng():
    """pyspng (libspng) when installed (it has wheels for the common platforms), else None."""
    try:
        import pyspng
    except ImportError:
        return None
    return pyspng


def _fast_png(img: Image.Image) -> bool:
    """Can libspng decode this PNG to exactly the pixels Pillow would? 8-bit grey, RGB or RGBA
    without a transparent colour (tRNS) or EXIF orientation; the rest goes through Pillow."""
    return (img.format == "PNG" and img.mode in ("L", "RGB", "RGBA") and "transparency" not in img.info
            and "exif" not in img.info and _spng() is not None)


def _reason(exc: Exception) -> str:
    """A decoder's error as a short phrase, without the object reprs some of them include."""
    text = OBJECT_REPR.sub("", str(exc)).strip(" :")
    return text or type(exc).__name__


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
        ImageOps.exif_transpose(img, in_place=True)  # in place: no copy when already upright
    except Exception:  # noqa: BLE001 - a broken EXIF block should not make the image unreadable
        pass
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
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        return composite_alpha(_unit(rgba.convert("L")), _unit(rgba.getchannel("A")))
    return _unit(img if mode == "L" else img.convert("L"))


def _unit(img: Image.Image) -> np.ndarray:
    """An 8-bit single-band image -> float32 in [0, 1], converted and scaled in one pass."""
    return np.multiply(np.asarray(img), np.float32(1 / 255), dtype=np.float32)


def composite_alpha(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fill transparent pixels with a background that keeps the drawing visible.

    When few pixels are opaque they are the strokes (a canvas export): transparency becomes
    white behind dark strokes and black behind light ones. When most are opaque, they are
    mostly paper (a photo with transparent corners): transparency becomes the paper's level.
    """
    if alpha.min() >= 1.0:
        return grey
    opaque = alpha > 0.5
    if np.count_nonzero(opaque) * 2 < opaque.size:
        weight = float(alpha.sum())
        ink = float(np.dot(grey.ravel(), alpha.ravel())) / weight if weight > 0 else 0.0
        fill = 1.0 if ink < 0.5 else 0.0
    else:
        fill = float(np.median(grey[opaque]))
    out = grey - np.float32(fill)  # grey * alpha + fill * (1 - alpha), with fewer temporaries
    out *= alpha
    out += np.float32(fill)
    return out.astype(np.float32, copy=False)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] -> uint8 0..255, rounded and clipped (for PNG files and uint8 sets)."""
    return np.clip(np.asarray(image) * 255 + 0.5, 0, 255).astype(np.uint8)


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
        f = a.astype(np.float32) * np.float32(1 / 255)
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif a.dtype == bool:
        f = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.number):
        f = a.astype(np.float32, copy=False)
        lo, top = float(f.min()), float(f.max())
        if a.ndim == 2 and lo >= 0.0 and top <= 1.0:  # already float grey in [0, 1]: no copy
            return np.ascontiguousarray(f)
        f = np.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
        top = float(f.max())
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
    # The mask's 8-connected pieces numbered (0 elsewhere; numbers need not be consecutive),
    # when thresholding had them anyway: ink_stats then need not label the mask again.
    labels: np.ndarray | None = None


def reduce_resolution(grey: np.ndarray, factor: int) -> np.ndarray:
    """Box-average by an integer factor (area averaging: keeps ink mass, lowers noise).

    The last rows and columns that do not fill a whole block are dropped, so working pixel
    (y, x) is exactly input block [y*factor, (y+1)*factor) x [x*factor, (x+1)*factor).
    """
    if factor <= 1:
        return grey
    h, w = grey.shape[0] // factor, grey.shape[1] // factor
    if h == 0 or w == 0:
        return grey
    if factor > 4:  # Pillow's C loop beats many numpy slices
        whole = np.ascontiguousarray(grey[: h * factor, : w * factor])
        return np.asarray(Image.fromarray(whole).reduce(factor))
    blocks = [
        grey[dy : h * factor : factor, dx : w * factor : factor]
        for dy in range(factor)
        for dx in range(factor)
    ]
    out = np.add(blocks[0], blocks[1], dtype=np.float32)  # makes the output: no zero-filled start
    for block in blocks[2:]:
        out += block
    out *= np.float32(1.0 / (factor * factor))
    return out


def size_factor(shape: tuple[int, ...], max_pixels: int) -> int:
    """The least integer reduction factor that brings an image of `shape` to `max_pixels`;
    `working_factor` never reduces less, and only a clean image more."""
    return max(1, math.ceil(math.sqrt(shape[0] * shape[1] / max_pixels)))


def working_factor(grey: np.ndarray, noise: float, max_pixels: int) -> int:
    """The integer reduction factor for the working resolution.

    Always enough to bring the image to `max_pixels`. A clean image (a canvas export, a
    synthetic digit: no pixel noise) is reduced further, as long as its ink keeps at least
    CLEAN_MIN_EXTENT pixels: thin strokes survive, and the 2 ms budget is met.
    """
    h, w = grey.shape
    k = size_factor(grey.shape, max_pixels)
    if noise > 0:
        return k
    paper = _percentile(_border(grey), 50)
    step = 2 if h * w > CLEAN_WORK_PIXELS else 1  # a rough box is enough here
    box = bounding_box(np.abs(grey[::step, ::step] - paper) > MIN_CONTRAST)
    if box is None:
        return max(k, math.ceil(math.sqrt(h * w / CLEAN_WORK_PIXELS)))
    extent = max(box[1] - box[0], box[3] - box[2]) * step
    clean_k = min(math.ceil(math.sqrt(h * w / CLEAN_WORK_PIXELS)), extent // CLEAN_MIN_EXTENT)
    return max(k, clean_k, 1)


def _sample(a: np.ndarray) -> np.ndarray:
    """A strided sample of about STAT_SAMPLES pixels (medians of whole photos are slow)."""
    step = max(1, math.ceil(math.sqrt(a.size / STAT_SAMPLES)))
    return a[::step, ::step]


def estimate_noise(grey: np.ndarray) -> float:
    """Pixel noise (standard deviation) from neighbour differences, robust to edges."""
    h, w = grey.shape
    if w < 2:
        return 0.0
    rows = grey[:: max(1, (h * w) // STAT_SAMPLES)]  # whole rows: neighbours stay adjacent
    d = np.abs(np.diff(rows, axis=1)).ravel()
    if np.count_nonzero(d) * 2 <= d.size:  # synthetic / canvas images: mostly flat
        return 0.0
    d = d[:: max(1, d.size // STAT_SAMPLES)]
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
    border = np.sort(_border(grey))
    n = border.size - 1
    lo, mid, hi = border[n // 10], border[n // 2], border[n - n // 10]
    if hi - lo < FLAT_BORDER_SPREAD:
        return float(mid)
    h, w = grey.shape
    k = max(1, math.ceil(max(h, w) / BACKGROUND_GRID))
    small = np.asarray(Image.fromarray(grey).reduce(k)) if k > 1 else grey
    window = max(3, round(max(small.shape) * BACKGROUND_WINDOW) | 1)
    bg = ndi.median_filter(small, size=window, mode="nearest")
    bg = ndi.gaussian_filter(bg, sigma=1.0, mode="nearest")
    return np.asarray(Image.fromarray(bg).resize((w, h), Image.Resampling.BILINEAR))


def ink_is_dark(grey: np.ndarray, background: float | np.ndarray, noise: float) -> bool:
    """Polarity: is the ink darker than the paper?

    Compares the mass standing out each way, counting only pixels that deviate by at least
    POLARITY_PEAK of the strongest deviation: leftover lighting (a shadow's edge) is broad
    but weak, ink is strong. On a strided sample: a mass comparison does not need every pixel.
    """
    if isinstance(background, np.ndarray):
        background = _sample(background)
    d = _sample(grey) - background
    peak = max(float(d.max()), -float(d.min()))
    margin = max(NOISE_K * noise + MIN_CONTRAST / 2, POLARITY_PEAK * peak)
    dark = np.clip(-d - margin, 0.0, None).sum()
    bright = np.clip(d - margin, 0.0, None).sum()
    return bool(dark > bright)


def flatten(grey: np.ndarray, background: float | np.ndarray, dark: bool) -> np.ndarray:
    """The ink signal with the lighting removed: ~0 on paper (+- noise), positive on ink.

    Dark ink on paper is measured relative to the local paper brightness (reflectance ratio),
    which cancels both gradients and shadows; light ink on dark is the plain difference.
    """
    if dark:
        ink = (background - grey) / np.maximum(background, 0.05)
    else:
        ink = grey - background
    return np.asarray(ink, np.float32)


def _percentile(a: np.ndarray, q: float) -> float:
    """np.percentile without interpolation, via one partition: ~10x faster on small arrays."""
    k = min(a.size - 1, int(round(q / 100 * (a.size - 1))))
    return float(np.partition(a.ravel(), k)[k])


def robust_std(a: np.ndarray) -> float:
    """Standard deviation of the majority (the paper), ignoring the ink: 1.4826 * MAD."""
    s = _sample(a)
    if np.count_nonzero(s) * 2 < s.size:  # mostly exact zeros (a clean ink map): median = MAD = 0
        return 0.0
    med = np.median(s)
    return float(np.median(np.abs(s - med))) * 1.4826


def ink_mask(
    ink: np.ndarray,
    noise: float,
    hysteresis: float = HYSTERESIS_FRACTION,
    speck_fraction: float = SPECK_FRACTION,
) -> tuple[np.ndarray, float, float, np.ndarray | None]:
    """Threshold the ink signal; return (mask, full-ink level, low threshold, labels).

    The level is a high percentile of the pixels clearly above the noise (stroke centres);
    0 when there is no ink. The mask is hysteresis-thresholded: pixels above the low
    threshold, HYSTERESIS_FRACTION of the level, that are connected to pixels above
    MASK_FRACTION of it (`hysteresis` sets the first fraction; MASK_FRACTION disables it), so
    the faint end of a stroke stays part of the digit while faint smudges on their own do
    not. Pieces smaller than `speck_fraction` of the largest are dropped as specks.
    `labels` numbers the mask's 8-connected pieces (0 elsewhere), None when the thresholds
    needed no labelling.
    """
    floor = max(NOISE_K * noise, MIN_CONTRAST)
    strong = ink[ink > floor]
    if strong.size < MIN_EXTENT_PIXELS:
        return np.zeros(ink.shape, bool), 0.0, 0.0, None
    level = _percentile(strong, INK_LEVEL_PERCENTILE)
    high = max(MASK_FRACTION * level, floor)
    low = max(hysteresis * level, floor)
    if low >= high and speck_fraction <= 0:  # no hysteresis, no speck removal: no labelling
        return ink > low, level, low, None
    labels, n, _ = label_pieces(ink > low)
    keep = np.bincount(labels[ink > high], minlength=n + 1) > 0
    keep[0] = False
    if speck_fraction > 0 and n > 1:
        areas = piece_areas(labels, n)
        keep &= areas >= speck_fraction * areas[keep].max()
    if keep[1:].all():  # the common case: every piece is kept, no lookup
        return labels > 0, level, low, labels
    mask = keep[labels]
    labels *= mask  # the dropped pieces' numbers go, the others keep theirs
    return mask, level, low, labels


def soft_ink(ink: np.ndarray, noise: float, low: float, level: float) -> np.ndarray:
    """The ink signal's anti-aliased grey levels (MNIST digits are not binary), stretched so
    stroke centres reach ~1 with the noise floor at 0; `low` and `level` from `ink_mask`."""
    lo = min(2.0 * noise, 0.5 * low)
    return np.clip((ink - lo) / max(level - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def label_pieces(mask: np.ndarray) -> tuple[np.ndarray, int, tuple[int, int, int, int] | None]:
    """(labels, count, box): ndi.label(mask, structure=EIGHT), the same numbers, labelled within
    the mask's bounding box `box` (y0, y1, x0, x1) only: ink is a small part of most images,
    and labelling is the costliest step of a small one. Labels come in the same (raster) order
    either way."""
    labels = np.zeros(mask.shape, np.int32)
    box = bounding_box(mask)
    if box is None:
        return labels, 0, None
    y0, y1, x0, x1 = box
    inside, n = ndi.label(mask[y0:y1, x0:x1], structure=EIGHT)
    labels[y0:y1, x0:x1] = inside
    return labels, n, box


def piece_areas(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Pixels of each label 1..n (n: the largest label, found when not given), 0 at [0]: as
    np.bincount(labels.ravel()), counted over the labelled pixels only (several times faster:
    they are a small part of most images), and for one piece, the common case, just counted."""
    n = int(labels.max()) if n is None else n
    if n == 1:
        return np.array([0, np.count_nonzero(labels)])
    return np.bincount(labels[labels > 0], minlength=n + 1)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a mask by `radius` pixels (a square), with shifted ORs: fast for small radii."""
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        out = grown.copy()
        out[:, 1:] |= grown[:, :-1]
        out[:, :-1] |= grown[:, 1:]
    return out


@dataclass(frozen=True)
class InkSignal:
    """An image's ink before thresholding: the first half of `normalise`, which the ink maps
    made with different thresholds (`threshold_ink`) can share."""

    signal: np.ndarray  # float32 (h, w): ~0 (+- noise) on paper, positive on ink, lighting removed
    scale: int  # input pixels per working pixel along each axis
    noise: float  # the paper's standard deviation in the signal


def ink_signal(
    image: np.ndarray, *, max_pixels: int = WORK_PIXELS, debug: dict[str, np.ndarray] | None = None
) -> InkSignal:
    """A whole image -> its ink signal at the working resolution: denoised, lighting removed,
    ink positive whatever its polarity."""
    grey = to_gray(image)
    if debug is not None:
        debug["0_input"] = grey
    noise = estimate_noise(grey)
    scale = working_factor(grey, noise, max_pixels)
    grey = reduce_resolution(grey, scale)
    noise /= scale  # averaging k x k pixels divides independent noise by k
    grey = denoise(grey, noise)
    if debug is not None:
        debug["1_gray"] = grey
    background = estimate_background(grey)
    dark = ink_is_dark(grey, background, noise)
    ink = flatten(grey, background, dark)
    if debug is not None:
        debug["2_background"] = np.broadcast_to(np.float32(background), grey.shape).copy()
        debug["3_flattened"] = np.clip(ink, 0.0, 1.0)
    # The paper's fluctuation in the ink signal's own units (relative darkness rescales it).
    return InkSignal(signal=ink, scale=scale, noise=robust_std(ink))


def threshold_ink(
    signal: InkSignal,
    *,
    speck_fraction: float = SPECK_FRACTION,
    hysteresis: float = HYSTERESIS_FRACTION,
    debug: dict[str, np.ndarray] | None = None,
) -> InkMap:
    """An ink signal -> InkMap: the ink mask (see `ink_mask`) and the soft ink around it."""
    mask, level, low, labels = ink_mask(signal.signal, signal.noise, hysteresis, speck_fraction)
    soft = np.zeros(mask.shape, np.float32)
    box = bounding_box(mask)
    if box is not None:
        # Keep the anti-aliased edges next to the strokes, drop everything else (noise, specks):
        # only the mask's box, widened by that margin, can hold any, so only it is computed.
        (y0, y1, x0, x1), (h, w) = box, mask.shape
        near = (slice(max(0, y0 - MASK_MARGIN), min(h, y1 + MASK_MARGIN)),
                slice(max(0, x0 - MASK_MARGIN), min(w, x1 + MASK_MARGIN)))
        soft[near] = soft_ink(signal.signal[near], signal.noise, low, level)
        soft[near] *= dilate(mask[near], MASK_MARGIN)
    if debug is not None:
        debug["4_ink"] = soft
        debug["5_mask"] = mask.astype(np.float32)
    return InkMap(
        ink=soft, mask=mask, scale=signal.scale, level=level, noise=signal.noise, labels=labels
    )


def normalise(
    image: np.ndarray,
    *,
    max_pixels: int = WORK_PIXELS,
    speck_fraction: float = SPECK_FRACTION,
    hysteresis: float = HYSTERESIS_FRACTION,
    debug: dict[str, np.ndarray] | None = None,
) -> InkMap:
    """A whole image -> InkMap: ink bright on black, lighting and noise removed, plus its mask."""
    signal = ink_signal(image, max_pixels=max_pixels, debug=debug)
    return threshold_ink(signal, speck_fraction=speck_fraction, hysteresis=hysteresis, debug=debug)


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


def resize(
    a: np.ndarray, width: int, height: int, method: Image.Resampling = Image.Resampling.LANCZOS
) -> np.ndarray:
    """Anti-aliased float resize (Lanczos: sharp like MNIST, ringing clipped away)."""
    if a.shape == (height, width):
        return a
    out = Image.fromarray(np.ascontiguousarray(a, np.float32)).resize(
        (width, height), method, reducing_gap=REDUCING_GAP
    )
    return np.clip(np.asarray(out), 0.0, 1.0)


def _fit(
    a: np.ndarray, long_side: int, method: Image.Resampling = Image.Resampling.LANCZOS
) -> np.ndarray:
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
        level = _percentile(inked, OUTPUT_LEVEL_PERCENTILE)
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


# ============================================================================================
# "Is there a digit?"
# ============================================================================================


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
