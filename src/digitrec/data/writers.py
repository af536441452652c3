"""Synthetic writers: each one person's hand, as many samples of each digit as wanted.

Try: `python -c "from digitrec.data.writers import writers; w = writers('report')[0]; print(w,
w.style()); print(w.digits(7, 3, seed=0).shape)"`

A `Writer` is a consistent handwriting style: every sample of a digit it draws is the same
shape with small per-sample variation (tremor, a little rotation, size and placement), as a
person's own digits are. Profiles (recognition/profile.py) are judged on them:
benchmarks/personalize.py. `Writer.digits(digit, n, seed)` gives float32 (n, SIDE, SIDE) grey
images in [0, 1], ink dark (INK) on light paper (1.0), the digit about DIGIT_PX tall, the same
for the same (writer, digit, n, seed); `recognize` reads them as it reads any photo of one digit.

Kinds (`KINDS`):

    font    font:<file stem>: one font under negatives.FONT_DIRS that has the ten digits, with a
            per-writer slant (shear), width, stroke thickness and fixed smooth deformation field
    stroke  stroke:<nn>: digits drawn as vector strokes, one variant of each digit per writer
            (crossed 7, 1 with a flag and a base, open or closed 4, looped 2, flat-topped 3,
            straight-stemmed 9, slashed 0, ...), with a per-writer pen, slant, width and field
    mnist   mnist:<nn>: MNIST *training* digits; each digit's are clustered into CLUSTERS styles
            (k-means on 14x14 pixels) and a writer takes one cluster per digit: close to MNIST

The split (`SPLITS`; `writers("choose")`, `writers("report")`): settings are chosen on the
"choose" writers and reported on the "report" writers, which share no font design (clones such
as Liberation Sans, Nimbus Sans and FreeSans count as one: FONT_DESIGNS), no unusual stroke
variant (each digit's variants other than the plain one alternate between the splits) and no
MNIST cluster (clusters alternate by size rank).

>>> w = Writer("stroke:03", "stroke", 3)
>>> images = w.digits(7, 2, seed=0)
>>> images.shape, images.dtype.name, w.split
((2, 64, 64), 'float32', 'report')
>>> bool(np.array_equal(images, w.digits(7, 2, seed=0)))
True
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.cluster.vq import kmeans2

from ..constants import IMAGE_SIZE, NUM_CLASSES
from ..errors import DigitrecError
from . import negatives as neg
from .mnist import load_mnist

__all__ = [
    "CLUSTERS",
    "FONT_DESIGNS",
    "KINDS",
    "MNIST_WRITERS",
    "SIDE",
    "SPLITS",
    "STROKE_VARIANTS",
    "STROKE_WRITERS",
    "Writer",
    "get_writer",
    "writers",
]

KINDS = ("font", "stroke", "mnist")
SPLITS = ("choose", "report")

# ============================================================================================
# The page
# ============================================================================================

SIDE = 64  # images are SIDE x SIDE
DIGIT_PX = 44  # the digit's longest side on the page
INK = 0.1  # grey of the ink; the paper is 1.0
PLACE_JITTER = 3  # the digit's centre moves up to this many pixels either way per sample

# ============================================================================================
# A writer's style (fixed for the writer) and a sample's variation (new for each sample)
# ============================================================================================

SLANT = (-0.5, 0.5)  # shear: x moves this much per unit of height (positive: tops lean right)
WIDTH = (0.6, 1.4)  # width scale, log-uniform
FONT_PEN = (0.06, 0.16)  # stroke width / the glyph's longest side (MNIST's: ~0.1-0.15)
HAIRLINE_SHARE = 0.6  # a font's strokes are made at least this share of the writer's pen wide
STROKE_PEN = (0.07, 0.16)
FIELD_GRID = 4  # the writer's deformation field has this many control points across
FIELD_STRENGTH = (0.02, 0.06)  # its displacement std / the glyph's longest side
SAMPLE_ROTATION_DEG = 4.0  # per sample, either way
SAMPLE_SLANT = 0.05  # per sample, added to the writer's
SAMPLE_ASPECT = 0.05  # per sample, log-uniform around the writer's width
SAMPLE_FIELD = 0.008  # per-sample wobble: displacement std / the glyph's longest side
MARGIN = 0.15  # canvas room around the warped glyph / its longest side

# ============================================================================================
# Fonts
# ============================================================================================

DIGIT_CHARS = "0123456789"
STYLE_WORDS = ("Bold", "Italic", "Oblique")  # in stems without a "-": FreeSansBoldOblique
# Metric clones and cuts of one design count as one design: a design's fonts are all on one
# side of the split. A font not listed is its own design (its file stem before the first "-",
# lower case, "font" dropped: Breip and breipfont are one).
FONT_DESIGNS: dict[str, str] = {
    "FreeSans": "helvetica",
    "LiberationSans": "helvetica",
    "NimbusSans": "helvetica",
    "NimbusSansNarrow": "helvetica",
    "FreeSerif": "times",
    "LiberationSerif": "times",
    "NimbusRoman": "times",
    "FreeMono": "courier",
    "LiberationMono": "courier",
    "NimbusMonoPS": "courier",
    "DejaVuSans": "dejavusans",
    "DejaVuSansCondensed": "dejavusans",
    "DejaVuSerif": "dejavuserif",
    "DejaVuSerifCondensed": "dejavuserif",
}

# ============================================================================================
# Stroke digits: glyph units, x right, y down, about 0.6 wide and 1 tall
# ============================================================================================

Glyph = neg.Glyph


def _oval() -> list[tuple[float, float]]:
    return neg._arc(0.3, 0.5, 0.3, 0.5, -90, 270)


def _bowl_3(top: float, height: float, a0: float, a1: float) -> list[tuple[float, float]]:
    r = height / 2
    return neg._arc(0.3, top + r, 0.28, r, a0, a1)


def _figure_eight() -> list[tuple[float, float]]:
    t = np.linspace(0, 2 * math.pi, 60)
    return [(0.3 + 0.28 * math.sin(2 * a), 0.5 - 0.5 * math.cos(a)) for a in t]


_TOP_2 = neg._arc(0.3, 0.27, 0.28, 0.27, -165, 35)
_BOWL_5 = neg._arc(0.28, 0.68, 0.3, 0.3, -140, 150)
_LOOP_6 = neg._ellipse(0.3, 0.75, 0.27, 0.25)
_HEAD_9 = neg._ellipse(0.3, 0.25, 0.27, 0.25)
_BAR_7 = [(0.0, 0.0), (0.6, 0.0)]

# Each digit's variants: the first is the plain one MNIST is full of; the others (people write
# them, MNIST rarely has them) alternate between the splits: odd positions "choose", even "report".
STROKE_VARIANTS: dict[int, dict[str, Glyph]] = {
    0: {
        "oval": [_oval()],
        "slashed": [_oval(), [(0.55, 0.1), (0.05, 0.9)]],
        "dotted": [_oval(), neg._dot(0.3, 0.48)],
        "overlapped": [neg._arc(0.3, 0.5, 0.3, 0.5, -60, 330)],
        "backslashed": [_oval(), [(0.05, 0.1), (0.55, 0.9)]],
    },
    1: {
        "stick": [[(0.3, 0.0), (0.3, 1.0)]],
        "flag_base": [[(0.05, 0.25), (0.3, 0.0), (0.3, 1.0)], [(0.02, 1.0), (0.58, 1.0)]],
        "long_flag": [[(0.0, 0.45), (0.35, 0.0), (0.35, 1.0)]],
        "serif": [[(0.15, 0.05), (0.3, 0.0), (0.3, 1.0)], [(0.12, 1.0), (0.48, 1.0)]],
        "hooked_foot": [[(0.05, 0.2), (0.3, 0.0), (0.28, 0.85), (0.35, 1.0), (0.55, 0.95)]],
    },
    2: {
        "plain": [[*_TOP_2, (0.0, 1.0), (0.6, 1.0)]],
        "looped": [[*_TOP_2, (0.14, 0.78), *neg._arc(0.16, 0.88, 0.14, 0.12, -60, 300), (0.6, 0.98)]],
        "z": [[(0.0, 0.03), (0.55, 0.0), (0.0, 1.0), (0.6, 1.0)]],
        "curly_base": [[*_TOP_2, (0.0, 1.0), (0.2, 0.9), (0.4, 1.0), (0.6, 0.92)]],
        "hooked_top": [[(0.08, 0.35), (0.0, 0.2), *_TOP_2[1:], (0.0, 1.0), (0.6, 1.0)]],
    },
    3: {
        "round": [[*_bowl_3(0.0, 0.48, -160, 90), *_bowl_3(0.48, 0.52, -90, 160)]],
        "flat_top": [[(0.0, 0.0), (0.58, 0.0), (0.2, 0.38), *neg._arc(0.28, 0.7, 0.3, 0.3, -105, 160)]],
        "pointed": [[(0.02, 0.05), (0.55, 0.12), (0.15, 0.48), (0.58, 0.62), (0.45, 0.95), (0.0, 0.92)]],
        "loop_middle": [
            [
                *_bowl_3(0.0, 0.45, -160, 80),
                *neg._arc(0.22, 0.47, 0.08, 0.05, -90, -270),
                *_bowl_3(0.48, 0.52, -90, 160),
            ]
        ],
        "small_top": [[*_bowl_3(0.12, 0.3, -160, 90), *_bowl_3(0.42, 0.58, -90, 160)]],
    },
    4: {
        "open": [[(0.12, 0.0), (0.0, 0.62), (0.6, 0.62)], [(0.45, 0.3), (0.45, 1.0)]],
        "closed": [[(0.45, 1.0), (0.45, 0.0), (0.0, 0.65), (0.6, 0.65)]],
        "open_long_bar": [[(0.15, 0.0), (0.05, 0.6), (0.6, 0.6)], [(0.42, 0.0), (0.42, 1.0)]],
        "closed_wide_bar": [[(0.42, 1.0), (0.42, 0.0), (0.0, 0.6)], [(-0.08, 0.6), (0.68, 0.6)]],
        "curved_arm": [[(0.05, 0.0), *neg._arc(0.3, 0.4, 0.25, 0.2, 180, 90), (0.6, 0.6)], [(0.45, 0.2), (0.45, 1.0)]],
    },
    5: {
        "plain": [[(0.55, 0.0), (0.1, 0.0), (0.05, 0.45), *_BOWL_5[1:]]],
        "angular": [[(0.55, 0.0), (0.05, 0.0), (0.05, 0.45), (0.5, 0.45), (0.58, 0.85), (0.35, 1.0), (0.0, 0.95)]],
        "flag_apart": [[(0.08, 0.0), (0.05, 0.45), *_BOWL_5[1:]], [(0.15, 0.0), (0.6, -0.03)]],
        "long_flag": [[(0.75, 0.0), (0.1, 0.0), (0.05, 0.45), *_BOWL_5[1:]]],
        "curled": [[(0.55, 0.0), (0.1, 0.0), (0.05, 0.45), *neg._arc(0.28, 0.68, 0.3, 0.3, -140, 220)]],
    },
    6: {
        "plain": [
            neg._spline(
                np.array(
                    [
                        (0.5, 0.0),
                        (0.2, 0.25),
                        (0.03, 0.65),
                        (0.2, 0.98),
                        (0.5, 0.9),
                        (0.55, 0.65),
                        (0.3, 0.52),
                        (0.05, 0.7),
                    ]
                )
            )
        ],
        "straight_stem": [[(0.4, 0.0), (0.05, 0.72)], _LOOP_6],
        "hooked": [[(0.6, 0.1), (0.45, 0.0), (0.2, 0.15), (0.05, 0.7)], _LOOP_6],
        "big_loop": [[(0.45, 0.0), (0.1, 0.35)], neg._ellipse(0.3, 0.64, 0.3, 0.36)],
        "open_loop": [[(0.45, 0.0), (0.05, 0.72), *neg._arc(0.3, 0.77, 0.25, 0.23, 180, -110)]],
    },
    7: {
        "plain": [[*_BAR_7, (0.25, 1.0)]],
        "crossed": [[*_BAR_7, (0.25, 1.0)], [(0.12, 0.52), (0.58, 0.52)]],
        "serif": [[(0.0, 0.18), *_BAR_7, (0.25, 1.0)]],
        "curved": [[*_BAR_7, *neg._spline(np.array([(0.6, 0.0), (0.38, 0.45), (0.3, 1.0)]))[1:]]],
        "crossed_serif": [[(0.0, 0.18), *_BAR_7, (0.25, 1.0)], [(0.15, 0.5), (0.6, 0.5)]],
    },
    8: {
        "loops": [neg._ellipse(0.3, 0.24, 0.22, 0.24), neg._ellipse(0.3, 0.74, 0.28, 0.26)],
        "figure": [_figure_eight()],
        "small_top": [neg._ellipse(0.3, 0.17, 0.14, 0.17), neg._ellipse(0.3, 0.66, 0.3, 0.33)],
        "shifted": [neg._ellipse(0.4, 0.24, 0.2, 0.24), neg._ellipse(0.25, 0.74, 0.27, 0.26)],
        "open_top": [[*neg._arc(0.3, 0.24, 0.22, 0.24, 20, -200), *neg._arc(0.3, 0.74, 0.28, 0.26, -60, 250)]],
    },
    9: {
        "curved": [_HEAD_9, neg._spline(np.array([(0.57, 0.25), (0.52, 0.8), (0.35, 1.0), (0.1, 0.95)]))],
        "straight": [_HEAD_9, [(0.57, 0.22), (0.57, 1.0)]],
        "g_tail": [_HEAD_9, [(0.57, 0.22), (0.57, 0.85), *neg._arc(0.33, 0.85, 0.24, 0.15, 0, 170)]],
        "slanted": [_HEAD_9, [(0.57, 0.25), (0.3, 1.0)]],
        "open_head": [[*neg._arc(0.3, 0.25, 0.27, 0.25, -20, -340), (0.57, 0.3), (0.55, 1.0)]],
    },
}
PLAIN_SHARE = 0.25  # a stroke writer writes a digit's plain variant this often, else an unusual one
STROKE_WRITERS = 24  # stroke:00 .. stroke:23, even seeds "choose", odd "report"

# ============================================================================================
# MNIST style clusters
# ============================================================================================

CLUSTERS = 8  # k-means styles per digit; even size ranks "choose", odd "report"
CLUSTER_SEED = 0
CLUSTER_ITERATIONS = 10
MNIST_WRITERS = 32  # mnist:00 .. mnist:31, even seeds "choose", odd "report"
MNIST_PX = 2 * IMAGE_SIZE  # an MNIST digit is upsampled to this on the page


# ============================================================================================
# Writers
# ============================================================================================


@dataclass(frozen=True)
class Writer:
    """One hand: `name` ("font:<stem>", "stroke:<nn>", "mnist:<nn>"), `kind` (one of KINDS) and
    `seed`, from which its style follows."""

    name: str
    kind: str
    seed: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS or not self.name.startswith(self.kind + ":"):
            raise DigitrecError(f"a writer's kind is one of {KINDS} and its name starts with it; got {self}")

    @property
    def source(self) -> str:
        return self.name.split(":", 1)[1]

    @property
    def split(self) -> str:
        """Which side of the split: "choose" or "report" (the module docstring says how the two
        are kept apart; which side a font falls on depends on the fonts found)."""
        if self.kind == "font":
            return SPLITS[_design_side(_design(self.source))]
        return SPLITS[self.seed % 2]

    def style(self) -> dict[str, Any]:
        """What stays the same across this writer's samples (the deformation field left out)."""
        if self.kind == "mnist":
            return {"clusters": list(_cluster_choice(self))}
        s = _style(self)
        out: dict[str, Any] = {"slant": round(s.slant, 3), "width": round(s.width, 3), "pen": round(s.pen, 3)}
        if self.kind == "stroke":
            out["variants"] = list(_variant_choice(self))
        return out

    def digits(self, digit: int, n: int, seed: int = 0, *, data_dir: str | Path | None = None) -> np.ndarray:
        """n samples of `digit` in this hand: float32 (n, SIDE, SIDE) in [0, 1], ink dark on
        light paper; the same for the same (writer, digit, n, seed). An mnist writer's samples
        are n different training digits of its cluster (drawn again once the cluster runs out),
        read from `data_dir` (default: $DIGITREC_DATA or the cache, see data/mnist.py)."""
        if not 0 <= digit < NUM_CLASSES or n < 0:
            raise DigitrecError(f"a digit 0-9 and n >= 0 expected; got {digit} and {n}")
        rng = np.random.default_rng([seed, self.seed, digit, zlib.crc32(self.name.encode())])
        if self.kind == "mnist":
            return _mnist_samples(self, digit, n, rng, data_dir)
        style = _style(self)
        out = np.empty((n, SIDE, SIDE), np.float32)
        for i in range(n):
            if self.kind == "font":
                ink = _font_ink(self.source, digit, style.pen)
            else:
                glyph = STROKE_VARIANTS[digit][_variant_choice(self)[digit]]
                ink = neg._draw(glyph, rng, pen=style.pen)
            out[i] = _page(_warp(ink, style, rng), rng)
        return out

    def __str__(self) -> str:
        return f"{self.name} ({self.split})"


def writers(split: str | None = None, *, kinds: tuple[str, ...] = KINDS) -> list[Writer]:
    """Every writer of `split` (None: both) and `kinds`: a writer for each font found under
    negatives.FONT_DIRS that has the ten digits, then STROKE_WRITERS stroke writers and
    MNIST_WRITERS mnist writers. Listing them reads no MNIST file."""
    if split is not None and split not in SPLITS:
        raise DigitrecError(f"split must be one of {SPLITS} or None, not {split!r}")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise DigitrecError(f"unknown writer kinds {sorted(unknown)}; known: {KINDS}")
    out: list[Writer] = []
    if "font" in kinds:
        out += [Writer(f"font:{stem}", "font", zlib.crc32(stem.encode())) for stem in _digit_fonts()]
    if "stroke" in kinds:
        out += [Writer(f"stroke:{i:02d}", "stroke", i) for i in range(STROKE_WRITERS)]
    if "mnist" in kinds:
        out += [Writer(f"mnist:{i:02d}", "mnist", i) for i in range(MNIST_WRITERS)]
    return [w for w in out if split is None or w.split == split]


def get_writer(name: str) -> Writer:
    """The writer called `name` (as `writers()` lists it)."""
    for w in writers(kinds=(name.split(":", 1)[0],) if name.split(":", 1)[0] in KINDS else KINDS):
        if w.name == name:
            return w
    raise DigitrecError(f"unknown writer {name!r}; writers() lists them")


# ============================================================================================
# Style
# ============================================================================================


@dataclass(frozen=True)
class _Style:
    slant: float
    width: float
    pen: float  # stroke width / the glyph's longest side
    field: np.ndarray  # (2, FIELD_GRID, FIELD_GRID): the fixed deformation field's control points


@functools.lru_cache(maxsize=512)
def _style(w: Writer) -> _Style:
    rng = np.random.default_rng([w.seed, zlib.crc32(w.kind.encode())])
    slant = rng.uniform(*SLANT)
    width = math.exp(rng.uniform(math.log(WIDTH[0]), math.log(WIDTH[1])))
    pen = rng.uniform(*(FONT_PEN if w.kind == "font" else STROKE_PEN))
    field = rng.normal(0.0, 1.0, (2, FIELD_GRID, FIELD_GRID)) * rng.uniform(*FIELD_STRENGTH)
    field.flags.writeable = False
    return _Style(slant, width, pen, field)


@functools.lru_cache(maxsize=512)
def _variant_choice(w: Writer) -> tuple[str, ...]:
    """A stroke writer's variant of each digit: the plain one (PLAIN_SHARE of the time) or one
    of the unusual ones its split has."""
    rng = np.random.default_rng([w.seed, zlib.crc32(b"variants")])
    side = SPLITS.index(w.split)
    out = []
    for d in range(NUM_CLASSES):
        names = list(STROKE_VARIANTS[d])
        unusual = names[1 + side :: 2]
        plain = rng.random() < PLAIN_SHARE
        out.append(names[0] if plain or not unusual else unusual[int(rng.integers(len(unusual)))])
    return tuple(out)


def _warp(ink: np.ndarray, style: _Style, rng: np.random.Generator) -> np.ndarray:
    """Float ink (H, W) -> float ink (H', W'): the writer's slant, width and deformation field,
    with a sample's small rotation, slant, width change and wobble; one resampling."""
    h, w = ink.shape
    side = max(h, w)
    a = math.radians(rng.uniform(-SAMPLE_ROTATION_DEG, SAMPLE_ROTATION_DEG))
    aspect = style.width * math.exp(rng.uniform(-SAMPLE_ASPECT, SAMPLE_ASPECT))
    shear = style.slant + rng.uniform(-SAMPLE_SLANT, SAMPLE_SLANT)
    stretch = np.array([[1.0, 0.0], [0.0, aspect]])  # (row, col): columns scale
    slant = np.array([[1.0, 0.0], [-shear, 1.0]])  # col -= shear * row: tops lean right
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    forward = rot @ slant @ stretch
    corners = forward @ np.array([[-h, -h, h, h], [-w, w, -w, w]], np.float64) / 2
    room = int(math.ceil(MARGIN * side))
    oh, ow = (int(math.ceil(e)) + 2 * room for e in np.ptp(corners, axis=1))
    yy, xx = np.mgrid[0:oh, 0:ow].astype(np.float64)
    rel = np.stack([yy - oh / 2, xx - ow / 2]).reshape(2, -1)
    src = (np.linalg.inv(forward) @ rel).reshape(2, oh, ow) + np.array([h / 2, w / 2])[:, None, None]
    wobble = rng.normal(0.0, SAMPLE_FIELD, (2, FIELD_GRID + 2, FIELD_GRID + 2))
    for axis in range(2):
        src[axis] += side * (_field(style.field[axis], oh, ow) + _field(wobble[axis], oh, ow))
    return ndi.map_coordinates(ink, src, order=1, cval=0.0, prefilter=False).astype(np.float32)


def _field(coarse: np.ndarray, h: int, w: int) -> np.ndarray:
    """Control points (g, g) -> a smooth field (h, w) through them (bicubic)."""
    return np.asarray(Image.fromarray(coarse.astype(np.float32)).resize((w, h), Image.Resampling.BICUBIC))


def _page(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Float ink -> the page: (SIDE, SIDE) float32, the ink's longest side DIGIT_PX, near the
    centre, dark on light."""
    ink = np.where(ink < neg.INK_FLOOR, 0.0, np.clip(ink, 0.0, 1.0)).astype(np.float32)
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if rows.size == 0:
        raise AssertionError("a writer's digit came out empty")  # a bug in a style
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    s = DIGIT_PX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
    small = np.clip(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR)), 0.0, 1.0)
    return _on_paper(small, rng)


def _on_paper(small: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = small.shape
    dy, dx = rng.integers(-PLACE_JITTER, PLACE_JITTER + 1, 2)
    y = min(max((SIDE - h) // 2 + int(dy), 0), SIDE - h)
    x = min(max((SIDE - w) // 2 + int(dx), 0), SIDE - w)
    page = np.ones((SIDE, SIDE), np.float32)
    page[y : y + h, x : x + w] -= (1.0 - INK) * small
    return page


# ============================================================================================
# Fonts
# ============================================================================================


def _digit_fonts() -> dict[str, str]:
    """{file stem: path} of the fonts found (negatives' discovery) that draw all ten digits."""
    return _digit_fonts_in(tuple(neg.FONT_DIRS))


@functools.cache
def _digit_fonts_in(dirs: tuple[str, ...]) -> dict[str, str]:
    files = neg._font_files(dirs)
    return {stem: path for stem, path in files.items() if all(neg._renders(path, c) for c in DIGIT_CHARS)}


def _design(stem: str) -> str:
    """The design a font file belongs to: FONT_DESIGNS of its family (the stem before "-", its
    weight and style words dropped: FreeSansBoldOblique is FreeSans), else the family itself in
    lower case without "font" (Breip and breipfont are one)."""
    family = re.sub(f"({'|'.join(STYLE_WORDS)})+$", "", stem.split("-", 1)[0]) or stem
    return FONT_DESIGNS.get(family, family.lower().removesuffix("font"))


def _design_side(design: str) -> int:
    """0 ("choose") or 1 ("report"): the designs found, the largest first, each to the side with
    fewer fonts so far (ties: by name), so that the two sides have about as many font writers."""
    counts: dict[str, int] = {}
    for stem in _digit_fonts():
        counts[_design(stem)] = counts.get(_design(stem), 0) + 1
    sides = [0, 0]
    chosen: dict[str, int] = {}
    for d in sorted(counts, key=lambda d: (-counts[d], d)):
        side = int(sides[1] < sides[0])
        chosen[d] = side
        sides[side] += counts[d]
    return chosen.get(design, zlib.crc32(design.encode()) % 2)


@functools.lru_cache(maxsize=1024)
def _font_ink(stem: str, digit: int, pen: float) -> np.ndarray:
    """The font's digit with the writer's pen: float ink (H, W), longest side neg.GLYPH_PX."""
    fonts = _digit_fonts()
    if stem not in fonts:
        raise DigitrecError(f"no font {stem!r} with the ten digits under {neg.FONT_DIRS}")
    crop = neg._font_glyph(fonts[stem], DIGIT_CHARS[digit])
    mask = np.pad(crop > 0.5, 1)
    width = neg._stroke_width(mask)
    r = round((pen * max(crop.shape) - width) / 2)
    r = max(r, -int(width / 3))  # thinning keeps strokes: at most a third of the width ...
    while r < 0 and not neg._thinnable(mask, -r):  # ... and never erases a hairline
        r += 1
    if r == 0:
        out = np.array(crop)
    else:
        padded = np.pad(crop, abs(r) + 1)
        footprint = neg._disk(abs(r))
        out = ndi.grey_dilation(padded, footprint=footprint) if r > 0 else ndi.grey_erosion(padded, footprint=footprint)
    out = _min_stroke(out, max(1, round(HAIRLINE_SHARE * pen * max(crop.shape) / 2)))
    out.flags.writeable = False
    return out


def _min_stroke(ink: np.ndarray, r: int) -> np.ndarray:
    """Ink whose strokes thinner than a disk of radius r (a serif font's hairlines) are grown by
    r, the thick ones left as they are: a hand's pen has no hairlines, and a hairline would be
    lost below a pixel on the page, a bold serif 4 read as its stem, a 1."""
    pad = np.pad(ink, r + 1)
    mask = pad > 0.5
    opened = ndi.binary_dilation(ndi.binary_erosion(mask, neg._disk(r)), neg._disk(r))
    thin = np.where(mask & ~opened, pad, 0.0).astype(np.float32)
    return np.maximum(pad, ndi.grey_dilation(thin, footprint=neg._disk(r)))


# ============================================================================================
# MNIST style clusters
# ============================================================================================


@functools.lru_cache(maxsize=2)
def _train(data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    split = load_mnist("train", data_dir, progress=False)
    return split.images, split.labels


@functools.lru_cache(maxsize=2)
def _clusters(data_dir: str | None) -> tuple[tuple[np.ndarray, ...], ...]:
    """For each digit, its training images' indices in each of CLUSTERS k-means clusters of
    their 14x14 pixels, largest cluster first."""
    images, labels = _train(data_dir)
    x = images.astype(np.float32) / (4 * 255)
    small = (x[:, ::2, ::2] + x[:, 1::2, ::2] + x[:, ::2, 1::2] + x[:, 1::2, 1::2]).reshape(len(x), -1)
    out = []
    for d in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == d)
        _, assigned = kmeans2(
            small[idx], CLUSTERS, iter=CLUSTER_ITERATIONS, minit="++", seed=np.random.default_rng([CLUSTER_SEED, d])
        )
        sizes = np.bincount(assigned, minlength=CLUSTERS)
        order = sorted(range(CLUSTERS), key=lambda c: (-sizes[c], c))
        out.append(tuple(idx[assigned == c] for c in order if sizes[c]))
    return tuple(out)


def _cluster_choice(w: Writer) -> tuple[int, ...]:
    """An mnist writer's cluster (size rank) of each digit, among its split's ranks."""
    rng = np.random.default_rng([w.seed, zlib.crc32(b"clusters")])
    ranks = list(range(SPLITS.index(w.split), CLUSTERS, 2))
    return tuple(ranks[int(rng.integers(len(ranks)))] for _ in range(NUM_CLASSES))


def _mnist_samples(w: Writer, digit: int, n: int, rng: np.random.Generator, data_dir: str | Path | None) -> np.ndarray:
    key = None if data_dir is None else str(data_dir)
    clusters = _clusters(key)[digit]
    members = clusters[min(_cluster_choice(w)[digit], len(clusters) - 1)]
    pick = rng.permutation(members)[:n]
    if n > len(pick):
        pick = np.concatenate([pick, rng.choice(members, n - len(pick))])
    images, _ = _train(key)
    out = np.empty((n, SIDE, SIDE), np.float32)
    for i, j in enumerate(pick):
        up = Image.fromarray(images[j]).resize((MNIST_PX, MNIST_PX), Image.Resampling.BICUBIC)
        out[i] = _on_paper(np.clip(np.asarray(up, np.float32) / 255.0, 0.0, 1.0), rng)
    return out
