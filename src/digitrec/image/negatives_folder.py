"""A folder of labelled images that are not digits -> MNIST-format glyphs, for the "not a digit" output.

Try: `python -c "from digitrec.image.negatives_folder import load_negative_folder as f; print(f('negatives')[0].shape)"`

The folder holds one subfolder per label (its name: "A", "star", "scribble" ...), each with
images of that kind of ink, in any format `load_image` reads; each is brought to MNIST's format
by the same preprocessing a user's upload gets. Generated negatives: data/negatives.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..constants import IMAGE_SIZE, LABELS
from ..errors import DigitrecError
from .decode import IMAGE_SUFFIXES, load_image, to_uint8
from .mnist_format import preprocess

__all__ = ["IMAGE_SUFFIXES", "load_negative_folder"]


def load_negative_folder(root: str | os.PathLike[str]) -> tuple[np.ndarray, list[str]]:
    """Every image under root/<label>/ -> (glyphs uint8 (N, 28, 28), their N labels).

    Subfolders in name order, files in name order. Images that preprocess to nothing (blank)
    are skipped. Raises DigitrecError for a missing folder, a subfolder named like a digit
    (negatives must not be digits) or an image that cannot be decoded.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise DigitrecError(f"{folder}: no such folder of negative images")
    glyphs: list[np.ndarray] = []
    labels: list[str] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name in LABELS:
            raise DigitrecError(f"{sub}: a negative label named like a digit; negatives must not be digits")
        for path in sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            digit = preprocess(load_image(path))
            if not digit.any():  # blank: nothing to learn from
                continue
            glyphs.append(to_uint8(digit))
            labels.append(sub.name)
    out = np.stack(glyphs) if glyphs else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return out, labels
