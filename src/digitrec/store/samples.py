"""A person's labelled digit images, found on disk and read as the network sees them.

Try: `python -c "from digitrec.store.samples import label_of; print(label_of('7_003.png'))"`

Two ways to give them: image files (or folders of them) whose names start with their digit and
an underscore (`7_003.png`), or a CSV of `file,label` rows (paths relative to the CSV). Each image
is read as one digit through the recogniser's own pipeline, so a sample is exactly the 28x28
piece the network will see when the person writes that digit again.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import IMAGE_SIZE
from ..errors import DigitrecError
from ..image.decode import IMAGE_SUFFIXES
from ..recognition.recognizer import Recognizer

LABELLED_NAME = re.compile(r"([0-9])_")  # "7_003.png": a 7
MAX_SAMPLE_FILES = 10_000  # files read in one `personalize`: more than any one hand needs
MAX_CSV_BYTES = 4 * 2**20

__all__ = ["LabelledFile", "Samples", "find_labelled_files", "label_of", "read_samples"]


@dataclass(frozen=True)
class LabelledFile:
    path: Path
    label: int


@dataclass
class Samples:
    """What `read_samples` made of the files: the samples, and why any file was left out."""

    images: np.ndarray  # (N, 28, 28) uint8, MNIST's format
    labels: np.ndarray  # (N,) uint8
    sources: list[Path]  # the file of each sample
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)


def label_of(name: str) -> int | None:
    """The digit a file name starts with (`7_003.png` -> 7), or None.

    >>> label_of("3_a.png"), label_of("a_3.png")
    (3, None)
    """
    match = LABELLED_NAME.match(Path(name).name)
    return int(match.group(1)) if match else None


def _from_csv(path: Path) -> list[LabelledFile]:
    if path.stat().st_size > MAX_CSV_BYTES:
        raise DigitrecError(f"{path}: a CSV over {MAX_CSV_BYTES} bytes; give at most {MAX_SAMPLE_FILES} rows")
    found = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            for number, row in enumerate(csv.reader(f), start=1):
                if not row or (number == 1 and row[0].strip().lower() == "file"):  # blank lines, a header
                    continue
                if len(row) != 2 or not re.fullmatch(r"\s*[0-9]\s*", row[1]) or "\0" in row[0]:
                    raise DigitrecError(
                        f"{path}, line {number}: expected `file,label` with a digit 0-9; got {row!r:.200}"
                    )
                found.append(LabelledFile(path.parent / row[0].strip(), int(row[1])))
    except (UnicodeDecodeError, csv.Error) as e:  # not text, a NUL byte
        raise DigitrecError(f"{path}: not a UTF-8 CSV of `file,label` rows ({e})") from None
    return found


def find_labelled_files(paths: list[str] | list[Path]) -> tuple[list[LabelledFile], list[tuple[Path, str]]]:
    """The labelled images named by `paths` (files, folders, CSVs), and the files left out with
    why (no digit at the start of the name). Raises DigitrecError for a path that does not exist."""
    found: list[LabelledFile] = []
    skipped: list[tuple[Path, str]] = []

    def add_image(p: Path) -> None:
        label = label_of(p.name)
        if label is None:
            skipped.append((p, "its name does not start with a digit and '_' (like 7_003.png)"))
        else:
            found.append(LabelledFile(p, label))

    for given in map(Path, paths):
        if given.is_dir():
            for p in sorted(given.iterdir()):
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                    add_image(p)
                elif p.is_file() and p.suffix.lower() == ".csv":
                    found.extend(_from_csv(p))
        elif given.is_file() and given.suffix.lower() == ".csv":
            found.extend(_from_csv(given))
        elif given.is_file():
            add_image(given)
        else:
            raise DigitrecError(f"{given}: no such file or folder")
        if len(found) > MAX_SAMPLE_FILES:
            raise DigitrecError(f"more than {MAX_SAMPLE_FILES} labelled images; give them in smaller sets")
    return found, skipped


def read_samples(recognizer: Recognizer, files: list[LabelledFile]) -> Samples:
    """Each file read as one digit, as `recognizer` would read it: its 28x28 piece and label.
    A file that cannot be read, or holds no ink, is skipped with the reason."""
    images, labels, sources = [], [], []
    skipped: list[tuple[Path, str]] = []
    for f in files:
        try:
            result = recognizer.recognize(f.path, expected_digits=1)
        except DigitrecError as e:
            skipped.append((f.path, str(e)))
            continue
        if not result.digits:
            skipped.append((f.path, "no digit-like ink in it"))
            continue
        piece = np.clip(np.rint(result.digits[0].image * 255), 0, 255).astype(np.uint8)
        images.append(piece)
        labels.append(f.label)
        sources.append(f.path)
    stack = np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return Samples(stack, np.array(labels, dtype=np.uint8), sources, skipped)
