"""The engine's only database writer: results are checkpointed in small batched transactions.

Every finished call becomes a record here; ``flush`` writes the generations, judgments and
cache entries collected so far in one transaction, so a crash loses at most the last batch
(whose calls the response cache then makes free to redo, as far as it was written) and never
leaves half a result. Generations are inserted before the judgments that refer to them.

A transient database failure (connection lost in a server restart, a SQLite lock held past
the busy timeout) is retried with backoff for up to ``RETRY_SECONDS``; a retry first checks
whether the failed attempt committed after all (its acknowledgement lost with the
connection), so a batch is never stored twice. Past that, ``StoreError`` says what happened.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from assay.errors import StoreError
from assay.store import Store
from assay.store.db import RETRY_MAX_DELAY, RETRY_SECONDS, describe_failure, is_transient
from assay.store.models import Generation, Judgment, RunGroup

FLUSH_EVERY_RECORDS = 64
FLUSH_EVERY_SECONDS = 0.25


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class PendingJudgment:
    run_id: int
    row_id: int
    values: dict[str, Any]  # Judgment columns except generation_id
    generation_id: int | None = None  # known when the generation was stored before


@dataclass
class ResultWriter:
    store: Store
    group_id: int
    write_cache: Any  # callable(list of cache entries, session) or None
    generations: list[dict[str, Any]] = field(default_factory=list)
    judgments: list[PendingJudgment] = field(default_factory=list)
    cache_entries: list[Any] = field(default_factory=list)
    # (run_id, row_id) -> generation id, for generations whose judgments are still coming.
    generation_ids: dict[tuple[int, int], int] = field(default_factory=dict)
    finished_rows: list[tuple[int, int]] = field(default_factory=list)
    records_written: int = 0
    retries: int = 0  # transient database failures retried
    last_flush: float = field(default_factory=time.monotonic)

    @property
    def pending(self) -> int:
        return len(self.generations) + len(self.judgments)

    def add_generation(self, values: dict[str, Any], cache_entry: Any = None) -> None:
        self.generations.append(values)
        if cache_entry is not None:
            self.cache_entries.append(cache_entry)

    def add_judgment(self, judgment: PendingJudgment, cache_entry: Any = None) -> None:
        self.judgments.append(judgment)
        if cache_entry is not None:
            self.cache_entries.append(cache_entry)

    def row_finished(self, key: tuple[int, int]) -> None:
        """All judgments of (run, row) are queued: drop its generation id after the next flush."""
        self.finished_rows.append(key)

    def flush(self) -> None:
        """Write everything pending in one transaction, retrying transient failures."""
        deadline = time.monotonic() + RETRY_SECONDS
        delay = 0.05
        retried = False
        while True:
            try:
                self._write(check_committed=retried)
                break
            except (DBAPIError, StoreError) as exc:
                cause = exc.__cause__ if isinstance(exc, StoreError) else exc
                if cause is None or not is_transient(cause):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StoreError(
                        f"{describe_failure(cause, self.store.engine)}; run group "
                        f"{self.group_id} stopped after retrying for {RETRY_SECONDS:.0f} s, "
                        f"its stored results are kept: `assay run resume {self.group_id}` "
                        "finishes it"
                    ) from exc
                self.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
                retried = True
        self.records_written += self.pending
        self.generations = []
        self.judgments = []
        self.cache_entries = []
        for key in self.finished_rows:
            self.generation_ids.pop(key, None)
        self.finished_rows = []
        self.last_flush = time.monotonic()

    def _write(self, *, check_committed: bool) -> None:
        now = datetime.now(UTC)
        with self.store.session() as session:
            if check_committed and self._committed_before(session):
                return
            if self.generations:
                rows = session.execute(
                    insert(Generation).returning(
                        Generation.id,
                        Generation.run_id,
                        Generation.row_id,
                        sort_by_parameter_order=True,
                    ),
                    self.generations,
                ).all()
                for gen_id, run_id, row_id in rows:
                    self.generation_ids[(run_id, row_id)] = gen_id
            if self.judgments:
                values = []
                for j in self.judgments:
                    gen_id = j.generation_id or self.generation_ids[(j.run_id, j.row_id)]
                    values.append({**j.values, "generation_id": gen_id, "group_id": self.group_id})
                session.execute(insert(Judgment), values)
            if self.cache_entries and self.write_cache is not None:
                self.write_cache(session, self.cache_entries)
            session.execute(
                update(RunGroup)
                .where(RunGroup.id == self.group_id)
                .values(heartbeat_at=now, worker=worker_name())
            )

    def _committed_before(self, session: Session) -> bool:
        """Whether the pending batch is already stored: an attempt whose commit went through
        but whose acknowledgement was lost. A batch is one transaction, so one of its records
        tells for all; generation ids are read back for the judgments still to come."""
        if self.generations:
            keys = [(g["run_id"], g["row_id"]) for g in self.generations]
            stored = session.execute(
                select(Generation.id, Generation.run_id, Generation.row_id).where(
                    and_(Generation.run_id == keys[0][0], Generation.row_id == keys[0][1])
                )
            ).first()
            if stored is None:
                return False
            for run_id, row_id in keys:
                gen_id = session.scalar(
                    select(Generation.id).where(
                        Generation.run_id == run_id, Generation.row_id == row_id
                    )
                )
                if gen_id is not None:
                    self.generation_ids[(run_id, row_id)] = gen_id
            return True
        if self.judgments:
            first = self.judgments[0]
            gen_id = first.generation_id or self.generation_ids.get((first.run_id, first.row_id))
            stored = session.scalar(
                select(Judgment.id).where(
                    Judgment.generation_id == gen_id,
                    Judgment.rubric_version_id == first.values.get("rubric_version_id"),
                    Judgment.judge_id == first.values.get("judge_id"),
                    Judgment.sample_index == first.values.get("sample_index"),
                )
            )
            return stored is not None
        return False
