"""``/api/v1/groups``: launch run groups in the background, follow, cancel, resume, and read
their summary, rows, score distributions and statistical comparison."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from assay.engine.background import (
    CancelReport,
    GroupStatus,
    cancel_group,
    group_status,
    start_worker,
)
from assay.engine.groups import GroupInfo, create_group, list_groups
from assay.engine.results import (
    GroupSummary,
    RowDetail,
    RowResult,
    group_rows,
    group_summary,
    row_detail,
)
from assay.stats.compare import GroupComparison, compare_group
from assay.stats.summary import Bucket
from assay.store import Store
from assay.web.api.common import MAX_INT, GroupId, Page, Position, errors
from assay.web.deps import PagingDep, StoreDep

router = APIRouter(tags=["run groups"], responses=errors(404, 422))


class ExecutionOptions(BaseModel):
    """How the background worker executes; none of it changes what is measured."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: int = Field(32, ge=1, le=1024, description="Calls in flight, in total.")
    use_cache: bool = Field(True, description="Read the response cache.")
    max_attempts: int | None = Field(None, ge=1, le=20, description="Attempts per call.")
    timeout_s: float | None = Field(None, gt=0, description="Seconds per attempt.")


class GroupCreate(ExecutionOptions):
    """A run group of an eval, started at once in the background."""

    eval: str = Field(description="The eval definition to run.")
    name: str | None = Field(None, description="A label for this run group.")
    sample_size: int | None = Field(
        None, ge=1, le=MAX_INT, description="Override the eval's sample size."
    )
    with_captured: bool | None = Field(
        None,
        description="Judge the dataset's captured outputs as an arm (default: as the eval says).",
    )
    judge_samples: int | None = Field(
        None, description="Judgments per output (default: as the eval says)."
    )


class GroupResume(ExecutionOptions):
    retry_failed: bool = Field(
        False, description="Also redo rows whose generation or judgment failed."
    )


@router.get("/groups", response_model=Page[GroupInfo])
def groups_list(
    store: StoreDep,
    paging: PagingDep,
    eval: Annotated[str | None, Query(description="Only this eval's groups.")] = None,
) -> dict[str, Any]:
    """Run groups, newest first."""
    return paging.envelope(list_groups(store, eval, limit=paging.limit, offset=paging.offset))


@router.post("/groups", status_code=202, response_model=GroupStatus)
def groups_start(body: GroupCreate, store: StoreDep) -> GroupStatus:
    """Create a run group from an eval (every arm on the same seeded sample) and execute it
    in a background worker; follow it with ``GET /groups/{id}``."""
    group = create_group(
        store,
        body.eval,
        sample_size=body.sample_size,
        name=body.name,
        with_captured=body.with_captured,
        judge_samples=body.judge_samples,
    )
    _start(store, group.id, body, retry_failed=False)
    return group_status(store, group.id)


@router.get("/groups/{group_id}", response_model=GroupStatus)
def groups_status(group_id: GroupId, store: StoreDep) -> GroupStatus:
    """Status, per-arm progress counts (done, scored, failed by kind, pending) and worker."""
    return group_status(store, group_id)


@router.post("/groups/{group_id}/resume", status_code=202, response_model=GroupStatus)
def groups_resume(
    group_id: GroupId, store: StoreDep, body: GroupResume | None = None
) -> GroupStatus:
    """Finish a cancelled, interrupted or failed group in a background worker: only what is
    missing is done (with ``retry_failed``, failed rows too)."""
    options = body or GroupResume()
    _start(store, group_id, options, retry_failed=options.retry_failed)
    return group_status(store, group_id)


def _start(store: Store, group_id: int, options: ExecutionOptions, *, retry_failed: bool) -> None:
    start_worker(
        store,
        group_id,
        retry_failed=retry_failed,
        max_concurrency=options.max_concurrency,
        use_cache=options.use_cache,
        max_attempts=options.max_attempts,
        timeout_s=options.timeout_s,
    )


@router.post("/groups/{group_id}/cancel", response_model=CancelReport)
def groups_cancel(group_id: GroupId, store: StoreDep) -> CancelReport:
    """Stop the group's worker cleanly (finished rows are kept; resume does the rest). Only a
    worker on this host can be stopped from here."""
    return cancel_group(store, group_id)


@router.get("/groups/{group_id}/summary", response_model=GroupSummary)
def groups_summary(group_id: GroupId, store: StoreDep) -> GroupSummary:
    """Per model: scores over scored rows, failures by kind, latency, tokens, cost."""
    return group_summary(store, group_id)


@router.get("/groups/{group_id}/rows", response_model=Page[RowResult])
def groups_rows(
    group_id: GroupId,
    store: StoreDep,
    paging: PagingDep,
    model: Annotated[str | None, Query(description="Only this model's rows.")] = None,
    status: Annotated[
        str | None,
        Query(
            description="scored, generation_failed, judge_failed, judge_unparseable, pending, "
            "or failed (any failure)."
        ),
    ] = None,
    below: Annotated[float | None, Query(description="Only scores below this.")] = None,
    min_score: Annotated[float | None, Query(description="Only scores at least this.")] = None,
    max_score: Annotated[float | None, Query(description="Only scores at most this.")] = None,
    regressions: Annotated[
        bool, Query(description="Only rows where a model scored below the baseline.")
    ] = False,
    slice: Annotated[
        str | None, Query(description="Only rows whose metadata has key=value.")
    ] = None,
    sort: Annotated[Literal["row", "score", "diff"], Query(description="Sort key.")] = "row",
    descending: Annotated[bool, Query(description="Largest first.")] = False,
) -> dict[str, Any]:
    """The rows table, one line per (row, model), filtered, sorted and paginated."""
    items = group_rows(
        store,
        group_id,
        model=model,
        status=status,
        below=below,
        min_score=min_score,
        max_score=max_score,
        regressions=regressions,
        slice=slice,
        sort=sort,
        descending=descending,
        limit=paging.limit,
        offset=paging.offset,
    )
    return paging.envelope(items)


@router.get("/groups/{group_id}/rows/{position}", response_model=RowDetail)
def groups_row(group_id: GroupId, position: Position, store: StoreDep) -> RowDetail:
    """One sampled row: the request, each arm's output and every judgment."""
    return row_detail(store, group_id, position)


class ModelDistribution(BaseModel):
    run_id: int
    model: str
    role: str
    scored: int
    buckets: list[Bucket]


class ScoreDistribution(BaseModel):
    """Score histogram per model: one bucket per integer score (ten for wide ranges)."""

    group_id: int
    score_min: int
    score_max: int
    models: list[ModelDistribution]


@router.get("/groups/{group_id}/distribution", response_model=ScoreDistribution)
def groups_distribution(group_id: GroupId, store: StoreDep) -> ScoreDistribution:
    """The score distribution of each model, over its scored rows."""
    summary = group_summary(store, group_id)
    return ScoreDistribution(
        group_id=summary.id,
        score_min=summary.score_min,
        score_max=summary.score_max,
        models=[
            ModelDistribution(
                run_id=r.run_id, model=r.model, role=r.role, scored=r.scored, buckets=r.distribution
            )
            for r in summary.runs
        ],
    )


@router.get("/groups/{group_id}/compare", response_model=GroupComparison)
def groups_compare(
    group_id: GroupId,
    store: StoreDep,
    slice_by: Annotated[
        list[str] | None,
        Query(description="Also compare per value of this metadata key (repeat)."),
    ] = None,
    against_baseline: Annotated[
        bool, Query(description="Compare with the eval's accepted baseline group.")
    ] = False,
    seed: Annotated[
        int, Query(ge=0, le=MAX_INT, description="Bootstrap seed: same seed, same intervals.")
    ] = 0,
    resamples: Annotated[
        int, Query(ge=100, le=100_000, description="Bootstrap resamples.")
    ] = 10_000,
) -> GroupComparison:
    """Each arm against the baseline: paired difference with its interval, win/tie/loss,
    failures, slices, judge noise, the rows needed. The group must be finished."""
    return compare_group(
        store,
        group_id,
        slice_by=slice_by or [],
        against_baseline=against_baseline,
        seed=seed,
        resamples=resamples,
    )
