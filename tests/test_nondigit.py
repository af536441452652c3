"""The "not a digit" class: negatives met as the recogniser meets them, and the class added to a
model without changing any score it had; (slow) the CLI on real MNIST and the shipped model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from digitrec.constants import IMAGE_SIZE, NON_DIGIT, NOT_ONE_DIGIT
from digitrec.data import synthetic
from digitrec.errors import DigitrecError

torch = pytest.importorskip("torch")

from digitrec.nn.models.registry import create_model  # noqa: E402
from digitrec.nn.predict import prepare_batch  # noqa: E402
from digitrec.training.negative_examples import nondigit_examples  # noqa: E402
from digitrec.training.nondigit import add_nondigit_class  # noqa: E402
from digitrec.training.notdigit import add_class  # noqa: E402

needs_mnist = pytest.mark.skipif(not os.environ.get("DIGITREC_DATA"), reason="set DIGITREC_DATA to a folder with MNIST")


@pytest.fixture(scope="module")
def digits():
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    return np.stack([synthetic.draw_digit(int(d), rng) for d in labels]), labels


def test_negatives_are_mnist_format_pieces_and_repeat_for_a_seed():
    x = nondigit_examples(30, seed=3)
    assert x.dtype == np.uint8 and x.ndim == 3 and x.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE)
    assert len(x) >= 25, "about half are rendered and cut, the rest kept whole: nearly one piece each"
    assert (x.reshape(len(x), -1).max(1) > 128).all(), "every piece holds ink"
    assert np.array_equal(x, nondigit_examples(30, seed=3))


def test_no_negatives_no_examples():
    assert nondigit_examples(0, seed=0).shape == (0, IMAGE_SIZE, IMAGE_SIZE)


def test_the_head_alone_keeps_every_score_the_model_had_and_adds_one(digits):
    images, labels = digits
    torch.manual_seed(0)
    pieces_model, _ = add_class(create_model("default", widths=(8, 16)).eval(), images, labels, numbers=10, seed=1)
    new, fit = add_nondigit_class(pieces_model, images, labels, drawn=40, numbers=10, epochs=0, seed=1)
    x = prepare_batch(torch.from_numpy(images))
    with torch.no_grad():
        before, after = pieces_model(x), new(x)
    assert after.shape == (len(images), NON_DIGIT + 1) and new.config.num_classes == NON_DIGIT + 1
    # digits and "not one digit" as they were, to float rounding (a wider matrix product may sum in another order)
    assert torch.allclose(after[:, : NOT_ONE_DIGIT + 1], before, rtol=0, atol=1e-5)
    assert fit.drawn == 40 and fit.negatives >= 30 and fit.numbers == 10 and fit.seed == 1
    assert 0 <= fit.caught <= 1 and 0 <= fit.digits_taken_for_not <= 1
    with pytest.raises(DigitrecError, match="already"):
        add_nondigit_class(new, images, labels, drawn=5, numbers=2)


def test_fine_tuning_trains_the_whole_network_and_leaves_the_teacher_alone(digits):
    images, labels = digits
    torch.manual_seed(0)
    pieces_model, _ = add_class(create_model("default", widths=(8, 16)).eval(), images, labels, numbers=10, seed=1)
    before = {k: v.clone() for k, v in pieces_model.state_dict().items()}
    new, fit = add_nondigit_class(pieces_model, images, labels, drawn=40, numbers=10, epochs=1, seed=1)
    assert fit.epochs == 1 and new.config.num_classes == NON_DIGIT + 1
    conv = next(k for k in before if k.endswith("weight") and before[k].dim() == 4)
    assert not torch.equal(new.state_dict()[conv], before[conv]), "the features learn the new class too"
    assert all(torch.equal(v, before[k]) for k, v in pieces_model.state_dict().items()), "the teacher is untouched"
    assert not any(p.requires_grad for p in new.parameters())


def test_a_model_without_not_one_digit_is_told_to_add_it_first(digits):
    with pytest.raises(DigitrecError, match="add-not-a-digit"):
        add_nondigit_class(create_model("default", widths=(8, 16)), *digits, drawn=5, numbers=2)


@pytest.mark.slow
@needs_mnist
def test_cli_adds_the_class_to_a_checkpoint(tmp_path, digits):
    from digitrec.nn.checkpoint import read_metadata, save_checkpoint
    from digitrec.recognition.recognizer import Recognizer

    torch.manual_seed(0)
    pieces_model, _ = add_class(create_model("default", widths=(8, 16)).eval(), *digits, numbers=10, seed=1)
    ckpt = tmp_path / "pieces.safetensors"
    save_checkpoint(ckpt, pieces_model)
    out = tmp_path / "open.safetensors"
    command = [sys.executable, "-m", "digitrec.cli", "add-non-digit", str(ckpt), "--negatives", "60"]
    command += ["--numbers", "20", "--out", str(out), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    meta = read_metadata(out)
    assert meta["model"]["config"]["num_classes"] == NON_DIGIT + 1
    assert meta["non_digit"] == {k: v for k, v in report.items() if k != "calibration"}
    assert read_metadata(ckpt)["model"]["config"]["num_classes"] == NOT_ONE_DIGIT + 1  # left alone
    recognized = Recognizer.load(out).recognize(
        synthetic.encode(synthetic.render_canvas(digits[0][3], np.random.default_rng(0)))
    )
    assert all(d.not_digit is not None for d in recognized.digits)
