"""Generated negatives (letters, signs, shapes, scribbles, crossed digits) and the loaders of real ones.

Run: `.venv/bin/pytest tests/test_negatives.py -q`
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitrec.data import negatives as neg
from digitrec.data.idx import write_idx
from digitrec.errors import DigitrecError
from digitrec.image.negatives_folder import load_negative_folder

PER_SOURCE = 3


def _font_sample() -> list[str]:
    """A few fonts of each split (all of them would take seconds)."""
    fit = [s for s in neg.sources("fit") if s.startswith("font:")]
    held = [s for s in neg.sources("held_out") if s.startswith("font:")]
    return fit[::15] + held[:2]


def _is_mnist_format(g: np.ndarray) -> None:
    assert g.shape == (28, 28) and g.dtype == np.uint8
    assert g.max() >= 200 and np.count_nonzero(g) >= 15
    ys, xs = np.nonzero(g)
    assert max(np.ptp(ys), np.ptp(xs)) + 1 <= 21  # the 20-px box, give or take a pixel
    w = g.astype(np.float64)
    cy, cx = (w.sum(1) * np.arange(28)).sum() / w.sum(), (w.sum(0) * np.arange(28)).sum() / w.sum()
    assert abs(cy - 14) < 2 and abs(cx - 14) < 2, (cy, cx)


def test_every_generator_source_gives_mnist_format_glyphs_with_ink():
    for source in neg.list_sources():
        if source.startswith("font:"):
            continue
        glyphs = neg.negative_glyphs(source, PER_SOURCE, seed=0)
        assert glyphs.shape == (PER_SOURCE, 28, 28) and glyphs.dtype == np.uint8, source
        for g in glyphs:
            _is_mnist_format(g)


def test_font_sources_give_mnist_format_glyphs_of_characters_the_font_has():
    fonts = _font_sample()
    if not fonts:
        pytest.skip("no fonts installed")
    for source in fonts:
        chars = neg.font_characters(source)
        assert chars and set(chars) <= set(neg.KEPT_LETTERS + neg.KEPT_SIGNS)
        for g in neg.negative_glyphs(source, PER_SOURCE, seed=0):
            _is_mnist_format(g)


def test_the_same_seed_gives_the_same_glyphs_and_another_seed_others():
    for source in ["strokes:letters", "shapes:star", "crossed:x", *_font_sample()[:1]]:
        a = neg.negative_glyphs(source, 4, seed=7)
        assert np.array_equal(a, neg.negative_glyphs(source, 4, seed=7))
        assert not np.array_equal(a, neg.negative_glyphs(source, 4, seed=8))


def test_fit_and_held_out_sources_are_disjoint_and_every_family_has_both():
    fit, held = neg.sources("fit"), neg.sources("held_out")
    assert not set(fit) & set(held)
    assert set(fit) | set(held) == set(neg.list_sources())
    expected = set(neg.FAMILIES) if any(s.startswith("font:") for s in fit) else set(neg.FAMILIES[1:])
    assert {neg.family(s) for s in fit} == expected
    assert {neg.family(s) for s in held} >= expected - {neg.FAMILIES[0]}
    if any(s.removeprefix("font:").startswith(neg.HELD_OUT_FONT_FAMILIES) for s in neg.list_sources()):
        assert neg.FAMILIES[0] in {neg.family(s) for s in held}
    with pytest.raises(DigitrecError):
        neg.sources("test")


def test_no_confusable_character_is_ever_drawn():
    kept = set(neg.KEPT_LETTERS + neg.KEPT_SIGNS)
    assert not kept & neg.CONFUSABLE
    for c in "OoDQIlijJTZzSsbGBgq/\\|()[]-_.,:;'\"!":
        assert c in neg.CONFUSABLE
    assert set(neg.STROKE_FONT) == kept  # the stroke font draws exactly the kept characters
    assert set(neg.HELD_OUT_STROKE_LETTERS + neg.HELD_OUT_STROKE_SIGNS) <= kept
    for source in _font_sample():
        assert not set(neg.font_characters(source)) & neg.CONFUSABLE


def test_crossed_digits_cross_out_the_given_digits():
    block = np.zeros((1, 28, 28), np.uint8)
    block[0, 4:24, 4:24] = 255  # a solid square: no drawn digit or crossing fills this much
    for kind in neg.CROSSINGS:
        given = neg.negative_glyphs(f"crossed:{kind}", 3, seed=0, digits=block)
        drawn = neg.negative_glyphs(f"crossed:{kind}", 3, seed=0)
        assert all(np.count_nonzero(g > 128) > 150 for g in given), kind
        assert not np.array_equal(given, drawn)
    with pytest.raises(DigitrecError):
        neg.negative_glyphs("crossed:x", 1, seed=0, digits=np.zeros((0, 28, 28), np.uint8))


def test_unknown_sources_are_refused():
    for bad in ["shapes:circle", "font:NoSuchFont", "digits"]:
        with pytest.raises(DigitrecError):
            neg.negative_glyphs(bad, 1, seed=0)


def test_mixed_glyphs_come_from_the_split_asked_for():
    glyphs, names = neg.mixed_glyphs(12, seed=0, split="held_out")
    assert glyphs.shape == (12, 28, 28) and set(names) <= set(neg.sources("held_out"))
    assert all(g.max() > 0 for g in glyphs)


def test_render_input_gives_an_image_a_user_could_upload():
    rng = np.random.default_rng(0)
    glyph = neg.negative_glyphs("shapes:heart", 1, seed=0)[0]
    for _ in range(6):
        image = neg.render_input(glyph, rng)
        assert image.dtype == np.uint8 and image.ndim in (2, 3) and min(image.shape[:2]) >= 40


def test_the_emnist_loader_turns_images_upright_and_drops_confusable_letters(tmp_path):
    images = np.zeros((4, 28, 28), np.uint8)
    images[:, 5, 2] = 255  # stored transposed: upright, this pixel is at row 2, column 5
    labels = np.array([1, 15, 2, 24], np.uint8)  # a, o (a 0), b (B: an 8), x
    write_idx(tmp_path / "images", images)
    write_idx(tmp_path / "labels", labels)
    glyphs, letters = neg.load_emnist_letters(tmp_path / "images", tmp_path / "labels")
    assert list(letters) == ["a", "x"]
    assert glyphs.shape == (2, 28, 28) and (glyphs[:, 2, 5] == 255).all() and (glyphs[:, 5, 2] == 0).all()
    write_idx(tmp_path / "bad", np.array([0, 27, 1, 1], np.uint8))
    with pytest.raises(DigitrecError):
        neg.load_emnist_letters(tmp_path / "images", tmp_path / "bad")


def test_the_folder_loader_reads_a_folder_of_labelled_pngs(tmp_path):
    for label, draw in {
        "star": lambda d: d.polygon([(50, 10), (80, 90), (10, 40), (90, 40), (20, 90)], outline=0, width=6),
        "X": lambda d: (d.line([(20, 20), (80, 80)], 0, 8), d.line([(80, 20), (20, 80)], 0, 8)),
    }.items():
        (tmp_path / label).mkdir()
        img = Image.new("L", (100, 100), 255)
        draw(ImageDraw.Draw(img))
        img.save(tmp_path / label / "a.png")
        Image.new("L", (100, 100), 255).save(tmp_path / label / "blank.png")  # skipped
    (tmp_path / "notes.txt").write_text("not an image folder")
    glyphs, labels = load_negative_folder(tmp_path)
    assert labels == ["X", "star"]
    assert glyphs.shape == (2, 28, 28) and glyphs.dtype == np.uint8 and (glyphs.max(axis=(1, 2)) > 200).all()
    (tmp_path / "7").mkdir()
    with pytest.raises(DigitrecError):
        load_negative_folder(tmp_path)
    with pytest.raises(DigitrecError):
        load_negative_folder(tmp_path / "missing")


def test_everything_works_with_no_fonts_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(neg, "FONT_DIRS", (str(tmp_path),))
    names = neg.list_sources()
    assert names and not any(s.startswith("font:") for s in names)
    assert neg.FAMILIES[0] not in {neg.family(s) for s in neg.sources("fit") + neg.sources("held_out")}
    glyphs, _ = neg.mixed_glyphs(6, seed=0)
    assert glyphs.shape == (6, 28, 28)
    with pytest.raises(DigitrecError):
        neg.negative_glyphs("font:DejaVuSans", 1, seed=0)


def test_the_split_constants_are_the_split_functions():
    assert list(neg.FIT_SOURCES) == neg.sources("fit") and len(neg.FIT_SOURCES) == len(neg.sources("fit"))
    assert list(neg.HELD_OUT_SOURCES) == neg.sources("held_out") and neg.HELD_OUT_SOURCES[0] in neg.list_sources()


def test_an_all_caps_font_draws_no_lower_case_letter_as_a_confusable_capital():
    if "font:Humor-Sans" not in neg.list_sources():
        pytest.skip("Humor Sans is not installed")
    chars = neg.font_characters("font:Humor-Sans")  # its t is a T, its d a D
    assert "A" in chars and not set("dt¶") & set(chars)
