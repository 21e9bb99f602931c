"""Reading what a comparison needs from the store: the groups, their sampled rows, each arm's
row outcomes (aggregated in SQL by ``row_outcomes``), judge samples and slice values.

Also the two refusals every gate needs first: the group must be finished, and an accepted
baseline must measure the same thing (dataset, rubric version, judge).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from assay.engine.groups import derive_status
from assay.errors import NotFoundError, ValidationError
from assay.stats.summary import RowOutcome, row_outcomes
from assay.store.models import (
    Dataset,
    DatasetRow,
    EvalDefinition,
    Generation,
    Inference,
    Judgment,
    ModelEndpoint,
    Rubric,
    RubricVersion,
    Run,
    RunGroup,
    RunGroupRow,
)


@dataclass
class Arm:
    run: Run
    group: RunGroup
    outcomes: dict[int, RowOutcome]
    samples: dict[int, list[float]] = field(default_factory=dict)


def accepted_baseline(session: Session, group: RunGroup) -> RunGroup:
    """The accepted baseline group of this group's eval; it must measure the same thing."""
    if group.eval_id is None:
        raise ValidationError(
            f"run group {group.id} has no eval definition, so it has no accepted baseline"
        )
    definition = session.get(EvalDefinition, group.eval_id)
    assert definition is not None
    base = session.scalar(
        select(RunGroup).where(RunGroup.eval_id == group.eval_id, RunGroup.is_baseline)
    )
    if base is None:
        raise NotFoundError(
            f"eval {definition.name!r} has no accepted baseline group; mark one with "
            "`assay run baseline GROUP`"
        )
    if base.id == group.id:
        raise ValidationError(
            f"run group {group.id} is itself the accepted baseline of eval {definition.name!r}; "
            "gate it without --against-baseline"
        )
    mismatches = []
    if base.dataset_id != group.dataset_id:
        mismatches.append(
            f"dataset {_dataset_name(session, base)!r} vs {_dataset_name(session, group)!r}"
        )
    if base.rubric_version_id != group.rubric_version_id:
        mismatches.append(
            f"rubric {_version_label(session, base)} vs {_version_label(session, group)}"
        )
    if base.judge_id != group.judge_id:
        mismatches.append(
            f"judge {_judge_name(session, base)!r} vs {_judge_name(session, group)!r}"
        )
    if mismatches:
        raise ValidationError(
            f"run group {group.id} cannot be compared with the accepted baseline group "
            f"{base.id}: different {'; '.join(mismatches)}. Run the eval again (or "
            f"`assay run rejudge {base.id}`) and mark a matching baseline"
        )
    return base


def require_finished(session: Session, group: RunGroup) -> None:
    statuses = list(session.scalars(select(Run.status).where(Run.group_id == group.id)))
    status = derive_status(statuses, group.heartbeat_at, group.worker)
    if status not in ("completed", "failed"):
        raise ValidationError(
            f"run group {group.id} is not finished (status {status}); finish it with "
            f"`assay run resume {group.id}` before gating"
        )


def require_complete(arm: Arm, rows: dict[int, int]) -> None:
    pending = sum(
        1 for row_id in rows if (o := arm.outcomes.get(row_id)) is None or o.status == "pending"
    )
    if pending:
        raise ValidationError(
            f"run group {arm.group.id}: {arm.run.label!r} has {pending} unfinished rows; "
            f"finish them with `assay run resume {arm.group.id}` before gating"
        )


def group_runs(session: Session, group: RunGroup) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.group_id == group.id).order_by(Run.id)))


def baseline_run(session: Session, group: RunGroup) -> Run:
    run = session.scalar(select(Run).where(Run.group_id == group.id, Run.role == "baseline"))
    if run is None:
        raise ValidationError(f"run group {group.id} has no baseline arm")
    return run


def sampled_rows(session: Session, group: RunGroup) -> dict[int, int]:
    """Row id -> dataset position, for the group's sampled rows."""
    return dict(
        session.execute(
            select(RunGroupRow.row_id, DatasetRow.position)
            .join(DatasetRow, DatasetRow.id == RunGroupRow.row_id)
            .where(RunGroupRow.group_id == group.id)
        ).all()
    )


def load_arm(session: Session, group: RunGroup, run: Run, noisy: bool) -> Arm:
    arm = Arm(run=run, group=group, outcomes=row_outcomes(session, group, run.id))
    if noisy:
        query = (
            select(Generation.row_id, Judgment.score)
            .join(Judgment, Judgment.generation_id == Generation.id)
            .where(
                Generation.run_id == run.id,
                Judgment.group_id == group.id,
                Judgment.status == "scored",
            )
            .order_by(Generation.row_id, Judgment.sample_index)
        )
        samples: dict[int, list[float]] = defaultdict(list)
        for row_id, score in session.execute(query):
            samples[row_id].append(float(score))
        arm.samples = dict(samples)
    return arm


def slice_values(
    session: Session, row_ids: list[int], keys: list[str]
) -> dict[int, dict[str, str]]:
    """Row id -> {slice key: value}; ``task``/``environment`` fall back to the captured
    inference's. Values that are not strings are sliced on their JSON text."""
    values: dict[int, dict[str, str]] = {}
    query = select(
        DatasetRow.id, DatasetRow.metadata_, Inference.task, Inference.environment
    ).outerjoin(Inference, Inference.id == DatasetRow.inference_id)
    chunk = 1000  # keep IN lists small for SQLite's variable limit
    for start in range(0, len(row_ids), chunk):
        part = query.where(DatasetRow.id.in_(row_ids[start : start + chunk]))
        for row_id, metadata, task, environment in session.execute(part):
            source: dict[str, Any] = {"task": task, "environment": environment}
            source.update(metadata or {})
            found = {}
            for key in keys:
                value = source.get(key)
                if value is not None:
                    found[key] = value if isinstance(value, str) else json.dumps(value)
            values[row_id] = found
    return values


def header_fields(session: Session, group: RunGroup) -> dict[str, Any]:
    dataset = session.get(Dataset, group.dataset_id)
    version = session.get(RubricVersion, group.rubric_version_id)
    assert dataset is not None and version is not None
    rubric = session.get(Rubric, version.rubric_id)
    definition = session.get(EvalDefinition, group.eval_id) if group.eval_id else None
    assert rubric is not None
    return {
        "eval": definition.name if definition else None,
        "dataset": dataset.name,
        "dataset_rows": dataset.row_count,
        "rubric": rubric.name,
        "rubric_version": version.version,
        "score_min": version.score_min,
        "score_max": version.score_max,
        "judge": _judge_name(session, group),
        "judge_samples": group.judge_samples,
        "sample_size": group.sample_size,
    }


def _dataset_name(session: Session, group: RunGroup) -> str:
    dataset = session.get(Dataset, group.dataset_id)
    return dataset.name if dataset else str(group.dataset_id)


def _version_label(session: Session, group: RunGroup) -> str:
    version = session.get(RubricVersion, group.rubric_version_id)
    assert version is not None
    rubric = session.get(Rubric, version.rubric_id)
    name = rubric.name if rubric else str(version.rubric_id)
    return f"{name!r} v{version.version}"


def _judge_name(session: Session, group: RunGroup) -> str:
    judge = session.get(ModelEndpoint, group.judge_id)
    return judge.name if judge else str(group.judge_id)
