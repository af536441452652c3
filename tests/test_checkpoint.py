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


def _with_metadata(tmp_path, change):
    """A small real checkpoint whose metadata `change(meta)` has edited."""
    from digitrec.nn.checkpoint import load_tensors, save_tensors

    path = tmp_path / "m.safetensors"
    save_checkpoint(path, create_model("default", widths=(8, 16)), metrics={}, training={})
    meta = read_metadata(path)
    change(meta)
    save_tensors(path, load_tensors(path), meta)
    return path


def _set(field, value):
    def change(meta):
        *parents, last = field.split(".")
        target = meta
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value

    return change


BAD_METADATA = [
    ("model.config.widths", [40000, 40000, 40000]),  # 57.6 GB of weights if it were built
    ("model.config.widths", ["8", 16]),
    ("model.config.widths", "wide"),
    ("model.config.widths", [8, 16, 32, 64, 128]),  # more stages than 28 px can be halved
    ("model.config.num_classes", -3),
    ("model.config.num_classes", 7),
    ("model.config.depth", 1000),
    ("model.config.kernel", 1.5),
    ("model.config.dropout", float("nan")),
    ("model.config.colour", True),
    ("model.name", "resnet-9000"),
    ("model.name", 7),
    ("normalization.mean", "0.13"),
    ("normalization.std", 0),
    ("normalization.std", float("inf")),
    ("normalization", None),
    ("calibration.temperature", -1.0),
    ("calibration.temperature", float("nan")),
    ("labels", ["0", "1"]),
    ("labels", [str(d) for d in range(9)] + [9]),
    ("labels", [str(d) for d in range(9)] + ["x" * 10_000]),
]


@pytest.mark.parametrize(("field", "value"), BAD_METADATA)
def test_bad_metadata_is_refused_in_one_line_naming_the_field_before_any_model_is_built(
    tmp_path, monkeypatch, field, value
):
    path = _with_metadata(tmp_path, _set(field, value))

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built from metadata that should have been refused")

    monkeypatch.setattr("digitrec.nn.checkpoint.create_model", no_model)
    with pytest.raises(DigitrecError) as info:
        load_checkpoint(path)
    message = str(info.value)
    shown_field = field.split(".")[-1] if field.startswith("model.config") else field
    assert message.startswith(f"{path}: bad metadata: ")
    assert shown_field in message and "\n" not in message and len(message) < 300


def test_metadata_within_bounds_still_loads_including_the_shipped_model(tmp_path):
    from importlib.resources import files

    shipped = load_checkpoint(files("digitrec") / "assets" / "default.safetensors")
    assert shipped.model.config.num_classes == 12 and len(shipped.metadata["labels"]) == 10
    path = _with_metadata(tmp_path, _set("calibration.temperature", 0.5))
    assert load_checkpoint(path).metadata["calibration"]["temperature"] == 0.5


def _flip(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


def test_a_checkpoint_digitrec_writes_carries_its_digest_and_a_flipped_label_is_refused_in_one_line(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, create_model("default", widths=(4, 8)))
    data = path.read_bytes()
    assert b'"sha256":"' in data and b'"sha256":"' + b"0" * 64 not in data
    where = data.index(b'\\"labels\\"')
    path.write_bytes(_flip(data, 8 * (where + 14)))  # a bit inside the labels' list
    with pytest.raises(DigitrecError, match="damaged") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


def test_each_seeded_bit_flip_of_the_shipped_checkpoint_is_refused_or_changes_nothing(tmp_path):
    from importlib.resources import files

    import numpy as np

    from digitrec.data.synthetic import draw_digit

    data = (files("digitrec") / "assets" / "default.safetensors").read_bytes()
    rng = np.random.default_rng(0)
    images = torch.from_numpy(np.stack([draw_digit(d, rng) for d in (4, 7, 3)]).astype(np.float32)[:, None] / 255)
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(data)
    with torch.inference_mode():
        original = load_checkpoint(path).model(images)
    for bit in np.random.default_rng(0).integers(0, 8 * len(data), 30):
        path.write_bytes(_flip(data, int(bit)))
        try:
            ckpt = load_checkpoint(path)
        except DigitrecError:
            continue  # refused: the only other allowed outcome
        with torch.inference_mode():
            assert torch.equal(ckpt.model(images), original), f"bit {bit} changed the outputs silently"
