import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from digitrec.errors import DigitrecError
from digitrec.nn.checkpoint import save_checkpoint
from digitrec.nn.models.registry import create_model
from digitrec.nn.predict import prepare_batch
from digitrec.reports.evaluation import (
    TTA_VIEWS,
    classification_report,
    error_reject_curve,
    evaluate_checkpoints,
    format_report,
    predict_proba,
)
from helpers import bar_digits

needs_mnist = pytest.mark.skipif(not os.environ.get("DIGITREC_DATA"), reason="set DIGITREC_DATA to a folder with MNIST")


def test_report_figures_on_a_known_case():
    labels = np.array([0, 0, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0])
    probs = np.eye(10)[preds]
    r = classification_report(probs, labels)
    assert r["accuracy"] == pytest.approx(0.6) and r["errors"] == 2
    assert r["confusion_matrix"][0][:3] == [1, 1, 0] and r["confusion_matrix"][2][:3] == [1, 0, 0]
    c0, c1, c2 = r["per_class"][:3]
    assert (c0["precision"], c0["recall"]) == (0.5, 0.5)
    assert c1["precision"] == pytest.approx(2 / 3) and c1["recall"] == 1.0 and c1["f1"] == pytest.approx(0.8)
    assert (c2["precision"], c2["recall"], c2["f1"], c2["support"]) == (0.0, 0.0, 0.0, 1)
    assert "accuracy 0.6000 (3/5, 2 errors)" in format_report(r)


def test_prepare_batch_normalises_uint8_and_float_alike():
    u8 = torch.tensor([[[0, 255]]], dtype=torch.uint8)
    x = prepare_batch(u8)
    assert x.shape == (1, 1, 1, 2)
    assert torch.allclose(x, prepare_batch(u8.float() / 255))
    assert x[0, 0, 0, 0] == pytest.approx(-0.1307 / 0.3081, rel=1e-5)


def test_ensemble_averages_probabilities_and_writes_the_report(tmp_path):
    data = bar_digits(64)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"m{seed}.safetensors")
        save_checkpoint(paths[-1], create_model("default", widths=(4, 8)))
    single = [evaluate_checkpoints([p], images=data.images, labels=data.labels).probs for p in paths]
    result = evaluate_checkpoints(paths, images=data.images, labels=data.labels, out_dir=tmp_path / "r")
    assert np.allclose(result.probs, (single[0] + single[1]) / 2, atol=1e-6)
    assert len(result.report["members"]) == 2
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert saved["accuracy"] == result.report["accuracy"]
    assert (tmp_path / "r" / "confusion.png").stat().st_size > 1000
    assert (tmp_path / "r" / "misclassified.png").stat().st_size > 1000
    assert (tmp_path / "r" / "error_reject.png").stat().st_size > 1000
    assert saved["error_reject"]["rejected_share"][0] == 0.0


def test_error_reject_curve_rejects_the_least_confident_first():
    labels = np.array([0, 1, 2, 3])
    probs = np.full((4, 10), 0.01)
    probs[0, 0], probs[1, 1], probs[2, 2] = 0.9, 0.8, 0.7  # right, most confident first
    probs[3, 5] = 0.3  # wrong and the least confident
    curve = error_reject_curve(probs, labels, shares=(0.0, 0.25, 0.5, 1.0))
    assert curve["error_rate"] == [0.25, 0.0, 0.0, 0.0]
    assert curve["threshold"][1] == pytest.approx(0.7)  # accept only what is at least this confident


def test_tta_averages_probabilities_over_the_views():
    torch.manual_seed(0)
    model = create_model("default", widths=(4, 8))
    images = bar_digits(8).images
    plain, tta = predict_proba(model, images), predict_proba(model, images, tta=True)
    assert tta.shape == plain.shape == (8, 10)
    assert np.allclose(tta.sum(1), 1.0, atol=1e-6)
    assert len(TTA_VIEWS) > 1 and not np.allclose(tta, plain)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny untrained checkpoint and its float32 ONNX export."""
    pytest.importorskip("onnx")
    from digitrec.export import export_checkpoint

    folder = tmp_path_factory.mktemp("evaluation")
    torch.manual_seed(0)
    ckpt = folder / "model.safetensors"
    save_checkpoint(ckpt, create_model("default", widths=(4, 8)))
    export_checkpoint(ckpt, test_images=bar_digits(16).images)
    return ckpt, folder / "model.onnx"


@pytest.mark.parametrize("tta", [False, True])
def test_an_onnx_model_is_evaluated_as_its_checkpoint_is(tiny_models, tmp_path, tta):
    ckpt, onnx_path = tiny_models
    data = bar_digits(40, seed=5)
    by_torch = evaluate_checkpoints([ckpt], images=data.images, labels=data.labels, tta=tta)
    by_onnx = evaluate_checkpoints(
        [onnx_path], images=data.images, labels=data.labels, tta=tta, out_dir=tmp_path, limit=30
    )
    assert by_onnx.probs.shape == (30, 10)
    assert np.abs(by_onnx.probs - by_torch.probs[:30]).max() <= 1e-4
    member = by_onnx.report["members"][0]
    assert (member["format"], member["model"]) == ("onnx", "default")
    assert by_onnx.report["n"] == 30 and by_onnx.report["data"].endswith("first 30")
    for name in ("report.json", "confusion.png", "misclassified.png", "error_reject.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_a_checkpoint_and_an_onnx_model_make_one_ensemble(tiny_models):
    ckpt, onnx_path = tiny_models
    data = bar_digits(20, seed=6)
    result = evaluate_checkpoints([ckpt, onnx_path], images=data.images, labels=data.labels)
    assert [m["format"] for m in result.report["members"]] == ["safetensors", "onnx"]
    assert np.allclose(result.probs.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("name", ["digit.png", "model"])
def test_a_file_that_is_no_model_is_refused_naming_the_formats_accepted(tmp_path, name):
    from digitrec.data.synthetic import encode

    bad = tmp_path / name
    bad.write_bytes(encode(np.zeros((28, 28), np.uint8)))
    data = bar_digits(4)
    with pytest.raises(DigitrecError) as e:
        evaluate_checkpoints([bad], images=data.images, labels=data.labels)
    message = str(e.value)
    assert ".safetensors" in message and ".onnx" in message and "\n" not in message
    assert "header too large" not in message


def test_a_limit_below_one_is_refused():
    data = bar_digits(4)
    with pytest.raises(DigitrecError, match="--limit must be at least 1"):
        evaluate_checkpoints([Path("unused.onnx")], images=data.images, labels=data.labels, limit=0)


@needs_mnist
@pytest.mark.slow
def test_the_shipped_onnx_model_scores_as_its_checkpoint_on_500_test_digits():
    from digitrec.recognition.backends import shipped_model_path

    onnx_report = evaluate_checkpoints([shipped_model_path("onnx")], limit=500, progress=False).report
    ckpt_report = evaluate_checkpoints([shipped_model_path("checkpoint")], limit=500, progress=False).report
    assert onnx_report["n"] == ckpt_report["n"] == 500
    assert onnx_report["accuracy"] > 0.98 and ckpt_report["accuracy"] > 0.98
    assert abs(onnx_report["accuracy"] - ckpt_report["accuracy"]) <= 0.004  # at most 2 of 500 differ
    assert len(onnx_report["confusion_matrix"]) == 10 and onnx_report["error_reject"]["error_rate"]
