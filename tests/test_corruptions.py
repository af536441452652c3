"""The 15 MNIST-C corruptions on a few made-up digits, and the cache of corrupted sets.

Try: `pytest tests/test_corruptions.py -q`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitrec.data.corruption_cache import CACHE_ENV_VAR, SIDECAR, corrupted_test_set, default_cache_dir
from digitrec.data.corruptions import (
    CORRUPTIONS,
    MAX_SEVERITY,
    MIN_SEVERITY,
    MNIST_C_SEVERITY,
    canny,
    corrupt,
    list_corruptions,
)
from digitrec.errors import DigitrecError
from helpers import bar_digits

N = 16  # enough images that two seeds never draw the same per-image signs for all of them
# No randomness in MNIST-C's definition of these: every seed gives the same images.
SEED_FREE = {"scale", "brightness", "stripe", "canny_edges"}


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return bar_digits(N, seed=5).images


def test_the_fifteen_mnist_c_corruptions_are_registered():
    assert list_corruptions() == [
        "shot_noise",
        "impulse_noise",
        "glass_blur",
        "motion_blur",
        "shear",
        "scale",
        "rotate",
        "brightness",
        "translate",
        "stripe",
        "fog",
        "spatter",
        "dotted_line",
        "zigzag",
        "canny_edges",
    ]
    assert set(MNIST_C_SEVERITY) == set(CORRUPTIONS)


@pytest.mark.parametrize("name", list_corruptions())
def test_corruption_changes_the_image_and_keeps_the_format(digits, name):
    out = corrupt(digits, name, seed=1)
    assert out.dtype == np.uint8 and out.shape == digits.shape
    changed = (out != digits).reshape(N, -1).any(1)
    assert changed.all(), f"{name} left {int((~changed).sum())} images unchanged"
    assert np.array_equal(out, corrupt(digits, name, seed=1)), "not deterministic for a seed"
    other = corrupt(digits, name, seed=2)
    if name in SEED_FREE:
        assert np.array_equal(out, other)
    else:
        assert not np.array_equal(out, other), "another seed gave the same images"


@pytest.mark.parametrize("name", list_corruptions())
def test_every_severity_runs(name):
    images = bar_digits(2, seed=1).images
    outs = [corrupt(images, name, seed=0, severity=s) for s in range(MIN_SEVERITY, MAX_SEVERITY + 1)]
    assert all(o.dtype == np.uint8 and o.shape == images.shape for o in outs)
    assert np.array_equal(outs[MNIST_C_SEVERITY[name] - 1], corrupt(images, name, seed=0))  # None: MNIST-C's level


def test_one_image_and_no_images():
    one = bar_digits(1).images
    assert corrupt(one, "zigzag", seed=3).shape == (1, 28, 28)
    assert corrupt(one[:0], "fog").shape == (0, 28, 28)


def test_known_values():
    blank = np.zeros((2, 28, 28), np.uint8)
    assert (corrupt(blank, "brightness", severity=5) == 128).all()  # 0 + 0.5, rounded
    striped = corrupt(blank, "stripe")
    assert (striped[:, :, :7] == 255).all() and (striped[:, :, 7:21] == 0).all() and (striped[:, :, 21:] == 255).all()
    assert (corrupt(blank, "scale") == 0).all() and (corrupt(blank, "rotate") == 0).all()
    assert corrupt(blank, "dotted_line").max() > 200 and corrupt(blank, "impulse_noise").max() == 255


def test_canny_finds_the_outline_of_a_square():
    square = np.zeros((1, 28, 28), np.float32)
    square[0, 9:19, 9:19] = 1.0
    edges = canny(square)[0]
    assert edges.any()
    rows, cols = np.nonzero(edges)
    assert rows.min() >= 7 and rows.max() <= 20 and cols.min() >= 7 and cols.max() <= 20  # on the outline
    assert not edges[11:17, 11:17].any()  # not inside
    assert edges[13, 8:11].any() and edges[13, 17:20].any()  # both sides of a middle row
    assert not canny(np.zeros((1, 28, 28), np.float32)).any()


def test_affine_corruptions_keep_the_ink_roughly():
    images = bar_digits(8, seed=2).images
    for name in ("shear", "rotate", "translate"):
        out = corrupt(images, name)
        ratio = out.astype(float).sum() / images.astype(float).sum()
        assert 0.6 < ratio < 1.2, (name, ratio)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda d: corrupt(d, "nope"), "unknown corruption 'nope'; choose from: shot_noise"),
        (lambda d: corrupt(d, "fog", severity=6), "severity must be an integer from 1 to 5"),
        (lambda d: corrupt(d, "fog", severity=0), "severity must be an integer from 1 to 5"),
        (lambda d: corrupt(d, "fog", seed=-1), "seed must be a non-negative integer"),
        (lambda d: corrupt(d.astype(np.float32), "fog"), "uint8 (N, 28, 28)"),
        (lambda d: corrupt(d[:, :20], "fog"), "uint8 (N, 28, 28)"),
    ],
)
def test_bad_arguments_are_clear_errors(digits, call, message):
    with pytest.raises(DigitrecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(digits)


# ---- the cache --------------------------------------------------------------------------------------


def test_cache_is_reused_verified_and_regenerated_when_tampered_with(tmp_path):
    data = bar_digits(12, seed=3)
    source = (data.images, data.labels)
    first = corrupted_test_set("spatter", seed=4, cache_dir=tmp_path, source=source)
    assert first.generated and first.severity == MNIST_C_SEVERITY["spatter"]
    assert np.array_equal(first.images, corrupt(data.images, "spatter", seed=4))
    assert np.array_equal(first.labels, data.labels)
    sidecar = json.loads((first.image_file.parent / SIDECAR).read_text())
    assert sidecar["images"]["sha256"] == first.sha256 and sidecar["seed"] == 4

    again = corrupted_test_set("spatter", seed=4, cache_dir=tmp_path, source=source)
    assert not again.generated and np.array_equal(again.images, first.images)

    raw = bytearray(first.image_file.read_bytes())
    raw[-1] ^= 0xFF  # one pixel changed: same size, wrong checksum
    first.image_file.write_bytes(bytes(raw))
    repaired = corrupted_test_set("spatter", seed=4, cache_dir=tmp_path, source=source)
    assert repaired.generated and np.array_equal(repaired.images, first.images)
    assert not corrupted_test_set("spatter", seed=4, cache_dir=tmp_path, source=source).generated

    (first.image_file.parent / SIDECAR).write_text("{not json")
    assert corrupted_test_set("spatter", seed=4, cache_dir=tmp_path, source=source).generated


def test_cache_keys_seed_severity_and_source(tmp_path):
    data = bar_digits(6, seed=3)
    a = corrupted_test_set("rotate", seed=0, cache_dir=tmp_path, source=(data.images, data.labels))
    b = corrupted_test_set("rotate", seed=1, cache_dir=tmp_path, source=(data.images, data.labels))
    c = corrupted_test_set("rotate", seed=0, severity=5, cache_dir=tmp_path, source=(data.images, data.labels))
    d = corrupted_test_set("rotate", seed=0, cache_dir=tmp_path, source=(data.images[:5], data.labels[:5]))
    assert all(s.generated for s in (a, b, c, d))
    assert len({s.image_file.parent for s in (a, b, c, d)}) == 4
    assert not list(tmp_path.rglob("*.part"))  # atomic writes leave no temporary files


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "corrupted"
    monkeypatch.delenv(CACHE_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "digitrec" / "corrupted"
    data = bar_digits(4)
    made = corrupted_test_set("stripe", source=(data.images, data.labels))
    assert made.image_file.is_relative_to(tmp_path / "xdg" / "digitrec" / "corrupted")
