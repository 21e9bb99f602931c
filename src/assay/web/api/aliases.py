"""``/api/v1/aliases``: deployment aliases, where each routes now, and their history.

Read-only here: changes go through ``assay alias set|rollback`` and ``assay promote``, which
record who made them.
"""

from __future__ import annotations

from fastapi import APIRouter, Query

from assay.deploy import AliasEventInfo, AliasInfo, alias_history, get_alias, list_aliases
from assay.web.api.common import errors
from assay.web.deps import StoreDep

router = APIRouter(tags=["aliases"], responses=errors(404, 422))


@router.get("/aliases", response_model=list[AliasInfo])
def aliases_list(store: StoreDep) -> list[AliasInfo]:
    """Every alias, the model it routes to and its last change, by name."""
    return list_aliases(store)


@router.get("/aliases/{name}", response_model=AliasInfo)
def aliases_show(name: str, store: StoreDep) -> AliasInfo:
    """One alias and the model it routes to."""
    return get_alias(store, name)


@router.get("/aliases/{name}/history", response_model=list[AliasEventInfo])
def aliases_history(
    name: str, store: StoreDep, limit: int = Query(50, ge=1, le=1000)
) -> list[AliasEventInfo]:
    """The alias's changes, newest first: who, when, why, evidence, previous target."""
    return alias_history(store, name, limit)
