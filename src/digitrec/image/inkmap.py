"""A whole image -> its ink map: working resolution, denoised, lighting removed, ink bright on black.

Try: `python -c "from digitrec.image.decode import load_image; from digitrec.image.inkmap import normalise;
m = normalise(load_image('digit.png')); print(m.ink.shape, m.level, m.noise)"`

    normalise = ink_signal (resolution -> denoise -> background -> polarity) + threshold_ink (mask)

The "no digit" check and segmentation threshold one signal differently
(`segmentation.stats_and_inkmap`). Grey levels are in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from .decode import to_gray

WORK_PIXELS = 640 * 640  # single digits: larger images are box-averaged down to about this
CLEAN_WORK_PIXELS = 100 * 100  # ... and noise-free ones (canvas exports) to about this,
CLEAN_MIN_EXTENT = 60  # ... as long as the digit keeps this many pixels
BACKGROUND_GRID = 48  # the lighting estimate works on a copy at most this many pixels wide
BACKGROUND_WINDOW = 0.5  # median window for the lighting estimate, as a fraction of the grid
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
MIN_EXTENT_PIXELS = 6  # a digit's ink is at least this long (presence.py), also when worked on smaller
EIGHT = np.ones((3, 3), bool)  # 8-connectivity for labelling


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
    blocks = [grey[dy : h * factor : factor, dx : w * factor : factor] for dy in range(factor) for dx in range(factor)]
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
    paper = nearest_rank_percentile(_border(grey), 50)
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


def nearest_rank_percentile(a: np.ndarray, q: float) -> float:
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
    level = nearest_rank_percentile(strong, INK_LEVEL_PERCENTILE)
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
        near = (
            slice(max(0, y0 - MASK_MARGIN), min(h, y1 + MASK_MARGIN)),
            slice(max(0, x0 - MASK_MARGIN), min(w, x1 + MASK_MARGIN)),
        )
        soft[near] = soft_ink(signal.signal[near], signal.noise, low, level)
        soft[near] *= dilate(mask[near], MASK_MARGIN)
    if debug is not None:
        debug["4_ink"] = soft
        debug["5_mask"] = mask.astype(np.float32)
    return InkMap(ink=soft, mask=mask, scale=signal.scale, level=level, noise=signal.noise, labels=labels)


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


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), end-exclusive, of the True pixels; None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


#                       empty sheet's leftover shadow edges stay below ~0.18, pens above ~0.3


def ink_box(inkmap: InkMap, shape: tuple[int, ...], margin: float) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1), in input pixels of an image of `shape`, around every ink pixel
    of `inkmap`, grown by `margin` times its height on each side (clipped to the image); None
    when there is no ink.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((10, 40), bool)
    >>> mask[4:6, 10:20] = True
    >>> m = InkMap(mask.astype(np.float32), mask, scale=4, level=1.0, noise=0.0)
    >>> ink_box(m, (40, 160), margin=0.5)
    (36, 12, 84, 28)
    """
    ys, xs = np.nonzero(inkmap.mask)
    if ys.size == 0:
        return None
    s = inkmap.scale
    x0, x1, y0, y1 = int(xs.min()) * s, (int(xs.max()) + 1) * s, int(ys.min()) * s, (int(ys.max()) + 1) * s
    grow = math.ceil(margin * (y1 - y0))
    return max(0, x0 - grow), max(0, y0 - grow), min(shape[1], x1 + grow), min(shape[0], y1 + grow)
