"""`digitrec robustness` and `digitrec evaluate --images/--labels` on a tiny made-up checkpoint
and IDX pair; (slow) the shipped model on the real test set.

Try: `pytest tests/test_robustness.py -q` (set DIGITREC_DATA to also run the slow test).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from digitrec.cli import main
from digitrec.data.idx import write_idx
from helpers import bar_digits

torch = pytest.importorskip("torch")

needs_mnist = pytest.mark.skipif(not os.environ.get("DIGITREC_DATA"), reason="set DIGITREC_DATA to a folder with MNIST")
N = 24


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from digitrec.nn.checkpoint import save_checkpoint
    from digitrec.nn.models.registry import create_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, create_model("default", widths=(4, 8)), training={"seconds": 12.5})
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    """The same made-up digits as a .gz pair and a plain pair, and labels that do not fit."""
    folder = tmp_path_factory.mktemp("idx")
    data = bar_digits(N, seed=7)
    files = {
        "images_gz": folder / "img-idx3-ubyte.gz",
        "labels_gz": folder / "lab-idx1-ubyte.gz",
        "images": folder / "img-idx3-ubyte",
        "labels": folder / "lab-idx1-ubyte",
        "short_labels": folder / "short-idx1-ubyte",
        "bad_labels": folder / "bad-idx1-ubyte",
        "rgb": folder / "rgb-idx3-ubyte",
    }
    for kind in ("", "_gz"):
        write_idx(files["images" + kind], data.images)
        write_idx(files["labels" + kind], data.labels)
    write_idx(files["short_labels"], data.labels[:-1])
    bad = data.labels.copy()
    bad[3] = 10
    write_idx(files["bad_labels"], bad)
    write_idx(files["rgb"], np.zeros((N, 28, 28, 3), np.uint8))
    return files


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_robustness_report_table_and_files(checkpoint, pair, tmp_path, capsys):
    common = [
        checkpoint,
        "--images",
        pair["images_gz"],
        "--labels",
        pair["labels_gz"],
        "--corruptions",
        "shot_noise",
        "stripe",
        "zigzag",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        tmp_path / "out",
    ]
    code, out, err = run_cli(capsys, "robustness", *common, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["n"] == N and report["severity"] == "mnist-c"
    assert [c["name"] for c in report["corruptions"]] == ["shot_noise", "stripe", "zigzag"]
    accs = [c["accuracy"] for c in report["corruptions"]]
    assert report["mean_accuracy"] == pytest.approx(np.mean(accs))
    assert report["worst"]["accuracy"] == min(accs)
    assert 0 <= report["clean_accuracy"] <= 1
    assert report["models"][0]["training_seconds"] == 12.5
    assert not any(c["cached"] for c in report["corruptions"])
    for name in ("robustness.json", "robustness.png", "robustness_examples.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "robustness.json").read_text())["mean_accuracy"] == report["mean_accuracy"]

    code, out, err = run_cli(capsys, "robustness", *common, "--severity", "2")  # the table, new sets
    assert code == 0, err
    assert "clean" in out and "mean of 3" in out and "worst:" in out and "zigzag" in out
    code, out, err = run_cli(capsys, "robustness", *common, "--json")  # the first sets again, from the cache
    assert all(c["cached"] for c in json.loads(out)["corruptions"])


def test_robustness_on_the_shipped_onnx_model(pair, tmp_path, capsys):
    from digitrec.recognition.backends import shipped_model_path

    code, out, err = run_cli(
        capsys,
        "robustness",
        shipped_model_path("onnx"),
        "--images",
        pair["images"],
        "--labels",
        pair["labels"],
        "--corruptions",
        "fog",
        "--limit",
        "10",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        tmp_path / "out",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["n"] == 10 and report["models"][0]["backend"] == "onnxruntime"


@pytest.mark.parametrize(
    "args, message",
    [
        (["robustness", "missing.safetensors"], "no such model file"),
        (
            ["robustness", "{ckpt}", "--corruptions", "fog", "nope"],
            "unknown corruption 'nope'; choose from: shot_noise",
        ),
        (["robustness", "{ckpt}", "--severity", "7"], "severity must be an integer from 1 to 5"),
        (["robustness", "{ckpt}", "--images", "{images}"], "--images and --labels go together"),
        (["evaluate", "{ckpt}", "--images", "{images}", "--labels", "{short_labels}"], "has 23 labels but"),
        (["evaluate", "{ckpt}", "--images", "{images}", "--labels", "{bad_labels}"], "label 10 is not a digit 0-9"),
        (["evaluate", "{ckpt}", "--images", "{rgb}", "--labels", "{labels}"], "expected uint8 images of 28x28"),
        (["evaluate", "{ckpt}", "--images", "{labels}", "--labels", "{labels}"], "expected uint8 images of 28x28"),
        (["evaluate", "{ckpt}", "--labels", "{labels}"], "--images and --labels go together"),
        (["evaluate", "{ckpt}", "--images", "{images}", "--labels", "nowhere-idx1-ubyte"], "no such file"),
    ],
)
def test_bad_input_is_one_clear_line(checkpoint, pair, tmp_path, capsys, args, message):
    values = {"ckpt": checkpoint, **pair}
    code, out, err = run_cli(
        capsys,
        *[a.format(**values) for a in args],
        "--out",
        tmp_path / "out",
        *(["--cache-dir", tmp_path / "cache"] if args[0] == "robustness" else []),
    )
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_evaluate_on_a_gz_pair_and_a_plain_pair(checkpoint, pair, tmp_path, capsys):
    reports = []
    for kind in ("_gz", ""):
        code, out, err = run_cli(
            capsys,
            "evaluate",
            checkpoint,
            "--images",
            pair["images" + kind],
            "--labels",
            pair["labels" + kind],
            "--out",
            tmp_path / kind,
            "--json",
        )
        assert code == 0, err
        reports.append(json.loads(out))
    assert reports[0]["n"] == reports[1]["n"] == N
    assert reports[0]["accuracy"] == reports[1]["accuracy"]
    assert str(pair["images_gz"]) in reports[0]["data"]
    assert (tmp_path / "_gz" / "report.json").is_file()


def test_qmnist_style_labels_use_the_first_column(checkpoint, pair, tmp_path):
    from digitrec.data.idxpair import read_idx_pair

    data = bar_digits(N, seed=7)
    table = np.zeros((N, 8), np.int32)
    table[:, 0] = data.labels
    table[:, 1] = 99  # QMNIST's other columns (writer ids, ...) are not digits
    write_idx(tmp_path / "q-labels-idx2-int", table)
    images, labels = read_idx_pair(pair["images"], tmp_path / "q-labels-idx2-int")
    assert labels.dtype == np.uint8 and np.array_equal(labels, data.labels)


@needs_mnist
@pytest.mark.slow
def test_shipped_model_on_real_corruptions(tmp_path, capsys):
    from digitrec.recognition.backends import shipped_model_path

    code, out, err = run_cli(
        capsys,
        "robustness",
        shipped_model_path("onnx"),
        "--limit",
        "1000",
        "--corruptions",
        "shear",
        "scale",
        "translate",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        tmp_path / "out",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["n"] == 1000 and report["clean_accuracy"] >= 0.99
    # Small affine changes are what the default preset's augmentation trains for.
    assert all(c["accuracy"] >= 0.95 for c in report["corruptions"]), report["corruptions"]


def test_robustness_has_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["robustness", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: digitrec robustness" in out and "--severity" in out and "--cache-dir" in out
