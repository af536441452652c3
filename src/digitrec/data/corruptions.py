"""The 15 MNIST-C corruptions (Mu & Gilmer 2019, arXiv:1906.02337), batched, plus cached sets.

Try: `digitrec robustness src/digitrec/assets/default.safetensors --out runs/robustness`, or
`python -c "from digitrec.data.corruptions import list_corruptions; print(list_corruptions())"`.

Each corruption takes uint8 (N, 28, 28) images (white ink on black, MNIST's format), a numpy
Generator and a severity 1-5, and returns uint8 (N, 28, 28). The formulas and the parameter
tables follow the published MNIST-C code, re-implemented with numpy/scipy and vectorised over
the batch (random draws are made per image, as MNIST-C does). `corrupt()` seeds the generator
from (seed, name), so a set is the same for a seed (numpy's Generator streams are stable).

Where this differs from the published code: pixels are rounded to uint8 (MNIST-C kept float32);
motion_blur drops the trail's last taps once their total weight is below 1e-4; fog computes
its 256x256 fractal's fine levels only around the 28x28 crop it uses (the crop's values are
exact; the scaling to [0, 1] uses the extremes of the coarse map, within a few percent).

Severity: MNIST-C used one level per corruption; that level is each corruption's default
(`MNIST_C_SEVERITY`), so `corrupt(images, name)` makes MNIST-C's version. Eleven corruptions
have MNIST-C's five-level tables (glass_blur and motion_blur used level 1, shot_noise, brightness
and fog level 5, ...). stripe, dotted_line, zigzag and canny_edges had no levels in MNIST-C;
here level 3 is MNIST-C's version, 1-2 are milder and 4-5 harsher (see each function).

`corrupted_test_set()` writes a corrupted copy of the MNIST test set as an IDX pair in a cache
folder, with a JSON sidecar holding the SHA-256 of both files; a later call reuses it only if
the checksums and the parameters still match, else it generates the set again.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

from ..constants import IMAGE_SIZE
from ..errors import DigitrecError

Corruption = Callable[[np.ndarray, np.random.Generator, int], np.ndarray]
DEFAULT_SEED = 0  # the seed of the corrupted sets `digitrec robustness` reports on

MIN_SEVERITY, MAX_SEVERITY = 1, 5
CENTRE = (IMAGE_SIZE - 1) / 2  # 13.5: MNIST-C's affine corruptions keep this point fixed
GAUSSIAN_TRUNCATE = 4.0  # skimage.filters.gaussian's (and scipy's) kernel radius in sigmas
CHUNK = 512  # images per step where a step needs large temporaries (fog's fractal maps)

# ---- helpers ------------------------------------------------------------------------------------


def _as_float(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 0..1 (a new array: corruptions may write into it)."""
    return images.astype(np.float32) * np.float32(1 / 255)


def _as_uint8(x: np.ndarray) -> np.ndarray:
    """float 0..1 -> uint8 0..255, clipped and rounded."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest") -> np.ndarray:
    """Blur each image of a (N, H, W) batch; never across images. Mode "nearest" is
    skimage.filters.gaussian's default, which MNIST-C used."""
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode=mode, truncate=GAUSSIAN_TRUNCATE)


def _warp(x: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Bilinear inverse-map warp of a (N, H, W) float batch, as skimage.transform.warp(order=1,
    mode="constant", cval=0): output pixel (col, row) samples the input at
    matrix[n] @ (col, row) + offset[n]. matrix: (N, 2, 2), offset: (N, 2)."""
    n, h, w = x.shape
    # A one-pixel zero border: samples outside the image fade to cval 0 as skimage's do, and
    # coordinates clipped onto the border read zeros.
    flat = np.pad(x, ((0, 0), (1, 1), (1, 1))).reshape(-1)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    m, o = matrix.astype(np.float32), offset.astype(np.float32)
    src_c = np.clip(m[:, 0, 0, None, None] * cols + m[:, 0, 1, None, None] * rows + o[:, 0, None, None] + 1, 0, w + 1)
    src_r = np.clip(m[:, 1, 0, None, None] * cols + m[:, 1, 1, None, None] * rows + o[:, 1, None, None] + 1, 0, h + 1)
    c0, r0 = src_c.astype(np.int32), src_r.astype(np.int32)  # floor: both are >= 0
    fc, fr = src_c - c0, src_r - r0
    dc, dr = (c0 < w + 1).astype(np.int32), (r0 < h + 1) * np.int32(w + 2)  # the next column/row, or stay on the border
    index = np.int64 if n * (h + 2) * (w + 2) >= 2**31 else np.int32  # int32 is faster where it fits
    i00 = (np.arange(n, dtype=index) * index((h + 2) * (w + 2)))[:, None, None] + r0.astype(index) * index(w + 2) + c0
    top = flat.take(i00) * (1 - fc) + flat.take(i00 + dc) * fc
    bottom = flat.take(i00 + dr) * (1 - fc) + flat.take(i00 + dr + dc) * fc
    return top * (1 - fr) + bottom * fr


def _centred_affine(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Warp by `matrix` (N, 2, 2) about the image centre, as MNIST-C's shear/rotate/scale do."""
    offset = CENTRE * (1 - matrix.sum(axis=2))  # keeps (13.5, 13.5) where it is
    return _warp(x, matrix, offset)


def _random_signs(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=size)


def _line(c0: np.ndarray, r0: np.ndarray, c1: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """MNIST-C's `line_from_points` for a batch: a soft line through (c0, r0)-(c1, r1), drawn
    over the columns floor(c0) to ceil(c1); intensity log(1 - d/2.3) + 1 at vertical distance d.
    All arguments (N,); returns (N, 28, 28) in [0, 1]."""
    reach = np.float32(2.3)  # pixels: where the intensity falls to 0
    c0, r0, c1, r1 = (np.asarray(v, dtype=np.float32)[:, None, None] for v in (c0, r0, c1, r1))
    cols = np.arange(IMAGE_SIZE, dtype=np.float32)[None, None, :]
    rows = np.arange(IMAGE_SIZE, dtype=np.float32)[None, :, None]
    vertical = c1 == c0  # MNIST-C draws nothing for a vertical segment
    slope = (r1 - r0) / np.where(vertical, np.float32(1), c1 - c0)
    dist = np.minimum(np.abs(rows - (slope * (cols - c0) + r0)), reach * np.float32(1 - 1e-6))
    line = np.clip(np.log1p(-dist / reach) + 1, 0, 1)
    outside = (cols < np.floor(c0)) | (cols >= np.ceil(c1)) | vertical
    return np.where(outside, np.float32(0), line)


def _pick(table: tuple[Any, ...], severity: int) -> Any:
    return table[severity - 1]


# ---- the corruptions ----------------------------------------------------------------------------
# Parameter tables are MNIST-C's, indexed by severity 1-5.

SHOT_NOISE = (60, 25, 12, 5, 3)  # photons per unit intensity: fewer is noisier
IMPULSE_NOISE = (0.03, 0.06, 0.09, 0.17, 0.27)  # fraction of pixels set to 0 or 1
GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # sigma, max shift, passes
MOTION_BLUR = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # ImageMagick radius, sigma
MOTION_ANGLE = 45.0  # degrees: the direction is uniform in +-MOTION_ANGLE
MOTION_TAIL = 1e-4  # trailing taps with less total weight are dropped (see motion_blur)
SHEAR = (0.2, 0.4, 0.6, 0.8, 1.0)  # radians, random sign
SCALE = (0.9, 0.8, 0.7, 0.6, 0.5)  # the digit shrinks to this size about the centre
ROTATE = (0.2, 0.4, 0.6, 0.8, 1.0)  # radians, random sign
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)  # added to HSV value
TRANSLATE = (1, 2, 3, 4, 5)  # pixels along each axis, random signs
FOG = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))  # fog strength, fractal decay
SPATTER = (
    (0.65, 0.3, 4, 0.69, 0.6),
    (0.65, 0.3, 3, 0.68, 0.6),
    (0.65, 0.3, 2, 0.68, 0.5),
    (0.65, 0.3, 1, 0.65, 1.5),
    (0.67, 0.4, 1, 0.65, 1.5),
)  # liquid mean, std, blur, threshold, blur
SPATTER_CUTOFF = 0.8  # mask values below this are dropped
MUD = 63 / 255  # the spatter's grey
FRACTAL_SIZE = 256  # MNIST-C's plasma fractal is 256x256; its top-left 28x28 is used
FRACTAL_WIBBLE = 100.0

# Our levels for the corruptions MNIST-C applied at one strength only (level 3 = MNIST-C's).
STRIPE = (3, 5, 7, 9, 11)  # columns inverted at each side; MNIST-C: 7
LINE_INTENSITY = (0.5, 0.75, 1.0, 1.0, 1.0)  # dotted_line/zigzag: peak brightness of a line
LINE_COUNT = (1, 1, 1, 2, 3)  # dotted_line/zigzag: lines drawn
CANNY_SIGMA = (1.0, 1.0, 1.0, 1.5, 2.0)  # smoothing before the gradient; skimage's default 1
CANNY_KEEP = (2 / 3, 1 / 3, 0.0, 0.0, 0.0)  # fraction of the original image kept under the edges
CANNY_LOW, CANNY_HIGH = 0.1, 0.2  # hysteresis thresholds: skimage.feature.canny's defaults
ZIGZAG_COLS = (2, 25)  # a zigzag runs between these columns
ZIGZAG_RISE = 5  # its end row differs from its start row by -5..4
ZIGZAG_TOOTH = 2.0  # tooth length and height (MNIST-C's a and b)


def shot_noise(images: np.ndarray, rng: np.random.Generator, severity: int = 5) -> np.ndarray:
    """Poisson noise: each pixel is a photon count with mean intensity * c, divided by c."""
    c = _pick(SHOT_NOISE, severity)
    return _as_uint8(rng.poisson(_as_float(images) * c) / c)


def impulse_noise(images: np.ndarray, rng: np.random.Generator, severity: int = 4) -> np.ndarray:
    """Salt and pepper: a fraction of the pixels, chosen at random, set to white or black alike."""
    x = _as_float(images)
    flipped = rng.random(x.shape) < _pick(IMPULSE_NOISE, severity)
    salt = rng.random(x.shape) < 0.5
    x[flipped & salt] = 1.0
    x[flipped & ~salt] = 0.0
    return _as_uint8(x)


def glass_blur(images: np.ndarray, rng: np.random.Generator, severity: int = 1) -> np.ndarray:
    """Blur, swap pixels with random neighbours (bottom-right to top-left, in passes), blur again.

    The swaps are sequential within an image, so the loop runs over pixel positions (26x26 per
    pass at MNIST-C's level) and each step swaps in every image of the batch at once."""
    sigma, delta, passes = _pick(GLASS_BLUR, severity)
    # MNIST-C called skimage's gaussian(multichannel=True) on a 2-D image, which takes the
    # columns for colour channels: both blurs run down the columns only. Kept, as published.
    blur = (0, sigma, 0)
    # MNIST-C truncates the first blur to uint8 before shuffling.
    x = (ndimage.gaussian_filter(_as_float(images), blur, mode="nearest", truncate=GAUSSIAN_TRUNCATE) * 255).astype(
        np.uint8
    )
    n = len(x)
    positions = range(IMAGE_SIZE - delta, delta, -1)
    for _ in range(passes):
        swap = rng.random((len(positions), len(positions), n)) < 0.5
        # dx, dy in [-d, d), as MNIST-C's randint(-d, d); int8 keeps 10,000 images' draws small.
        shift = rng.integers(-delta, delta, size=(len(positions), len(positions), 2, n), dtype=np.int8)
        for i, h in enumerate(positions):
            for j, w in enumerate(positions):
                k = np.flatnonzero(swap[i, j])
                h2 = h + shift[i, j, 1, k].astype(np.intp)
                w2 = w + shift[i, j, 0, k].astype(np.intp)
                here = x[k, h, w]
                x[k, h, w] = x[k, h2, w2]
                x[k, h2, w2] = here
    return _as_uint8(
        ndimage.gaussian_filter(x.astype(np.float32) / 255, blur, mode="nearest", truncate=GAUSSIAN_TRUNCATE)
    )


def motion_blur(images: np.ndarray, rng: np.random.Generator, severity: int = 1) -> np.ndarray:
    """ImageMagick's motion blur, as MNIST-C called it: a one-sided Gaussian trail of 2 * radius
    + 1 taps along a random direction within +-45 degrees, edge pixels repeated beyond the border."""
    radius, sigma = _pick(MOTION_BLUR, severity)
    taps = np.arange(2 * radius + 1)
    weights = np.exp(-(taps**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    angle = np.deg2rad(rng.uniform(-MOTION_ANGLE, MOTION_ANGLE, len(images)))
    x = _as_float(images)
    rows = np.arange(IMAGE_SIZE)[None, :, None]
    cols = np.arange(IMAGE_SIZE)[None, None, :]
    k = np.arange(len(x))[:, None, None]
    out = np.zeros_like(x)
    # Far down the trail the weights are tiny: dropping a tail of total weight below
    # MOTION_TAIL changes no pixel by more than a fortieth of a grey level.
    tail = np.cumsum(weights[::-1])[::-1]
    for tap, weight in zip(taps[tail >= MOTION_TAIL], weights[tail >= MOTION_TAIL]):
        # ImageMagick rounds each tap's offset with ceil(v - 0.5).
        dx = np.ceil(tap * np.cos(angle) - 0.5).astype(np.intp)[:, None, None]
        dy = np.ceil(tap * np.sin(angle) - 0.5).astype(np.intp)[:, None, None]
        out += weight * x[k, np.clip(rows + dy, 0, IMAGE_SIZE - 1), np.clip(cols + dx, 0, IMAGE_SIZE - 1)]
    return _as_uint8(out)


def shear(images: np.ndarray, rng: np.random.Generator, severity: int = 2) -> np.ndarray:
    """Horizontal shear about the centre by an angle of +-c radians (skimage's AffineTransform)."""
    c = _pick(SHEAR, severity) * _random_signs(rng, len(images))
    matrix = np.zeros((len(images), 2, 2))
    matrix[:, 0, 0] = 1.0
    matrix[:, 0, 1] = -np.sin(c)
    matrix[:, 1, 1] = np.cos(c)
    return _as_uint8(_centred_affine(_as_float(images), matrix))


def scale(images: np.ndarray, rng: np.random.Generator, severity: int = 3) -> np.ndarray:
    """Shrink the digit about the centre (no randomness: MNIST-C's scale is fixed per level)."""
    matrix = np.broadcast_to(np.eye(2) / _pick(SCALE, severity), (len(images), 2, 2))
    return _as_uint8(_centred_affine(_as_float(images), matrix))


def rotate(images: np.ndarray, rng: np.random.Generator, severity: int = 2) -> np.ndarray:
    """Rotation about the centre by +-c radians."""
    c = _pick(ROTATE, severity) * _random_signs(rng, len(images))
    cos, sin = np.cos(c), np.sin(c)
    matrix = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)
    return _as_uint8(_centred_affine(_as_float(images), matrix))


def brightness(images: np.ndarray, rng: np.random.Generator, severity: int = 5) -> np.ndarray:
    """Add c to the HSV value. MNIST-C goes grey -> RGB -> HSV -> RGB -> grey; for a grey image
    that round trip is exactly x + c, clipped."""
    return _as_uint8(_as_float(images) + _pick(BRIGHTNESS, severity))


def translate(images: np.ndarray, rng: np.random.Generator, severity: int = 3) -> np.ndarray:
    """Shift by c pixels along each axis, each direction chosen at random."""
    c = _pick(TRANSLATE, severity)
    offset = c * _random_signs(rng, (len(images), 2))
    matrix = np.broadcast_to(np.eye(2), (len(images), 2, 2))
    return _as_uint8(_warp(_as_float(images), matrix, offset))


def stripe(images: np.ndarray, rng: np.random.Generator, severity: int = 3) -> np.ndarray:
    """Invert the leftmost and rightmost columns (7 each at level 3, MNIST-C's)."""
    width = _pick(STRIPE, severity)
    x = images.copy()
    x[:, :, :width] = 255 - x[:, :, :width]
    x[:, :, IMAGE_SIZE - width :] = 255 - x[:, :, IMAGE_SIZE - width :]
    return x


def _diamond_square(m: np.ndarray, step: int, wibble: float, decay: float, rng: np.random.Generator) -> float:
    """MNIST-C's diamond-square passes (`fillsquares`, `filldiamonds`, wrapping at the edges)
    on a batch of maps (N, S, S), from `step` down to 2, in place; returns the next wibble."""

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        # MNIST-C's noise is wibble * U(-wibble, wibble): its amplitude is wibble squared.
        return total / 4 + wibble * wibble * (2 * rng.random(total.shape, dtype=np.float32) - 1)

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        square = corners + np.roll(corners, -1, axis=1)
        square += np.roll(square, -1, axis=2)
        m[:, half::step, half::step] = wibbled_mean(square)
        centres, corners = m[:, half::step, half::step], m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled_mean(
            centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        )
        m[:, half::step, 0::step] = wibbled_mean(
            centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        )
        step //= 2
        wibble /= decay
    return wibble


FRACTAL_COARSE = 8  # the fractal is made on the whole map down to this spacing ...
FRACTAL_MARGIN = 16  # ... then finer, only around the crop: errors from a window's edge reach 8+4+2 px


def _plasma_fractal(rng: np.random.Generator, n: int, decay: float) -> np.ndarray:
    """The top-left 28x28 of n of MNIST-C's `plasma_fractal` height maps (diamond-square on a
    256x256 torus, then scaled to [0, 1]).

    Only the crop is used, so the fine levels (spacing below 8 pixels) are computed in a
    64x64 window around it, not on the whole map: 16x less work, and the crop's values are
    those of the full algorithm. The scaling uses the extremes of the whole map on the 8-pixel
    grid and of the window; the fine levels elsewhere would move them by ~2-4% of the range."""
    size, coarse, margin = FRACTAL_SIZE, FRACTAL_COARSE, FRACTAL_MARGIN
    grid = np.zeros((n, size // coarse, size // coarse), dtype=np.float32)  # the map at multiples of 8
    wibble = _diamond_square(grid, size // coarse, FRACTAL_WIBBLE, decay, rng)
    span = -(-(IMAGE_SIZE + 2 * margin) // coarse) * coarse  # the window, whole grid cells
    cells = np.arange(-margin // coarse, (span - margin) // coarse) % grid.shape[1]  # wraps, as the torus does
    window = np.zeros((n, span, span), dtype=np.float32)
    window[:, ::coarse, ::coarse] = grid[:, cells][:, :, cells]
    _diamond_square(window, coarse, wibble, decay, rng)
    low = np.minimum(grid.min(axis=(1, 2)), window.min(axis=(1, 2)))[:, None, None]
    high = np.maximum(grid.max(axis=(1, 2)), window.max(axis=(1, 2)))[:, None, None]
    crop = window[:, margin : margin + IMAGE_SIZE, margin : margin + IMAGE_SIZE]
    return np.clip((crop - low) / (high - low), 0, 1)


def fog(images: np.ndarray, rng: np.random.Generator, severity: int = 5) -> np.ndarray:
    """Add a plasma-fractal haze of strength c, then scale so the brightest ink stays as bright
    as it was relative to the haze."""
    strength, decay = _pick(FOG, severity)
    x = _as_float(images)
    out = np.empty_like(x)
    for start in range(0, len(x), CHUNK):  # a 256x256 map per image: bounded memory
        part = x[start : start + CHUNK]
        brightest = part.max(axis=(1, 2), keepdims=True)
        hazy = part + strength * _plasma_fractal(rng, len(part), decay)
        out[start : start + CHUNK] = hazy * brightest / (brightest + strength)
    return _as_uint8(out)


def spatter(images: np.ndarray, rng: np.random.Generator, severity: int = 4) -> np.ndarray:
    """Mud: blobs of blurred, thresholded Gaussian noise painted over the image in dark grey."""
    mean, std, blur, threshold, mask_blur = _pick(SPATTER, severity)
    x = _as_float(images)
    liquid = _gaussian(rng.normal(mean, std, x.shape).astype(np.float32), blur)
    mask = _gaussian((liquid > threshold).astype(np.float32), mask_blur)
    mask[mask < SPATTER_CUTOFF] = 0
    return _as_uint8(x * (1 - mask) + MUD * mask)


def _random_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, IMAGE_SIZE - 1, n).astype(np.float64)  # MNIST-C: randint(0, 27)


def dotted_line(images: np.ndarray, rng: np.random.Generator, severity: int = 3) -> np.ndarray:
    """A dashed line (2 columns on, 2 off) from a random row at the left edge to a random row at
    the right. Levels: 1-2 draw it fainter, 4-5 draw two or three lines."""
    x = _as_float(images)
    n = len(x)
    dash_off = (np.arange(IMAGE_SIZE) // 2) % 2 == 0  # MNIST-C blanks columns 0-1, 4-5, ...
    for _ in range(_pick(LINE_COUNT, severity)):
        line = _line(np.zeros(n), _random_rows(rng, n), np.full(n, IMAGE_SIZE - 1.0), _random_rows(rng, n))
        line[:, :, dash_off] = 0
        x = np.clip(x + _pick(LINE_INTENSITY, severity) * line, 0, 1)
    return _as_uint8(x)


def _zigzag_points(rng: np.random.Generator, n: int) -> np.ndarray:
    """MNIST-C's zigzag vertices for n images: (n, points, 2) as (col, row)."""
    a = b = ZIGZAG_TOOTH
    c0, c1 = ZIGZAG_COLS
    r0 = _random_rows(rng, n)
    r1 = r0 + rng.integers(-ZIGZAG_RISE, ZIGZAG_RISE, n)
    theta = np.arctan((r1 - r0) / (c1 - c0))
    length = (c1 - c0) / np.cos(theta)
    teeth = ((length - a) // (2 * a)).astype(int) + 1
    if teeth.min() != teeth.max():  # fixed end columns and a small rise: never happens
        raise AssertionError(f"zigzags of different tooth counts: {sorted(set(teeth.tolist()))}")
    i = np.arange(teeth[0])
    pts = np.zeros((n, teeth[0] + 2, 2))
    pts[:, 1:-1, 0] = (2 * i + 1) * a
    pts[:, 1:-1, 1] = (-1.0) ** i * b
    # MNIST-C's last vertex, kept as published: (length, last row / (2 * the leftover length)).
    # Without leftover it adds no vertex: repeating the previous one draws nothing.
    full = 2 * a * (length // (2 * a))
    leftover = length - full
    last_row = pts[:, -2, 1]
    pts[:, -1, 0] = np.where(leftover != 0, length, pts[:, -2, 0])
    pts[:, -1, 1] = np.where(leftover != 0, last_row / (2 * np.where(leftover != 0, leftover, 1)), last_row)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    cols = cos * pts[..., 0] - sin * pts[..., 1] + c0
    rows = sin * pts[..., 0] + cos * pts[..., 1] + r0[:, None]
    return np.stack([cols, rows], axis=-1)


def zigzag(images: np.ndarray, rng: np.random.Generator, severity: int = 3) -> np.ndarray:
    """A zigzag line (teeth 2 pixels long and high) across the image at a random height and
    slope. Levels: 1-2 draw it fainter, 4-5 draw two or three."""
    x = _as_float(images)
    for _ in range(_pick(LINE_COUNT, severity)):
        pts = _zigzag_points(rng, len(x))
        for s in range(1, pts.shape[1]):
            segment = _line(pts[:, s - 1, 0], pts[:, s - 1, 1], pts[:, s, 0], pts[:, s, 1])
            x = np.clip(x + _pick(LINE_INTENSITY, severity) * segment, 0, 1)
    return _as_uint8(x)


def canny(x: np.ndarray, sigma: float = 1.0, low: float = CANNY_LOW, high: float = CANNY_HIGH) -> np.ndarray:
    """Canny edges of a (N, H, W) float batch in [0, 1], as skimage.feature.canny computes them:
    Gaussian smoothing (zero beyond the border, renormalised), Sobel gradients, non-maximum
    suppression interpolated between the two neighbours along the gradient, hysteresis with
    8-connected regions. Border pixels are never edges. Returns a bool (N, H, W)."""
    # Smoothing with zeros outside, divided by the smoothed all-ones image: no dark rim.
    bleed = _gaussian(np.ones(x.shape[1:], np.float32)[None], sigma, mode="constant")
    smooth = _gaussian(x.astype(np.float32), sigma, mode="constant") / (bleed + np.finfo(np.float32).eps)
    # ndimage.sobel would also smooth across the batch axis: two 1-D passes per direction instead.
    deriv, avg = np.array([-1.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0])
    gi = ndimage.correlate1d(ndimage.correlate1d(smooth, deriv, axis=1), avg, axis=2)  # down the rows
    gj = ndimage.correlate1d(ndimage.correlate1d(smooth, avg, axis=1), deriv, axis=2)  # along the columns
    mag = np.hypot(gi, gj)
    ai, aj = np.abs(gi), np.abs(gj)

    padded = np.pad(mag, ((0, 0), (1, 1), (1, 1)))

    def at(dr: int, dc: int) -> np.ndarray:
        return padded[:, 1 + dr : 1 + dr + mag.shape[1], 1 + dc : 1 + dc + mag.shape[2]]

    with np.errstate(divide="ignore", invalid="ignore"):
        w_ij = np.where(ai > 0, aj / ai, 0.0)  # where the gradient is mostly vertical
        w_ji = np.where(aj > 0, ai / aj, 0.0)  # mostly horizontal
    same = ((gi >= 0) & (gj >= 0)) | ((gi <= 0) & (gj <= 0))
    opposite = ((gi <= 0) & (gj >= 0)) | ((gi >= 0) & (gj <= 0))
    # Each sector interpolates between an axis neighbour and a diagonal one, on both sides;
    # the order (later sectors win on their shared boundaries) is skimage's.
    sectors = [
        (same & (ai >= aj), w_ij, ((1, 0), (1, 1)), ((-1, 0), (-1, -1))),
        (same & (ai <= aj), w_ji, ((0, 1), (1, 1)), ((0, -1), (-1, -1))),
        (opposite & (ai <= aj), w_ji, ((0, 1), (-1, 1)), ((0, -1), (1, -1))),
        (opposite & (ai >= aj), w_ij, ((-1, 0), (-1, 1)), ((1, 0), (1, -1))),
    ]
    local_max = np.zeros(mag.shape, dtype=bool)
    for where, w, (p_axis, p_diag), (m_axis, m_diag) in sectors:
        plus = at(*p_diag) * w + at(*p_axis) * (1 - w)
        minus = at(*m_diag) * w + at(*m_axis) * (1 - w)
        local_max = np.where(where, (plus <= mag) & (minus <= mag), local_max)
    local_max[:, [0, -1], :] = False  # skimage erodes the mask: the border is never an edge
    local_max[:, :, [0, -1]] = False

    candidates = local_max & (mag >= low)
    strong = local_max & (mag >= high)
    within_image = np.zeros((3, 3, 3), dtype=bool)
    within_image[1] = True  # 8-connected in the image plane, never across images
    labels, count = ndimage.label(candidates, structure=within_image)
    keep = np.zeros(count + 1, dtype=bool)
    keep[labels[strong]] = True
    keep[0] = False
    return keep[labels]


def canny_edges(images: np.ndarray, rng: np.random.Generator, severity: int = 3) -> np.ndarray:
    """The image replaced by its Canny edges (white on black). Levels: 1-2 keep the original
    faintly under the edges, 4-5 smooth more first (fewer, coarser edges)."""
    x = _as_float(images)
    edges = canny(x, sigma=_pick(CANNY_SIGMA, severity)).astype(np.float32)
    return _as_uint8(np.maximum(edges, _pick(CANNY_KEEP, severity) * x))


# ---- registry and entry point -------------------------------------------------------------------

CORRUPTIONS: dict[str, Corruption] = {
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "brightness": brightness,
    "translate": translate,
    "stripe": stripe,
    "fog": fog,
    "spatter": spatter,
    "dotted_line": dotted_line,
    "zigzag": zigzag,
    "canny_edges": canny_edges,
}

# The level MNIST-C used for each corruption (its functions' defaults); ours is 3 where it had none.
MNIST_C_SEVERITY: dict[str, int] = {
    "shot_noise": 5,
    "impulse_noise": 4,
    "glass_blur": 1,
    "motion_blur": 1,
    "shear": 2,
    "scale": 3,
    "rotate": 2,
    "brightness": 5,
    "translate": 3,
    "stripe": 3,
    "fog": 5,
    "spatter": 4,
    "dotted_line": 3,
    "zigzag": 3,
    "canny_edges": 3,
}

# Bump when any corruption's output changes: cached sets made by another version are regenerated.
GENERATOR_VERSION = 1


def list_corruptions() -> list[str]:
    """The corruption names, in MNIST-C's order."""
    return list(CORRUPTIONS)


def check_corruptions(names: list[str] | tuple[str, ...] | None) -> list[str]:
    """The names, checked (None: all of them); an unknown name is a DigitrecError."""
    if names is None:
        return list_corruptions()
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise DigitrecError(
            f"unknown corruption {', '.join(map(repr, unknown))}; choose from: {', '.join(CORRUPTIONS)}"
        )
    if not names:
        raise DigitrecError("no corruptions given; choose from: " + ", ".join(CORRUPTIONS))
    return list(dict.fromkeys(names))  # once each, in the order given


def resolve_severity(name: str, severity: int | None) -> int:
    """The level to use: `severity`, or MNIST-C's for `name` when None."""
    if severity is None:
        return MNIST_C_SEVERITY[name]
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, np.integer))
        or not MIN_SEVERITY <= severity <= MAX_SEVERITY
    ):
        raise DigitrecError(f"severity must be an integer from {MIN_SEVERITY} to {MAX_SEVERITY}, got {severity!r}")
    return int(severity)


def check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DigitrecError(
            f"corruptions take uint8 (N, {IMAGE_SIZE}, {IMAGE_SIZE}) images; got {images.dtype} {images.shape}"
        )
    return images


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DigitrecError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def generator(name: str, seed: int) -> np.random.Generator:
    """The generator `corrupt` uses: seeded from (seed, name), so each corruption has its own
    stream and adding one never changes another's."""
    return np.random.default_rng([check_seed(seed), zlib.crc32(name.encode())])


def corrupt(images: np.ndarray, name: str, seed: int = DEFAULT_SEED, severity: int | None = None) -> np.ndarray:
    """`images` (uint8 (N, 28, 28)) with corruption `name` at `severity` (None: MNIST-C's level);
    the same for the same seed."""
    (name,) = check_corruptions([name])
    level = resolve_severity(name, severity)
    images = check_images(images)
    rng = generator(name, seed)
    if not len(images):
        return images.copy()
    out = CORRUPTIONS[name](images, rng, level)
    assert out.dtype == np.uint8 and out.shape == images.shape, (name, out.dtype, out.shape)
    return out
