"""Find stored entities by the names users type, with errors that say what exists."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from assay.errors import NotFoundError
from assay.store.models import Dataset, ModelEndpoint, Rubric, RubricVersion, RunGroup


def dataset_by_name(session: Session, name: str) -> Dataset:
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        raise NotFoundError(f"no dataset named {name!r} (see `assay dataset list`)")
    return dataset


def endpoint_by_name(session: Session, name: str) -> ModelEndpoint:
    endpoint = session.scalar(select(ModelEndpoint).where(ModelEndpoint.name == name))
    if endpoint is None:
        raise NotFoundError(f"no model named {name!r} (see `assay model list`)")
    return endpoint


def rubric_by_name(session: Session, name: str) -> Rubric:
    rubric = session.scalar(select(Rubric).where(Rubric.name == name))
    if rubric is None:
        raise NotFoundError(f"no rubric named {name!r} (see `assay rubric list`)")
    return rubric


def rubric_version(session: Session, name: str, version: int | None = None) -> RubricVersion:
    """The given version of a rubric, or its latest one."""
    rubric = rubric_by_name(session, name)
    query = select(RubricVersion).where(RubricVersion.rubric_id == rubric.id)
    if version is None:
        query = query.order_by(RubricVersion.version.desc()).limit(1)
    else:
        query = query.where(RubricVersion.version == version)
    found = session.scalar(query)
    if found is None:
        latest = session.scalar(
            select(RubricVersion.version)
            .where(RubricVersion.rubric_id == rubric.id)
            .order_by(RubricVersion.version.desc())
        )
        raise NotFoundError(f"rubric {name!r} has no version {version} (latest is {latest})")
    return found


def run_group_by_id(session: Session, group_id: int) -> RunGroup:
    group = session.get(RunGroup, group_id)
    if group is None:
        raise NotFoundError(f"no run group {group_id} (see `assay run list`)")
    return group
