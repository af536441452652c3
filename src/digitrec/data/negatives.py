"""Ink that is not a digit, in MNIST's format: letters, signs, shapes, scribbles, crossed-out digits.

Try: `python -c "from digitrec.data import negatives as n; print(n.list_sources()[:8]);
print(n.negative_glyphs('shapes:heart', 4, seed=0).shape)"`

A model with a "not a digit" output (constants.NON_DIGIT) is fitted on these. Every glyph is
uint8 (28, 28), white ink on black, fitted to the 20-px box and centred by mass as MNIST's digits
are (`synthetic.mnist_format`), drawn to look handwritten: random pen width, slant, rotation,
aspect, elastic wobble (Simard et al. 2003) and jitter. `negative_glyphs(source, n, seed)` makes
n glyphs from one named source, the same for a seed; `render_input` turns one into a whole
photo, scan or canvas as a user would upload it.

Sources (`list_sources()`), by family (`family(source)`):

    font letters and signs  font:<file stem>: each font file under FONT_DIRS with Latin letters,
                            its kept letters and signs (the ones it has), distorted
    stroke letters          strokes:letters, strokes:held_letters: a small vector stroke font
    stroke signs            strokes:signs, strokes:held_signs
    scribbles               scribbles:smooth, :zigzag, :loops, :hatching, :spiral, :tangle
    shapes                  shapes:triangle, :square, :rectangle, :heart, :smiley, :arrow, :sun,
                            :cloud, :check, :cross_circle, :envelope, :fish, :house, :star,
                            :flower, :hourglass
    crossed digits          crossed:x, :zigzag, :loops, :hatch: a digit (MNIST's, if given)
                            crossed out by an X, a dense zigzag, a row of loops or hatching

Never drawn (CONFUSABLE_GROUPS): characters a digit could be mistaken for or that preprocessing
removes (O D Q -> 0, I l T ! / | -> 1, Z -> 2, S -> 5, b G -> 6, B -> 8, g q -> 9, dashes, dots);
never a plain circle (a 0) or a single line (a 1), never a digit with one thin strike (a 7).

The split, for choosing settings without touching test digits (`FIT_SOURCES` = `sources("fit")`,
`HELD_OUT_SOURCES` = `sources("held_out")`): whole sources are held out, and every family has members on both sides.

    held out                        fit
    font: Humor-Sans (handwriting), all other fonts found
      LiberationSerif-* (serif),
      Isabella (script)
    strokes:held_letters (KRWhny)   strokes:letters (the other kept letters)
    strokes:held_signs (& @ ? ∞)    strokes:signs (the other kept signs)
    scribbles:spiral, :tangle       scribbles:smooth, :zigzag, :loops, :hatching
    shapes:house, :star, :flower,   the other shapes
      :hourglass
    crossed:hatch                   crossed:x, :zigzag, :loops

Real negatives, where one has them: `load_emnist_letters` reads EMNIST letters' IDX files
(confusable letters dropped); image/negatives_folder.py reads a folder of labelled images.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

from ..constants import IMAGE_SIZE
from ..errors import DigitrecError
from . import synthetic
from .idx import read_idx

__all__ = [
    "CONFUSABLE",
    "CONFUSABLE_GROUPS",
    "FAMILIES",
    "FIT_SOURCES",
    "FONT_DIRS",
    "HELD_OUT_SOURCES",
    "HELD_OUT_FONT_FAMILIES",
    "HELD_OUT_GENERATORS",
    "KEPT_LETTERS",
    "KEPT_SIGNS",
    "SPLITS",
    "family",
    "font_characters",
    "list_sources",
    "load_emnist_letters",
    "mixed_glyphs",
    "negative_glyphs",
    "render_input",
    "sources",
]

# ============================================================================================
# What may be drawn
# ============================================================================================

# Characters never drawn, each group with why. A negative that looks like a digit would teach
# the model to refuse real digits.
CONFUSABLE_GROUPS: dict[str, str] = {
    "OoDQ": "round like a 0",
    "IlijJT!L": "an upright stroke like a 1 (with a dot, a bar, a hook or a foot; L is also half a 4)",
    "Zz": "a 2 drawn angular",
    "Ss": "a 5 drawn round",
    "bG": "a 6 (a loop at the foot of a stem)",
    "B": "an 8 (two stacked loops)",
    "gq": "a 9 (a loop on top of a tail)",
    "/\\|()[]{}": "a lone slanted or upright stroke or bracket reads as a 1",
    "-_.,:;'\"`": "dashes and dots: preprocessing removes them as specks and rules",
}
CONFUSABLE = frozenset("".join(CONFUSABLE_GROUPS))
KEPT_LETTERS = "ACEFHKMNPRUVWXYacdefhkmnprtuvwxy"
KEPT_SIGNS = "+=#%&@?$*<>~^¶§€£¥∞"
HELD_OUT_STROKE_LETTERS = "KRWhny"
HELD_OUT_STROKE_SIGNS = "&@?∞"

# ============================================================================================
# Drawing parameters
# ============================================================================================

GLYPH_PX = 64  # glyphs are drawn with their longest side this long, then fitted to 20 px
PEN_RANGE = (0.08, 0.15)  # pen width / the glyph's longest side (MNIST's strokes: ~0.1-0.15)
JITTER = 0.02  # per-point hand tremor, as a fraction of the glyph's size
SMOOTH_JITTER_POINTS = 6  # strokes with more points (arcs) get jitter smoothed along the stroke
ROTATION_DEG = 15.0  # random rotation, either way
SHEAR = 0.3  # random slant: x moves by up to this much per unit of height
ASPECT = (0.8, 1.25)  # random width / height change
ELASTIC_GRID = 6  # the random displacement field has this many control points across
ELASTIC_STRENGTH = (0.0, 0.025)  # displacement std / the glyph's size (Simard's alpha=34, sigma=4 ~ 0.03)
INK_FLOOR = 0.05  # interpolation dust below this is not ink (it would widen the bounding box)
ELASTIC_MARGIN = 0.12  # canvas room for the wobble around the transformed glyph / its longest side

# ============================================================================================
# Fonts
# ============================================================================================

FONT_DIRS: tuple[str, ...] = ("/usr/share/fonts",)  # searched recursively for FONT_SUFFIXES
FONT_SUFFIXES = (".ttf", ".otf")
FONT_RENDER_PX = 96  # font size of the first render, before it is scaled to GLYPH_PX
# Symbol and math fonts map Latin code points to Greek letters, dingbats or math italics.
SYMBOL_FONTS = ("StandardSymbolsPS", "D050000L", "DejaVuMathTeXGyre")
LATIN_PROBE = "AEHaeh"  # a font must render all of these to count as having Latin letters
NOTDEF_PROBE = "\U000f0000"  # a private-use code point: renders as the font's "missing" glyph
MIN_GLYPH_INK = 0.35  # a glyph with less ink than this share of the font's median is a stub: Humor Sans's £
CAPS_RATIO = 0.85  # a font whose x is this tall against its X draws lower case as capitals
# Kept characters that fonts draw unlike a hand: ¶'s bowl is filled, a 9 mirrored on a stem.
FONT_EXCLUDED = "¶"
HELD_OUT_FONT_FAMILIES = ("Humor-Sans", "LiberationSerif", "Isabella")  # file-stem prefixes

# ============================================================================================
# The split
# ============================================================================================

SPLITS = ("fit", "held_out")
FAMILIES = ("font letters and signs", "stroke letters", "stroke signs", "scribbles", "shapes", "crossed digits")
HELD_OUT_GENERATORS = frozenset(
    {
        "strokes:held_letters",
        "strokes:held_signs",
        "scribbles:spiral",
        "scribbles:tangle",
        "shapes:house",
        "shapes:star",
        "shapes:flower",
        "shapes:hourglass",
        "crossed:hatch",
    }
)

Stroke = list[tuple[float, float]]  # a polyline in glyph units: x right, y down
Glyph = list[Stroke]


# ============================================================================================
# A small stroke font
# ============================================================================================


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float) -> Stroke:
    """Points on an elliptic arc from angle a0 to a1 (degrees; 0 right, 90 down, either way)."""
    n = max(4, int(abs(a1 - a0) / 12) + 1)
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a))) for a in np.linspace(a0, a1, n)]


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> Stroke:
    return _arc(cx, cy, rx, ry, 0, 360)


def _dot(x: float, y: float) -> Stroke:
    return [(x, y), (x + 0.01, y + 0.03)]


def _s_curve(top: float, height: float) -> Stroke:
    """An S from its upper right end to its lower left end."""
    r = height / 4
    return _arc(0.5, top + r, 0.32, r, -30, -270) + _arc(0.5, top + 3 * r, 0.32, r, -90, 150)


_P_BOWL = [(0.0, 1.0), (0.0, 0.0), (0.45, 0.0), *_arc(0.45, 0.25, 0.3, 0.25, -90, 90), (0.0, 0.5)]
_LOWER_BOWL = _arc(0.35, 0.72, 0.33, 0.27, -20, -380)  # a's and d's bowl, closed

# Crude, but shaped like a person's letters. Lower case: ascenders from y=0, x-height at 0.45,
# baseline at 1, descenders to 1.4 (fitting to the 20-px box keeps only the proportions).
STROKE_FONT: dict[str, Glyph] = {
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.22, 0.6), (0.78, 0.6)]],
    "C": [_arc(0.5, 0.5, 0.42, 0.5, -40, -320)],
    "E": [[(0.8, 0), (0, 0), (0, 1), (0.8, 1)], [(0, 0.5), (0.6, 0.5)]],
    "F": [[(0.8, 0), (0, 0), (0, 1)], [(0, 0.5), (0.6, 0.5)]],
    "H": [[(0, 0), (0, 1)], [(0.8, 0), (0.8, 1)], [(0, 0.5), (0.8, 0.5)]],
    "K": [[(0, 0), (0, 1)], [(0.75, 0), (0, 0.6)], [(0.25, 0.42), (0.8, 1)]],
    "M": [[(0, 1), (0.08, 0), (0.5, 0.65), (0.92, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (0.8, 1), (0.8, 0)]],
    "P": [_P_BOWL],
    "R": [_P_BOWL, [(0.3, 0.5), (0.8, 1)]],
    "U": [[(0, 0), *_arc(0.4, 0.6, 0.4, 0.4, 180, 0), (0.8, 0)]],
    "V": [[(0, 0), (0.45, 1), (0.9, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (0.8, 1)], [(0.8, 0), (0, 1)]],
    "Y": [[(0, 0), (0.45, 0.5), (0.9, 0)], [(0.45, 0.5), (0.45, 1)]],
    "a": [_LOWER_BOWL, [(0.7, 0.45), (0.7, 0.92), (0.8, 1)]],
    "c": [_arc(0.4, 0.72, 0.38, 0.28, -40, -320)],
    "d": [_LOWER_BOWL, [(0.7, 0), (0.7, 1)]],
    "e": [[(0.05, 0.72), *_arc(0.4, 0.72, 0.35, 0.28, 0, -320)]],
    "f": [[*_arc(0.6, 0.15, 0.22, 0.15, -10, -180), (0.38, 1.05)], [(0.1, 0.45), (0.7, 0.45)]],
    "h": [[(0.05, 0), (0.05, 1)], [(0.05, 0.7), *_arc(0.35, 0.7, 0.3, 0.25, 180, 360), (0.65, 1)]],
    "k": [[(0.05, 0), (0.05, 1)], [(0.6, 0.42), (0.05, 0.75), (0.65, 1)]],
    "m": [
        [(0.05, 0.45), (0.05, 1)],
        [(0.05, 0.65), *_arc(0.25, 0.65, 0.2, 0.2, 180, 360), (0.45, 1)],
        [(0.45, 0.65), *_arc(0.65, 0.65, 0.2, 0.2, 180, 360), (0.85, 1)],
    ],
    "n": [[(0.05, 0.45), (0.05, 1)], [(0.05, 0.68), *_arc(0.33, 0.68, 0.28, 0.23, 180, 360), (0.61, 1)]],
    "p": [[(0.05, 0.45), (0.05, 1.4)], _ellipse(0.33, 0.72, 0.28, 0.27)],
    "r": [[(0.05, 0.45), (0.05, 1)], [(0.05, 0.72), *_arc(0.3, 0.72, 0.25, 0.22, 180, 310)]],
    "t": [[(0.3, 0), (0.3, 0.85), *_arc(0.5, 0.85, 0.2, 0.15, 180, 45)], [(0.05, 0.35), (0.65, 0.35)]],
    "u": [[(0.05, 0.45), *_arc(0.33, 0.75, 0.28, 0.25, 180, 0), (0.61, 0.45)], [(0.61, 0.45), (0.61, 1)]],
    "v": [[(0, 0.45), (0.35, 1), (0.7, 0.45)]],
    "w": [[(0, 0.45), (0.2, 1), (0.4, 0.6), (0.6, 1), (0.8, 0.45)]],
    "x": [[(0, 0.45), (0.6, 1)], [(0.6, 0.45), (0, 1)]],
    "y": [[(0, 0.45), (0.35, 0.95)], [(0.7, 0.45), (0.3, 1.25), (0.1, 1.4)]],
    "+": [[(0.5, 0), (0.5, 1)], [(0, 0.5), (1, 0.5)]],
    "=": [[(0, 0.3), (1, 0.3)], [(0, 0.7), (1, 0.7)]],
    "#": [[(0.35, 0), (0.25, 1)], [(0.75, 0), (0.65, 1)], [(0, 0.33), (1, 0.33)], [(0, 0.67), (1, 0.67)]],
    "%": [[(0.85, 0), (0.15, 1)], _ellipse(0.2, 0.18, 0.15, 0.16), _ellipse(0.8, 0.82, 0.15, 0.16)],
    "&": [
        [
            (0.95, 1.0),
            (0.3, 0.42),
            (0.22, 0.25),
            (0.28, 0.07),
            (0.42, 0.0),
            (0.56, 0.08),
            (0.58, 0.22),
            (0.45, 0.38),
            (0.15, 0.6),
            (0.08, 0.8),
            (0.2, 0.97),
            (0.45, 1.0),
            (0.68, 0.85),
            (0.85, 0.6),
        ]
    ],
    "@": [
        _ellipse(0.5, 0.5, 0.17, 0.2),
        [(0.67, 0.3), (0.67, 0.65), (0.78, 0.72), (0.92, 0.62), *_arc(0.5, 0.5, 0.46, 0.48, 15, -290)],
    ],
    "?": [[*_arc(0.45, 0.25, 0.35, 0.25, 180, 405), (0.45, 0.6), (0.45, 0.75)], _dot(0.45, 0.95)],
    "$": [_s_curve(0.0, 1.0), [(0.5, -0.12), (0.5, 1.12)]],
    "*": [[(0.5, 0), (0.5, 1)], [(0.07, 0.25), (0.93, 0.75)], [(0.07, 0.75), (0.93, 0.25)]],
    "<": [[(0.9, 0), (0, 0.5), (0.9, 1)]],
    ">": [[(0, 0), (0.9, 0.5), (0, 1)]],
    "~": [[(x, 0.5 - 0.22 * math.sin(2 * math.pi * x)) for x in np.linspace(0, 1, 14)]],
    "^": [[(0, 0.6), (0.5, 0), (1, 0.6)]],
    "¶": [
        [(0.45, 0), (0.45, 1)],
        [(0.75, 0), (0.75, 1)],
        [(0.9, 0), (0.4, 0), *_arc(0.4, 0.25, 0.3, 0.25, -90, -270), (0.45, 0.5)],
    ],
    "§": [_s_curve(0.0, 0.7), _s_curve(0.3, 0.7)],
    "€": [_arc(0.55, 0.5, 0.45, 0.5, -45, -315), [(0, 0.4), (0.65, 0.4)], [(0, 0.6), (0.6, 0.6)]],
    "£": [
        [*_arc(0.55, 0.2, 0.2, 0.2, -10, -180), (0.35, 0.55), (0.3, 0.8), (0.1, 1.0), (0.9, 1.0)],
        [(0.1, 0.55), (0.65, 0.55)],
    ],
    "¥": [
        [(0, 0), (0.45, 0.5), (0.9, 0)],
        [(0.45, 0.5), (0.45, 1)],
        [(0.15, 0.6), (0.75, 0.6)],
        [(0.15, 0.78), (0.75, 0.78)],
    ],
    "∞": [
        [
            (
                0.5 + 0.5 * math.cos(t) / (1 + math.sin(t) ** 2),
                0.5 + 0.5 * math.sin(t) * math.cos(t) / (1 + math.sin(t) ** 2),
            )
            for t in np.linspace(0, 2 * math.pi, 33)
        ]
    ],
}


# ============================================================================================
# Rendering: strokes -> ink, distortion, MNIST's format
# ============================================================================================


def _jitter(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hand tremor: independent for a few corner points, smooth along dense arcs."""
    noise = rng.normal(0.0, 1.0, points.shape)
    if len(points) > SMOOTH_JITTER_POINTS:
        noise = ndi.gaussian_filter1d(noise, sigma=len(points) / SMOOTH_JITTER_POINTS, axis=0, mode="nearest")
        noise /= max(float(noise.std()), 1e-6)
    return points + JITTER * noise


def _draw(glyph: Glyph, rng: np.random.Generator, *, pen: float | None = None) -> np.ndarray:
    """Strokes in glyph units -> float ink (H, W) in [0, 1], longest side GLYPH_PX, round pen."""
    strokes = [_jitter(np.asarray(s, np.float64), rng) for s in glyph if len(s)]
    allpts = np.concatenate(strokes)
    lo = allpts.min(0)
    scale = GLYPH_PX / max(float((allpts.max(0) - lo).max()), 1e-6)
    width = max(2, round((pen if pen is not None else rng.uniform(*PEN_RANGE)) * GLYPH_PX))
    margin = width + 2
    size = (allpts.max(0) - lo) * scale + 2 * margin
    img = Image.new("L", (int(math.ceil(size[0])) + 1, int(math.ceil(size[1])) + 1), 0)
    draw = ImageDraw.Draw(img)
    r = width / 2
    for s in strokes:
        pts = [(float(x), float(y)) for x, y in (s - lo) * scale + margin]
        if len(pts) > 1:
            draw.line(pts, fill=255, width=width, joint="curve")
        for x, y in (pts[0], pts[-1]):  # round pen tips
            draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    return np.asarray(img, np.float32) / 255.0


def _distort(ink: np.ndarray, rng: np.random.Generator, *, rotation: float = ROTATION_DEG) -> np.ndarray:
    """Rotate, slant, stretch and wobble float ink (H, W) -> float ink (H', W'), one resampling."""
    h, w = ink.shape
    side = max(h, w)
    a = math.radians(rng.uniform(-rotation, rotation))
    aspect = math.exp(rng.uniform(math.log(ASPECT[0]), math.log(ASPECT[1])))
    shear = rng.uniform(-SHEAR, SHEAR)
    # forward: stretch x, slant (x moves with height), rotate; map_coordinates needs the inverse
    stretch = np.array([[1.0, 0.0], [0.0, aspect]])  # (row, col) order: columns scale
    slant = np.array([[1.0, 0.0], [-shear, 1.0]])  # col += -shear * row: tops lean right
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    forward = rot @ slant @ stretch
    corners = forward @ np.array([[-h, -h, h, h], [-w, w, -w, w]], np.float64) / 2
    room = int(math.ceil(ELASTIC_MARGIN * side))  # the wobble must not push ink off the canvas
    oh, ow = (int(math.ceil(e)) + 2 * room for e in np.ptp(corners, axis=1))
    yy, xx = np.mgrid[0:oh, 0:ow].astype(np.float64)
    rel = np.stack([yy - oh / 2, xx - ow / 2]).reshape(2, -1)
    src = (np.linalg.inv(forward) @ rel).reshape(2, oh, ow) + np.array([h / 2, w / 2])[:, None, None]
    strength = rng.uniform(*ELASTIC_STRENGTH) * side
    if strength > 0:
        for axis in range(2):  # Simard's smooth random field: coarse noise, upsampled smoothly
            coarse = rng.normal(0.0, 1.0, (ELASTIC_GRID, ELASTIC_GRID)).astype(np.float32)
            field = Image.fromarray(coarse).resize((ow, oh), Image.Resampling.BICUBIC)
            src[axis] += strength * np.asarray(field)
    return ndi.map_coordinates(ink, src, order=1, cval=0.0, prefilter=False).astype(np.float32)


def _mnist(ink: np.ndarray) -> np.ndarray:
    """Float ink -> uint8 (28, 28) as MNIST made it (dust below INK_FLOOR dropped first)."""
    ink = np.where(ink < INK_FLOOR, 0.0, np.clip(ink, 0.0, 1.0)).astype(np.float32)
    if not ink.any():
        raise AssertionError("a negative glyph came out empty")  # a bug in a generator
    return synthetic.mnist_format(ink)


def _handwritten(glyph: Glyph, rng: np.random.Generator) -> np.ndarray:
    return _mnist(_distort(_draw(glyph, rng), rng))


# ============================================================================================
# Stroke letters and signs
# ============================================================================================


def _stroke_source(chars: str) -> Callable[[np.random.Generator], Glyph]:
    def make(rng: np.random.Generator) -> Glyph:
        return STROKE_FONT[chars[int(rng.integers(len(chars)))]]

    return make


# ============================================================================================
# Scribbles
# ============================================================================================


def _spline(points: np.ndarray, per_segment: int = 10) -> Stroke:
    """A Catmull-Rom curve through the points (k, 2): a smooth hand-drawn path."""
    p = np.concatenate([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(
            0.5
            * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        )
    out.append(p[-2:-1])
    return [(float(x), float(y)) for x, y in np.concatenate(out)]


def _rotate(stroke: Stroke, angle: float, centre: tuple[float, float] = (0.5, 0.5)) -> Stroke:
    c, s = math.cos(angle), math.sin(angle)
    cx, cy = centre
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in stroke]


SMOOTH_POINTS = (8, 12)  # a smooth scribble passes this many random points: too few could be a 2 or 3
ZIGZAG_TURNS = (5, 11)  # zigzag vertices: at least 5, so never a Z, a 2 or a 7
LOOPS = (3, 6)  # cursive loops in a row
HATCH_LINES = (4, 7)  # parallel lines per hatching set: never a lone 1 or an 11
SPIRAL_TURNS = (2.0, 3.2)  # one turn would be a 6 or a 0; more merge at 28 px
TANGLE_CURVES = (4, 7)  # random curves in a tangle: three lines might make a 4


def _scribble_smooth(rng: np.random.Generator) -> Glyph:
    return [_spline(rng.uniform(0, 1, (int(rng.integers(*SMOOTH_POINTS)), 2)))]


def _scribble_zigzag(rng: np.random.Generator) -> Glyph:
    k = int(rng.integers(*ZIGZAG_TURNS))
    amp = rng.uniform(0.25, 0.5)
    along = np.linspace(0, 1, k) + rng.normal(0, 0.02, k)
    across = 0.5 + amp * np.where(np.arange(k) % 2, 1, -1) * rng.uniform(0.6, 1.0, k)
    return [_rotate(list(zip(along.tolist(), across.tolist())), rng.uniform(0, math.pi))]


def _scribble_loops(rng: np.random.Generator) -> Glyph:
    loops = int(rng.integers(*LOOPS))
    b = rng.uniform(1.4, 2.5)  # prolate cycloid: loops when b > 1
    t = np.linspace(0, 2 * math.pi * loops, 24 * loops)
    x, y = t - b * np.sin(t), -b * rng.uniform(1.0, 2.5) * np.cos(t)  # round e's to tall l's
    return [_rotate(list(zip(x.tolist(), y.tolist())), rng.uniform(-0.4, 0.4))]


def _hatch_set(rng: np.random.Generator, angle: float) -> Glyph:
    k = int(rng.integers(*HATCH_LINES))
    out = []
    for offset in np.linspace(0.0, 1.0, k):
        half = rng.uniform(0.3, 0.5)
        line = [(0.5 - half + rng.normal(0, 0.03), offset), (0.5 + half + rng.normal(0, 0.03), offset)]
        out.append(_rotate(line, angle))
    return out


def _scribble_hatching(rng: np.random.Generator) -> Glyph:
    angle = rng.uniform(0, math.pi)
    glyph = _hatch_set(rng, angle)
    if rng.random() < 0.5:  # cross-hatching
        glyph += _hatch_set(rng, angle + rng.uniform(math.pi / 3, 2 * math.pi / 3))
    return glyph


def _scribble_spiral(rng: np.random.Generator) -> Glyph:
    turns = rng.uniform(*SPIRAL_TURNS)
    t = np.linspace(0.3, 2 * math.pi * turns, int(40 * turns))
    direction = 1 if rng.random() < 0.5 else -1
    aspect = rng.uniform(0.7, 1.3)
    x, y = t * np.cos(direction * t), aspect * t * np.sin(direction * t)
    return [list(zip(x.tolist(), y.tolist()))]


def _scribble_tangle(rng: np.random.Generator) -> Glyph:
    return [_spline(rng.uniform(0, 1, (int(rng.integers(3, 5)), 2))) for _ in range(int(rng.integers(*TANGLE_CURVES)))]


# ============================================================================================
# Shapes (never a plain circle: a 0; never a single line: a 1)
# ============================================================================================


def _closed(points: Sequence[tuple[float, float]], rng: np.random.Generator) -> Stroke:
    """A closed polygon drawn from a random corner, overshooting a little as people do."""
    k = int(rng.integers(len(points)))
    pts = list(points[k:]) + list(points[:k])
    return [*pts, pts[0]]


def _shape_triangle(rng: np.random.Generator) -> Glyph:
    return [_closed([(0, 1), (rng.uniform(0.25, 0.75), 0), (rng.uniform(0.9, 1.1), 1)], rng)]


def _shape_square(rng: np.random.Generator) -> Glyph:
    return [_closed([(0, 0), (1, 0), (1, 1), (0, 1)], rng)]


def _shape_rectangle(rng: np.random.Generator) -> Glyph:
    h = rng.uniform(0.35, 0.6)  # wide only: a tall box is a square 0
    return [_closed([(0, 0), (1, 0), (1, h), (0, h)], rng)]


def _shape_heart(rng: np.random.Generator) -> Glyph:
    tip = (0.5, rng.uniform(0.9, 1.1))
    return [[tip, *_arc(0.28, 0.28, 0.22, 0.22, 150, 360), *_arc(0.72, 0.28, 0.22, 0.22, 180, 390), tip]]


def _shape_smiley(rng: np.random.Generator) -> Glyph:
    mouth = rng.uniform(0.15, 0.3)
    eye = 0.08
    return [
        _ellipse(0.5, 0.5, 0.5, 0.5),
        [(0.33, 0.3), (0.33, 0.3 + eye)],
        [(0.67, 0.3), (0.67, 0.3 + eye)],
        _arc(0.5, 0.55, 0.25, mouth, 20, 160),
    ]


def _shape_arrow(rng: np.random.Generator) -> Glyph:
    head = rng.uniform(0.2, 0.35)
    glyph = [[(0.0, 0.5), (1.0, 0.5)], [(1 - head, 0.5 - head), (1.0, 0.5), (1 - head, 0.5 + head)]]
    # sideways or diagonal: an arrow pointing up is a 1 with a hat
    angle = rng.uniform(-math.radians(35), math.radians(35)) + (math.pi if rng.random() < 0.5 else 0.0)
    return [_rotate(s, angle) for s in glyph]


def _shape_sun(rng: np.random.Generator) -> Glyph:
    rays = int(rng.integers(6, 11))
    glyph = [_ellipse(0.5, 0.5, 0.25, 0.25)]
    for a in np.linspace(0, 2 * math.pi, rays, endpoint=False) + rng.uniform(0, math.pi):
        c, s = math.cos(a), math.sin(a)
        glyph.append([(0.5 + 0.34 * c, 0.5 + 0.34 * s), (0.5 + 0.5 * c, 0.5 + 0.5 * s)])
    return glyph


def _shape_cloud(rng: np.random.Generator) -> Glyph:
    bumps = int(rng.integers(4, 7))
    t = np.linspace(math.pi, 2 * math.pi, 18 * bumps)  # the bumpy top half, then a flat bottom
    r = 1 + 0.2 * np.abs(np.sin(bumps * (t - math.pi)))
    x, y = 0.5 + 0.5 * r * np.cos(t), 0.6 + 0.35 * r * np.sin(t)
    top = list(zip(x.tolist(), y.tolist()))
    return [[*top, (x[0], 0.75), (x[-1], 0.75), top[-1]]]


def _shape_check(rng: np.random.Generator) -> Glyph:
    # wider than tall: a narrow check is a J or a 1 with a hook
    return [[(0.0, rng.uniform(0.5, 0.7)), (rng.uniform(0.3, 0.45), 1.0), (rng.uniform(1.2, 1.5), 0.0)]]


def _shape_cross_circle(rng: np.random.Generator) -> Glyph:
    if rng.random() < 0.5:
        inner = [[(0.15, 0.15), (0.85, 0.85)], [(0.85, 0.15), (0.15, 0.85)]]
    else:
        inner = [[(0.5, 0.0), (0.5, 1.0)], [(0.0, 0.5), (1.0, 0.5)]]
    return [_ellipse(0.5, 0.5, 0.5, 0.5), *inner]


def _shape_envelope(rng: np.random.Generator) -> Glyph:
    h = rng.uniform(0.55, 0.7)
    return [_closed([(0, 0), (1, 0), (1, h), (0, h)], rng), [(0, 0), (0.5, h * 0.6), (1, 0)]]


def _shape_fish(rng: np.random.Generator) -> Glyph:
    return [
        [*_arc(0.38, 0.5, 0.38, 0.25, -150, 150)],
        [(0.65, 0.4), (1.0, 0.2), (0.95, 0.8), (0.65, 0.6)],
        _dot(0.2, 0.45),
    ]


def _shape_house(rng: np.random.Generator) -> Glyph:
    glyph = [_closed([(0, 0.45), (1, 0.45), (1, 1), (0, 1)], rng), [(-0.08, 0.48), (0.5, 0.0), (1.08, 0.48)]]
    if rng.random() < 0.6:
        glyph.append([(0.4, 1), (0.4, 0.7), (0.6, 0.7), (0.6, 1)])
    return glyph


def _shape_star(rng: np.random.Generator) -> Glyph:
    angles = -math.pi / 2 + np.arange(5) * 2 * math.pi / 5
    if rng.random() < 0.5:  # drawn in one go, the pentagram way
        order = [0, 2, 4, 1, 3, 0]
        return [[(0.5 + 0.5 * math.cos(angles[i]), 0.5 + 0.5 * math.sin(angles[i])) for i in order]]
    inner = rng.uniform(0.35, 0.5)
    pts = []
    for a in angles:
        pts.append((0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a)))
        pts.append((0.5 + 0.5 * inner * math.cos(a + math.pi / 5), 0.5 + 0.5 * inner * math.sin(a + math.pi / 5)))
    return [_closed(pts, rng)]


def _shape_flower(rng: np.random.Generator) -> Glyph:
    petals = int(rng.integers(5, 9))
    glyph = [_ellipse(0.5, 0.5, 0.1, 0.1)]
    for a in np.linspace(0, 2 * math.pi, petals, endpoint=False) + rng.uniform(0, math.pi):
        petal = _ellipse(0.5 + 0.3 * math.cos(a), 0.5 + 0.3 * math.sin(a), 0.19, 0.09)
        glyph.append(_rotate(petal, a, (0.5 + 0.3 * math.cos(a), 0.5 + 0.3 * math.sin(a))))
    return glyph


def _shape_hourglass(rng: np.random.Generator) -> Glyph:
    return [_closed([(0, 0), (1, 0), (0, 1), (1, 1)], rng)]


# ============================================================================================
# Crossed-out digits
# ============================================================================================

CROSS_OVERHANG = (0.0, 0.15)  # the crossing reaches this far past the digit's ink box
CROSS_PEN = (0.06, 0.1)  # crossing pen width / the digit's 64-px frame (the digit: ~46 px tall)
CROSS_MIN_WIDTH = 0.7  # the crossing is at least this wide / the digit's height: a 1 crossed by a narrow X is an 8
CROSS_LOOPS = (4, 8)  # loops of a scratched-out line
CROSS_ZIGZAG_TURNS = (8, 13)  # a dense zigzag: never a single strike (a European 7 has one)
CROSSED_DIGIT_PEN = (-0.3, 0.8)  # digit stroke change in MNIST pixels (synthetic.pen_ink)


def _crossing(kind: str, rng: np.random.Generator) -> Glyph:
    """Strokes over the unit box that cross a digit out."""
    if kind == "x":
        return [[(0, 0), (1, 1)], [(1, 0), (0, 1)]]
    if kind == "zigzag":
        k = int(rng.integers(*CROSS_ZIGZAG_TURNS))
        ys = np.linspace(0, 1, k)
        return [[(float(i % 2), float(y)) for i, y in enumerate(ys)]]
    if kind == "loops":  # scratched out with a row of loops
        loops = int(rng.integers(*CROSS_LOOPS))
        t = np.linspace(0, 2 * math.pi * loops, 24 * loops)
        x, y = t - 1.6 * np.sin(t), np.cos(t)
        x, y = (x - x.min()) / np.ptp(x), 0.5 + 0.5 * y * rng.uniform(0.2, 0.45)
        return [list(zip(x.tolist(), y.tolist()))]
    if kind == "hatch":
        return _hatch_set(rng, rng.uniform(math.pi / 6, 5 * math.pi / 6))
    raise ValueError(kind)


def _crossed(kind: str, rng: np.random.Generator, digits: np.ndarray | None) -> np.ndarray:
    if digits is not None:
        digit = digits[int(rng.integers(len(digits)))]
    else:
        digit = synthetic.draw_digit(int(rng.integers(10)), rng)
    ink = synthetic.pen_ink(synthetic.upsample(digit, GLYPH_PX), thickness=rng.uniform(*CROSSED_DIGIT_PEN) * 2)
    rows, cols = np.flatnonzero(ink.max(1) > 0.5), np.flatnonzero(ink.max(0) > 0.5)
    if rows.size == 0:  # an empty "digit": the crossing alone
        rows = cols = np.array([GLYPH_PX // 4, 3 * GLYPH_PX // 4])
    pad = int(GLYPH_PX * 0.4)
    canvas = Image.fromarray(np.pad(np.round(ink * 255).astype(np.uint8), pad))
    y0, y1 = rows[0] + pad, rows[-1] + pad
    x0, x1 = cols[0] + pad, cols[-1] + pad
    over = rng.uniform(*CROSS_OVERHANG)
    oy, ox = (y1 - y0) * over, (x1 - x0) * over
    ox = max(ox, (CROSS_MIN_WIDTH * (y1 - y0) - (x1 - x0)) / 2)
    box = np.array([x0 - ox, y0 - oy]), np.array([x1 - x0 + 2 * ox, y1 - y0 + 2 * oy])
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(rng.uniform(*CROSS_PEN) * GLYPH_PX))
    for stroke in _crossing(kind, rng):
        pts = box[0] + _jitter(np.asarray(stroke, np.float64), rng) * box[1]
        draw.line([(float(x), float(y)) for x, y in pts], fill=255, width=width, joint="curve")
    return _mnist(_distort(np.asarray(canvas, np.float32) / 255.0, rng, rotation=ROTATION_DEG / 2))


# ============================================================================================
# Fonts
# ============================================================================================


@functools.cache
def _font_files(dirs: tuple[str, ...]) -> dict[str, str]:
    """{file stem: path} of the font files under `dirs` (first found wins), symbol fonts left out."""
    found: dict[str, str] = {}
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file()):
            if path.stem not in found and not path.stem.startswith(SYMBOL_FONTS):
                found[path.stem] = str(path)
    return {stem: path for stem, path in found.items() if _has_latin(path)}


@functools.cache
def _font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, FONT_RENDER_PX)


def _render_char(path: str, char: str) -> np.ndarray:
    side = 3 * FONT_RENDER_PX  # script capitals swash far past their advance width
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).text((side / 2, side / 2), char, font=_font(path), fill=255, anchor="mm")
    return np.asarray(img)


def _renders(path: str, char: str) -> bool:
    """Whether the font has the character: it renders ink, unlike its "missing" glyph."""
    ink = _render_char(path, char)
    return bool(ink.any()) and not np.array_equal(ink, _render_char(path, NOTDEF_PROBE))


@functools.cache
def _has_latin(path: str) -> bool:
    try:
        return all(_renders(path, c) for c in LATIN_PROBE)
    except OSError:  # an unreadable or unsupported font file
        return False


def _ink_height(path: str, char: str) -> int:
    rows = np.flatnonzero(_render_char(path, char).any(1))
    return int(rows[-1] - rows[0] + 1) if rows.size else 0


@functools.cache
def _font_chars(path: str) -> str:
    """The kept characters the font has. In an all-caps font (Humor Sans: its x is as tall as
    its X) lower case is drawn as capitals, so d and t, drawn D and T, are left out too; so are
    stubs with far less ink than the font's other glyphs (Humor Sans's £ is a smudge)."""
    caps = _ink_height(path, "x") >= CAPS_RATIO * max(_ink_height(path, "X"), 1)
    has = [c for c in KEPT_LETTERS + KEPT_SIGNS if c not in FONT_EXCLUDED and _renders(path, c)]
    ink = {c: float(_font_glyph(path, c).mean()) for c in has}
    stub = MIN_GLYPH_INK * float(np.median(list(ink.values()))) if ink else 0.0
    return "".join(c for c in has if not (caps and c.upper() in CONFUSABLE) and ink[c] >= stub)


def font_characters(source: str) -> str:
    """The characters a `font:<stem>` source draws: the kept letters and signs the font has."""
    return _font_chars(_font_path(source))


@functools.lru_cache(maxsize=4096)
def _font_glyph(path: str, char: str) -> np.ndarray:
    """One character's ink, cropped, longest side GLYPH_PX: float (H, W) in [0, 1], read-only."""
    ink = _render_char(path, char).astype(np.float32) / 255.0
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    s = GLYPH_PX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
    out = np.clip(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS)), 0, 1)
    out.flags.writeable = False
    return out


THIN_LOSS = 0.03  # thinning is refused where an opening by its disk loses more of the ink than this


@functools.lru_cache(maxsize=8)
def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r + r


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: ink area per unit of stroke length (half the outline)."""
    area = int(np.count_nonzero(mask))
    inner = int(np.count_nonzero(ndi.binary_erosion(mask)))
    return area / max((area - inner) / 2.0, 1.0)


def _thinnable(mask: np.ndarray, r: int) -> bool:
    """Whether eroding by a disk of radius r keeps every stroke: an opening (erode, then grow
    back) loses little ink only if no stroke is thinner than the disk (serif hairlines are)."""
    opened = ndi.binary_dilation(ndi.binary_erosion(mask, _disk(r)), _disk(r))
    return bool(np.count_nonzero(mask & ~opened) <= THIN_LOSS * np.count_nonzero(mask))


def _repen(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Give a font's glyph a random handwriting pen (grey dilation or erosion by a disk)."""
    mask = np.pad(crop > 0.5, 1)
    width = _stroke_width(mask)
    target = rng.uniform(*PEN_RANGE) * max(crop.shape)
    r = round((target - width) / 2)
    r = max(r, -int(width / 3))  # thinning keeps strokes: at most a third of the width
    while r < 0 and not _thinnable(mask, -r):  # ... and never erases a thin one (a V's hairline)
        r += 1
    if r == 0:
        return np.array(crop)
    pad = np.pad(crop, abs(r) + 1)
    return ndi.grey_dilation(pad, footprint=_disk(r)) if r > 0 else ndi.grey_erosion(pad, footprint=_disk(-r))


def _font_path(source: str) -> str:
    stem = source.removeprefix("font:")
    files = _font_files(tuple(FONT_DIRS))
    if not source.startswith("font:") or stem not in files:
        raise DigitrecError(f"unknown negative source {source!r}; known: {', '.join(list_sources())}")
    return files[stem]


def _font_source(source: str, rng: np.random.Generator) -> np.ndarray:
    path = _font_path(source)
    chars = _font_chars(path)
    crop = _font_glyph(path, chars[int(rng.integers(len(chars)))])
    return _mnist(_distort(_repen(crop, rng), rng))


# ============================================================================================
# The registry
# ============================================================================================

_GLYPH_SOURCES: dict[str, tuple[str, Callable[[np.random.Generator], Glyph]]] = {
    "strokes:letters": (
        "stroke letters",
        _stroke_source("".join(c for c in KEPT_LETTERS if c not in HELD_OUT_STROKE_LETTERS)),
    ),
    "strokes:held_letters": ("stroke letters", _stroke_source(HELD_OUT_STROKE_LETTERS)),
    "strokes:signs": ("stroke signs", _stroke_source("".join(c for c in KEPT_SIGNS if c not in HELD_OUT_STROKE_SIGNS))),
    "strokes:held_signs": ("stroke signs", _stroke_source(HELD_OUT_STROKE_SIGNS)),
    "scribbles:smooth": ("scribbles", _scribble_smooth),
    "scribbles:zigzag": ("scribbles", _scribble_zigzag),
    "scribbles:loops": ("scribbles", _scribble_loops),
    "scribbles:hatching": ("scribbles", _scribble_hatching),
    "scribbles:spiral": ("scribbles", _scribble_spiral),
    "scribbles:tangle": ("scribbles", _scribble_tangle),
    "shapes:triangle": ("shapes", _shape_triangle),
    "shapes:square": ("shapes", _shape_square),
    "shapes:rectangle": ("shapes", _shape_rectangle),
    "shapes:heart": ("shapes", _shape_heart),
    "shapes:smiley": ("shapes", _shape_smiley),
    "shapes:arrow": ("shapes", _shape_arrow),
    "shapes:sun": ("shapes", _shape_sun),
    "shapes:cloud": ("shapes", _shape_cloud),
    "shapes:check": ("shapes", _shape_check),
    "shapes:cross_circle": ("shapes", _shape_cross_circle),
    "shapes:envelope": ("shapes", _shape_envelope),
    "shapes:fish": ("shapes", _shape_fish),
    "shapes:house": ("shapes", _shape_house),
    "shapes:star": ("shapes", _shape_star),
    "shapes:flower": ("shapes", _shape_flower),
    "shapes:hourglass": ("shapes", _shape_hourglass),
}
CROSSINGS = ("x", "zigzag", "loops", "hatch")


def _generator_sources() -> list[str]:
    return [*_GLYPH_SOURCES, *(f"crossed:{k}" for k in CROSSINGS)]


def list_sources() -> list[str]:
    """Every source's name: the generators, then `font:<stem>` for each usable font found."""
    return [*_generator_sources(), *(f"font:{stem}" for stem in _font_files(tuple(FONT_DIRS)))]


def family(source: str) -> str:
    """Which of FAMILIES a source belongs to."""
    if source.startswith("font:"):
        return FAMILIES[0]
    if source.startswith("crossed:"):
        return FAMILIES[-1]
    if source in _GLYPH_SOURCES:
        return _GLYPH_SOURCES[source][0]
    raise DigitrecError(f"unknown negative source {source!r}")


def _held_out(source: str) -> bool:
    if source.startswith("font:"):
        return source.removeprefix("font:").startswith(HELD_OUT_FONT_FAMILIES)
    return source in HELD_OUT_GENERATORS


def sources(split: str) -> list[str]:
    """The sources of one split of SPLITS: "fit" (to fit on) or "held_out" (to choose settings)."""
    if split not in SPLITS:
        raise DigitrecError(f"split must be one of {SPLITS}, not {split!r}")
    return [s for s in list_sources() if _held_out(s) == (split == "held_out")]


class _SplitSources(Sequence[str]):
    """`sources(split)` as a constant: looked up on use, so importing scans no font folders
    and FONT_DIRS may still be changed (tests point it at an empty folder)."""

    def __init__(self, split: str) -> None:
        self.split = split

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return sources(self.split)[index]

    def __len__(self) -> int:
        return len(sources(self.split))

    def __iter__(self) -> Iterator[str]:
        return iter(sources(self.split))

    def __repr__(self) -> str:
        return f"sources({self.split!r})"


FIT_SOURCES: Sequence[str] = _SplitSources("fit")
HELD_OUT_SOURCES: Sequence[str] = _SplitSources("held_out")


def _check_digits(digits: np.ndarray | None) -> np.ndarray | None:
    if digits is None:
        return None
    digits = np.asarray(digits)
    if digits.ndim != 3 or digits.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(digits) == 0 or digits.dtype != np.uint8:
        raise DigitrecError(
            f"digits must be uint8 (N, {IMAGE_SIZE}, {IMAGE_SIZE}) with N >= 1; got {digits.dtype} {digits.shape}"
        )
    return digits


def _one(source: str, rng: np.random.Generator, digits: np.ndarray | None) -> np.ndarray:
    if source in _GLYPH_SOURCES:
        return _handwritten(_GLYPH_SOURCES[source][1](rng), rng)
    if source.startswith("crossed:") and source.removeprefix("crossed:") in CROSSINGS:
        return _crossed(source.removeprefix("crossed:"), rng, digits)
    return _font_source(source, rng)


def negative_glyphs(source: str, n: int, seed: int, *, digits: np.ndarray | None = None) -> np.ndarray:
    """n glyphs from one source: uint8 (n, 28, 28), white ink on black, MNIST's format.

    The same (source, n, seed, digits) gives the same glyphs. `digits` (uint8 (N, 28, 28),
    e.g. MNIST training digits) are what `crossed:*` sources cross out, picked at random;
    without them those draw digits with `synthetic.draw_digit`. Other sources ignore them.
    Raises DigitrecError for an unknown source (a font not installed here is unknown).
    """
    digits = _check_digits(digits)
    if source.startswith("font:"):
        _font_path(source)  # unknown fonts fail before any work
    elif source not in _generator_sources():
        raise DigitrecError(f"unknown negative source {source!r}; known: {', '.join(list_sources())}")
    rng = np.random.default_rng([seed, zlib.crc32(source.encode())])
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for i in range(n):
        out[i] = _one(source, rng, digits)
    return out


def mixed_glyphs(
    n: int, seed: int, *, split: str = "fit", digits: np.ndarray | None = None
) -> tuple[np.ndarray, list[str]]:
    """n glyphs from one split, family by family: (uint8 (n, 28, 28), each glyph's source).

    Each glyph's family is drawn uniformly from the families the split has, then a source
    within it uniformly, so that the ~90 fonts do not drown the scribbles and shapes.
    """
    by_family: dict[str, list[str]] = {}
    for s in sources(split):
        by_family.setdefault(family(s), []).append(s)
    rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
    fams = sorted(by_family)
    picks = [by_family[fams[int(rng.integers(len(fams)))]] for _ in range(n)]
    names = [p[int(rng.integers(len(p)))] for p in picks]
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for name in sorted(set(names)):
        idx = [i for i, s in enumerate(names) if s == name]
        out[idx] = negative_glyphs(name, len(idx), seed, digits=digits)
    return out, names


# ============================================================================================
# Whole inputs
# ============================================================================================

RENDER_KINDS = ("photo", "scan", "canvas")


def render_input(glyph: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A glyph (uint8 (28, 28)) as a user would upload it: a phone photo (uint8 (H, W, 3)), a
    flatbed scan (uint8 (H, W)) or a drawing canvas of a random style (uint8 (280, 280, 3 or 4)).
    """
    kind = RENDER_KINDS[int(rng.integers(len(RENDER_KINDS)))]
    if kind == "photo":
        return synthetic.render_photo(glyph, rng)
    if kind == "scan":
        return synthetic.render_scan(glyph, rng)
    style = synthetic.CANVAS_STYLES[int(rng.integers(len(synthetic.CANVAS_STYLES)))]
    return synthetic.render_canvas(glyph, rng, style)


# ============================================================================================
# EMNIST letters
# ============================================================================================

EMNIST_LETTER_LABELS = (1, 26)  # EMNIST letters: 1 = a/A ... 26 = z/Z (upper and lower case merged)


def load_emnist_letters(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """EMNIST letters' IDX pair -> (glyphs uint8 (N, 28, 28) upright, letters '<U1' (N,) 'a'..'z').

    EMNIST stores each image transposed; it is turned upright here. A class holds both cases,
    so a letter is dropped when either case is in CONFUSABLE (o, i, l, ... and b for B, t for T).
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or images.dtype != np.uint8:
        raise DigitrecError(f"{images_path}: expected uint8 (N, 28, 28) images, got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise DigitrecError(f"{labels_path}: {labels.shape} labels for {len(images)} images")
    low, high = EMNIST_LETTER_LABELS
    if labels.size and (labels.min() < low or labels.max() > high):
        raise DigitrecError(
            f"{labels_path}: labels must be {low}..{high} (EMNIST letters), not {labels.min()}..{labels.max()}"
        )
    letters = np.array([chr(ord("a") + int(v) - low) for v in labels], dtype="<U1")
    keep = np.array([c not in CONFUSABLE and c.upper() not in CONFUSABLE for c in letters], bool)
    return np.ascontiguousarray(images.transpose(0, 2, 1)[keep]), letters[keep]
