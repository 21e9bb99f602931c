"""Looking for secrets where they must never be: database contents and files on disk."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from assay.store import Store
from assay.store.models import Base

__all__ = ["database_bytes", "files_holding"]


def database_bytes(store: Store) -> bytes:
    """Everything the database holds, as bytes to search. SQLite: its files (the WAL and
    shared-memory files too, where recent writes live); Postgres: every row of every table
    as text."""
    if store.dialect == "sqlite":
        database = Path(store.engine.url.database or "")
        files = sorted(database.parent.glob(database.name + "*"))
        assert files, f"no database files at {database}"
        return b"".join(f.read_bytes() for f in files)
    chunks = []
    with store.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(text(f'SELECT CAST(t AS text) FROM "{table.name}" t'))
            chunks.extend(row[0].encode() for row in rows)
    return b"\n".join(chunks)


def files_holding(root: Path, needles: list[bytes]) -> list[tuple[Path, bytes]]:
    """(file, needle) for every file under ``root`` holding a needle: must stay empty."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        found.extend((path, needle) for needle in needles if needle in data)
    return found
