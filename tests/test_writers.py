"""Synthetic writers: each a consistent hand, the same for a seed, split into choose and report.

Run: `.venv/bin/pytest tests/test_writers.py -q` (set DIGITREC_DATA to also check the MNIST writers).
"""

from __future__ import annotations

import doctest
import os

import numpy as np
import pytest
from scipy import ndimage as ndi

from digitrec.data import synthetic
from digitrec.data import writers as wr
from digitrec.errors import DigitrecError

needs_mnist = pytest.mark.skipif(not os.environ.get("DIGITREC_DATA"), reason="set DIGITREC_DATA to a folder with MNIST")


def _fonts(split: str | None = None) -> list[wr.Writer]:
    found = wr.writers(split, kinds=("font",))
    if not found:
        pytest.skip("no fonts with the ten digits installed")
    return found


def _some(kind: str, n: int) -> list[wr.Writer]:
    """n writers of a kind, from both sides of the split."""
    found = _fonts() if kind == "font" else wr.writers(kinds=(kind,))
    return found[:: max(1, len(found) // n)][:n]


def _normalised(image: np.ndarray) -> np.ndarray:
    """A page as MNIST's format (cropped, scaled, centred by mass), blurred: placement and
    per-sample tremor mostly gone, the shape left."""
    return ndi.gaussian_filter(synthetic.mnist_format(1.0 - image).astype(np.float32) / 255, 1.0).ravel()


def test_the_doctests_hold():
    assert doctest.testmod(wr).failed == 0


def test_the_same_seed_gives_the_same_images_and_another_seed_others():
    for w in [*_some("stroke", 2), *_some("font", 1)]:
        a = w.digits(4, 3, seed=5)
        assert np.array_equal(a, w.digits(4, 3, seed=5)), w
        assert not np.array_equal(a, w.digits(4, 3, seed=6)), w
        assert not np.array_equal(a[0], a[1]), w  # samples vary


def test_images_are_grey_pages_with_dark_ink_on_light_paper():
    for w in [*_some("stroke", 2), *_some("font", 2)]:
        for d in (0, 1, 8):
            images = w.digits(d, 2, seed=0)
            assert images.shape == (2, wr.SIDE, wr.SIDE) and images.dtype == np.float32, w
            assert images.min() >= 0.0 and images.max() <= 1.0
            for im in images:
                assert np.median(im) == 1.0  # mostly paper
                assert im.min() <= wr.INK + 0.05  # solid ink somewhere
                ys, xs = np.nonzero(im < 0.5)
                assert max(np.ptp(ys), np.ptp(xs)) + 1 <= wr.DIGIT_PX + 1
    assert wr.get_writer("stroke:00").digits(3, 0).shape == (0, wr.SIDE, wr.SIDE)


def test_a_writer_keeps_its_style_across_samples():
    """Each sample is nearer its own writer's mean shape than any other writer's."""
    for kind in ("stroke", "font"):
        group = _some(kind, 5)
        for d in (1, 4, 7):
            shapes = {w.name: np.stack([_normalised(im) for im in w.digits(d, 5, seed=1)]) for w in group}
            means = {name: s.mean(0) for name, s in shapes.items()}
            right = [
                min(means, key=lambda m: float(np.linalg.norm(x - means[m]))) == name
                for name, samples in shapes.items()
                for x in samples
            ]
            assert np.mean(right) >= 0.9, (kind, d)


def test_the_choose_and_report_writers_share_no_font_design_stroke_variant_or_cluster():
    choose, report = wr.writers("choose"), wr.writers("report")
    assert {w.name for w in choose}.isdisjoint(w.name for w in report)
    assert sorted(w.name for w in choose + report) == sorted(w.name for w in wr.writers())
    for kind in wr.KINDS if wr.writers(kinds=("font",)) else ("stroke", "mnist"):
        assert any(w.kind == kind for w in choose) and any(w.kind == kind for w in report), kind
    designs = [{wr._design(w.source) for w in side if w.kind == "font"} for side in (choose, report)]
    assert designs[0].isdisjoint(designs[1])
    for d in range(10):
        plain = next(iter(wr.STROKE_VARIANTS[d]))
        used = [{w.style()["variants"][d] for w in side if w.kind == "stroke"} - {plain} for side in (choose, report)]
        assert used[0].isdisjoint(used[1]), d
        ranks = [{w.style()["clusters"][d] for w in side if w.kind == "mnist"} for side in (choose, report)]
        assert ranks[0].isdisjoint(ranks[1]), d


def test_clones_of_one_font_design_are_on_one_side():
    assert wr._design("LiberationSans-Bold") == wr._design("NimbusSans-Regular") == wr._design("FreeSansBoldOblique")
    assert wr._design("Breip") == wr._design("breipfont")
    assert wr._design("C059-Roman") != wr._design("NimbusRoman-Regular")


def test_a_stroke_writer_writes_each_digit_in_one_known_variant():
    for w in wr.writers(kinds=("stroke",)):
        variants = w.style()["variants"]
        assert len(variants) == 10
        for d, name in enumerate(variants):
            assert name in wr.STROKE_VARIANTS[d]
    assert len({tuple(w.style()["variants"]) for w in wr.writers(kinds=("stroke",))}) == wr.STROKE_WRITERS


def test_bad_arguments_raise_digitrec_error():
    w = wr.get_writer("stroke:01")
    with pytest.raises(DigitrecError):
        w.digits(10, 1)
    with pytest.raises(DigitrecError):
        w.digits(3, -1)
    with pytest.raises(DigitrecError):
        wr.writers("test")
    with pytest.raises(DigitrecError):
        wr.writers(kinds=("pencil",))
    with pytest.raises(DigitrecError):
        wr.get_writer("stroke:99")
    with pytest.raises(DigitrecError):
        wr.Writer("font:X", "stroke", 0)
    with pytest.raises(DigitrecError):
        wr.Writer("font:NoSuchFont", "font", 0).digits(1, 1)


@needs_mnist
def test_an_mnist_writer_draws_different_training_digits_of_one_style():
    w = wr.get_writer("mnist:00")
    images = w.digits(7, 4, seed=0)
    assert images.shape == (4, wr.SIDE, wr.SIDE) and images.dtype == np.float32
    assert np.array_equal(images, w.digits(7, 4, seed=0))
    flat = [_normalised(im) for im in images]
    assert all(not np.array_equal(flat[0], f) for f in flat[1:])
    assert np.median(images) == 1.0 and images.min() <= wr.INK + 0.05
