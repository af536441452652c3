"""The public API: what `from digitrec import ...` gives, and that importing it stays cheap."""

import subprocess
import sys

import digitrec


def test_every_public_name_imports_from_the_package_root():
    from digitrec import DigitrecError, DigitResult, InputTooLargeError, Recognition, Recognizer, shipped_model_path

    assert issubclass(InputTooLargeError, DigitrecError)
    assert callable(Recognizer.load) and callable(shipped_model_path)
    assert {Recognition.__name__, DigitResult.__name__} == {"Recognition", "DigitResult"}
    for name in digitrec.__all__:
        assert getattr(digitrec, name) is not None


def test_an_unknown_name_is_an_attribute_error():
    try:
        digitrec.Recogniser  # noqa: B018 - the misspelling is the point
    except AttributeError as e:
        assert "Recogniser" in str(e)
    else:
        raise AssertionError("digitrec.Recogniser should not exist")


def test_importing_the_package_imports_no_model_runtime():
    code = "import sys, digitrec; print(sorted(m for m in ('torch', 'onnxruntime', 'matplotlib') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_version_is_written_once():
    from digitrec.version import __version__

    assert digitrec.__version__ == __version__
