"""Corrupted test sets, generated once from a seed and cached as verified IDX pairs.

Try: `python -c "from digitrec.data.corruption_cache import corrupted_test_set;
print(corrupted_test_set('fog').image_file)"`

Each set lives in its own folder named by corruption, severity, seed and a digest of the source,
with a JSON sidecar holding the SHA-256 of both files: a stale or damaged copy is made again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import IMAGE_SIZE
from ..errors import DigitrecError
from ..fileio import atomic_write_bytes, atomic_write_text, ensure_dir
from .corruptions import GENERATOR_VERSION, check_corruptions, check_images, check_seed, corrupt, resolve_severity
from .idx import encode_idx, parse_idx
from .mnist import default_cache_dir as mnist_cache_dir
from .mnist import load_mnist

CACHE_ENV_VAR = "DIGITREC_CACHE"  # digitrec's cache root; corrupted sets go in its "corrupted" folder
SIDECAR = "set.json"


IMAGES_FILE, LABELS_FILE = "images-idx3-ubyte", "labels-idx1-ubyte"


SIDECAR_FORMAT = "digitrec-corrupted-set"


def default_cache_dir() -> Path:
    """$DIGITREC_CACHE/corrupted, else $XDG_CACHE_HOME/digitrec/corrupted, else
    ~/.cache/digitrec/corrupted."""
    if root := os.environ.get(CACHE_ENV_VAR):
        return Path(root).expanduser() / "corrupted"
    return mnist_cache_dir().parent / "corrupted"  # beside MNIST's: <XDG cache>/digitrec/corrupted


@dataclass(frozen=True)
class CorruptedSet:
    """One corrupted copy of a labelled set, as stored in the cache."""

    name: str
    severity: int
    seed: int
    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray  # uint8 (N,)
    image_file: Path
    label_file: Path
    sha256: str  # of the images file
    generated: bool  # False: read back from the cache


def source_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """A digest of a labelled set in memory: what a cached corrupted copy was made from."""
    digest = hashlib.sha256()
    for array in (images, labels):
        a = np.ascontiguousarray(array)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.data)
    return digest.hexdigest()


def _read_cached(folder: Path, expected: dict) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The cached pair in `folder` if its sidecar matches `expected` and both files match the
    SHA-256 it records; None otherwise (missing, stale, tampered with, unreadable)."""
    try:
        sidecar = json.loads((folder / SIDECAR).read_text())
        if any(sidecar.get(k) != v for k, v in expected.items()):
            return None
        arrays = []
        for key, file in (("images", IMAGES_FILE), ("labels", LABELS_FILE)):
            data = (folder / file).read_bytes()
            if hashlib.sha256(data).hexdigest() != sidecar[key]["sha256"]:
                return None
            arrays.append(parse_idx(data, str(folder / file)))
    except (OSError, ValueError, KeyError, TypeError, DigitrecError):
        return None
    images, labels = arrays
    if images.shape != (sidecar["n"], IMAGE_SIZE, IMAGE_SIZE) or labels.shape != (sidecar["n"],):
        return None
    return images, labels, sidecar["images"]["sha256"]


def corrupted_test_set(
    name: str,
    seed: int = 0,
    severity: int | None = None,
    data_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
    *,
    source: tuple[np.ndarray, np.ndarray] | None = None,
) -> CorruptedSet:
    """The MNIST test set (or `source`, an (images, labels) pair) with corruption `name`, from
    the cache when a verified copy is there, else generated and cached.

    The cache folder is `cache_dir` (default: `default_cache_dir()`); each set lives in its own
    subfolder named by corruption, severity, seed and a digest of the source, as an IDX pair
    (usable with `digitrec evaluate --images --labels`) and a JSON sidecar with their SHA-256.
    """
    (name,) = check_corruptions([name])
    level = resolve_severity(name, severity)
    seed = check_seed(seed)  # before any data is read
    if source is None:
        split = load_mnist("test", data_dir, progress=False)
        source = (split.images, split.labels)
    images, labels = source
    images = check_images(images)
    labels = np.asarray(labels, dtype=np.uint8)
    source_digest = source_sha256(images, labels)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = cache / f"{name}-severity{level}-seed{seed}-{source_digest[:12]}"
    expected = {
        "format": SIDECAR_FORMAT,
        "generator_version": GENERATOR_VERSION,
        "corruption": name,
        "severity": level,
        "seed": seed,
        "source_sha256": source_digest,
        "n": len(images),
    }
    cached = _read_cached(folder, expected)
    if cached is not None:
        got_images, got_labels, digest = cached
        return CorruptedSet(
            name,
            level,
            seed,
            got_images,
            got_labels,
            folder / IMAGES_FILE,
            folder / LABELS_FILE,
            digest,
            generated=False,
        )

    corrupted = corrupt(images, name, seed, level)
    ensure_dir(folder, "cache folder for corrupted sets (set DIGITREC_CACHE to choose another)")
    sidecar: dict[str, Any] = dict(expected)
    for key, file, array in (("images", IMAGES_FILE, corrupted), ("labels", LABELS_FILE, labels)):
        data = encode_idx(array)
        atomic_write_bytes(folder / file, data)
        sidecar[key] = {"file": file, "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_text(folder / SIDECAR, json.dumps(sidecar, indent=2))  # last: marks the set complete
    return CorruptedSet(
        name,
        level,
        seed,
        corrupted,
        labels,
        folder / IMAGES_FILE,
        folder / LABELS_FILE,
        sidecar["images"]["sha256"],
        generated=True,
    )
