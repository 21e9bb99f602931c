"""``/api/v1/traffic``: captured inferences (filtered list, one, statistics) and datasets
sliced from them. The filters are those of ``assay traffic list``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from assay.traffic import (
    InferenceDetail,
    InferenceSummary,
    TrafficDatasetReport,
    TrafficFilter,
    TrafficStats,
    create_dataset_from_traffic,
    get_inference,
    list_inferences,
    parse_filter,
    traffic_stats,
)
from assay.web.api.common import MAX_INT, Page, errors
from assay.web.deps import PagingDep, StoreDep

router = APIRouter(tags=["traffic"], responses=errors(404, 422))

_STATUS = "success, error, or an HTTP status code."
_SINCE = "Started at or after (2026-01-31 or an ISO time, UTC)."
_UNTIL = "Started before (a date or an ISO time, UTC)."
_METADATA = "key=value; repeat to require several."


def traffic_filter(
    environment: Annotated[str | None, Query(description="Only this environment.")] = None,
    task: Annotated[str | None, Query(description="Only this task.")] = None,
    provider: Annotated[str | None, Query(description="Only this provider.")] = None,
    model: Annotated[str | None, Query(description="Only this model.")] = None,
    status: Annotated[str | None, Query(description=_STATUS)] = None,
    since: Annotated[str | None, Query(description=_SINCE)] = None,
    until: Annotated[str | None, Query(description=_UNTIL)] = None,
    metadata: Annotated[list[str] | None, Query(description=_METADATA)] = None,
) -> TrafficFilter:
    """The query's filter, parsed as the CLI parses its options (same messages)."""
    return parse_filter(
        environment=environment,
        task=task,
        provider=provider,
        model=model,
        status=status,
        since=since,
        until=until,
        metadata=metadata,
    )


FilterDep = Annotated[TrafficFilter, Depends(traffic_filter)]


@router.get("/traffic", response_model=Page[InferenceSummary])
def traffic_list(store: StoreDep, paging: PagingDep, f: FilterDep) -> dict[str, Any]:
    """Inferences matching the filter, newest first."""
    items = list_inferences(store, f, limit=paging.limit, offset=paging.offset)
    return paging.envelope(items)


@router.get("/traffic/stats", response_model=list[TrafficStats])
def traffic_stats_(store: StoreDep, f: FilterDep) -> list[TrafficStats]:
    """Per task and model: count, error rate, p50/p95 latency, tokens, cost."""
    return traffic_stats(store, f)


class FilterFields(BaseModel):
    """The traffic filter, as strings like the list's query parameters."""

    model_config = ConfigDict(extra="forbid")

    environment: str | None = Field(None, description="Only this environment.")
    task: str | None = Field(None, description="Only this task.")
    provider: str | None = Field(None, description="Only this provider.")
    model: str | None = Field(None, description="Only this model.")
    status: str | None = Field(None, description="success or a 2xx code: only successes enter.")
    since: str | None = Field(None, description=_SINCE)
    until: str | None = Field(None, description=_UNTIL)
    metadata: list[str] = Field(default_factory=list, description=_METADATA)


class TrafficDatasetCreate(FilterFields):
    """A dataset built from the successful inferences a filter selects."""

    name: str = Field(description="Name of the new dataset.")
    type: Literal["eval", "training"] = Field(
        description="eval (≤ 10,000 rows) or training (≤ 1,000,000)."
    )
    limit: int | None = Field(None, description="The first N rows (oldest first).")
    sample: int | None = Field(None, description="A seeded random sample of N.")
    seed: int = Field(0, description="Seed of the sample.")
    exclude: str | None = Field(
        None, description="Eval dataset whose rows are kept out (required for training)."
    )


@router.post(
    "/traffic/datasets",
    status_code=201,
    response_model=TrafficDatasetReport,
    responses=errors(409, 413),
)
def traffic_to_dataset(body: TrafficDatasetCreate, store: StoreDep) -> TrafficDatasetReport:
    """Create a dataset from captured traffic, the filter stored alongside; ``warning`` says
    when the excluded eval dataset overlapped much of the slice."""
    f = parse_filter(**body.model_dump(include=set(FilterFields.model_fields)))
    return create_dataset_from_traffic(
        store,
        body.name,
        body.type,
        f,
        limit=body.limit,
        sample=body.sample,
        seed=body.seed,
        exclude=body.exclude,
    )


@router.get("/traffic/{inference_id}", response_model=InferenceDetail)
def traffic_show(
    inference_id: Annotated[int, Path(ge=1, le=MAX_INT)], store: StoreDep
) -> InferenceDetail:
    """One inference with its request and response bodies."""
    return get_inference(store, inference_id)
