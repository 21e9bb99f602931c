"""Opening the store: engine, connection settings per dialect, sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from assay.config import Settings, load_settings
from assay.errors import StoreError


class Store:
    """An open Assay database. Service functions take one; shells open it once per process."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self._sessions() as session, session.begin():
            yield session

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
        kwargs["connect_args"] = {"timeout": 30}
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
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
