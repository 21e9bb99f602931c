"""Executing a run group: pipelined generate -> judge, bounded concurrency, every result
checkpointed, resumable after a cancel or a crash.

The state lives in the store, not in memory: what is left to do is computed from the sampled
rows that have no generation yet and the generations that lack judgments, so a resume after
Ctrl-C or SIGKILL does exactly the missing work and never duplicates any. At most
``max_concurrency`` calls are in flight in total; a free worker takes a judgment before a new
generation, so rows finish in order, and row payloads are loaded in chunks as the work reaches
them, so memory stays flat in the number of rows.

Pairwise rubrics (``rubrics/pairwise.py``): the baseline run is generated but not judged; each
other arm's output is judged against the baseline's output for the same row, in both orders
(``2 * judge_samples`` judgments, ``sample_index = 2*k + o``). A candidate's judgments wait
until the baseline's generation for their row is stored (its id is the judgment's
``opponent_generation_id``); a failed baseline generation makes them ``judge_failed``.
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

from assay.engine.calls import (
    ArmCaller,
    JudgeCaller,
    Outcome,
    PairJudgeCaller,
    RowData,
    load_rows,
)
from assay.engine.groups import GroupInfo, group_info
from assay.engine.writer import (
    FLUSH_EVERY_RECORDS,
    FLUSH_EVERY_SECONDS,
    PendingJudgment,
    ResultWriter,
)
from assay.errors import ValidationError
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
    # Pairwise: the baseline's output for the row, and its generation id (None if it failed).
    opponent_id: int | None = None
    opponent_output: dict[str, Any] | None = None


@dataclass
class _RowState:
    remaining: int  # judgments still to come for this (run, row)
    scored: int = 0


@dataclass
class GroupExecutor:
    store: Store
    group_id: int
    arms: dict[int, ArmCaller]  # run id -> how that arm produces outputs
    judge: JudgeCaller | PairJudgeCaller
    judge_samples: int = 1
    max_concurrency: int = 32
    retry_failed: bool = False
    on_progress: Callable[[list[RunProgress]], None] | None = None
    progress: dict[int, RunProgress] = field(default_factory=dict)
    _judges: deque[_JudgeItem] = field(default_factory=deque)
    _states: dict[tuple[int, int], _RowState] = field(default_factory=dict)
    _gens_in_flight: int = 0
    # Pairwise only: the baseline run; its stored generations by row (id, completed); their
    # outputs once loaded (None: failed); those generated but not flushed yet (no id so far);
    # judgments waiting for their row's baseline output.
    _baseline_run: int | None = None
    _baseline_stored: dict[int, tuple[int, bool]] = field(default_factory=dict)
    _opponents: dict[int, tuple[int | None, dict[str, Any] | None]] = field(default_factory=dict)
    _unflushed: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    _waiting: dict[int, list[_JudgeItem]] = field(default_factory=dict)

    @property
    def pairwise(self) -> bool:
        return isinstance(self.judge, PairJudgeCaller)

    @property
    def _per_generation(self) -> int:
        """Judgments each judged output needs: both orders per sample when pairwise."""
        return 2 * self.judge_samples if self.pairwise else self.judge_samples

    def _judged(self, run_id: int) -> bool:
        return not (self.pairwise and run_id == self._baseline_run)

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
            self._flush()
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
            if self.pairwise:
                self._load_baseline(session, group.id)
            for run in session.scalars(select(Run).where(Run.id.in_(run_ids))):
                self.progress[run.id] = _count_progress(
                    session, run, group, self._per_generation, self._judged(run.id)
                )
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
            judged = [r for r in run_ids if self._judged(r)]
            judge_todo = self._missing_judgments(session, judged)
        return [tuple(r) for r in gen_todo], judge_todo  # type: ignore[misc]

    def _load_baseline(self, session: Session, group_id: int) -> None:
        self._baseline_run = session.scalar(
            select(Run.id).where(Run.group_id == group_id, Run.role == "baseline")
        )
        if self._baseline_run is None:
            raise ValidationError(
                f"run group {group_id} has a pairwise rubric but no baseline run to compare with"
            )
        for row_id, gen_id, status in session.execute(
            select(Generation.row_id, Generation.id, Generation.status).where(
                Generation.run_id == self._baseline_run
            )
        ):
            self._baseline_stored[row_id] = (gen_id, status == "completed")

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
            missing = [i for i in range(self._per_generation) if i not in done]
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
            self._preload_opponents(list(rows))
            for run_id, row_id, gen_id, missing in chunk:
                for index in missing:
                    item = _JudgeItem(run_id, rows[row_id], outputs[gen_id], index, gen_id)
                    if self._ready(item):
                        yield item
        for start in range(0, len(gen_todo), ROW_CHUNK):
            chunk = gen_todo[start : start + ROW_CHUNK]
            rows = load_rows(self.store, list({row_id for _, row_id in chunk}))
            self._preload_opponents(list(rows))
            for run_id, row_id in chunk:
                yield _GenItem(run_id, rows[row_id])

    def _outputs(self, generation_ids: list[int]) -> dict[int, dict[str, Any]]:
        def read(session: Session) -> dict[int, dict[str, Any]]:
            query = select(Generation.id, Generation.output).where(
                Generation.id.in_(generation_ids)
            )
            return dict(session.execute(query).all())  # type: ignore[arg-type]

        return self.store.retrying(read)  # a read: safe to redo if the connection drops

    # --- pairwise: judgments wait for the baseline's output ---------------------------------

    def _preload_opponents(self, row_ids: list[int]) -> None:
        """Read the stored baseline outputs of a chunk's rows in one query."""
        if not self.pairwise:
            return
        found = {r: self._baseline_stored.pop(r) for r in row_ids if r in self._baseline_stored}
        outputs = self._outputs([gen_id for gen_id, completed in found.values() if completed])
        for row_id, (gen_id, completed) in found.items():
            self._opponents[row_id] = (gen_id, outputs[gen_id]) if completed else (None, None)

    def _ready(self, item: _JudgeItem) -> bool:
        """Give a pairwise item its opponent if known, else park it until the baseline's."""
        if not self.pairwise:
            return True
        row_id = item.row.id
        if row_id not in self._opponents and row_id in self._baseline_stored:
            gen_id, completed = self._baseline_stored.pop(row_id)
            output = self._outputs([gen_id])[gen_id] if completed else None
            self._opponents[row_id] = (gen_id if completed else None, output)
        if row_id not in self._opponents:
            self._waiting.setdefault(row_id, []).append(item)
            return False
        item.opponent_id, item.opponent_output = self._opponents[row_id]
        return True

    def _baseline_done(self, row_id: int, gen_id: int | None, output: Any) -> None:
        self._opponents[row_id] = (gen_id, output)
        for item in self._waiting.pop(row_id, []):
            item.opponent_id, item.opponent_output = gen_id, output
            self._judges.append(item)

    def _flush(self) -> None:
        """Write what is pending; baseline outputs now stored release their waiting judgments."""
        self._writer.flush()
        if not self._unflushed:
            return
        for row_id, output in self._unflushed:
            key = (self._baseline_run, row_id)
            self._baseline_done(row_id, self._writer.generation_ids[key], output)  # type: ignore[index]
            self._writer.row_finished(key)  # type: ignore[arg-type]
        self._unflushed = []
        self._changed.set()

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
            if item is None and self._unflushed:
                self._flush()  # baseline outputs only become opponents once stored
                continue
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
                self._flush()
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
        completed = values["status"] == "completed"
        if not self._judged(item.run_id):  # the pairwise baseline: an opponent, not judged
            progress.done += 1
            progress.failed += not completed
            if completed:
                self._unflushed.append((item.row.id, values["output"]))
            else:
                self._baseline_done(item.row.id, None, None)
            return
        if not completed:
            progress.done += 1
            progress.failed += 1
            return
        self._states[(item.run_id, item.row.id)] = _RowState(self._per_generation)
        for index in range(self._per_generation):
            judge_item = _JudgeItem(item.run_id, item.row, values["output"], index)
            if self._ready(judge_item):
                self._judges.append(judge_item)

    async def _judge(self, item: _JudgeItem) -> None:
        outcome: Outcome
        if isinstance(self.judge, PairJudgeCaller):
            outcome = await self.judge.judge(
                item.row, item.output, item.sample_index, item.opponent_id, item.opponent_output
            )
        else:
            outcome = await self.judge.judge(item.row, item.output, item.sample_index)
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
                self._flush()  # also the heartbeat that tells the worker is alive
            self._report()

    def _finish(self, cancelled: bool) -> None:
        now = datetime.now(UTC)
        # Recomputes every status from the stored counts: safe to redo after a lost connection.
        self.store.retrying(lambda session: self._settle_runs(session, cancelled, now))

    def _settle_runs(self, session: Session, cancelled: bool, now: datetime) -> None:
        """Each run ends completed (all rows done), failed (nothing usable) or cancelled."""
        group = run_group_by_id(session, self.group_id)
        for run in session.scalars(select(Run).where(Run.id.in_(list(self.arms)))):
            progress = _count_progress(
                session, run, group, self._per_generation, self._judged(run.id)
            )
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


def _count_progress(
    session: Session, run: Run, group: RunGroup, samples: int, judged: bool = True
) -> RunProgress:
    """``samples``: judgments a judged output needs; ``judged=False``: a run only generated
    (the pairwise baseline), whose rows are done once generated."""
    gen_rows = session.execute(
        select(Generation.status, func.count(), func.coalesce(func.sum(Generation.cost_usd), 0.0))
        .where(Generation.run_id == run.id)
        .group_by(Generation.status)
    ).all()
    gen_failed = sum(n for status, n, _ in gen_rows if status != "completed")
    cost = float(sum(c for _, _, c in gen_rows))
    if not judged:
        return RunProgress(
            run_id=run.id,
            model=run.label,
            total=group.sample_size,
            done=sum(n for _, n, _ in gen_rows),
            failed=gen_failed,
            cost_usd=cost,
        )
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
