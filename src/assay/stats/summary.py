"""Per-arm summaries of a run group, and the per-row outcomes they are built from.

A row's outcome follows DESIGN.md's failure taxonomy and is never collapsed into a score:
``generation_failed``, ``judge_failed``, ``judge_unparseable`` or ``scored`` (the mean of its
scored judge samples), or ``pending`` while work remains. Averages are over scored rows; the
failed counts are always reported beside them.

A rubric version's deterministic checks are counted per run by ``check_stats``: how many
judged outputs passed each check (an output counts once, whatever its judge samples).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from assay.stats.outcomes import judgments_per_output, outcome_select
from assay.stats.pairwise import PairwiseStats
from assay.store.models import Generation, Judgment, RubricVersion, RunGroup

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


class CheckStat(BaseModel):
    """One deterministic check over one run: outputs that passed it, of those checked."""

    name: str
    type: str
    passed: int
    total: int


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
    # Per deterministic check of the rubric version, in its order (empty without checks).
    checks: list[CheckStat] = []
    # Pairwise rubrics: this arm against the baseline (win rate, W/T/L, flips); then the
    # score fields above are None and ``scored`` counts the rows with a verdict.
    pairwise: PairwiseStats | None = None


def row_outcomes(session: Session, group: RunGroup, run_id: int) -> dict[int, RowOutcome]:
    """Outcome of every sampled row that has a generation in this run, keyed by row id (for a
    pairwise group, a candidate row's score is its mean preference: 1, 0.5 or 0 per order)."""
    query = outcome_select(group.id, judgments_per_output(session, group), [run_id])
    return {
        line.row_id: RowOutcome(
            line.row_id,
            line.generation_id,
            line.status,
            None if line.score is None else float(line.score),
            line.latency_ms,
            int(line.input_tokens),
            int(line.output_tokens),
            float(line.cost_usd),
            float(line.judge_cost_usd),
            int(line.judge_input_tokens),
            int(line.judge_output_tokens),
        )
        for line in session.execute(query)
    }


def check_stats(
    session: Session, group: RunGroup, run_ids: list[int]
) -> dict[int, list[CheckStat]]:
    """Per run, pass counts of each deterministic check, in the version's order.

    Check results are a JSON list per judgment, which SQLite and Postgres unpack differently;
    so they are streamed (only the first judgment of each output, in batches) and counted
    here, in memory proportional to the number of checks, not of rows.
    """
    version = session.get(RubricVersion, group.rubric_version_id)
    if version is None or not version.checks or not run_ids:
        return {}
    order = [(c["name"], c["type"]) for c in version.checks]
    passed: dict[int, Counter[str]] = defaultdict(Counter)
    total: dict[int, Counter[str]] = defaultdict(Counter)
    query = (
        select(Generation.run_id, Judgment.checks)
        .join(Judgment, Judgment.generation_id == Generation.id)
        .where(
            Generation.run_id.in_(run_ids),
            Judgment.group_id == group.id,
            Judgment.sample_index == 0,
            Judgment.checks.is_not(None),
        )
        .execution_options(yield_per=2000)
    )
    for run_id, results in session.execute(query):
        for result in results or []:
            total[run_id][result["name"]] += 1
            passed[run_id][result["name"]] += bool(result["passed"])
    return {
        run_id: [
            CheckStat(name=name, type=kind, passed=passed[run_id][name], total=counts[name])
            for name, kind in order
        ]
        for run_id, counts in total.items()
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
