"""Per-arm summaries of a run group, and the per-row outcomes they are built from.

A row's outcome follows DESIGN.md's failure taxonomy and is never collapsed into a score:
``generation_failed``, ``judge_failed``, ``judge_unparseable`` or ``scored`` (the mean of its
scored judge samples), or ``pending`` while work remains. Averages are over scored rows; the
failed counts are always reported beside them.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy import Integer, and_, case, cast, func, select
from sqlalchemy.orm import Session

from assay.store.models import Generation, Judgment, RubricVersion, Run, RunGroup

OUTCOMES = ("scored", "generation_failed", "judge_failed", "judge_unparseable", "pending")


@dataclass(frozen=True)
class RowOutcome:
    row_id: int
    generation_id: int | None
    status: str
    score: float | None
    latency_ms: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    judge_cost_usd: float
    judge_input_tokens: int
    judge_output_tokens: int


class Bucket(BaseModel):
    bucket_min: float
    bucket_max: float
    count: int


class RunSummary(BaseModel):
    run_id: int
    model: str
    role: str
    status: str
    total: int
    scored: int
    generation_failed: int
    judge_failed: int
    judge_unparseable: int
    pending: int
    mean_score: float | None
    median_score: float | None
    distribution: list[Bucket]
    latency_ms_p50: float | None
    latency_ms_p90: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    judge_input_tokens: int
    judge_output_tokens: int
    judge_cost_usd: float
    # Against the baseline, on the rows both arms scored (None for the baseline itself).
    paired_rows: int | None = None
    mean_diff_vs_baseline: float | None = None


def row_outcomes(session: Session, group: RunGroup, run_id: int) -> dict[int, RowOutcome]:
    """Outcome of every sampled row that has a generation in this run, keyed by row id."""
    scored = Judgment.status == "scored"
    query = (
        select(
            Generation.row_id,
            Generation.id,
            Generation.status,
            Generation.latency_ms,
            func.coalesce(Generation.input_tokens, 0),
            func.coalesce(Generation.output_tokens, 0),
            func.coalesce(Generation.cost_usd, 0.0),
            func.avg(case((scored, Judgment.score))),
            func.count(Judgment.id),
            func.sum(cast(scored, Integer)),
            func.sum(cast(Judgment.status == "judge_unparseable", Integer)),
            func.coalesce(func.sum(Judgment.cost_usd), 0.0),
            func.coalesce(func.sum(Judgment.input_tokens), 0),
            func.coalesce(func.sum(Judgment.output_tokens), 0),
        )
        .outerjoin(
            Judgment, and_(Judgment.generation_id == Generation.id, Judgment.group_id == group.id)
        )
        .where(Generation.run_id == run_id)
        .group_by(Generation.id)
    )
    outcomes = {}
    for (
        row_id, gen_id, gen_status, latency, tin, tout, cost,
        mean, n_judged, n_scored, n_unparseable, jcost, jin, jout,
    ) in session.execute(query):  # fmt: skip
        if gen_status != "completed":
            status, score = "generation_failed", None
        elif n_scored:
            status, score = "scored", float(mean)
        elif n_judged < group.judge_samples:
            status, score = "pending", None
        elif n_unparseable:
            status, score = "judge_unparseable", None
        else:
            status, score = "judge_failed", None
        outcomes[row_id] = RowOutcome(
            row_id, gen_id, status, score, latency, int(tin), int(tout), float(cost),
            float(jcost), int(jin), int(jout),
        )  # fmt: skip
    return outcomes


def summarize_run(
    session: Session, group: RunGroup, run: Run, baseline: dict[int, RowOutcome] | None
) -> RunSummary:
    outcomes = row_outcomes(session, group, run.id)
    version = session.get(RubricVersion, group.rubric_version_id)
    assert version is not None
    counts = dict.fromkeys(OUTCOMES, 0)
    for outcome in outcomes.values():
        counts[outcome.status] += 1
    counts["pending"] += group.sample_size - len(outcomes)
    scores = [o.score for o in outcomes.values() if o.score is not None]
    latencies = sorted(o.latency_ms for o in outcomes.values() if o.latency_ms is not None)
    summary = RunSummary(
        run_id=run.id,
        model=run.label,
        role=run.role,
        status=run.status,
        total=group.sample_size,
        **counts,
        mean_score=statistics.fmean(scores) if scores else None,
        median_score=statistics.median(scores) if scores else None,
        distribution=distribution(scores, version.score_min, version.score_max),
        latency_ms_p50=percentile(latencies, 50),
        latency_ms_p90=percentile(latencies, 90),
        input_tokens=sum(o.input_tokens for o in outcomes.values()),
        output_tokens=sum(o.output_tokens for o in outcomes.values()),
        cost_usd=sum(o.cost_usd for o in outcomes.values()),
        judge_input_tokens=sum(o.judge_input_tokens for o in outcomes.values()),
        judge_output_tokens=sum(o.judge_output_tokens for o in outcomes.values()),
        judge_cost_usd=sum(o.judge_cost_usd for o in outcomes.values()),
    )
    if baseline is not None:
        pairs = paired_scores(baseline, outcomes)
        summary.paired_rows = len(pairs)
        if pairs:
            summary.mean_diff_vs_baseline = statistics.fmean(c - b for b, c in pairs.values())
    return summary


def paired_scores(
    baseline: dict[int, RowOutcome], other: dict[int, RowOutcome]
) -> dict[int, tuple[float, float]]:
    """Row id -> (baseline score, other score), for the rows both arms scored."""
    return {
        row_id: (b.score, o.score)
        for row_id, b in baseline.items()
        if b.score is not None and (o := other.get(row_id)) is not None and o.score is not None
    }


def distribution(scores: list[float], score_min: int, score_max: int) -> list[Bucket]:
    """One bucket per integer score for ranges up to 20 points, else ten equal buckets."""
    span = score_max - score_min
    if span <= 20:
        # [k, k+1) for each integer k, the last bucket holding the maximum itself.
        buckets = [
            Bucket(bucket_min=k, bucket_max=k + 1 if k < score_max else k, count=0)
            for k in range(score_min, score_max + 1)
        ]
        for score in scores:
            buckets[min(math.floor(score) - score_min, span)].count += 1
        return buckets
    edges = [score_min + span * i / 10 for i in range(11)]
    buckets = [Bucket(bucket_min=a, bucket_max=b, count=0) for a, b in itertools.pairwise(edges)]
    for score in scores:
        index = min(int((score - score_min) / span * 10), 9)
        buckets[index].count += 1
    return buckets


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Linear-interpolated percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)
