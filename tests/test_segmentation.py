"""Segmentation: numbers on one line -> ordered digit crops, on made-up images.

Run: `.venv/bin/pytest tests/test_segmentation.py -q`
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitrec.constants import IMAGE_SIZE
from digitrec.data import synthetic
from digitrec.image import segmentation as sg
from digitrec.image.inkmap import WORK_PIXELS, piece_areas, size_factor
from digitrec.image.presence import ink_stats
from digitrec.image.segmentation import DigitCrop, segment
from digitrec.recognition.backends import Backend
from digitrec.recognition.decoder import PIECE_SHIFTS
from digitrec.recognition.recognizer import Recognizer


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def page(width: int = 400, height: int = 120) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("L", (width, height), 240)
    return img, ImageDraw.Draw(img)


def zero(d: ImageDraw.ImageDraw, x: int, y: int = 30, w: int = 36, h: int = 60, pen: int = 6) -> None:
    d.ellipse([x, y, x + w, y + h], outline=20, width=pen)


def one(d: ImageDraw.ImageDraw, x: int, y: int = 30, h: int = 60, pen: int = 6) -> None:
    d.line([(x, y), (x, y + h)], fill=20, width=pen)


def number(digits: list[int], seed: int, **kw) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    rng = np.random.default_rng(seed)
    return synthetic.render_number([synthetic.draw_digit(d, rng) for d in digits], rng, **kw)


@pytest.mark.parametrize(
    "digits,seed,kind",
    [([4, 0, 2], 1, "scan"), ([1, 9, 8, 3, 7], 2, "photo"), ([5, 6, 0], 3, "photo"), ([2, 7, 1, 4, 9], 4, "scan")],
)
def test_numbers_with_gaps_give_ordered_boxes(digits, seed, kind):
    img, truth = number(digits, seed, kind=kind, spacing="normal")
    crops = segment(img)
    assert len(crops) == len(digits)
    assert all(isinstance(c, DigitCrop) for c in crops)
    assert [c.box[0] for c in crops] == sorted(c.box[0] for c in crops)
    for c, t in zip(crops, truth):
        assert iou(c.box, t) > 0.6
        assert c.image.shape == (IMAGE_SIZE, IMAGE_SIZE) and c.image.dtype == np.float32
        assert c.image.max() == pytest.approx(1.0, abs=0.02)


def test_single_digit_gives_one_crop_and_blank_none():
    img, d = page(200, 150)
    zero(d, 80)
    crops = segment(np.asarray(img))
    assert len(crops) == 1
    assert segment(np.full((100, 300), 0.9)) == []
    assert segment(np.random.default_rng(0).random((100, 300))) == []


def test_broken_stroke_is_one_digit():
    img, d = page(300, 130)
    # A "4" drawn as two pieces that do not touch: the open angle, then the stem.
    d.line([(60, 25), (40, 75), (95, 75)], fill=20, width=6)
    d.line([(80, 35), (80, 110)], fill=20, width=6)
    # A "5" whose flag was lifted off the paper.
    d.line([(160, 30), (158, 62)], fill=20, width=6)
    d.arc([148, 55, 198, 108], start=-120, end=140, fill=20, width=6)
    d.line([(168, 28), (200, 28)], fill=20, width=6)
    crops = segment(np.asarray(img))
    assert len(crops) == 2


def test_touching_digits_are_split():
    img, d = page(300, 120)
    zero(d, 40)
    zero(d, 72)  # overlaps the first 0 by 4 px: one connected component
    zero(d, 104)
    zero(d, 200)  # a separate digit: the width of one digit
    crops = segment(np.asarray(img))
    assert len(crops) == 4
    xs = [c.box[0] for c in crops]
    assert xs == sorted(xs) and xs[0] < 50 and 60 < xs[1] < 90 and 95 < xs[2] < 120


def test_underline_is_ignored():
    img, truth = number([3, 8, 1, 6], 5, kind="scan", spacing="normal", underline=True)
    assert len(segment(img)) == 4
    # An underline that touches the digits: it must not glue them into one.
    img, d = page(360, 130)
    for i, x in enumerate((40, 110, 180, 250)):
        (zero if i % 2 else one)(d, x, y=30)
    d.line([(20, 92), (330, 92)], fill=20, width=5)
    assert len(segment(np.asarray(img))) == 4


def test_a_thin_pen_digit_broken_into_dashes_is_kept_whole():
    img, d = page(400, 120)
    for x in (40, 160):
        zero(d, x, pen=8)
    # A "1" written so thinly that the threshold left four dashes, each far lower than a digit
    # (a mark on its own), a few pixels apart.
    for y in (30, 46, 62, 78):
        d.line([(110, y), (110, y + 11)], fill=20, width=4)
    zero(d, 230, pen=8)
    slots = sg.segment_slots(np.asarray(img))
    assert len(slots) == 4
    assert len(slots[1].segments) == 1  # the dashes: one digit, not offered cut
    assert iou(slots[1].crops[0].box, (108, 30, 112, 91)) > 0.5
    # The same dashes spread apart are marks, and are dropped.
    img, d = page(400, 120)
    for x in (40, 160, 230):
        zero(d, x, pen=8)
    for y in (30, 78):
        d.line([(110, y), (110, y + 11)], fill=20, width=4)
    assert len(sg.segment_slots(np.asarray(img))) == 3


def test_specks_and_dash_are_ignored():
    img, d = page(400, 120)
    for x in (40, 100):
        zero(d, x)
    d.line([(160, 60), (180, 60)], fill=20, width=5)  # "-" as in a phone number
    for x in (210, 270):
        zero(d, x)
    for x, y in [(20, 10), (330, 100), (150, 15), (380, 50)]:
        d.ellipse([x, y, x + 3, y + 3], fill=30)
    assert len(segment(np.asarray(img))) == 4


def test_expected_count_is_honoured():
    img, d = page(300, 120)
    one(d, 60)
    one(d, 66)  # two 1s written into one another: looks like a single thick stroke
    zero(d, 120)
    assert len(segment(np.asarray(img))) == 2
    assert len(segment(np.asarray(img), expected=3)) == 3
    img2, _ = number([1, 2, 3, 4], 6, kind="scan", spacing="wide")
    assert len(segment(img2, expected=3)) == 3  # closest pair merged


def test_boxes_are_in_input_coordinates_for_large_images():
    img, truth = number([7, 2, 9], 7, kind="scan", spacing="normal")
    size = (img.shape[1] * 6, img.shape[0] * 6)
    big = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))
    small_boxes = [c.box for c in segment(img)]
    big_boxes = [c.box for c in segment(big)]
    assert len(big_boxes) == 3
    for s, b in zip(small_boxes, big_boxes):
        assert iou(tuple(6 * v for v in s), b) > 0.8
        assert b[2] <= big.shape[1] and b[3] <= big.shape[0]


def test_debug_images():
    img, _ = number([4, 5], 8, kind="scan")
    debug: dict[str, np.ndarray] = {}
    crops = segment(img, debug=debug)
    assert "seg_0_mask" in debug and "seg_2_digits" in debug
    assert sum(k.startswith("seg_digit_") for k in debug) == len(crops)


def same_crops(a: list[DigitCrop], b: list[DigitCrop]) -> bool:
    return len(a) == len(b) and all(x.box == y.box and np.array_equal(x.image, y.image) for x, y in zip(a, b))


@pytest.mark.parametrize(
    "digits,seed,kind,scale", [([4, 0, 2], 1, "scan", 1), ([1, 9, 8, 3, 7], 2, "photo", 1), ([2, 7, 1], 4, "scan", 6)]
)
def test_given_inkmap_and_shared_signal_give_the_same_result(digits, seed, kind, scale):
    img, _ = number(digits, seed, kind=kind)
    if scale > 1:  # larger than WORK_PIXELS: the no-digit check and segmentation work at two scales
        img = np.asarray(Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale)))
    two_scales = size_factor(img.shape, WORK_PIXELS) != size_factor(img.shape, sg.SEGMENT_PIXELS)
    assert two_scales == (scale > 1)
    stats, inkmap = sg.stats_and_inkmap(img)
    assert stats == ink_stats(img)
    reference = sg.segment_inkmap(img)
    assert np.array_equal(inkmap.ink, reference.ink) and np.array_equal(inkmap.mask, reference.mask)
    for expected in (None, len(digits) + 1):
        crops = segment(img, expected=expected)
        assert len(crops) >= len(digits)
        assert same_crops(segment(img, expected=expected, inkmap=inkmap), crops)


def test_shared_signal_fills_debug_like_segment():
    img, _ = number([4, 5], 8, kind="scan")
    alone: dict[str, np.ndarray] = {}
    segment(img, debug=alone)
    shared: dict[str, np.ndarray] = {}
    _, inkmap = sg.stats_and_inkmap(img, debug=shared)
    segment(img, debug=shared, inkmap=inkmap)
    assert list(shared) == list(alone)
    assert all(np.array_equal(shared[k], alone[k]) for k in alone)


def test_small_statistics_match_numpy():
    rng = np.random.default_rng(0)
    for n in [1, 2, 3, 4, 7, 10, 63, 64, 200]:
        for values in (rng.integers(0, 300, n).tolist(), rng.random(n), rng.random(n).tolist()):
            assert sg._median(values) == float(np.median(values))
            for q in (10, 25, 50, 75, 90):
                assert sg._interpolated_percentile(values, q) == float(np.percentile(values, q))


def test_group_pixels_match_isin():
    rng = np.random.default_rng(1)
    window = rng.integers(0, 9, (20, 30))
    for labels in [(3,), (1, 4), (2, 5, 8), (8,)]:
        g = sg._Group(labels, 0, 30, 0, 20, 0)
        assert np.array_equal(sg._pixels_of(g, window), np.isin(window, labels))


def test_a_seven_whose_bar_came_apart_keeps_it():
    # The bar is a separate piece, shorter than the digit is tall: a stroke, not an underline.
    img, d = page(200, 150)
    d.line([(60, 30), (120, 30)], fill=20, width=6)
    d.line([(118, 40), (80, 120)], fill=20, width=6)
    crops = segment(np.asarray(img))
    assert len(crops) == 1
    top = crops[0].image[: IMAGE_SIZE // 3]
    assert (top > 0.5).sum(axis=1).max() >= 10  # the bar's row is inked across the digit


def test_line_length_follows_the_tallest_piece():
    # A digit broken into short pieces and one tall one: lines are judged against the tall one.
    mask = np.zeros((120, 200), bool)
    mask[20:100, 50:56] = True  # tall stroke, 80 high
    mask[20:26, 60:120] = True  # a bar, 60 long
    labels, objects = sg._pieces(mask)
    areas = piece_areas(labels, len(objects))
    assert sg._line_length(areas, objects) == int(sg.LINE_LENGTH * 80)
    assert not sg.horizontal_lines(mask, sg._line_length(areas, objects)).any()


def test_a_seam_follows_the_gap_between_leaning_digits():
    ink = np.ones((20, 24), np.float32)
    gap = [8 + y // 5 for y in range(20)]  # a gap leaning right, one column every 5 rows
    ink[np.arange(20), gap] = 0.0
    assert sg._seam(ink, 10, 3).tolist() == gap  # no straight column avoids the ink
    blank = np.zeros((20, 24), np.float32)
    assert (sg._seam(blank, 10, 3) == 10).all()  # nothing to avoid: the cut's own column
    assert (sg._seam(ink, 10, 0) == 10).all()


def test_fragments_at_a_cut_are_dropped():
    mask = np.zeros((40, 30), bool)
    mask[5:35, 5:12] = True  # the digit
    mask[10:14, 26:30] = True  # the neighbour's stroke, crossing the cut at column 29
    mask[30:33, 14:16] = True  # a small piece of the digit itself, away from the cut
    out = sg._drop_cut_fragments(mask, None, np.full(40, 29))
    assert not out[10:14, 26:30].any() and out[30:33, 14:16].all() and out[5:35, 5:12].all()


def touching_zeros(alone: bool = False) -> np.ndarray:
    """Two 0s written into each other (one component, a little wider than tall), and unless
    `alone` a third one apart."""
    img, d = page(260, 120)
    zero(d, 30)
    zero(d, 62)
    if not alone:
        zero(d, 180)
    return np.asarray(img)


def digit_counts(slot: sg.Slot) -> set[int]:
    """How many digits the readings of `slot` (chains of segments from its left edge to its
    right one) can hold."""
    end = max(b for _, b in slot.segments)
    counts: list[set[int]] = [set() for _ in range(end + 1)]
    counts[0].add(0)
    for a, b in sorted(slot.segments):
        counts[b] |= {k + 1 for k in counts[a]}
    return counts[end]


def test_slots_offer_the_other_readings_of_a_wide_group():
    img = touching_zeros()
    pair, single = sg.segment_slots(img)
    assert {1, 2} <= digit_counts(pair)  # as one digit, or as two
    # A digit of ordinary width is one digit by geometry; the recogniser may still read it cut,
    # since a model with the "not one digit" class tells when that is wrong (AMBIGUOUS_ASPECT).
    whole = single.crops[single.primary[0]].box
    assert len(single.primary) == 1 and all(whole[0] <= c.box[0] and c.box[2] <= whole[2] for c in single.crops)
    plain = sg.segment_slots(img, alternatives=False)
    assert [len(s.crops) for s in plain] == [len(s.primary) for s in plain] == [1, 1]
    assert [c.box for c in segment(img)] == [s.crops[i].box for s in plain for i in s.primary]
    # Alone in the image, the same group is one wide digit: no other digit says otherwise.
    (alone,) = sg.segment_slots(touching_zeros(alone=True))
    assert len(alone.crops) == 1


def test_a_piece_can_be_cut_again_at_forced_cuts():
    # Alone in the image, two touching 0s are one piece by geometry; the recogniser may still
    # cut it when the model says it is not one digit (Decoder.cut_again).
    (alone,) = sg.segment_slots(touching_zeros(alone=True))
    whole = alone.crops[0].box
    halves = alone.split(0, 2)
    assert len(halves) == 2 and halves[0].box[0] < halves[1].box[0]
    assert all(whole[0] <= c.box[0] and c.box[2] <= whole[2] for c in halves)
    assert all(c.image.shape == (IMAGE_SIZE, IMAGE_SIZE) for c in halves)
    assert sg.segment_slots(touching_zeros(alone=True), alternatives=False)[0].split is None


def test_a_group_can_be_read_again_with_a_cut_every_recut_step():
    img = touching_zeros()
    pair, single = sg.segment_slots(img)
    again = pair.recut()
    # More candidate cuts than the valleys gave; the same group, so the same outer edges.
    assert len(again.segments) > len(pair.segments)
    boxes = [c.box for c in again.crops]
    assert min(b[0] for b in boxes) == min(c.box[0] for c in pair.crops)
    assert max(b[2] for b in boxes) == max(c.box[2] for c in pair.crops)
    # Cuts at most RECUT_STEP of the height apart (input pixels; the working scale may differ).
    height = max(b[3] for b in boxes) - min(b[1] for b in boxes)
    starts = sorted({b[0] for b in boxes})
    assert max(np.diff(starts)) <= sg.RECUT_STEP * height + 2
    assert single.recut is not None  # beside another digit, a digit may be two written into each other
    # A lone digit of ordinary width is not: a 0 must not come out as two 1s.
    lone, d = page(120, 120)
    zero(d, 30)
    assert sg.segment_slots(np.asarray(lone))[0].recut is None
    assert all(s.recut is None for s in sg.segment_slots(img, alternatives=False))


def fake_reader(tmp_path, run) -> Recognizer:
    """A Recognizer whose "model" is `run`: normalised (N, 1, 28, 28) images -> logits."""
    path = tmp_path / "fake.onnx"
    path.write_bytes(b"")
    return Recognizer(Backend(run=run, fixed_batch=None, metadata={}, info={}), path)


def zero_reader(tmp_path, classes: int) -> Recognizer:
    """A Recognizer whose "model" reads a 0 in any ink narrower than it is tall and, with 11
    outputs, "not one digit" in wider ink."""

    def run(x: np.ndarray) -> np.ndarray:
        logits = np.zeros((len(x), classes), np.float32)
        for i, image in enumerate(x[:, 0] > 0):
            rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
            wide = classes > 10 and cols[-1] - cols[0] > rows[-1] - rows[0]
            logits[i, 10 if wide else 0] = 10
        return logits

    return fake_reader(tmp_path, run)


def test_recognizer_cuts_again_what_the_model_says_is_not_one_digit(tmp_path):
    img = touching_zeros(alone=True)
    assert zero_reader(tmp_path, 11).recognize(img).text == "00"  # of cuts that read as well, the fewest parts
    assert zero_reader(tmp_path, 10).recognize(img).text == "0"  # no such output: read whole
    assert len(zero_reader(tmp_path, 11).recognize(img, expected_digits=1).digits) == 1  # as the user says


def test_pieces_of_a_number_are_read_at_small_shifts_and_a_lone_digit_once(tmp_path):
    seen = []
    reader = zero_reader(tmp_path, 10)
    run = reader._backend.run
    reader._backend.run = lambda x: seen.append(len(x)) or run(x)
    reader.recognize(touching_zeros(alone=True))  # one piece
    assert seen == [1]
    seen.clear()
    img, d = page(260, 120)
    zero(d, 30)
    zero(d, 180)
    assert reader.recognize(np.asarray(img)).text == "00"
    pieces = sum(len(slot.crops) for slot in sg.segment_slots(np.asarray(img)))
    assert seen == [pieces * len(PIECE_SHIFTS)]  # every piece in every view, one call
