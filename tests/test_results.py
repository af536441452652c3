"""What a recognition says and why: "?" for ink that is no digit, the reason for a rejection,
and the same answers as before from models without the "not a digit" output.

Run: `.venv/bin/pytest tests/test_results.py -q`

Every model here is a fake `Backend` whose run function returns chosen logits. `number_reader`
also replaces segmentation, so that each piece of a made-up number is a crop the fake model
knows by its count of bright pixels (as tests/test_decoder.py's `marked`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitrec.constants import IMAGE_SIZE, NON_DIGIT, NOT_ONE_DIGIT, OUTPUT_COUNTS
from digitrec.data import synthetic
from digitrec.errors import DigitrecError
from digitrec.image.segmentation import DigitCrop, Slot
from digitrec.probabilities import softmax
from digitrec.recognition import recognizer as recognizer_module
from digitrec.recognition.backends import Backend
from digitrec.recognition.constraints import Constraints
from digitrec.recognition.recognizer import NOT_DIGIT_THRESHOLD, PIECE_NOT_DIGIT_THRESHOLD, Recognizer, rejection_reason
from digitrec.recognition.results import (
    LOW_CONFIDENCE,
    NO_INK,
    NO_VALID_READING,
    NOT_A_DIGIT,
    NOT_A_DIGIT_MARK,
    REASONS,
    DigitResult,
    Recognition,
)

SURE = 20.0  # a logit that makes its output all but certain
TEMPERATURE = 0.5  # the fake models' calibration temperature


def fake_reader(tmp_path, run, temperature: float = TEMPERATURE) -> Recognizer:
    """A Recognizer whose "model" is `run`: normalised (N, 1, 28, 28) images -> logits."""
    path = tmp_path / "fake.onnx"
    path.write_bytes(b"")
    metadata = {"calibration": {"temperature": temperature}}
    return Recognizer(Backend(run=run, fixed_batch=None, metadata=metadata, info={}), path)


def always(output: int, classes: int):
    """A run function reading every image as `output`, surely."""

    def run(x: np.ndarray) -> np.ndarray:
        logits = np.zeros((len(x), classes), np.float32)
        logits[:, output] = SURE
        return logits

    return run


def marked(k: int) -> DigitCrop:
    """A piece the `table` run function knows by its k bright pixels, at x = 30k."""
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    image.flat[:k] = 1
    return DigitCrop(image, (30 * k, 0, 30 * k + 20, 40))


def number_reader(tmp_path, monkeypatch, table: dict[int, int], classes: int = 12) -> Recognizer:
    """A Recognizer that sees the pieces marked(1), marked(2), ... (one per key of `table`, left
    to right) in any image, and reads marked(k) as output table[k]."""
    slots = [Slot(((0, 1),), (marked(k),), (0,)) for k in sorted(table)]
    monkeypatch.setattr(recognizer_module, "looks_like_digit", lambda stats: True)
    monkeypatch.setattr(recognizer_module, "segment_slots", lambda image, **kwargs: slots)

    def run(x: np.ndarray) -> np.ndarray:
        logits = np.zeros((len(x), classes), np.float32)
        for i, image in enumerate(x[:, 0]):
            logits[i, table[int((image > image.min()).sum())]] = SURE
        return logits

    return fake_reader(tmp_path, run)


def written_number(digits: tuple[int, ...] = (3, 0, 7), seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image, _ = synthetic.render_number([synthetic.draw_digit(d, rng) for d in digits], rng, kind="scan")
    return image


BLANK = np.full((120, 200), 240, np.uint8)

# ---- the reasons ----------------------------------------------------------------------------------


def test_the_reasons_are_four_named_strings():
    assert REASONS == (NO_INK, NOT_A_DIGIT, LOW_CONFIDENCE, NO_VALID_READING)
    assert REASONS == ("no ink", "not a digit", "low confidence", "no valid reading")


def test_a_twelve_output_model_reading_every_piece_as_no_digit_rejects_the_image_as_not_a_digit(tmp_path):
    result = fake_reader(tmp_path, always(NON_DIGIT, 12)).recognize(written_number())
    assert result.rejected and result.reason == NOT_A_DIGIT and result.text == ""
    assert result.digits and all(d.digit == NOT_A_DIGIT_MARK and d.flagged for d in result.digits)
    assert all(d.not_digit is not None and d.not_digit > 0.99 for d in result.digits)


def test_a_number_with_one_piece_that_is_no_digit_reads_a_question_mark_in_its_place(tmp_path, monkeypatch):
    reader = number_reader(tmp_path, monkeypatch, {1: 1, 2: 2, 3: NON_DIGIT, 4: 4})  # "12A4"
    result = reader.recognize(BLANK)
    assert not result.rejected and result.reason is None
    assert result.text == "12?4"
    assert [d.digit for d in result.digits] == ["1", "2", NOT_A_DIGIT_MARK, "4"]
    assert [d.flagged for d in result.digits] == [False, False, True, False]
    assert [d.is_digit for d in result.digits] == [True, True, False, True]
    assert result.digits[2].not_digit > 0.99 and max(result.digits[i].not_digit for i in (0, 1, 3)) < 1e-6
    assert [d.box[0] for d in result.digits] == [30, 60, 90, 120]  # where the "A" is


def test_with_strict_a_number_with_a_piece_that_is_no_digit_is_rejected(tmp_path, monkeypatch):
    reader = number_reader(tmp_path, monkeypatch, {1: 1, 2: 2, 3: NON_DIGIT, 4: 4})
    result = reader.recognize(BLANK, strict=True)
    assert result.rejected and result.reason == NOT_A_DIGIT and result.text == ""
    assert [d.digit for d in result.digits] == ["1", "2", NOT_A_DIGIT_MARK, "4"]  # still there, to show why
    # Strict changes nothing for a number without such a piece.
    plain = number_reader(tmp_path, monkeypatch, {1: 1, 2: 2, 3: 3}).recognize(BLANK, strict=True)
    assert plain.text == "123" and plain.reason is None


def test_the_not_a_digit_threshold_decides_which_pieces_read_as_a_question_mark(tmp_path, monkeypatch):
    assert 0 < NOT_DIGIT_THRESHOLD <= 1
    number_reader(tmp_path, monkeypatch, {1: 1, 2: 2})

    def run(x: np.ndarray) -> np.ndarray:  # piece 2: "not a digit" 0.6 (at TEMPERATURE), the rest "2"
        logits = np.full((len(x), 12), -SURE, np.float32)
        for i, image in enumerate(x[:, 0]):
            if int((image > image.min()).sum()) == 1:
                logits[i, 1] = SURE
            else:
                logits[i, 2], logits[i, NON_DIGIT] = 0.0, TEMPERATURE * np.log(0.6 / 0.4)
        return logits

    reader = fake_reader(tmp_path, run)
    share = reader.recognize(BLANK).digits[1].not_digit
    assert share == pytest.approx(0.6, abs=1e-5)
    # Two pieces: a number, judged at the pieces' threshold.
    assert reader.recognize(BLANK, piece_not_digit_threshold=0.5).text == "1?"
    assert reader.recognize(BLANK, piece_not_digit_threshold=0.7, not_digit_threshold=0.1).text == "12"
    assert reader.recognize(BLANK).text == ("1?" if PIECE_NOT_DIGIT_THRESHOLD <= share else "12")
    assert reader.recognize(BLANK, piece_not_digit_threshold=share).text == "1?"  # from the threshold up


def test_a_lone_piece_is_judged_at_its_own_threshold(tmp_path, monkeypatch):
    assert 0 < NOT_DIGIT_THRESHOLD <= PIECE_NOT_DIGIT_THRESHOLD <= 1
    reader = soft_reader(tmp_path, monkeypatch, [{2: SURE, NON_DIGIT: SURE + float(np.log(0.6 / 0.4))}])
    share = reader.recognize(BLANK).digits[0].not_digit
    assert share == pytest.approx(0.6, abs=1e-5)
    assert reader.recognize(BLANK, not_digit_threshold=0.5, piece_not_digit_threshold=0.9).reason == NOT_A_DIGIT
    assert reader.recognize(BLANK, not_digit_threshold=0.7, piece_not_digit_threshold=0.1).text == "2"


def test_no_ink_is_rejected_as_no_ink_without_running_the_model(tmp_path):
    calls = []
    reader = fake_reader(tmp_path, lambda x: calls.append(len(x)) or always(1, 12)(x))
    result = reader.recognize(BLANK)
    assert result.rejected and result.reason == NO_INK and result.digits == [] and calls == []
    assert result.to_dict()["reason"] == "no ink"


@pytest.mark.parametrize("classes", OUTPUT_COUNTS)
def test_digits_all_under_reject_below_are_rejected_as_low_confidence(tmp_path, classes):
    # Equal logits: each digit reads 10%, and "not a digit" is far under its threshold.
    result = fake_reader(tmp_path, lambda x: np.zeros((len(x), classes), np.float32)).recognize(written_number())
    assert result.rejected and result.reason == LOW_CONFIDENCE and result.text == ""
    assert all(d.flagged and d.digit != NOT_A_DIGIT_MARK for d in result.digits)


def test_the_rules_apply_in_their_documented_order():
    def piece(digit: str, flagged: bool = False) -> DigitResult:
        return DigitResult(digit, 0.9, [0.1] * 10, (0, 0, 1, 1), flagged or digit == NOT_A_DIGIT_MARK, [], np.zeros(1))

    odd, sure, unsure = piece(NOT_A_DIGIT_MARK), piece("3"), piece("3", flagged=True)
    assert rejection_reason([]) == NO_INK
    assert rejection_reason([sure, odd], strict=True) == NOT_A_DIGIT
    assert rejection_reason([odd, odd]) == NOT_A_DIGIT
    assert rejection_reason([unsure, odd]) == NOT_A_DIGIT  # nothing read surely, and some ink is no digit
    assert rejection_reason([unsure, unsure], strict=True) == LOW_CONFIDENCE
    assert rejection_reason([sure, odd]) is None and rejection_reason([sure, unsure]) is None


# ---- models without the "not a digit" output -------------------------------------------------------


@pytest.mark.parametrize("classes", OUTPUT_COUNTS[:2])
def test_models_without_the_not_a_digit_output_give_no_not_digit_share(tmp_path, classes):
    result = fake_reader(tmp_path, always(7, classes)).recognize(written_number())
    assert result.text == "777" and result.reason is None
    assert all(d.not_digit is None and d.to_dict()["not_digit"] is None for d in result.digits)
    assert all((d.not_one_digit is None) == (classes == 10) for d in result.digits)
    # Strict has nothing to refuse: no piece can be "not a digit".
    assert fake_reader(tmp_path, always(7, classes)).recognize(written_number(), strict=True).text == "777"


def test_not_one_digit_is_judged_among_the_digits_and_itself_with_twelve_outputs(tmp_path):
    def run(x: np.ndarray) -> np.ndarray:
        logits = np.zeros((len(x), 12), np.float32)
        logits[:, 7], logits[:, NOT_ONE_DIGIT], logits[:, NON_DIGIT] = 3.0, 1.0, 2.0
        return logits

    digit = fake_reader(tmp_path, run).recognize(written_number((7,))).digits[0]
    logits = np.array([[0] * 7 + [3.0, 0, 0, 1.0, 2.0]])
    shares = softmax(logits, TEMPERATURE)[0]
    # "Not a digit" takes no part in "not one digit", nor in choosing how to cut a number.
    assert digit.not_one_digit == pytest.approx(softmax(logits[:, :NON_DIGIT], TEMPERATURE)[0, NOT_ONE_DIGIT], abs=1e-5)
    assert digit.not_digit == pytest.approx(shares[NON_DIGIT], abs=1e-5)


def test_a_lone_digits_not_digit_share_is_the_softmax_of_all_outputs_at_the_models_temperature(tmp_path):
    row = np.array([0.5] * 10 + [0.2, 1.5], np.float32)
    result = fake_reader(tmp_path, lambda x: np.tile(row, (len(x), 1))).recognize(written_number((7,)))
    assert len(result.digits) == 1
    assert result.digits[0].not_digit == pytest.approx(float(softmax(row[None], TEMPERATURE)[0, NON_DIGIT]), abs=1e-6)


# ---- JSON ------------------------------------------------------------------------------------------


def test_the_json_says_why_and_how_likely_each_piece_is_no_digit(tmp_path, monkeypatch):
    result = number_reader(tmp_path, monkeypatch, {1: 1, 2: NON_DIGIT}).recognize(BLANK)
    d = json.loads(json.dumps(result.to_dict()))
    assert d["text"] == "1?" and d["reason"] is None and not d["rejected"]
    assert [p["digit"] for p in d["digits"]] == ["1", "?"]
    assert all({"not_digit", "not_one_digit"} <= set(p) for p in d["digits"])
    assert d["digits"][1]["not_digit"] == round(result.digits[1].not_digit, 6)
    rejected = Recognition(text="", digits=[], rejected=True, reason=NO_INK).to_dict()
    assert rejected["reason"] == "no ink" and rejected["error"] is None


# ---- constraints ----------------------------------------------------------------------------------


def soft_reader(tmp_path, monkeypatch, rows: list[dict[int, float]], classes: int = 12) -> Recognizer:
    """A Recognizer that sees one piece per row, left to right, and gives piece k the logits
    rows[k] ({output: logit}, the rest 0)."""
    slots = [Slot(((0, 1),), (marked(k + 1),), (0,)) for k in range(len(rows))]
    monkeypatch.setattr(recognizer_module, "looks_like_digit", lambda stats: True)
    monkeypatch.setattr(recognizer_module, "segment_slots", lambda image, **kwargs: slots)

    def run(x: np.ndarray) -> np.ndarray:
        logits = np.zeros((len(x), classes), np.float32)
        for i, image in enumerate(x[:, 0]):
            for output, value in rows[int((image > image.min()).sum()) - 1].items():
                logits[i, output] = value
        return logits

    return fake_reader(tmp_path, run, temperature=1.0)


LUHN = Constraints(checksum="luhn")


def test_a_check_digit_corrects_the_one_digit_read_wrong(tmp_path, monkeypatch):
    # "4242" is Luhn-valid; its 2 reads a little more like a 7.
    reader = soft_reader(tmp_path, monkeypatch, [{4: 12}, {7: 9, 2: 8}, {4: 12}, {2: 12}])
    assert reader.recognize(BLANK).text == "4742"
    result = reader.recognize(BLANK, constraints=LUHN)
    assert result.text == "4242" and not result.rejected and result.reason is None
    assert [d.digit for d in result.digits] == list("4242")
    assert result.digits[1].confidence < 0.5 and result.digits[1].top_k[0][0] == "7"  # what it read best as
    c = result.constrained
    assert c is not None and c.unconstrained == "4742" and c.readings[0].text == "4242" and c.exact
    assert c.share > 0.9 and 0.3 < c.ratio < 0.4  # e^-1: one digit's second choice
    assert result.to_dict()["constrained"]["readings"][0] == {
        "text": "4242",
        "probability": round(c.readings[0].probability, 6),
    }


def test_two_corrections_as_likely_as_each_other_are_no_valid_reading(tmp_path, monkeypatch):
    # "4242" (second digit's second choice) and "6742" (first digit's) are both valid.
    reader = soft_reader(tmp_path, monkeypatch, [{4: 12, 6: 11}, {7: 9, 2: 8}, {4: 12}, {2: 12}])
    result = reader.recognize(BLANK, constraints=LUHN)
    assert result.rejected and result.reason == NO_VALID_READING and result.text == ""
    assert result.constrained is not None and result.constrained.unconstrained == "4742"
    assert {a.text for a in result.constrained.readings[:2]} == {"4242", "6742"}
    assert [d.digit for d in result.digits] == list("4742")  # what was read, to show why
    # A correction that costs far more than any reading of its length is no valid reading either.
    far = soft_reader(tmp_path, monkeypatch, [{4: 12}, {7: 12, 2: 1}, {4: 12}, {2: 12}])
    result = far.recognize(BLANK, constraints=LUHN)
    assert result.reason == NO_VALID_READING and result.constrained.ratio < 1e-4


def test_a_reading_valid_as_read_is_kept_as_read_and_no_constraints_leave_the_json_as_it_was(tmp_path, monkeypatch):
    reader = soft_reader(tmp_path, monkeypatch, [{4: 12}, {2: 9, 7: 8}, {4: 12}, {2: 12}])
    plain = reader.recognize(BLANK)
    result = reader.recognize(BLANK, constraints=LUHN)
    assert result.text == plain.text == "4242" and result.constrained.ratio == 1.0
    assert (
        "constrained" not in plain.to_dict()
        and "constrained" not in reader.recognize(BLANK, constraints=Constraints(digits=4)).to_dict()
    )
    assert (
        reader.recognize(BLANK, constraints=Constraints(digits=4)).to_dict()
        == reader.recognize(BLANK, expected_digits=4).to_dict()
    )


def test_a_piece_read_as_no_digit_is_a_flagged_digit_of_a_valid_reading_unless_strict(tmp_path, monkeypatch):
    reader = soft_reader(tmp_path, monkeypatch, [{4: 12}, {NON_DIGIT: 14, 2: 12}, {4: 12}, {2: 12}])
    assert reader.recognize(BLANK).text == "4?42"
    result = reader.recognize(BLANK, constraints=Constraints(pattern=r"\d{4}"))
    assert result.text == "4242" and not result.rejected and result.constrained.readings[0].text == "4242"
    assert result.digits[1].digit == "2" and result.digits[1].flagged and result.digits[1].not_digit > 0.8
    strict = reader.recognize(BLANK, constraints=Constraints(pattern=r"\d{4}"), strict=True)
    assert strict.rejected and strict.reason == NOT_A_DIGIT


def test_two_digit_counts_that_disagree_are_refused(tmp_path, monkeypatch):
    reader = soft_reader(tmp_path, monkeypatch, [{4: 12}])
    with pytest.raises(DigitrecError, match="two digit counts"):
        reader.recognize(BLANK, expected_digits=3, constraints=Constraints(digits=4, checksum="luhn"))
    with pytest.raises(DigitrecError, match="alternatives must be 0 to 20"):
        reader.recognize(BLANK, constraints=LUHN, alternatives=21)
