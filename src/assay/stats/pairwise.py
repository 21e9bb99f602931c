"""Win rates of a pairwise run group: each candidate against the baseline, row by row.

A candidate's row is judged in both orders (``rubrics/pairwise.py``), ``judge_samples`` times
each; its judgments' ``preference`` is ``candidate`` / ``baseline`` / ``tie``. Per row:

* each order's verdict is the strict majority of its scored samples (none: tie);
* both orders agree -> a win or a loss (or a tie if both say tie); they disagree -> a tie,
  and the row counts as *flipped*: the judge followed the position, not the outputs;
* an order with no scored sample leaves the row without a verdict: it is counted as
  ``judge_unparseable`` (if any of its answers did not parse) or ``judge_failed``, never as
  a tie; a failed candidate generation is ``generation_failed``; missing work is ``pending``.

Win rate = (wins + ties / 2) / n over the n rows with a verdict. Its 95 % interval is the
Wilson score interval for a proportion, with a tie counting as half a win: a row's outcome
(0, 0.5 or 1) varies no more than a coin flip with the same mean, so the interval is, if
anything, wide; unlike a bootstrap it does not collapse to a point when every row agrees
(a judge that always prefers position A gives all ties and a wide interval around 0.5, not
certainty). The flip rate is flipped rows / n.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assay.rubrics.pairwise import Winner, combine_orders
from assay.store.models import Generation, Judgment, Run, RunGroup, RunGroupRow

if TYPE_CHECKING:
    from assay.stats.summary import RunSummary

OUTCOMES = ("scored", "generation_failed", "judge_failed", "judge_unparseable", "pending")
CONFIDENCE = 0.95
Z95 = 1.959963984540054  # two-sided 95 %
_WINNER = {"candidate": "a", "baseline": "b", "tie": "tie"}


class PairwiseStats(BaseModel):
    """One candidate against the baseline."""

    rows: int  # rows with a verdict (n)
    wins: int
    ties: int
    losses: int
    win_rate: float | None  # (wins + ties / 2) / n
    ci_low: float | None
    ci_high: float | None
    confidence: float = CONFIDENCE
    interval: str = "wilson"
    flipped: int  # rows whose two orders disagreed (counted in ties)
    flip_rate: float | None  # flipped / n
    generation_failed: int
    judge_failed: int
    judge_unparseable: int
    pending: int


@dataclass(frozen=True)
class PairJudgment:
    """What the row rule reads of one stored judgment."""

    sample_index: int
    status: str
    preference: str | None


@dataclass(frozen=True)
class PairRowOutcome:
    status: str  # scored | generation_failed | judge_failed | judge_unparseable | pending
    verdict: str | None = None  # win | loss | tie (scored rows only)
    flipped: bool = False


def row_outcome(
    generation_status: str | None, judgments: Iterable[PairJudgment], judge_samples: int
) -> PairRowOutcome:
    """The rule of the module docstring for one candidate row."""
    if generation_status is None:
        return PairRowOutcome("pending")
    if generation_status != "completed":
        return PairRowOutcome("generation_failed")
    found = list(judgments)
    if len({j.sample_index for j in found}) < 2 * judge_samples:
        return PairRowOutcome("pending")
    orders: dict[int, list[Winner]] = {0: [], 1: []}
    for j in found:
        if j.status == "scored" and j.preference in _WINNER:
            orders[j.sample_index % 2].append(_WINNER[j.preference])  # type: ignore[arg-type]
    verdict, flipped = combine_orders(orders[0], orders[1])
    if verdict is None:
        unparseable = any(j.status == "judge_unparseable" for j in found)
        return PairRowOutcome("judge_unparseable" if unparseable else "judge_failed")
    named = {"a": "win", "b": "loss", "tie": "tie"}[verdict]
    return PairRowOutcome("scored", named, flipped)


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for successes / n (successes may be fractional: ties = 1/2)."""
    if n <= 0:
        raise ValueError("n must be positive")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def pairwise_stats(outcomes: Iterable[PairRowOutcome], total: int) -> PairwiseStats:
    """Counts, win rate with its interval and flip rate from a candidate's row outcomes;
    ``total`` is the sample size (rows never generated count as pending)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    verdicts = {"win": 0, "tie": 0, "loss": 0}
    flipped = 0
    seen = 0
    for outcome in outcomes:
        seen += 1
        counts[outcome.status] += 1
        if outcome.verdict is not None:
            verdicts[outcome.verdict] += 1
            flipped += outcome.flipped
    counts["pending"] += total - seen
    n = counts["scored"]
    rate = low = high = flip_rate = None
    if n:
        successes = verdicts["win"] + verdicts["tie"] / 2
        rate = successes / n
        low, high = wilson_interval(successes, n)
        flip_rate = flipped / n
    return PairwiseStats(
        rows=n,
        wins=verdicts["win"],
        ties=verdicts["tie"],
        losses=verdicts["loss"],
        win_rate=rate,
        ci_low=low,
        ci_high=high,
        flipped=flipped,
        flip_rate=flip_rate,
        generation_failed=counts["generation_failed"],
        judge_failed=counts["judge_failed"],
        judge_unparseable=counts["judge_unparseable"],
        pending=counts["pending"],
    )


# --- from the store --------------------------------------------------------------------------


def run_row_outcomes(session: Session, group: RunGroup, run_id: int) -> dict[int, PairRowOutcome]:
    """Every generated row of one candidate run, keyed by row id."""
    generations = dict(
        session.execute(
            select(Generation.row_id, Generation.status)
            .join(RunGroupRow, RunGroupRow.row_id == Generation.row_id)
            .where(Generation.run_id == run_id, RunGroupRow.group_id == group.id)
        ).all()
    )
    judgments: dict[int, list[PairJudgment]] = defaultdict(list)
    query = (
        select(Generation.row_id, Judgment.sample_index, Judgment.status, Judgment.preference)
        .join(Judgment, Judgment.generation_id == Generation.id)
        .where(Generation.run_id == run_id, Judgment.group_id == group.id)
        .execution_options(yield_per=2000)
    )
    for row_id, index, status, preference in session.execute(query):
        judgments[row_id].append(PairJudgment(index, status, preference))
    return {
        row_id: row_outcome(status, judgments.get(row_id, []), group.judge_samples)
        for row_id, status in generations.items()
    }


def candidate_stats(session: Session, group: RunGroup, run_id: int) -> PairwiseStats:
    outcomes = run_row_outcomes(session, group, run_id)
    return pairwise_stats(outcomes.values(), group.sample_size)


def summarize_pairwise(
    session: Session,
    group: RunGroup,
    runs: list[Run],
    latencies: dict[int, tuple[float | None, ...]],
) -> list[RunSummary]:
    """Run summaries of a pairwise group: the baseline's are about generation only (it is
    not judged); each other arm's counts come from its pairwise row outcomes, with its win
    rate against the baseline in ``pairwise`` (mean scores do not apply)."""
    from assay.stats.summary import RunSummary  # summary.py imports this module's types

    run_ids = [r.id for r in runs]
    usage = {
        run_id: rest
        for run_id, *rest in session.execute(
            select(
                Generation.run_id,
                func.coalesce(func.sum(Generation.input_tokens), 0),
                func.coalesce(func.sum(Generation.output_tokens), 0),
                func.coalesce(func.sum(Generation.cost_usd), 0.0),
            )
            .where(Generation.run_id.in_(run_ids))
            .group_by(Generation.run_id)
        )
    }
    judge_usage = {
        run_id: rest
        for run_id, *rest in session.execute(
            select(
                Generation.run_id,
                func.coalesce(func.sum(Judgment.input_tokens), 0),
                func.coalesce(func.sum(Judgment.output_tokens), 0),
                func.coalesce(func.sum(Judgment.cost_usd), 0.0),
            )
            .join(Judgment, Judgment.generation_id == Generation.id)
            .where(Generation.run_id.in_(run_ids), Judgment.group_id == group.id)
            .group_by(Generation.run_id)
        )
    }
    summaries = []
    for run in runs:
        counts = dict.fromkeys(OUTCOMES, 0)
        stats: PairwiseStats | None = None
        if run.role == "baseline":
            generated = dict(
                session.execute(
                    select(Generation.status, func.count())
                    .where(Generation.run_id == run.id)
                    .group_by(Generation.status)
                ).all()
            )
            counts["generation_failed"] = sum(n for s, n in generated.items() if s != "completed")
            counts["pending"] = group.sample_size - sum(generated.values())
        else:
            stats = candidate_stats(session, group, run.id)
            counts.update(
                scored=stats.rows,
                generation_failed=stats.generation_failed,
                judge_failed=stats.judge_failed,
                judge_unparseable=stats.judge_unparseable,
                pending=stats.pending,
            )
        tokens_in, tokens_out, cost = usage.get(run.id, (0, 0, 0.0))
        judge_in, judge_out, judge_cost = judge_usage.get(run.id, (0, 0, 0.0))
        p50, p90 = latencies.get(run.id, (None, None))
        summaries.append(
            RunSummary(
                run_id=run.id,
                model=run.label,
                role=run.role,
                status=run.status,
                total=group.sample_size,
                **counts,
                mean_score=None,
                median_score=None,
                distribution=[],
                latency_ms_p50=p50,
                latency_ms_p90=p90,
                input_tokens=int(tokens_in),
                output_tokens=int(tokens_out),
                cost_usd=float(cost),
                judge_input_tokens=int(judge_in),
                judge_output_tokens=int(judge_out),
                judge_cost_usd=float(judge_cost),
                paired_rows=stats.rows if stats is not None else None,
                pairwise=stats,
            )
        )
    return summaries


def format_win_rate(stats: PairwiseStats) -> str:
    """``0.62 [0.51, 0.72], W/T/L 40/12/8, flips 10%``: one line for tables and reports."""
    if stats.win_rate is None:
        return "no rows with a verdict"
    flips = f"{stats.flip_rate:.0%}" if stats.flip_rate is not None else "-"
    return (
        f"{stats.win_rate:.2f} [{stats.ci_low:.2f}, {stats.ci_high:.2f}], "
        f"W/T/L {stats.wins}/{stats.ties}/{stats.losses}, flips {flips}"
    )
