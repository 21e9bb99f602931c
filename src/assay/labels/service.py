"""Reading label sets: the list, one set with its first labels, and the stored calibrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from assay.store import Store
from assay.store.lookup import not_found
from assay.store.models import Dataset, DatasetRow, Label, LabelSet


class LabelSetInfo(BaseModel):
    id: int
    name: str
    dataset: str
    kind: str  # pointwise | pairwise
    source: str | None
    labels: int
    created_at: datetime


class LabelInfo(BaseModel):
    position: int
    row: int  # the row's position in its dataset
    row_id: int
    score: float | None
    output: dict[str, Any] | None  # None: the row's reference
    output_a: dict[str, Any] | None
    output_b: dict[str, Any] | None
    preferred: str | None
    annotator: str | None
    metadata: dict[str, Any]


class LabelSetDetail(LabelSetInfo):
    score_min: float | None  # pointwise: the lowest and highest human score
    score_max: float | None
    preferences: dict[str, int] | None  # pairwise: how many a, b, tie
    first: list[LabelInfo]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def label_set_by_name(session: Session, name: str) -> LabelSet:
    found = session.scalar(select(LabelSet).where(LabelSet.name == name))
    if found is None:
        names = session.scalars(select(LabelSet.name))
        raise not_found("label set", name, names, "assay labels list")
    return found


def _info(label_set: LabelSet, dataset: str) -> LabelSetInfo:
    return LabelSetInfo(
        id=label_set.id,
        name=label_set.name,
        dataset=dataset,
        kind=label_set.kind,
        source=label_set.source,
        labels=label_set.label_count,
        created_at=_utc(label_set.created_at),
    )


def list_label_sets(store: Store) -> list[LabelSetInfo]:
    with store.session() as session:
        query = (
            select(LabelSet, Dataset.name)
            .join(Dataset, Dataset.id == LabelSet.dataset_id)
            .order_by(LabelSet.name)
        )
        return [_info(s, d) for s, d in session.execute(query)]


def get_label_set(store: Store, name: str, first: int = 10) -> LabelSetDetail:
    """One label set with its score range or preference counts and its first labels."""
    with store.session() as session:
        found = label_set_by_name(session, name)
        dataset = session.get(Dataset, found.dataset_id)
        labels = session.execute(
            select(Label, DatasetRow.position)
            .join(DatasetRow, DatasetRow.id == Label.row_id)
            .where(Label.label_set_id == found.id)
            .order_by(Label.position)
        ).all()
        scores = [label.score for label, _ in labels if label.score is not None]
        preferences = None
        if found.kind == "pairwise":
            preferences = {key: 0 for key in ("a", "b", "tie")}
            for label, _ in labels:
                preferences[label.preferred or "tie"] += 1
        return LabelSetDetail(
            **_info(found, dataset.name if dataset else "?").model_dump(),
            score_min=min(scores) if scores else None,
            score_max=max(scores) if scores else None,
            preferences=preferences,
            first=[_label_info(label, position) for label, position in labels[:first]],
        )


def _label_info(label: Label, row_position: int) -> LabelInfo:
    return LabelInfo(
        position=label.position,
        row=row_position,
        row_id=label.row_id,
        score=label.score,
        output=label.output,
        output_a=label.output_a,
        output_b=label.output_b,
        preferred=label.preferred,
        annotator=label.annotator,
        metadata=label.metadata_ or {},
    )
