"""The conditions of a policy, each evaluated on one comparison into a ``Check``.

Each returns ``pass``, ``fail`` or ``inconclusive`` with a message written for the person
reading the verdict; ``verdict.decide`` combines them (any fail: FAIL, else any
inconclusive: INCONCLUSIVE, else PASS).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from assay.gate.policy import AppliedPolicy
from assay.stats.compare import CandidateComparison, GroupHeader


class Check(BaseModel):
    """One condition of the policy, as evaluated."""

    name: str  # paired_rows | non_inferiority | improvement | failure_rate | failure_increase
    #            | slice | judge_noise
    status: Literal["pass", "fail", "inconclusive"]
    message: str


def failure_checks(c: CandidateComparison, p: AppliedPolicy) -> list[Check]:
    f = c.failures
    if f.candidate_rate is None or f.rate_diff is None:
        return [Check(name="failure_rate", status="inconclusive", message="no finished rows")]
    rate_ok = f.candidate_rate <= p.max_failure_rate
    increase_ok = f.rate_diff <= p.max_failure_increase
    return [
        Check(
            name="failure_rate",
            status="pass" if rate_ok else "fail",
            message=(
                f"failure rate {_pct(f.candidate_rate)} ({f.candidate_failed}/{f.n_rows} rows) "
                + ("within" if rate_ok else "exceeds")
                + f" the maximum {_pct(p.max_failure_rate)}"
            ),
        ),
        Check(
            name="failure_increase",
            status="pass" if increase_ok else "fail",
            message=(
                f"failure rate {_pct(f.candidate_rate)} vs the baseline's "
                f"{_pct(f.baseline_rate or 0.0)}: a change of {f.rate_diff * 100:+.1f} points, "
                + ("within" if increase_ok else "above")
                + f" the allowed +{p.max_failure_increase * 100:.1f}"
            ),
        ),
    ]


def ci_check(name: str, threshold: float, c: CandidateComparison, p: AppliedPolicy) -> Check | None:
    """The interval against a threshold: above it passes, below it fails, across it is open."""
    d = c.paired
    if d.ci_low is None or d.ci_high is None or d.mean_diff is None:
        return None
    level = f"{d.ci_level * 100:g}%"
    interval = f"Δ {d.mean_diff:+.2f}, {level} CI [{d.ci_low:+.2f}, {d.ci_high:+.2f}]"
    if name == "non_inferiority":
        what = f"the non-inferiority margin -{p.margin:g}"
        fail_text = (
            f"worse than the baseline beyond the margin: {interval} lies below -{p.margin:g}"
        )
    else:
        what = f"the required improvement +{threshold:g}"
        fail_text = f"not the required improvement: {interval} lies below +{threshold:g}"
    if d.ci_low > threshold:
        return Check(name=name, status="pass", message=f"{interval} lies above {what}")
    if d.ci_high < threshold:
        return Check(name=name, status="fail", message=fail_text)
    return Check(
        name=name, status="inconclusive", message=f"{interval} straddles {what}: not settled yet"
    )


def slice_checks(c: CandidateComparison, group: GroupHeader, p: AppliedPolicy) -> list[Check]:
    checks = []
    for key in p.protected_slices:
        if key in group.missing_slice_keys:
            checks.append(
                Check(
                    name="slice",
                    status="inconclusive",
                    message=f"protected slice {key!r}: no compared row has this key",
                )
            )
            continue
        regressing = [s for s in c.slices if s.key == key and s.regresses]
        for s in regressing:
            d = s.comparison
            adjusted = f", adjusted p={s.p_adjusted:.3g}" if s.p_adjusted is not None else ""
            checks.append(
                Check(
                    name="slice",
                    status="fail",
                    message=(
                        f"protected slice {key}={s.value} regresses: Δ {d.mean_diff:+.2f} "
                        f"over {d.n_pairs} rows{adjusted}"
                    ),
                )
            )
        if not regressing:
            count = sum(1 for s in c.slices if s.key == key)
            checks.append(
                Check(
                    name="slice",
                    status="pass",
                    message=f"no slice of {key!r} regresses ({count} values)",
                )
            )
    return checks


def noise_check(c: CandidateComparison, group: GroupHeader, p: AppliedPolicy) -> Check | None:
    if p.max_noise_share is None:
        return None
    limit = f"the maximum {_pct(p.max_noise_share)}"
    if c.noise is None:
        return Check(
            name="judge_noise",
            status="inconclusive",
            message=(
                f"the policy limits the judge-noise share to {_pct(p.max_noise_share)} but the "
                f"group was judged {group.judge_samples} time(s) per output; rerun with "
                "--judge-samples 3 to measure it"
            ),
        )
    share = c.noise.noise_share
    if c.noise.noise_sd_of_mean_diff is None:
        return Check(
            name="judge_noise",
            status="inconclusive",
            message="judge noise could not be measured: no output has two scored judge samples",
        )
    if share is None:  # a mean difference of exactly 0: there is nothing for noise to explain
        return Check(
            name="judge_noise",
            status="pass",
            message=(
                "no mean difference for judge noise to explain (noise sd of the difference "
                f"{c.noise.noise_sd_of_mean_diff:.3f})"
            ),
        )
    ok = share <= p.max_noise_share
    return Check(
        name="judge_noise",
        status="pass" if ok else "fail",
        message=f"judge-noise share {_pct(share)} " + ("within " if ok else "exceeds ") + limit,
    )


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"
