"""Datasets sliced from captured traffic, and the overlap between two datasets.

Only successful inferences enter. A training dataset must exclude an eval dataset: a row that
is the same inference, or the same normalised conversation (content hash), as an eval row is
left out and counted, so the model is never trained on what it will be judged on.

Memory stays flat at a million rows: inferences stream from one query (or, when sampling, by
chunks of ids from a seeded shuffle of the matching ids), rows go in by batches of 1,000
(executemany on SQLite, COPY on Postgres), and the only sets held are the excluded eval
dataset's ids and hashes (≤ 10,000 each). The whole build is one transaction: a refusal at any
point leaves nothing behind.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import Connection, and_, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from assay.datasets.formats import SOURCE, LineError, parse_object
from assay.datasets.importer import max_rows
from assay.datasets.service import (
    DatasetInfo,
    check_type,
    count_rows,
    dataset_by_name,
    row_fingerprints,
)
from assay.errors import AlreadyExistsError, LimitExceededError, ValidationError
from assay.store import Store
from assay.store.models import Dataset, DatasetRow, Inference
from assay.traffic.explore import TrafficFilter, filtered

WARN_OVERLAP = 0.25
BATCH_ROWS = 1000
STREAM_CHUNK = 1000

_inf = Inference.__table__
_datasets = Dataset.__table__
_rows = DatasetRow.__table__
_COLUMNS = (
    _inf.c.id,
    _inf.c.environment,
    _inf.c.task,
    _inf.c.request_body,
    _inf.c.response_body,
    _inf.c.metadata,
)

ProgressCallback = Callable[[int], None]
"""Called as ``progress(rows_stored)`` after each batch."""


class TrafficDatasetReport(BaseModel):
    """What a build did. Field names are stable (``--json``, API)."""

    dataset: DatasetInfo
    rows: int
    matched: int  # successful inferences the filter selected
    considered: int  # of those, how many were examined before --limit/--sample stopped
    overlap_removed: int  # same inference or same conversation as a row of the excluded set
    overlap_ratio: float  # overlap_removed / considered
    unconvertible: int  # successful inferences that are not chat conversations (embeddings...)
    warning: str | None


class OverlapReport(BaseModel):
    """Rows of each dataset also in the other (same inference or same content hash)."""

    a: str
    b: str
    a_rows: int
    b_rows: int
    a_in_b: int
    b_in_a: int
    shared_inferences: int  # rows of A whose inference is also behind a row of B
    a_fraction: float
    b_fraction: float


def create_dataset_from_traffic(
    store: Store,
    name: str,
    type: str,
    filters: TrafficFilter | None = None,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    exclude: str | None = None,
    progress: ProgressCallback | None = None,
) -> TrafficDatasetReport:
    """Build dataset ``name`` from the successful inferences a filter selects.

    ``limit`` keeps the first N (oldest first), ``sample`` a seeded random N; without either
    the slice must fit the type's limit. ``exclude`` names an eval dataset whose rows are kept
    out; it is required for a training dataset.
    """
    filters = filters or TrafficFilter()
    name = name.strip()
    if not name:
        raise ValidationError("a dataset needs a name")
    check_type(type)
    cap = max_rows(type)
    for option, value in (("--limit", limit), ("--sample", sample)):
        if value is not None and value < 1:
            raise ValidationError(f"{option} must be at least 1, got {value}")
        if value is not None and value > cap:
            raise LimitExceededError(
                f"{option} {value:,} is above the maximum of {cap:,} rows for a {type} dataset"
            )
    if limit is not None and sample is not None:
        raise ValidationError("use --limit or --sample, not both")
    if type == "training" and exclude is None:
        raise ValidationError(
            "a training dataset must exclude an eval dataset (--exclude EVAL_DATASET), so that "
            "no row you evaluate on is also trained on"
        )
    if filters.status not in (None, "success") and not (
        filters.status.isdigit() and 200 <= int(filters.status) < 300
    ):
        raise ValidationError(
            f"--status {filters.status}: only successful requests enter a dataset"
        )
    wanted = sample or limit
    stored_filter = {
        **filters.model_dump(mode="json", exclude_defaults=True),
        **{k: v for k, v in (("limit", limit), ("sample", sample)) if v is not None},
        **({"seed": seed} if sample is not None else {}),
        **({"exclude": exclude} if exclude else {}),
    }
    with store.engine.begin() as conn:
        excluded_id, ex_ids, ex_hashes = _excluded(conn, exclude)
        dataset_id = _create(conn, name, type, stored_filter, excluded_id)
        query = filtered(select(func.count()).select_from(_inf), filters)
        matched = conn.execute(query.where(_inf.c.success.is_(True))).scalar_one()
        if matched == 0:
            raise ValidationError("no successful inferences match the filter; nothing to build")
        build = _Build(conn, dataset_id, ex_ids, ex_hashes, progress)
        for inference in _stream(conn, filters, sample, seed):
            build.add(inference)
            if wanted is not None and build.kept >= wanted:
                break
            if wanted is None and build.kept > cap:
                raise LimitExceededError(
                    f"the filter selects more than {cap:,} rows, the maximum for a {type} "
                    f"dataset; narrow it, or take some with --limit N or --sample N"
                )
        build.flush()
        ratio = build.overlap / build.considered if build.considered else 0.0
        if build.kept == 0:
            if build.overlap:
                raise ValidationError(
                    f"all {build.overlap:,} matching rows are already in eval dataset "
                    f"'{exclude}' (100 % overlap); the training dataset would be empty"
                )
            raise ValidationError(
                f"none of the {matched:,} matching inferences is a chat conversation "
                "(only chat completions and messages can become dataset rows)"
            )
        rows, duplicates = count_rows(conn, dataset_id)
        conn.execute(
            update(_datasets)
            .where(_datasets.c.id == dataset_id)
            .values(row_count=rows, duplicate_count=duplicates)
        )
        info = dataset_by_name(conn, name)
    warning = None
    if ratio > WARN_OVERLAP:
        warning = (
            f"{ratio:.0%} of the matching rows were already in eval dataset '{exclude}' and "
            "were removed; the slice is probably too narrow"
        )
    return TrafficDatasetReport(
        dataset=info,
        rows=rows,
        matched=matched,
        considered=build.considered,
        overlap_removed=build.overlap,
        overlap_ratio=ratio,
        unconvertible=build.unconvertible,
        warning=warning,
    )


def _excluded(conn: Connection, exclude: str | None) -> tuple[int | None, set[int], set[str]]:
    if exclude is None:
        return None, set(), set()
    info = dataset_by_name(conn, exclude)
    if info.type != "eval":
        raise ValidationError(f"--exclude {exclude}: expected an eval dataset, it is {info.type}")
    return (info.id, *row_fingerprints(conn, info.id))


def _create(
    conn: Connection, name: str, type: str, filter: dict[str, Any], excluded_id: int | None
) -> int:
    message = f"a dataset named '{name}' already exists; choose another name"
    if conn.execute(select(_datasets.c.id).where(_datasets.c.name == name)).first():
        raise AlreadyExistsError(message)
    values = {
        "name": name,
        "type": type,
        "provenance": "traffic",
        "source": "traffic",
        "source_format": SOURCE,
        "filter": filter,
        "excluded_dataset_id": excluded_id,
        "row_count": 0,
        "duplicate_count": 0,
    }
    try:
        result = conn.execute(insert(_datasets).values(**values))
    except IntegrityError as exc:
        raise AlreadyExistsError(message) from exc
    return int(result.inserted_primary_key[0])


def _stream(
    conn: Connection, filters: TrafficFilter, sample: int | None, seed: int
) -> Iterator[Any]:
    """Matching successful inferences: oldest first, or in a seeded random order."""
    base = filtered(select(*_COLUMNS), filters).where(_inf.c.success.is_(True))
    if sample is None:
        query = base.order_by(_inf.c.started_at, _inf.c.id)
        yield from conn.execute(query.execution_options(yield_per=STREAM_CHUNK))
        return
    id_query = filtered(select(_inf.c.id), filters).where(_inf.c.success.is_(True))
    ids = list(conn.execute(id_query.order_by(_inf.c.id)).scalars())
    random.Random(seed).shuffle(ids)
    for start in range(0, len(ids), STREAM_CHUNK):
        chunk = ids[start : start + STREAM_CHUNK]
        by_id = {row.id: row for row in conn.execute(base.where(_inf.c.id.in_(chunk)))}
        for inference_id in chunk:
            yield by_id[inference_id]


class _Build:
    """Rows waiting to be inserted, and the counts the report needs."""

    def __init__(
        self,
        conn: Connection,
        dataset_id: int,
        ex_ids: set[int],
        ex_hashes: set[str],
        progress: ProgressCallback | None,
    ) -> None:
        self.conn, self.dataset_id, self.progress = conn, dataset_id, progress
        self.ex_ids, self.ex_hashes = ex_ids, ex_hashes
        self.pending: list[dict[str, Any]] = []
        self.kept = self.stored = self.considered = self.overlap = self.unconvertible = 0

    def add(self, inference: Any) -> None:
        metadata = dict(inference.metadata or {})
        metadata.setdefault("environment", inference.environment)
        metadata.setdefault("task", inference.task)
        try:
            row = parse_object(
                {
                    "request": inference.request_body or {},
                    "response": inference.response_body,
                    "metadata": metadata,
                },
                SOURCE,
            )
        except LineError:
            self.unconvertible += 1
            return
        self.considered += 1
        if inference.id in self.ex_ids or row.content_hash in self.ex_hashes:
            self.overlap += 1
            return
        self.pending.append(
            {
                "dataset_id": self.dataset_id,
                "position": self.kept,
                "messages": row.messages,
                "tools": row.tools,
                "reference": row.reference,
                "params": row.params,
                "metadata": row.metadata,
                "content_hash": row.content_hash,
                "inference_id": inference.id,
            }
        )
        self.kept += 1
        if len(self.pending) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        rows, self.pending = self.pending, []
        if not rows:
            return
        if self.conn.dialect.name == "postgresql":
            _copy_rows(self.conn, rows)
        else:
            self.conn.execute(insert(_rows), rows)
        self.stored += len(rows)
        if self.progress is not None:
            self.progress(self.stored)


_COPY_COLUMNS = (
    "dataset_id", "position", "messages", "tools", "reference", "params", "metadata",
    "content_hash", "inference_id",
)  # fmt: skip
_JSON_COLUMNS = frozenset({"messages", "tools", "reference", "params", "metadata"})


def _copy_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Postgres: COPY in the same transaction, about twice as fast as pipelined executemany."""
    raw: Any = conn.connection.driver_connection
    sql = f"COPY dataset_rows ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
    with raw.cursor() as cursor, cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(
                [
                    orjson.dumps(row[c]).decode()
                    if c in _JSON_COLUMNS and row[c] is not None
                    else row[c]
                    for c in _COPY_COLUMNS
                ]
            )


def dataset_overlap(store: Store, a: str, b: str) -> OverlapReport:
    """How many rows of A are in B and of B in A (same inference or same conversation)."""
    with store.engine.connect() as conn:
        info_a, info_b = dataset_by_name(conn, a), dataset_by_name(conn, b)
        a_in_b = _count_in(conn, info_a.id, info_b.id)
        b_in_a = _count_in(conn, info_b.id, info_a.id)
        shared = _count_in(conn, info_a.id, info_b.id, by_hash=False)
        a_rows, _ = count_rows(conn, info_a.id)
        b_rows, _ = count_rows(conn, info_b.id)
    return OverlapReport(
        a=a,
        b=b,
        a_rows=a_rows,
        b_rows=b_rows,
        a_in_b=a_in_b,
        b_in_a=b_in_a,
        shared_inferences=shared,
        a_fraction=a_in_b / a_rows if a_rows else 0.0,
        b_fraction=b_in_a / b_rows if b_rows else 0.0,
    )


def _count_in(conn: Connection, this: int, other: int, *, by_hash: bool = True) -> int:
    """Rows of dataset ``this`` matching a row of ``other`` (indexed EXISTS lookups)."""
    mine, theirs = _rows.alias("mine"), _rows.alias("theirs")
    same_inference = exists().where(
        and_(theirs.c.dataset_id == other, theirs.c.inference_id == mine.c.inference_id)
    )
    condition: Any = same_inference
    if by_hash:
        same_content = exists().where(
            and_(theirs.c.dataset_id == other, theirs.c.content_hash == mine.c.content_hash)
        )
        condition = or_(same_inference, same_content)
    query = select(func.count()).select_from(mine).where(mine.c.dataset_id == this, condition)
    return int(conn.execute(query).scalar_one())
