"""Reading back the verdicts ``assay gate`` stored, for pages and reports that show a group's
latest decision without recomputing its statistics.

Each gate invocation appends one ``Verdict`` per gated arm; the latest decision of a group is,
for each of its arms, the most recent verdict stored for that arm.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import func, select

from assay.store import Store
from assay.store.models import Run, Verdict


class ArmVerdict(BaseModel):
    """The latest stored decision for one arm (run) of a group."""

    verdict_id: int
    run_id: int
    model: str
    decision: str  # PASS | FAIL | INCONCLUSIVE
    reasons: list[str]
    created_at: datetime


class GroupVerdict(BaseModel):
    """A group's latest decision: FAIL if any arm fails, else INCONCLUSIVE if any is, else PASS
    (the rule ``assay gate`` applies to its exit code)."""

    group_id: int
    decision: str
    created_at: datetime  # when the most recent of these verdicts was stored
    arms: list[ArmVerdict]


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _overall(decisions: Iterable[str]) -> str:
    found = set(decisions)
    if "FAIL" in found:
        return "FAIL"
    if "INCONCLUSIVE" in found:
        return "INCONCLUSIVE"
    return "PASS"


def latest_verdicts(store: Store, group_ids: Iterable[int]) -> dict[int, GroupVerdict]:
    """The latest stored verdict of each given group that has one (groups never gated are
    absent from the answer). One query, whatever the number of groups."""
    ids = sorted(set(group_ids))
    if not ids:
        return {}
    latest = (
        select(func.max(Verdict.id).label("id"))
        .where(Verdict.group_id.in_(ids))
        .group_by(Verdict.group_id, Verdict.run_id)
        .subquery()
    )
    query = (
        select(Verdict, Run.label)
        .join(latest, latest.c.id == Verdict.id)
        .join(Run, Run.id == Verdict.run_id)
        .order_by(Verdict.group_id, Run.id)
    )
    arms: dict[int, list[ArmVerdict]] = {}
    with store.session() as session:
        for verdict, label in session.execute(query):
            arms.setdefault(verdict.group_id, []).append(
                ArmVerdict(
                    verdict_id=verdict.id,
                    run_id=verdict.run_id,
                    model=label,
                    decision=verdict.decision,
                    reasons=[str(reason) for reason in verdict.reasons or []],
                    created_at=_utc(verdict.created_at),
                )
            )
    return {
        group_id: GroupVerdict(
            group_id=group_id,
            decision=_overall(arm.decision for arm in found),
            created_at=max(arm.created_at for arm in found),
            arms=found,
        )
        for group_id, found in arms.items()
    }
