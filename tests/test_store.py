"""The personalisation store (digitrec.store) on SQLite and on PostgreSQL: profiles and their
samples, names, limits, export and import, migrations, opening at once, errors, the cache.

Try: `.venv/bin/pytest tests/test_store.py -q`. The PostgreSQL cases need $DIGITREC_TEST_POSTGRES
(tests/helpers.py says how; skipped without it, failed without it when CI=true).
"""

from __future__ import annotations

import base64
import io
import json
import multiprocessing
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from PIL import Image
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

import helpers
from digitrec.errors import DigitrecError
from digitrec.store import db
from digitrec.store import profiles as profiles_module
from digitrec.store.db import StoreError, open_engine
from digitrec.store.profiles import (
    MAX_PROFILE_FILE_BYTES,
    MAX_PROFILE_SAMPLES,
    ProfileCache,
    ProfileNotFoundError,
    ProfileStore,
    check_profile_name,
)
from digitrec.store.schema import PROFILE_ID_LENGTH, metadata
from digitrec.store.schema import samples as samples_table

store_url = helpers.store_url  # the fixture: each test on SQLite, then on a fresh PostgreSQL database

BAD_NAMES = [
    "../x",
    "a/b",
    "a\\b",
    "x'; DROP TABLE profiles; --",
    'x"; DROP TABLE samples; --',
    "",
    "a" * (PROFILE_ID_LENGTH + 1),
    "ána",
    "名前",
    "٣",  # an Arabic-Indic three: a digit to Python, not to a URL or a file system
    "x\n",
    "x\x00",
    " x",
    "a b",
    ".hidden",
    "-x",
    "%2e%2e",
]


def noise(n: int, seed: int = 0) -> np.ndarray:
    """(n, 28, 28) uint8 noise: every bit of every pixel must survive a round trip."""
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def numbered(first: int, n: int) -> np.ndarray:
    """Images filled with their number first..first+n-1: which survived shows by their pixels."""
    return np.repeat(np.arange(first, first + n, dtype=np.uint8), 28 * 28).reshape(n, 28, 28)


@pytest.fixture
def sqlite_store(tmp_path) -> ProfileStore:
    return ProfileStore.open(str(tmp_path / "store.sqlite"))


def test_a_profile_starts_empty_and_every_change_raises_its_revision(store_url):
    store = ProfileStore.open(store_url)
    assert store.create("ana") == "ana"
    info = store.info("ana")
    assert (info.id, info.issued, info.revision, info.samples, info.counts) == ("ana", False, 0, 0, (0,) * 10)
    assert info.created_at.tzinfo is not None and info.updated_at == info.created_at

    images = noise(3)
    after = store.add_samples("ana", images, [1, 1, 7])
    assert (after.revision, after.samples, after.counts[1], after.counts[7]) == (1, 3, 2, 1)
    assert store.revision("ana") == 1 and after.updated_at >= after.created_at == info.created_at
    assert store.add_samples("ana", noise(1, seed=1), np.array([0])).revision == 2
    got, labels = store.samples("ana")
    assert np.array_equal(got, np.concatenate([images, noise(1, seed=1)])) and labels.tolist() == [1, 1, 7, 0]
    assert got.dtype == labels.dtype == np.uint8

    store.create("ben")
    listed = store.list_profiles()
    assert [(i.id, i.samples, i.revision) for i in listed] == [("ana", 4, 2), ("ben", 0, 0)]
    per_digit = store.info("ana").to_dict()["per_digit"]
    assert per_digit == {str(d): n for d, n in enumerate([1, 2, 0, 0, 0, 0, 0, 1, 0, 0])}
    assert len(store.samples()[1]) == 4  # every profile's

    with pytest.raises(ProfileNotFoundError, match="no profile cleo"):
        store.add_samples("cleo", noise(1), [3])
    assert store.add_samples("cleo", noise(1), [3], create=True).revision == 1


def test_samples_are_checked_before_they_are_stored(sqlite_store):
    sqlite_store.create("ana")
    for images, labels in [(noise(2), [1]), (noise(1), [10]), (noise(1), [-1]), (np.zeros((1, 32, 32)), [1])]:
        with pytest.raises(DigitrecError):
            sqlite_store.add_samples("ana", images, labels)
    assert sqlite_store.info("ana").revision == 0


def test_deleting_a_profile_deletes_its_samples_and_no_others(store_url):
    store = ProfileStore.open(store_url)
    store.add_samples("ana", noise(3), [1, 2, 3], create=True)
    store.add_samples("ben", noise(2), [4, 5], create=True)
    store.delete("ana")

    def rows(profile: str) -> int:
        with store.engine.connect() as c:
            return c.execute(select(func.count()).where(samples_table.c.profile_id == profile)).scalar_one()

    assert (rows("ana"), rows("ben")) == (0, 2)
    with pytest.raises(ProfileNotFoundError):
        store.info("ana")
    with pytest.raises(ProfileNotFoundError):
        store.delete("ana")
    assert [i.id for i in store.list_profiles()] == ["ben"]
    assert store.delete_all() == 1
    assert store.list_profiles() == [] and rows("ben") == 0


def test_a_taken_name_is_refused_and_the_profile_kept(store_url):
    store = ProfileStore.open(store_url)
    store.add_samples("ana", noise(2), [1, 2], create=True)
    with pytest.raises(DigitrecError, match="exists already"):
        store.create("ana")
    assert store.info("ana").samples == 2


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_with_paths_quotes_or_other_tricks_are_refused(name):
    with pytest.raises(DigitrecError, match="not a profile name"):
        check_profile_name(name)


@pytest.mark.parametrize("name", ["a", "7", "Ana.B_c-1", "a" * PROFILE_ID_LENGTH])
def test_plain_names_up_to_64_characters_are_accepted(name):
    assert check_profile_name(name) == name


def test_tricky_names_make_nothing_and_find_nothing(store_url):
    store = ProfileStore.open(store_url)
    store.add_samples("ana", noise(1), [1], create=True)
    exported = store.export_profile("ana")
    for name in BAD_NAMES:
        with pytest.raises(DigitrecError):
            store.create(name)
        with pytest.raises(DigitrecError):
            store.add_samples(name, noise(1), [1], create=True)
        with pytest.raises(DigitrecError):
            store.import_profile(exported, name)
        for lookup in (store.info, store.revision, store.samples, store.delete):
            with pytest.raises(ProfileNotFoundError):  # bound parameters: the name is only compared
                lookup(name)
    assert [(i.id, i.samples) for i in store.list_profiles()] == [("ana", 1)]  # both tables still there


def test_issued_identifiers_are_128_random_bits_in_hex(store_url):
    store = ProfileStore.open(store_url)
    issued = [store.create() for _ in range(20)]
    assert len(set(issued)) == 20
    assert all(re.fullmatch("[0-9a-f]{32}", p) for p in issued)
    assert all(i.issued for i in store.list_profiles())


def test_a_profile_keeps_its_newest_samples(store_url, monkeypatch):
    monkeypatch.setattr(profiles_module, "MAX_PROFILE_SAMPLES", 5)
    store = ProfileStore.open(store_url)
    store.add_samples("ana", numbered(0, 3), [0, 1, 2], create=True)
    info = store.add_samples("ana", numbered(3, 4), [3, 4, 5, 6])
    images, labels = store.samples("ana")
    assert images[:, 0, 0].tolist() == [2, 3, 4, 5, 6] and labels.tolist() == [2, 3, 4, 5, 6]
    assert info.samples == 5 and info.counts[0] == info.counts[1] == 0
    store.add_samples("ana", numbered(10, 8), [0] * 8)  # more than the limit at once
    assert store.samples("ana")[0][:, 0, 0].tolist() == [13, 14, 15, 16, 17]


def test_export_and_import_round_trip_every_sample_bit_exactly(store_url, tmp_path):
    store = ProfileStore.open(store_url)
    images, labels = noise(12, seed=3), np.arange(12) % 10
    store.add_samples("ana", images, labels, create=True)
    exported = store.export_profile("ana")
    document = json.loads(exported)
    assert (document["format"], document["version"], document["profile"]) == ("digitrec-profile", 1, "ana")

    elsewhere = ProfileStore.open(str(tmp_path / "other.sqlite"))  # another machine's store
    assert elsewhere.import_profile(exported).id == "ana"
    assert store.import_profile(exported, "ana-copy").samples == 12
    for target, name in [(elsewhere, "ana"), (store, "ana-copy")]:
        got, got_labels = target.samples(name)
        assert np.array_equal(got, images) and got_labels.tolist() == labels.tolist()
    assert store.import_profile(exported).samples == 24  # into the profile of that name: added


def good_document(store: ProfileStore) -> dict:
    store.add_samples("ana", noise(2), [3, 4], create=True)
    return json.loads(store.export_profile("ana"))


def png_of(image: Image.Image, format: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return base64.b64encode(buffer.getvalue()).decode()


def forged(case: str, document: dict) -> bytes:
    """`document` (a good export) damaged or forged as `case` says."""
    sample = document["samples"][0]

    def with_sample(**changes: object) -> bytes:
        return json.dumps({**document, "samples": [{**sample, **changes}]}).encode()

    if case == "not JSON":
        return b'{"format": "digitrec-profile", "samples": ['
    if case == "not UTF-8":
        return json.dumps(document).replace('"ana"', '"\xe1na"').encode("latin-1")
    if case == "a list":
        return b"[]"
    if case == "null":
        return b"null"
    if case == "another format":
        return json.dumps({**document, "format": "something-else"}).encode()
    if case == "a newer version":
        return json.dumps({**document, "version": 2}).encode()
    if case == "no samples":
        return json.dumps({k: v for k, v in document.items() if k != "samples"}).encode()
    if case == "samples not a list":
        return json.dumps({**document, "samples": "3"}).encode()
    if case == "a sample not an object":
        return json.dumps({**document, "samples": [7]}).encode()
    if case == "bad base64":
        return with_sample(png="!!not base64!!")
    if case == "png not a string":
        return with_sample(png=12)
    if case == "not a PNG":
        return with_sample(png=base64.b64encode(b"GIF89a" + b"\0" * 40).decode())
    if case == "a PNG of another size":
        return with_sample(png=png_of(Image.new("L", (32, 32))))
    if case == "a JPEG":
        return with_sample(png=png_of(Image.new("L", (28, 28)), "JPEG"))
    if case == "a truncated PNG":
        return with_sample(png=base64.b64encode(base64.b64decode(sample["png"])[:60]).decode())
    if case == "a PNG too large to be a sample":
        image = Image.fromarray(noise(1)[0])
        buffer = io.BytesIO()
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("padding", "x" * 5000)
        image.save(buffer, format="PNG", pnginfo=info)
        return with_sample(png=base64.b64encode(buffer.getvalue()).decode())
    if case == "label 1e400":  # infinity, to Python's JSON
        return with_sample().replace(b'"label": 3', b'"label": 1e400')
    if case.startswith("label "):
        return with_sample(label=json.loads(case.removeprefix("label ")))
    if case == "too many samples":
        return json.dumps({**document, "samples": [sample] * (MAX_PROFILE_SAMPLES + 1)}).encode()
    if case == "a huge file":
        return b" " * (MAX_PROFILE_FILE_BYTES + 1)
    if case == "nested thousands deep":
        return b"[" * 100_000 + b"]" * 100_000
    if case == "a name with a path":
        return json.dumps({**document, "profile": "../../etc/x"}).encode()
    if case == "a name not a string":
        return json.dumps({**document, "profile": ["ana"]}).encode()
    raise AssertionError(case)


FORGERIES = [
    "not JSON",
    "not UTF-8",
    "a list",
    "null",
    "another format",
    "a newer version",
    "no samples",
    "samples not a list",
    "a sample not an object",
    "bad base64",
    "png not a string",
    "not a PNG",
    "a PNG of another size",
    "a JPEG",
    "a truncated PNG",
    "a PNG too large to be a sample",
    "label 10",
    "label -1",
    'label "7"',
    "label 7.5",
    "label true",
    "label null",
    "label 1e400",
    "too many samples",
    "a huge file",
    "nested thousands deep",
    "a name with a path",
    "a name not a string",
]


@pytest.mark.parametrize("case", FORGERIES)
def test_a_damaged_or_forged_profile_file_is_refused_and_imports_nothing(sqlite_store, case):
    data = forged(case, good_document(sqlite_store))
    before = sqlite_store.info("ana")
    with pytest.raises(DigitrecError) as e:
        sqlite_store.import_profile(data, None if case.startswith("a name") else "ben")
    assert "\n" not in str(e.value) and len(str(e.value)) < 400
    assert [i.id for i in sqlite_store.list_profiles()] == ["ana"] and sqlite_store.info("ana") == before


def test_opening_a_store_twice_migrates_it_once_to_exactly_the_schema(store_url, monkeypatch):
    upgrades = []
    real_upgrade = db.command.upgrade
    monkeypatch.setattr(db.command, "upgrade", lambda *a, **k: (upgrades.append(a), real_upgrade(*a, **k)))
    first, second = open_engine(store_url), open_engine(store_url)
    assert len(upgrades) == 1
    head = ScriptDirectory.from_config(db._alembic_config()).get_current_head()
    for engine in (first, second):
        with engine.connect() as c:
            context = MigrationContext.configure(c)
            assert context.get_current_revision() == head
            assert compare_metadata(context, metadata) == []  # the migrations make what the queries use


def make_new_again(url: str) -> None:
    """The store at `url` as if never opened: its SQLite file removed, its PostgreSQL schema emptied."""
    if "://" not in url:
        for suffix in ("", "-wal", "-shm"):
            Path(url + suffix).unlink(missing_ok=True)
        return
    engine = create_engine(db.store_url(url), poolclass=NullPool)
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def test_processes_opening_a_new_store_at_the_same_moment_all_succeed(store_url):
    ctx = multiprocessing.get_context("spawn")
    n, rounds = 3, 4  # each round n processes open the new store together
    ready, answers = ctx.Barrier(n + 1), ctx.Queue()
    workers = [
        ctx.Process(target=helpers.open_new_stores_when_ready, args=(store_url, rounds, ready, answers, f"p{i}"))
        for i in range(n)
    ]
    for w in workers:
        w.start()
    try:
        for round in range(rounds):
            if round:
                make_new_again(store_url)
            ready.wait(timeout=120)  # go
            results = [answers.get(timeout=60) for _ in workers]
            if round == rounds - 1:
                profiles = sorted(i.id for i in ProfileStore.open(store_url).list_profiles())
            ready.wait(timeout=60)  # all done
            assert results == ["ok"] * n, f"round {round}"
    finally:
        ready.abort()  # a process still waiting stops waiting
        for w in workers:
            w.join(timeout=30)
    assert profiles == ["p0", "p1", "p2"]


@pytest.mark.parametrize(
    "url, message",
    [
        ("postgresql://ana:s3cret@127.0.0.1:1/db", "cannot open the store"),  # nothing listens on port 1
        ("postgresql://ana:s3cret@127.0.0.1:port/db", "is not a store URL"),
        ("postgresql://ana:s3cret@[::1/db", "is not a store URL"),
        ("nosuchdb://ana:s3cret@host/db", "no driver"),
        ("{tmp}/garbage.sqlite", "the store cannot be used"),
        ("{tmp}/a-file/store.sqlite", "cannot create the store's folder"),
    ],
)
def test_a_bad_url_or_unreachable_database_is_one_line_without_the_password(tmp_path, url, message):
    (tmp_path / "garbage.sqlite").write_bytes(b"not a database" * 500)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError) as e:
        open_engine(url.format(tmp=tmp_path))
    shown = str(e.value)
    assert message in shown and "\n" not in shown and "s3cret" not in shown, shown


def test_a_database_that_fails_in_use_is_a_store_error(store_url):
    store = ProfileStore.open(store_url)
    store.add_samples("ana", noise(1), [1], create=True)
    with store.engine.begin() as c:
        c.execute(text("DROP TABLE samples"))
    for use in (
        lambda: store.add_samples("ana", noise(1), [2]),
        lambda: store.info("ana"),
        lambda: store.samples("ana"),
        store.list_profiles,
    ):
        with pytest.raises(StoreError, match="the store failed") as e:
            use()
        assert "\n" not in str(e.value)


class CountingRecognizer:
    """What ProfileCache needs of a Recognizer: features, counted."""

    def __init__(self) -> None:
        self.calls = 0

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        flat = images.reshape(len(images), -1)[:, :16].astype(np.float32) + 1
        return np.zeros((len(images), 10), np.float32), flat


def test_the_cache_adapts_a_profile_again_only_when_it_changed_wherever_it_changed(store_url):
    store, other = ProfileStore.open(store_url), ProfileStore.open(store_url)  # two servers, one database
    recognizer = CountingRecognizer()
    cache = ProfileCache(store, recognizer)
    store.add_samples("ana", noise(2), [1, 2], create=True)
    first = cache.get("ana")
    assert cache.get("ana") is first and recognizer.calls == 1
    other.add_samples("ana", noise(1), [3])
    changed = cache.get("ana")
    assert changed.counts.tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 0, 0] and recognizer.calls == 2
    assert cache.get("ana") is changed and recognizer.calls == 2
    other.delete("ana")
    with pytest.raises(ProfileNotFoundError):
        cache.get("ana")


def test_the_cache_does_not_serve_a_deleted_profile_under_a_new_one_of_its_name(store_url):
    store, other = ProfileStore.open(store_url), ProfileStore.open(store_url)
    cache = ProfileCache(store, CountingRecognizer())
    store.add_samples("ana", noise(1), [3], create=True)
    assert cache.get("ana").counts[3] == 1
    other.delete("ana")
    other.add_samples("ana", noise(1, seed=1), [5], create=True)  # the same revision, 1, as the old one had
    assert cache.get("ana").counts.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]


def test_the_cache_keeps_its_most_recently_used_profiles_and_is_safe_across_threads(sqlite_store):
    recognizer = CountingRecognizer()
    cache = ProfileCache(sqlite_store, recognizer, size=2)
    for name in ("a", "b", "c"):
        sqlite_store.add_samples(name, noise(1), [1], create=True)
    cache.get("a"), cache.get("b"), cache.get("a"), cache.get("c")  # "b" is the least recent: dropped
    assert recognizer.calls == 3
    cache.get("a")
    assert recognizer.calls == 3
    cache.get("b")
    assert recognizer.calls == 4

    errors: list[Exception] = []

    def read_many(offset: int) -> None:
        try:
            for i in range(60):
                cache.get("abc"[(i + offset) % 3])
                if i % 7 == 0:
                    cache.forget("abc"[i % 3])
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=read_many, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(cache._cache) <= 2
