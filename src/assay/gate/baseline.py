"""Baselines over time: which run group of an eval is the accepted reference.

``assay gate GROUP --against-baseline`` compares a new group with the baseline arm of the
group marked here, so a model can be held to what was accepted before, release after release.
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import select, update

from assay.errors import ValidationError
from assay.stats.compare_load import require_finished
from assay.store import Store
from assay.store.lookup import run_group_by_id
from assay.store.models import EvalDefinition, RunGroup


class BaselineChange(BaseModel):
    group_id: int
    eval: str
    previous_group_id: int | None  # the group that was the accepted baseline before, if any


def mark_baseline(store: Store, group_id: int) -> BaselineChange:
    """Make a finished group the accepted baseline of its eval, unmarking the previous one."""
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        if group.eval_id is None:
            raise ValidationError(
                f"run group {group_id} has no eval definition; only a group of an eval can be "
                "its accepted baseline"
            )
        # Lock the eval row: two concurrent marks must not leave two baselines (Postgres).
        definition = session.scalar(
            select(EvalDefinition).where(EvalDefinition.id == group.eval_id).with_for_update()
        )
        assert definition is not None
        require_finished(session, group)
        previous = session.scalar(
            select(RunGroup.id).where(
                RunGroup.eval_id == group.eval_id, RunGroup.is_baseline, RunGroup.id != group.id
            )
        )
        session.execute(
            update(RunGroup)
            .where(RunGroup.eval_id == group.eval_id, RunGroup.id != group.id)
            .values(is_baseline=False)
        )
        group.is_baseline = True
        return BaselineChange(group_id=group.id, eval=definition.name, previous_group_id=previous)
