"""Preprocessing: every stage on small made-up images, and every kind of bad input.

Run: `.venv/bin/pytest tests/test_preprocessing.py -q`
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitrec.constants import DIGIT_BOX, IMAGE_SIZE
from digitrec.data import synthetic
from digitrec.errors import DigitrecError
from digitrec.image import decode as decode_module
from digitrec.image.decode import _fast_png, _reason, _spng, load_image, to_gray
from digitrec.image.inkmap import (
    EIGHT,
    MASK_FRACTION,
    WORK_PIXELS,
    InkMap,
    bounding_box,
    dilate,
    estimate_noise,
    ink_is_dark,
    ink_signal,
    label_pieces,
    normalise,
    piece_areas,
    size_factor,
    threshold_ink,
    working_factor,
)
from digitrec.image.mnist_format import (
    MASS_CENTER,
    STROKE_GAIN,
    STROKE_RANGE,
    STROKE_SCALE,
    center_by_mass,
    crop_to_ink,
    normalise_contrast,
    normalise_stroke,
    preprocess,
    stroke_ratio,
    stroke_width,
    to_mnist,
)
from digitrec.image.presence import has_digit, ink_stats, signal_stats


# ---------------------------------------------------------------------------------- helpers
def strokes(size: int = 200, width: int = 14, shape: str = "7") -> np.ndarray:
    """A white-on-black float drawing of a simple digit shape, anti-aliased."""
    big = Image.new("L", (size * 4, size * 4), 0)
    d = ImageDraw.Draw(big)
    s = size * 4
    w = width * 4
    if shape == "7":
        corners = [(0.3 * s, 0.2 * s), (0.7 * s, 0.2 * s), (0.45 * s, 0.8 * s)]
        d.line(corners, fill=255, width=w, joint="curve")
    elif shape == "0":
        d.ellipse([0.35 * s, 0.2 * s, 0.65 * s, 0.8 * s], outline=255, width=w)
    elif shape == "1":
        d.line([(0.5 * s, 0.2 * s), (0.5 * s, 0.8 * s)], fill=255, width=w)
    small = big.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255.0


def png(img: np.ndarray | Image.Image, **save) -> bytes:
    im = img if isinstance(img, Image.Image) else Image.fromarray(img)
    buf = io.BytesIO()
    im.save(buf, format=save.pop("format", "PNG"), **save)
    return buf.getvalue()


def u8(a: np.ndarray) -> np.ndarray:
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def aligned_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation over shifts of up to 1 px (a centre of mass at exactly x.5 may round
    either way)."""
    return max(corr(np.roll(a, (dy, dx), (0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    return float((a * ys).sum() / a.sum()), float((a * xs).sum() / a.sum())


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming width x height, with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def rng_digits() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [synthetic.draw_digit(d, rng) for d in range(10)]


# ---------------------------------------------------------------------------------- format
def test_output_is_mnist_format(rng_digits):
    out = preprocess(strokes())
    assert out.shape == (IMAGE_SIZE, IMAGE_SIZE) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0, abs=0.01)
    assert (out[0] == 0).all() and (out[:, 0] == 0).all()  # background exactly 0
    ys, xs = np.nonzero(out)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 == DIGIT_BOX


def test_mnist_like_input_almost_unchanged(rng_digits):
    for d in rng_digits:
        assert aligned_corr(preprocess(d), d.astype(np.float32)) > 0.95


def test_centre_of_mass_at_centre(rng_digits):
    for img in [strokes(shape=s) for s in "701"] + list(rng_digits):
        cy, cx = centre_of_mass(preprocess(img))
        # Integer shifts (no resampling blur): at most half a pixel off, exactly .5 on a tie.
        assert abs(cy - MASS_CENTER[0]) <= 0.5 + 1e-3 and abs(cx - MASS_CENTER[1]) <= 0.5 + 1e-3


def test_crop_fits_box_keeping_aspect():
    tall = np.zeros((300, 300), np.float32)
    tall[50:250, 140:180] = 1.0  # 200 x 40: aspect 5
    out = preprocess(tall)
    ys, xs = np.nonzero(out > 0.5)
    h, w = np.ptp(ys) + 1, np.ptp(xs) + 1
    assert h == DIGIT_BOX and 3 <= w <= 5
    wide = np.zeros((300, 300), np.float32)
    wide[100:160, 30:270] = 1.0  # a blob as wide as it gets: the long side becomes 20
    ys, xs = np.nonzero(preprocess(wide) > 0.5)
    assert np.ptp(xs) + 1 == DIGIT_BOX and np.ptp(ys) + 1 <= 6


def test_debug_stores_every_stage_in_order():
    debug: dict[str, np.ndarray] = {}
    preprocess(strokes(), debug=debug)
    names = list(debug)
    assert names[0] == "0_input" and names[-1] == "8_centered"
    assert names == sorted(names)
    assert all(v.ndim == 2 for v in debug.values())


# ---------------------------------------------------------------------------------- polarity
def test_polarity_white_on_black_equals_black_on_white():
    ink = strokes(shape="7")
    a = preprocess(ink)
    b = preprocess(1.0 - ink)
    assert np.abs(a - b).max() < 0.02


def test_polarity_on_grey_paper_photo():
    ink = strokes(shape="0")
    photo = 0.75 - 0.6 * ink  # grey paper, dark ink
    assert ink_is_dark(photo, 0.75, 0.0)
    assert corr(preprocess(photo), preprocess(ink)) > 0.98


def test_polarity_with_a_shadow_and_a_small_thin_digit():
    yy, xx = np.mgrid[0:220, 0:300]
    light = 0.55 + 0.3 / (1 + np.exp(-(yy - 100) / 12.0))  # a soft shadow's edge across the page
    img = Image.fromarray(np.zeros((220, 300), np.uint8))
    ImageDraw.Draw(img).line([(200, 50), (218, 85)], fill=255, width=3)  # a small thin "1"
    ink = np.asarray(img, np.float32) / 255
    photo = (light * (1 - 0.8 * ink)).astype(np.float32)
    assert has_digit(photo)
    inkmap = normalise(photo)
    ys, xs = np.nonzero(inkmap.mask)
    k = inkmap.scale  # mask pixels are working pixels of k x k input pixels
    assert 45 <= ys.min() * k and (ys.max() + 1) * k <= 92 and 195 <= xs.min() * k and (xs.max() + 1) * k <= 224


# ---------------------------------------------------------------------------------- alpha, modes
def test_black_strokes_on_transparent_become_dark_on_white():
    ink = u8(strokes())
    rgba = np.dstack([np.zeros((200, 200, 3), np.uint8), ink])  # black everywhere, drawing in alpha
    grey = load_image(png(rgba))
    assert grey[0, 0] == pytest.approx(1.0)  # transparent -> white paper
    assert grey[ink > 200].mean() < 0.1  # strokes stay dark
    assert corr(preprocess(grey), preprocess(strokes())) > 0.99


def test_white_strokes_on_transparent_become_white_on_black():
    ink = u8(strokes())
    rgba = np.dstack([np.full((200, 200, 3), 255, np.uint8), ink])
    grey = load_image(png(rgba))
    assert grey[0, 0] == pytest.approx(0.0)
    assert grey[ink > 200].mean() > 0.9
    assert corr(preprocess(grey), preprocess(strokes())) > 0.99


def test_rgba_array_is_composited_like_a_file():
    ink = u8(strokes())
    rgba = np.dstack([np.zeros((200, 200, 3), np.uint8), ink])
    assert np.allclose(to_gray(rgba), load_image(png(rgba)), atol=0.01)


def test_16bit_png_scaled_to_unit_range():
    ink = (strokes() * 65535).astype(np.uint16)
    data = png(Image.fromarray(ink))
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    grey = load_image(data)
    assert grey.max() == pytest.approx(1.0, abs=1e-3) and grey.min() == 0.0
    assert np.allclose(grey, strokes(), atol=1e-3)


def test_palette_with_transparency():
    img = Image.new("P", (100, 100), 0)
    img.putpalette([255, 0, 255] + [0, 0, 0] + [0] * 762)  # 0: magenta (transparent), 1: black
    ImageDraw.Draw(img).line([(50, 10), (50, 90)], fill=1, width=8)
    grey = load_image(png(img, transparency=0))
    assert grey[5, 5] == pytest.approx(1.0) and grey[50, 50] < 0.05
    assert has_digit(grey)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_fast_png_decoder_gives_pillows_pixels(mode, monkeypatch):
    rng = np.random.default_rng(0)
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    data = png(Image.fromarray(rng.integers(0, 256, (37, 53, *channels), dtype=np.uint8), mode))
    assert _fast_png(Image.open(io.BytesIO(data))) == (_spng() is not None)
    fast = load_image(data)
    monkeypatch.setattr(decode_module, "_spng", lambda: None)  # as where pyspng has no wheel
    assert not _fast_png(Image.open(io.BytesIO(data)))
    np.testing.assert_array_equal(fast, load_image(data))


def test_truncated_png_is_a_clear_error_on_either_decoder():
    data = png(u8(strokes()))[:-200]
    with pytest.raises(DigitrecError, match="damaged"):
        load_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "BMP", "TIFF", "WEBP", "GIF"])
def test_common_formats_decode(fmt):
    rgb = np.repeat(u8(1.0 - strokes())[..., None], 3, axis=2)
    grey = load_image(synthetic.encode(rgb, fmt))
    assert grey.shape == (200, 200) and grey.dtype == np.float32
    assert corr(preprocess(grey), preprocess(strokes())) > 0.95


def test_exif_orientation_applied():
    img = Image.fromarray(np.zeros((40, 100), np.uint8))  # 100 wide, 40 tall
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    grey = load_image(png(img, format="JPEG", exif=exif))
    assert grey.shape == (100, 40)


def test_load_from_path(tmp_path: Path):
    path = tmp_path / "digit.png"
    path.write_bytes(png(u8(strokes())))
    assert load_image(path).shape == (200, 200)
    assert load_image(str(path)).shape == (200, 200)


# ---------------------------------------------------------------------------------- stages
def test_lighting_gradient_is_flattened():
    ink = strokes(shape="0")
    yy, xx = np.mgrid[0:200, 0:200]
    light = 0.35 + 0.6 * xx / 199  # dark on the left, bright on the right
    photo = light * (0.92 - 0.8 * ink)
    inkmap = normalise(photo)
    away = ~dilate(ink > 0.05, 6)
    assert inkmap.ink[away].max() == 0.0  # nothing but the digit is ink
    assert corr(preprocess(photo), preprocess(ink)) > 0.97
    assert not has_digit(light * 0.92)  # the same sheet, empty


def test_specks_removed():
    ink = strokes(shape="7")
    specked = ink.copy()
    for y, x in [(20, 20), (180, 30), (170, 180)]:
        specked[y : y + 3, x : x + 3] = 1.0
    inkmap = normalise(specked)
    assert not inkmap.mask[15:30, 15:30].any()
    assert corr(preprocess(specked), preprocess(ink)) > 0.99


def test_noise_is_removed():
    rng = np.random.default_rng(1)
    noisy = np.clip(0.9 - 0.7 * strokes() + rng.normal(0, 0.05, (200, 200)), 0, 1)
    assert estimate_noise(noisy) == pytest.approx(0.05, rel=0.3)
    assert corr(preprocess(noisy), preprocess(strokes())) > 0.95


def test_thin_pen_is_thickened_and_thick_pen_thinned():
    thin = strokes(width=2, shape="0")
    thick = strokes(width=40, shape="7")
    normal = strokes(width=14, shape="0")
    low, high = STROKE_RANGE
    for img in (thin, thick):
        inkmap = normalise(img)
        crop = crop_to_ink(inkmap.ink, inkmap.mask)
        before = stroke_ratio(crop)
        assert not low <= before <= high
        after = stroke_ratio(normalise_stroke(crop))
        assert low <= after <= high  # brought into MNIST's range
    # A very thin pen gives MNIST-like strokes, not faint hairlines: like a pen at the thin end
    # of MNIST's range, as far as it is thickened.
    out_thin, out_fine = preprocess(thin), preprocess(strokes(width=8, shape="0"))
    assert out_thin.max() > 0.95
    assert 0.7 < out_thin.sum() / out_fine.sum() < 1.4
    assert aligned_corr(out_thin, out_fine) > 0.8
    # A pen within MNIST's range is left as it is.
    inkmap = normalise(normal)
    crop = crop_to_ink(inkmap.ink, inkmap.mask)
    assert low <= stroke_ratio(crop) <= high and normalise_stroke(crop) is crop


def test_pen_just_outside_the_range_changes_little():
    # Brought to the range's edge, not to a typical pen: an MNIST-like digit keeps its look.
    for width, shape in ((8, "0"), (36, "7")):
        img = strokes(width=width, shape=shape)
        inkmap = normalise(img)
        crop = crop_to_ink(inkmap.ink, inkmap.mask)
        before, after = stroke_ratio(crop), stroke_ratio(normalise_stroke(crop))
        low, high = STROKE_RANGE
        assert not low <= before <= high
        assert low <= after <= high
        # At the edge it crossed, within about one step of the disk (1 px at STROKE_SCALE).
        step = 2 * STROKE_GAIN / STROKE_SCALE
        edge = low if before < low else high
        assert abs(after - edge) < 1.3 * step


def test_center_by_mass_and_contrast():
    d = np.zeros((20, 10), np.float32)
    d[:, 6:] = 0.5
    out = center_by_mass(normalise_contrast(d))
    assert out.max() == pytest.approx(1.0)
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 + 1e-3 and abs(cx - 14) <= 0.5 + 1e-3


def test_to_mnist_without_mask_and_empty():
    assert to_mnist(strokes()).sum() > 0
    assert to_mnist(np.zeros((50, 50), np.float32)).sum() == 0


# ---------------------------------------------------------------------------------- no digit
def test_blank_gives_zeros_and_no_digit():
    for img in [np.ones((100, 100)), np.zeros((50, 80)), np.full((30, 30), 0.5)]:
        assert preprocess(img).sum() == 0
        assert not has_digit(img)


def test_noise_and_specks_are_not_digits():
    rng = np.random.default_rng(2)
    assert not has_digit(rng.random((200, 200)))
    paper = np.full((300, 300), 0.9, np.float32)
    paper[100:103, 200:203] = 0.1
    assert not has_digit(paper)
    dot = np.full((280, 280), 1.0, np.float32)
    yy, xx = np.ogrid[0:280, 0:280]
    dot[(yy - 140) ** 2 + (xx - 140) ** 2 < 12**2] = 0.0  # a pen tap: round, not a stroke
    assert not has_digit(dot)


def test_real_digits_are_digits(rng_digits):
    assert all(has_digit(d) for d in rng_digits)
    thin_one = np.ones((280, 280), np.float32)
    thin_one[60:220, 139:141] = 0.0  # a 2-px "1" on a big canvas
    assert has_digit(thin_one)
    assert has_digit(1.0 - strokes(shape="1", width=3))


# ---------------------------------------------------------------------------------- shared work
def test_normalise_is_ink_signal_then_threshold_ink(rng_digits):
    specked = strokes(shape="7")
    specked[20:23, 20:23] = 1.0
    for img in [specked, 0.9 - 0.7 * strokes(shape="0"), rng_digits[3]]:
        signal = ink_signal(img)
        for kw in [{}, {"speck_fraction": 0.0, "hysteresis": MASK_FRACTION}]:
            a, b = normalise(img, **kw), threshold_ink(signal, **kw)
            assert np.array_equal(a.ink, b.ink) and np.array_equal(a.mask, b.mask)
            assert (a.scale, a.level, a.noise) == (b.scale, b.level, b.noise)


def test_signal_stats_and_stats_from_labels_match_labelling_the_mask(rng_digits):
    rng = np.random.default_rng(3)
    specked = strokes(shape="7")
    specked[20:23, 20:23] = 1.0  # dropped as a speck: its label must not count
    for img in [specked, rng.random((120, 120)), np.ones((50, 50)), *rng_digits[:4]]:
        inkmap = normalise(img)
        unlabelled = InkMap(inkmap.ink, inkmap.mask, inkmap.scale, inkmap.level, inkmap.noise)
        assert signal_stats(ink_signal(img)) == ink_stats(inkmap) == ink_stats(unlabelled)


def test_label_pieces_and_piece_areas_match_scipy():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(4)
    for shape, density in [((40, 60), 0.3), ((30, 30), 0.05), ((25, 35), 0.0), ((20, 20), 1.0)]:
        mask = rng.random(shape) < density
        mask[:5] = False  # the bounding box is smaller than the image
        labels, n, box = label_pieces(mask)
        expected, expected_n = ndi.label(mask, structure=EIGHT)
        assert n == expected_n and np.array_equal(labels, expected)
        assert box == bounding_box(mask)
        areas = np.bincount(expected.ravel(), minlength=n + 1)
        areas[0] = 0
        assert np.array_equal(piece_areas(labels), areas)
        assert np.array_equal(piece_areas(labels, n), areas)


def test_stroke_width_matches_a_minimum_filter_erosion():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(5)
    for shape in [(30, 40), (3, 3), (2, 9), (1, 1)]:
        mask = rng.random(shape) < 0.7
        inner = ndi.minimum_filter(mask.view(np.uint8), size=3, mode="constant", cval=0)
        area = int(mask.sum())
        assert stroke_width(mask) == area / max((area - int(inner.sum())) / 2.0, 1.0)
    assert stroke_width(np.zeros((5, 5), bool)) == 0.0


def test_size_factor_is_working_factors_floor():
    rng = np.random.default_rng(6)
    noisy = rng.random((900, 700)).astype(np.float32)
    for max_pixels in (WORK_PIXELS, 100_000, 2_000_000):
        k = size_factor(noisy.shape, max_pixels)
        assert working_factor(noisy, 0.1, max_pixels) == k
        assert noisy.size / k**2 <= max_pixels < noisy.size / max(k - 1, 0.5) ** 2


# ---------------------------------------------------------------------------------- bad input
def raises_clearly(source, match: str, name: str = "upload.png") -> None:
    with pytest.raises(DigitrecError, match=match) as info:
        load_image(source, name=name)
    assert name in str(info.value)


def test_not_an_image():
    raises_clearly(b"hello, this is text", "cannot read")
    with pytest.raises(DigitrecError) as info:
        load_image(b"hello, this is text", name="image.png")
    # A clean sentence: no Pillow object repr ("<_io.BytesIO object at 0x...>").
    assert str(info.value) == (
        "image.png: cannot read: not a PNG, JPEG, BMP, TIFF, WebP or GIF image (cannot identify the format)"
    )
    assert "0x" not in str(info.value) and "BytesIO" not in str(info.value)


def test_decoder_reasons_drop_object_reprs():
    assert _reason(OSError("cannot identify image file <_io.BytesIO object at 0x7f3a2b1c>")) == (
        "cannot identify image file"
    )
    assert _reason(ValueError("")) == "ValueError"


def test_empty_bytes():
    raises_clearly(b"", "empty")


def test_truncated_png():
    data = png(u8(np.random.default_rng(0).random((200, 200))))
    raises_clearly(data[: len(data) // 2], "cannot read this image, the file is damaged")


def test_zero_size_image():
    raises_clearly(png_header_only(0, 0), "no content|cannot read")


def test_decompression_bomb_refused_from_header():
    raises_clearly(png_header_only(20000, 20000), "too many pixels")  # Pillow's own bomb check
    raises_clearly(png_header_only(8000, 8000), "too many pixels")  # our tighter cap


def test_absurd_aspect_ratio():
    raises_clearly(png_header_only(50000, 50), "too thin")


def test_missing_file_and_folder(tmp_path: Path):
    with pytest.raises(DigitrecError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(DigitrecError, match="folder"):
        load_image(tmp_path)


def test_bad_arrays():
    for bad in [np.zeros((0, 0)), np.zeros((4, 4, 5)), np.zeros(10), np.array([["a"]])]:
        with pytest.raises(DigitrecError):
            preprocess(bad)


# ---------------------------------------------------------------------------------- real MNIST
@pytest.mark.skipif(not os.environ.get("DIGITREC_DATA"), reason="DIGITREC_DATA not set")
def test_real_mnist_digits_pass_through():
    path = Path(os.environ["DIGITREC_DATA"]) / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        pytest.skip(f"{path} missing")
    with gzip.open(path) as f:
        images = np.frombuffer(f.read(16 + 200 * 784), np.uint8, offset=16).reshape(-1, 28, 28)
    cs = [aligned_corr(preprocess(im), im.astype(np.float32)) for im in images]
    assert np.median(cs) > 0.99 and np.percentile(cs, 10) > 0.99
    # Even the thinnest and thickest MNIST pens (adjusted into the range) keep their look.
    assert min(cs) > 0.85


def test_a_float_image_with_nan_or_infinite_pixels_is_refused_not_read_as_ink():
    import io

    from PIL import Image

    from digitrec import Recognizer
    from digitrec.errors import DigitrecError
    from digitrec.image.decode import load_image

    for bad in (np.nan, np.inf):
        pixels = np.ones((100, 100), np.float32)
        pixels[30:70, 45:55] = bad  # where a "1" would be
        buf = io.BytesIO()
        Image.fromarray(pixels, mode="F").save(buf, format="TIFF")
        with pytest.raises(DigitrecError, match="not numbers"):
            load_image(buf.getvalue(), name="nan.tiff")
        with pytest.raises(DigitrecError, match="not numbers"):
            Recognizer.load().recognize(pixels)
