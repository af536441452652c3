"""Small made-up data sets for fast tests: learnable, so training can be checked quickly. And
stores for the personalisation tests: an SQLite file, or a fresh PostgreSQL database.

PostgreSQL: set DIGITREC_TEST_POSTGRES to a URL of a role that may create databases, e.g.
`postgresql://$USER@/postgres?host=/var/run/postgresql` (what .ci/run sets up). Without it the
PostgreSQL cases are skipped here, and failed when CI=true: there they must not pass as skipped.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from digitrec.constants import IMAGE_SIZE, NUM_CLASSES

IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_POSTGRES_ENV = "DIGITREC_TEST_POSTGRES"


@dataclass
class FakeSplit:
    images: np.ndarray
    labels: np.ndarray
    sha256: str = "fake"


def bar_digits(n: int, seed: int = 0) -> FakeSplit:
    """Class c is a bright horizontal bar at row 4 + 2c, with noise: easy, but needs a real model."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, IMAGE_SIZE, IMAGE_SIZE)).astype(np.uint8)
    for i, c in enumerate(labels):
        row = 4 + 2 * int(c)
        start = rng.integers(2, 10)
        images[i, row : row + 2, start : start + 14] = 255
    return FakeSplit(images, labels)


def pid_then_sleep(recognizer: object, folder: str, seconds: float) -> int:
    """For a recognition process (service/pool.py): write its pid to a file in `folder`, then
    sleep `seconds`, then return the pid. Module-level, so that it pickles."""
    import os
    import time
    from pathlib import Path

    Path(folder, str(os.getpid())).write_text("")
    time.sleep(seconds)
    return os.getpid()


def cannot_test(what: str, why: str) -> None:
    """Skip the test here; fail it on CI, where it must run."""
    if IN_CI:
        pytest.fail(f"{what} on CI: {why}", pytrace=False)
    pytest.skip(f"{what}: {why}")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for a test: its URL (`postgresql://...`, what --store and
    $DIGITREC_STORE take), dropped afterwards with whatever is still connected to it. Made through
    the admin URL in $DIGITREC_TEST_POSTGRES; without one the test is skipped (failed on CI)."""
    admin = os.environ.get(TEST_POSTGRES_ENV)
    if not admin:
        cannot_test("PostgreSQL", f"${TEST_POSTGRES_ENV} is not set (.ci/run shows how to set one up)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        cannot_test("PostgreSQL", "psycopg is not installed (pip install -e '.[postgres]')")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.pool import NullPool

    url = make_url(str(admin))
    engine = create_engine(url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"digitrec_test_{secrets.token_hex(6)}"  # only [a-z0-9_]: safe to put into the statement
    try:
        with engine.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}"))
    except OperationalError as e:
        engine.dispose()
        cannot_test("PostgreSQL", f"cannot create a database through ${TEST_POSTGRES_ENV} ({e.orig})")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty store: an SQLite file, then a fresh PostgreSQL database (postgres_database).
    A test module uses it as `store_url = helpers.store_url` (a name pytest finds, that no
    test's argument of that name shadows as an unused import)."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.sqlite")
    else:
        with postgres_database() as url:
            yield url


def open_new_stores_when_ready(url: str, rounds: int, ready: Any, answers: Any, name: str) -> None:
    """For a process opening a new store at the same moment as others, `rounds` times: wait at
    the barrier `ready`, open the store at `url`, make profile `name`, put "ok" (or the error) on
    the queue `answers`, and wait at `ready` again while the test makes the store new again.
    Module-level, so that it pickles."""
    from threading import BrokenBarrierError

    from digitrec.store.profiles import ProfileStore

    for _ in range(rounds):
        try:
            ready.wait(timeout=60)
        except BrokenBarrierError:  # the test ended early
            return
        try:
            store = ProfileStore.open(url)
            store.create(name)
            store.engine.dispose()
            answers.put("ok")
        except Exception as e:
            answers.put(f"{type(e).__name__}: {e}")
        try:
            ready.wait(timeout=60)
        except BrokenBarrierError:
            return
