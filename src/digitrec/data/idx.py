"""Read and write IDX files, the format MNIST is published in, plain or gzip-compressed.

Try: `python -c "from digitrec.data.idx import read_idx; print(read_idx('t10k-labels-idx1-ubyte.gz')[:20])"`

An IDX file is a 4-byte magic (0, 0, dtype code, number of dimensions), one big-endian uint32 per
dimension, then the items, big-endian, row-major. Everything that can be wrong with a file raises
DigitrecError naming the file, so a truncated download is a message, not a traceback. Files are
read as a stream that stops where the header says the data ends, so a small gzip that inflates to
gigabytes costs kilobytes, not gigabytes.
"""

from __future__ import annotations

import gzip as gziplib
import io
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DigitrecError, InputTooLargeError

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
# Most data bytes an IDX file may promise: about twice EMNIST ByClass's 698k training images (547 MB),
# the largest MNIST-like set; a header promising more is refused before anything is read or allocated.
MAX_IDX_BYTES = 2**30
# Bytes read past the promised end to tell a trailing-bytes file from a good one: enough to count the
# stray bytes of a slightly wrong file, few enough that a gzip bomb is stopped after its first chunk.
TRAILING_PROBE = 64 * 1024
READ_CHUNK = 2**20  # decompress in 1 MiB pieces: memory stays at one piece beyond the data itself
REFETCH_HINT = "delete it and run `digitrec data` again (or replace it with a good copy)"


def _fail(source: str, problem: str) -> DigitrecError:
    return DigitrecError(f"{source}: {problem}; {REFETCH_HINT}")


def _header(view: memoryview, source: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """The dtype, dimensions and header size of IDX bytes; DigitrecError naming `source` if they are not IDX."""
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
    return DTYPES[code], dims, header_size


def _data_size(dtype: np.dtype, dims: tuple[int, ...]) -> int:
    return dtype.itemsize * int(np.prod(dims, dtype=object))  # object: no int overflow


def parse_idx(data: bytes | bytearray | memoryview, source: str) -> np.ndarray:
    """Decode IDX bytes (already decompressed) into a native-endian, writable array.

    `source` names where the bytes came from; every error message starts with it.
    """
    view = memoryview(data)
    dtype, dims, header_size = _header(view, source)
    expected = _data_size(dtype, dims)
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


def _read_into(stream: io.BufferedIOBase, out: bytearray, size: int) -> int:
    """Append up to `size` bytes of `stream` to `out` (fewer at its end); how many were appended."""
    start = len(out)
    while len(out) - start < size:
        chunk = stream.read(min(size - (len(out) - start), READ_CHUNK))
        if not chunk:
            break
        out += chunk
    return len(out) - start


def _read_promised(stream: io.BufferedIOBase, source: str) -> bytearray:
    """The header and as many data bytes as it promises, plus what follows up to TRAILING_PROBE
    (for parse_idx to report); more than that is refused here, without reading the rest."""
    data = bytearray()
    if _read_into(stream, data, MAGIC_SIZE) == MAGIC_SIZE:
        _read_into(stream, data, DIM_SIZE * min(data[3], MAX_NDIM))
    try:
        dtype, dims, header_size = _header(memoryview(bytes(data)), source)
    except DigitrecError:
        # Not an IDX header: parse_idx will say why; the first bytes are all it (or a checksum) needs.
        _read_into(stream, data, TRAILING_PROBE)
        return data
    expected = _data_size(dtype, dims)
    shape = "x".join(map(str, dims))
    if expected > MAX_IDX_BYTES:
        raise InputTooLargeError(
            f"{source}: header says {shape} ({expected} bytes), over the {MAX_IDX_BYTES}-byte limit "
            "for an IDX file; split the data into smaller files"
        )
    _read_into(stream, data, expected)  # short at the end of the file: parse_idx reports truncation
    if _read_into(stream, data, TRAILING_PROBE) == TRAILING_PROBE:
        raise _fail(
            source,
            f"trailing bytes: header says {shape} ({expected} bytes) but at least {expected + TRAILING_PROBE} bytes follow",
        )
    return data


def read_bytes(path: Path | str) -> bytearray:
    """The IDX bytes of `path`, gunzipped when the file starts with the gzip magic.

    Read no further than the header promises (see _read_promised): a gzip that inflates to
    gigabytes is stopped after a chunk, and a header promising over MAX_IDX_BYTES is
    InputTooLargeError. Bytes that are not IDX come back (the first few) for parse_idx to name.
    """
    source = str(path)
    try:
        with open(path, "rb") as f:
            gzipped = f.peek(len(GZIP_MAGIC))[: len(GZIP_MAGIC)] == GZIP_MAGIC  # peek: pipes work too
            if not gzipped:
                return _read_promised(f, source)
            try:
                with gziplib.GzipFile(fileobj=f, mode="rb") as stream:
                    return _read_promised(stream, source)
            except (OSError, EOFError, zlib.error) as err:
                raise _fail(source, f"corrupt gzip stream ({err})") from None
    except FileNotFoundError:
        raise DigitrecError(f"{path}: no such file; check the path") from None
    except OSError as err:
        raise DigitrecError(f"{path}: cannot read ({err.strerror}); check its permissions") from None


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
