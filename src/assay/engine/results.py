"""Reading a run group back: the summary, the rows table, one row in detail."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from assay.engine.groups import GroupInfo, group_info
from assay.errors import NotFoundError, ValidationError
from assay.stats.summary import OUTCOMES, RowOutcome, RunSummary, row_outcomes, summarize_run
from assay.store import Store
from assay.store.lookup import run_group_by_id
from assay.store.models import DatasetRow, Generation, Judgment, Run, RunGroup, RunGroupRow


class GroupSummary(BaseModel):
    id: int
    name: str | None
    eval: str | None
    status: str
    sample_size: int
    dataset: str
    rubric: str
    rubric_version: int
    judge: str
    judge_samples: int
    score_min: int
    score_max: int
    runs: list[RunSummary]


class RowResult(BaseModel):
    """One (row, model) line of the rows table."""

    row: int  # the dataset row's position, as `assay dataset rows` shows it
    model: str
    role: str
    status: str
    score: float | None
    baseline_score: float | None
    diff: float | None  # score - baseline score, when both scored
    output_preview: str | None


class JudgmentDetail(BaseModel):
    sample_index: int
    status: str
    score: float | None
    reasoning: str | None
    raw_output: str | None
    error: str | None
    latency_ms: float | None
    cost_usd: float | None


class ArmDetail(BaseModel):
    model: str
    role: str
    status: str  # the row's outcome for this arm
    score: float | None
    output: dict[str, Any] | None
    error: str | None
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    judgments: list[JudgmentDetail]


class RowDetail(BaseModel):
    group_id: int
    row: int
    row_id: int
    messages: list[Any]
    tools: list[Any] | None
    reference: dict[str, Any] | None
    metadata: dict[str, Any]
    arms: list[ArmDetail]


def group_summary(store: Store, group_id: int) -> GroupSummary:
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        info = group_info(session, group)
        runs = _runs(session, group)
        baseline_run = next((r for r in runs if r.role == "baseline"), None)
        baseline = row_outcomes(session, group, baseline_run.id) if baseline_run else None
        summaries = [
            summarize_run(session, group, run, None if run is baseline_run else baseline)
            for run in runs
        ]
        version = group_version(session, group)
        return GroupSummary(
            **_header(info),
            score_min=version.score_min,
            score_max=version.score_max,
            runs=summaries,
        )


def _header(info: GroupInfo) -> dict[str, Any]:
    keep = ("id", "name", "eval", "status", "sample_size", "dataset", "rubric")
    return {
        **{k: getattr(info, k) for k in keep},
        "rubric_version": info.rubric_version,
        "judge": info.judge,
        "judge_samples": info.judge_samples,
    }


def group_version(session: Any, group: RunGroup) -> Any:
    from assay.store.models import RubricVersion

    version = session.get(RubricVersion, group.rubric_version_id)
    assert version is not None
    return version


def _runs(session: Any, group: RunGroup) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.group_id == group.id).order_by(Run.id)))


def _run_by_model(runs: list[Run], model: str) -> Run:
    for run in runs:
        if run.label == model:
            return run
    names = ", ".join(r.label for r in runs)
    raise NotFoundError(f"no model {model!r} in this group (models: {names})")


def group_rows(
    store: Store,
    group_id: int,
    *,
    model: str | None = None,
    status: str | None = None,
    below: float | None = None,
    regressions: bool = False,
    sort: str = "row",
    limit: int = 50,
    offset: int = 0,
) -> list[RowResult]:
    """The rows table, one line per (row, model), filtered and sorted."""
    if status is not None and status not in OUTCOMES and status != "failed":
        allowed = ", ".join((*OUTCOMES, "failed"))
        raise ValidationError(f"unknown status {status!r}; expected one of {allowed}")
    if sort not in ("row", "score", "diff"):
        raise ValidationError(f"unknown sort {sort!r}; expected row, score or diff")
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        runs = _runs(session, group)
        selected = [_run_by_model(runs, model)] if model else runs
        baseline_run = next((r for r in runs if r.role == "baseline"), None)
        baseline = row_outcomes(session, group, baseline_run.id) if baseline_run else {}
        positions = dict(
            session.execute(
                select(DatasetRow.id, DatasetRow.position)
                .join(RunGroupRow, RunGroupRow.row_id == DatasetRow.id)
                .where(RunGroupRow.group_id == group.id)
            ).all()
        )
        results: list[tuple[RowResult, int | None]] = []
        for run in selected:
            outcomes = baseline if run is baseline_run else row_outcomes(session, group, run.id)
            for row_id, position in positions.items():
                outcome = outcomes.get(row_id)
                result = _row_result(run, position, outcome, baseline.get(row_id))
                if _keep(result, status, below, regressions, run is baseline_run):
                    results.append((result, outcome.generation_id if outcome else None))
        results.sort(key=_sort_key(sort))
        page = results[offset : offset + limit]
        previews = _previews(session, [gen_id for _, gen_id in page if gen_id])
        for result, gen_id in page:
            result.output_preview = previews.get(gen_id) if gen_id else None
        return [result for result, _ in page]


def _row_result(
    run: Run, position: int, outcome: RowOutcome | None, base: RowOutcome | None
) -> RowResult:
    score = outcome.score if outcome else None
    base_score = base.score if base else None
    diff = score - base_score if score is not None and base_score is not None else None
    return RowResult(
        row=position,
        model=run.label,
        role=run.role,
        status=outcome.status if outcome else "pending",
        score=score,
        baseline_score=base_score,
        diff=diff,
        output_preview=None,
    )


def _keep(
    result: RowResult, status: str | None, below: float | None, regressions: bool, is_base: bool
) -> bool:
    if status == "failed" and result.status in ("scored", "pending"):
        return False
    if status not in (None, "failed") and result.status != status:
        return False
    if below is not None and (result.score is None or result.score >= below):
        return False
    return not regressions or (not is_base and result.diff is not None and result.diff < 0)


def _sort_key(sort: str) -> Any:
    if sort == "score":
        return lambda item: (item[0].score is None, item[0].score or 0.0, item[0].row)
    if sort == "diff":
        return lambda item: (item[0].diff is None, item[0].diff or 0.0, item[0].row)
    return lambda item: (item[0].row, item[0].role != "baseline", item[0].model)


def _previews(session: Any, generation_ids: list[int]) -> dict[int, str]:
    from assay.rubrics.transcript import format_message_body

    rows = session.execute(
        select(Generation.id, Generation.output, Generation.error).where(
            Generation.id.in_(generation_ids)
        )
    ).all()
    previews = {}
    for gen_id, output, error in rows:
        text = format_message_body(output) if output else (error or "")
        previews[gen_id] = " ".join(text.split())[:120]
    return previews


def row_detail(store: Store, group_id: int, position: int) -> RowDetail:
    """Everything about one sampled row: the request, each arm's output and its judgments."""
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        row = session.scalar(
            select(DatasetRow)
            .join(RunGroupRow, RunGroupRow.row_id == DatasetRow.id)
            .where(RunGroupRow.group_id == group.id, DatasetRow.position == position)
        )
        if row is None:
            raise NotFoundError(
                f"row {position} is not in run group {group_id}'s sample "
                f"(see `assay run rows {group_id}`)"
            )
        arms = []
        for run in _runs(session, group):
            outcome = row_outcomes(session, group, run.id).get(row.id)
            generation = session.scalar(
                select(Generation).where(Generation.run_id == run.id, Generation.row_id == row.id)
            )
            judgments = (
                session.scalars(
                    select(Judgment)
                    .where(Judgment.generation_id == generation.id, Judgment.group_id == group.id)
                    .order_by(Judgment.sample_index)
                ).all()
                if generation
                else []
            )
            arms.append(
                ArmDetail(
                    model=run.label,
                    role=run.role,
                    status=outcome.status if outcome else "pending",
                    score=outcome.score if outcome else None,
                    output=generation.output if generation else None,
                    error=generation.error if generation else None,
                    latency_ms=generation.latency_ms if generation else None,
                    input_tokens=generation.input_tokens if generation else None,
                    output_tokens=generation.output_tokens if generation else None,
                    cost_usd=generation.cost_usd if generation else None,
                    judgments=[
                        JudgmentDetail(
                            sample_index=j.sample_index,
                            status=j.status,
                            score=j.score,
                            reasoning=j.reasoning,
                            raw_output=j.raw_output,
                            error=j.error,
                            latency_ms=j.latency_ms,
                            cost_usd=j.cost_usd,
                        )
                        for j in judgments
                    ],
                )
            )
        return RowDetail(
            group_id=group.id,
            row=row.position,
            row_id=row.id,
            messages=row.messages,
            tools=row.tools,
            reference=row.reference,
            metadata=row.metadata_ or {},
            arms=arms,
        )
