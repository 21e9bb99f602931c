"""Writing a ``from_run`` training dataset: the dataset, then its rows by batches, each with
its provenance, in one transaction (a failure leaves nothing behind)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from assay.datasets.formats import clean_reference
from assay.datasets.from_run_select import Arm, Pick, Source
from assay.datasets.service import DatasetInfo, count_rows, dataset_by_name
from assay.errors import AlreadyExistsError
from assay.store import Store
from assay.store.models import Dataset, DatasetRow, Generation, Judgment

BATCH_ROWS = 500

_datasets = Dataset.__table__
_rows = DatasetRow.__table__

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(rows_written, rows_to_write)`` after each batch."""


@dataclass(frozen=True)
class Plan:
    """Everything the new dataset and each row's provenance need, decided before writing."""

    name: str
    row_format: str  # sft | preference
    filter: dict[str, Any]  # how it was built, stored on the dataset
    kept_eval_id: int
    group: dict[str, Any]  # what every row's provenance repeats about the group
    arms: list[Arm]
    threshold: float
    model: str


def write_dataset(
    store: Store, plan: Plan, picks: list[Pick], progress: ProgressCallback | None
) -> DatasetInfo:
    with store.engine.begin() as conn:
        dataset_id = _create(conn, plan)
        written = 0
        for start in range(0, len(picks), BATCH_ROWS):
            batch = picks[start : start + BATCH_ROWS]
            conn.execute(insert(_rows), _build_rows(conn, dataset_id, written, batch, plan))
            written += len(batch)
            if progress is not None:
                progress(written, len(picks))
        rows, duplicates = count_rows(conn, dataset_id)
        conn.execute(
            update(_datasets)
            .where(_datasets.c.id == dataset_id)
            .values(row_count=rows, duplicate_count=duplicates)
        )
        return dataset_by_name(conn, plan.name)


def _create(conn: Connection, plan: Plan) -> int:
    message = f"a dataset named '{plan.name}' already exists; choose another --name"
    if conn.execute(select(_datasets.c.id).where(_datasets.c.name == plan.name)).first():
        raise AlreadyExistsError(message)
    values = {
        "name": plan.name,
        "type": "training",
        "provenance": "derived",
        "source": f"run group {plan.group['group_id']}",
        "source_format": None,
        "row_format": plan.row_format,
        "filter": plan.filter,
        "excluded_dataset_id": plan.kept_eval_id,
        "row_count": 0,
        "duplicate_count": 0,
    }
    try:
        result = conn.execute(insert(_datasets).values(**values))
    except IntegrityError as exc:  # another build took the name meanwhile
        raise AlreadyExistsError(message) from exc
    return int(result.inserted_primary_key[0])


def _build_rows(
    conn: Connection, dataset_id: int, start: int, picks: list[Pick], plan: Plan
) -> list[dict[str, Any]]:
    """The rows of one batch: three queries (source rows, outputs, reasoning), not one per row."""
    row_ids = [p.row_id for p in picks]
    generation_ids = [
        s.generation_id for p in picks for s in (p.chosen, p.rejected) if s.generation_id
    ]
    outputs = dict(
        conn.execute(
            select(Generation.id, Generation.output).where(Generation.id.in_(generation_ids))
        ).all()
    )
    reasoning: dict[int, list[str | None]] = {}
    query = (
        select(Judgment.generation_id, Judgment.reasoning)
        .where(
            Judgment.generation_id.in_(generation_ids),
            Judgment.group_id == plan.group["group_id"],
            Judgment.status == "scored",
        )
        .order_by(Judgment.generation_id, Judgment.sample_index)
    )
    for generation_id, text in conn.execute(query):
        reasoning.setdefault(generation_id, []).append(text)
    found = {r.id: r._mapping for r in conn.execute(select(_rows).where(_rows.c.id.in_(row_ids)))}
    out = []
    for offset, pick in enumerate(picks):
        row = found[pick.row_id]

        def message(source: Source, row: Any = row) -> dict[str, Any]:
            taken = (
                row["reference"] if source.generation_id is None else outputs[source.generation_id]
            )
            return clean_reference(taken)

        provenance = {
            **plan.group,
            "row_id": pick.row_id,
            "row": row["position"],
            "model": plan.model,
            "below": plan.threshold,
            "arms": [_arm_line(arm, pick.row_id) for arm in plan.arms],
            "chosen": _source_line(pick.chosen, reasoning),
            "rejected": _source_line(pick.rejected, reasoning),
        }
        metadata = {**(row["metadata"] or {}), "provenance": provenance}
        if plan.row_format == "preference":
            metadata["rejected"] = message(pick.rejected)
        out.append(
            {
                "dataset_id": dataset_id,
                "position": start + offset,
                "messages": row["messages"],
                "tools": row["tools"],
                "reference": message(pick.chosen),
                "params": row["params"],
                "metadata": metadata,
                "content_hash": row["content_hash"],
                "inference_id": row["inference_id"],
            }
        )
    return out


def _arm_line(arm: Arm, row_id: int) -> dict[str, Any]:
    outcome = arm.outcomes.get(row_id)
    return {
        "model": arm.label,
        "role": arm.role,
        "status": outcome.status if outcome else "pending",
        "score": outcome.score if outcome else None,
    }


def _source_line(source: Source, reasoning: dict[int, list[str | None]]) -> dict[str, Any]:
    judged = reasoning.get(source.generation_id, []) if source.generation_id else []
    return {
        "model": source.model,
        "role": source.role,
        "score": source.score,
        "generation_id": source.generation_id,
        "why": source.reason,
        "judge_reasoning": judged,
    }
