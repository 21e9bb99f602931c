"""Run groups: creating one from an eval definition (seeded sample, one run per arm),
deriving its status from its runs, listing them."""

from __future__ import annotations

import os
import random
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from assay.engine.definitions import CAPTURED, _check_sample_size, eval_by_name
from assay.errors import ValidationError
from assay.providers import check_api_keys
from assay.store import Store
from assay.store.lookup import run_group_by_id
from assay.store.models import (
    Dataset,
    DatasetRow,
    EvalDefinition,
    ModelEndpoint,
    Rubric,
    RubricVersion,
    Run,
    RunGroup,
    RunGroupRow,
)

HEARTBEAT_STALE_AFTER = timedelta(seconds=60)
"""A running group whose worker has not written for this long is reported as interrupted."""

RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled")


class RunInfo(BaseModel):
    id: int
    model: str
    role: str  # baseline | candidate | reference
    status: str
    error: str | None = None


class GroupInfo(BaseModel):
    id: int
    name: str | None
    eval: str | None
    status: str
    dataset: str
    rubric: str
    rubric_version: int
    judge: str
    sample_size: int
    seed: int
    judge_samples: int
    parent_group_id: int | None
    is_baseline: bool
    created_at: datetime
    finished_at: datetime | None
    runs: list[RunInfo]


def create_group(
    store: Store,
    eval_name: str,
    *,
    sample_size: int | None = None,
    name: str | None = None,
    with_captured: bool | None = None,
    judge_samples: int | None = None,
    settings: dict[str, Any] | None = None,
) -> GroupInfo:
    """Pin everything and record the seeded sample; the rows are the same for every arm."""
    with store.session() as session:
        definition = eval_by_name(session, eval_name)
        version = session.get(RubricVersion, definition.rubric_version_id)
        judged = not (version and (version.combine or {}).get("mode") == "checks_only")
        # A checks-only rubric never calls the judge, so its key is not needed.
        judge_ids = [definition.judge_id] if judged else []
        endpoint_ids = [*judge_ids, definition.baseline_id, *definition.candidate_ids]
        names = [
            session.get(ModelEndpoint, i).name  # type: ignore[union-attr]
            for i in endpoint_ids
            if i is not None
        ]
    check_api_keys(store, names)
    with store.session() as session:
        definition = eval_by_name(session, eval_name)
        dataset = session.get(Dataset, definition.dataset_id)
        assert dataset is not None
        size = sample_size or definition.sample_size or dataset.row_count
        _check_sample_size(size, dataset.row_count, dataset.name)
        samples = judge_samples or definition.judge_samples
        if not 1 <= samples <= 20:
            raise ValidationError(f"--judge-samples must be between 1 and 20, got {samples}")
        captured = definition.with_captured if with_captured is None else with_captured
        if definition.baseline_id is None and not captured:
            raise ValidationError(f"eval {eval_name!r} has no baseline model without captured")
        group = RunGroup(
            eval_id=definition.id,
            name=name,
            dataset_id=dataset.id,
            rubric_version_id=definition.rubric_version_id,
            judge_id=definition.judge_id,
            sample_size=size,
            seed=definition.seed,
            judge_samples=samples,
            settings=settings or {},
        )
        session.add(group)
        session.flush()
        _record_sample(session, group, dataset)
        for run in _arms(session, definition, captured):
            run.group_id = group.id
            session.add(run)
        session.flush()
        return group_info(session, group)


def _record_sample(session: Session, group: RunGroup, dataset: Dataset) -> None:
    positions = sorted(
        random.Random(group.seed).sample(range(dataset.row_count), group.sample_size)
    )
    row_ids = dict(
        session.execute(
            select(DatasetRow.position, DatasetRow.id).where(DatasetRow.dataset_id == dataset.id)
        ).all()
    )
    session.execute(
        insert(RunGroupRow),
        [
            {"group_id": group.id, "position": i, "row_id": row_ids[p]}
            for i, p in enumerate(positions)
        ],
    )


def _arms(session: Session, definition: EvalDefinition, captured: bool) -> list[Run]:
    def model_run(endpoint_id: int, role: str) -> Run:
        endpoint = session.get(ModelEndpoint, endpoint_id)
        assert endpoint is not None
        return Run(endpoint_id=endpoint.id, role=role, label=endpoint.name, status="pending")

    runs = []
    if definition.baseline_id is not None:
        runs.append(model_run(definition.baseline_id, "baseline"))
    if captured:
        role = "reference" if definition.baseline_id is not None else "baseline"
        runs.append(Run(endpoint_id=None, role=role, label=CAPTURED, status="pending"))
    runs.extend(model_run(c, "candidate") for c in definition.candidate_ids)
    return runs


def derive_status(
    run_statuses: list[str], heartbeat_at: datetime | None = None, worker: str | None = None
) -> str:
    """A group's status is a function of its runs' (DESIGN.md); a dead worker shows."""
    statuses = set(run_statuses)
    if not statuses or statuses == {"pending"}:
        return "pending"
    if statuses == {"completed"}:
        return "completed"
    if "running" in statuses:
        if worker is not None and not worker_alive(worker):
            return "interrupted"
        if heartbeat_at is not None:
            beat = heartbeat_at if heartbeat_at.tzinfo else heartbeat_at.replace(tzinfo=UTC)
            if datetime.now(UTC) - beat > HEARTBEAT_STALE_AFTER:
                return "interrupted"
        return "running"
    if "cancelled" in statuses:
        return "cancelled"
    if "failed" in statuses:
        return "failed"
    return "pending"


def worker_alive(worker: str) -> bool:
    """A worker on this host is alive if its pid is; elsewhere only the heartbeat can tell."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_info(session: Session, group: RunGroup) -> GroupInfo:
    from assay.store.models import EvalDefinition as Eval

    runs = session.scalars(select(Run).where(Run.group_id == group.id).order_by(Run.id)).all()
    dataset = session.get(Dataset, group.dataset_id)
    version = session.get(RubricVersion, group.rubric_version_id)
    judge = session.get(ModelEndpoint, group.judge_id)
    assert dataset is not None and version is not None and judge is not None
    rubric = session.get(Rubric, version.rubric_id)
    definition = session.get(Eval, group.eval_id) if group.eval_id else None
    assert rubric is not None
    return GroupInfo(
        id=group.id,
        name=group.name,
        eval=definition.name if definition else None,
        status=derive_status([r.status for r in runs], group.heartbeat_at, group.worker),
        dataset=dataset.name,
        rubric=rubric.name,
        rubric_version=version.version,
        judge=judge.name,
        sample_size=group.sample_size,
        seed=group.seed,
        judge_samples=group.judge_samples,
        parent_group_id=group.parent_group_id,
        is_baseline=group.is_baseline,
        created_at=group.created_at,
        finished_at=group.finished_at,
        runs=[
            RunInfo(id=r.id, model=r.label, role=r.role, status=r.status, error=r.error)
            for r in runs
        ],
    )


def get_group(store: Store, group_id: int) -> GroupInfo:
    with store.session() as session:
        return group_info(session, run_group_by_id(session, group_id))


def list_groups(
    store: Store, eval_name: str | None = None, limit: int = 50, offset: int = 0
) -> list[GroupInfo]:
    with store.session() as session:
        query = select(RunGroup).order_by(RunGroup.id.desc()).limit(limit).offset(offset)
        if eval_name is not None:
            query = query.where(RunGroup.eval_id == eval_by_name(session, eval_name).id)
        return [group_info(session, g) for g in session.scalars(query)]
