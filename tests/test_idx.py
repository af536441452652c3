"""IDX round trips and every way a file can be broken. Try: `pytest tests/test_idx.py -q`."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from digitrec.data.idx import encode_idx, parse_idx, read_idx, write_idx
from digitrec.errors import DigitrecError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip(tmp_path: Path, dtype: type, name: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = tmp_path / name
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind


@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_round_trip_ndim(tmp_path: Path, ndim: int) -> None:
    array = np.arange(2**ndim, dtype=np.int32).reshape((2,) * ndim)
    write_idx(tmp_path / "x", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "x"), array)


def test_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "compressed-but-no-suffix", array, gzip=True)
    write_idx(tmp_path / "plain.gz", array, gzip=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed-but-no-suffix"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), array)


def test_header_is_big_endian() -> None:
    data = encode_idx(np.array([[1, 2, 3]], dtype=np.int16))
    assert data == bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 1, 3) + struct.pack(">hhh", 1, 2, 3)


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


GOOD = encode_idx(np.zeros((2, 3), dtype=np.uint8))  # header 12 bytes, payload 6


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00" + GOOD[2:], "not an IDX file"),  # wrong magic
        (GOOD[:2] + b"\x07" + GOOD[3:], "unknown dtype code 0x07"),
        (GOOD[:3] + b"\x05" + GOOD[4:], "5 dimensions"),
        (GOOD[:3] + b"\x00" + GOOD[4:], "0 dimensions"),
        (GOOD[:-1], r"truncated: header says 2x3 \(6 bytes\) but 5 bytes follow"),
        (GOOD[:7], "truncated: header needs 12 bytes"),
        (GOOD + b"\x00", r"trailing bytes: header says 2x3 \(6 bytes\) but 7 bytes follow"),
        (b"PK\x03\x04 this is a zip file", "not an IDX file"),
        (b"", "not an IDX file"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, data: bytes, message: str) -> None:
    for name, payload in (("bad-idx3-ubyte", data), ("bad-idx3-ubyte.gz", gzip.compress(data))):
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(DigitrecError, match=message) as info:
            read_idx(path)
        assert str(path) in str(info.value)
        assert "digitrec data" in str(info.value)  # says what to do


def test_parse_idx_names_the_source() -> None:
    with pytest.raises(DigitrecError, match="^somewhere.bin: truncated"):
        parse_idx(GOOD[:-2], "somewhere.bin")


def test_corrupt_gzip(tmp_path: Path) -> None:
    packed = gzip.compress(encode_idx(np.arange(1000, dtype=np.int32)))
    cases = {
        "cut.gz": packed[: len(packed) // 2],  # stream ends early
        "flipped.gz": packed[:20] + bytes(b ^ 0xFF for b in packed[20:40]) + packed[40:],
        "header.gz": b"\x1f\x8b" + b"\x00" * 30,
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DigitrecError, match="corrupt gzip") as info:
            read_idx(path)
        assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DigitrecError, match="no such file") as info:
        read_idx(tmp_path / "nope")
    assert "nope" in str(info.value)


def test_a_gzip_that_inflates_far_past_its_header_is_refused_without_inflating_it(tmp_path: Path) -> None:
    import tracemalloc

    # A valid 2x3 header and payload, then 50 MB of zeros: level 9 packs it into about 50 kB.
    path = tmp_path / "bomb-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(GOOD + bytes(50 * 2**20), compresslevel=9))
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DigitrecError, match="trailing bytes: header says 2x3") as info:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # inflating it all would take 50 MB or more
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_a_header_promising_more_than_the_limit_is_refused_before_reading_the_data(tmp_path: Path, gz: bool) -> None:
    import tracemalloc

    from digitrec.errors import InputTooLargeError

    header = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 10_000_000, 28, 28)  # 7.8 GB of uint8
    data = header + bytes(2**20)
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(gzip.compress(data, compresslevel=9) if gz else data)
    tracemalloc.start()
    try:
        with pytest.raises(InputTooLargeError, match="10000000x28x28") as info:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20 and str(path) in str(info.value) and "\n" not in str(info.value)
