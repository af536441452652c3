"""digitrec: handwritten-digit recognition.

Try: `python -c "from digitrec import Recognizer; print(Recognizer.load().recognize('digit.png').text)"`,
or `digitrec --help`.

The names below are the public API. They load on first use, so `import digitrec` stays cheap and
never imports torch, onnxruntime or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .errors import DigitrecError, InputTooLargeError
    from .recognition.backends import shipped_model_path
    from .recognition.constraints import ConstraintError, Constraints
    from .recognition.profile import Profile
    from .recognition.recognizer import Recognizer
    from .recognition.results import DigitResult, Recognition
    from .store.profiles import ProfileStore

# name -> the module that defines it
_PUBLIC = {
    "Recognizer": "digitrec.recognition.recognizer",
    "Recognition": "digitrec.recognition.results",
    "DigitResult": "digitrec.recognition.results",
    "shipped_model_path": "digitrec.recognition.backends",
    "Constraints": "digitrec.recognition.constraints",
    "ConstraintError": "digitrec.recognition.constraints",
    "Profile": "digitrec.recognition.profile",
    "ProfileStore": "digitrec.store.profiles",
    "DigitrecError": "digitrec.errors",
    "InputTooLargeError": "digitrec.errors",
}

__all__ = [
    "ConstraintError",
    "Constraints",
    "DigitResult",
    "DigitrecError",
    "InputTooLargeError",
    "Profile",
    "ProfileStore",
    "Recognition",
    "Recognizer",
    "__version__",
    "shipped_model_path",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'digitrec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
