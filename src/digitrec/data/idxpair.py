"""Any labelled IDX pair (QMNIST, EMNIST digits, a corrupted set, your own digits), checked.

Try: `digitrec evaluate src/digitrec/assets/default.safetensors --images IMAGES --labels LABELS --out runs/report`
(plain or .gz IDX files).

MNIST itself is found and verified by its known checksums in `digitrec.data.mnist`; here any pair is
accepted that has the same count of 28x28 uint8 images and labels 0-9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constants import IMAGE_SIZE, NUM_CLASSES
from ..errors import DigitrecError
from ..fileio import ensure_dir
from .idx import read_idx, write_idx

LABEL_COLUMN = 0  # QMNIST's extended labels (N, 8) hold the digit in their first column


def read_idx_pair(images_path: Path | str, labels_path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and uint8 labels (N,) from two IDX files, plain or gzipped.

    Labels may be any integer IDX type, one per image, or a 2-D table whose first column is the
    digit (QMNIST's extended labels). Anything else is a DigitrecError naming the file."""
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    shape = (IMAGE_SIZE, IMAGE_SIZE)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != shape:
        raise DigitrecError(
            f"{images_path}: expected uint8 images of {shape[0]}x{shape[1]} pixels (an IDX file of "
            f"N x {shape[0]} x {shape[1]} unsigned bytes), got {images.dtype} {images.shape}; "
            "convert the images to MNIST's format first"
        )
    if labels.ndim == 2 and labels.shape[1] > LABEL_COLUMN:
        labels = labels[:, LABEL_COLUMN]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DigitrecError(
            f"{labels_path}: expected one integer label per image, got {labels.dtype} "
            f"{labels.shape}; is it the labels file?"
        )
    if len(labels) != len(images):
        raise DigitrecError(
            f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images; "
            "give the labels that belong to these images"
        )
    if len(labels) == 0:
        raise DigitrecError(f"{images_path}: no images in the file")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        bad = labels[(labels < 0) | (labels >= NUM_CLASSES)][0]
        raise DigitrecError(
            f"{labels_path}: label {bad} is not a digit 0-{NUM_CLASSES - 1}; only digit labels can be evaluated"
        )
    return images, labels.astype(np.uint8)


# A folder of extra training digits (`digitrec corrections export` writes one, `digitrec train
# --extra-data` reads one): an IDX pair under these names.
FOLDER_IMAGES, FOLDER_LABELS = "images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"


def write_idx_folder(folder: Path | str, images: np.ndarray, labels: np.ndarray) -> tuple[Path, Path]:
    """Write uint8 images (N, 28, 28) and labels (N,) as the IDX pair of `folder` (made if missing),
    each file atomically; returns the two paths."""
    folder = ensure_dir(folder)
    paths = folder / FOLDER_IMAGES, folder / FOLDER_LABELS
    write_idx(paths[0], np.ascontiguousarray(images, dtype=np.uint8))
    write_idx(paths[1], np.ascontiguousarray(labels, dtype=np.uint8))
    return paths


def read_idx_folder(folder: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """The IDX pair `write_idx_folder` wrote in `folder`, checked as `read_idx_pair` checks one."""
    folder = Path(folder)
    images, labels = folder / FOLDER_IMAGES, folder / FOLDER_LABELS
    if not images.is_file() or not labels.is_file():
        raise DigitrecError(
            f"{folder}: expected {FOLDER_IMAGES} and {FOLDER_LABELS} in it; "
            "`digitrec corrections export --out FOLDER` writes such a folder"
        )
    return read_idx_pair(images, labels)
