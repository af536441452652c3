"""Recognising digits with the shipped ONNX model, and the CLI's help, work with torch unavailable."""

import subprocess
import sys

# Runs in a fresh interpreter: a meta-path finder refuses torch before digitrec is imported.
SCRIPT = r"""
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, BlockTorch())

import numpy as np
from digitrec.cli import main
from digitrec import Recognizer

rec = Recognizer.load()
probs = rec.predict_proba(np.zeros((3, 28, 28), np.uint8))
assert probs.shape == (3, 10), probs.shape
print("topk", rec.topk(probs, 2)[0])
try:
    main(["--help"])
except SystemExit as e:
    assert e.code == 0, e.code
assert "torch" not in sys.modules, "torch was imported"
print("TORCH-FREE OK")
"""


def test_onnx_inference_and_help_without_torch():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "TORCH-FREE OK" in result.stdout and "usage: digitrec" in result.stdout


def test_checkpoint_without_torch_is_a_clear_error():
    script = (
        SCRIPT.split("import numpy")[0]
        + r"""
from digitrec.errors import DigitrecError
from digitrec.recognition.backends import shipped_model_path
from digitrec import Recognizer
try:
    Recognizer.load(shipped_model_path("checkpoint"))
except DigitrecError as e:
    print("ERROR:", e)
"""
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "needs torch" in result.stdout and "digitrec export" in result.stdout


def test_train_without_torch_shows_its_help_and_says_how_to_install_it():
    # As on a machine without the train extra: importing torch finds no module.
    missing = SCRIPT.split("import numpy")[0].replace(
        'raise ImportError(f"{name} is blocked for this test")',
        "raise ModuleNotFoundError(f'No module named {name!r}', name=name)",
    )
    assert "ModuleNotFoundError" in missing
    script = (
        missing
        + r"""
from digitrec.cli import main
try:
    main(["train", "--help"])
except SystemExit as e:
    assert e.code == 0, e.code
print("EXIT", main(["train", "--preset", "fast", "--epochs", "1", "--out", "/nonexistent/run"]))
for command in (["evaluate", "x.safetensors"], ["calibrate", "x.safetensors"], ["export", "x.safetensors"]):
    try:
        main([command[0], "--help"])
    except SystemExit as e:
        assert e.code == 0, e.code
    print("EXIT", main(command))
"""
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: digitrec train" in result.stdout and "EXIT 2" in result.stdout
    assert "train needs torch: pip install 'digitrec[train]'" in result.stderr
    for command in ("evaluate", "calibrate", "export"):
        assert f"usage: digitrec {command}" in result.stdout
        assert f"{command} needs torch: pip install 'digitrec[train]'" in result.stderr
    assert result.stdout.count("EXIT 2") == 4 and "Traceback" not in result.stderr
