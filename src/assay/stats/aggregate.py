"""Run summaries aggregated by the database, so a group of 10,000 rows x 5 models is read in a
few queries instead of 50,000 Python objects."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from assay.stats.outcomes import outcome_select
from assay.stats.pairwise import summarize_pairwise
from assay.stats.summary import OUTCOMES, RunSummary, check_stats, distribution
from assay.store.models import Generation, RubricVersion, Run, RunGroup


def summarize_runs(session: Session, group: RunGroup, runs: list[Run]) -> list[RunSummary]:
    """One summary per run, in the order given; candidates are paired with the baseline."""
    version = session.get(RubricVersion, group.rubric_version_id)
    assert version is not None
    run_ids = [r.id for r in runs]
    if version.kind == "pairwise":
        latencies = _latency_percentiles(session, run_ids, (50, 90))
        return summarize_pairwise(session, group, runs, latencies)
    baseline = next((r for r in runs if r.role == "baseline"), None)
    lines = _lines(session, group, run_ids, baseline.id if baseline else None)
    latencies = _latency_percentiles(session, run_ids, (50, 90))
    checks = check_stats(session, group, run_ids)
    summaries = []
    for run in runs:
        counts = dict.fromkeys(OUTCOMES, 0)
        sums: dict[str, float] = defaultdict(float)
        run_scores: list[float] = []
        paired, diff_sum = 0, 0.0
        for status, score, count, both, diffs, *values in lines.get(run.id, []):
            counts[status] += count
            if status == "scored":
                run_scores.extend([float(score)] * count)
            paired += int(both or 0)
            diff_sum += float(diffs or 0)
            for key, value in zip(_SUMMED, values, strict=True):
                sums[key] += float(value or 0)
        counts["pending"] += group.sample_size - sum(counts.values())
        run_scores.sort()
        p50, p90 = latencies.get(run.id, (None, None))
        summary = RunSummary(
            run_id=run.id,
            model=run.label,
            role=run.role,
            status=run.status,
            total=group.sample_size,
            **counts,
            mean_score=statistics.fmean(run_scores) if run_scores else None,
            median_score=statistics.median(run_scores) if run_scores else None,
            distribution=distribution(run_scores, version.score_min, version.score_max),
            latency_ms_p50=p50,
            latency_ms_p90=p90,
            input_tokens=int(sums["input_tokens"]),
            output_tokens=int(sums["output_tokens"]),
            cost_usd=sums["cost_usd"],
            judge_input_tokens=int(sums["judge_input_tokens"]),
            judge_output_tokens=int(sums["judge_output_tokens"]),
            judge_cost_usd=sums["judge_cost_usd"],
            checks=checks.get(run.id, []),
        )
        if baseline is not None and run is not baseline:
            summary.paired_rows = paired
            summary.mean_diff_vs_baseline = diff_sum / paired if paired else None
        summaries.append(summary)
    return summaries


_SUMMED = (
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "judge_input_tokens",
    "judge_output_tokens",
    "judge_cost_usd",
)


def _lines(
    session: Session, group: RunGroup, run_ids: list[int], baseline_run: int | None
) -> dict[int, list[tuple[Any, ...]]]:
    """One pass over the group: per (run, outcome, score), the row count, how many of those
    rows the baseline also scored and the sum of their differences, and the summed usage."""
    o = outcome_select(group.id, group.judge_samples, run_ids).subquery("o")
    b = outcome_select(group.id, group.judge_samples, [baseline_run or -1]).subquery("b")
    both = and_(o.c.status == "scored", b.c.status == "scored", o.c.run_id != baseline_run)
    query = (
        select(
            o.c.run_id,
            o.c.status,
            o.c.score,
            func.count(),
            func.sum(case((both, 1), else_=0)),
            func.sum(case((both, o.c.score - b.c.score))),
            *[func.sum(o.c[name]) for name in _SUMMED],
        )
        .outerjoin(b, b.c.row_id == o.c.row_id)
        .group_by(o.c.run_id, o.c.status, o.c.score)
    )
    found: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for run_id, *rest in session.execute(query):
        found[run_id].append(tuple(rest))
    return found


def _latency_percentiles(
    session: Session, run_ids: list[int], percents: tuple[int, ...]
) -> dict[int, tuple[float | None, ...]]:
    """Linear-interpolated latency percentiles per run, reading the two values around each
    rank from the (run, latency) index instead of every latency."""
    has_latency = (Generation.run_id.in_(run_ids), Generation.latency_ms.is_not(None))
    sizes = dict(
        session.execute(
            select(Generation.run_id, func.count()).where(*has_latency).group_by(Generation.run_id)
        ).all()
    )
    found: dict[int, tuple[float | None, ...]] = {}
    for run_id, n in sizes.items():
        values: list[float | None] = []
        for p in percents:
            exact = (n - 1) * p / 100
            low = math.floor(exact)
            around = session.scalars(
                select(Generation.latency_ms)
                .where(Generation.run_id == run_id, Generation.latency_ms.is_not(None))
                .order_by(Generation.latency_ms)
                .limit(2)
                .offset(low)
            ).all()
            high = around[1] if len(around) > 1 and exact > low else around[0]
            values.append(around[0] + (high - around[0]) * (exact - low))
        found[run_id] = tuple(values)
    return found
