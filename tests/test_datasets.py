"""Finding, verifying, downloading and loading MNIST, on tiny fake data and a local HTTP server.

Try: `pytest tests/test_datasets.py -q` (set DIGITREC_DATA to also check the real test split).
No test touches the network: downloads go to a server on 127.0.0.1, and a guard refuses others.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from digitrec.data import mnist as datasets
from digitrec.data.idx import encode_idx
from digitrec.data.mnist import FileSpec, describe, download, find_file, load_mnist, resolve_data_dir
from digitrec.errors import DigitrecError

N_TRAIN, N_TEST = 50, 20
LOCALHOST = "127.0.0.1"
POLL_S = 0.01  # server shutdown waits up to one poll interval
# Read once, before the autouse fixture below hides the variable from every test.
REAL_DATA_DIR = os.environ.get(datasets.ENV_VAR)
REAL_LABEL_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}


@dataclass
class FakeMnist:
    """Four tiny IDX files with MNIST's names, and the spec table that accepts them."""

    raw: dict[str, bytes]  # name -> decompressed IDX bytes
    files: tuple[FileSpec, ...]

    def gz(self, name: str, level: int = 9) -> bytes:
        return gzip.compress(self.raw[name], compresslevel=level, mtime=0)

    def write(self, folder: Path, *, compressed: bool = True, spelling=lambda name: name) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name in self.raw:
            path = folder / (spelling(name) + (".gz" if compressed else ""))
            path.write_bytes(self.gz(name) if compressed else self.raw[name])
        return folder


@pytest.fixture
def fake() -> FakeMnist:
    rng = np.random.default_rng(0)
    raw, files = {}, []
    for real, count in zip(datasets.MNIST_FILES, (N_TRAIN, N_TRAIN, N_TEST, N_TEST)):
        shape = (count, 28, 28) if real.kind == "images" else (count,)
        array = rng.integers(0, 256 if real.kind == "images" else 10, shape, dtype=np.uint8)
        raw[real.name] = encode_idx(array)
        digest = hashlib.sha256(raw[real.name]).hexdigest()
        files.append(replace(real, count=count, sha256=digest, gz_sha256=None))
    return FakeMnist(raw, tuple(files))


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep tests off the user's cache, off $DIGITREC_DATA, and off the network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    real_urlopen = urllib.request.urlopen

    def local_only(url, *args, **kwargs):
        host = urllib.parse.urlsplit(url if isinstance(url, str) else url.full_url).hostname
        assert host == LOCALHOST, f"test tried to reach {url}"
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


# --- a scriptable HTTP server ------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    claimed_length: int | None = None  # Content-Length to announce; None = len(body), -1 = omit


@dataclass
class FakeServer:
    base: str
    routes: dict[str, list[Reply]] = field(default_factory=dict)  # path -> replies, last repeats
    hits: list[str] = field(default_factory=list)

    def mirror(self, prefix: str, replies: dict[str, list[Reply]]) -> str:
        for name, script in replies.items():
            self.routes[f"/{prefix}/{name}"] = list(script)
        return f"{self.base}/{prefix}/"

    def next_reply(self, path: str) -> Reply:
        self.hits.append(path)
        script = self.routes.get(path, [Reply(404)])
        return script.pop(0) if len(script) > 1 else script[0]


@pytest.fixture
def server() -> Iterator[FakeServer]:
    state: FakeServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            reply = state.next_reply(self.path)
            if reply.status != 200:
                self.send_error(reply.status)
                return
            self.send_response(200)
            if reply.claimed_length != -1:
                length = len(reply.body) if reply.claimed_length is None else reply.claimed_length
                self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(reply.body)
            self.close_connection = True  # a short body is then a connection closed early

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer((LOCALHOST, 0), Handler)
    state = FakeServer(f"http://{LOCALHOST}:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, args=(POLL_S,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


NAME = "t10k-labels-idx1-ubyte"
GZ_NAME = NAME + ".gz"


def fetch(dest: Path, fake: FakeMnist, mirrors: list[str], **kwargs) -> Path:
    options = dict(files=fake.files, retries=2, timeout=5.0, progress=False, backoff=0.0)
    return download(NAME, dest, mirrors=mirrors, **(options | kwargs))


def assert_no_leftovers(folder: Path, final_ok: bool, fake: FakeMnist) -> None:
    assert not [p for p in folder.iterdir() if ".part" in p.name]
    final = folder / GZ_NAME
    if final_ok:
        assert gzip.decompress(final.read_bytes()) == fake.raw[NAME]
    else:
        assert not final.exists()


# --- finding the folder and the files -----------------------------------------------------------


def test_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_data_dir(None) == (tmp_path / "xdg" / "digitrec" / "mnist", "cache")
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_dir(None) == (tmp_path / "env", "DIGITREC_DATA")
    assert resolve_data_dir(tmp_path / "arg") == (tmp_path / "arg", "--data-dir")


def test_cache_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert datasets.default_cache_dir() == tmp_path / ".cache" / "digitrec" / "mnist"


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("spelling", ["published", "dotted"])
def test_finds_plain_and_gz(fake: FakeMnist, tmp_path: Path, compressed: bool, spelling: str) -> None:
    rename = (lambda n: n) if spelling == "published" else (lambda n: n.replace("-idx", ".idx"))
    folder = fake.write(tmp_path / "data", compressed=compressed, spelling=rename)
    for split, count in (("train", N_TRAIN), ("test", N_TEST)):
        data = load_mnist(split, folder, download=False, files=fake.files)
        assert data.images.shape == (count, 28, 28) and data.images.dtype == np.uint8
        assert data.labels.shape == (count,) and data.labels.max() <= 9
        assert data.source == folder and data.image_file.name.endswith(".gz") == compressed
    assert find_file(folder, "nothing-like-it") is None


def test_env_var_folder_is_used(fake: FakeMnist, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(datasets.ENV_VAR, str(fake.write(tmp_path / "env")))
    assert load_mnist("test", download=False, files=fake.files).source == tmp_path / "env"


def test_split_checksum_is_stable_and_distinct(fake: FakeMnist, tmp_path: Path) -> None:
    plain = fake.write(tmp_path / "plain", compressed=False)
    packed = fake.write(tmp_path / "packed")
    train = load_mnist("train", plain, download=False, files=fake.files)
    assert train.sha256 == load_mnist("train", packed, download=False, files=fake.files).sha256
    assert train.sha256 != load_mnist("test", plain, download=False, files=fake.files).sha256


def test_checksum_mismatch(fake: FakeMnist, tmp_path: Path) -> None:
    folder = fake.write(tmp_path / "data")
    bad = bytearray(fake.raw[NAME])
    bad[-1] = (bad[-1] + 1) % 10  # still a valid IDX file, one label changed
    (folder / GZ_NAME).write_bytes(gzip.compress(bytes(bad)))
    spec = next(s for s in fake.files if s.name == NAME)
    with pytest.raises(DigitrecError, match="checksum mismatch") as info:
        load_mnist("test", folder, download=False, files=fake.files)
    message = str(info.value)
    assert str(folder / GZ_NAME) in message and spec.sha256 in message
    assert hashlib.sha256(bytes(bad)).hexdigest() in message and "digitrec data" in message


def test_missing_files_without_download(fake: FakeMnist, tmp_path: Path) -> None:
    with pytest.raises(DigitrecError, match="--data-dir") as info:
        load_mnist("test", tmp_path / "empty", download=False, files=fake.files)
    assert "DIGITREC_DATA" in str(info.value) and "t10k-images-idx3-ubyte" in str(info.value)


def test_labels_must_match_images(fake: FakeMnist, tmp_path: Path) -> None:
    raw = encode_idx(np.full(N_TEST, 10, dtype=np.uint8))  # right count, not digits
    digest = hashlib.sha256(raw).hexdigest()
    files = tuple(replace(s, sha256=digest) if s.name == NAME else s for s in fake.files)
    folder = fake.write(tmp_path / "data")
    (folder / GZ_NAME).write_bytes(gzip.compress(raw))
    with pytest.raises(DigitrecError, match="label 10 is not a digit"):
        load_mnist("test", folder, download=False, files=files)


def test_describe(fake: FakeMnist, tmp_path: Path) -> None:
    fake.write(datasets.default_cache_dir())
    report = describe(download=False, files=fake.files)
    json.dumps(report)  # plain types only
    assert report["chosen_by"] == "cache" and len(report["files"]) == 4
    assert all(f["sha256_ok"] and f["bytes"] > 0 for f in report["files"])
    assert sum(report["splits"]["test"]["label_counts"].values()) == N_TEST


# --- downloading ---------------------------------------------------------------------------------


def test_download_good_mirror(fake: FakeMnist, server: FakeServer, tmp_path: Path) -> None:
    good = server.mirror("good", {GZ_NAME: [Reply(body=fake.gz(NAME))]})
    assert fetch(tmp_path, fake, [good]) == tmp_path / GZ_NAME
    assert_no_leftovers(tmp_path, True, fake)


def test_download_accepts_published_gz_or_any_recompression(
    fake: FakeMnist, server: FakeServer, tmp_path: Path
) -> None:
    published = hashlib.sha256(fake.gz(NAME, level=9)).hexdigest()
    files = tuple(replace(s, gz_sha256=published) if s.name == NAME else s for s in fake.files)
    for level in (9, 1):  # 9: matches the .gz checksum; 1: only the decompressed one
        mirror = server.mirror(f"level{level}", {GZ_NAME: [Reply(body=fake.gz(NAME, level))]})
        (tmp_path / GZ_NAME).unlink(missing_ok=True)
        fetch(tmp_path, fake, [mirror], files=files)
        assert_no_leftovers(tmp_path, True, fake)


def test_404_then_good_mirror(fake: FakeMnist, server: FakeServer, tmp_path: Path) -> None:
    missing = server.mirror("missing", {})
    good = server.mirror("good", {GZ_NAME: [Reply(body=fake.gz(NAME))]})
    fetch(tmp_path, fake, [missing, good])
    assert server.hits == [f"/missing/{GZ_NAME}", f"/good/{GZ_NAME}"]  # a 404 is not retried
    assert_no_leftovers(tmp_path, True, fake)


def test_corrupt_mirror_then_good(fake: FakeMnist, server: FakeServer, tmp_path: Path) -> None:
    wrong = gzip.compress(fake.raw[NAME][:-1] + b"\x00")
    corrupt = server.mirror("corrupt", {GZ_NAME: [Reply(body=wrong)]})
    not_gzip = server.mirror("not-gzip", {GZ_NAME: [Reply(body=b"\x1f\x8b<html>oops</html>")]})
    good = server.mirror("good", {GZ_NAME: [Reply(body=fake.gz(NAME))]})
    fetch(tmp_path, fake, [corrupt, not_gzip, good])
    assert_no_leftovers(tmp_path, True, fake)


def test_corrupt_only_mirror(fake: FakeMnist, server: FakeServer, tmp_path: Path) -> None:
    corrupt = server.mirror("corrupt", {GZ_NAME: [Reply(body=gzip.compress(b"not mnist"))]})
    with pytest.raises(DigitrecError, match="checksum mismatch"):
        fetch(tmp_path, fake, [corrupt])
    assert_no_leftovers(tmp_path, False, fake)


def test_truncated_transfer_is_retried(fake: FakeMnist, server: FakeServer, tmp_path: Path) -> None:
    body = fake.gz(NAME)
    cut = Reply(body=body[: len(body) // 2], claimed_length=len(body))
    flaky = server.mirror("flaky", {GZ_NAME: [cut, Reply(body=body)]})
    fetch(tmp_path, fake, [flaky])
    assert server.hits == [f"/flaky/{GZ_NAME}"] * 2
    assert_no_leftovers(tmp_path, True, fake)


@pytest.mark.parametrize("claimed", ["full", "omitted"])
def test_truncated_everywhere(fake: FakeMnist, server: FakeServer, tmp_path: Path, claimed: str) -> None:
    body = fake.gz(NAME)
    reply = Reply(body=body[: len(body) // 2], claimed_length=len(body) if claimed == "full" else -1)
    broken = server.mirror("broken", {GZ_NAME: [reply]})
    with pytest.raises(DigitrecError, match="truncated" if claimed == "full" else "corrupt gzip"):
        fetch(tmp_path, fake, [broken])
    assert_no_leftovers(tmp_path, False, fake)


def test_all_mirrors_fail(fake: FakeMnist, server: FakeServer, tmp_path: Path) -> None:
    missing = server.mirror("missing", {})
    dead = f"http://{LOCALHOST}:9/"  # discard port: connection refused
    with pytest.raises(DigitrecError) as info:
        fetch(tmp_path, fake, [missing, dead])
    message = str(info.value)
    assert missing in message and "404" in message and dead in message
    assert "--data-dir" in message and "DIGITREC_DATA" in message
    assert all(s.name in message for s in fake.files)
    assert_no_leftovers(tmp_path, False, fake)


def test_interrupted_download_leaves_nothing(
    fake: FakeMnist, server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "_fetch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fetch(tmp_path, fake, [server.mirror("good", {})])
    assert_no_leftovers(tmp_path, False, fake)


def test_load_downloads_missing_into_cache(fake: FakeMnist, server: FakeServer, tmp_path: Path) -> None:
    good = server.mirror("good", {s.name + ".gz": [Reply(body=fake.gz(s.name))] for s in fake.files})
    data = load_mnist("test", progress=False, files=fake.files, mirrors=[good])
    cache = tmp_path / "xdg" / "digitrec" / "mnist"
    assert data.source == cache and len(data.images) == N_TEST
    assert sorted(p.name for p in cache.iterdir()) == ["t10k-images-idx3-ubyte.gz", GZ_NAME]


def test_unwritable_folder(fake: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(datasets.tempfile, "mkstemp", refuse)  # chmod is no use when tests run as root
    with pytest.raises(DigitrecError, match="Permission denied") as info:
        load_mnist("test", tmp_path / "shared", progress=False, files=fake.files, mirrors=[])
    assert str(tmp_path / "shared") in str(info.value) and "--data-dir" in str(info.value)


# --- the real thing ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("split", ["test", "train"])
def test_real_mnist(split: str) -> None:
    if not REAL_DATA_DIR:
        pytest.skip(f"set {datasets.ENV_VAR} to a folder holding MNIST")
    data = load_mnist(split, REAL_DATA_DIR, download=False)
    assert len(data.images) == sum(REAL_LABEL_COUNTS[split])
    assert np.bincount(data.labels, minlength=10).tolist() == REAL_LABEL_COUNTS[split]
