"""Browsing and deleting datasets, and the public types every shell renders.

Reads go through SQLAlchemy Core on ``store.engine``: a dataset may hold a million rows, and
neither listing nor exporting should build an ORM object per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, field_validator
from sqlalchemy import Connection, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assay.errors import ValidationError
from assay.store import Store
from assay.store.lookup import not_found
from assay.store.models import Dataset, DatasetRow

DATASET_TYPES = ("eval", "training")
STREAM_CHUNK = 1000

_datasets = Dataset.__table__
_rows = DatasetRow.__table__


class DatasetInfo(BaseModel):
    """A dataset without its rows. Field names are stable: ``--json`` and the API expose them."""

    id: int
    name: str
    type: str
    provenance: str
    source: str | None
    source_format: str | None
    row_format: str | None = None  # training sets: "sft" | "preference"
    row_count: int
    duplicate_count: int
    filter: dict[str, Any] | None
    created_at: datetime

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # SQLite hands back naive datetimes; every timestamp Assay shows is UTC.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DatasetRowInfo(BaseModel):
    """One row: the context the model sees, the reference answer, and where it came from."""

    id: int
    position: int
    messages: list[Any]
    tools: list[Any] | None
    reference: dict[str, Any] | None
    params: dict[str, Any] | None
    metadata: dict[str, Any]
    content_hash: str


class LineIssue(BaseModel):
    """Why one line of an imported file was skipped."""

    line: int
    reason: str


class ImportReport(BaseModel):
    """What an import did: rows stored, lines skipped (first reasons), duplicates, truncation."""

    dataset: DatasetInfo
    rows_imported: int
    lines_read: int
    lines_skipped: int
    errors: list[LineIssue]
    duplicates: int  # rows kept that repeat an earlier row's content hash
    duplicates_dropped: int  # rows left out by --dedupe
    truncated: bool  # --limit stopped the import before the end of the file


def list_datasets(store: Store, type: str | None = None) -> list[DatasetInfo]:
    """Every dataset (optionally of one type), by name."""
    if type is not None:
        check_type(type)
    query = select(_datasets).order_by(_datasets.c.name)
    if type is not None:
        query = query.where(_datasets.c.type == type)
    with store.engine.connect() as conn:
        return [DatasetInfo.model_validate(row._mapping) for row in conn.execute(query)]


def get_dataset(store: Store, name: str) -> DatasetInfo:
    """One dataset by name; ``NotFoundError`` (with a close match, if any) otherwise."""
    with store.engine.connect() as conn:
        return dataset_by_name(conn, name)


def dataset_rows(store: Store, name: str, limit: int = 20, offset: int = 0) -> list[DatasetRowInfo]:
    """A page of rows in dataset order."""
    if limit < 1:
        raise ValidationError(f"--limit must be at least 1, got {limit}")
    if offset < 0:
        raise ValidationError(f"--offset must be 0 or more, got {offset}")
    with store.engine.connect() as conn:
        info = dataset_by_name(conn, name)
        query = (
            select(_rows)
            .where(_rows.c.dataset_id == info.id)
            .order_by(_rows.c.position)
            .limit(limit)
            .offset(offset)
        )
        return [_row_info(row._mapping) for row in conn.execute(query)]


def iter_rows(store: Store, name: str) -> Iterator[DatasetRowInfo]:
    """Every row in order, streamed from one query (one consistent snapshot, flat memory)."""
    with store.engine.connect() as conn:
        info = dataset_by_name(conn, name)
        query = select(_rows).where(_rows.c.dataset_id == info.id).order_by(_rows.c.position)
        # yield_per: a server-side cursor on Postgres, incremental fetches on SQLite.
        result = conn.execution_options(yield_per=STREAM_CHUNK).execute(query)
        for row in result:
            yield _row_info(row._mapping)


def delete_dataset(store: Store, name: str) -> DatasetInfo:
    """Delete a dataset and its rows; refused while an eval or a run still uses it."""
    try:
        with store.engine.begin() as conn:
            info = dataset_by_name(conn, name)
            conn.execute(delete(_rows).where(_rows.c.dataset_id == info.id))
            conn.execute(delete(_datasets).where(_datasets.c.id == info.id))
    except IntegrityError as exc:
        raise ValidationError(
            f"dataset '{name}' is used by an eval definition or a run group; delete those first"
        ) from exc
    return info


def check_type(type: str) -> str:
    if type not in DATASET_TYPES:
        raise ValidationError(
            f"unknown dataset type {type!r} (expected {' or '.join(DATASET_TYPES)})"
        )
    return type


def dataset_by_name(conn: Connection, name: str) -> DatasetInfo:
    row = conn.execute(select(_datasets).where(_datasets.c.name == name)).first()
    if row is not None:
        return DatasetInfo.model_validate(row._mapping)
    names = conn.execute(select(_datasets.c.name)).scalars()
    raise not_found("dataset", name, names, "assay dataset list")


def _row_info(row: Any) -> DatasetRowInfo:
    return DatasetRowInfo(
        id=row["id"],
        position=row["position"],
        messages=row["messages"],
        tools=row["tools"],
        reference=row["reference"],
        params=row["params"],
        metadata=row["metadata"] or {},
        content_hash=row["content_hash"],
    )


def row_fingerprints(conn: Connection | Session, dataset_id: int) -> tuple[set[int], set[str]]:
    """A dataset's rows as overlap is judged: the inferences they came from, and their content
    hashes (the same normalised conversation from anywhere)."""
    query = select(_rows.c.inference_id, _rows.c.content_hash).where(
        _rows.c.dataset_id == dataset_id
    )
    ids: set[int] = set()
    hashes: set[str] = set()
    for inference_id, content_hash in conn.execute(query):
        if inference_id is not None:
            ids.add(inference_id)
        hashes.add(content_hash)
    return ids, hashes


def count_rows(conn: Connection, dataset_id: int) -> tuple[int, int]:
    """(rows, rows repeating an earlier row's content hash), counted by the database."""
    query = select(func.count(), func.count(func.distinct(_rows.c.content_hash))).where(
        _rows.c.dataset_id == dataset_id
    )
    total, distinct = conn.execute(query).one()
    return total, total - distinct
