import json

import numpy as np
import pytest
import torch

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
