"""Explanations: occlusion without torch, Captum's gradients on a checkpoint, the CLI, the API.

Try: `.venv/bin/pytest tests/test_explain.py -q`.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from digitrec import Recognizer, shipped_model_path
from digitrec.cli import main
from digitrec.errors import DigitrecError
from digitrec.recognition.explain import OCCLUSION, explain, occlusion, overlay, render
from test_service import ONE, SEVEN, canvas_png, number_png
from test_torch_free import SCRIPT as TORCH_FREE_SCRIPT


@pytest.fixture(scope="module")
def onnx():
    return Recognizer.load()


@pytest.fixture(scope="module")
def checkpoint():
    pytest.importorskip("torch")
    return Recognizer.load(shipped_model_path("checkpoint"))


def seven_28() -> np.ndarray:
    image = np.zeros((28, 28), np.float32)
    image[6:9, 6:22] = 1
    image[9:22, 17:20] = 1
    return image


def test_occlusion_credits_the_ink_that_makes_the_digit():
    rec = Recognizer.load()
    image = seven_28()
    (attribution,) = occlusion(rec, image[None], np.array([7]))
    assert attribution.shape == (28, 28)
    assert attribution[image > 0].mean() > 0.2  # blanking the stroke lowers the 7's score ...
    assert abs(attribution[:3, :].mean()) < 0.05  # ... blanking empty paper changes little


def test_an_explanation_gives_each_digit_its_input_attribution_and_feature_maps(onnx):
    explanation = explain(onnx, number_png())
    assert explanation.method == OCCLUSION and explanation.text == "107"
    assert len(explanation.pieces) == 3
    for piece in explanation.pieces:
        assert piece.image.shape == piece.attribution.shape == (28, 28)
        assert len(piece.top) == 3 and piece.top[0][0] == piece.digit
        sizes = [s.maps.shape for s in piece.stages]
        assert sizes == [(8, 28, 28), (8, 14, 14), (8, 7, 7)]  # the shipped network's three convolutions
        first = piece.stages[0]
        activity = [np.maximum(m, 0).mean() for m in first.maps]
        assert activity == sorted(activity, reverse=True)  # most active first
    answer = json.loads(json.dumps(explanation.to_dict()))
    assert np.array(answer["digits"][0]["attribution"]).shape == (28, 28)


def test_the_picture_shows_every_digit(onnx):
    one = render(explain(onnx, canvas_png(SEVEN)))
    three = render(explain(onnx, number_png()))
    assert three.width == one.width and three.height == 3 * one.height
    colours = overlay(seven_28(), occlusion(onnx, seven_28()[None], np.array([7]))[0])
    assert (colours[..., 0] > colours[..., 2] + 80).any()  # red where the ink raised the 7


def test_gradient_methods_from_captum_run_on_a_checkpoint(checkpoint):
    from digitrec.reports.explain import gradient_attribution

    path = shipped_model_path("checkpoint")
    for method in ("integrated-gradients", "grad-cam"):
        explanation = explain(
            checkpoint, canvas_png(SEVEN), attribute=gradient_attribution(path, method), method=method
        )
        (piece,) = explanation.pieces
        assert explanation.method == method and piece.digit == "7"
        assert piece.attribution.shape == (28, 28) and np.abs(piece.attribution).max() > 0
        if method == "grad-cam":
            assert piece.attribution.min() >= 0  # Grad-CAM keeps what raises the digit


def test_bad_inputs_get_the_same_errors_as_predict(onnx, tmp_path):
    with pytest.raises(DigitrecError, match="no digit-like ink"):
        explain(onnx, canvas_png([]))
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DigitrecError, match="not a PNG"):
        explain(onnx, tmp_path / "notes.txt")


def test_the_cli_writes_the_picture_and_json(tmp_path, capsys):
    image = tmp_path / "seven.png"
    image.write_bytes(canvas_png(SEVEN))
    out = tmp_path / "why.png"
    assert main(["explain", str(image), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "7" in printed and "attribution: occlusion" in printed
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > 400
    assert main(["explain", str(image), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["method"] == "occlusion" and answer["text"] == "7"
    assert np.array(answer["digits"][0]["stages"][0]["maps"]).shape == (8, 28, 28)


def test_the_cli_on_a_checkpoint_uses_gradients_and_refuses_them_on_onnx(tmp_path, capsys):
    pytest.importorskip("torch")
    image = tmp_path / "one.png"
    image.write_bytes(canvas_png(ONE))
    checkpoint = str(shipped_model_path("checkpoint"))
    assert main(["explain", str(image), "--model", checkpoint]) == 0
    assert "attribution: integrated-gradients" in capsys.readouterr().out
    assert main(["explain", str(image), "--model", checkpoint, "--method", "grad-cam"]) == 0
    assert "attribution: grad-cam" in capsys.readouterr().out
    assert main(["explain", str(image), "--method", "grad-cam"]) == 2
    assert "give a .safetensors checkpoint" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "missing.png")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_explaining_with_onnx_never_imports_torch():
    script = TORCH_FREE_SCRIPT.split("import numpy")[0] + (
        "from digitrec.recognition.explain import explain\n"
        "from digitrec import Recognizer\n"
        "import numpy as np\n"
        "image = np.zeros((28, 28), np.float32); image[6:9, 6:22] = 1; image[9:22, 17:20] = 1\n"
        "e = explain(Recognizer.load(), image)\n"
        "assert 'torch' not in sys.modules\n"
        "print('EXPLAINED', e.method, e.text)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "EXPLAINED occlusion" in result.stdout


def test_the_api_explains_an_upload_and_refuses_gradients_on_onnx():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from digitrec.service import Settings, create_app

    with TestClient(create_app(Settings())) as client:
        answer = client.post("/api/v1/explain", content=canvas_png(SEVEN), headers={"content-type": "image/png"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["method"] == "occlusion" and body["text"] == "7"
        assert len(body["digits"][0]["stages"]) == 3 and body["digits"][0]["target"] == "7"
        first = client.post(
            "/api/v1/explain?stages=1", content=canvas_png(SEVEN), headers={"content-type": "image/png"}
        )
        assert [s["name"] for s in first.json()["digits"][0]["stages"]] == ["conv_1"]
        number = client.post("/api/v1/explain?digits=3", files={"file": ("n.png", number_png(), "image/png")})
        assert [d["digit"] for d in number.json()["digits"]] == ["1", "0", "7"]
        refused = client.post(
            "/api/v1/explain?method=grad-cam", content=canvas_png(SEVEN), headers={"content-type": "image/png"}
        )
        assert refused.status_code == 422 and "occlusion" in refused.json()["detail"]
        buf = io.BytesIO()
        Image.new("L", (200, 200), 255).save(buf, format="PNG")
        blank = client.post("/api/v1/explain", content=buf.getvalue(), headers={"content-type": "image/png"})
        assert blank.status_code == 400 and "no digit-like ink" in blank.json()["detail"]
