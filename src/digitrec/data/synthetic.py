"""Realistic renders of MNIST digits (photos, scans, canvas drawings, whole numbers, blanks).

Try: `python -c "import numpy as np; from digitrec.data import synthetic as s;
r = np.random.default_rng(0); print(s.render_photo(s.draw_digit(7, r), r).shape)"`

Tests and benchmarks use these to check that preprocessing turns what people really upload
into MNIST's format. Inputs are MNIST-format digits: uint8 (28, 28), white ink on black.
`draw_digit` makes such digits from stroke templates when the MNIST files are not at hand.
Everything takes a `np.random.Generator`, so a seed gives the same images every time.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from ..constants import DIGIT_BOX, IMAGE_SIZE, Box

CANVAS_SIZE = 280  # a browser drawing canvas
CANVAS_STYLES = ("white_on_black", "black_on_white", "black_on_transparent", "white_on_transparent")
GROUP_GAP = (0.8, 1.5)  # render_number: the gap between groups of digits, in digit heights
INK_THRESHOLD = 0.35  # where an upsampled MNIST digit's grey ramp becomes a pen's edge

# Stroke templates in a unit box (x right in [0, 0.6], y down in [0, 1]): polylines, and
# ellipses given as (x0, y0, x1, y1). Crude, but shaped enough for tests of the pipeline.
_LINES: dict[int, list[list[tuple[float, float]]]] = {
    0: [],
    1: [[(0.18, 0.15), (0.32, 0.0), (0.32, 1.0)]],
    2: [[(0.05, 0.25), (0.15, 0.05), (0.35, 0.0), (0.55, 0.12), (0.55, 0.35), (0.3, 0.65), (0.0, 1.0), (0.6, 1.0)]],
    3: [
        [
            (0.05, 0.08),
            (0.3, 0.0),
            (0.55, 0.12),
            (0.5, 0.35),
            (0.25, 0.48),
            (0.55, 0.6),
            (0.6, 0.85),
            (0.35, 1.0),
            (0.0, 0.92),
        ]
    ],
    4: [[(0.45, 1.0), (0.45, 0.0), (0.0, 0.7), (0.6, 0.7)]],
    5: [[(0.55, 0.0), (0.1, 0.0), (0.05, 0.45), (0.35, 0.4), (0.58, 0.6), (0.55, 0.88), (0.3, 1.0), (0.0, 0.92)]],
    6: [
        [
            (0.5, 0.02),
            (0.2, 0.25),
            (0.03, 0.6),
            (0.1, 0.95),
            (0.35, 1.0),
            (0.55, 0.85),
            (0.5, 0.6),
            (0.25, 0.55),
            (0.05, 0.7),
        ]
    ],
    7: [[(0.0, 0.0), (0.6, 0.0), (0.25, 1.0)]],
    8: [],
    9: [[(0.55, 0.22), (0.5, 1.0)]],
}
_ELLIPSES: dict[int, list[tuple[float, float, float, float]]] = {
    0: [(0.0, 0.0, 0.6, 1.0)],
    8: [(0.08, 0.0, 0.52, 0.46), (0.02, 0.46, 0.58, 1.0)],
    9: [(0.05, 0.0, 0.55, 0.45)],
}


# ============================================================================================
# Digits
# ============================================================================================


def draw_digit(label: int, rng: np.random.Generator, *, width: float | None = None) -> np.ndarray:
    """A handwriting-like digit in MNIST's format: uint8 (28, 28), white on black, centred.

    Drawn from a stroke template with jitter, slant and pen width (`width`: stroke width as a
    fraction of the digit height, random 0.09..0.16 by default), then normalised as MNIST was:
    fit a 20x20 box with anti-aliasing, centre of mass at the centre of 28x28.
    """
    big = 200  # draw large, then average down: smooth anti-aliased strokes
    pen = width if width is not None else rng.uniform(0.09, 0.16)
    slant = rng.uniform(-0.25, 0.25)
    img = Image.new("L", (2 * big, 2 * big), 0)
    draw = ImageDraw.Draw(img)

    def xy(x: float, y: float) -> tuple[float, float]:
        x += rng.normal(0, 0.025) + slant * (0.5 - y)
        y += rng.normal(0, 0.025)
        return big / 2 + x * big, big / 2 + y * big

    stroke = max(2, round(pen * big))
    for line in _LINES[label]:
        pts = [xy(x, y) for x, y in line]
        draw.line(pts, fill=255, width=stroke, joint="curve")
        for p in (pts[0], pts[-1]):  # round pen tips
            draw.ellipse([p[0] - stroke / 2, p[1] - stroke / 2, p[0] + stroke / 2, p[1] + stroke / 2], 255)
    for x0, y0, x1, y1 in _ELLIPSES.get(label, []):
        (ax, ay), (bx, by) = xy(x0, y0), xy(x1, y1)
        draw.ellipse([min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)], outline=255, width=stroke)
    return mnist_format(np.asarray(img, np.float32) / 255.0)


def mnist_format(ink: np.ndarray) -> np.ndarray:
    """Float ink in [0, 1] (any size) -> uint8 (28, 28) as MNIST made it: 20x20 box, mass centred."""
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    s = DIGIT_BOX / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.BOX))
    small = np.clip(small / max(float(small.max()), 1e-6), 0, 1)
    cy, cx = ndi.center_of_mass(small)
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    oy = min(max(round(14.0 - cy), 0), IMAGE_SIZE - small.shape[0])
    ox = min(max(round(14.0 - cx), 0), IMAGE_SIZE - small.shape[1])
    out[oy : oy + small.shape[0], ox : ox + small.shape[1]] = small
    return np.round(out * 255).astype(np.uint8)


def upsample(digit: np.ndarray, size: int) -> np.ndarray:
    """An MNIST digit (28x28 uint8) -> float ink (size, size) in [0, 1], smooth (bicubic)."""
    img = Image.fromarray(np.asarray(digit, np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


def pen_ink(up: np.ndarray, thickness: float = 0.0) -> np.ndarray:
    """Turn an upsampled grey digit into a pen's stroke: solid core, anti-aliased edge.

    `thickness` in output pixels: > 0 grows the stroke (a felt pen), < 0 thins it (a fine pen).
    """
    r = int(round(abs(thickness)))
    if r >= 1:
        fp = _disk(r)
        up = ndi.grey_dilation(up, footprint=fp) if thickness > 0 else ndi.grey_erosion(up, footprint=fp)
    # The upsampled grey ramp rises ~1/scale per output pixel: a ramp this wide in grey is an
    # edge ~1.5 output pixels wide; capped so that the empty background stays exactly 0.
    edge = min(0.5, 1.5 * IMAGE_SIZE / max(up.shape[0], 1))
    return np.clip((up - INK_THRESHOLD) / edge + 0.5, 0.0, 1.0).astype(np.float32)


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


# ============================================================================================
# Paper, light and camera
# ============================================================================================


def _paper(rng: np.random.Generator, h: int, w: int, level: float) -> np.ndarray:
    """Paper RGB (h, w, 3): slightly warm or cool tint, a faint low-frequency texture."""
    tint = level * (1.0 + rng.uniform(-0.04, 0.04, size=3))
    texture = ndi.gaussian_filter(rng.normal(0, 1, (h, w)).astype(np.float32), sigma=3) * 0.02
    return np.clip(tint[None, None, :] + texture[..., None], 0, 1).astype(np.float32)


def _lighting(rng: np.random.Generator, h: int, w: int, strength: float) -> np.ndarray:
    """A multiplicative light field: a linear gradient plus, sometimes, a soft shadow."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    t = (xx / w - 0.5) * math.cos(a) + (yy / h - 0.5) * math.sin(a)
    light = 1.0 + strength * t
    if rng.random() < 0.5:  # the shadow of a phone or a hand: a blurred half-plane
        b = rng.uniform(0, 2 * math.pi)
        edge = (xx / w - rng.uniform(0.2, 0.8)) * math.cos(b) + (yy / h - rng.uniform(0.2, 0.8)) * math.sin(b)
        shadow = 1.0 / (1.0 + np.exp(-edge / rng.uniform(0.03, 0.12)))
        light *= 1.0 - rng.uniform(0.1, 0.35) * shadow
    return np.clip(light, 0.2, 1.3).astype(np.float32)


def _camera(rng: np.random.Generator, rgb: np.ndarray, noise: float, blur: float) -> np.ndarray:
    """Blur, sensor noise, quantisation: float RGB -> uint8 RGB."""
    if blur > 0:
        rgb = ndi.gaussian_filter(rgb, sigma=(blur, blur, 0))
    rgb = rgb + rng.normal(0, noise, rgb.shape).astype(np.float32)
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at `quality`: the block artefacts of real uploads."""
    return np.asarray(
        Image.open(io.BytesIO(encode(image, "JPEG", quality=quality))).convert("RGB" if image.ndim == 3 else "L")
    )


def encode(image: np.ndarray, fmt: str = "PNG", *, quality: int = 90) -> bytes:
    """A uint8 array (H, W), (H, W, 3) or (H, W, 4) -> file bytes in `fmt` (PNG, JPEG, WEBP ...)."""
    img = Image.fromarray(np.asarray(image, np.uint8))
    if fmt.upper() in ("JPEG", "JPG") and img.mode == "RGBA":
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": quality} if fmt.upper() in ("JPEG", "JPG", "WEBP") else {}))
    return buf.getvalue()


def _place(ink: np.ndarray, h: int, w: int, y: int, x: int) -> np.ndarray:
    """Put a small ink layer into an (h, w) frame at (y, x), clipping at the edges."""
    out = np.zeros((h, w), np.float32)
    ih, iw = ink.shape
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + ih, h), min(x + iw, w)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = ink[y0 - y : y1 - y, x0 - x : x1 - x]
    return out


def _ink_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.6:  # black / dark grey pen or pencil-ish
        return np.full(3, rng.uniform(0.02, 0.3), np.float32)
    return np.array([rng.uniform(0.05, 0.2), rng.uniform(0.1, 0.25), rng.uniform(0.4, 0.7)], np.float32)


# ============================================================================================
# Renders
# ============================================================================================


def render_photo(
    digit: np.ndarray,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] | None = None,
    jpeg: bool | None = None,
    pen: float | None = None,
) -> np.ndarray:
    """A phone photo of the digit written on paper: uint8 RGB (H, W, 3).

    Dark (black or blue) ink on light paper; the digit from a fifth of the frame to filling
    it, off-centre, rotated up to 12 degrees, thinner or thicker pen; a lighting gradient and
    sometimes a soft shadow; paper texture, noise, blur and often JPEG artefacts. `size` is
    (height, width), by default random 100..600 px. `pen` changes the stroke width by this
    many MNIST pixels on each side (default random -0.8..1.2; -1 is a fine-liner).
    """
    if size is None:
        long_side = int(rng.integers(100, 601))
        aspect = rng.choice([1.0, 0.75, 4 / 3])
        portrait = (long_side, max(40, int(long_side * aspect)))
        size = portrait if aspect <= 1 else (int(long_side / aspect), long_side)
    h, w = size
    digit_px = max(16, int(min(h, w) * rng.uniform(0.2, 0.85)))  # height of the 28x28 frame
    up = upsample(digit, digit_px)
    angle = rng.uniform(-12, 12)
    up = np.asarray(Image.fromarray(up).rotate(angle, resample=Image.Resampling.BICUBIC, expand=True))
    scale = digit_px / IMAGE_SIZE
    ink = pen_ink(up, thickness=(rng.uniform(-0.8, 1.2) if pen is None else pen) * scale)
    y = int(rng.integers(-digit_px // 10, max(1, h - up.shape[0] + digit_px // 10)))
    x = int(rng.integers(-digit_px // 10, max(1, w - up.shape[1] + digit_px // 10)))
    ink = _place(ink, h, w, y, x)[..., None]
    paper = _paper(rng, h, w, rng.uniform(0.65, 0.95))
    rgb = paper * (1 - ink) + _ink_colour(rng)[None, None, :] * ink
    rgb *= _lighting(rng, h, w, rng.uniform(0.0, 0.6))[..., None]
    out = _camera(rng, rgb, noise=rng.uniform(0.005, 0.04), blur=rng.uniform(0.0, 1.2) * max(1.0, scale / 6))
    if jpeg if jpeg is not None else rng.random() < 0.7:
        out = jpeg_roundtrip(out, int(rng.integers(40, 91)))
    return out


def render_scan(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A flatbed scan: near-white paper, black ink, slight noise, 150..300 px. uint8 (H, W) grey."""
    side = int(rng.integers(150, 301))
    digit_px = int(side * rng.uniform(0.3, 0.7))
    ink = pen_ink(upsample(digit, digit_px), thickness=rng.uniform(-0.5, 0.8) * digit_px / IMAGE_SIZE)
    y = int(rng.integers(0, side - digit_px + 1))
    x = int(rng.integers(0, side - digit_px + 1))
    ink = _place(ink, side, side, y, x)
    grey = rng.uniform(0.92, 1.0) * (1 - ink) + rng.uniform(0.0, 0.15) * ink
    grey = ndi.gaussian_filter(grey, 0.6) + rng.normal(0, 0.01, grey.shape)
    return np.clip(np.round(grey * 255), 0, 255).astype(np.uint8)


def render_canvas(digit: np.ndarray, rng: np.random.Generator, style: str = "white_on_black") -> np.ndarray:
    """A browser drawing-canvas export, 280x280, round strokes.

    `style`: white_on_black / black_on_white (uint8 RGB), black_on_transparent /
    white_on_transparent (uint8 RGBA, colour everywhere, the drawing in the alpha channel).
    """
    if style not in CANVAS_STYLES:
        raise ValueError(f"style must be one of {CANVAS_STYLES}, not {style!r}")
    s = CANVAS_SIZE
    digit_px = int(s * rng.uniform(0.8, 1.05))
    ink = pen_ink(upsample(digit, digit_px), thickness=rng.uniform(-1.0, 3.0))
    off = (s - digit_px) // 2
    ink = _place(ink, s, s, off + int(rng.integers(-15, 16)), off + int(rng.integers(-15, 16)))
    a = np.round(ink * 255).astype(np.uint8)
    if style == "white_on_black":
        return np.repeat(a[..., None], 3, axis=2)
    if style == "black_on_white":
        return np.repeat((255 - a)[..., None], 3, axis=2)
    colour = 0 if style == "black_on_transparent" else 255
    return np.dstack([np.full((s, s, 3), colour, np.uint8), a])


def render_number(
    digits: list[np.ndarray],
    rng: np.random.Generator,
    *,
    kind: str = "photo",
    underline: bool = False,
    spacing: str | None = None,
    groups: Sequence[int] | None = None,
) -> tuple[np.ndarray, list[Box]]:
    """Digits written on one line: (uint8 RGB image, ground-truth boxes left to right).

    Spacing varies per gap: touching or slightly overlapping, normal, or wide (`spacing`
    forces one of "touching", "normal", "wide"). `groups`: digits per group, written with a
    gap of GROUP_GAP heights between groups (a card number: (4, 4, 4, 4)); inside a group,
    spacing as above. `kind` is "photo" (lighting, noise, blur, JPEG) or "scan". Boxes are
    (x0, y0, x1, y1) of each digit's ink, end-exclusive.
    """
    if groups is not None and sum(groups) != len(digits):
        raise ValueError(f"groups {tuple(groups)} do not add up to the {len(digits)} digits")
    ends = set(np.cumsum(groups)[:-1] - 1) if groups else set()  # digits a group ends with
    height = int(rng.integers(40, 90))  # the 28x28 frame's height on the page
    layers: list[np.ndarray] = []
    for d in digits:
        up = upsample(d, int(height * rng.uniform(0.9, 1.1)))
        ink = pen_ink(up, thickness=rng.uniform(-0.3, 0.8) * height / IMAGE_SIZE)
        cols = np.flatnonzero(ink.max(0) > 0.2)
        layers.append(ink[:, cols[0] : cols[-1] + 1] if cols.size else ink[:, :1])
    margin = int(height * rng.uniform(0.3, 0.8))
    gaps = []
    for i in range(len(digits) - 1):
        mode = spacing or rng.choice(["touching", "normal", "normal", "wide"])
        g = GROUP_GAP if i in ends else {"touching": (-0.06, 0.0), "normal": (0.08, 0.3), "wide": (0.5, 1.0)}[str(mode)]
        gaps.append(int(height * rng.uniform(*g)))
    w = 2 * margin + sum(layer.shape[1] for layer in layers) + sum(gaps)
    h = height + 2 * margin
    canvas = np.zeros((h, w), np.float32)
    boxes: list[Box] = []
    x = margin
    for i, layer in enumerate(layers):
        y = margin + int(rng.integers(-height // 12, height // 12 + 1)) + (height - layer.shape[0]) // 2
        placed = _place(layer, h, w, y, x)
        canvas = np.maximum(canvas, placed)
        ys, xs = np.nonzero(placed > 0.2)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
        x += layer.shape[1] + (gaps[i] if i < len(gaps) else 0)
    if underline:
        y = max(b[3] for b in boxes) + max(2, height // 10)
        t = max(2, height // 18)
        canvas[y : y + t, margin // 2 : w - margin // 2] = 1.0
    ink = canvas[..., None]
    if kind == "scan":
        grey = 0.97 * (1 - ink) + 0.05 * ink
        rgb = np.repeat(grey, 3, axis=2)
        return _camera(rng, rgb, noise=0.01, blur=0.5), boxes
    rgb = _paper(rng, h, w, rng.uniform(0.7, 0.95)) * (1 - ink) + _ink_colour(rng)[None, None, :] * ink
    rgb *= _lighting(rng, h, w, rng.uniform(0.0, 0.4))[..., None]
    out = _camera(rng, rgb, noise=rng.uniform(0.005, 0.03), blur=rng.uniform(0.0, 1.0))
    if rng.random() < 0.5:
        out = jpeg_roundtrip(out, int(rng.integers(50, 91)))
    return out, boxes


def blank_images(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Images with no digit (each uint8 RGB): must all be rejected as "no digit".

    Cycles through blank paper, paper under a lighting gradient or shadow, pure noise,
    JPEG-compressed noisy paper, and paper with a few tiny specks.
    """
    out: list[np.ndarray] = []
    for i in range(n):
        h, w = int(rng.integers(80, 400)), int(rng.integers(80, 400))
        kind = i % 5
        if kind == 0:  # blank paper, any level (a black canvas too)
            rgb = _paper(rng, h, w, rng.choice([rng.uniform(0.7, 1.0), rng.uniform(0.0, 0.1)]))
            out.append(_camera(rng, rgb, noise=rng.uniform(0, 0.02), blur=0))
        elif kind == 1:  # empty sheet under uneven light
            light = _lighting(rng, h, w, rng.uniform(0.3, 0.8))
            rgb = _paper(rng, h, w, rng.uniform(0.7, 0.95)) * light[..., None]
            out.append(_camera(rng, rgb, noise=rng.uniform(0.005, 0.03), blur=rng.uniform(0, 1)))
        elif kind == 2:  # pure noise
            out.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        elif kind == 3:  # noisy paper, JPEG-compressed
            rgb = _paper(rng, h, w, rng.uniform(0.6, 0.95))
            noisy = _camera(rng, rgb, noise=rng.uniform(0.02, 0.06), blur=0)
            out.append(jpeg_roundtrip(noisy, int(rng.integers(30, 80))))
        else:  # a few tiny specks (dust, a pen tap)
            grey = np.full((h, w), rng.uniform(0.8, 0.97), np.float32)
            for _ in range(int(rng.integers(1, 4))):
                r = rng.uniform(0.5, 2.0) * max(h, w) / 200
                cy, cx = rng.uniform(0, h), rng.uniform(0, w)
                yy, xx = np.ogrid[0:h, 0:w]
                grey[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.uniform(0.05, 0.4)
            out.append(_camera(rng, np.repeat(grey[..., None], 3, axis=2), noise=0.01, blur=0.5))
    return out
