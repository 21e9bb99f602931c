"""From a comparison and a policy to a verdict per candidate, and storing the verdicts.

Rules (``docs/gate.md``), for each gated arm, with the policy section that applies to it:

* FAIL when any check fails: the confidence interval of the mean difference lies entirely
  below ``-margin`` (worse beyond the margin), or entirely below ``min_improvement`` when one
  is required; the candidate's failure rate exceeds ``max_failure_rate``; its failure rate
  exceeds the baseline's by more than ``max_failure_increase``; a protected slice regresses;
  the judge-noise share exceeds ``max_noise_share``.
* otherwise INCONCLUSIVE when any check cannot be settled: fewer paired rows than
  ``min_paired_rows``, an interval that straddles the threshold, a protected slice key no row
  carries, a noise limit on a group judged once per output. The verdict says how many rows
  would settle it.
* otherwise PASS.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select

from assay.errors import ValidationError
from assay.gate.calibration import require_calibration
from assay.gate.checks import Check, ci_check, failure_checks, noise_check, slice_checks
from assay.gate.pairwise import compare_pairwise, is_pairwise, pairwise_checks, refuse_unsupported
from assay.gate.pairwise import rows_to_settle as win_rate_rows_to_settle
from assay.gate.policy import (
    AppliedPolicy,
    Policy,
    load_policy,
    protected_keys,
    resolve,
    unknown_candidates,
)
from assay.stats import power
from assay.stats.compare import CandidateComparison, GroupHeader, compare_group
from assay.store import Store
from assay.store.lookup import run_group_by_id
from assay.store.models import Run, Verdict

Decision = Literal["PASS", "FAIL", "INCONCLUSIVE"]
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3


class CandidateVerdict(BaseModel):
    model: str
    role: str
    run_id: int
    decision: Decision
    reasons: list[str]  # the failing checks for FAIL, the unsettled ones for INCONCLUSIVE
    checks: list[Check]
    policy: AppliedPolicy
    rows_needed: int | None  # paired rows that would settle an INCONCLUSIVE score check
    rerun_sample_size: int | None  # sample size to ask for, allowing for failed rows
    comparison: CandidateComparison
    verdict_id: int | None = None  # the stored Verdict row


class GateResult(BaseModel):
    decision: Decision  # FAIL if any candidate fails, else INCONCLUSIVE if any is, else PASS
    exit_code: int
    policy_source: str
    warnings: list[str]
    group: GroupHeader
    verdicts: list[CandidateVerdict]


def run_gate(
    store: Store,
    group_id: int,
    *,
    policy_path: Path | None = None,
    policy: Policy | None = None,
    slice_by: list[str] | tuple[str, ...] = (),
    against_baseline: bool = False,
    seed: int = 0,
    resamples: int = 10_000,
) -> GateResult:
    """Load the policy (a file, or ``policy`` given inline, e.g. by the API), compare, decide,
    store one Verdict per gated arm (appending)."""
    if policy_path is not None and policy is not None:
        raise ValidationError("give a policy file or an inline policy, not both")
    if policy_path is not None:
        policy = load_policy(path=policy_path)
    if is_pairwise(store, group_id):  # gated on the win rate: gate/pairwise.py
        refuse_unsupported(policy, slice_by, against_baseline)
        comparison = compare_pairwise(store, group_id)
    else:
        comparison = compare_group(
            store,
            group_id,
            slice_by=[*slice_by, *protected_keys(policy)],
            against_baseline=against_baseline,
            resamples=resamples,
            seed=seed,
        )
    header = comparison.header()
    source = "defaults" if policy is None else "inline"
    if policy_path is not None:
        source = str(policy_path)
    warnings = []
    verdicts = []
    for candidate in comparison.candidates:
        if candidate.arm.role == "reference":
            warnings.append(
                f"arm {candidate.arm.model!r} (captured outputs, reference) is reported, not gated"
            )
            continue
        applied = resolve(policy, candidate.arm.model, header.score_min, header.score_max, source)
        if candidate.pairwise is not None:  # the margin is on the win rate's scale
            applied = applied.model_copy(
                update={"margin": applied.win_rate_margin, "margin_from": "win_rate_margin"}
            )
        verdicts.append(require_calibration(store, header, decide(candidate, header, applied)))
    if not verdicts:
        raise ValidationError(f"run group {group_id} has no candidate arm to gate")
    models = [c.arm.model for c in comparison.candidates]
    for name in unknown_candidates(policy, models):
        warnings.append(f"policy section candidates.{name} names no arm of run group {group_id}")
    result = GateResult(
        decision=overall(verdicts),
        exit_code=exit_code(verdicts),
        policy_source=source,
        warnings=warnings,
        group=header,
        verdicts=verdicts,
    )
    record_verdicts(store, result)
    return result


def overall(verdicts: list[CandidateVerdict]) -> Decision:
    decisions = {v.decision for v in verdicts}
    if "FAIL" in decisions:
        return "FAIL"
    if "INCONCLUSIVE" in decisions:
        return "INCONCLUSIVE"
    return "PASS"


def exit_code(verdicts: list[CandidateVerdict]) -> int:
    """0 all pass, 1 any fails, 3 none fails but some are inconclusive."""
    return {"PASS": EXIT_PASS, "FAIL": EXIT_FAIL, "INCONCLUSIVE": EXIT_INCONCLUSIVE}[
        overall(verdicts)
    ]


def decide(c: CandidateComparison, group: GroupHeader, p: AppliedPolicy) -> CandidateVerdict:
    """Apply one policy section to one comparison (pure: no store)."""
    if c.pairwise is not None:
        return _decide_pairwise(c, group, p)
    checks = [*failure_checks(c, p)]
    needed: int | None = None
    n = c.paired.n_pairs
    enough = n >= p.min_paired_rows
    checks.append(
        Check(
            name="paired_rows",
            status="pass" if enough else "inconclusive",
            message=(
                f"{n} paired rows (scored by both arms)"
                + ("" if enough else f"; the policy needs at least {p.min_paired_rows}")
            ),
        )
    )
    score_checks = [("non_inferiority", -p.margin)]
    if p.min_improvement is not None:
        score_checks.append(("improvement", p.min_improvement))
    for name, threshold in score_checks:
        check = ci_check(name, threshold, c, p) if enough else None
        if check is not None:
            checks.append(check)
        if check is None or check.status == "inconclusive":
            rows = _rows_to_settle(c, threshold)
            if rows is not None:
                needed = max(needed or 0, rows)
    checks.extend(slice_checks(c, group, p))
    noise = noise_check(c, group, p)
    if noise is not None:
        checks.append(noise)
    decision = _decision(checks)
    if decision == "INCONCLUSIVE" and not enough:
        needed = max(needed or 0, p.min_paired_rows)
    return _verdict(c, group, p, checks, decision, needed)


def _decide_pairwise(
    c: CandidateComparison, group: GroupHeader, p: AppliedPolicy
) -> CandidateVerdict:
    """A pairwise candidate: its win rate against 0.5 - win_rate_margin (gate/pairwise.py)."""
    assert c.pairwise is not None
    checks = pairwise_checks(c, p)
    decision = _decision(checks)
    needed = None
    if decision == "INCONCLUSIVE":
        needed = max(p.min_paired_rows, win_rate_rows_to_settle(c.pairwise, p) or 0)
    return _verdict(c, group, p, checks, decision, needed)


def _decision(checks: list[Check]) -> Decision:
    """FAIL if any check fails, else INCONCLUSIVE if any is, else PASS."""
    statuses = {check.status for check in checks}
    if "fail" in statuses:
        return "FAIL"
    return "INCONCLUSIVE" if "inconclusive" in statuses else "PASS"


def _verdict(
    c: CandidateComparison,
    group: GroupHeader,
    p: AppliedPolicy,
    checks: list[Check],
    decision: Decision,
    needed: int | None,
) -> CandidateVerdict:
    """The verdict with its reasons: the checks behind the decision, and for INCONCLUSIVE the
    sample size that would settle it."""
    if decision != "INCONCLUSIVE":
        needed = None
    rerun = _sample_size_for(needed, c, group) if needed is not None else None
    wanted = "fail" if decision == "FAIL" else "inconclusive"
    reasons = [check.message for check in checks if check.status == wanted]
    if rerun is not None:
        reasons.append(_rerun_advice(rerun, group))
    return CandidateVerdict(
        model=c.arm.model,
        role=c.arm.role,
        run_id=c.arm.run_id,
        decision=decision,
        reasons=reasons if decision != "PASS" else [],
        checks=checks,
        policy=p,
        rows_needed=needed,
        rerun_sample_size=rerun,
        comparison=c,
    )


def _rows_to_settle(c: CandidateComparison, threshold: float) -> int | None:
    """Paired rows for the interval to clear ``threshold`` on the side the observed mean
    difference lies, if that difference holds (80 % power)."""
    d = c.paired
    if d.sd_diff is None or d.mean_diff is None:
        return None
    # The sample size depends only on the distance between the expected difference and the
    # threshold, so any threshold maps onto the non-inferiority form with margin 0.
    distance = abs(d.mean_diff - threshold)
    if distance == 0:
        return None
    try:
        return power.rows_needed_noninferiority(
            d.sd_diff, 0.0, distance, alpha=round(1 - d.ci_level, 12)
        )
    except ValueError:  # overflow: a distance vast against the noise (a huge margin, a
        return None  # float-dust sd); no row count to report, and no reason to fail the gate


def _sample_size_for(paired_rows: int, c: CandidateComparison, group: GroupHeader) -> int:
    """Rows to sample for ``paired_rows`` paired ones, given the share of rows that paired."""
    share = c.paired.n_pairs / group.compared_rows if group.compared_rows else 0.0
    if share <= 0:
        return paired_rows
    return math.ceil(paired_rows / share)


def _rerun_advice(rows: int, group: GroupHeader) -> str:
    target = f"`assay run start {group.eval} --sample-size {rows}`" if group.eval else ""
    advice = f"rerun with {rows} rows" + (f": {target}" if target else "")
    if rows > group.dataset_rows:
        advice += (
            f" (dataset {group.dataset!r} has only {group.dataset_rows} rows: build a larger "
            "eval dataset, or accept a wider margin)"
        )
    return advice


def record_verdicts(store: Store, result: GateResult) -> None:
    """Append one Verdict row per gated arm, all in one transaction."""
    with store.session() as session:
        rows = []
        for v in result.verdicts:
            row = Verdict(
                group_id=result.group.group_id,
                run_id=v.run_id,
                policy=v.policy.model_dump(mode="json"),
                decision=v.decision,
                reasons=list(v.reasons),
                evidence={
                    "baseline_group_id": result.group.baseline_group_id,
                    "baseline_run_id": result.group.baseline.run_id,
                    "seed": result.group.seed,
                    "resamples": result.group.resamples,
                    "rows_needed": v.rows_needed,
                    "rerun_sample_size": v.rerun_sample_size,
                    "checks": [ch.model_dump(mode="json") for ch in v.checks],
                    "comparison": v.comparison.model_dump(mode="json"),
                },
            )
            session.add(row)
            rows.append((v, row))
        session.flush()
        for v, row in rows:
            v.verdict_id = row.id


class StoredVerdict(BaseModel):
    """A verdict an earlier gate stored: the decision, its reasons, the policy and evidence."""

    id: int
    group_id: int
    run_id: int
    model: str
    decision: Decision
    reasons: list[str]
    policy: dict[str, Any]  # as applied
    evidence: dict[str, Any]
    created_at: datetime


def list_verdicts(
    store: Store, group_id: int, limit: int = 50, offset: int = 0
) -> list[StoredVerdict]:
    """The verdicts stored for a run group, newest first (every gate appends)."""
    with store.session() as session:
        run_group_by_id(session, group_id)
        query = (
            select(Verdict, Run.label)
            .join(Run, Run.id == Verdict.run_id)
            .where(Verdict.group_id == group_id)
            .order_by(Verdict.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [
            StoredVerdict(
                id=v.id,
                group_id=v.group_id,
                run_id=v.run_id,
                model=label,
                decision=v.decision,  # type: ignore[arg-type]
                reasons=list(v.reasons or []),
                policy=v.policy or {},
                evidence=v.evidence or {},
                created_at=v.created_at.replace(tzinfo=v.created_at.tzinfo or UTC),
            )
            for v, label in session.execute(query)
        ]
