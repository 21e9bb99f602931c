"""Starting, resuming and rejudging run groups: the service the CLI and web app call."""

from __future__ import annotations

import gc
import os
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, literal, select
from sqlalchemy.orm import Session

from assay.engine.calls import ArmCaller, CapturedArm, JudgeCaller, ModelArm, PairJudgeCaller
from assay.engine.executor import GroupExecutor, RunProgress
from assay.engine.groups import HEARTBEAT_STALE_AFTER, GroupInfo, group_info, worker_alive
from assay.errors import ValidationError
from assay.providers import ModelCaller, check_api_keys, get_model
from assay.rubrics.checkfile import spec_from_version
from assay.store import Store
from assay.store.db import RETRY_SECONDS
from assay.store.lookup import endpoint_by_name, rubric_version, run_group_by_id
from assay.store.models import (
    DatasetRow,
    Generation,
    ModelEndpoint,
    Rubric,
    RubricVersion,
    Run,
    RunGroup,
    RunGroupRow,
)


@dataclass(frozen=True)
class ExecutionOptions:
    """How to execute; none of it changes what is measured."""

    max_concurrency: int = 32
    use_cache: bool = True
    max_attempts: int | None = None
    timeout_s: float | None = None
    retry_failed: bool = False
    on_progress: Callable[[list[RunProgress]], None] | None = None


async def execute_group(store: Store, group_id: int, options: ExecutionOptions) -> GroupInfo:
    """Do whatever work the group still lacks (all of it for a new group)."""
    if options.max_concurrency < 1:
        raise ValidationError("--max-concurrency must be at least 1")
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        _refuse_if_running_elsewhere(group)
        runs = session.scalars(select(Run).where(Run.group_id == group.id).order_by(Run.id)).all()
        todo = [r for r in runs if r.status != "completed" or options.retry_failed]
        if not todo:
            return group_info(session, group)
        version = session.get(RubricVersion, group.rubric_version_id)
        judge_endpoint = session.get(ModelEndpoint, group.judge_id)
        assert version is not None and judge_endpoint is not None
        session.expunge(version)
        names = {r.id: _endpoint_name(session, r.endpoint_id) for r in todo}
        judge_name, seed, samples = judge_endpoint.name, group.seed, group.judge_samples
    # A checks_only rubric never calls the judge: its key need not be set.
    checks = spec_from_version(version.checks, version.combine)
    judged = checks is None or checks.combine.mode != "checks_only"
    check_api_keys(store, [n for n in names.values() if n] + ([judge_name] if judged else []))
    # Building the callers imports the provider SDKs: a million long-lived objects. Keep the
    # collector out of that, then freeze them (and all else loaded) out of every later pass,
    # which would otherwise rescan them every few calls.
    gc.disable()
    try:
        arms: dict[int, ArmCaller] = {
            run_id: ModelArm(_caller(store, name, options)) if name else CapturedArm()
            for run_id, name in names.items()
        }
        judge_model = get_model(store, judge_name)
        judge: JudgeCaller | PairJudgeCaller
        if version.kind == "pairwise":
            assert judge_model.id is not None
            judge = PairJudgeCaller(
                _caller(store, judge_name, options), version, judge_model.id, judge_model, seed
            )
        else:
            judge = JudgeCaller(
                _caller(store, judge_name, options),
                version,
                judge_model.id,
                params=dict(judge_model.params),
                seed=seed,
            )
    finally:
        gc.freeze()
        gc.enable()
    callers = [a.caller for a in arms.values() if isinstance(a, ModelArm)] + [judge.caller]
    executor = GroupExecutor(
        store,
        group_id,
        arms,
        judge,
        judge_samples=samples,
        max_concurrency=options.max_concurrency,
        retry_failed=options.retry_failed,
        on_progress=options.on_progress,
    )
    interactive, store.retry_seconds = store.retry_seconds, RETRY_SECONDS
    try:  # an unattended run rides out a database restart
        return await executor.run()
    finally:
        store.retry_seconds = interactive
        for caller in callers:
            await caller.aclose()
        store.refresh_statistics("generations", "judgments")


def check_input_warnings(store: Store, group_id: int) -> list[str]:
    """Sampled rows that lack what one of the rubric's checks reads (a reference response, a
    metadata key): the check fails on each of them, so say so before paying for the run."""
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        version = session.get(RubricVersion, group.rubric_version_id)
        assert version is not None
        spec = spec_from_version(version.checks, version.combine)
        if spec is None:
            return []
        lacking: Counter[tuple[str, str]] = Counter()
        rows = session.execute(
            select(DatasetRow.reference.is_not(None), DatasetRow.metadata_)
            .join(RunGroupRow, RunGroupRow.row_id == DatasetRow.id)
            .where(RunGroupRow.group_id == group.id)
            .execution_options(yield_per=1000)
        )
        for has_reference, metadata in rows:
            lacking.update(spec.missing_inputs(bool(has_reference), metadata or {}))
        return [
            f"check {name!r} needs {need}, which {count} of {group.sample_size} sampled rows "
            "lack: it fails on them"
            for (name, need), count in lacking.items()
        ]


def _endpoint_name(session: Session, endpoint_id: int | None) -> str | None:
    if endpoint_id is None:
        return None
    endpoint = session.get(ModelEndpoint, endpoint_id)
    assert endpoint is not None
    return endpoint.name


def _caller(store: Store, name: str, options: ExecutionOptions) -> ModelCaller:
    # The executor writes cache entries in its own batches, with the results they belong to.
    kwargs: dict[str, object] = {"use_cache": options.use_cache, "write_cache": False}
    if options.max_attempts is not None:
        kwargs["max_attempts"] = options.max_attempts
    if options.timeout_s is not None:
        kwargs["timeout_s"] = options.timeout_s
    return ModelCaller(get_model(store, name), store, **kwargs)  # type: ignore[arg-type]


def _refuse_if_running_elsewhere(group: RunGroup) -> None:
    me = f"{socket.gethostname()}:{os.getpid()}"
    if group.worker and group.worker != me and group.heartbeat_at is not None:
        if not worker_alive(group.worker):
            return
        beat = group.heartbeat_at
        beat = beat if beat.tzinfo else beat.replace(tzinfo=UTC)
        if datetime.now(UTC) - beat < HEARTBEAT_STALE_AFTER:
            raise ValidationError(
                f"run group {group.id} is being executed by {group.worker} "
                f"(last heartbeat {beat:%H:%M:%S} UTC); stop that process first"
            )


def create_rejudge_group(
    store: Store,
    group_id: int,
    *,
    rubric_version_number: int | None = None,
    judge: str | None = None,
    judge_samples: int | None = None,
) -> GroupInfo:
    """A new group that judges the stored outputs of ``group_id`` again: no generation calls.

    The outputs are copied into the new group's runs (as completed generations), so every
    query reads a group the same way whether it generated or rejudged.
    """
    with store.session() as session:
        parent = run_group_by_id(session, group_id)
        old_version = session.get(RubricVersion, parent.rubric_version_id)
        assert old_version is not None
        rubric = session.get(Rubric, old_version.rubric_id)
        assert rubric is not None
        version = rubric_version(session, rubric.name, rubric_version_number)
        judge_id = endpoint_by_name(session, judge).id if judge else parent.judge_id
        if version.id == parent.rubric_version_id and judge_id == parent.judge_id:
            raise ValidationError(
                f"run group {group_id} was already judged with {rubric.name} v{version.version} "
                "by that judge; pass a different --rubric-version or --judge"
            )
        group = RunGroup(
            eval_id=parent.eval_id,
            name=f"rejudge of {parent.id}",
            dataset_id=parent.dataset_id,
            rubric_version_id=version.id,
            judge_id=judge_id,
            sample_size=parent.sample_size,
            seed=parent.seed,
            judge_samples=judge_samples or parent.judge_samples,
            parent_group_id=parent.id,
            settings={"rejudge_of": parent.id},
        )
        session.add(group)
        session.flush()
        session.execute(
            insert(RunGroupRow).from_select(
                ["group_id", "position", "row_id"],
                select(group.id, RunGroupRow.position, RunGroupRow.row_id).where(
                    RunGroupRow.group_id == parent.id
                ),
            )
        )
        for old in session.scalars(select(Run).where(Run.group_id == parent.id).order_by(Run.id)):
            run = Run(
                group_id=group.id,
                endpoint_id=old.endpoint_id,
                role=old.role,
                label=old.label,
                status="pending",
            )
            session.add(run)
            session.flush()
            _copy_outputs(session, old.id, run.id)
        return group_info(session, group)


def _copy_outputs(session: Session, from_run: int, to_run: int) -> None:
    columns = [
        "row_id", "status", "output", "error", "latency_ms", "input_tokens",
        "output_tokens", "cost_usd", "attempts", "cached", "created_at",
    ]  # fmt: skip
    table = Generation.__table__
    source = select(literal(to_run), *[table.c[c] for c in columns]).where(
        table.c.run_id == from_run
    )
    session.execute(insert(Generation).from_select(["run_id", *columns], source))
