"""An image of a number written on one line -> its digits, left to right, in MNIST's format.

Try: `python -c "import numpy as np; from digitrec import synthetic as s, segmentation as g;
r = np.random.default_rng(0); img, boxes = s.render_number([s.draw_digit(d, r) for d in (4, 0, 2)], r);
print([c.box for c in g.segment(img)], boxes)"`

Steps: the ink map of the whole image (preprocessing.normalise, at a larger working
resolution) -> long horizontal lines removed (underlines, ruled paper) -> connected components
-> specks dropped -> pieces of one digit merged (they overlap in x: a 5's flag, a broken 4,
a dotted stroke) -> dashes and dots dropped -> touching digits split at the columns with the
least ink -> `expected` enforced -> each digit through the same `to_mnist` as single digits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from digitrec.preprocessing import (
    MASK_FRACTION,
    MASK_MARGIN,
    MIN_INK_LEVEL,
    MIN_SNR,
    WORK_PIXELS,
    InkMap,
    InkStats,
    dilate,
    ink_signal,
    ink_stats,
    label_pieces,
    normalise,
    piece_areas,
    signal_stats,
    size_factor,
    threshold_ink,
    to_mnist,
)

SEGMENT_PIXELS = 1200 * 900  # a number needs more pixels than one digit
MAX_PIECES = 120  # at most this many of the largest components are considered (20 digits)
MIN_DIGIT_PIXELS = 6  # a digit is at least this tall at working resolution
SPECK_FRACTION = 0.08  # components below this fraction of a typical component are specks
LINE_LENGTH = 1.5  # horizontal ink runs longer than this many digit heights are lines
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
# No hysteresis: a faint bridge between two touching digits would join them. No speck
# removal either: specks are judged against digit-sized pieces here (_drop_specks).
SEGMENT_THRESHOLDS = {"hysteresis": MASK_FRACTION, "speck_fraction": 0.0}
FEW_VALUES = 64  # medians of fewer values are taken in Python: numpy's per-call overhead
#                  (10-30 us a median, half a dozen of them per image) dominates there

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class DigitCrop:
    """One digit: its MNIST-format image and where it is in the input image."""

    image: np.ndarray  # (28, 28) float32 MNIST-like
    box: Box  # (x0, y0, x1, y1), end-exclusive, in the input image's pixel coordinates


@dataclass(frozen=True)
class _Group:
    """Ink belonging to one digit: some components, optionally limited to a column range."""

    labels: tuple[int, ...]
    x0: int
    x1: int
    y0: int
    y1: int
    area: int

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
    """Split an image of a number into per-digit crops, ordered left to right.

    `expected` (the user's digit count) forces that many digits where possible, by splitting
    the widest groups or merging the closest ones. A blank image gives an empty list. With a
    `debug` dict: "seg_0_mask", "seg_1_lines", "seg_2_digits" and one "seg_digit_NN" each.
    `inkmap`: the image's ink map from `segment_inkmap` (or `stats_and_inkmap`), when made.
    """
    if inkmap is None:
        inkmap = segment_inkmap(image, debug=debug)
    if not _has_ink(inkmap):
        return []
    mask = inkmap.mask
    labels, objects = _pieces(mask)
    areas = piece_areas(labels, len(objects))
    height = _typical_height(areas, objects)
    lines = horizontal_lines(mask, max(int(LINE_LENGTH * height), 2 * MIN_DIGIT_PIXELS))
    if lines.any():  # else the components are those just labelled
        labels, objects = _pieces(mask & ~lines)
        areas = piece_areas(labels, len(objects))
    groups = _components(areas, objects)
    groups = _drop_specks(groups)
    groups = merge_overlapping(groups)
    groups = _drop_marks(groups)
    if not groups:
        return []
    parts = _count_digits(groups)
    if expected is not None and expected > 0:
        groups, parts = _enforce_count(groups, parts, expected)
    digits: list[_Group] = []
    forced = expected is not None and expected > 0
    for g, n in zip(groups, parts):
        digits.extend(split_group(g, n, labels, inkmap.ink, force=forced) if n > 1 else [g])
    digits.sort(key=lambda g: (g.x0 + g.x1) / 2)
    if debug is not None:
        debug["seg_0_mask"] = inkmap.mask.astype(np.float32)
        debug["seg_1_lines"] = lines.astype(np.float32)
        debug["seg_2_digits"] = _label_picture(digits, labels)
    in_shape = np.asarray(image).shape[:2]
    crops = [_crop(g, labels, inkmap, in_shape) for g in digits]
    if debug is not None:
        for i, c in enumerate(crops):
            debug[f"seg_digit_{i:02d}"] = c.image
    return crops


def segment_inkmap(image: np.ndarray, *, debug: dict[str, np.ndarray] | None = None) -> InkMap:
    """The ink map `segment` works on: finer than a single digit's, every piece of ink kept."""
    return normalise(image, max_pixels=SEGMENT_PIXELS, **SEGMENT_THRESHOLDS, debug=debug)


def stats_and_inkmap(
    image: np.ndarray, *, debug: dict[str, np.ndarray] | None = None
) -> tuple[InkStats, InkMap]:
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


def _percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
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
    return labels, [(slice(r.start + y0, r.stop + y0), slice(c.start + x0, c.stop + x0))
                    for r, c in ndi.find_objects(labels[box[0] : box[1], box[2] : box[3]])]


def _typical_height(areas: np.ndarray, objects: list[tuple[slice, slice] | None]) -> float:
    """Median height of the sizeable components (an underline or specks do not count), from
    their `piece_areas` and `ndi.find_objects` boxes."""
    if not objects:
        return float(MIN_DIGIT_PIXELS)
    areas = areas[1:]
    heights = np.array([s[0].stop - s[0].start for s in objects])
    widths = np.array([s[1].stop - s[1].start for s in objects])
    sizeable = (areas >= 0.1 * areas.max()) & (heights >= 0.3 * widths)
    pick = heights[sizeable] if sizeable.any() else heights
    return float(max(_median(pick), MIN_DIGIT_PIXELS))


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


def _drop_specks(groups: list[_Group]) -> list[_Group]:
    """Drop components far smaller than the typical sizeable one (dust, noise, dots)."""
    if not groups:
        return groups
    areas = np.array([g.area for g in groups])
    typical = _median(areas[areas >= 0.1 * areas.max()])
    kept = [g for g in groups if g.area >= SPECK_FRACTION * typical and g.area >= 3]
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
    full_height = _percentile([g.height for g in groups], 75)
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


def _attach_pieces(
    groups: list[_Group], partial: Callable[[_Group], bool], full_height: float
) -> list[_Group]:
    """A partial piece right next to a group (a 7's bar, a 5's flag drawn apart) joins it."""
    out = sorted(groups, key=lambda g: g.x0)
    changed = True
    while changed and len(out) > 1:
        changed = False
        for i in sorted(range(len(out)), key=lambda k: out[k].area):
            if not partial(out[i]):
                continue
            gaps = [
                (max(out[j].x0 - out[i].x1, out[i].x0 - out[j].x1), j) for j in range(len(out)) if j != i
            ]
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
    height = _median([g.height for g in groups])
    lo, hi = SINGLE_ASPECT
    singles = [g.width for g in groups if lo <= g.width / max(g.height, 1) <= hi]
    least, default, most = TYPICAL_ASPECT
    # The upper quartile: narrow digits (a slanted 1, a 7) should not make wide ones look double.
    typical = _percentile(singles, 75) if singles else default * height
    return min(max(typical, least * height), most * height)


def _count_digits(groups: list[_Group]) -> list[int]:
    """How many digits each group holds, from its width against a typical digit's."""
    typical = _typical_width(groups)
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


def split_group(
    g: _Group, n: int, labels: np.ndarray, ink: np.ndarray, *, force: bool = False
) -> list[_Group]:
    """Cut a group of touching digits into n at the columns with the least ink.

    Each cut is the emptiest column near its evenly spaced position. Unless `force`d (the
    user said how many digits), a cut must be a real valley, VALLEY of the median column's
    ink: a wide single digit (a 2 with a long tail) has no such valley and stays whole.
    Groups wider than SURE_ASPECT are always cut.
    """
    m = _group_mask(g, labels)
    profile = (ink[g.y0 : g.y1, g.x0 : g.x1] * m).sum(axis=0)
    profile = ndi.uniform_filter1d(profile, size=3, mode="nearest")
    typical = float(np.median(profile[profile > 0])) if (profile > 0).any() else 0.0
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
        window = profile[lo:hi]
        if not sure and window.min() > VALLEY * typical:
            continue  # no valley here: not two digits touching
        best = np.flatnonzero(window <= window.min() + 1e-6)
        cuts.append(lo + int(best[np.argmin(np.abs(best + lo - centre))]))  # nearest of the minima
    cuts.append(g.width)
    out = []
    for c0, c1 in zip(cuts[:-1], cuts[1:]):
        piece = m[:, c0:c1]
        rows = np.flatnonzero(piece.any(axis=1))
        if rows.size == 0:
            continue
        out.append(replace(g, x0=g.x0 + c0, x1=g.x0 + c1, y0=g.y0 + int(rows[0]),
                           y1=g.y0 + int(rows[-1]) + 1, area=int(piece.sum())))
    return out


def _crop(g: _Group, labels: np.ndarray, inkmap: InkMap, in_shape: tuple[int, int]) -> DigitCrop:
    """The group's own ink (neighbours' strokes excluded) -> MNIST image + input-space box."""
    h, w = labels.shape
    y0, y1 = max(0, g.y0 - MASK_MARGIN), min(h, g.y1 + MASK_MARGIN)
    x0, x1 = max(0, g.x0 - MASK_MARGIN), min(w, g.x1 + MASK_MARGIN)
    mask = _pixels_of(g, labels[y0:y1, x0:x1])
    # Only the group's own columns: after a split, the touching neighbour is not this digit.
    mask[:, : g.x0 - x0] = False
    mask[:, g.x1 - x0 :] = False
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


def _label_picture(groups: list[_Group], labels: np.ndarray) -> np.ndarray:
    """Each digit's pixels in its own grey level, for --debug-dir."""
    out = np.zeros(labels.shape, np.float32)
    for i, g in enumerate(groups):
        m = _group_mask(g, labels)
        out[g.y0 : g.y1, g.x0 : g.x1][m] = 0.3 + 0.7 * (i + 1) / len(groups)
    return out

