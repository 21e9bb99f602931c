"""``/api/v1/labels``: the human label sets judges are calibrated against."""

from __future__ import annotations

from fastapi import APIRouter

from assay.labels import LabelSetDetail, LabelSetInfo, get_label_set, list_label_sets
from assay.web.api.common import errors
from assay.web.deps import StoreDep

router = APIRouter(tags=["labels"], responses=errors(404, 422))


@router.get("/labels", response_model=list[LabelSetInfo])
def labels_list(store: StoreDep) -> list[LabelSetInfo]:
    """Every label set: its dataset, kind (pointwise or pairwise) and how many labels."""
    return list_label_sets(store)


@router.get("/labels/{name}", response_model=LabelSetDetail)
def labels_show(name: str, store: StoreDep) -> LabelSetDetail:
    """One label set: its score range or preference counts and its first ten labels."""
    return get_label_set(store, name)
