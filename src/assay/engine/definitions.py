"""Eval definitions: dataset + pinned rubric version + judge + the models to compare."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assay.errors import AlreadyExistsError, NotFoundError, ValidationError
from assay.store import Store
from assay.store.lookup import dataset_by_name, endpoint_by_name, rubric_version
from assay.store.models import DatasetRow, EvalDefinition, ModelEndpoint, RubricVersion

CAPTURED = "captured"
"""The arm label of the dataset's own reference (production) outputs."""


class EvalInfo(BaseModel):
    id: int
    name: str
    dataset: str
    dataset_rows: int
    rubric: str
    rubric_version: int
    judge: str
    baseline: str  # a model name, or "captured"
    candidates: list[str]
    with_captured: bool
    sample_size: int
    seed: int
    judge_samples: int
    created_at: datetime


def create_eval(
    store: Store,
    name: str,
    *,
    dataset: str,
    rubric: str,
    judge: str,
    candidates: list[str],
    baseline: str | None = None,
    rubric_version_number: int | None = None,
    sample_size: int | None = None,
    seed: int = 0,
    judge_samples: int = 1,
    with_captured: bool = False,
) -> EvalInfo:
    """Validate and save a definition. Without a baseline model, the captured outputs are it."""
    with store.session() as session:
        if session.scalar(select(EvalDefinition.id).where(EvalDefinition.name == name)):
            raise AlreadyExistsError(f"an eval named {name!r} already exists")
        ds = dataset_by_name(session, dataset)
        if ds.type != "eval":
            raise ValidationError(
                f"dataset {dataset!r} is a {ds.type} dataset; evals need an eval dataset"
            )
        version = rubric_version(session, rubric, rubric_version_number)
        judge_ep = endpoint_by_name(session, judge)
        if not candidates:
            raise ValidationError("name at least one --candidate model")
        if baseline is None and not with_captured:
            raise ValidationError(
                "name a --baseline model, or use --with-captured to make the dataset's "
                "captured outputs the baseline"
            )
        arms = ([baseline] if baseline else []) + candidates
        repeated = sorted({m for m in arms if arms.count(m) > 1})
        if repeated:
            raise ValidationError(f"each model may appear once; repeated: {', '.join(repeated)}")
        baseline_ep = endpoint_by_name(session, baseline) if baseline else None
        candidate_eps = [endpoint_by_name(session, c) for c in candidates]
        if with_captured:
            _require_references(session, ds.id, dataset)
        size = sample_size if sample_size is not None else ds.row_count
        _check_sample_size(size, ds.row_count, dataset)
        if not 1 <= judge_samples <= 20:
            raise ValidationError(f"--judge-samples must be between 1 and 20, got {judge_samples}")
        definition = EvalDefinition(
            name=name,
            dataset_id=ds.id,
            rubric_version_id=version.id,
            judge_id=judge_ep.id,
            baseline_id=baseline_ep.id if baseline_ep else None,
            candidate_ids=[c.id for c in candidate_eps],
            sample_size=size,
            seed=seed,
            judge_samples=judge_samples,
            with_captured=with_captured,
        )
        session.add(definition)
        session.flush()
        return _info(session, definition)


def _require_references(session: Session, dataset_id: int, dataset: str) -> None:
    with_reference = session.scalar(
        select(func.count())
        .select_from(DatasetRow)
        .where(DatasetRow.dataset_id == dataset_id, DatasetRow.reference.is_not(None))
    )
    if not with_reference:
        raise ValidationError(
            f"dataset {dataset!r} has no reference responses, so there are no captured "
            "outputs to judge; drop --with-captured"
        )


def _check_sample_size(size: int, available: int, dataset: str) -> None:
    if size < 1:
        raise ValidationError(f"sample size must be at least 1, got {size}")
    if size > available:
        raise ValidationError(
            f"sample size {size} is larger than dataset {dataset!r} ({available} rows)"
        )


def get_eval(store: Store, name: str) -> EvalInfo:
    with store.session() as session:
        return _info(session, eval_by_name(session, name))


def list_evals(store: Store) -> list[EvalInfo]:
    with store.session() as session:
        definitions = session.scalars(select(EvalDefinition).order_by(EvalDefinition.id))
        return [_info(session, d) for d in definitions]


def eval_by_name(session: Session, name: str) -> EvalDefinition:
    found = session.scalar(select(EvalDefinition).where(EvalDefinition.name == name))
    if found is None:
        raise NotFoundError(f"no eval named {name!r} (see `assay eval list`)")
    return found


def _info(session: Session, d: EvalDefinition) -> EvalInfo:
    from assay.store.models import Dataset, Rubric

    ds = session.get(Dataset, d.dataset_id)
    version = session.get(RubricVersion, d.rubric_version_id)
    assert ds is not None and version is not None
    rubric = session.get(Rubric, version.rubric_id)
    assert rubric is not None

    def model_name(endpoint_id: int) -> str:
        endpoint = session.get(ModelEndpoint, endpoint_id)
        assert endpoint is not None
        return endpoint.name

    return EvalInfo(
        id=d.id,
        name=d.name,
        dataset=ds.name,
        dataset_rows=ds.row_count,
        rubric=rubric.name,
        rubric_version=version.version,
        judge=model_name(d.judge_id),
        baseline=model_name(d.baseline_id) if d.baseline_id else CAPTURED,
        candidates=[model_name(c) for c in d.candidate_ids],
        with_captured=d.with_captured,
        sample_size=d.sample_size or ds.row_count,
        seed=d.seed,
        judge_samples=d.judge_samples,
        created_at=d.created_at,
    )
