import math

import numpy as np
import pytest
import torch

from digitrec.data.mnist import holdout_split
from digitrec.metadata import temperature_of
from digitrec.nn.checkpoint import load_checkpoint, load_tensors, save_checkpoint
from digitrec.nn.models.registry import create_model
from digitrec.probabilities import softmax
from digitrec.recognition.recognizer import Recognizer
from digitrec.training.calibration import calibrate_checkpoint, calibration_digits, fit_temperature, nll
from helpers import bar_digits


def sampled(temperature: float, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from softmax(logits / temperature): the true temperature is known."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 10))
    p = softmax(logits / temperature)
    labels = (p.cumsum(1) < rng.random((n, 1))).sum(1).clip(0, 9)
    return logits, labels


@pytest.mark.parametrize("true", [0.4, 1.0, 2.5])
def test_fit_recovers_the_temperature_the_labels_were_drawn_with(true):
    logits, labels = sampled(true)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true, rel=0.1)
    assert nll(logits, labels, fitted) <= min(nll(logits, labels, t) for t in (0.5 * fitted, 2 * fitted))


def test_nll_matches_its_definition():
    logits, labels = sampled(1.0, n=50)
    p = softmax(logits / 2.0)
    assert nll(logits, labels, 2.0) == pytest.approx(-np.log(p[np.arange(50), labels]).mean(), rel=1e-5)


def test_temperature_of_metadata():
    assert temperature_of({}) == 1.0  # an older or foreign model
    assert temperature_of({"calibration": {"temperature": 0.4}}) == 0.4
    assert temperature_of({"calibration": {"temperature": -1}}) == 1.0  # nonsense is ignored
    assert temperature_of({"calibration": {"temperature": "hot"}}) == 1.0


def test_calibration_digits_are_the_held_out_ones_when_there_are_some():
    images, labels = np.arange(100)[:, None], np.arange(100) % 10
    held_images, _, source = calibration_digits(images, labels, holdout=20)
    assert source == "20 held-out training digits"
    assert sorted(held_images[:, 0]) == sorted(holdout_split(100, 20)[1])
    some, _, source = calibration_digits(images, labels, holdout=0)
    assert source == "100 training digits" and len(some) == 100


def test_calibrated_checkpoint_keeps_its_weights_and_the_recognizer_applies_the_temperature(tmp_path):
    torch.manual_seed(0)
    model = create_model("default", widths=(8, 16)).eval()
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model, metrics={"test_accuracy": 0.5})
    digits = bar_digits(256, seed=4)
    images, labels = digits.images, digits.labels
    before = load_tensors(path)
    calibration = calibrate_checkpoint(path, images, labels, "256 made-up digits")
    after = load_checkpoint(path)
    assert after.metadata["calibration"] == calibration.to_dict() and calibration.fitted_on == "256 made-up digits"
    assert list(calibration.to_dict()) == ["temperature", "fitted_on", "nll_before", "nll_after"]
    assert after.metadata["metrics"] == {"test_accuracy": 0.5}  # the rest of the metadata stays
    assert all(torch.equal(before[k], v) for k, v in load_tensors(path).items())
    rec = Recognizer.load(path)
    assert rec.temperature == pytest.approx(calibration.temperature)
    logits = rec.predict_logits(images[:8])
    np.testing.assert_allclose(rec.predict_proba(images[:8]), softmax(logits / rec.temperature), atol=1e-6)
    assert math.isclose(rec.info["temperature"], rec.temperature)
