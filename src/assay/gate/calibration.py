"""A policy can require that the group's judge be calibrated against human labels.

    default:
      calibration: {metric: spearman, min: 0.5}

When set, a candidate cannot PASS unless the latest calibration of the group's rubric version
with the group's judge (``assay rubric calibrate``) reaches ``min`` on ``metric``; otherwise
its verdict is INCONCLUSIVE with a reason naming what is missing. A FAIL stays a FAIL: an
uncalibrated judge cannot rescue a candidate the evidence already rejects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from assay.gate.checks import Check
    from assay.gate.verdict import CandidateVerdict
    from assay.stats.compare import GroupHeader
    from assay.store import Store

CalibrationMetric = Literal[
    "spearman", "kendall", "kappa", "exact", "within_1", "pairwise_accuracy"
]


class CalibrationRequirement(BaseModel):
    """``calibration:`` in a policy section: which agreement metric, and its minimum."""

    model_config = ConfigDict(extra="forbid", strict=True)

    metric: CalibrationMetric
    min: float = Field(ge=-1, le=1)


def calibration_check(
    store: Store, group: GroupHeader, requirement: CalibrationRequirement
) -> Check:
    """Whether the latest calibration of the group's rubric version and judge meets the
    requirement: ``pass``, or ``inconclusive`` saying what is missing."""
    from assay.gate.checks import Check
    from assay.rubrics.calibrate import latest_calibration
    from assay.store.lookup import endpoint_by_name, rubric_version

    what = f"rubric {group.rubric} v{group.rubric_version} with judge {group.judge}"
    wanted = f"{requirement.metric} >= {requirement.min:g}"
    command = (
        f"`assay rubric calibrate {group.rubric} --version {group.rubric_version} "
        f"--judge {group.judge} --labels LABELS`"
    )
    with store.session() as session:
        version = rubric_version(session, group.rubric, group.rubric_version)
        judge = endpoint_by_name(session, group.judge)
        found = latest_calibration(session, version.id, judge.id)
    if found is None:
        return Check(
            name="calibration",
            status="inconclusive",
            message=f"the policy needs a calibrated judge ({wanted}) but {what} has no "
            f"calibration against human labels; run {command}",
        )
    metric = found.metrics.get(requirement.metric)
    source = f"calibration {found.id} ({found.label_set}, {found.labels_judged} labels)"
    if metric is None or metric.value is None:
        why = "does not measure it" if metric is None else "could not compute it"
        return Check(
            name="calibration",
            status="inconclusive",
            message=f"the policy needs {wanted} for {what}, but the latest {source} {why} "
            f"(a {found.kind} calibration); run {command}",
        )
    interval = f" (95% CI {metric.low:.3f} to {metric.high:.3f})" if metric.low is not None else ""
    if metric.value < requirement.min:
        return Check(
            name="calibration",
            status="inconclusive",
            message=f"judge calibration {requirement.metric} {metric.value:.3f}{interval} is "
            f"below the policy's minimum {requirement.min:g} for {what} ({source}); improve "
            "the rubric or the judge and calibrate again",
        )
    return Check(
        name="calibration",
        status="pass",
        message=f"judge calibration {requirement.metric} {metric.value:.3f}{interval} meets "
        f"the minimum {requirement.min:g} ({source})",
    )


def require_calibration(
    store: Store, group: GroupHeader, verdict: CandidateVerdict
) -> CandidateVerdict:
    """Add the calibration check to a verdict whose policy asks for one; a PASS without it
    becomes INCONCLUSIVE."""
    requirement = verdict.policy.calibration
    if requirement is None:
        return verdict
    check = calibration_check(store, group, requirement)
    verdict.checks.append(check)
    if check.status == "pass":
        return verdict
    if verdict.decision == "PASS":
        verdict.decision = "INCONCLUSIVE"
        verdict.reasons = [check.message]
    elif verdict.decision == "INCONCLUSIVE":
        verdict.reasons.insert(0, check.message)
    return verdict
