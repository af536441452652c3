"""The "not one digit" class: pieces of rendered numbers labelled by the digits they cover, and the
class added to a trained model without changing its digit scores; (slow) the CLI on real MNIST."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from digitrec.constants import IMAGE_SIZE, NON_DIGIT, NOT_ONE_DIGIT
from digitrec.data import synthetic
from digitrec.errors import DigitrecError
from digitrec.probabilities import digit_probabilities
from digitrec.recognition import decoder as decoder_module
from digitrec.recognition.recognizer import Recognizer
from digitrec.training.notdigit import add_class, label_piece, segment_examples

TRUTH = [(0, 20), (30, 50), (48, 70)]  # three digits' columns; the last two touch


@pytest.mark.parametrize(
    "span, expected",
    [
        ((0, 20), 0),  # exactly the first digit
        ((1, 19), 0),  # nearly all of it
        ((30, 51), 1),  # the second digit and one column of its touching neighbour
        ((30, 70), NOT_ONE_DIGIT),  # two touching digits taken as one
        ((0, 50), NOT_ONE_DIGIT),
        ((0, 8), NOT_ONE_DIGIT),  # the left part of a digit
        ((40, 60), NOT_ONE_DIGIT),  # halves of two digits
        ((0, 16), None),  # most of a digit: neither clearly one digit nor clearly a fragment
        ((30, 60), None),  # one digit and half of the next: left out
    ],
)
def test_label_piece(span, expected):
    assert label_piece(span, TRUTH) == expected


@pytest.fixture(scope="module")
def digits():
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    return np.stack([synthetic.draw_digit(int(d), rng) for d in labels]), labels


def test_segment_examples_hold_both_kinds_and_repeat_for_a_seed(digits):
    images, labels = digits
    x, y = segment_examples(images, labels, 30, seed=1, touching=1.0)
    assert x.dtype == np.uint8 and x.shape == (len(y), IMAGE_SIZE, IMAGE_SIZE)
    assert (y == NOT_ONE_DIGIT).any(), "touching digits give pieces that are not one digit"
    assert (y < NOT_ONE_DIGIT).any(), "and pieces that are one digit"
    assert set(np.unique(y[y < NOT_ONE_DIGIT])) <= set(labels.tolist())
    assert (x.reshape(len(x), -1).max(1) > 128).all(), "every piece holds ink"
    x2, y2 = segment_examples(images, labels, 30, seed=1, touching=1.0)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_no_numbers_no_examples(digits):
    x, y = segment_examples(*digits, 0, seed=0)
    assert x.shape == (0, IMAGE_SIZE, IMAGE_SIZE) and y.shape == (0,)


def test_add_class_keeps_every_digit_score_and_adds_one(digits):
    torch = pytest.importorskip("torch")
    from digitrec.nn.models.registry import create_model
    from digitrec.nn.predict import prepare_batch

    images, labels = digits
    torch.manual_seed(0)
    model = create_model("default", widths=(8, 16)).eval()
    new, report = add_class(model, images, labels, numbers=20, seed=1)
    x = prepare_batch(torch.from_numpy(images))
    with torch.no_grad():
        before, after = model(x), new(x)
    assert after.shape == (len(images), 11) and new.config.num_classes == 11
    assert torch.equal(after[:, :10], before)  # the digits read exactly as before
    assert report.pieces > report.not_one_digit > 0 and report.numbers == 20 and report.seed == 1
    assert 0 <= report.caught <= 1 and 0 <= report.digits_taken_for_not <= 1
    assert list(report.to_dict()) == [
        "numbers",
        "seed",
        "pieces",
        "not_one_digit",
        "fitted_on",
        "negatives",
        "caught",
        "digits_taken_for_not",
    ]
    with pytest.raises(DigitrecError, match="already"):
        add_class(new, images, labels, numbers=5)


def test_a_model_trained_with_not_a_digit_and_no_pieces_gets_its_11th_output_fitted_in_place(digits):
    torch = pytest.importorskip("torch")
    from digitrec.nn.models.registry import create_model
    from digitrec.nn.predict import prepare_batch

    images, labels = digits
    torch.manual_seed(0)
    model = create_model("default", widths=(8, 16), num_classes=NON_DIGIT + 1).eval()
    new, report = add_class(model, images, labels, numbers=20, seed=1, drawn=30)
    x = prepare_batch(torch.from_numpy(images))
    with torch.no_grad():
        before, after = model(x), new(x)
    assert after.shape == (len(images), NON_DIGIT + 1) and report.negatives >= 30
    assert torch.equal(after[:, :NOT_ONE_DIGIT], before[:, :NOT_ONE_DIGIT])  # the digits as before
    assert torch.equal(after[:, NON_DIGIT], before[:, NON_DIGIT])  # and "not a digit"
    assert not torch.equal(after[:, NOT_ONE_DIGIT], before[:, NOT_ONE_DIGIT])
    assert report.caught > 0


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DIGITREC_DATA"), reason="set DIGITREC_DATA to a folder with MNIST")
def test_cli_adds_the_class_to_a_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    from digitrec.nn.checkpoint import read_metadata, save_checkpoint
    from digitrec.nn.models.registry import create_model
    from digitrec.recognition.recognizer import Recognizer

    torch.manual_seed(0)
    ckpt = tmp_path / "model.safetensors"
    save_checkpoint(ckpt, create_model("default", widths=(8, 16)))
    out = tmp_path / "with-class.safetensors"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "digitrec.cli",
            "add-not-a-digit",
            str(ckpt),
            "--numbers",
            "30",
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    meta = read_metadata(out)
    assert meta["model"]["config"]["num_classes"] == 11 and meta["not_a_digit"]["pieces"] == report["pieces"]
    assert meta["not_a_digit"] == {k: v for k, v in report.items() if k != "calibration"}
    assert meta["calibration"]["temperature"] == report["calibration"]["temperature"]
    assert read_metadata(ckpt)["model"]["config"]["num_classes"] == 10  # the original is left alone
    assert Recognizer.load(out).predict_proba(np.zeros((2, IMAGE_SIZE, IMAGE_SIZE), np.uint8)).shape == (2, 10)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DIGITREC_DATA"), reason="set DIGITREC_DATA to a folder with MNIST")
def test_the_shipped_model_reads_touching_digits_better_with_the_class(monkeypatch):
    from digitrec.data.mnist import load_mnist

    test = load_mnist("test", None, progress=False)
    rng = np.random.default_rng(5)
    numbers = []
    for _ in range(100):
        idx = rng.choice(len(test.images), 3, replace=False)
        image, _ = synthetic.render_number([test.images[i] for i in idx], rng, kind="scan", spacing="touching")
        numbers.append((image, "".join(str(test.labels[i]) for i in idx)))
    recognizer = Recognizer.load()

    def read() -> int:
        return sum(recognizer.recognize(image).text == truth for image, truth in numbers)

    with_class = read()
    # The same readings chosen from the digit probabilities alone, as a digits-only model would.
    monkeypatch.setattr(decoder_module, "piece_probabilities", digit_probabilities)
    without = read()
    assert with_class >= 90 and with_class > without  # figures: docs/decisions/not-a-digit-head.md
