"""Small builders shared by the engine tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select

from assay.store import Store
from assay.store.models import Dataset, DatasetRow, Rubric, RubricVersion


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
    """Write JSONL: dicts are serialised, bytes and str written as they are."""
    with path.open("wb") as out:
        for line in lines:
            if isinstance(line, dict):
                line = orjson.dumps(line)
            out.write((line.encode() if isinstance(line, str) else line) + b"\n")
    return path
