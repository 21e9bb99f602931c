"""Opening the store: engine, connection settings per dialect, sessions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from assay.config import Settings, load_settings
from assay.errors import StoreError

T = TypeVar("T")
RETRY_SECONDS = 60.0
"""How long a run group's engine waits for a database that went away (a server restart)
before stopping: an unattended run should ride out a restart."""
INTERACTIVE_RETRY_SECONDS = 5.0
"""How long everything else (a command, a web request) waits: long enough for a blip, short
enough that a database that is down is reported while someone is still looking."""
RETRY_MAX_DELAY = 2.0


class Store:
    """An open Assay database. Service functions take one; shells open it once per process."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        # How long connect() and retrying() wait out a lost database; the engine raises it.
        self.retry_seconds = INTERACTIVE_RETRY_SECONDS
        self._sessions = sessionmaker(expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error.

        A database that cannot answer (connection lost, locked past the busy timeout, disk
        full) raises ``StoreError`` saying which, rather than the driver's exception."""
        try:
            with self.connect() as conn, self._sessions(bind=conn) as session, session.begin():
                yield session
        except OperationalError as exc:
            raise StoreError(describe_failure(exc, self.engine)) from exc

    def connect(self) -> Connection:
        """A pooled connection, waiting out a database that is restarting: while connecting
        is refused (or a pooled connection turns out dead) this retries with backoff for up
        to ``retry_seconds``. Nothing has run on it yet, so retrying is always safe."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                return self.engine.connect()
            except OperationalError as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)

    def retrying(self, read: Callable[[Session], T]) -> T:
        """``read(session)`` in a session of its own, run again if the database connection is
        lost meanwhile (for up to ``retry_seconds``). Only for work that is safe to repeat:
        reads, or writes whose transaction either commits whole or not at all and that
        tolerate running twice."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                with self.session() as session:
                    return read(session)
            except StoreError as exc:
                cause = exc.__cause__
                if cause is None or not is_transient(cause):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)

    def refresh_statistics(self, *tables: str) -> None:
        """After a bulk write, give Postgres's planner fresh row counts now rather than at the
        next autovacuum: with stale ones it can pick plans that are 100x slower for the pages
        read right after a run. SQLite needs nothing (its plans do not depend on them here)."""
        if self.dialect != "postgresql":
            return
        with self.engine.connect() as conn:
            autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in tables:
                autocommit.exec_driver_sql(f'ANALYZE "{table}"')

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.engine.url.render_as_string(hide_password=True)}>"


def open_store(
    database_url: str | None = None,
    home: str | Path | None = None,
    *,
    migrate: bool = True,
) -> Store:
    """Open (and by default migrate) the database chosen by the arguments or ``ASSAY_*``."""
    settings = load_settings(home=home, database_url=database_url)
    engine = _create_engine(settings)
    store = Store(settings, engine)
    if migrate:
        from assay.store.migrate import upgrade

        try:
            upgrade(engine)
        except OperationalError as exc:
            engine.dispose()
            url = engine.url.render_as_string(hide_password=True)
            raise StoreError(f"cannot open the database {url}: {exc.orig}") from exc
    return store


SQLITE_BUSY_TIMEOUT_S = 30
"""How long a SQLite writer waits for another process's write lock before giving up."""

_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")
_DISK_FULL = ("database or disk is full", "disk is full", "no space left", "file too large")
# Postgres SQLSTATE classes a retry can cure: connection (08), transaction rollback, i.e.
# serialization failure or deadlock (40), operator intervention such as a shutdown (57).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "57")


def is_disk_full(exc: BaseException) -> bool:
    """The database (or the file system under it) ran out of room: retrying will not help."""
    orig = getattr(exc, "orig", exc)
    sqlstate = getattr(orig, "sqlstate", None) or ""
    # A write refused by the OS (ENOSPC mid-page, EFBIG past a file size limit, a quota)
    # reaches SQLite as SQLITE_IOERR_WRITE ("disk I/O error") rather than SQLITE_FULL.
    sqlite_code = getattr(orig, "sqlite_errorname", None) or ""
    text = str(orig).lower()
    return (
        sqlstate.startswith("53")
        or sqlite_code in ("SQLITE_FULL", "SQLITE_IOERR_WRITE")
        or any(marker in text for marker in _DISK_FULL)
    )


def is_transient(exc: BaseException) -> bool:
    """A failure that can pass by itself: a lost or refused connection (a server restart), a
    SQLite lock held past the busy timeout, a Postgres serialization failure or deadlock."""
    if not isinstance(exc, DBAPIError) or is_disk_full(exc):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    text = str(orig).lower()
    if any(marker in text for marker in _SQLITE_BUSY):
        return True
    if type(orig).__module__.startswith("psycopg") and isinstance(exc, OperationalError):
        sqlstate = getattr(orig, "sqlstate", None)
        return sqlstate is None or sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return False


def describe_failure(exc: BaseException, engine: Engine) -> str:
    """One line for the user: what happened to the database and what to do about it."""
    url = engine.url.render_as_string(hide_password=True)
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    if is_disk_full(exc):
        return (
            f"database or disk is full: writing to {url} failed ({first}), so nothing of this "
            "operation was kept; free some disk space (or raise the quota or file size "
            "limit), then run it again"
        )
    if any(marker in first.lower() for marker in _SQLITE_BUSY):
        return (
            f"the database {url} stayed locked by another writer for more than "
            f"{SQLITE_BUSY_TIMEOUT_S} s ({first}); run the operation again, or use Postgres "
            "for many concurrent writers"
        )
    if engine.dialect.name == "postgresql" and is_transient(exc):
        return (
            f"database connection lost ({first}); check that the server at {url} is "
            "running, then run the operation again"
        )
    return f"the database {url} failed: {first}"


def _create_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    # orjson: several times faster than json for the payloads every row and call carries.
    kwargs: dict[str, Any] = {
        "json_serializer": lambda value: orjson.dumps(value).decode(),
        "json_deserializer": orjson.loads,
    }
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
        return create_engine(url, **kwargs)
    raise StoreError(
        f"unsupported database URL {url.render_as_string(hide_password=True)!r}: "
        "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.close()
