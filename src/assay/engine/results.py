"""Reading a run group back: the summary, the rows table, one row in detail."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select

from assay.engine.groups import GroupInfo, group_info
from assay.errors import NotFoundError, ValidationError
from assay.rubrics.judge import JudgePrompt, build_judge_prompt
from assay.rubrics.pairwise import build_pair_prompt
from assay.stats.aggregate import summarize_runs
from assay.stats.outcomes import join_outcome, judgments_per_output, outcome_select
from assay.stats.summary import OUTCOMES, RunSummary
from assay.store import Store
from assay.store.lookup import run_group_by_id
from assay.store.models import (
    DatasetRow,
    Generation,
    Inference,
    Judgment,
    Run,
    RunGroup,
    RunGroupRow,
)


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
    score: float | None  # final: after the rubric's checks combine with the judge's score
    judge_score: float | None = None  # the judge's own (None when it was not asked)
    checks: list[dict[str, Any]] | None = None  # name, type, passed, detail per check
    reasoning: str | None
    raw_output: str | None
    error: str | None
    latency_ms: float | None
    cost_usd: float | None
    # Pairwise rubrics: where this arm's output stood, and which output the judge preferred.
    candidate_position: str | None = None  # "A" | "B"
    preference: str | None = None  # candidate | baseline | tie


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
        version = group_version(session, group)
        runs = _runs(session, group)
        return GroupSummary(
            **_header(info),
            score_min=version.score_min,
            score_max=version.score_max,
            runs=_SUMMARIES.get(store, session, group, runs),
        )


class _SummaryCache:
    """Run summaries of recently viewed groups, reused while the group is unchanged.

    A finished group is read far more often than it changes (every page view, every poll), and
    its summary costs a pass over all its rows. The fingerprint changes whenever the engine
    writes to the group: each flush moves its heartbeat, and the counts and last ids of its
    generations and judgments catch anything else (a retry that deleted failed rows, say).
    """

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[str, int], tuple[tuple[Any, ...], list[RunSummary]]] = (
            OrderedDict()
        )
        self.lock = threading.Lock()

    def get(self, store: Store, session: Any, group: RunGroup, runs: list[Run]) -> list[RunSummary]:
        key = (store.settings.database_url, group.id)
        stamp = self.fingerprint(session, group, runs)
        with self.lock:
            hit = self.entries.get(key)
            if hit is not None and hit[0] == stamp:
                self.entries.move_to_end(key)
                return [summary.model_copy(deep=True) for summary in hit[1]]
        summaries = summarize_runs(session, group, runs)
        with self.lock:
            self.entries[key] = (stamp, [summary.model_copy(deep=True) for summary in summaries])
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return summaries

    @staticmethod
    def fingerprint(session: Any, group: RunGroup, runs: list[Run]) -> tuple[Any, ...]:
        judgments = session.execute(
            select(func.count(), func.max(Judgment.id)).where(Judgment.group_id == group.id)
        ).one()
        generations = session.execute(
            select(func.count(), func.max(Generation.id)).where(
                Generation.run_id.in_([r.id for r in runs])
            )
        ).one()
        return (
            group.heartbeat_at,
            group.finished_at,
            tuple((r.id, r.status) for r in runs),
            tuple(judgments),
            tuple(generations),
        )


_SUMMARIES = _SummaryCache()


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


ROW_SORTS = ("row", "score", "diff")


def group_rows(store: Store, group_id: int, **filters: Any) -> list[RowResult]:
    """The rows table, one line per (row, model): ``rows_page`` without the count."""
    return rows_page(store, group_id, with_total=False, **filters).items


class RowsPage(BaseModel):
    items: list[RowResult]
    total: int | None  # lines matching the filters, when asked for


def rows_page(
    store: Store,
    group_id: int,
    *,
    model: str | None = None,
    status: str | None = None,
    below: float | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
    regressions: bool = False,
    slice: str | None = None,
    sort: str = "row",
    descending: bool = False,
    limit: int = 50,
    offset: int = 0,
    with_total: bool = True,
) -> RowsPage:
    """``group_rows`` and, with ``with_total``, how many lines match in all."""
    if status is not None and status not in OUTCOMES and status != "failed":
        allowed = ", ".join((*OUTCOMES, "failed"))
        raise ValidationError(f"unknown status {status!r}; expected one of {allowed}")
    if sort not in ROW_SORTS:
        raise ValidationError(f"unknown sort {sort!r}; expected row, score or diff")
    if limit < 1 or offset < 0:
        raise ValidationError("limit must be at least 1 and offset at least 0")
    slice_key, slice_value = _parse_slice(slice)
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        runs = _runs(session, group)
        selected = [_run_by_model(runs, model)] if model else runs
        baseline = next((r for r in runs if r.role == "baseline"), None)
        samples = judgments_per_output(session, group)
        if samples != group.judge_samples:  # pairwise: the baseline is compared with, not judged
            selected = [r for r in selected if r.role != "baseline"]
            baseline = None
        query = (
            select(DatasetRow.position, Run.label, Run.role)
            .select_from(RunGroupRow)
            .join(Run, Run.group_id == RunGroupRow.group_id)
            .join(DatasetRow, DatasetRow.id == RunGroupRow.row_id)
            .where(RunGroupRow.group_id == group.id, Run.id.in_([r.id for r in selected]))
        )
        query, run_status, score, generation_id = join_outcome(
            query, group.id, samples, [r.id for r in selected], Run.id,
            RunGroupRow.row_id,
        )  # fmt: skip
        query, _, base_score, _ = join_outcome(
            query, group.id, samples, [baseline.id] if baseline else [],
            baseline.id if baseline else -1, RunGroupRow.row_id,
        )  # fmt: skip
        diff = (score - base_score).label("diff")
        query = query.add_columns(
            run_status.label("status"),
            score.label("score"),
            base_score.label("baseline_score"),
            diff,
            generation_id.label("generation_id"),
        )
        if status == "failed":
            query = query.where(run_status.not_in(("scored", "pending")))
        elif status is not None:
            query = query.where(run_status == status)
        if below is not None:
            query = query.where(score < below)
        if min_score is not None:
            query = query.where(score >= min_score)
        if max_score is not None:
            query = query.where(score <= max_score)
        if regressions:
            query = query.where(Run.role != "baseline", diff < 0)
        if slice_key is not None:
            query = query.where(_slice_value(slice_key) == slice_value)
            if slice_key in ("task", "environment"):
                query = query.outerjoin(Inference, Inference.id == DatasetRow.inference_id)
        filtered = status or regressions or slice_key is not None
        filtered = filtered or any(v is not None for v in (below, min_score, max_score))
        total = None
        if with_total:
            total = (
                session.scalar(select(func.count()).select_from(query.subquery()))
                if filtered
                else group.sample_size * len(selected)
            )
        query = query.order_by(*_order(sort, descending, score, diff)).limit(limit).offset(offset)
        page = session.execute(query).all()
        previews = _previews(session, [line.generation_id for line in page if line.generation_id])
        items = [
            RowResult(
                row=position,
                model=label,
                role=role,
                status=line_status,
                score=None if line_score is None else float(line_score),
                baseline_score=None if line_base is None else float(line_base),
                diff=None if line_diff is None else float(line_diff),
                output_preview=previews.get(gen_id) if gen_id else None,
            )
            for position, label, role, line_status, line_score, line_base, line_diff, gen_id in page
        ]
        return RowsPage(items=items, total=total)


def _parse_slice(value: str | None) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    key, sep, wanted = value.partition("=")
    if not sep or not key.strip():
        raise ValidationError(f"slice {value!r}: expected KEY=VALUE, e.g. tier=pro")
    return key.strip(), wanted


def _slice_value(key: str) -> Any:
    """A row's value for a slice key: its metadata, else (task, environment) its inference's."""
    value = DatasetRow.metadata_[key].as_string()
    if key == "task":
        return func.coalesce(value, Inference.task)
    if key == "environment":
        return func.coalesce(value, Inference.environment)
    return value


def _order(sort: str, descending: bool, score: Any, diff: Any) -> list[Any]:
    """Rows in dataset order (baseline first); by score or difference, missing values last."""
    # The sample is stored in dataset order, so its own position orders rows by their index.
    tie = [RunGroupRow.position, Run.role != "baseline", Run.label]
    if sort == "row":
        return [RunGroupRow.position.desc() if descending else RunGroupRow.position, *tie[1:]]
    key = score if sort == "score" else diff
    return [key.is_(None), key.desc() if descending else key.asc(), *tie]


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
        runs = _runs(session, group)
        samples = judgments_per_output(session, group)
        pairwise = samples != group.judge_samples
        generations = {
            g.run_id: g
            for g in session.scalars(
                select(Generation).where(
                    Generation.run_id.in_([r.id for r in runs]), Generation.row_id == row.id
                )
            )
        }
        statuses = {
            line.run_id: (line.status, line.score)
            for line in session.execute(
                outcome_select(group.id, samples, [r.id for r in runs]).where(
                    Generation.row_id == row.id
                )
            )
        }
        judgments: dict[int, list[Judgment]] = {}
        for j in session.scalars(
            select(Judgment)
            .where(
                Judgment.generation_id.in_([g.id for g in generations.values()]),
                Judgment.group_id == group.id,
            )
            .order_by(Judgment.sample_index)
        ):
            judgments.setdefault(j.generation_id, []).append(j)
        arms = []
        for run in runs:
            generation = generations.get(run.id)
            outcome, score = statuses.get(run.id, ("pending", None))
            if pairwise and run.role == "baseline" and generation is not None:
                outcome = generation.status  # the opponent: generated, never judged itself
            arms.append(
                ArmDetail(
                    model=run.label,
                    role=run.role,
                    status=outcome,
                    score=None if score is None else float(score),
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
                            judge_score=j.judge_score,
                            checks=j.checks,
                            reasoning=j.reasoning,
                            raw_output=j.raw_output,
                            error=j.error,
                            latency_ms=j.latency_ms,
                            cost_usd=j.cost_usd,
                            candidate_position=j.candidate_position,
                            preference=j.preference,
                        )
                        for j in (judgments.get(generation.id, []) if generation else [])
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


def judge_prompt_for(store: Store, group_id: int, position: int, model: str) -> JudgePrompt:
    """The exact judge prompt one arm's output for one row was (or will be) judged with."""
    detail = row_detail(store, group_id, position)
    arm = next((a for a in detail.arms if a.model == model), None)
    if arm is None:
        names = ", ".join(a.model for a in detail.arms)
        raise NotFoundError(f"no model {model!r} in run group {group_id} (models: {names})")
    if arm.output is None:
        raise ValidationError(f"{model} has no output for row {position}: nothing was judged")
    with store.session() as session:
        version = group_version(session, run_group_by_id(session, group_id))
        if version.kind == "pairwise":
            return _pair_prompt(version, detail, arm)
        return build_judge_prompt(
            version, detail.messages, detail.reference, arm.output, detail.metadata
        )


def _pair_prompt(version: Any, detail: RowDetail, arm: ArmDetail) -> JudgePrompt:
    """A pairwise prompt, in the order with the candidate in position A (the other order
    swaps the two responses)."""
    if arm.role == "baseline":
        raise ValidationError(
            f"{arm.model} is the baseline of a pairwise group: it is compared with, not judged; "
            "pick a candidate"
        )
    baseline = next((a for a in detail.arms if a.role == "baseline"), None)
    if baseline is None or baseline.output is None:
        raise ValidationError(f"the baseline has no output for row {detail.row} to compare with")
    prompt = build_pair_prompt(
        version, detail.messages, detail.reference, arm.output, baseline.output, detail.metadata
    )
    return JudgePrompt(system=prompt.system, user=prompt.user)


def neighbor_rows(store: Store, group_id: int, position: int) -> tuple[int | None, int | None]:
    """The sampled rows just before and after ``position`` (dataset positions), for paging
    through a group's rows one by one."""
    with store.session() as session:
        base = (
            select(DatasetRow.position)
            .join(RunGroupRow, RunGroupRow.row_id == DatasetRow.id)
            .where(RunGroupRow.group_id == group_id)
        )
        before = session.scalar(
            base.where(DatasetRow.position < position).order_by(DatasetRow.position.desc())
        )
        after = session.scalar(
            base.where(DatasetRow.position > position).order_by(DatasetRow.position)
        )
        return before, after
