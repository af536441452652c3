"""ONNX export: a valid graph with a dynamic batch, our metadata, parity with torch, a smaller int8
model, clear errors; (slow) the shipped checkpoint meets the int8 targets on real MNIST."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from digitrec import export
from digitrec.errors import DigitrecError
from digitrec.export import export_checkpoint
from digitrec.metadata import ONNX_FORMAT_VERSION
from digitrec.nn.checkpoint import save_checkpoint
from digitrec.nn.models.registry import create_model
from digitrec.probabilities import softmax
from digitrec.recognition.backends import shipped_model_path
from helpers import bar_digits  # noqa: E402

needs_mnist = pytest.mark.skipif(not os.environ.get("DIGITREC_DATA"), reason="set DIGITREC_DATA to a folder with MNIST")


def tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = create_model("default", widths=(8, 16))
    path = folder / "model.safetensors"
    save_checkpoint(path, model, metrics={"test_accuracy": 0.5})
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny untrained model exported float32 + int8 on made-up digits (no MNIST needed)."""
    folder = tmp_path_factory.mktemp("export")
    ckpt = tiny_checkpoint(folder)
    data = bar_digits(300)
    report = export_checkpoint(
        ckpt, int8=True, test_images=data.images, test_labels=data.labels, calibration_images=data.images[:100]
    )
    return ckpt, report


def test_onnx_is_valid_with_dynamic_batch(exported):
    _, report = exported
    path = report.float32.path
    onnx.checker.check_model(path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    names = [o.name for o in session.get_outputs()]
    assert names[:2] == ["logits", "features"] and names[2:] == [f"conv_{k}" for k in range(1, len(names) - 1)]
    for n in (1, 37):
        logits, features, *convs = session.run(None, {"input": np.zeros((n, 1, 28, 28), np.float32)})
        assert logits.shape == (n, 10)
        assert features.shape[0] == n and features.ndim == 2
        assert convs and all(c.shape[0] == n and c.ndim == 4 for c in convs)


def test_metadata_is_stored(exported):
    ckpt, report = exported
    props = {p.key: json.loads(p.value) for p in onnx.load(report.float32.path).metadata_props}
    assert props["digitrec_format_version"] == ONNX_FORMAT_VERSION
    assert props["normalization"] == {"mean": 0.1307, "std": 0.3081}
    assert props["input"]["size"] == 28
    assert props["labels"] == [str(d) for d in range(10)]
    assert props["model"] == {
        "name": "default",
        "config": {"num_classes": 10, "widths": [8, 16], "depth": 1, "kernel": 3, "dropout": 0.0},
    }
    assert props["metrics"] == {"test_accuracy": 0.5}
    assert props["export"]["precision"] == "float32"
    assert props["export"]["test_accuracy"] == report.float32.accuracy


def test_parity_with_torch(exported):
    ckpt, report = exported
    assert report.float32.max_abs_diff <= export.PARITY_TOLERANCE
    # An independent check, on other made-up images, straight through onnxruntime.
    from digitrec.nn.checkpoint import load_checkpoint

    x = ((bar_digits(64, seed=1).images / 255.0 - 0.1307) / 0.3081).astype(np.float32)[:, None]
    session = ort.InferenceSession(report.float32.path, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = softmax(load_checkpoint(ckpt).model(torch.from_numpy(x)).numpy())
    assert np.abs(softmax(session.run(None, {"input": x})[0]) - expected).max() <= 1e-4


def test_int8_is_smaller_and_recorded(exported):
    _, report = exported
    q = report.int8
    assert q is not None and Path(q.path).name == "model.int8.onnx"
    assert q.bytes < report.float32.bytes
    assert q.accuracy is not None and q.calibration_images == 100
    props = {p.key: json.loads(p.value) for p in onnx.load(q.path).metadata_props}
    assert props["export"]["precision"] == "int8" and props["export"]["test_accuracy"] == q.accuracy
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(q.path).graph.node}


def test_the_report_prints_as_the_json_keys_the_cli_has_always_printed(exported):
    _, report = exported
    d = report.to_dict()
    assert list(d) == ["checkpoint", "model", "test_images", "test_labels", "float32", "int8"]
    assert list(d["float32"]) == ["path", "bytes", "max_abs_diff", "parity_images", "accuracy"]
    assert list(d["int8"]) == [
        "path",
        "bytes",
        "size_ratio",
        "accuracy",
        "accuracy_drop_pp",
        "calibration_images",
        "targets",
    ]
    assert list(d["int8"]["targets"]) == ["size_ratio_max", "size_ok", "accuracy_drop_pp_max", "accuracy_ok"]
    assert json.loads(json.dumps(d)) == d


def test_failed_parity_writes_nothing(tmp_path, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path)
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)  # nothing can pass
    with pytest.raises(DigitrecError, match="disagree"):
        export_checkpoint(ckpt, test_images=bar_digits(20).images)
    assert not ckpt.with_suffix(".onnx").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary left either


def test_a_model_with_the_not_a_digit_class_exports_with_its_digit_probabilities(tmp_path):
    from digitrec.recognition.recognizer import Recognizer

    torch.manual_seed(0)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, create_model("default", widths=(8, 16), num_classes=11))
    data = bar_digits(100)
    report = export_checkpoint(
        path, int8=True, test_images=data.images, test_labels=data.labels, calibration_images=data.images[:50]
    )
    assert report.float32.max_abs_diff <= export.PARITY_TOLERANCE
    session = ort.InferenceSession(report.float32.path, providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].shape[1] == 11
    assert report.int8 is not None
    for path in (report.float32.path, report.int8.path):
        probs = Recognizer.load(path).predict_proba(data.images)
        assert probs.shape == (100, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)  # the digits alone


def test_unlabelled_images_give_no_accuracy(tmp_path):
    report = export_checkpoint(
        tiny_checkpoint(tmp_path), tmp_path / "out" / "m.onnx", test_images=bar_digits(20).images
    )
    assert report.float32.accuracy is None and Path(report.float32.path).is_file()
    assert report.int8 is None and "int8" not in report.to_dict()
    assert "n/a" in export.format_report(report)


def test_out_never_overwrites_the_checkpoint(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    before = ckpt.read_bytes()
    with pytest.raises(DigitrecError, match="overwrite the checkpoint"):
        export_checkpoint(ckpt, ckpt, test_images=bar_digits(20).images)
    assert ckpt.read_bytes() == before


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitrec.cli", *args], capture_output=True, text=True, timeout=900)


def test_cli_help():
    result = run_cli("export", "--help")
    assert result.returncode == 0 and "--int8" in result.stdout


def test_cli_not_a_checkpoint(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"garbage")
    result = run_cli("export", str(bad))
    assert result.returncode == 2
    assert "not a digitrec checkpoint" in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not bad.with_suffix(".onnx").exists()


@needs_mnist
@pytest.mark.slow
def test_shipped_checkpoint_meets_int8_targets(tmp_path):
    out = tmp_path / "model.onnx"
    result = run_cli("export", str(shipped_model_path("checkpoint")), "--int8", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    f32, q = report["float32"], report["int8"]
    assert report["test_images"] == 10_000
    assert f32["accuracy"] >= 0.99 and f32["max_abs_diff"] <= 1e-4
    assert q["size_ratio"] <= export.INT8_MAX_SIZE_RATIO
    assert q["accuracy_drop_pp"] <= export.INT8_MAX_ACCURACY_DROP_PP
    assert Path(q["path"]) == tmp_path / "model.int8.onnx"
