"""Browsing captured traffic: filters, one inference, per task/model statistics.

Every filter maps onto an index of ``inferences`` (column + ``started_at``) or of
``inference_tags`` (``key, value``), so listing stays fast at a million inferences. Statistics
are aggregated by the database; only one row per task/model comes back to Python.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.sql.elements import ColumnElement

from assay.errors import NotFoundError, ValidationError
from assay.store import Store
from assay.store.models import Inference, InferenceTag

_inf = Inference.__table__
_tags = InferenceTag.__table__

DEFAULT_LIMIT = 50


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every timestamp Assay shows is UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class TrafficFilter(BaseModel):
    """Which inferences a command looks at; stored as is in ``Dataset.filter``."""

    environment: str | None = None
    task: str | None = None
    provider: str | None = None
    model: str | None = None
    status: str | None = None  # success | error | an HTTP status code
    since: datetime | None = None
    until: datetime | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if value is None or value in ("success", "error"):
            return value
        if value.isdigit() and 100 <= int(value) <= 599:
            return value
        raise ValueError(f"expected success, error or an HTTP status code, got {value!r}")


def parse_filter(
    *,
    environment: str | None = None,
    task: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    status: str | None = None,
    since: str | None = None,
    until: str | None = None,
    metadata: list[str] | None = None,
) -> TrafficFilter:
    """Build a filter from command-line strings, with a message naming the bad option."""
    try:
        status = TrafficFilter._status(status)
    except ValueError as exc:
        raise ValidationError(f"--status: {exc}") from None
    pairs: dict[str, str] = {}
    for item in metadata or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"--metadata: expected key=value, got {item!r}")
        pairs[key.strip()] = value
    start, end = _parse_time(since, "--since"), _parse_time(until, "--until")
    if start and end and start > end:
        raise ValidationError(f"--since {since} is after --until {until}")
    return TrafficFilter(
        environment=environment,
        task=task,
        provider=provider,
        model=model,
        status=status,
        since=start,
        until=end,
        metadata=pairs,
    )


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"{option}: expected a date or time like 2026-01-31 or 2026-01-31T12:00:00Z, "
            f"got {value!r}"
        ) from None
    return _utc(parsed)


def conditions(f: TrafficFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a filter (metadata as indexed tag lookups)."""
    where: list[ColumnElement[bool]] = []
    for column in ("environment", "task", "provider", "model"):
        value = getattr(f, column)
        if value is not None:
            where.append(_inf.c[column] == value)
    if f.status == "success":
        where.append(_inf.c.success.is_(True))
    elif f.status == "error":
        where.append(_inf.c.success.is_(False))
    elif f.status is not None:
        where.append(_inf.c.status_code == int(f.status))
    if f.since is not None:
        where.append(_inf.c.started_at >= f.since)
    if f.until is not None:
        where.append(_inf.c.started_at < f.until)
    for key, value in f.metadata.items():
        tagged = select(_tags.c.inference_id).where(
            and_(_tags.c.key == key, _tags.c.value == value)
        )
        where.append(_inf.c.id.in_(tagged))
    return where


def filtered(query: Select[Any], f: TrafficFilter) -> Select[Any]:
    """``query`` restricted to the inferences a filter selects."""
    where = conditions(f)
    return query.where(*where) if where else query


class InferenceSummary(BaseModel):
    """One inference in a list. Field names are stable (``--json``, API)."""

    id: int
    uid: str
    started_at: datetime
    environment: str
    task: str
    provider: str
    model: str | None
    path: str
    status_code: int | None
    success: bool
    streamed: bool
    duration_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    error: str | None

    @field_validator("started_at")
    @classmethod
    def _tz(cls, value: datetime) -> datetime | None:
        return _utc(value)


class InferenceDetail(InferenceSummary):
    """One inference with its bodies, for ``traffic show``."""

    method: str
    ttft_ms: float | None
    prompt_hash: str | None
    request_truncated: bool
    response_truncated: bool
    request_body: dict[str, Any] | None
    response_body: dict[str, Any] | None
    metadata: dict[str, Any]


_SUMMARY_COLUMNS = [_inf.c[name] for name in InferenceSummary.model_fields]


def list_inferences(
    store: Store, f: TrafficFilter | None = None, limit: int = DEFAULT_LIMIT, offset: int = 0
) -> list[InferenceSummary]:
    """The most recent inferences matching a filter, newest first (``offset`` pages on)."""
    if limit < 1:
        raise ValidationError(f"--limit must be at least 1, got {limit}")
    if offset < 0:
        raise ValidationError(f"--offset must be 0 or more, got {offset}")
    query = filtered(select(*_SUMMARY_COLUMNS), f or TrafficFilter())
    query = query.order_by(_inf.c.started_at.desc(), _inf.c.id.desc()).limit(limit).offset(offset)
    with store.engine.connect() as conn:
        return [InferenceSummary.model_validate(row._mapping) for row in conn.execute(query)]


def get_inference(store: Store, inference_id: int) -> InferenceDetail:
    """One inference by id, bodies included."""
    with store.engine.connect() as conn:
        row = conn.execute(select(_inf).where(_inf.c.id == inference_id)).first()
    if row is None:
        raise NotFoundError(f"no inference with id {inference_id} (see `assay traffic list`)")
    data = dict(row._mapping)
    data["metadata"] = data.pop("metadata") or {}
    return InferenceDetail.model_validate(data)


class TrafficStats(BaseModel):
    """Aggregates for one task/model pair; latency percentiles are nearest-rank."""

    task: str
    model: str | None
    count: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float


def traffic_stats(store: Store, f: TrafficFilter | None = None) -> list[TrafficStats]:
    """Count, error rate, p50/p95 latency, tokens and cost per task and model."""
    f = f or TrafficFilter()
    keys = (_inf.c.task, _inf.c.model)
    totals = filtered(
        select(
            *keys,
            func.count().label("count"),
            func.sum(case((_inf.c.success.is_(False), 1), else_=0)).label("errors"),
            func.coalesce(func.sum(_inf.c.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(_inf.c.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(_inf.c.cost_usd), 0.0).label("cost_usd"),
        ),
        f,
    ).group_by(*keys)
    with store.engine.connect() as conn:
        rows = conn.execute(totals).all()
        percentiles = {(r.task, r.model): (r.p50, r.p95) for r in conn.execute(_percentiles(f))}
    out = []
    for row in rows:
        p50, p95 = percentiles.get((row.task, row.model), (None, None))
        out.append(
            TrafficStats(
                task=row.task,
                model=row.model,
                count=row.count,
                errors=int(row.errors or 0),
                error_rate=(row.errors or 0) / row.count if row.count else 0.0,
                p50_ms=p50,
                p95_ms=p95,
                input_tokens=int(row.input_tokens),
                output_tokens=int(row.output_tokens),
                cost_usd=float(row.cost_usd),
            )
        )
    return sorted(out, key=lambda s: (s.task, s.model or ""))


def _percentiles(f: TrafficFilter) -> Select[Any]:
    """p50/p95 per task/model by window functions (portable: SQLite has no percentile_cont)."""
    keys = (_inf.c.task, _inf.c.model)
    ranked = filtered(
        select(
            *keys,
            _inf.c.duration_ms,
            func.row_number().over(partition_by=keys, order_by=_inf.c.duration_ms).label("rn"),
            func.count().over(partition_by=keys).label("n"),
        ).where(_inf.c.duration_ms.is_not(None)),
        f,
    ).subquery()

    def at(percent: int) -> Any:
        # Nearest rank: ceil(n * p / 100) in integer arithmetic, the same on both dialects.
        rank = (ranked.c.n * percent + 99) // 100
        return func.max(case((ranked.c.rn == rank, ranked.c.duration_ms)))

    return select(ranked.c.task, ranked.c.model, at(50).label("p50"), at(95).label("p95")).group_by(
        ranked.c.task, ranked.c.model
    )
