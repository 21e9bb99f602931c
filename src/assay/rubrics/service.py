"""Rubric services: create, edit (a new immutable version), show, list, render for a row.

Every write validates everything first and happens in one transaction, so a rejected input
leaves the store exactly as it was.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assay.errors import AlreadyExistsError, NotFoundError, ValidationError
from assay.rubrics.builtin import get_template
from assay.rubrics.checkfile import parse_checks, parse_checks_text
from assay.rubrics.checks import ChecksSpec
from assay.rubrics.judge import JudgePrompt, build_judge_prompt
from assay.rubrics.validate import MAX_TEMPLATE_CHARS, validate_template
from assay.store import Store
from assay.store.lookup import by_name
from assay.store.models import Dataset, DatasetRow, Rubric, RubricVersion

SCORE_LIMIT = 100
MAX_DESCRIPTION_CHARS = 2000
MAX_RESPONSE_CHARS = 500_000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class RubricInfo(BaseModel):
    id: int
    name: str
    description: str | None
    latest_version: int
    score_min: int  # of the latest version
    score_max: int
    created_at: datetime


class RubricVersionInfo(BaseModel):
    rubric: str
    version: int
    template: str
    score_min: int
    score_max: int
    kind: str
    origin: str | None
    checks: list[Any] | None  # deterministic checks, as stored (docs/checks.md)
    combine: dict[str, Any] | None  # how they combine with the judge's score
    note: str | None  # what changed from the previous version
    created_at: datetime


# --- inputs ----------------------------------------------------------------------------------


def read_text_file(
    path: str | Path,
    what: str = "template file",
    *,
    allow_empty: bool = False,
    max_bytes: int = MAX_TEMPLATE_CHARS * 4,
) -> str:
    """Read a UTF-8 file (a BOM is dropped) with a clear error for every way it can fail."""
    file = Path(path)
    if not file.exists():
        raise ValidationError(f"{what} not found: {path}")
    if file.is_dir():
        raise ValidationError(f"{what} {path} is a directory, not a file")
    size = file.stat().st_size
    if size > max_bytes:
        raise ValidationError(f"{what} {path} is {size} bytes; the limit is {max_bytes}")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValidationError(
            f"{what} {path} is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start} (line {line}); save it as UTF-8"
        ) from exc
    if not allow_empty and not text.strip():
        raise ValidationError(f"{what} {path} is empty")
    return text


def read_checks_file(path: str | Path) -> ChecksSpec:
    """Read and validate a checks file (``.yaml``/``.yml`` or ``.json``)."""
    return parse_checks_text(read_text_file(path, "checks file"), str(path))


def _checks_spec(checks: ChecksSpec | dict[str, Any] | list[Any] | None) -> ChecksSpec | None:
    """A parsed spec from what a caller passes: a spec, the file's data, or None."""
    if checks is None or isinstance(checks, ChecksSpec):
        return checks
    return parse_checks(checks)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name or ""):
        raise ValidationError(
            f"invalid rubric name {name!r}: use 1-200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _check_range(score_min: Any, score_max: Any) -> None:
    for label, value in (("score-min", score_min), ("score-max", score_max)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{label} must be an integer, got {value!r}")
    if score_min < 0:
        raise ValidationError(f"score-min must be 0 or more, got {score_min}")
    if score_max > SCORE_LIMIT:
        raise ValidationError(f"score-max must be at most {SCORE_LIMIT}, got {score_max}")
    if score_min >= score_max:
        raise ValidationError(f"score-min ({score_min}) must be lower than score-max ({score_max})")


def _check_description(description: str | None) -> str | None:
    if description is None or not description.strip():
        return None
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ValidationError(f"the description is longer than {MAX_DESCRIPTION_CHARS} characters")
    return description.strip()


# --- reads -----------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _version_info(rubric: Rubric, version: RubricVersion) -> RubricVersionInfo:
    return RubricVersionInfo(
        rubric=rubric.name,
        version=version.version,
        template=version.template,
        score_min=version.score_min,
        score_max=version.score_max,
        kind=version.kind,
        origin=version.origin,
        checks=version.checks,
        combine=version.combine,
        note=version.note,
        created_at=_utc(version.created_at),
    )


def _rubric_info(rubric: Rubric, latest: RubricVersion) -> RubricInfo:
    return RubricInfo(
        id=rubric.id,
        name=rubric.name,
        description=rubric.description,
        latest_version=latest.version,
        score_min=latest.score_min,
        score_max=latest.score_max,
        created_at=_utc(rubric.created_at),
    )


def _find_rubric(session: Session, name: str, *, lock: bool = False) -> Rubric:
    return by_name(session, Rubric, name, lock=lock)


def _find_version(session: Session, rubric: Rubric, version: int | None) -> RubricVersion:
    latest = session.scalar(
        select(func.max(RubricVersion.version)).where(RubricVersion.rubric_id == rubric.id)
    )
    wanted = latest if version is None else version
    found = session.scalars(
        select(RubricVersion).where(
            RubricVersion.rubric_id == rubric.id, RubricVersion.version == wanted
        )
    ).one_or_none()
    if found is None:
        raise NotFoundError(f"rubric {rubric.name!r} has no version {version} (latest is {latest})")
    return found


def get_rubric(store: Store, name: str) -> RubricInfo:
    with store.session() as session:
        rubric = _find_rubric(session, name)
        return _rubric_info(rubric, _find_version(session, rubric, None))


def get_rubric_version(store: Store, name: str, version: int | None = None) -> RubricVersionInfo:
    """One version of a rubric; the latest when ``version`` is None."""
    with store.session() as session:
        rubric = _find_rubric(session, name)
        return _version_info(rubric, _find_version(session, rubric, version))


def list_rubrics(store: Store) -> list[RubricInfo]:
    """Every rubric with its latest version, by name."""
    latest = (
        select(RubricVersion.rubric_id, func.max(RubricVersion.version).label("version"))
        .group_by(RubricVersion.rubric_id)
        .subquery()
    )
    query = (
        select(Rubric, RubricVersion)
        .join(latest, latest.c.rubric_id == Rubric.id)
        .join(
            RubricVersion,
            (RubricVersion.rubric_id == Rubric.id) & (RubricVersion.version == latest.c.version),
        )
        .order_by(Rubric.name)
    )
    with store.session() as session:
        return [_rubric_info(rubric, version) for rubric, version in session.execute(query)]


def list_versions(store: Store, name: str) -> list[RubricVersionInfo]:
    with store.session() as session:
        rubric = _find_rubric(session, name)
        versions = session.scalars(
            select(RubricVersion)
            .where(RubricVersion.rubric_id == rubric.id)
            .order_by(RubricVersion.version)
        )
        return [_version_info(rubric, version) for version in versions]


# --- writes ----------------------------------------------------------------------------------


def create_rubric(
    store: Store,
    name: str,
    *,
    template: str | None = None,
    text: str | None = None,
    origin: str | None = None,
    score_min: int = 1,
    score_max: int = 10,
    description: str | None = None,
    checks: ChecksSpec | dict[str, Any] | list[Any] | None = None,
    note: str | None = None,
    kind: str | None = None,
) -> RubricVersionInfo:
    """Create a rubric and its version 1 from a built-in ``template`` or a template ``text``.

    ``origin`` records where the text came from (``file:PATH``); a built-in template sets it
    to ``template:NAME`` and, without a ``description``, lends the rubric its own.
    ``checks`` are deterministic checks with their combine rule (a parsed spec, or the data
    of a checks file; see docs/checks.md). ``kind`` is ``pointwise`` (a score per output) or
    ``pairwise`` (a preference between two outputs, docs/pairwise.md); a built-in template
    brings its own kind, a text defaults to pointwise.
    """
    _check_name(name)
    if (template is None) == (text is None):
        raise ValidationError("give exactly one of a built-in template or a template text")
    _check_range(score_min, score_max)
    description = _check_description(description)
    stored_checks, combine = _stored(_checks_spec(checks))
    if template is not None:
        builtin = get_template(template)
        text, origin = builtin.text, f"template:{builtin.name}"
        description = description or builtin.description
        if kind is not None and kind != builtin.kind:
            raise ValidationError(
                f"built-in template {builtin.name!r} is {builtin.kind}, not {kind}; pick a "
                f"{kind} template or leave out the kind"
            )
        kind = builtin.kind
    kind = kind or "pointwise"
    if kind not in ("pointwise", "pairwise"):
        raise ValidationError(f"unknown rubric kind {kind!r}: use pointwise or pairwise")
    if kind == "pairwise" and stored_checks is not None:
        raise ValidationError(
            "deterministic checks score one output; a pairwise rubric compares two, so it "
            "takes no checks"
        )
    assert text is not None
    try:
        with store.session() as session:
            if session.scalars(select(Rubric.id).where(Rubric.name == name)).first():
                raise AlreadyExistsError(f"a rubric named {name!r} already exists")
            validate_template(text, kind)
            rubric = Rubric(name=name, description=description)
            version = RubricVersion(
                rubric=rubric,
                version=1,
                kind=kind,
                template=text,
                score_min=score_min,
                score_max=score_max,
                checks=stored_checks,
                combine=combine,
                origin=origin,
                note=note,  # how version 1 came to be, e.g. a drafting model's summary
            )
            session.add_all([rubric, version])
            session.flush()
            return _version_info(rubric, version)
    except IntegrityError as exc:  # a concurrent create of the same name won the race
        raise AlreadyExistsError(f"a rubric named {name!r} already exists") from exc


def edit_rubric(
    store: Store,
    name: str,
    *,
    text: str | None = None,
    score_min: int | None = None,
    score_max: int | None = None,
    origin: str | None = None,
    checks: ChecksSpec | dict[str, Any] | list[Any] | None = None,
    remove_checks: bool = False,
) -> RubricVersionInfo:
    """Add version n+1 with the given changes; versions already stored never change.

    ``checks`` replaces the checks (and combine rule); ``remove_checks`` drops them. Without
    either, the new version keeps the previous one's checks.
    """
    if checks is not None and remove_checks:
        raise ValidationError("give new checks (--checks) or remove them (--no-checks), not both")
    if all(x is None for x in (text, score_min, score_max, checks)) and not remove_checks:
        raise ValidationError(
            "nothing to change: give a new template (--file), --score-min or --score-max, "
            "or new checks (--checks FILE) or --no-checks"
        )
    spec = _checks_spec(checks)
    try:
        with store.session() as session:
            rubric = _find_rubric(session, name, lock=True)
            latest = _find_version(session, rubric, None)
            new_text = latest.template if text is None else text
            new_min = latest.score_min if score_min is None else score_min
            new_max = latest.score_max if score_max is None else score_max
            _check_range(new_min, new_max)
            if remove_checks:
                new_checks, new_combine = None, None
            elif spec is not None:
                new_checks, new_combine = _stored(spec)
            else:
                new_checks, new_combine = latest.checks, latest.combine
            if (new_text, new_min, new_max, new_checks, new_combine) == (
                latest.template,
                latest.score_min,
                latest.score_max,
                latest.checks,
                latest.combine,
            ):
                raise ValidationError(
                    f"nothing changed: the template and range are identical to version "
                    f"{latest.version} of {name!r}; no version was added (the checks are the "
                    "same too)"
                )
            if text is not None:
                validate_template(text, latest.kind)
            if latest.kind == "pairwise" and new_checks is not None:
                raise ValidationError("a pairwise rubric takes no deterministic checks")
            version = RubricVersion(
                rubric_id=rubric.id,
                version=latest.version + 1,
                kind=latest.kind,
                template=new_text,
                score_min=new_min,
                score_max=new_max,
                checks=new_checks,
                combine=new_combine,
                origin=origin if new_text != latest.template else latest.origin,
                note=_change_note(
                    latest, new_text, new_min, new_max, origin, (new_checks, new_combine)
                ),
            )
            session.add(version)
            session.flush()
            return _version_info(rubric, version)
    except IntegrityError as exc:
        raise ValidationError(
            f"rubric {name!r} was edited by someone else at the same time; nothing was written, "
            "try again"
        ) from exc


def _stored(spec: ChecksSpec | None) -> tuple[list[Any] | None, dict[str, Any] | None]:
    return spec.stored() if spec is not None else (None, None)


def _change_note(
    latest: RubricVersion,
    text: str,
    score_min: int,
    score_max: int,
    origin: str | None,
    checks: tuple[list[Any] | None, dict[str, Any] | None],
) -> str:
    changes = []
    if text != latest.template:
        changes.append(f"template from {origin}" if origin else "template changed")
    if (score_min, score_max) != (latest.score_min, latest.score_max):
        changes.append(f"range {latest.score_min}-{latest.score_max} -> {score_min}-{score_max}")
    if checks != (latest.checks, latest.combine):
        if checks[0] is None:
            changes.append("checks removed")
        else:
            verb = "changed" if latest.checks else "added"
            changes.append(f"checks {verb} ({len(checks[0])}, {(checks[1] or {}).get('mode')})")
    return f"from v{latest.version}: " + "; ".join(changes)


# --- rendering for a row ---------------------------------------------------------------------


def _load_row(session: Session, dataset: str, position: int) -> DatasetRow:
    """A dataset row by position, read directly (the dataset services are a separate layer)."""
    found = by_name(session, Dataset, dataset)
    row = session.scalars(
        select(DatasetRow).where(DatasetRow.dataset_id == found.id, DatasetRow.position == position)
    ).one_or_none()
    if row is None:
        count = session.scalar(
            select(func.count()).select_from(DatasetRow).where(DatasetRow.dataset_id == found.id)
        )
        span = f"positions 0-{count - 1}" if count else "no rows"
        raise NotFoundError(
            f"dataset {dataset!r} has no row at position {position} ({count} rows: {span})"
        )
    return row


def render_for_row(
    store: Store,
    rubric: str,
    dataset: str,
    position: int = 0,
    version: int | None = None,
    response: str | dict[str, Any] | None = None,
) -> JudgePrompt:
    """The exact judge prompt for one dataset row.

    Without ``response`` the row's reference response is the response under test (until a
    model can be called, that is the only output a row has).
    """
    if position < 0:
        raise ValidationError(f"row position must be 0 or more, got {position}")
    if isinstance(response, str) and len(response) > MAX_RESPONSE_CHARS:
        raise ValidationError(f"the response is longer than {MAX_RESPONSE_CHARS} characters")
    with store.session() as session:
        found = _find_rubric(session, rubric)
        pinned = _version_info(found, _find_version(session, found, version))
        if pinned.kind == "pairwise":
            raise ValidationError(
                f"rubric {rubric!r} is pairwise: its prompt shows two responses, so it is not "
                "rendered for one; a run group judges each candidate against the baseline"
            )
        row = _load_row(session, dataset, position)
        messages, reference, metadata = row.messages, row.reference, row.metadata_
    if response is None:
        if reference is None:
            raise ValidationError(
                f"row {position} of dataset {dataset!r} has no reference response to stand in "
                "for the response under test; pass one with --response or --response-file"
            )
        response = reference
    return build_judge_prompt(pinned, messages or [], reference, response, metadata or {})
