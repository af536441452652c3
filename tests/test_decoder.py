"""The number decoder: which way of cutting a group of ink reads best, with no model at all.

Run: `.venv/bin/pytest tests/test_decoder.py -q`

Every "model" here is a score function over made-up crops: `marked(k)` is a crop with k bright
pixels, and `table_score` reads it as the digit its table gives (10: "not one digit").
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from digitrec.constants import IMAGE_SIZE
from digitrec.image.segmentation import DigitCrop, Slot
from digitrec.probabilities import digit_probabilities, piece_probabilities, softmax
from digitrec.recognition import decoder
from digitrec.recognition.decoder import PIECE_SHIFTS, Decoder, Reading, choose_readings, prefer_split

NOT_ONE = 10  # the "not one digit" output
NON_DIGIT = 11  # the "not a digit" output


def marked(k: int) -> DigitCrop:
    """A crop that `table_score` knows by its k bright pixels (at any shift)."""
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    image.flat[:k] = 1
    return DigitCrop(image, (k, 0, k + 1, 1))


def table_score(table: dict[int, int], classes: int = 11, calls: list[int] | None = None):
    """A score function reading `marked(k)` as digit table[k] (10: "not one digit"), surely;
    `calls` gets the number of images of each call."""

    def score(images: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.append(len(images))
        logits = np.zeros((len(images), classes), np.float32)
        for i, image in enumerate(images):
            logits[i, table[int((image > image.min()).sum())]] = 20
        return logits

    return score


def fake_slot() -> Slot:
    """A group read as one digit (segment 0) or cut into two (segments 1 and 2)."""
    crop = DigitCrop(np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32), (0, 0, 1, 1))
    return Slot(((0, 2), (0, 1), (1, 2)), (crop, crop, crop), (0,))


def probs(*confidences: float) -> np.ndarray:
    """Rows of class probabilities: row i reads digit i at confidence i, the rest spread evenly."""
    out = np.full((len(confidences), 10), 0.0)
    for i, c in enumerate(confidences):
        out[i] = (1 - c) / 9
        out[i, i % 10] = c
    return out


def lone(crop: int, *, split=None, recut: Slot | None = None) -> Slot:
    """A group that geometry took for one digit: the crop `marked(crop)`."""
    return Slot(((0, 1),), (marked(crop),), (0,), split, (lambda: recut) if recut else None)


def text(reading: Reading) -> str:
    return "".join(str(int(p.argmax())) for p in reading.digits)


def test_the_best_chain_of_each_length_crosses_the_slot():
    slot = fake_slot()
    assert decoder._best_chains(slot, [-1.0, -0.2, -0.3]) == {1: (-1.0, [0]), 2: (-0.5, [1, 2])}
    # Segments that do not reach the right edge make no chain.
    assert decoder._best_chains(Slot(((0, 1), (1, 2)), fake_slot().crops[:2], (0,)), [0.0, 0.0]) == {2: (0.0, [0, 1])}


def test_confident_cuts_are_trusted_and_weak_ones_doubted():
    # Two touching digits: the whole reads poorly, the two halves well.
    assert choose_readings([fake_slot()], [probs(0.4, 0.9, 0.9)]) == [[1, 2]]
    # One wide digit: the whole reads well, its halves (fragments) less so.
    assert choose_readings([fake_slot()], [probs(0.99, 0.9, 0.85)]) == [[0]]


def test_a_slot_whose_cuts_make_no_chain_across_it_reads_as_no_digits():
    # A recut whose only digit-sized span starts past the left edge: no chain, no primary.
    crop = fake_slot().crops[0]
    assert choose_readings([Slot(((1, 2),), (crop,), ())], [probs(0.9)]) == [[]]


def test_readings_add_up_to_the_expected_count_where_they_can():
    assert choose_readings([fake_slot()], [probs(0.99, 0.9, 0.85)], expected=2) == [[1, 2]]
    pair = [fake_slot(), fake_slot()]
    assert choose_readings(pair, [probs(0.9, 0.5, 0.5), probs(0.6, 0.9, 0.9)], expected=3) == [[0], [1, 2]]
    # A count no reading can make: each slot's own best.
    assert choose_readings(pair, [probs(0.9, 0.5, 0.5)] * 2, expected=7) == [[0], [0]]


def test_a_piece_the_model_says_is_not_one_digit_is_read_cut():
    # Touching "18" read as an 8 with its digit probabilities sure, but most of the mass on "not
    # one digit" (a model with that class: rows add up to less than 1).
    whole = np.zeros(10)
    whole[8] = 0.2
    halves = probs(0.97, 0.95)
    assert choose_readings([fake_slot()], [np.vstack([whole, halves])]) == [[1, 2]]
    # Without that class the whole, read as an 8 at 0.99, is kept: the case it was added for.
    whole[8] = 0.99
    assert choose_readings([fake_slot()], [np.vstack([whole, halves])]) == [[0]]


def test_a_cut_is_kept_only_when_every_part_reads_surely_and_better_on_average():
    not_one = np.zeros((1, 10))
    not_one[0, 8] = 0.05  # the rest, 0.95, is "not one digit"
    assert prefer_split(not_one, probs(0.97, 0.95))
    assert not prefer_split(not_one, probs(0.97, 0.6))  # one part is doubtful
    assert not prefer_split(probs(0.99), probs(0.97, 0.95))  # the whole reads better
    assert not prefer_split(probs(0.97, 0.95), probs(0.96, 0.95, 0.94))  # another cut reads better


def test_pieces_are_read_at_small_shifts_with_their_logits_averaged():
    calls: list[int] = []
    rng = np.random.default_rng(0)
    weights = rng.random((IMAGE_SIZE * IMAGE_SIZE, 11)).astype(np.float32)

    def score(images: np.ndarray) -> np.ndarray:  # a linear "model": every pixel counts
        calls.append(len(images))
        return images.reshape(len(images), -1) @ weights

    images = rng.random((3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    views = [np.roll(images, shift, axis=(1, 2)) for shift in PIECE_SHIFTS]
    expected = np.mean([v.reshape(3, -1) @ weights for v in views], axis=0)
    assert np.allclose(Decoder(score).piece_logits(images), expected)
    assert calls == [3 * len(PIECE_SHIFTS)]  # every piece in every view, one call


def test_a_lone_digit_is_read_once_and_the_pieces_of_a_number_at_every_shift():
    calls: list[int] = []
    score = table_score({1: 4, 2: 2}, classes=10, calls=calls)
    assert text(Decoder(score).read([lone(1)]).reading) == "4"
    assert calls == [1]
    calls.clear()
    assert text(Decoder(score).read([lone(1), lone(2)]).reading) == "42"
    assert calls == [2 * len(PIECE_SHIFTS)]


def test_only_a_model_with_the_not_one_digit_output_says_how_likely_a_piece_is_not_one_digit():
    digits_only = Decoder(table_score({1: 4}, classes=10)).read([lone(1)])
    assert digits_only.not_one_digit is None
    with_class = Decoder(table_score({1: 4, 2: NOT_ONE})).read([lone(1), lone(2)])
    assert with_class.not_one_digit is not None
    assert with_class.not_one_digit[0] < 1e-6 and with_class.not_one_digit[1] > 0.99


def test_only_a_model_with_the_not_a_digit_output_says_how_likely_each_kept_piece_is_no_digit():
    for classes in (10, 11):
        assert Decoder(table_score({1: 4, 2: 3}, classes=classes)).read([lone(1), lone(2)]).not_digit is None
    decoded = Decoder(table_score({1: 4, 2: NON_DIGIT}, classes=12)).read([lone(1), lone(2)])
    assert decoded.not_digit is not None and decoded.not_one_digit is not None
    assert decoded.not_digit[0] < 1e-6 and decoded.not_digit[1] > 0.99
    # "Not one digit" is judged among the digits and itself: "not a digit" takes no part in it,
    # so ink the model reads as no digit (all eleven other logits equal) is 1 in 11 "not one digit".
    assert abs(decoded.not_one_digit[1] - 1 / 11) < 1e-6


def test_the_not_a_digit_share_is_the_softmax_of_all_outputs_of_the_averaged_piece_logits():
    temperature = 0.5
    rows = np.array([[1.0] * 10 + [0.5, 2.0], [0.0] * 10 + [0.0, 3.0]], np.float32)

    def score(images: np.ndarray) -> np.ndarray:  # one row per crop, a little different per shift
        out = np.tile(rows, (len(images) // 2, 1))
        out[::2, NON_DIGIT] += np.linspace(-1, 1, len(images) // 2)  # averages to the row itself
        return out

    decoded = Decoder(score, temperature).read([lone(1), lone(2)])
    expected = softmax(rows, temperature)[:, NON_DIGIT]
    assert np.allclose(decoded.not_digit, expected, atol=1e-6)
    # Readings are chosen without "not a digit": the digits' share of the digits and "not one digit".
    assert np.allclose(decoded.reading.pieces, softmax(rows[:, :NON_DIGIT], temperature)[:, :10], atol=1e-6)


def test_a_piece_cut_again_carries_the_not_a_digit_share_of_its_parts():
    def split(i: int, k: int) -> tuple[DigitCrop, ...]:
        return (marked(2), marked(3)) if k == 2 else ()

    decoded = Decoder(table_score({1: NOT_ONE, 2: 4, 3: 2, 5: NON_DIGIT}, classes=12)).read(
        [lone(1, split=split), lone(5)]
    )
    assert text(decoded.reading)[:2] == "42" and decoded.not_digit is not None
    assert decoded.not_digit.shape == (3,) and decoded.not_digit[:2].max() < 1e-6 and decoded.not_digit[2] > 0.99


def test_a_piece_read_as_no_digit_at_all_is_neither_cut_again_nor_recut_into_digits():
    def split(i: int, k: int) -> tuple[DigitCrop, ...]:
        return (marked(2), marked(3)) if k == 2 else ()

    recut = Slot(((0, 2), (0, 1), (1, 2)), (marked(1), marked(2), marked(3)), (0,))
    table = {1: NON_DIGIT, 2: 4, 3: 2, 5: 7}  # its parts would read surely as 4 and 2
    decoded = Decoder(table_score(table, classes=12)).read([lone(1, split=split, recut=recut), lone(5)])
    assert len(decoded.reading) == 2 and decoded.not_digit is not None and decoded.not_digit[0] > 0.99
    # The same piece read as "not one digit" is cut.
    table[1] = NOT_ONE
    assert text(Decoder(table_score(table, classes=12)).read([lone(1, split=split), lone(5)]).reading) == "427"


def test_a_piece_read_as_not_one_digit_is_cut_again_where_every_part_reads_surely():
    def split(i: int, k: int) -> tuple[DigitCrop, ...]:
        return (marked(2), marked(3)) if k == 2 else ()

    reader = Decoder(table_score({1: NOT_ONE, 2: 4, 3: 2, 5: 7}))
    decoded = reader.read([lone(1, split=split), lone(5)])
    assert text(decoded.reading) == "427"
    assert [c.box[0] for c in decoded.reading.crops] == [2, 3, 5]
    # The user said how many digits: nothing is cut again.
    assert len(reader.read([lone(1, split=split), lone(5)], expected=2).reading) == 2
    # A part that is itself "not one digit": the piece stays whole.
    doubtful = Decoder(table_score({1: NOT_ONE, 2: 4, 3: NOT_ONE, 5: 7}))
    assert len(doubtful.read([lone(1, split=split), lone(5)]).reading) == 2


def test_a_group_still_read_as_not_one_digit_is_read_again_with_more_cuts():
    # Slot 0 was read as one piece (crop 1) that is "not one digit"; its recut offers crop 1
    # whole or crops 2 and 3, read 4 and 2. Slot 1 (crop 5, a sure 7) must not be recut.
    def read(slots: list[Slot], table: dict[int, int]) -> str:
        score = table_score(table)
        logits = score(np.stack([s.crops[0].image for s in slots]))
        reading = Reading(tuple(s.crops[0] for s in slots), digit_probabilities(logits), piece_probabilities(logits))
        return text(Decoder(score).recut(slots, reading, list(range(len(slots)))))

    cut = Slot(((0, 2), (0, 1), (1, 2)), (marked(1), marked(2), marked(3)), (0,))
    table = {1: NOT_ONE, 2: 4, 3: 2, 5: 7, 6: NOT_ONE}
    assert read([lone(1, recut=cut), lone(5)], table) == "427"
    # Where a part of the new reading is itself "not one digit", the old reading stays.
    doubtful = Slot(((0, 2), (0, 1), (1, 2)), (marked(1), marked(2), marked(6)), (0,))
    assert read([lone(1, recut=doubtful), lone(5)], table) == "07"  # crop 1's digits: all at 0, "0"


def test_readings_join_and_take_pieces_in_order():
    one = Reading((marked(1),), probs(0.9), probs(0.9))
    two = Reading((marked(2), marked(3)), probs(0.8, 0.7), probs(0.8, 0.7))
    joined = Reading.join([one, two, one.nothing()])
    assert [c.box[0] for c in joined.crops] == [1, 2, 3]
    assert joined.digits.shape == joined.pieces.shape == (3, 10)
    assert [c.box[0] for c in joined.take([2, 0]).crops] == [3, 1]
    assert np.array_equal(joined.piece(1).digits, two.digits[:1])
    assert joined.non_digit is None  # readings from a model without the "not a digit" output
    odd = Reading((marked(4),), probs(0.9), probs(0.9), np.array([0.7], np.float32))
    both = Reading.join([odd, odd.nothing(), odd])
    assert both.non_digit is not None and both.non_digit.tolist() == pytest.approx([0.7, 0.7])
    assert both.take([1]).non_digit.tolist() == pytest.approx([0.7])


def test_the_docstring_examples_run():
    result = doctest.testmod(decoder)
    assert result.attempted > 0 and result.failed == 0
