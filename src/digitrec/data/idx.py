"""Read and write IDX files, the format MNIST is published in, plain or gzip-compressed.

Try: `python -c "from digitrec.data.idx import read_idx; print(read_idx('t10k-labels-idx1-ubyte.gz')[:20])"`

An IDX file is a 4-byte magic (0, 0, dtype code, number of dimensions), one big-endian uint32 per
dimension, then the items, big-endian, row-major. Everything that can be wrong with a file raises
DigitrecError naming the file, so a truncated download is a message, not a traceback.
"""

from __future__ import annotations

import gzip as gziplib
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DigitrecError

# IDX dtype codes -> big-endian numpy dtypes.
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAGIC_SIZE = 4  # bytes: two zeros, dtype code, ndim
DIM_SIZE = 4  # bytes per big-endian uint32 dimension
MAX_NDIM = 4
MAX_DIM = 2**32 - 1
GZIP_MAGIC = b"\x1f\x8b"
FILE_MODE = 0o644  # mkstemp creates 0600; written data files are meant to be shared
GZIP_LEVEL = 6  # level 9 is several times slower on MNIST's 47 MB for ~2% smaller files
REFETCH_HINT = "delete it and run `digitrec data` again (or replace it with a good copy)"


def _fail(source: str, problem: str) -> DigitrecError:
    return DigitrecError(f"{source}: {problem}; {REFETCH_HINT}")


def parse_idx(data: bytes | bytearray | memoryview, source: str) -> np.ndarray:
    """Decode IDX bytes (already decompressed) into a native-endian, writable array.

    `source` names where the bytes came from; every error message starts with it.
    """
    view = memoryview(data)
    if len(view) < MAGIC_SIZE:
        raise _fail(source, f"not an IDX file: only {len(view)} bytes")
    zero0, zero1, code, ndim = view[:MAGIC_SIZE]
    if zero0 or zero1:
        magic = bytes(view[:MAGIC_SIZE]).hex()
        raise _fail(source, f"not an IDX file: magic {magic} does not start with 0000")
    if code not in DTYPES:
        raise _fail(source, f"not an IDX file: unknown dtype code 0x{code:02x}")
    if not 1 <= ndim <= MAX_NDIM:
        raise _fail(source, f"not an IDX file: {ndim} dimensions (expected 1 to {MAX_NDIM})")
    header_size = MAGIC_SIZE + DIM_SIZE * ndim
    if len(view) < header_size:
        raise _fail(source, f"truncated: header needs {header_size} bytes but the file has {len(view)}")
    dims = tuple(int(d) for d in np.frombuffer(view, dtype=">u4", count=ndim, offset=MAGIC_SIZE))
    dtype = DTYPES[code]
    expected = dtype.itemsize * int(np.prod(dims, dtype=object))  # object: no int overflow
    actual = len(view) - header_size
    if actual != expected:
        what = "truncated" if actual < expected else "trailing bytes"
        shape = "x".join(map(str, dims))
        raise _fail(source, f"{what}: header says {shape} ({expected} bytes) but {actual} bytes follow")
    array = np.frombuffer(view, dtype=dtype, offset=header_size).reshape(dims)
    # Big-endian or backed by read-only bytes: copy once into a native, writable array.
    if not array.dtype.isnative or not array.flags.writeable:
        array = array.astype(dtype.newbyteorder("="))
    return array


def read_bytes(path: Path | str) -> bytes:
    """The IDX bytes of `path`, gunzipped when the file starts with the gzip magic."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DigitrecError(f"{path}: no such file; check the path") from None
    except OSError as err:
        raise DigitrecError(f"{path}: cannot read ({err.strerror}); check its permissions") from None
    if data[: len(GZIP_MAGIC)] == GZIP_MAGIC:
        try:
            data = gziplib.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise _fail(str(path), f"corrupt gzip stream ({err})") from None
    return data


def read_idx(path: Path | str) -> np.ndarray:
    """Read a plain or gzip-compressed IDX file into a native-endian array."""
    return parse_idx(read_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes (uncompressed) of `array`."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of {sorted(map(str, codes))}")
    if not 1 <= array.ndim <= MAX_NDIM or any(d > MAX_DIM for d in array.shape):
        raise ValueError(f"IDX cannot store shape {array.shape}: 1 to {MAX_NDIM} dimensions below 2**32")
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.astype(DTYPES[code], copy=False).tobytes()


def write_idx(path: Path | str, array: np.ndarray, *, gzip: bool | None = None) -> None:
    """Write `array` as IDX, gzip-compressed when `gzip` (default: when the name ends in .gz).

    Written to a temporary file beside `path` and renamed, so readers never see half a file.
    """
    path = Path(path)
    data = encode_idx(array)
    if gzip if gzip is not None else path.name.endswith(".gz"):
        data = gziplib.compress(data, compresslevel=GZIP_LEVEL, mtime=0)  # mtime 0: reproducible
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
