"""Promotion: point a deployment alias at a candidate the release gate passed.

The gate's stored verdict is the evidence, not a fresh computation: a promotion relies on the
decision someone saw (``assay gate GROUP``), and records which verdict that was. Anything but
PASS is refused unless the caller forces it with a reason, which is recorded as such.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from assay.deploy.actor import resolve_actor
from assay.deploy.aliases import (
    AliasChange,
    alias_by_name,
    change_result,
    check_reason,
    retarget,
    utc,
)
from assay.errors import NotFoundError, ValidationError
from assay.store import Store
from assay.store.lookup import endpoint_by_name, run_group_by_id
from assay.store.models import ModelEndpoint, Run, Verdict


class PromotionRefused(ValidationError):
    """The gate's verdict does not allow the promotion; nothing was changed."""


def promote(
    store: Store,
    group_id: int,
    candidate: str,
    alias: str,
    *,
    force: bool = False,
    reason: str | None = None,
    actor: str | None = None,
) -> AliasChange:
    """Point ``alias`` at ``candidate`` if the latest stored gate verdict for that candidate's
    run in ``group_id`` is PASS; with ``force`` (and a reason) whatever the verdict."""
    why = check_reason(reason)
    if force and why is None:
        raise ValidationError(
            "--force needs --reason: say why the gate's verdict is being overridden "
            "(it is recorded in the alias history)"
        )
    who = resolve_actor(actor)
    with store.session() as session:
        run_group_by_id(session, group_id)
        endpoint = endpoint_by_name(session, candidate)
        run = _candidate_run(session, group_id, endpoint, candidate)
        verdict = session.scalar(
            select(Verdict).where(Verdict.run_id == run.id).order_by(Verdict.id.desc()).limit(1)
        )
        if verdict is None:
            raise NotFoundError(
                f"run group {group_id} has no stored gate verdict for {candidate!r}: run "
                f"`assay gate {group_id}` first, then promote"
            )
        if verdict.decision != "PASS" and not force:
            reasons = "; ".join(str(r) for r in verdict.reasons or []) or "no reason recorded"
            raise PromotionRefused(
                f"promotion refused: the gate verdict for {candidate!r} in run group {group_id} "
                f"is {verdict.decision} (verdict {verdict.id}): {reasons}. Nothing was changed; "
                f"to override, repeat with --force --reason '...' (recorded in the history)"
            )
        target = alias_by_name(session, alias, lock=True)
        if target.endpoint_id == endpoint.id:
            return change_result(session, target, None)
        event = retarget(
            session,
            target,
            endpoint,
            "promote",
            who,
            reason=why,
            previous_endpoint_id=target.endpoint_id,
            group_id=group_id,
            decision=verdict.decision,
            forced=verdict.decision != "PASS",
            evidence=_evidence(group_id, run, verdict),
        )
        return change_result(session, target, event)


def _candidate_run(session: Session, group_id: int, endpoint: ModelEndpoint, name: str) -> Run:
    runs = list(session.scalars(select(Run).where(Run.group_id == group_id).order_by(Run.id)))
    for run in runs:
        if run.endpoint_id == endpoint.id and run.role == "candidate":
            return run
    arms = ", ".join(f"{r.label} ({r.role})" for r in runs) or "none"
    raise ValidationError(
        f"model {name!r} is not a candidate of run group {group_id} (its arms: {arms}); "
        "promote a candidate the group evaluated"
    )


def _evidence(group_id: int, run: Run, verdict: Verdict) -> dict[str, Any]:
    """What the promotion relied on, copied so the history reads without the group."""
    policy = dict(verdict.policy or {})
    paired = ((verdict.evidence or {}).get("comparison") or {}).get("paired") or {}
    evidence: dict[str, Any] = {
        "group_id": group_id,
        "run_id": run.id,
        "model": run.label,
        "verdict_id": verdict.id,
        "decision": verdict.decision,
        "reasons": [str(r) for r in verdict.reasons or []],
        "verdict_at": utc(verdict.created_at).isoformat(),
        "policy": policy,
    }
    for key in ("n_pairs", "mean_diff", "ci_low", "ci_high", "ci_level"):
        if paired.get(key) is not None:
            evidence[key] = paired[key]
    return evidence
