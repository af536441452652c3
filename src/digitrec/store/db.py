"""Where the store is, and opening it: the engine, the schema migrated to the newest revision.

Try: `python -c "from digitrec.store.db import store_url; print(store_url(None))"`

The store is chosen by `--store URL`, else `$DIGITREC_STORE`, else an SQLite file in the user's
data folder. Opening runs Alembic's migrations up to the newest revision, on PostgreSQL under an advisory
lock, so servers started together migrate once.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from ..errors import DigitrecError

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
    except ArgumentError:
        return "(an invalid URL)"


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("digitrec.store") / "migrations"))
    return config


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # deleting a profile deletes its samples
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
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
    except ArgumentError:
        raise StoreError(
            f"{url!r} is not a store URL; give a file path, sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError) as e:
        raise StoreError(
            f"{shown_url(resolved)}: no driver for this database ({e}); for PostgreSQL install 'digitrec[postgres]'"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _migrate(engine)
    except OperationalError as e:
        raise StoreError(
            f"{shown_url(resolved)}: cannot open the store ({str(e.orig).strip().splitlines()[0]}); "
            f"check the URL (--store or ${STORE_ENV}), that the database runs and that you may write it"
        ) from None
    except SQLAlchemyError as e:
        raise StoreError(f"{shown_url(resolved)}: the store cannot be used ({e.__class__.__name__}: {e})") from None
    return engine
