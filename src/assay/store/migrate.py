"""Alembic, driven from code: ``upgrade`` runs on every open and is a no-op when up to date.

Adding a migration after changing ``models.py``::

    .venv/bin/python -m assay.store.migrate revision "what changed"

then read the generated file in ``migrations/versions`` and keep it small and plain.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0006"
"""The newest revision. Checked against Alembic by a test; lets an up-to-date database open
without importing Alembic at all (a quarter of a second on every command)."""
# Any constant will do; it only has to be the same in every Assay process.
_PG_MIGRATION_LOCK = 0x41535359


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _is_at_head(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    except DBAPIError as exc:
        if "alembic_version" in str(exc.orig):  # a new database: no table yet
            return False
        raise


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision. Concurrent processes on Postgres take turns."""
    if _is_at_head(engine):
        return
    from alembic import command

    cfg = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def revision(message: str) -> None:
    """Autogenerate a revision by diffing the models against a scratch database at head."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/scratch.db")
        from alembic import command

        if head_revision():
            upgrade(engine)
        cfg = _config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True)
        engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "revision":
        sys.exit('usage: python -m assay.store.migrate revision "message"')
    revision(sys.argv[2])
