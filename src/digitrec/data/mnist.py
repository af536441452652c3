"""Find MNIST (argument, $DIGITREC_DATA, cache), download it from public mirrors, verify, load.

Try: `digitrec data`, or
`python -c "from digitrec.data.mnist import load_mnist; print(load_mnist('test').images.shape)"`

Every file is verified by the SHA-256 of its decompressed bytes, so the mirrors' .gz files and
locally re-compressed copies are equally accepted. Downloads go to a temporary name and are
renamed only once verified: an interrupted download never leaves a file under the final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from ..constants import IMAGE_SIZE, NUM_CLASSES
from ..errors import DigitrecError
from .idx import parse_idx, read_bytes

ENV_VAR = "DIGITREC_DATA"
GZ = ".gz"
CHUNK_SIZE = 1 << 16  # bytes per read while downloading
BACKOFF_S = 1.0  # wait before retry k is k * BACKOFF_S
FILE_MODE = 0o644  # mkstemp creates 0600; the cache is meant to be readable by others


@dataclass(frozen=True)
class FileSpec:
    """One data file: its published name (without .gz), its role, and its checksums."""

    name: str
    split: Literal["train", "test"]
    kind: Literal["images", "labels"]
    count: int  # items in the file
    sha256: str  # of the decompressed bytes: the check that always runs
    gz_sha256: str | None = None  # of the mirrors' .gz, lets a download skip decompressing


TRAIN_IMAGES = FileSpec(
    "train-images-idx3-ubyte",
    "train",
    "images",
    60_000,
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
)
TRAIN_LABELS = FileSpec(
    "train-labels-idx1-ubyte",
    "train",
    "labels",
    60_000,
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
)
TEST_IMAGES = FileSpec(
    "t10k-images-idx3-ubyte",
    "test",
    "images",
    10_000,
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
)
TEST_LABELS = FileSpec(
    "t10k-labels-idx1-ubyte",
    "test",
    "labels",
    10_000,
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
)
MNIST_FILES: tuple[FileSpec, ...] = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
SplitName = Literal["train", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "test")

# Public IDX mirrors (torchvision's and TFDS's); a file's URL is base + name + ".gz".
# The plain-http one is last: anything it serves is still checked against the SHA-256 above.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


@dataclass(frozen=True)
class Split:
    """One split of MNIST in memory, verified."""

    images: np.ndarray  # uint8 (N, 28, 28), 0 = background
    labels: np.ndarray  # uint8 (N,), 0..9
    sha256: str  # the data checksum recorded in checkpoints: see combined_sha256
    source: Path  # the folder it was read from
    image_file: Path
    label_file: Path


class _AttemptFailed(Exception):
    """One download attempt failed; `retry` says whether the same mirror may do better."""

    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.retry = retry


def combined_sha256(images_sha256: str, labels_sha256: str) -> str:
    """One digest for a split: SHA-256 of the two files' hex digests joined by a newline."""
    return hashlib.sha256(f"{images_sha256}\n{labels_sha256}".encode()).hexdigest()


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/digitrec/mnist, else ~/.cache/digitrec/mnist."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digitrec" / "mnist"


def resolve_data_dir(data_dir: Path | str | None) -> tuple[Path, str]:
    """The data folder and how it was chosen: "--data-dir", "DIGITREC_DATA" or "cache"."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "--data-dir"
    if env := os.environ.get(ENV_VAR):
        return Path(env).expanduser(), ENV_VAR
    return default_cache_dir(), "cache"


def _spec(name: str, files: Sequence[FileSpec]) -> FileSpec:
    for spec in files:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown data file {name!r}; known: {[s.name for s in files]}")


def _split_specs(split: str, files: Sequence[FileSpec]) -> tuple[FileSpec, FileSpec]:
    if split not in SPLITS:
        raise DigitrecError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    by_kind = {s.kind: s for s in files if s.split == split}
    return by_kind["images"], by_kind["labels"]


def _candidates(name: str) -> list[str]:
    # The published spelling, plus the common "train-images.idx3-ubyte" one, each plain or .gz.
    alternate = name.replace("-idx", ".idx")
    return [name, name + GZ, alternate, alternate + GZ]


def find_file(folder: Path, name: str) -> Path | None:
    """The file holding `name` in `folder` (plain or .gz, either spelling), or None."""
    for candidate in _candidates(name):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def _how_to_point(files: Sequence[FileSpec]) -> str:
    names = ", ".join(s.name + GZ for s in files)
    return f"put the files ({names}; plain or .gz) in a folder and pass `--data-dir DIR` or set {ENV_VAR}=DIR"


def _checksum_error(path: Path, expected: str, actual: str) -> DigitrecError:
    return DigitrecError(
        f"{path}: checksum mismatch: SHA-256 of the decompressed content is {actual}, "
        f"expected {expected}; the file is corrupt or not the right one: "
        "delete it and run `digitrec data` again (or replace it with a good copy)"
    )


def _fetch(url: str, tmp: Path, spec: FileSpec, timeout: float, progress: bool) -> None:
    """Stream `url` into `tmp` and verify it; raises _AttemptFailed."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            received = 0
            with (
                open(tmp, "wb") as out,
                tqdm(
                    total=expected,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=spec.name,
                    disable=not progress,
                    leave=False,
                ) as bar,
            ):
                while chunk := response.read(CHUNK_SIZE):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        # 4xx will not change on a retry; 5xx might.
        raise _AttemptFailed(f"HTTP {err.code} {err.reason}", retry=err.code >= 500) from None
    except (OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        raise _AttemptFailed(f"{type(err).__name__}: {reason}", retry=True) from None
    if expected is not None and received != expected:
        raise _AttemptFailed(f"truncated transfer: {received} of {expected} bytes", retry=True)
    if spec.gz_sha256 is not None and digest.hexdigest() == spec.gz_sha256:
        return  # the mirror's published .gz, byte for byte
    try:
        actual = hashlib.sha256(read_bytes(tmp)).hexdigest()
    except DigitrecError:
        raise _AttemptFailed("served a corrupt gzip stream", retry=False) from None
    if actual != spec.sha256:
        raise _AttemptFailed(f"checksum mismatch: got {actual}, expected {spec.sha256}", retry=False)


def download(
    name: str,
    dest_dir: Path,
    *,
    mirrors: Sequence[str] = MIRRORS,
    files: Sequence[FileSpec] = MNIST_FILES,
    retries: int = 3,
    timeout: float = 30.0,
    progress: bool = True,
    backoff: float = BACKOFF_S,
) -> Path:
    """Download `name` (.gz) from the first mirror that serves a verified copy; return its path.

    Each mirror gets up to `retries` attempts, `backoff * k` seconds apart. The file is streamed
    to `.NAME.gz.part-XXXX` in `dest_dir` and renamed only once verified.
    """
    spec = _spec(name, files)
    dest_dir = Path(dest_dir)
    final = dest_dir / (name + GZ)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{final.name}.part-")
    except OSError as err:
        raise DigitrecError(
            f"{dest_dir}: cannot download {final.name} into it ({err.strerror}); "
            f"make it writable, or {_how_to_point(files)}"
        ) from None
    os.close(fd)
    tmp = Path(tmp_name)
    failures: list[str] = []
    try:
        for mirror in mirrors:
            url = mirror + final.name
            for attempt in range(1, retries + 1):
                try:
                    _fetch(url, tmp, spec, timeout, progress)
                except _AttemptFailed as err:
                    if not err.retry or attempt == retries:
                        failures.append(f"{url}: {err} (attempt {attempt} of {retries})")
                        break
                    time.sleep(backoff * attempt)
                else:
                    os.chmod(tmp, FILE_MODE)
                    os.replace(tmp, final)
                    return final
    finally:
        tmp.unlink(missing_ok=True)  # gone already after a successful rename
    tried = "\n  ".join(failures) or "(no mirrors given)"
    raise DigitrecError(
        f"could not download {final.name} from any mirror:\n  {tried}\n"
        f"If this machine is offline, {_how_to_point(files)}."
    )


def _load_verified(path: Path, spec: FileSpec) -> tuple[np.ndarray, str]:
    data = read_bytes(path)
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise _checksum_error(path, spec.sha256, actual)
    return parse_idx(data, str(path)), actual


def _check_pair(images: np.ndarray, labels: np.ndarray, image_file: Path, label_file: Path) -> None:
    hint = "point the data folder at the MNIST files"
    shape = (IMAGE_SIZE, IMAGE_SIZE)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != shape:
        got = f"{images.dtype} {images.shape}"
        raise DigitrecError(f"{image_file}: expected uint8 {shape} images, got {got}; {hint}")
    if labels.dtype != np.uint8 or labels.shape != (len(images),):
        raise DigitrecError(
            f"{label_file}: expected {len(images)} uint8 labels to match {image_file.name}, "
            f"got {labels.dtype} {labels.shape}; {hint}"
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        digits = f"0-{NUM_CLASSES - 1}"
        raise DigitrecError(f"{label_file}: label {labels.max()} is not a digit {digits}; {hint}")


def _locate(
    folder: Path,
    how: str,
    spec: FileSpec,
    files: Sequence[FileSpec],
    mirrors: Sequence[str] | None,
    progress: bool,
) -> Path:
    """The file for `spec` in `folder`, downloaded from `mirrors` if missing (None: do not)."""
    path = find_file(folder, spec.name)
    if path is not None:
        return path
    if mirrors is None:
        raise DigitrecError(
            f"{folder} (chosen by {how}) has no {spec.name}[.gz]; run `digitrec data` to download "
            f"MNIST, or {_how_to_point(files)}"
        )
    return download(spec.name, folder, mirrors=mirrors, files=files, progress=progress)


def load_mnist(
    split: Literal["train", "test"],
    data_dir: Path | str | None = None,
    *,
    download: bool = True,
    progress: bool = True,
    files: Sequence[FileSpec] = MNIST_FILES,
    mirrors: Sequence[str] = MIRRORS,
) -> Split:
    """Load one verified split, downloading missing files into the data folder if allowed."""
    folder, how = resolve_data_dir(data_dir)
    image_spec, label_spec = _split_specs(split, files)
    fetch_from = mirrors if download else None
    image_file = _locate(folder, how, image_spec, files, fetch_from, progress)
    label_file = _locate(folder, how, label_spec, files, fetch_from, progress)
    images, images_sha = _load_verified(image_file, image_spec)
    labels, labels_sha = _load_verified(label_file, label_spec)
    _check_pair(images, labels, image_file, label_file)
    return Split(images, labels, combined_sha256(images_sha, labels_sha), folder, image_file, label_file)


def digits_to_evaluate(
    images: np.ndarray | None,
    labels: np.ndarray | None,
    data_dir: Path | str | None = None,
    *,
    name: str | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, what they are) to evaluate on: the given pair (called `name`, default
    "given images"), or MNIST's test set when no images are given."""
    if images is None:
        split = load_mnist("test", data_dir, progress=progress)
        return split.images, split.labels, f"MNIST test ({split.source})"
    if labels is None:
        raise DigitrecError("images need their labels: give both")
    return images, labels, name or "given images"


def describe(
    data_dir: Path | str | None = None,
    *,
    download: bool = True,
    progress: bool = True,
    files: Sequence[FileSpec] = MNIST_FILES,
    mirrors: Sequence[str] = MIRRORS,
) -> dict:
    """What `digitrec data` prints: the folder, how it was chosen, each file and each split.

    Loading verifies every file, so a bad file raises DigitrecError instead of appearing here.
    """
    folder, how = resolve_data_dir(data_dir)
    report: dict = {"data_dir": str(folder), "chosen_by": how, "files": [], "splits": {}}
    for split in SPLITS:
        data = load_mnist(split, data_dir, download=download, progress=progress, files=files, mirrors=mirrors)
        image_spec, label_spec = _split_specs(split, files)
        for path, spec, array in (
            (data.image_file, image_spec, data.images),
            (data.label_file, label_spec, data.labels),
        ):
            report["files"].append(
                {
                    "name": spec.name,
                    "path": str(path),
                    "bytes": path.stat().st_size,
                    "sha256": spec.sha256,
                    "sha256_ok": True,  # else load_mnist raised
                    "items": len(array),
                }
            )
        counts = np.bincount(data.labels, minlength=NUM_CLASSES)
        report["splits"][split] = {
            "items": len(data.labels),
            "sha256": data.sha256,
            "label_counts": {str(d): int(c) for d, c in enumerate(counts)},
        }
    return report


HOLDOUT_SEED = 12345  # the held-out split is the same whatever the training seed


def holdout_split(n: int, holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out): the indices of `n` training images a run with `holdout` > 0 trains on
    and holds out, whatever its seed."""
    order = np.random.default_rng(HOLDOUT_SEED).permutation(n)
    return order[: n - holdout], order[n - holdout :]
