import json

import pytest
import torch
from safetensors.torch import save_file

from digitrec.errors import DigitrecError
from digitrec.metadata import CHECKPOINT_FORMAT_VERSION as FORMAT_VERSION
from digitrec.metadata import CHECKPOINT_METADATA_KEY as METADATA_KEY
from digitrec.nn.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from digitrec.nn.models.registry import create_model


def test_round_trip_rebuilds_model_with_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = create_model("default", widths=(8, 16)).eval()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, metrics={"test_accuracy": 0.5}, data_sha256="abc", training={"config": {"epochs": 1}})
    ckpt = load_checkpoint(path)
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(ckpt.model(x), model(x))
    meta = ckpt.metadata
    assert meta["model"] == {
        "name": "default",
        "config": {"num_classes": 10, "widths": [8, 16], "depth": 1, "kernel": 3, "dropout": 0.0},
    }
    assert meta["normalization"]["mean"] == pytest.approx(0.1307)
    assert meta["data_sha256"] == "abc" and meta["metrics"]["test_accuracy"] == 0.5
    assert {"digitrec", "torch", "python"} <= set(meta["versions"])
    assert not list(tmp_path.glob("*.part"))


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x80\x04not safetensors at all")  # a pickle header: must never be unpickled
    with pytest.raises(DigitrecError, match="not a digitrec checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(DigitrecError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(DigitrecError, match="metadata is missing"):
        read_metadata(plain)


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "new.safetensors"
    meta = {"format": "digitrec-checkpoint", "format_version": FORMAT_VERSION + 1}
    save_file({"w": torch.zeros(2)}, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(DigitrecError, match="newer than this digitrec"):
        load_checkpoint(path)


def test_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, create_model("default", widths=(8, 16)))
    meta = read_metadata(path)
    meta["model"]["config"]["widths"] = [4, 8]
    from safetensors.torch import load_file

    save_file(load_file(str(path)), str(path), metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(DigitrecError, match="do not fit"):
        load_checkpoint(path)


def test_a_checkpoint_is_readable_by_everyone_like_every_other_output(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, create_model("default", widths=(8, 16)))
    assert path.stat().st_mode & 0o777 == 0o644
