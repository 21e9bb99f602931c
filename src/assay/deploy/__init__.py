"""Deployment: aliases the proxy routes to, promotion on the gate's verdict, rollback."""

from assay.deploy.actor import resolve_actor
from assay.deploy.aliases import (
    AliasChange,
    AliasEventInfo,
    AliasInfo,
    alias_history,
    get_alias,
    list_aliases,
    rollback_alias,
    set_alias,
)
from assay.deploy.promote import PromotionRefused, promote

__all__ = [
    "AliasChange",
    "AliasEventInfo",
    "AliasInfo",
    "PromotionRefused",
    "alias_history",
    "get_alias",
    "list_aliases",
    "promote",
    "resolve_actor",
    "rollback_alias",
    "set_alias",
]
