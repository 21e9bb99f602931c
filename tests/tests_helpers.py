"""Small builders shared by the engine tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select

from assay.store import Store, open_store
from assay.store.models import Dataset, DatasetRow, Generation, Judgment, Rubric, RubricVersion


def write_rows(path: Path, rows: int) -> Path:
    """A chat JSONL file of multiplication questions with their correct answers."""
    with path.open("w") as f:
        for i in range(rows):
            line = {
                "id": f"q{i}",
                "messages": [
                    {"role": "system", "content": "Answer with the number only."},
                    {"role": "user", "content": f"What is {i} times 3?"},
                    {"role": "assistant", "content": str(i * 3)},
                ],
                "metadata": {"difficulty": "easy" if i % 2 else "hard"},
            }
            f.write(json.dumps(line) + "\n")
    return path


def rubric_counts(store: Store) -> tuple[int, int]:
    """(rubrics, rubric versions) stored: what a refused command must leave unchanged."""
    with store.session() as session:
        rubrics = session.scalar(select(func.count()).select_from(Rubric))
        versions = session.scalar(select(func.count()).select_from(RubricVersion))
    return rubrics or 0, versions or 0


def add_dataset(store: Store, name: str, rows: list[dict[str, Any]]) -> None:
    """Insert an eval dataset directly, so rubric tests do not depend on the importer."""
    with store.session() as session:
        dataset = Dataset(name=name, type="eval", provenance="upload", row_count=len(rows))
        session.add(dataset)
        for position, row in enumerate(rows):
            session.add(
                DatasetRow(
                    dataset=dataset,
                    position=position,
                    messages=row["messages"],
                    tools=None,
                    reference=row.get("reference"),
                    metadata_=row.get("metadata", {}),
                    content_hash=f"{position:064d}",
                )
            )


def chat(i: int | str, answer: str = "Sure.") -> dict[str, Any]:
    """One chat-format line: a question and its reference answer."""
    return {
        "id": f"r{i}",
        "messages": [
            {"role": "user", "content": f"Question {i}?"},
            {"role": "assistant", "content": answer},
        ],
    }


def write(path: Path, lines: list[Any]) -> Path:
    """Write JSONL: str and bytes are written as they are, anything else serialised."""
    with path.open("wb") as out:
        for line in lines:
            if not isinstance(line, str | bytes):
                line = orjson.dumps(line)
            out.write((line.encode() if isinstance(line, str) else line) + b"\n")
    return path


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def export_line(i: int, **extra: Any) -> dict[str, Any]:
    """An Assay export line: question i, its answer, tags."""
    line: dict[str, Any] = {
        "request": {
            "model": "gpt-a",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Question {i}?"},
            ],
        },
        "response": {
            "object": "chat.completion",
            "model": "gpt-a",
            "choices": [{"message": {"role": "assistant", "content": f"Answer {i}."}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3},
        },
        "started_at": (T0 + timedelta(minutes=i)).isoformat(),
        "environment": "prod",
        "task": "support",
        "duration_ms": float(i + 1),
        "cost_usd": 0.001,
        "metadata": {"customer": f"c{i % 2}"},
    }
    line.update(extra)
    return line


def check_invariants(database_url: str, home: Path) -> dict[str, int]:
    """What must hold whatever happened: one generation per (run, row), one judgment per
    (generation, version, judge, sample), no score on a failed row."""
    with open_store(database_url, home=home) as store, store.session() as s:
        dup_gens = s.execute(
            select(Generation.run_id, Generation.row_id)
            .group_by(Generation.run_id, Generation.row_id)
            .having(func.count() > 1)
        ).all()
        assert dup_gens == []
        dup_judgments = s.execute(
            select(Judgment.generation_id, Judgment.sample_index)
            .group_by(Judgment.generation_id, Judgment.rubric_version_id, Judgment.judge_id,
                      Judgment.sample_index)
            .having(func.count() > 1)
        ).all()  # fmt: skip
        assert dup_judgments == []
        scored_failures = s.scalar(
            select(func.count()).where(Judgment.status != "scored", Judgment.score.is_not(None))
        )
        assert scored_failures == 0
        judged_failed_generations = s.scalar(
            select(func.count())
            .select_from(Judgment)
            .join(Generation, Generation.id == Judgment.generation_id)
            .where(Generation.status != "completed")
        )
        assert judged_failed_generations == 0
        return {
            "generations": s.scalar(select(func.count()).select_from(Generation)) or 0,
            "judgments": s.scalar(select(func.count()).select_from(Judgment)) or 0,
        }
