"""The Recognizer: both backends agree, inputs in either format, batching, model validation with
clear errors, the shipped model; (slow) the shipped model's accuracy on real MNIST."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from digitrec.errors import DigitrecError
from digitrec.probabilities import topk
from digitrec.recognition.backends import shipped_model_path
from digitrec.recognition.constraints import Constraints
from digitrec.recognition.recognizer import BATCH_SIZE, NOT_DIGIT_THRESHOLD, Recognizer
from helpers import bar_digits

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper  # noqa: E402

from digitrec.data import synthetic
from digitrec.probabilities import piece_probabilities, softmax
from digitrec.recognition.backends import SHIPPED

needs_mnist = pytest.mark.skipif(not os.environ.get("DIGITREC_DATA"), reason="set DIGITREC_DATA to a folder with MNIST")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny untrained checkpoint and its float32 ONNX export."""
    from digitrec.export import export_checkpoint
    from digitrec.nn.checkpoint import save_checkpoint
    from digitrec.nn.models.registry import create_model

    folder = tmp_path_factory.mktemp("inference")
    torch.manual_seed(0)
    ckpt = folder / "model.safetensors"
    save_checkpoint(ckpt, create_model("default", widths=(8, 16)), metrics={"test_accuracy": 0.25})
    export_checkpoint(ckpt, test_images=bar_digits(50).images)
    return ckpt, folder / "model.onnx"


def foreign_onnx(path: Path, input_shape: list, output_width: int = 10, metadata: dict | None = None) -> Path:
    """A minimal non-digitrec ONNX model: flatten, then one matrix product."""
    features = int(np.prod(input_shape[1:]))
    weight = helper.make_tensor(
        "w",
        TensorProto.FLOAT,
        [features, output_width],
        np.random.default_rng(0).normal(size=features * output_width).astype(np.float32),
    )
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [input_shape[0], output_width])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


def test_backends_agree(models):
    ckpt, onnx_path = models
    images = bar_digits(100, seed=3).images
    by_torch, by_onnx = Recognizer.load(ckpt), Recognizer.load(onnx_path)
    assert (by_torch.info["backend"], by_onnx.info["backend"]) == ("torch", "onnxruntime")
    p_torch, p_onnx = by_torch.predict_proba(images), by_onnx.predict_proba(images)
    assert p_onnx.dtype == np.float32 and p_onnx.shape == (100, 10)
    assert np.abs(p_torch - p_onnx).max() <= 1e-4
    assert np.allclose(p_onnx.sum(1), 1, atol=1e-5)


def test_uint8_and_float_inputs_agree(models):
    rec = Recognizer.load(models[1])
    images = bar_digits(20, seed=4).images
    as_uint8 = rec.predict_proba(images)
    assert np.abs(as_uint8 - rec.predict_proba(images.astype(np.float32) / 255)).max() <= 1e-6
    assert np.abs(as_uint8[:1] - rec.predict_proba(images[0])).max() <= 1e-6  # one (28, 28) image


def test_batches_larger_than_the_internal_batch(models):
    ckpt, onnx_path = models
    images = bar_digits(2 * BATCH_SIZE + 3, seed=5).images
    probs = Recognizer.load(onnx_path, threads=1).predict_proba(images)
    assert probs.shape == (len(images), 10)
    expected = Recognizer.load(ckpt).predict_proba(images[-3:])  # the last, partial batch
    assert np.abs(probs[-3:] - expected).max() <= 1e-4
    assert Recognizer.load(onnx_path).predict_proba(images[:0]).shape == (0, 10)


def test_topk_orders_by_probability():
    probs = np.array([[0.1, 0.6, 0.3] + [0.0] * 7], np.float32)
    assert topk(probs, 2) == [[("1", pytest.approx(0.6)), ("2", pytest.approx(0.3))]]
    assert len(topk(probs, 99)[0]) == 10


def test_info_describes_the_model(models):
    info = Recognizer.load(models[1]).info
    assert info["architecture"] == "default" and info["precision"] == "float32"
    assert info["file_bytes"] == models[1].stat().st_size and info["format_version"] == 1
    assert Recognizer.load(models[0]).info["test_accuracy"] == 0.25  # a checkpoint: training's figure


def test_foreign_onnx_without_metadata_is_accepted(tmp_path):
    foreign = foreign_onnx(tmp_path / "f.onnx", ["N", 1, 28, 28], metadata={"normalization": "theirs", "author": "x"})
    rec = Recognizer.load(foreign)
    assert rec.info["architecture"].startswith("unknown") and not rec.info["normalization"]["from_metadata"]
    assert np.allclose(rec.predict_proba(bar_digits(3).images).sum(1), 1, atol=1e-5)


def test_fixed_batch_onnx_is_padded(tmp_path):
    rec = Recognizer.load(foreign_onnx(tmp_path / "f.onnx", [4, 1, 28, 28]))
    images = bar_digits(10).images
    probs = rec.predict_proba(images)
    assert probs.shape == (10, 10)
    assert np.abs(probs[8:] - rec.predict_proba(images[8:])).max() <= 1e-6


def test_onnx_with_a_not_a_digit_output_gives_digit_probabilities(tmp_path):
    rec = Recognizer.load(foreign_onnx(tmp_path / "f.onnx", ["N", 1, 28, 28], output_width=11))
    logits = rec.predict_logits(bar_digits(5).images)
    probs = rec.predict_proba(bar_digits(5).images)
    assert logits.shape == (5, 11) and probs.shape == (5, 10)
    assert np.allclose(probs, softmax(logits[:, :10]), atol=1e-6)  # the digits' own softmax
    pieces = piece_probabilities(logits)  # what choosing how to cut a number uses
    assert np.allclose(pieces.sum(1), 1 - softmax(logits)[:, 10], atol=1e-5)


def test_each_digit_says_how_likely_it_is_not_one_digit(models):

    rng = np.random.default_rng(4)
    number, _ = synthetic.render_number([synthetic.draw_digit(d, rng) for d in (3, 0, 7)], rng, kind="scan")
    shipped = Recognizer.load().recognize(number)
    assert shipped.text == "307"
    assert all(0 <= d.not_one_digit < 0.5 for d in shipped.digits)  # three whole digits
    assert all(d.to_dict()["not_one_digit"] == round(d.not_one_digit, 6) for d in shipped.digits)
    ten_outputs = Recognizer.load(models[1]).recognize(number)  # a model without that output
    assert all(d.not_one_digit is None and d.to_dict()["not_one_digit"] is None for d in ten_outputs.digits)
    # The shipped model says how likely each piece is no digit at all; a ten-output model cannot.
    assert shipped.reason is None and all(d.digit != "?" for d in shipped.digits)
    assert all(d.not_digit is not None and d.not_digit < NOT_DIGIT_THRESHOLD for d in shipped.digits)
    assert ten_outputs.reason in (None, "low confidence")  # the tiny test model may be unsure
    assert all(d.digit != "?" and d.not_digit is None and d.to_dict()["not_digit"] is None for d in ten_outputs.digits)


@pytest.mark.parametrize(
    "shape, width, found",
    [
        (["N", 3, 32, 32], 10, "['N', 3, 32, 32]"),
        (["N", 1, 28, 28], 7, "['N', 7]"),
    ],
)
def test_wrong_shape_onnx(tmp_path, shape, width, found):
    path = foreign_onnx(tmp_path / "wrong.onnx", shape, width)
    with pytest.raises(DigitrecError) as e:
        Recognizer.load(path)
    assert str(path) in str(e.value) and found in str(e.value)


@pytest.mark.parametrize(
    "name, content", [("garbage.onnx", b"not a model at all"), ("garbage.bin", b"\x08" * 100), ("empty.onnx", b"")]
)
def test_garbage_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DigitrecError, match="not a digitrec checkpoint or a valid ONNX model") as e:
        Recognizer.load(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(DigitrecError, match="no such model file"):
        Recognizer.load(tmp_path / "nope.onnx")


def test_newer_checkpoint_format(models, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(models[0]), framework="numpy") as f:
        meta = json.loads(f.metadata()["digitrec"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    path = tmp_path / "future.safetensors"
    save_file(tensors, str(path), metadata={"digitrec": json.dumps(meta | {"format_version": 99})})
    with pytest.raises(DigitrecError, match="version 99 is newer"):
        Recognizer.load(path)


def test_newer_onnx_format(models, tmp_path):
    model = onnx.load(str(models[1]))
    for prop in model.metadata_props:
        if prop.key == "digitrec_format_version":
            prop.value = "99"
    path = tmp_path / "future.onnx"
    onnx.save(model, str(path))
    with pytest.raises(DigitrecError, match="version 99 is newer") as e:
        Recognizer.load(path)
    assert str(path) in str(e.value)


def test_bad_image_arrays(models):
    rec = Recognizer.load(models[1])
    with pytest.raises(DigitrecError, match="must be"):
        rec.predict_proba(np.zeros((2, 32, 32), np.float32))
    with pytest.raises(DigitrecError, match="uint8"):
        rec.predict_proba(np.zeros((2, 28, 28), np.int64))


@pytest.mark.parametrize("kind, backend", [("onnx", "onnxruntime"), ("int8", "onnxruntime"), ("checkpoint", "torch")])
def test_shipped_models_load(kind, backend):
    rec = Recognizer.load(shipped_model_path(kind))
    assert rec.info["backend"] == backend and rec.info["architecture"] == "default"
    assert rec.info["test_accuracy"] > 0.99
    assert rec.predict_proba(bar_digits(5).images).shape == (5, 10)


def test_default_is_the_shipped_float_onnx():
    rec = Recognizer.load()
    assert Path(rec.info["path"]) == shipped_model_path("onnx") and rec.info["precision"] == "float32"
    with pytest.raises(DigitrecError, match="unknown shipped model kind"):
        shipped_model_path("fp16")


def test_shipped_models_fit_in_a_megabyte():
    assert sum(shipped_model_path(k).stat().st_size for k in SHIPPED) < 2**20


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["onnx", "int8"])
def test_shipped_model_reaches_its_recorded_accuracy(kind):
    from digitrec.data.mnist import load_mnist

    test = load_mnist("test", download=False, progress=False)
    rec = Recognizer.load(shipped_model_path(kind))
    accuracy = float((rec.predict_proba(test.images).argmax(1) == test.labels).mean())
    assert abs(accuracy - rec.info["test_accuracy"]) <= 0.0005  # 0.05 percentage points


def test_a_pil_image_is_read_as_its_file_is():
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(image).line([(80, 55), (200, 55), (120, 235)], fill="black", width=20)
    png = io.BytesIO()
    image.save(png, format="PNG")
    recognizer = Recognizer.load()
    from_file = recognizer.recognize(png.getvalue())
    from_pil = recognizer.recognize(image)
    assert from_pil.text == from_file.text == "7" and from_pil.path is None
    assert from_pil.digits[0].probabilities == from_file.digits[0].probabilities


@pytest.mark.parametrize("size", [(2000, 400), (8000, 400), (10000, 1000)])
def test_blank_paper_around_a_number_does_not_decide_whether_it_is_read(size):
    from PIL import Image, ImageDraw, ImageFont

    font_path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not font_path.exists():
        pytest.skip("needs fonts-dejavu-core")
    page = Image.new("L", size, 255)
    top = (size[1] - 300) // 2
    ImageDraw.Draw(page).text((100, top), "3141592653", font=ImageFont.truetype(str(font_path), 250), fill=0)
    result = Recognizer.load().recognize(np.asarray(page))
    assert result.text == "3141592653", (size, result.reason)
    x0, y0, _, y1 = result.digits[0].box  # in the page's pixels, wherever the ink was read
    assert 100 <= x0 < 200 and top < y0 < y1 < top + 330
    constrained = Recognizer.load().recognize(np.asarray(page), constraints=Constraints(pattern=r"31\d{8}"))
    assert constrained.text == "3141592653" and constrained.digits[0].box == result.digits[0].box


def _flip(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


def _readings(path: Path, images: np.ndarray) -> tuple[list[str], np.ndarray, str]:
    rec = Recognizer.load(path)
    probs = rec.predict_proba(images)
    strip = np.hstack([np.zeros((28, 8), np.uint8), *images[:2], np.zeros((28, 8), np.uint8)])
    return [rec.labels[i] for i in probs.argmax(1)], probs, rec.recognize(strip).text


def test_each_seeded_bit_flip_of_the_shipped_model_is_refused_or_changes_nothing(tmp_path):
    data = shipped_model_path("onnx").read_bytes()
    rng = np.random.default_rng(0)
    images = np.stack([synthetic.draw_digit(d, rng) for d in (4, 7, 3)])
    path = tmp_path / "flipped.onnx"
    path.write_bytes(data)
    labels, probs, text = _readings(path, images)
    assert text == "47"
    for bit in np.random.default_rng(0).integers(0, 8 * len(data), 100):
        path.write_bytes(_flip(data, int(bit)))
        try:
            got = _readings(path, images)
        except DigitrecError:
            continue  # refused, in one line: the only other allowed outcome
        assert got[0] == labels and np.array_equal(got[1], probs) and got[2] == text, f"bit {bit} changed a reading"


def test_a_model_digitrec_exports_carries_its_digest_and_a_flipped_label_is_refused_in_one_line(models, tmp_path):
    from digitrec.metadata import ONNX_DIGEST_BEFORE

    data = models[1].read_bytes()
    assert data.count(ONNX_DIGEST_BEFORE) == 1 and ONNX_DIGEST_BEFORE + b"0" * 64 not in data
    where = data.index(b'["0", "1"')
    path = tmp_path / "flipped.onnx"
    path.write_bytes(_flip(data, 8 * where + 3))  # '[' becomes 'S': the labels would be a string
    with pytest.raises(DigitrecError, match="damaged .its SHA-256 does not match.; get a good copy") as e:
        Recognizer.load(path)
    assert "\n" not in str(e.value)


def test_a_digitrec_model_without_a_digest_is_still_read_but_its_properties_strictly(models, tmp_path):
    model = onnx.load(str(models[1]))
    for prop in model.metadata_props:
        if prop.key == "labels":
            prop.value = '",1"'  # a label list that parses as a string
    kept = [p for p in model.metadata_props if p.key != "sha256"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    path = tmp_path / "old.onnx"
    onnx.save(model, str(path))
    with pytest.raises(DigitrecError, match="bad metadata: labels is ',1', not a list") as e:
        Recognizer.load(path)
    assert "\n" not in str(e.value)
    for prop in model.metadata_props:
        if prop.key == "labels":
            prop.value = json.dumps([str(d) for d in range(10)])
    onnx.save(model, str(path))
    assert Recognizer.load(path).labels == tuple(str(d) for d in range(10))  # as written before digests


def test_a_file_of_several_frames_is_read_from_its_first_and_the_result_says_so(tmp_path, capsys):
    import io

    from PIL import Image, ImageDraw

    from digitrec.cli import main

    frames = []
    for stroke in ([(80, 55), (200, 55), (120, 235)], [(140, 45), (140, 235)]):  # a 7, then a 1
        frame = Image.new("L", (280, 280), 255)
        ImageDraw.Draw(frame).line(stroke, fill=0, width=20)
        frames.append(frame)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    result = Recognizer.load().recognize(buf.getvalue())
    assert result.text == "7" and result.notes == ["only the first of its 2 frames was read"]
    assert (
        result.to_dict()["notes"] == result.notes
        and "notes" not in Recognizer.load().recognize(np.asarray(frames[0])).to_dict()
    )
    gif = tmp_path / "two.gif"
    gif.write_bytes(buf.getvalue())
    assert main(["predict", str(gif)]) == 0
    assert "(note: only the first of its 2 frames was read)" in capsys.readouterr().out
