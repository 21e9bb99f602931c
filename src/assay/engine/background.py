"""Executing run groups in the background: a detached ``assay run resume`` worker process.

The web app starts, resumes and cancels groups through here rather than executing them in its
own event loop: the CLI's executor already checkpoints every result, heartbeats, and treats
SIGTERM as a clean cancel (finished rows kept), and a separate process outlives the server.
Which process executes a group is in the store (``RunGroup.worker`` = ``host:pid``, with
``heartbeat_at``), so every shell sees it, a second start is refused while it is alive, and a
cancel knows whom to signal. Worker output goes to ``ASSAY_HOME/logs/group-N.log``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from assay.engine.groups import HEARTBEAT_STALE_AFTER, GroupInfo, group_info, worker_alive
from assay.engine.results import group_summary
from assay.errors import AssayError, ValidationError
from assay.providers import check_api_keys
from assay.store import Store
from assay.store.lookup import run_group_by_id
from assay.store.models import ModelEndpoint, Run, RunGroup

CANCEL_WAIT_SECONDS = 10.0
"""How long a cancel waits for the worker to save its results and exit."""
LOG_TAIL_LINES = 20


class WorkerInfo(BaseModel):
    """The process executing a group, as recorded in the store."""

    worker: str | None  # "host:pid" of the last process that executed the group
    alive: bool  # executing it now (pid alive on this host, or a fresh heartbeat elsewhere)
    on_this_host: bool
    heartbeat_at: datetime | None  # None once the worker has finished or was cancelled
    log_file: str | None  # the background worker's log, when there is one on this host
    log_tail: list[str]  # its last lines, when the group is unfinished and nothing runs it


class RunCounts(BaseModel):
    """Progress of one arm: rows done (scored or failed) out of the sample."""

    run_id: int
    model: str
    role: str
    status: str
    total: int
    done: int
    scored: int
    generation_failed: int
    judge_failed: int
    judge_unparseable: int
    pending: int


class GroupStatus(GroupInfo):
    """A group with its progress counts and its worker."""

    progress: list[RunCounts]
    worker: WorkerInfo


class CancelReport(BaseModel):
    group_id: int
    worker: str
    stopped: bool  # the worker exited within the wait (else it is still saving)
    message: str
    group: GroupInfo


def log_path(home: Path, group_id: int) -> Path:
    return home / "logs" / f"group-{group_id}.log"


def live_worker(group: RunGroup) -> str | None:
    """The worker executing ``group`` now, if any: recorded, heartbeat fresh, process alive."""
    if not group.worker or group.heartbeat_at is None:
        return None
    if datetime.now(UTC) - _utc(group.heartbeat_at) > HEARTBEAT_STALE_AFTER:
        return None
    return group.worker if worker_alive(group.worker) else None


def start_worker(
    store: Store,
    group_id: int,
    *,
    retry_failed: bool = False,
    max_concurrency: int = 32,
    use_cache: bool = True,
    max_attempts: int | None = None,
    timeout_s: float | None = None,
) -> int:
    """Start a detached worker that executes whatever ``group_id`` still lacks; its pid.

    Refused while a live worker executes the group, when there is nothing left to do, and
    when a model's API key variable is unset here (the worker inherits this environment).
    """
    if max_concurrency < 1:
        raise ValidationError(f"max_concurrency must be at least 1, got {max_concurrency}")
    if max_attempts is not None and max_attempts < 1:
        raise ValidationError(f"max_attempts must be at least 1, got {max_attempts}")
    if timeout_s is not None and timeout_s <= 0:
        raise ValidationError(f"timeout_s must be above 0, got {timeout_s}")
    args = ["run", "resume", str(group_id), "--max-concurrency", str(max_concurrency)]
    if retry_failed:
        args.append("--retry-failed")
    if not use_cache:
        args.append("--no-cache")
    if max_attempts is not None:
        args += ["--max-attempts", str(max_attempts)]
    if timeout_s is not None:
        args += ["--timeout", str(timeout_s)]
    check_api_keys(store, _model_names(store, group_id))
    with store.session() as session:
        group = _locked_group(session, group_id)
        running = live_worker(group)
        if running is not None:
            raise ValidationError(
                f"run group {group_id} is already being executed by worker {running}; "
                "wait for it to finish, or cancel it first"
            )
        statuses = session.scalars(select(Run.status).where(Run.group_id == group_id)).all()
        if statuses and all(s == "completed" for s in statuses) and not retry_failed:
            raise ValidationError(
                f"run group {group_id} is completed: nothing to resume (retry_failed redoes "
                "the rows that failed)"
            )
        process = _spawn(store, group_id, args)
        # Reap the worker when it exits: a zombie's pid looks alive to ``worker_alive``.
        threading.Thread(target=process.wait, name=f"reap-group-{group_id}", daemon=True).start()
        # Recorded now, before the worker's first checkpoint, so a second start is refused.
        group.worker = f"{socket.gethostname()}:{process.pid}"
        group.heartbeat_at = datetime.now(UTC)
    return process.pid


def _model_names(store: Store, group_id: int) -> list[str]:
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        arms = session.scalars(select(Run.endpoint_id).where(Run.group_id == group_id))
        ids = [group.judge_id, *(i for i in arms if i is not None)]  # None: captured outputs
        names = session.scalars(select(ModelEndpoint.name).where(ModelEndpoint.id.in_(ids)))
        return list(names)


def _locked_group(session: Session, group_id: int) -> RunGroup:
    """The group, its row write-locked first (a no-op UPDATE: a row lock on Postgres, the
    database's write lock on SQLite), so two shells cannot both see it idle and both start."""
    session.execute(update(RunGroup).where(RunGroup.id == group_id).values(worker=RunGroup.worker))
    return run_group_by_id(session, group_id)


def _spawn(store: Store, group_id: int, args: list[str]) -> subprocess.Popen[bytes]:
    settings = store.settings
    log = log_path(settings.home, group_id)
    env = {
        **os.environ,
        "ASSAY_DATABASE_URL": settings.database_url,
        "ASSAY_HOME": str(settings.home),
        "PYTHONUNBUFFERED": "1",
    }
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
            out.write(f"--- {stamp}: assay {' '.join(args)}\n".encode())
            out.flush()
            return subprocess.Popen(
                [sys.executable, "-m", "assay", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # not stopped by the server's Ctrl-C; outlives it
            )
    except OSError as exc:
        raise AssayError(f"cannot start a worker for run group {group_id}: {exc}") from exc


def cancel_group(
    store: Store, group_id: int, *, wait_s: float = CANCEL_WAIT_SECONDS
) -> CancelReport:
    """Stop the worker executing ``group_id`` with SIGTERM: it saves what it finished, marks
    unfinished runs cancelled and exits; ``resume`` does the rest later.

    Only a worker on this host can be signalled; for one elsewhere, or a group nothing is
    executing, this raises ``ValidationError`` saying so.
    """
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        status = group_info(session, group).status
        worker = live_worker(group)
    if worker is None:
        raise ValidationError(
            f"run group {group_id} is not running (status: {status}); nothing to cancel"
        )
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        raise ValidationError(
            f"run group {group_id} is executed by worker {worker} on another host; cancel it "
            f"there (Ctrl-C in its terminal, or `kill -TERM {pid}` on {host})"
        )
    try:
        os.kill(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        pass  # it exited on its own meanwhile
    except PermissionError:
        raise ValidationError(
            f"cannot signal worker {worker} of run group {group_id}: the process belongs to "
            "another user; stop it as that user"
        ) from None
    stopped = _wait_exit(worker, wait_s)
    if stopped:
        _cancel_leftovers(store, group_id, worker)
        message = f"cancelled: worker {worker} saved its finished rows and stopped"
    else:
        message = (
            f"cancel requested: worker {worker} is still saving its in-flight rows; "
            "the group's status turns to cancelled when it stops"
        )
    with store.session() as session:
        info = group_info(session, run_group_by_id(session, group_id))
    return CancelReport(
        group_id=group_id, worker=worker, stopped=stopped, message=message, group=info
    )


def _wait_exit(worker: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while worker_alive(worker):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _cancel_leftovers(store: Store, group_id: int, worker: str) -> None:
    """Runs a worker left pending or running (signalled before it could record the cancel)
    become cancelled, unless another worker has taken the group over since."""
    with store.session() as session:
        group = _locked_group(session, group_id)
        if group.worker != worker:
            return
        now = datetime.now(UTC)
        session.execute(
            update(Run)
            .where(Run.group_id == group_id, Run.status.in_(("pending", "running")))
            .values(status="cancelled", error="cancelled", finished_at=now)
        )
        group.heartbeat_at = None


def group_status(store: Store, group_id: int) -> GroupStatus:
    """The group, each arm's progress (counts that always add up to the sample) and its
    worker, with the end of the worker's log when the group is unfinished and nothing runs."""
    summary = group_summary(store, group_id)
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        info = group_info(session, group)
        worker = _worker_info(store.settings.home, group, info.status)
    progress = [
        RunCounts(
            run_id=r.run_id,
            model=r.model,
            role=r.role,
            status=r.status,
            total=r.total,
            done=r.total - r.pending,
            scored=r.scored,
            generation_failed=r.generation_failed,
            judge_failed=r.judge_failed,
            judge_unparseable=r.judge_unparseable,
            pending=r.pending,
        )
        for r in summary.runs
    ]
    return GroupStatus(**info.model_dump(), progress=progress, worker=worker)


def worker_state(store: Store, group_id: int) -> WorkerInfo:
    """Only the worker part of ``group_status``: no summary, for pages that have one already."""
    with store.session() as session:
        group = run_group_by_id(session, group_id)
        return _worker_info(store.settings.home, group, group_info(session, group).status)


def _worker_info(home: Path, group: RunGroup, status: str) -> WorkerInfo:
    alive = live_worker(group) is not None
    on_this_host = bool(group.worker) and group.worker.rpartition(":")[0] == socket.gethostname()
    log = log_path(home, group.id)
    exists = log.is_file()
    tail = _tail(log) if exists and not alive and status != "completed" else []
    return WorkerInfo(
        worker=group.worker,
        alive=alive,
        on_this_host=on_this_host,
        heartbeat_at=_utc(group.heartbeat_at) if group.heartbeat_at else None,
        log_file=str(log) if exists else None,
        log_tail=tail,
    )


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as file:
            return [line.rstrip("\n") for line in deque(file, maxlen=lines)]
    except OSError:
        return []


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
