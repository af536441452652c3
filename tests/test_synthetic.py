"""Synthetic renders: types, shapes, determinism, and that preprocessing judges them right.

Run: `.venv/bin/pytest tests/test_synthetic.py -q`
"""

from __future__ import annotations

import numpy as np
import pytest

from digitrec.data import synthetic as syn
from digitrec.image.decode import load_image
from digitrec.image.mnist_format import preprocess
from digitrec.image.presence import has_digit, ink_stats


@pytest.fixture(scope="module")
def digits() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [syn.draw_digit(d, rng) for d in range(10)]


def test_draw_digit_is_mnist_format(digits):
    for d in digits:
        assert d.shape == (28, 28) and d.dtype == np.uint8
        assert d.max() == 255
        ys, xs = np.nonzero(d)
        assert max(np.ptp(ys), np.ptp(xs)) + 1 == 20


def test_render_types_and_shapes(digits):
    rng = np.random.default_rng(1)
    photo = syn.render_photo(digits[3], rng)
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    assert 40 <= min(photo.shape[:2]) and max(photo.shape[:2]) <= 600
    assert syn.render_photo(digits[3], rng, size=(120, 90), jpeg=True).shape == (120, 90, 3)
    scan = syn.render_scan(digits[4], rng)
    assert scan.dtype == np.uint8 and scan.ndim == 2
    for style in syn.CANVAS_STYLES:
        canvas = syn.render_canvas(digits[5], rng, style)
        channels = 4 if "transparent" in style else 3
        assert canvas.shape == (280, 280, channels) and canvas.dtype == np.uint8
    with pytest.raises(ValueError):
        syn.render_canvas(digits[5], rng, "purple")
    img, boxes = syn.render_number(digits[:5], rng)
    assert img.dtype == np.uint8 and img.ndim == 3 and len(boxes) == 5
    assert all(0 <= b[0] < b[2] <= img.shape[1] and 0 <= b[1] < b[3] <= img.shape[0] for b in boxes)
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)
    blanks = syn.blank_images(rng, 7)
    assert len(blanks) == 7 and all(b.dtype == np.uint8 for b in blanks)


def test_a_number_in_groups_has_wider_gaps_between_its_groups_than_inside_them(digits):
    rng = np.random.default_rng(3)
    parts = [digits[i % len(digits)] for i in range(8)]
    _, boxes = syn.render_number(parts, rng, groups=(4, 4), spacing="normal")
    gaps = [b[0] - a[2] for a, b in zip(boxes, boxes[1:])]
    height = max(b[3] - b[1] for b in boxes)
    assert gaps[3] > 0.6 * height and max(gaps[:3] + gaps[4:]) < gaps[3]
    with pytest.raises(ValueError, match="do not add up"):
        syn.render_number(parts, rng, groups=(4, 3))


def test_renders_are_deterministic(digits):
    def everything(seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        number, _ = syn.render_number(digits[:3], rng)
        return [
            syn.draw_digit(8, rng),
            syn.render_photo(digits[1], rng),
            syn.render_scan(digits[2], rng),
            syn.render_canvas(digits[3], rng, "black_on_transparent"),
            number,
            *syn.blank_images(rng, 5),
        ]

    a, b, c = everything(42), everything(42), everything(43)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, c))


def test_encode_roundtrips_through_load_image(digits):
    rng = np.random.default_rng(3)
    canvas = syn.render_canvas(digits[7], rng, "white_on_transparent")
    for fmt in ("PNG", "WEBP", "JPEG"):
        grey = load_image(syn.encode(canvas, fmt))
        assert grey.shape == (280, 280)


def test_blanks_are_rejected():
    rng = np.random.default_rng(4)
    for img in syn.blank_images(rng, 20):
        assert not has_digit(img), ink_stats(img)


def test_rendered_digits_are_accepted_and_recovered(digits):
    rng = np.random.default_rng(5)
    for i, d in enumerate(digits):
        renders = [
            syn.render_photo(d, rng),
            syn.render_scan(d, rng),
            syn.render_canvas(d, rng, syn.CANVAS_STYLES[i % 4]),
        ]
        for img in renders:
            grey = load_image(syn.encode(img, "PNG"))
            assert has_digit(grey)
            # Preprocessing gives back roughly the digit that was drawn.
            out, ref = preprocess(grey), d.astype(np.float32)
            best = max(
                np.corrcoef(np.roll(out, (dy, dx), (0, 1)).ravel(), ref.ravel())[0, 1]
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
            )
            assert best > 0.6
