"""The gate for pairwise run groups: each candidate's win rate against the baseline.

A pairwise group has no scores to difference, so the comparison is its win rate
(``stats/pairwise.py``: (wins + ties / 2) / n, Wilson 95 % interval, flip rate). To let the
reports read one shape, it is carried in ``CandidateComparison.paired`` as a difference from
an even match: ``mean_candidate`` = win rate, ``mean_diff`` = win rate - 0.5, the interval
likewise shifted; ``CandidateComparison.pairwise`` holds the numbers themselves.

Decision, with ``m`` the policy's ``win_rate_margin`` (default 0.05):

* FAIL when the interval's upper bound is below 0.5 - m (the candidate loses beyond the
  margin), or a failure-rate check fails (failed rows: the candidate's generation failed or
  its pair got no verdict; the baseline's: its generation failed);
* INCONCLUSIVE when fewer rows have a verdict than ``min_paired_rows``, or the interval
  straddles 0.5 - m;
* PASS when the lower bound is at or above 0.5 - m and every other check passes.

Slices, judge noise and ``--against-baseline`` are not computed for pairwise groups; a policy
or a call that asks for them is refused rather than answered with a check that checks nothing.
"""

from __future__ import annotations

import math

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assay.errors import ValidationError
from assay.gate.checks import Check, failure_checks
from assay.gate.policy import AppliedPolicy, Policy
from assay.stats.compare import ArmCounts, CandidateComparison, GroupComparison
from assay.stats.compare_load import (
    baseline_run,
    group_runs,
    header_fields,
    require_finished,
)
from assay.stats.paired import FailureComparison, PairedComparison
from assay.stats.pairwise import CONFIDENCE, Z95, PairwiseStats, candidate_stats
from assay.store import Store
from assay.store.lookup import run_group_by_id
from assay.store.models import Generation, RubricVersion, Run, RunGroup

EVEN = 0.5


def is_pairwise(store: Store, group_id: int) -> bool:
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        version = session.get(RubricVersion, group.rubric_version_id)
        return version is not None and version.kind == "pairwise"


def refuse_unsupported(
    policy: Policy | None, slice_by: list[str] | tuple[str, ...], against_baseline: bool
) -> None:
    asked = []
    if slice_by:
        asked.append("--slice-by")
    if against_baseline:
        asked.append("--against-baseline")
    sections = [] if policy is None else [policy.default, *policy.candidates.values()]
    if any(s.protected_slices for s in sections):
        asked.append("protected_slices")
    if any(s.max_noise_share is not None for s in sections):
        asked.append("max_noise_share")
    if any(s.min_improvement is not None for s in sections):
        asked.append("min_improvement")
    if asked:
        raise ValidationError(
            f"this run group uses a pairwise rubric, which is gated on its win rate alone; "
            f"{', '.join(asked)} apply to pointwise scores only (see docs/pairwise.md)"
        )


def compare_pairwise(store: Store, group_id: int) -> GroupComparison:
    """Every non-baseline arm's win rate against the baseline, in the comparison's shape."""
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        require_finished(session, group)
        base = baseline_run(session, group)
        others = [r for r in group_runs(session, group) if r.id != base.id]
        if not others:
            raise ValidationError(f"run group {group.id} has no arm besides its baseline")
        base_failed, base_done = _generation_counts(session, base)
        baseline = ArmCounts(
            model=base.label,
            role=base.role,
            run_id=base.id,
            group_id=group.id,
            rows=group.sample_size,
            scored=base_done - base_failed,
            generation_failed=base_failed,
            judge_failed=0,
            judge_unparseable=0,
            mean_score=None,
        )
        candidates = []
        for run in others:
            stats = candidate_stats(session, group, run.id)
            if stats.pending:
                raise ValidationError(
                    f"run group {group.id}: {run.label!r} has {stats.pending} unfinished rows; "
                    f"finish them with `assay run resume {group.id}` before gating"
                )
            candidates.append(_comparison(group, run, stats, base_failed))
        fields = header_fields(session, group)
    fields.update(score_min=0, score_max=1)  # preferences: 0 baseline, 0.5 tie, 1 candidate
    return GroupComparison(
        group_id=group_id,
        baseline_group_id=group_id,
        **fields,
        compared_rows=group.sample_size,
        seed=0,
        resamples=0,
        level=CONFIDENCE,
        slice_keys=[],
        missing_slice_keys=[],
        baseline=baseline,
        candidates=candidates,
    )


def _generation_counts(session: Session, run: Run) -> tuple[int, int]:
    """(failed, all) generations of a run."""
    failed, total = session.execute(
        select(
            func.count().filter(Generation.status != "completed"),
            func.count(),
        ).where(Generation.run_id == run.id)
    ).one()
    return int(failed or 0), int(total or 0)


def _comparison(
    group: RunGroup, run: Run, stats: PairwiseStats, base_failed: int
) -> CandidateComparison:
    shifted = [
        None if x is None else x - EVEN for x in (stats.win_rate, stats.ci_low, stats.ci_high)
    ]
    failed = stats.generation_failed + stats.judge_failed + stats.judge_unparseable
    n = group.sample_size
    return CandidateComparison(
        arm=ArmCounts(
            model=run.label,
            role=run.role,
            run_id=run.id,
            group_id=group.id,
            rows=n,
            scored=stats.rows,
            generation_failed=stats.generation_failed,
            judge_failed=stats.judge_failed,
            judge_unparseable=stats.judge_unparseable,
            mean_score=stats.win_rate,
        ),
        paired=PairedComparison(
            n_pairs=stats.rows,
            mean_baseline=EVEN if stats.rows else None,
            mean_candidate=stats.win_rate,
            mean_diff=shifted[0],
            sd_diff=None,
            ci_low=shifted[1],
            ci_high=shifted[2],
            ci_level=CONFIDENCE,
            resamples=0,
            seed=0,
            wins=stats.wins,
            ties=stats.ties,
            losses=stats.losses,
            test="none",
            p_value=None,
            effect_size=None,
            rank_biserial=None,
        ),
        failures=FailureComparison(
            n_rows=n,
            baseline_failed=base_failed,
            candidate_failed=failed,
            baseline_rate=base_failed / n if n else None,
            candidate_rate=failed / n if n else None,
            rate_diff=(failed - base_failed) / n if n else None,
            ci_low=None,
            ci_high=None,
            ci_level=CONFIDENCE,
            p_value=None,
            test="none",
        ),
        slices=[],
        noise=None,
        mde=None,
        rows_needed=None,
        top_regressions=[],
        pairwise=stats,
    )


def win_rate_check(stats: PairwiseStats, p: AppliedPolicy) -> Check | None:
    """The win rate's interval against 0.5 - margin (None: no row has a verdict)."""
    if stats.win_rate is None or stats.ci_low is None or stats.ci_high is None:
        return None
    threshold = EVEN - p.win_rate_margin
    shown = (
        f"win rate {stats.win_rate:.2f}, {CONFIDENCE * 100:g}% CI "
        f"[{stats.ci_low:.2f}, {stats.ci_high:.2f}] (W/T/L {stats.wins}/{stats.ties}/"
        f"{stats.losses})"
    )
    what = f"0.5 - the win-rate margin {p.win_rate_margin:g} = {threshold:g}"
    if stats.ci_low >= threshold:
        return Check(name="win_rate", status="pass", message=f"{shown} is at or above {what}")
    if stats.ci_high < threshold:
        return Check(
            name="win_rate",
            status="fail",
            message=f"the baseline is preferred beyond the margin: {shown} lies below {what}",
        )
    return Check(
        name="win_rate", status="inconclusive", message=f"{shown} straddles {what}: not settled"
    )


def rows_to_settle(stats: PairwiseStats, p: AppliedPolicy) -> int | None:
    """Rows with a verdict for the interval to clear 0.5 - margin on the side the observed
    win rate lies, if that rate holds (normal approximation; a tie varies less than a coin
    flip, so p(1-p) bounds a row's variance from above)."""
    if stats.win_rate is None:
        return None
    distance = abs(stats.win_rate - (EVEN - p.win_rate_margin))
    if distance < 1e-9:
        return None
    variance = max(stats.win_rate * (1 - stats.win_rate), 0.01)
    return math.ceil(Z95 * Z95 * variance / (distance * distance))


def pairwise_checks(c: CandidateComparison, p: AppliedPolicy) -> list[Check]:
    """Every check of a pairwise candidate, in the order a reader wants them."""
    assert c.pairwise is not None
    stats = c.pairwise
    checks = failure_checks(c, p)
    enough = stats.rows >= p.min_paired_rows
    flips = f", {stats.flip_rate:.0%} flipped with the order" if stats.flip_rate is not None else ""
    checks.append(
        Check(
            name="paired_rows",
            status="pass" if enough else "inconclusive",
            message=(
                f"{stats.rows} rows with a verdict in both orders{flips}"
                + ("" if enough else f"; the policy needs at least {p.min_paired_rows}")
            ),
        )
    )
    check = win_rate_check(stats, p) if enough else None
    if check is not None:
        checks.append(check)
    return checks
