"""Where the store is, and opening it: the engine, the schema migrated to the newest revision.

Try: `python -c "from digitrec.store.db import store_url; print(store_url(None))"`

The store is chosen by `--store URL`, else `$DIGITREC_STORE`, else an SQLite file in the user's
data folder. Opening runs Alembic's migrations up to the newest revision, on PostgreSQL under an advisory
lock, so servers started together migrate once.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from ..errors import DigitrecError
from ..version import __version__

STORE_ENV = "DIGITREC_STORE"
STORE_FILE = "store.sqlite"
SQLITE_BUSY_MS = 10_000  # how long an SQLite writer waits for another's lock before failing
MIGRATION_LOCK = 0x64696769  # PostgreSQL advisory lock key held while migrating ("digi")
POSTGRES_DRIVER = "postgresql+psycopg"  # psycopg 3: `postgresql://` URLs are given this driver

__all__ = ["STORE_ENV", "StoreError", "default_store_path", "open_engine", "store_url"]


class StoreError(DigitrecError):
    """The store cannot be opened or used: a bad URL, an unreachable server, a damaged file."""


def default_store_path() -> Path:
    """$XDG_DATA_HOME/digitrec/store.sqlite, else ~/.local/share/digitrec/store.sqlite."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "digitrec" / STORE_FILE


def store_url(url: str | None) -> str:
    """The store's URL: `url`, else $DIGITREC_STORE, else the default SQLite file. A bare path is
    an SQLite file; `postgresql://` gets the psycopg driver."""
    url = url or os.environ.get(STORE_ENV) or str(default_store_path())
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return POSTGRES_DRIVER + url[url.index("://") :]
    return url


def shown_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not parsed: hide all before the last '@', the password with it
        return re.sub(r"://.*@", "://***@", url)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("digitrec.store") / "migrations"))
    return config


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # deleting a profile deletes its samples
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    # Readers never wait for a writer. The mode is kept in the file, so only a new store changes
    # it, and that change is refused ("database is locked"), without waiting, while another
    # process holds the file: try again until busy_timeout would have given up.
    deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")  # a no-op once the file is in WAL mode
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    cursor.close()


def _migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision, once, whoever else is opening the store."""
    config = _alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head:
            return  # the common case: one query, no lock
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":  # a second server waits here, then finds it done
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            elif engine.dialect.name == "sqlite":
                # The file's write lock, held to the commit, so the DDL is one transaction too
                # (the driver would run each CREATE on its own): a second process waits here
                # (busy_timeout), then finds it done, instead of meeting half a schema.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            if MigrationContext.configure(connection).get_current_revision() != head:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
    except SQLAlchemyError:
        # Two processes creating one SQLite file's tables at once: the loser's DDL fails, and
        # the schema the winner made is all it needed.
        with engine.connect() as connection:
            if MigrationContext.configure(connection).get_current_revision() != head:
                raise


def open_engine(url: str | None = None) -> Engine:
    """An engine on the store at `url` (see `store_url`), its schema migrated to the newest
    revision. Raises StoreError with what to do when the store cannot be opened."""
    resolved = store_url(url)
    try:
        parsed = make_url(resolved)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StoreError(
            f"{shown_url(resolved)} is not a store URL; give a file path, sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"{folder}: cannot create the store's folder ({e.strerror or e}); give another --store"
            ) from None
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError) as e:
        raise StoreError(
            f"{shown_url(resolved)}: no driver for this database ({_first_line(e)}); "
            "for PostgreSQL install 'digitrec[postgres]'"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _migrate(engine)
    except OperationalError as e:
        engine.dispose()
        raise StoreError(
            f"{shown_url(resolved)}: cannot open the store ({_first_line(e.orig)}); "
            f"check the URL (--store or ${STORE_ENV}), that the database runs and that you may write it"
        ) from None
    except CommandError as e:  # a revision this digitrec does not know: a newer one's store
        engine.dispose()
        raise StoreError(
            f"{shown_url(resolved)}: the store's schema is not one this digitrec {__version__} knows "
            f"({_first_line(e)}); upgrade digitrec, or give another --store"
        ) from None
    except SQLAlchemyError as e:
        engine.dispose()
        raise StoreError(
            f"{shown_url(resolved)}: the store cannot be used ({_first_line(getattr(e, 'orig', None) or e)}); "
            "is it a digitrec store?"
        ) from None
    return engine


def _first_line(error: object) -> str:
    """An error's message, its first line only (a driver's may hold several): for one-line messages."""
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else error.__class__.__name__
