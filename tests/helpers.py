"""Small made-up data sets for fast tests: learnable, so training can be checked quickly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitrec.constants import IMAGE_SIZE, NUM_CLASSES


@dataclass
class FakeSplit:
    images: np.ndarray
    labels: np.ndarray
    sha256: str = "fake"


def bar_digits(n: int, seed: int = 0) -> FakeSplit:
    """Class c is a bright horizontal bar at row 4 + 2c, with noise: easy, but needs a real model."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, IMAGE_SIZE, IMAGE_SIZE)).astype(np.uint8)
    for i, c in enumerate(labels):
        row = 4 + 2 * int(c)
        start = rng.integers(2, 10)
        images[i, row : row + 2, start : start + 14] = 255
    return FakeSplit(images, labels)


def pid_then_sleep(recognizer: object, folder: str, seconds: float) -> int:
    """For a recognition process (service/pool.py): write its pid to a file in `folder`, then
    sleep `seconds`, then return the pid. Module-level, so that it pickles."""
    import os
    import time
    from pathlib import Path

    Path(folder, str(os.getpid())).write_text("")
    time.sleep(seconds)
    return os.getpid()
