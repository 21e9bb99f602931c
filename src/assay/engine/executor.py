"""Executing a run group: pipelined generate -> judge, bounded concurrency, every result
checkpointed, resumable after a cancel or a crash.

The state lives in the store, not in memory: what is left to do is computed from the sampled
rows that have no generation yet and the generations that lack judgments, so a resume after
Ctrl-C or SIGKILL does exactly the missing work and never duplicates any. At most
``max_concurrency`` calls are in flight in total; a free worker takes a judgment before a new
generation, so rows finish in order, and row payloads are loaded in chunks as the work reaches
them, so memory stays flat in the number of rows.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, cast, delete, func, select, update
from sqlalchemy.orm import Session

from assay.engine.calls import ArmCaller, JudgeCaller, Outcome, RowData, load_rows
from assay.engine.groups import GroupInfo, group_info
from assay.engine.writer import (
    FLUSH_EVERY_RECORDS,
    FLUSH_EVERY_SECONDS,
    PendingJudgment,
    ResultWriter,
)
from assay.store import Store
from assay.store.lookup import run_group_by_id
from assay.store.models import Generation, Judgment, Run, RunGroup, RunGroupRow

ROW_CHUNK = 256
HEARTBEAT_EVERY_SECONDS = 10.0


@dataclass
class RunProgress:
    """What a progress display shows for one arm."""

    run_id: int
    model: str
    total: int
    done: int = 0  # rows with a failed generation or with all their judgments
    failed: int = 0  # rows that ended without any score
    cost_usd: float = 0.0
    judge_cost_usd: float = 0.0


@dataclass
class _GenItem:
    run_id: int
    row: RowData


@dataclass
class _JudgeItem:
    run_id: int
    row: RowData
    output: dict[str, Any]
    sample_index: int
    generation_id: int | None = None


@dataclass
class _RowState:
    remaining: int  # judgments still to come for this (run, row)
    scored: int = 0


@dataclass
class GroupExecutor:
    store: Store
    group_id: int
    arms: dict[int, ArmCaller]  # run id -> how that arm produces outputs
    judge: JudgeCaller
    judge_samples: int = 1
    max_concurrency: int = 32
    retry_failed: bool = False
    on_progress: Callable[[list[RunProgress]], None] | None = None
    progress: dict[int, RunProgress] = field(default_factory=dict)
    _judges: deque[_JudgeItem] = field(default_factory=deque)
    _states: dict[tuple[int, int], _RowState] = field(default_factory=dict)
    _gens_in_flight: int = 0

    async def run(self) -> GroupInfo:
        """Do every missing piece of work. Cancelling the task stops cleanly, keeping results."""
        gen_todo, judge_todo = self._prepare()
        self._writer = ResultWriter(self.store, self.group_id, self.judge.write_cache)
        self._changed = asyncio.Event()
        self._items = self._iter_items(gen_todo, judge_todo)
        self._report()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.max_concurrency)]
        flusher = asyncio.create_task(self._flush_periodically())
        cancelled = False
        try:
            await asyncio.gather(*workers)
        except BaseException:
            cancelled = True
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            self._writer.flush()
            self._finish(cancelled)
            self._report()
        with self.store.session() as session:
            return group_info(session, run_group_by_id(session, self.group_id))

    # --- planning: what is missing, from the store ------------------------------------------

    def _prepare(self) -> tuple[list[tuple[int, int]], list[tuple[int, int, int, list[int]]]]:
        run_ids = list(self.arms)
        with self.store.session() as session:
            group = run_group_by_id(session, self.group_id)
            if self.retry_failed:
                _drop_failures(session, run_ids, group.id)
            session.execute(
                update(Run)
                .where(Run.id.in_(run_ids))
                .values(status="running", error=None, started_at=datetime.now(UTC))
            )
            group.finished_at = None
            for run in session.scalars(select(Run).where(Run.id.in_(run_ids))):
                self.progress[run.id] = _count_progress(session, run, group, self.judge_samples)
            gen_todo = session.execute(
                select(Run.id, RunGroupRow.row_id)
                .join(RunGroupRow, RunGroupRow.group_id == Run.group_id)
                .outerjoin(
                    Generation,
                    (Generation.run_id == Run.id) & (Generation.row_id == RunGroupRow.row_id),
                )
                .where(Run.id.in_(run_ids), Generation.id.is_(None))
                .order_by(RunGroupRow.position, Run.id)
            ).all()
            judge_todo = self._missing_judgments(session, run_ids)
        return [tuple(r) for r in gen_todo], judge_todo  # type: ignore[misc]

    def _missing_judgments(
        self, session: Session, run_ids: list[int]
    ) -> list[tuple[int, int, int, list[int]]]:
        """(run, row, generation, missing sample indices) for stored outputs not fully judged."""
        have: dict[int, set[int]] = {}
        scored: dict[int, int] = {}
        for gen_id, index, status in session.execute(
            select(Judgment.generation_id, Judgment.sample_index, Judgment.status)
            .join(Generation, Generation.id == Judgment.generation_id)
            .where(Judgment.group_id == self.group_id, Generation.run_id.in_(run_ids))
        ):
            have.setdefault(gen_id, set()).add(index)
            scored[gen_id] = scored.get(gen_id, 0) + (status == "scored")
        todo = []
        for run_id, row_id, gen_id in session.execute(
            select(Generation.run_id, Generation.row_id, Generation.id)
            .where(Generation.run_id.in_(run_ids), Generation.status == "completed")
            .order_by(Generation.id)
        ):
            done = have.get(gen_id, set())
            missing = [i for i in range(self.judge_samples) if i not in done]
            if missing:
                todo.append((run_id, row_id, gen_id, missing))
                self._states[(run_id, row_id)] = _RowState(len(missing), scored.get(gen_id, 0))
        return todo

    def _iter_items(
        self,
        gen_todo: list[tuple[int, int]],
        judge_todo: list[tuple[int, int, int, list[int]]],
    ) -> Iterator[_GenItem | _JudgeItem]:
        """Owed judgments first, then new generations; payloads loaded a chunk at a time."""
        for start in range(0, len(judge_todo), ROW_CHUNK):
            chunk = judge_todo[start : start + ROW_CHUNK]
            rows = load_rows(self.store, [row_id for _, row_id, _, _ in chunk])
            outputs = self._outputs([gen_id for _, _, gen_id, _ in chunk])
            for run_id, row_id, gen_id, missing in chunk:
                for index in missing:
                    yield _JudgeItem(run_id, rows[row_id], outputs[gen_id], index, gen_id)
        for start in range(0, len(gen_todo), ROW_CHUNK):
            chunk = gen_todo[start : start + ROW_CHUNK]
            rows = load_rows(self.store, list({row_id for _, row_id in chunk}))
            for run_id, row_id in chunk:
                yield _GenItem(run_id, rows[row_id])

    def _outputs(self, generation_ids: list[int]) -> dict[int, dict[str, Any]]:
        with self.store.session() as session:
            return dict(
                session.execute(
                    select(Generation.id, Generation.output).where(
                        Generation.id.in_(generation_ids)
                    )
                ).all()
            )

    # --- doing ------------------------------------------------------------------------------

    def _take(self) -> _GenItem | _JudgeItem | None:
        if self._judges:
            return self._judges.popleft()
        item = next(self._items, None)
        if isinstance(item, _GenItem):
            self._gens_in_flight += 1
        return item

    async def _worker(self) -> None:
        while True:
            item = self._take()
            if item is None:
                if self._gens_in_flight == 0:
                    self._changed.set()  # wake the others so they can stop too
                    return
                self._changed.clear()
                await self._changed.wait()
                continue
            if isinstance(item, _GenItem):
                await self._generate(item)
            else:
                await self._judge(item)
            # Unwritten results are calls a crash would pay again: keep them under ~C.
            if self._writer.pending >= min(FLUSH_EVERY_RECORDS, self.max_concurrency):
                self._writer.flush()
                self._report()

    async def _generate(self, item: _GenItem) -> None:
        try:
            outcome = await self.arms[item.run_id].generate(item.row)
        finally:
            self._gens_in_flight -= 1
            self._changed.set()
        values = {**outcome.values, "run_id": item.run_id, "row_id": item.row.id}
        self._writer.add_generation(values, outcome.cache_entry)
        progress = self.progress[item.run_id]
        progress.cost_usd += outcome.values.get("cost_usd") or 0.0
        if values["status"] != "completed":
            progress.done += 1
            progress.failed += 1
            return
        self._states[(item.run_id, item.row.id)] = _RowState(self.judge_samples)
        for index in range(self.judge_samples):
            self._judges.append(_JudgeItem(item.run_id, item.row, values["output"], index))

    async def _judge(self, item: _JudgeItem) -> None:
        outcome: Outcome = await self.judge.judge(item.row, item.output, item.sample_index)
        pending = PendingJudgment(item.run_id, item.row.id, outcome.values, item.generation_id)
        self._writer.add_judgment(pending, outcome.cache_entry)
        progress = self.progress[item.run_id]
        progress.judge_cost_usd += outcome.values.get("cost_usd") or 0.0
        key = (item.run_id, item.row.id)
        state = self._states[key]
        state.remaining -= 1
        state.scored += outcome.values["status"] == "scored"
        if state.remaining == 0:
            del self._states[key]
            self._writer.row_finished(key)
            progress.done += 1
            progress.failed += state.scored == 0

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_SECONDS)
            idle = time.monotonic() - self._writer.last_flush
            if self._writer.pending or idle > HEARTBEAT_EVERY_SECONDS:
                self._writer.flush()  # also the heartbeat that tells the worker is alive
            self._report()

    def _finish(self, cancelled: bool) -> None:
        """Each run ends completed (all rows done), failed (nothing usable) or cancelled."""
        now = datetime.now(UTC)
        with self.store.session() as session:
            group = run_group_by_id(session, self.group_id)
            for run in session.scalars(select(Run).where(Run.id.in_(list(self.arms)))):
                progress = _count_progress(session, run, group, self.judge_samples)
                self.progress[run.id] = progress
                run.finished_at = now
                if progress.done < progress.total:
                    run.status = "cancelled" if cancelled else "failed"
                    run.error = run.error or ("cancelled" if cancelled else "unfinished rows")
                elif progress.failed == progress.total:
                    run.status = "failed"
                    run.error = _first_error(session, run.id, group.id)
                else:
                    run.status = "completed"
            statuses = session.scalars(select(Run.status).where(Run.group_id == group.id)).all()
            if all(s in ("completed", "failed") for s in statuses):
                group.finished_at = now
            group.heartbeat_at = None

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(list(self.progress.values()))


def _drop_failures(session: Session, run_ids: list[int], group_id: int) -> None:
    """For --retry-failed: failed rows become missing work again."""
    failed_generations = select(Generation.id).where(
        Generation.run_id.in_(run_ids), Generation.status == "generation_failed"
    )
    session.execute(delete(Generation).where(Generation.id.in_(failed_generations)))
    session.execute(
        delete(Judgment).where(Judgment.group_id == group_id, Judgment.status != "scored")
    )


def _count_progress(session: Session, run: Run, group: RunGroup, samples: int) -> RunProgress:
    gen_rows = session.execute(
        select(Generation.status, func.count(), func.coalesce(func.sum(Generation.cost_usd), 0.0))
        .where(Generation.run_id == run.id)
        .group_by(Generation.status)
    ).all()
    gen_failed = sum(n for status, n, _ in gen_rows if status != "completed")
    cost = float(sum(c for _, _, c in gen_rows))
    per_generation = session.execute(
        select(
            func.count(Judgment.id),
            func.sum(cast(Judgment.status == "scored", Integer)),
            func.coalesce(func.sum(Judgment.cost_usd), 0.0),
        )
        .join(Generation, Generation.id == Judgment.generation_id)
        .where(Generation.run_id == run.id, Judgment.group_id == group.id)
        .group_by(Judgment.generation_id)
    ).all()
    complete = [g for g in per_generation if g[0] >= samples]
    unscored = sum(1 for g in complete if not g[1])
    judge_cost = float(sum(g[2] for g in per_generation))
    return RunProgress(
        run_id=run.id,
        model=run.label,
        total=group.sample_size,
        done=gen_failed + len(complete),
        failed=gen_failed + unscored,
        cost_usd=cost,
        judge_cost_usd=judge_cost,
    )


def _first_error(session: Session, run_id: int, group_id: int) -> str:
    error = session.scalar(
        select(Generation.error).where(Generation.run_id == run_id, Generation.error.is_not(None))
    ) or session.scalar(
        select(Judgment.error)
        .join(Generation, Generation.id == Judgment.generation_id)
        .where(Generation.run_id == run_id, Judgment.group_id == group_id)
        .where(Judgment.error.is_not(None))
    )
    return f"every row failed; first error: {error}" if error else "every row failed"
