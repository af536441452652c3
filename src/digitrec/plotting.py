"""Matplotlib without a window, and PNGs written atomically; no torch, so the ONNX-only paths can plot.

Try: `digitrec robustness src/digitrec/assets/default.onnx --limit 500 --out runs/robustness` (its charts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .fileio import atomic_path


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def save_fig(fig: Any, path: Path) -> None:
    """Write `fig` to `path` as a PNG, atomically, and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    pyplot().close(fig)
