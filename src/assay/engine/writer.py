"""The engine's only database writer: results are checkpointed in small batched transactions.

Every finished call becomes a record here; ``flush`` writes the generations, judgments and
cache entries collected so far in one transaction, so a crash loses at most the last batch
(whose calls the response cache then makes free to redo, as far as it was written) and never
leaves half a result. Generations are inserted before the judgments that refer to them.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, update

from assay.store import Store
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
        now = datetime.now(UTC)
        with self.store.session() as session:
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
        self.records_written += self.pending
        self.generations = []
        self.judgments = []
        self.cache_entries = []
        for key in self.finished_rows:
            self.generation_ids.pop(key, None)
        self.finished_rows = []
        self.last_flush = time.monotonic()
