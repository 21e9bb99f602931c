"""Find stored entities by the names users type, with errors that say what exists."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from assay.errors import NotFoundError
from assay.store.models import Dataset, ModelEndpoint, Rubric, RubricVersion, RunGroup

T = TypeVar("T", Dataset, ModelEndpoint, Rubric)
_KINDS: dict[type[Any], tuple[str, str]] = {
    Dataset: ("dataset", "assay dataset list"),
    ModelEndpoint: ("model", "assay model list"),
    Rubric: ("rubric", "assay rubric list"),
}


def not_found(kind: str, name: str, existing: Iterable[str], command: str) -> NotFoundError:
    """``no dataset named 'suport'; did you mean 'support'? (see `assay dataset list`)``"""
    close = difflib.get_close_matches(name, list(existing), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return NotFoundError(f"no {kind} named {name!r}{hint} (see `{command}`)")


def by_name(session: Session, cls: type[T], name: str, *, lock: bool = False) -> T:
    query = select(cls).where(cls.name == name)
    found = session.scalar(query.with_for_update() if lock else query)
    if found is None:
        kind, command = _KINDS[cls]
        raise not_found(kind, name, session.scalars(select(cls.name)), command)
    return found


def dataset_by_name(session: Session, name: str) -> Dataset:
    return by_name(session, Dataset, name)


def endpoint_by_name(session: Session, name: str) -> ModelEndpoint:
    return by_name(session, ModelEndpoint, name)


def rubric_by_name(session: Session, name: str) -> Rubric:
    return by_name(session, Rubric, name)


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
