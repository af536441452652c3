"""An image of a number written on one line -> its digits, left to right, in MNIST's format.

Try: `python -c "import numpy as np; from digitrec.data import synthetic as s; from digitrec.image import segmentation as g;
r = np.random.default_rng(0); img, boxes = s.render_number([s.draw_digit(d, r) for d in (4, 0, 2)], r);
print([c.box for c in g.segment(img)], boxes)"`

Steps: the ink map of the whole image (preprocessing.normalise, at a larger working
resolution) -> long horizontal lines removed (underlines, ruled paper) -> connected components
-> specks dropped -> pieces of one digit merged (they overlap in x: a 5's flag, a broken 4,
a dotted stroke) -> dashes and dots dropped -> touching digits split at the deepest valleys
of their column ink -> `expected` enforced -> each digit through the same `to_mnist` as
single digits. `segment` stops there. `segment_slots` also cuts every group that may hold
more than one digit at its other valleys; the number decoder (recognition/decoder.py) reads
every digit-sized piece and keeps the way of joining them that reads best.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
from scipy import ndimage as ndi

from ..constants import Box
from .inkmap import (
    EIGHT,
    MASK_FRACTION,
    MASK_MARGIN,
    WORK_PIXELS,
    InkMap,
    dilate,
    ink_signal,
    label_pieces,
    normalise,
    piece_areas,
    size_factor,
    threshold_ink,
)
from .mnist_format import to_mnist
from .presence import MIN_INK_LEVEL, MIN_SNR, InkStats, ink_stats, signal_stats

SEGMENT_PIXELS = 1200 * 900  # a number needs more pixels than one digit
MAX_PIECES = 120  # at most this many of the largest components are considered (20 digits)
MIN_DIGIT_PIXELS = 6  # a digit is at least this tall at working resolution
GROUP_SPECK_FRACTION = 0.08  # groups below this fraction of a typical group's ink are specks
# A digit written with a much thinner pen than its neighbours breaks at the threshold into
# dashes, each of which would be dropped as a speck or a mark: they are joined first.
# Chosen on held-out numbers: docs/decisions/thin-pen-fragments.md
FRAGMENT_HEIGHT = 0.6  # pieces lower than this fraction of the digit height, together this tall
FRAGMENT_GAP = 0.15  # ... and this close (of the digit height) are one digit a thin pen broke
LINE_LENGTH = 1.5  # horizontal ink runs longer than this many digit heights are lines
SIZEABLE = 0.1  # components with this fraction of the largest one's ink are not specks
PIECE_OVERLAP = 0.3  # a partial piece overlapping a group in x by this much of its width joins it
PARTIAL_HEIGHT = 0.7  # partial: lower than this fraction of a full-height component ...
PARTIAL_AREA = 0.25  # ... or less than this fraction of the typical component's ink
MERGE_OVERLAP = 0.8  # two full-size components this much overlapped (of the narrower) are one
ATTACH_GAP = 0.1  # a partial piece this close (of a digit height) to a group joins it
DASH_HEIGHT = 0.4  # flat marks lower than this fraction of the digit height are dashes/dots
SPLIT_ASPECT = 1.3  # a group wider than this times its height may be several digits
SINGLE_ASPECT = (0.45, 1.0)  # width/height of groups taken as one typical (not "1") digit
TYPICAL_ASPECT = (0.55, 0.8, 0.95)  # digit width/height: lowest, default, highest typical
CUT_SEARCH = 0.3  # a cut is searched this fraction of a digit width around its expected place
VALLEY = 0.6  # an unforced cut needs a column with at most this fraction of the median ink
SURE_ASPECT = 1.6  # ... unless the group is this wide: no single digit is
# Geometry alone cannot tell a wide 0 from two touching digits, or "16" from a wide 6: such
# groups are cut at every plausible valley, and the decoder chooses how to join the pieces. A
# model with the "not one digit" class says when a piece is two digits, so even narrow groups
# ("51" touching) are offered cut. Chosen on training numbers: docs/decisions/ambiguous-aspect.md
AMBIGUOUS_ASPECT = 0.5  # a group this wide (of its height) beside others may be two digits
LONE_ASPECT = 1.3  # with no other digit to compare, a group is taken for one digit up to this width
MIN_PART_WIDTH = 0.1  # a digit is at least this fraction of the height wide (a 1) ...
MAX_PART_WIDTH = 1.7  # ... at most this wide (MNIST: 99% of 2s and 5s are narrower) ...
FULL_PART_HEIGHT = 0.6  # ... and this tall: digits fill the line's height, a cut-off tail does not
CUT_DEPTH = 0.25  # a candidate cut's column lies this fraction of the median column's ink below
#                   the highest columns a digit width to either side
MAX_CUTS = 3  # at most this many candidate cuts per digit the group may hold, deepest first
# A cut follows a seam through the least ink near its column: digits leaning into each other
# overlap in x. Chosen on training numbers: docs/decisions/seams.md
SEAM_REACH = 0.1  # a cut may bend this fraction of the digit height away from its column ...
SEAM_STRAY = 0.06  # ... at this cost per column a row (ink costs up to 1 a pixel)
# Slot.recut offers a candidate cut every RECUT_STEP of the group's height besides its valleys,
# for groups the decoder still reads as "not one digit" (docs/decisions/recut.md).
RECUT_STEP = 0.1
FRAGMENT_FRACTION = 0.25  # after a cut, pieces at the cut with less than this share of the part's
#                           largest piece are the neighbour's strokes crossing the cut
# No hysteresis: a faint bridge between two touching digits would join them. No speck removal
# either: specks are judged against digit-sized pieces here (_drop_specks).
# Chosen on training numbers: docs/decisions/segmentation-thresholds.md
SEGMENT_THRESHOLDS = {"hysteresis": MASK_FRACTION, "speck_fraction": 0.0}
FEW_VALUES = 64  # medians of fewer values are taken in Python: numpy's per-call overhead
#                  (10-30 us a median, half a dozen of them per image) dominates there


@dataclass(frozen=True)
class DigitCrop:
    """One digit: its MNIST-format image and where it is in the input image."""

    image: np.ndarray  # (28, 28) float32 MNIST-like
    box: Box  # in the input image's pixels


@dataclass(frozen=True)
class Slot:
    """One group of ink and the ways to cut it into digits.

    `segments[i]` = (a, b): a digit from candidate cut a to candidate cut b (cut 0 is the
    group's left edge, the last its right edge), whose crop is `crops[i]`. A reading is a
    chain of segments from the left edge to the right one; `primary` is the geometric one.
    The decoder (recognition/decoder.py) picks a reading from the model's confidence in each crop.
    """

    segments: tuple[tuple[int, int], ...]
    crops: tuple[DigitCrop, ...]
    primary: tuple[int, ...]  # indices into `segments`, left to right
    # split(i, k): segment i's piece cut into k digits at forced cuts, () where it cannot be
    split: Callable[[int, int], tuple[DigitCrop, ...]] | None = field(default=None, compare=False, repr=False)
    # recut(): the same group as a Slot with a candidate cut every RECUT_STEP of its height too
    recut: Callable[[], Slot] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class _Group:
    """Ink belonging to one digit: some components, optionally limited to a column range."""

    labels: tuple[int, ...]
    x0: int
    x1: int
    y0: int
    y1: int
    area: int
    cut: tuple[bool, bool] = (False, False)  # (left, right): that side is a cut through ink
    joined: bool = False  # the fragments of one broken digit (_join_fragments): no cuts offered

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def segment(
    image: np.ndarray,
    *,
    expected: int | None = None,
    debug: dict[str, np.ndarray] | None = None,
    inkmap: InkMap | None = None,
) -> list[DigitCrop]:
    """Split an image of a number into per-digit crops, ordered left to right, by geometry alone.

    `expected` (the user's digit count) forces that many digits where possible, by splitting
    the widest groups or merging the closest ones. A blank image gives an empty list. With a
    `debug` dict: "seg_0_mask", "seg_1_lines", "seg_2_digits" and one "seg_digit_NN" each.
    `inkmap`: the image's ink map from `segment_inkmap` (or `stats_and_inkmap`), when made.
    `segment_slots` also offers the other plausible cuts, for a recogniser to choose from.
    """
    slots = segment_slots(image, expected=expected, debug=debug, inkmap=inkmap, alternatives=False)
    crops = [slot.crops[i] for slot in slots for i in slot.primary]
    if debug is not None:
        for i, c in enumerate(crops):
            debug[f"seg_digit_{i:02d}"] = c.image
    return crops


def segment_slots(
    image: np.ndarray,
    *,
    expected: int | None = None,
    debug: dict[str, np.ndarray] | None = None,
    inkmap: InkMap | None = None,
    alternatives: bool = True,
) -> list[Slot]:
    """`segment`, as one Slot per group of ink, left to right. With `alternatives`, a group
    that may hold more than one digit (cut by geometry, or as wide as AMBIGUOUS_ASPECT) is
    also cut at its other valleys, into pieces of digit size, for the decoder to choose from. Debug
    images as `segment`, less "seg_digit_NN" (the digits are known once read)."""
    if inkmap is None:
        inkmap = segment_inkmap(image, debug=debug)
    if not _has_ink(inkmap):
        return []
    mask = inkmap.mask
    labels, objects = _pieces(mask)
    areas = piece_areas(labels, len(objects))
    lines = horizontal_lines(mask, _line_length(areas, objects))
    if lines.any():  # else the components are those just labelled
        labels, objects = _pieces(mask & ~lines)
        areas = piece_areas(labels, len(objects))
    groups = _components(areas, objects)
    groups = _join_fragments(groups)
    groups = _drop_specks(groups)
    groups = merge_overlapping(groups)
    groups = _drop_marks(groups)
    if not groups:
        return []
    typical = _typical_width(groups)
    parts = _count_digits(groups, typical)
    forced = expected is not None and expected > 0
    if expected is not None and expected > 0:
        groups, parts = _enforce_count(groups, parts, expected)
    order = sorted(range(len(groups)), key=lambda k: (groups[k].x0 + groups[k].x1) / 2)
    in_shape = np.asarray(image).shape[:2]
    ambiguous = AMBIGUOUS_ASPECT if len(groups) > 1 else LONE_ASPECT
    slots, primaries = [], []
    for k in order:
        g, n = groups[k], parts[k]
        first = split_group(g, n, labels, inkmap.ink, force=forced) if n > 1 else [g]
        primaries.extend(first)
        edges = [p.x0 - g.x0 for p in first] + [g.width]
        several = len(first) > 1 or (g.width >= ambiguous * g.height and not g.joined)
        # A lone digit that may not be several is not cut again: a 0 read as two 1s.
        recut = (
            partial(_lattice, g, edges, labels, inkmap, typical, in_shape, RECUT_STEP)
            if alternatives and not g.joined and (several or len(groups) > 1)
            else None
        )
        if alternatives and several:
            slots.append(replace(_lattice(g, edges, labels, inkmap, typical, in_shape), recut=recut))
        else:
            crops = tuple(_crop(p, labels, inkmap, in_shape) for p in first)
            segments = tuple((i, i + 1) for i in range(len(first)))
            split = partial(_split_crops, tuple(first), labels, inkmap, in_shape) if alternatives else None
            slots.append(Slot(segments, crops, tuple(range(len(first))), split, recut))
    if debug is not None:
        debug["seg_0_mask"] = inkmap.mask.astype(np.float32)
        debug["seg_1_lines"] = lines.astype(np.float32)
        debug["seg_2_digits"] = _label_picture(primaries, labels)
    return slots


def segment_inkmap(image: np.ndarray, *, debug: dict[str, np.ndarray] | None = None) -> InkMap:
    """The ink map `segment` works on: finer than a single digit's, every piece of ink kept."""
    return normalise(image, max_pixels=SEGMENT_PIXELS, **SEGMENT_THRESHOLDS, debug=debug)


def stats_and_inkmap(image: np.ndarray, *, debug: dict[str, np.ndarray] | None = None) -> tuple[InkStats, InkMap]:
    """(`ink_stats(image)`, `segment_inkmap(image)`): what "no digit" is decided from and the
    ink map `segment` splits, which recognising an image needs both of. Made from one ink
    signal when both work at the same resolution (images up to WORK_PIXELS always do).
    `debug` gets segmentation's stages."""
    if size_factor(np.shape(image), WORK_PIXELS) != size_factor(np.shape(image), SEGMENT_PIXELS):
        return ink_stats(image), segment_inkmap(image, debug=debug)
    # Up to the thresholds the two are the same computation: `max_pixels` only sets the scale.
    signal = ink_signal(image, max_pixels=SEGMENT_PIXELS, debug=debug)
    return signal_stats(signal), threshold_ink(signal, **SEGMENT_THRESHOLDS, debug=debug)


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def _median(values: Sequence[float] | np.ndarray) -> float:
    """float(np.median(values)), the same number, without numpy's overhead for a few values."""
    if not 0 < len(values) < FEW_VALUES:
        return float(np.median(values))
    v = sorted(np.asarray(values).tolist() if isinstance(values, np.ndarray) else values)
    mid = len(v) // 2
    return float(v[mid]) if len(v) % 2 else (float(v[mid - 1]) + float(v[mid])) / 2  # as numpy


def _interpolated_percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """float(np.percentile(values, q)) (linear interpolation), the same number, without
    numpy's overhead for a few values."""
    if not 0 < len(values) < FEW_VALUES:
        return float(np.percentile(values, q))
    v = sorted(np.asarray(values).tolist() if isinstance(values, np.ndarray) else values)
    index = (len(v) - 1) * (q / 100)
    i = math.floor(index)
    a, b = float(v[i]), float(v[min(i + 1, len(v) - 1)])
    t = index - i
    # numpy's interpolation, operation for operation, so that the result is bit-identical.
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def _has_ink(inkmap: InkMap) -> bool:
    if not inkmap.mask.any() or inkmap.level < MIN_INK_LEVEL:
        return False
    return inkmap.noise == 0 or inkmap.level / inkmap.noise >= MIN_SNR


def _pieces(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, slice] | None]]:
    """ndi.label and ndi.find_objects of the mask, both confined to the ink's bounding box."""
    labels, _, box = label_pieces(mask)
    if box is None:
        return labels, []
    y0, _, x0, _ = box
    return labels, [
        (slice(r.start + y0, r.stop + y0), slice(c.start + x0, c.stop + x0))
        for r, c in ndi.find_objects(labels[box[0] : box[1], box[2] : box[3]])
    ]


def _line_length(areas: np.ndarray, objects: list[tuple[slice, slice] | None]) -> int:
    """Horizontal runs at least this long are lines (underlines, ruled paper), not strokes:
    LINE_LENGTH times the tallest sizeable component. The tallest, not a typical one: a digit
    broken into pieces (a 7 whose bar came apart) has short pieces, and its bar must stay."""
    height = float(MIN_DIGIT_PIXELS)
    if objects:
        heights = np.array([sl[0].stop - sl[0].start if sl else 0 for sl in objects])
        height = max(height, float(heights[areas[1:] >= SIZEABLE * areas[1:].max()].max()))
    return max(int(LINE_LENGTH * height), 2 * MIN_DIGIT_PIXELS)


def horizontal_lines(mask: np.ndarray, length: int) -> np.ndarray:
    """Pixels in horizontal runs of at least `length` (a morphological opening by a line).

    Done with running sums, O(pixels) whatever the length.
    """
    h, w = mask.shape
    if length > w:
        return np.zeros_like(mask)
    c = np.zeros((h, w + 1), np.int32)
    np.cumsum(mask, axis=1, out=c[:, 1:])
    starts = (c[:, length:] - c[:, :-length]) == length  # a full run begins at each start
    s = np.zeros((h, w + 1), np.int32)
    np.cumsum(np.pad(starts, ((0, 0), (0, length - 1))), axis=1, out=s[:, 1:])
    covered = s[:, length:] - s[:, :-length]  # starts within the `length` columns up to here
    out = np.zeros_like(mask)
    out[:, length - 1 :] = covered > 0
    out[:, : length - 1] = s[:, 1:length] > 0
    return out


def _components(areas: np.ndarray, objects: list[tuple[slice, slice] | None]) -> list[_Group]:
    groups = []
    for i, sl in enumerate(objects, start=1):
        if sl is not None:
            groups.append(_Group((i,), sl[1].start, sl[1].stop, sl[0].start, sl[0].stop, int(areas[i])))
    return groups


def _join_fragments(groups: list[_Group]) -> list[_Group]:
    """Join the pieces a thin or faint pen's digit breaks into at the threshold: each lower than
    FRAGMENT_HEIGHT of the digit height (a speck or a mark on its own, so dropped), within
    FRAGMENT_GAP of each other, and together that tall. Others stay as they are."""
    if len(groups) < 2:
        return groups
    height = _median([g.height for g in _sizeable(groups)])  # fragments aside
    small = sorted(
        (k for k, g in enumerate(groups) if g.height < FRAGMENT_HEIGHT * height), key=lambda k: groups[k].x0
    )  # indices into groups
    if len(small) < 2:
        return groups
    gap = FRAGMENT_GAP * height
    cluster = list(range(len(small)))  # union-find over the small pieces

    def root(i: int) -> int:
        while cluster[i] != i:
            i = cluster[i]
        return i

    for i in range(len(small)):
        a = groups[small[i]]
        for j in range(i + 1, len(small)):
            b = groups[small[j]]
            if b.x0 - a.x1 > gap:
                break  # sorted by x0: no later piece is near a (a noisy page stays fast)
            if max(a.x0, b.x0) - min(a.x1, b.x1) <= gap and max(a.y0, b.y0) - min(a.y1, b.y1) <= gap:
                cluster[root(j)] = root(i)
    joined: dict[int, _Group] = {}
    for i, k in enumerate(small):
        r = root(i)
        joined[r] = _union(joined[r], groups[k]) if r in joined else groups[k]
    digits = {
        r: replace(u, joined=True)
        for r, u in joined.items()
        if len(u.labels) > 1 and u.height >= FRAGMENT_HEIGHT * height
    }
    if not digits:
        return groups
    taken = {k for i, k in enumerate(small) if root(i) in digits}
    return [g for k, g in enumerate(groups) if k not in taken] + list(digits.values())


def _sizeable(groups: list[_Group]) -> list[_Group]:
    """The groups with at least SIZEABLE of the largest one's ink: digits, not specks."""
    largest = max(g.area for g in groups)
    return [g for g in groups if g.area >= SIZEABLE * largest]


def _drop_specks(groups: list[_Group]) -> list[_Group]:
    """Drop components far smaller than the typical sizeable one (dust, noise, dots)."""
    if not groups:
        return groups
    typical = _median([g.area for g in _sizeable(groups)])
    kept = [g for g in groups if g.area >= GROUP_SPECK_FRACTION * typical and g.area >= 3]
    if len(kept) > MAX_PIECES:  # a page of text or texture: bound the work, keep the biggest
        kept = sorted(kept, key=lambda g: g.area, reverse=True)[:MAX_PIECES]
    return kept


def _union(a: _Group, b: _Group) -> _Group:
    x0, x1 = min(a.x0, b.x0), max(a.x1, b.x1)
    y0, y1 = min(a.y0, b.y0), max(a.y1, b.y1)
    return _Group(a.labels + b.labels, x0, x1, y0, y1, a.area + b.area)


def merge_overlapping(groups: list[_Group]) -> list[_Group]:
    """Merge the pieces of one digit, told apart from neighbouring digits by overlap in x.

    A partial piece (a 5's flag, part of a broken 4, a dot of a dotted stroke: clearly lower
    or lighter than a typical component) joins the group it overlaps most, when that overlap
    is PIECE_OVERLAP of its width. Two full-size components merge only when the narrower lies
    almost wholly within the other's columns: slanted neighbours overlap a little and stay two.
    """
    if len(groups) < 2:
        return list(groups)
    full_height = _interpolated_percentile([g.height for g in groups], 75)
    typical_area = _median([g.area for g in groups])

    def partial(g: _Group) -> bool:
        return g.height < PARTIAL_HEIGHT * full_height or g.area < PARTIAL_AREA * typical_area

    def overlap(a: _Group, b: _Group) -> int:
        return min(a.x1, b.x1) - max(a.x0, b.x0)

    out = sorted(groups, key=lambda g: g.x0)  # a union keeps the earlier x0: stays sorted
    while len(out) > 1:
        best: tuple[float, int, int] | None = None  # (score, i, j)
        for i, a in enumerate(out):
            for j in range(i + 1, len(out)):
                b = out[j]
                if b.x0 >= a.x1:
                    break  # sorted by x0: no later group overlaps a
                ov = overlap(a, b)
                narrow = min(a.width, b.width)
                joins = (partial(a) or partial(b)) and ov >= PIECE_OVERLAP * narrow
                if joins or ov >= MERGE_OVERLAP * narrow:
                    score = ov / narrow
                    if best is None or score > best[0]:
                        best = (score, i, j)
        if best is None:
            break
        _, i, j = best
        out[i] = _union(out[i], out[j])
        del out[j]
    return _attach_pieces(out, partial, full_height)


def _attach_pieces(groups: list[_Group], partial: Callable[[_Group], bool], full_height: float) -> list[_Group]:
    """A partial piece right next to a group (a 7's bar, a 5's flag drawn apart) joins it."""
    out = sorted(groups, key=lambda g: g.x0)
    changed = True
    while changed and len(out) > 1:
        changed = False
        for i in sorted(range(len(out)), key=lambda k: out[k].area):
            if not partial(out[i]):
                continue
            gaps = [(max(out[j].x0 - out[i].x1, out[i].x0 - out[j].x1), j) for j in range(len(out)) if j != i]
            gap, j = min(gaps)
            if gap <= ATTACH_GAP * full_height:
                out[min(i, j)] = _union(out[i], out[j])
                del out[max(i, j)]
                changed = True
                break
    return out


def _drop_marks(groups: list[_Group]) -> list[_Group]:
    """Drop dashes, dots and commas: groups much lower than the typical digit."""
    if not groups:
        return groups
    height = _median([g.height for g in groups])
    tall = [g.height for g in groups if g.height >= 0.5 * height]
    height = _median(tall) if tall else height
    return [g for g in groups if g.height >= DASH_HEIGHT * height and g.height >= MIN_DIGIT_PIXELS]


def _typical_width(groups: list[_Group]) -> float:
    """A typical digit's width in this image, from the groups that look like one digit."""
    height = _median([g.height for g in groups])
    if len(groups) == 1:
        # Nothing to compare with (the image of a single digit, most often): one digit, unless
        # wider than one digit may be.
        return SPLIT_ASPECT * height
    lo, hi = SINGLE_ASPECT
    singles = [g.width for g in groups if lo <= g.width / max(g.height, 1) <= hi]
    least, default, most = TYPICAL_ASPECT
    # The upper quartile: narrow digits (a slanted 1, a 7) should not make wide ones look double.
    typical = _interpolated_percentile(singles, 75) if singles else default * height
    return min(max(typical, least * height), most * height)


def _count_digits(groups: list[_Group], typical: float) -> list[int]:
    """How many digits each group holds, from its width against a typical digit's."""
    parts = []
    for g in groups:
        n = 1
        if g.width > SPLIT_ASPECT * g.height:
            n = max(1, round(g.width / typical))
        parts.append(n)
    return parts


def _enforce_count(groups: list[_Group], parts: list[int], expected: int) -> tuple[list[_Group], list[int]]:
    """Split the widest groups or merge the closest neighbours until the count is `expected`."""
    groups, parts = list(groups), list(parts)
    while sum(parts) < expected:
        i = max(range(len(groups)), key=lambda k: groups[k].width / parts[k])
        if groups[i].width / (parts[i] + 1) < 2:
            break  # nothing left wide enough to split
        parts[i] += 1
    while sum(parts) > expected:
        over = [k for k in range(len(groups)) if parts[k] > 1]
        if over:  # undo the most doubtful split first
            i = min(over, key=lambda k: groups[k].width / parts[k])
            parts[i] -= 1
            continue
        if len(groups) < 2:
            break
        order = sorted(range(len(groups)), key=lambda k: groups[k].x0)
        groups = [groups[k] for k in order]
        gaps = [groups[k + 1].x0 - groups[k].x1 for k in range(len(groups) - 1)]
        k = int(np.argmin(gaps))
        groups[k : k + 2] = [_union(groups[k], groups[k + 1])]
        parts[k : k + 2] = [1]
    return groups, parts


def _group_mask(g: _Group, labels: np.ndarray) -> np.ndarray:
    """The group's pixels within its box."""
    return _pixels_of(g, labels[g.y0 : g.y1, g.x0 : g.x1])


def _pixels_of(g: _Group, window: np.ndarray) -> np.ndarray:
    """Where `window` (a part of the labels) holds the group's components: np.isin, faster."""
    if len(g.labels) == 1:  # most digits are one component
        return window == g.labels[0]
    top = max(g.labels) + 1  # larger numbers are not the group's: clipped to `top`, False
    member = np.zeros(top + 1, bool)
    member[list(g.labels)] = True
    return member[np.minimum(window, top)]


def split_group(g: _Group, n: int, labels: np.ndarray, ink: np.ndarray, *, force: bool = False) -> list[_Group]:
    """Cut a group of touching digits into n at the deepest valleys of its column ink.

    Each cut is searched CUT_SEARCH of a digit width around its evenly spaced position, and
    is the column whose ink lies deepest below the highest columns on either side (up to the
    previous cut and one digit width on): where two digits touch, not a digit's thin end.
    Unless `force`d (the user said how many digits), a cut must be a real valley, VALLEY of
    the median column's ink: a wide single digit (a 2 with a long tail) has no such valley
    and stays whole. Groups wider than SURE_ASPECT are always cut.
    """
    m, profile = _column_ink(g, labels, ink)
    typical = _inked_median(profile)
    sure = force or g.width > SURE_ASPECT * g.height
    step = g.width / n
    reach = max(1, int(CUT_SEARCH * step))
    cuts = [0]
    for i in range(1, n):
        centre = round(i * step)
        lo, hi = max(cuts[-1] + 1, centre - reach), min(g.width - 1, centre + reach + 1)
        if lo >= hi:
            if force:
                cuts.append(min(max(centre, cuts[-1] + 1), g.width - 1))
            continue
        cut = lo + _deepest(
            profile[cuts[-1] : min(g.width, round(centre + step))], lo - cuts[-1], hi - cuts[-1], centre - cuts[-1]
        )
        if not sure and profile[cut] > VALLEY * typical:
            continue  # no valley here: not two digits touching
        cuts.append(cut)
    cuts.append(g.width)
    out = []
    for c0, c1 in zip(cuts[:-1], cuts[1:]):
        piece = m[:, c0:c1]
        rows = np.flatnonzero(piece.any(axis=1))
        if rows.size == 0:
            continue
        sides = (g.cut[0] or c0 > 0, g.cut[1] or c1 < g.width)
        out.append(
            replace(
                g,
                x0=g.x0 + c0,
                x1=g.x0 + c1,
                y0=g.y0 + int(rows[0]),
                y1=g.y0 + int(rows[-1]) + 1,
                area=int(piece.sum()),
                cut=sides,
            )
        )
    return out


def _column_ink(g: _Group, labels: np.ndarray, ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the group's pixels within its box, its ink per column smoothed over 3 columns)."""
    m = _group_mask(g, labels)
    profile = (ink[g.y0 : g.y1, g.x0 : g.x1] * m).sum(axis=0)
    return m, ndi.uniform_filter1d(profile, size=3, mode="nearest")


def _inked_median(profile: np.ndarray) -> float:
    """The median of a column profile's inked (non-zero) columns; 0 when none are."""
    inked = profile[profile > 0]
    return float(np.median(inked)) if inked.size else 0.0


def _deepest(profile: np.ndarray, lo: int, hi: int, centre: int) -> int:
    """The index in [lo, hi) whose value lies deepest below the highest values on its left and
    on its right within `profile` (a valley's depth); of equally deep ones, the nearest to
    `centre`."""
    left = np.maximum.accumulate(profile)[lo:hi]
    right = np.maximum.accumulate(profile[::-1])[::-1][lo:hi]
    depth = np.minimum(left, right) - profile[lo:hi]
    best = np.flatnonzero(depth >= depth.max() - 1e-6)
    return int(best[np.argmin(np.abs(best + lo - centre))])


def _lattice(
    g: _Group,
    edges: list[int],
    labels: np.ndarray,
    inkmap: InkMap,
    typical: float,
    in_shape: tuple[int, int],
    step: float | None = None,
) -> Slot:
    """A Slot for a group that may hold several digits: candidate cuts at the geometric cuts
    (`edges`, group columns, ending with its width), at every deep valley of its column ink
    and, with `step`, every `step` of its height, and a segment for each span between two cuts
    that is digit-sized."""
    m, profile = _column_ink(g, labels, inkmap.ink)
    candidates = set(edges) | set(_valleys(profile, typical, g, len(edges) - 1))
    if step is not None:
        margin = max(1, math.ceil(MIN_PART_WIDTH * g.height))
        candidates |= set(range(margin, g.width - margin + 1, max(1, round(step * g.height))))
    cuts = sorted(candidates)
    # Each column's top and bottom ink row, for the height of a span.
    rows = np.arange(m.shape[0])[:, None]
    top = np.where(m, rows, m.shape[0]).min(axis=0)
    bottom = np.where(m, rows, -1).max(axis=0)
    primary = set(zip(edges[:-1], edges[1:]))
    segments, parts = [], []
    for i, a in enumerate(cuts):
        for j in range(i + 1, len(cuts)):
            b = cuts[j]
            if (a, b) not in primary:
                if b - a > MAX_PART_WIDTH * g.height:
                    break
                if b - a < MIN_PART_WIDTH * g.height:
                    continue
            y0, y1 = int(top[a:b].min()), int(bottom[a:b].max()) + 1
            if y1 <= y0 or ((a, b) not in primary and y1 - y0 < FULL_PART_HEIGHT * g.height):
                continue
            segments.append((i, j))
            parts.append(
                replace(
                    g,
                    x0=g.x0 + a,
                    x1=g.x0 + b,
                    y0=g.y0 + y0,
                    y1=g.y0 + y1,
                    area=int(m[:, a:b].sum()),
                    cut=(g.cut[0] or a > 0, g.cut[1] or b < g.width),
                )
            )
    index = {(cuts[a], cuts[b]): k for k, (a, b) in enumerate(segments)}
    chain = tuple(index[span] for span in zip(edges[:-1], edges[1:]) if span in index)
    crops = tuple(_crop(p, labels, inkmap, in_shape) for p in parts)
    return Slot(tuple(segments), crops, chain, partial(_split_crops, tuple(parts), labels, inkmap, in_shape))


def _split_crops(
    parts: tuple[_Group, ...], labels: np.ndarray, inkmap: InkMap, in_shape: tuple[int, int], i: int, k: int
) -> tuple[DigitCrop, ...]:
    """Slot.split: piece `i` (of `parts`) cut into `k` digits as `--digits` would cut it."""
    pieces = split_group(parts[i], k, labels, inkmap.ink, force=True)
    return tuple(_crop(p, labels, inkmap, in_shape) for p in pieces) if len(pieces) == k else ()


def _valleys(profile: np.ndarray, typical: float, g: _Group, n: int) -> list[int]:
    """Candidate cuts: columns whose ink lies CUT_DEPTH of the median column's below the highest
    columns within a digit width on both sides, local deepest within a narrow digit's width,
    at most MAX_CUTS per digit the group may hold (`n` by geometry, one more), deepest first."""
    w = profile.size
    reach = max(1, round(typical))
    # The highest column from `reach` columns to the left up to this one, and to the right.
    left = ndi.maximum_filter1d(profile, size=reach + 1, origin=reach // 2, mode="nearest")
    right = ndi.maximum_filter1d(profile[::-1], size=reach + 1, origin=reach // 2, mode="nearest")[::-1]
    depth = np.minimum(left, right) - profile
    margin = max(1, math.ceil(MIN_PART_WIDTH * g.height))
    local = depth >= ndi.maximum_filter1d(depth, size=2 * margin + 1, mode="nearest")
    median = _inked_median(profile)
    ok = local & (depth >= CUT_DEPTH * median) & (depth > 0)
    ok[:margin] = ok[w - margin :] = False
    found = np.flatnonzero(ok)
    found = found[np.argsort(-depth[found], kind="stable")][: MAX_CUTS * (n + 1)]
    return sorted(int(c) for c in found)


def _crop(g: _Group, labels: np.ndarray, inkmap: InkMap, in_shape: tuple[int, int]) -> DigitCrop:
    """The group's own ink (neighbours' strokes excluded) -> MNIST image + input-space box."""
    h, w = labels.shape
    reach = round(SEAM_REACH * g.height)
    pad = [max(MASK_MARGIN, reach) if cut else MASK_MARGIN for cut in g.cut]  # room for a seam at a cut
    y0, y1 = max(0, g.y0 - MASK_MARGIN), min(h, g.y1 + MASK_MARGIN)
    x0, x1 = max(0, g.x0 - pad[0]), min(w, g.x1 + pad[1])
    mask = _pixels_of(g, labels[y0:y1, x0:x1])
    # Only the group's own columns: after a split, the touching neighbour is not this digit.
    # A cut follows the seam through the least ink near its column, not the column itself:
    # digits that lean into each other overlap in x.
    if not g.cut[0]:
        mask[:, : g.x0 - x0] = False
    if not g.cut[1]:
        mask[:, g.x1 - x0 :] = False
    if g.cut[0] or g.cut[1]:
        cols = np.arange(mask.shape[1])[None, :]
        window = inkmap.ink[y0:y1, x0:x1]
        left = _seam(window, g.x0 - x0, reach) if g.cut[0] else None
        right = _seam(window, g.x1 - x0, reach) if g.cut[1] else None
        if left is not None:
            mask &= cols >= left[:, None]
        if right is not None:
            mask &= cols < right[:, None]
        mask = _drop_cut_fragments(mask, left, None if right is None else right - 1)
    near = dilate(mask, MASK_MARGIN)
    ink = inkmap.ink[y0:y1, x0:x1] * near
    k = inkmap.scale
    in_h, in_w = in_shape
    box = (
        min(g.x0 * k, in_w),
        min(g.y0 * k, in_h),
        min(g.x1 * k, in_w),
        min(g.y1 * k, in_h),
    )
    return DigitCrop(image=to_mnist(ink, mask), box=box)


def _seam(ink: np.ndarray, col: int, reach: int) -> np.ndarray:
    """Per row of `ink`, where to cut it near column `col`: the top-to-bottom path within
    `reach` columns of `col`, moving at most one column a row, that crosses the least ink (a
    seam, as in seam carving). Pixels left of a row's seam column are the left digit's."""
    h, w = ink.shape
    col = min(max(col, 0), w)
    lo, hi = max(0, col - reach), min(w, col + reach + 1)
    if hi <= lo or h == 0:
        return np.full(h, col)
    # Straying from the valley's column costs a little: on blank rows the seam stays put.
    band = ink[:, lo:hi].astype(np.float64) + SEAM_STRAY * np.abs(np.arange(lo, hi) - col)[None, :]
    back = np.zeros(band.shape, np.int64)
    padded = np.full(band.shape[1] + 2, np.inf)  # the running totals, with no way in from outside the band
    padded[1:-1] = band[0]
    for y in range(1, h):
        left, above, right = padded[:-2], padded[1:-1], padded[2:]
        # Where equal, from the left before from above before from the right.
        from_left = left <= above
        best = np.where(from_left, left, above)
        from_right = right < best
        back[y] = np.where(from_right, 1, np.where(from_left, -1, 0))
        padded[1:-1] = np.where(from_right, right, best) + band[y]
    total = padded[1:-1]
    path = np.empty(h, np.int64)
    j = int(total.argmin())
    for y in range(h - 1, -1, -1):
        path[y] = j
        j += back[y, j]
    return path + lo


def _drop_cut_fragments(mask: np.ndarray, left: np.ndarray | None, right: np.ndarray | None) -> np.ndarray:
    """Drop small pieces lying at a cut (`left`, `right`: per row, the first and the last column
    the digit keeps; None where there is no cut): strokes of the touching neighbour that crossed
    the cut. The digit's own pieces are kept."""
    pieces, n = ndi.label(mask, structure=EIGHT)
    if n < 2:
        return mask
    areas = np.bincount(pieces.ravel(), minlength=n + 1)
    at_cut = np.zeros(n + 1, bool)
    rows = np.arange(mask.shape[0])
    for seam in (left, right):
        if seam is not None:
            at_cut[pieces[rows, np.clip(seam, 0, mask.shape[1] - 1)]] = True
    drop = at_cut & (areas < FRAGMENT_FRACTION * areas[1:].max())
    drop[0] = False
    return mask & ~drop[pieces] if drop.any() else mask


def _label_picture(groups: list[_Group], labels: np.ndarray) -> np.ndarray:
    """Each digit's pixels in its own grey level, for --debug-dir."""
    out = np.zeros(labels.shape, np.float32)
    for i, g in enumerate(groups):
        m = _group_mask(g, labels)
        out[g.y0 : g.y1, g.x0 : g.x1][m] = 0.3 + 0.7 * (i + 1) / len(groups)
    return out
