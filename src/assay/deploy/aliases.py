"""Deployment aliases: a stable name (``prod-chat``) that points at one registered model.

Applications ask the proxy for the alias; which model answers is a deployment decision taken
here, and every change of target (set, promote, rollback) appends an ``AliasEvent`` saying who,
when, why, on what evidence, and what the alias pointed to before. Each change is one
transaction: the new target and its event are written together or not at all.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from assay.deploy.actor import resolve_actor
from assay.errors import ValidationError
from assay.store import Store
from assay.store.lookup import endpoint_by_name, not_found
from assay.store.models import Alias, AliasEvent, ModelEndpoint, utcnow

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}")
MAX_REASON = 2000


class AliasEventInfo(BaseModel):
    """One recorded change of an alias."""

    id: int
    alias: str
    action: str  # set | promote | rollback
    model: str  # the model (endpoint name) the alias pointed to after the change
    previous_model: str | None  # ... and before it (None when the change created the alias)
    actor: str
    reason: str | None
    group_id: int | None  # the run group whose verdict a promotion relied on
    decision: str | None  # that verdict: PASS, or FAIL / INCONCLUSIVE when forced
    forced: bool  # the gate's verdict was overridden with --force
    evidence: dict[str, Any]
    created_at: datetime


class AliasInfo(BaseModel):
    """An alias and the model it routes to now."""

    id: int
    name: str
    model: str
    model_id: str
    provider: str
    base_url: str | None
    created_at: datetime
    updated_at: datetime
    last_change: AliasEventInfo | None = None


class AliasChange(BaseModel):
    """What a set / promote / rollback did; ``event`` is None when nothing changed."""

    alias: AliasInfo
    event: AliasEventInfo | None

    @property
    def changed(self) -> bool:
        return self.event is not None


def utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_alias_name(name: str) -> str:
    """Alias names travel in the request's ``model`` field: keep them plain."""
    if not _NAME.fullmatch(name):
        raise ValidationError(
            f"alias name {name!r} is not valid: use 1-200 letters, digits and . _ : @ / -, "
            "starting with a letter or digit"
        )
    return name


def check_reason(reason: str | None) -> str | None:
    if reason is None or not reason.strip():
        return None
    if len(reason) > MAX_REASON:
        raise ValidationError(f"--reason is longer than {MAX_REASON} characters")
    return reason.strip()


# --- reading ---------------------------------------------------------------------------------


def alias_by_name(session: Session, name: str, *, lock: bool = False) -> Alias:
    """The alias, locked for update when about to change it (Postgres; SQLite locks the file)."""
    query = select(Alias).where(Alias.name == name)
    found = session.scalar(query.with_for_update() if lock else query)
    if found is None:
        existing = session.scalars(select(Alias.name))
        raise not_found("alias", name, existing, "assay alias list")
    return found


def _events(alias_ids: list[int] | None = None) -> Any:
    previous = aliased(ModelEndpoint)
    query = (
        select(AliasEvent, Alias.name, ModelEndpoint.name, previous.name)
        .join(Alias, Alias.id == AliasEvent.alias_id)
        .join(ModelEndpoint, ModelEndpoint.id == AliasEvent.endpoint_id)
        .outerjoin(previous, previous.id == AliasEvent.previous_endpoint_id)
        .order_by(AliasEvent.id.desc())
    )
    if alias_ids is not None:
        query = query.where(AliasEvent.alias_id.in_(alias_ids))
    return query


def _event_info(event: AliasEvent, alias: str, model: str, previous: str | None) -> AliasEventInfo:
    return AliasEventInfo(
        id=event.id,
        alias=alias,
        action=event.action,
        model=model,
        previous_model=previous,
        actor=event.actor,
        reason=event.reason,
        group_id=event.group_id,
        decision=event.decision,
        forced=bool(event.forced),
        evidence=dict(event.evidence or {}),
        created_at=utc(event.created_at),
    )


def _alias_infos(session: Session, name: str | None = None) -> list[AliasInfo]:
    query = (
        select(Alias, ModelEndpoint)
        .join(ModelEndpoint, ModelEndpoint.id == Alias.endpoint_id)
        .order_by(Alias.name)
    )
    if name is not None:
        query = query.where(Alias.name == name)
    pairs = [(alias, endpoint) for alias, endpoint in session.execute(query)]
    latest: dict[int, AliasEventInfo] = {}
    if pairs:
        rows = session.execute(_events([a.id for a, _ in pairs]))
        for event, alias, model, previous in rows:
            latest.setdefault(event.alias_id, _event_info(event, alias, model, previous))
    return [
        AliasInfo(
            id=alias.id,
            name=alias.name,
            model=endpoint.name,
            model_id=endpoint.model_id,
            provider=endpoint.provider,
            base_url=endpoint.base_url,
            created_at=utc(alias.created_at),
            updated_at=utc(alias.updated_at),
            last_change=latest.get(alias.id),
        )
        for alias, endpoint in pairs
    ]


def list_aliases(store: Store) -> list[AliasInfo]:
    """Every alias with its current target and its last change, by name."""
    with store.session() as session:
        return _alias_infos(session)


def get_alias(store: Store, name: str) -> AliasInfo:
    with store.session() as session:
        alias_by_name(session, name)
        return _alias_infos(session, name)[0]


def alias_history(store: Store, name: str, limit: int = 50) -> list[AliasEventInfo]:
    """The alias's changes, newest first."""
    if limit < 1:
        raise ValidationError(f"--limit must be at least 1, got {limit}")
    with store.session() as session:
        alias = alias_by_name(session, name)
        rows = session.execute(_events([alias.id]).limit(limit))
        return [_event_info(*row) for row in rows]


# --- changing --------------------------------------------------------------------------------


def retarget(
    session: Session,
    alias: Alias,
    endpoint: ModelEndpoint,
    action: str,
    actor: str,
    *,
    reason: str | None = None,
    previous_endpoint_id: int | None = None,
    group_id: int | None = None,
    decision: str | None = None,
    forced: bool = False,
    evidence: dict[str, Any] | None = None,
) -> AliasEvent:
    """Point ``alias`` at ``endpoint`` and append the event recording it (same transaction)."""
    now = utcnow()
    alias.endpoint_id = endpoint.id
    alias.updated_at = now
    event = AliasEvent(
        alias_id=alias.id,
        action=action,
        endpoint_id=endpoint.id,
        previous_endpoint_id=previous_endpoint_id,
        actor=actor,
        reason=reason,
        group_id=group_id,
        decision=decision,
        forced=forced,
        evidence=evidence or {},
        created_at=now,
    )
    session.add(event)
    session.flush()
    return event


def change_result(session: Session, alias: Alias, event: AliasEvent | None) -> AliasChange:
    session.flush()
    info = _alias_infos(session, alias.name)[0]
    return AliasChange(alias=info, event=info.last_change if event is not None else None)


def set_alias(
    store: Store,
    name: str,
    model: str,
    *,
    actor: str | None = None,
    reason: str | None = None,
) -> AliasChange:
    """Create ``name`` pointing at ``model``, or point it there. Setting the target it already
    has changes nothing and records nothing."""
    check_alias_name(name)
    who = resolve_actor(actor)
    why = check_reason(reason)
    try:
        with store.session() as session:
            endpoint = endpoint_by_name(session, model)
            alias = session.scalar(select(Alias).where(Alias.name == name).with_for_update())
            if alias is None:
                alias = Alias(name=name, endpoint_id=endpoint.id)
                session.add(alias)
                session.flush()
                event = retarget(session, alias, endpoint, "set", who, reason=why)
            elif alias.endpoint_id == endpoint.id:
                event = None
            else:
                previous = alias.endpoint_id
                event = retarget(
                    session, alias, endpoint, "set", who, reason=why, previous_endpoint_id=previous
                )
            return change_result(session, alias, event)
    except IntegrityError as exc:  # a concurrent `alias set` created the same name first
        raise ValidationError(
            f"alias {name!r} was created by someone else meanwhile; nothing was changed: "
            "check `assay alias show` and retry"
        ) from exc


def rollback_alias(
    store: Store, name: str, *, actor: str | None = None, reason: str | None = None
) -> AliasChange:
    """Point the alias back at the target its latest change replaced. Rolling back twice
    undoes the rollback (the latest change is then the rollback itself)."""
    who = resolve_actor(actor)
    why = check_reason(reason)
    with store.session() as session:
        alias = alias_by_name(session, name, lock=True)
        latest = session.execute(_events([alias.id]).limit(1)).first()
        if latest is None or latest[0].previous_endpoint_id is None:
            detail = ""
            if latest is not None:
                event = latest[0]
                detail = (
                    f": its latest change ({event.action} to {latest[2]!r} by {event.actor} at "
                    f"{utc(event.created_at):%Y-%m-%d %H:%M} UTC) created it"
                )
            raise ValidationError(
                f"alias {name!r} has no previous target to roll back to{detail}; "
                f"point it elsewhere with `assay alias set {name} MODEL`"
            )
        event = latest[0]
        target = session.get(ModelEndpoint, event.previous_endpoint_id)
        if target is None:  # cannot happen while the FK restricts deleting targeted endpoints
            raise ValidationError(f"alias {name!r}: the previous target no longer exists")
        new = retarget(
            session,
            alias,
            target,
            "rollback",
            who,
            reason=why,
            previous_endpoint_id=alias.endpoint_id,
            evidence={"undoes_event_id": event.id, "undoes_action": event.action},
        )
        return change_result(session, alias, new)
