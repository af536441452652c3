"""A SHA-256 of the whole file, stored inside the file: a damaged model is refused, never read.

Try: `python -c "from digitrec.integrity import seal; print(seal(b'[' + b'0' * 64 + b']', b'[', b']'))"`

The writer puts PLACEHOLDER (64 '0' characters) in the file's metadata, serialises, hashes the
complete bytes and writes the hex digest over the placeholder (same length, so nothing else
moves). The reader finds the digest by the bytes around it, puts the placeholder back, hashes
and compares. A file without a digest (written before digests, or someone else's ONNX model)
is read as before; a file with one is read only when every byte is as written.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from .errors import DigitrecError

DIGEST_KEY = "sha256"  # the metadata key that holds the digest, in checkpoints and ONNX models
DIGEST_CHARS = 64  # a SHA-256 in lowercase hex
PLACEHOLDER = "0" * DIGEST_CHARS  # what the digest's place holds while the file is hashed
_HEX = re.compile(rb"[0-9a-f]{%d}" % DIGEST_CHARS)


def damaged(path: str | os.PathLike, remedy: str) -> DigitrecError:
    return DigitrecError(f"{path}: the file is damaged (its SHA-256 does not match); get a good copy or {remedy}")


def seal(data: bytes, before: bytes, after: bytes) -> bytes:
    """`data` with its one `before` PLACEHOLDER `after` holding the SHA-256 of `data`."""
    marked = before + PLACEHOLDER.encode() + after
    if data.count(marked) != 1:  # our own writer put it there once: anything else is a bug
        raise DigitrecError(f"the digest placeholder occurs {data.count(marked)} times, not once; please report it")
    start = data.index(marked) + len(before)
    digest = hashlib.sha256(data).hexdigest().encode()
    return data[:start] + digest + data[start + DIGEST_CHARS :]


def verify(data: bytes, before: bytes, after: bytes, path: str | os.PathLike, remedy: str, *, within: int = -1) -> bool:
    """Whether `data` holds a digest (`before` digest `after`, searched in its first `within`
    bytes; -1: all); True when it matches, DigitrecError `damaged` when it does not or when the
    digest is ill-formed or found twice. False: the file has none (read it as before)."""
    region = data if within < 0 else data[:within]
    found = region.count(before)
    if found == 0:
        return False
    start = region.index(before) + len(before)
    stored = data[start : start + DIGEST_CHARS]
    if found > 1 or not _HEX.fullmatch(stored) or data[start + DIGEST_CHARS :][: len(after)] != after:
        raise damaged(path, remedy)
    blank = data[:start] + PLACEHOLDER.encode() + data[start + DIGEST_CHARS :]
    if not hmac.compare_digest(hashlib.sha256(blank).hexdigest().encode(), stored):
        raise damaged(path, remedy)
    return True
