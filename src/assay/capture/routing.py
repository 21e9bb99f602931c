"""Deployment aliases in the proxy: a call whose ``model`` names an alias (``prod-chat``) goes
to the model the alias points at now (``assay alias set`` / ``assay promote``).

The request's ``model`` is rewritten to the endpoint's model id and the call goes to the
endpoint's base URL; when the endpoint names an API-key variable that is set in the proxy's
environment, that key replaces the caller's (forwarded, never stored or logged). The record
carries ``model`` = the endpoint's model id and metadata ``alias`` = the alias, so traffic
shows which model served each call.

The alias table is read from the store at most every ``ttl_seconds`` (2 s), in a worker
thread, while requests keep using the table already in memory: the request path never waits
on the database except for the very first request, and a promotion or rollback takes effect
within a few seconds. If the store cannot be read, the last table read stays in use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from sqlalchemy import select

from assay.capture.records import Capture
from assay.store import Store
from assay.store.models import Alias, ModelEndpoint

ALIAS_TTL_SECONDS = 2.0
ALIAS_METADATA_KEY = "alias"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """Where one alias sends calls: a snapshot of its endpoint (no key, only its variable)."""

    alias: str
    model: str  # the endpoint's name
    provider: str  # openai | anthropic | local
    model_id: str
    base_url: str | None
    api_key_env: str | None


@dataclass
class Routed:
    """A routed call: its new body, upstream and headers; or the refusal to answer with."""

    body: bytes = b""
    base_url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    refusal: tuple[int, str] | None = None  # (HTTP status, message)


class AliasRouter:
    """Resolves aliases for the proxy from an in-memory table refreshed from the store."""

    def __init__(
        self, open_store_fn: Callable[[], Store], ttl_seconds: float = ALIAS_TTL_SECONDS
    ) -> None:
        self._open_store = open_store_fn
        self._store: Store | None = None
        self._lock = threading.Lock()
        self.ttl_seconds = ttl_seconds
        self._routes: dict[str, Route] = {}
        self._names: tuple[bytes, ...] = ()
        self._fresh_until: float | None = None  # None: never loaded
        self._refreshing: asyncio.Task[None] | None = None

    async def route(
        self, body: bytes, headers: list[tuple[str, str]], capture: Capture
    ) -> Routed | None:
        """The routed call if ``body``'s model names an alias, else None (forward as is)."""
        await self._ensure_fresh()
        if not self._names or not any(name in body for name in self._names):
            return None  # the common case costs a few substring checks, no JSON parsing
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        model = data.get("model") if isinstance(data, dict) else None
        target = self._routes.get(model) if isinstance(model, str) else None
        if target is None:
            return None
        capture.metadata[ALIAS_METADATA_KEY] = target.alias
        refusal = _refusal(target, capture.provider, capture.path)
        if refusal is not None:
            return Routed(refusal=refusal)
        data["model"] = target.model_id
        assert target.base_url is not None  # only local endpoints have none, refused above
        return Routed(
            body=orjson.dumps(data),
            base_url=target.base_url,
            headers=_with_key(headers, target, capture),
        )

    def routes(self) -> dict[str, Route]:
        """The table in use (for tests and diagnostics)."""
        return dict(self._routes)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    # --- the table -------------------------------------------------------------------------

    async def _ensure_fresh(self) -> None:
        if self._fresh_until is not None and time.monotonic() < self._fresh_until:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh())
        if self._fresh_until is None:  # the first request waits for the first table
            await asyncio.shield(self._refreshing)

    async def _refresh(self) -> None:
        try:
            routes = await asyncio.to_thread(self._load)
        except Exception as exc:  # keep routing with what we had; retry after the TTL
            _log.warning("cannot read deployment aliases (%s); retrying", type(exc).__name__)
        else:
            self._routes = routes
            self._names = tuple(name.encode() for name in routes)
        self._fresh_until = time.monotonic() + self.ttl_seconds

    def _load(self) -> dict[str, Route]:
        with self._lock:
            if self._store is None:
                self._store = self._open_store()
            try:
                with self._store.session() as session:
                    rows = session.execute(
                        select(Alias.name, ModelEndpoint).join(
                            ModelEndpoint, ModelEndpoint.id == Alias.endpoint_id
                        )
                    )
                    return {
                        name: Route(
                            alias=name,
                            model=e.name,
                            provider=e.provider,
                            model_id=e.model_id,
                            base_url=e.base_url,
                            api_key_env=e.api_key_env,
                        )
                        for name, e in rows
                    }
            except Exception:
                self._store.close()  # reopened on the next refresh
                self._store = None
                raise


def _refusal(target: Route, provider: str, path: str) -> tuple[int, str] | None:
    """Calls the proxy cannot send to the alias's endpoint, with what to do instead."""
    if target.provider == "local" or not target.base_url:
        return 502, (
            f"alias {target.alias!r} points at model {target.model!r}, a local model run "
            "in-process by Assay, which the proxy cannot route calls to: serve the GGUF with "
            "an OpenAI-compatible server (llama.cpp's llama-server, Ollama), register it with "
            f"`assay model add NAME --base-url http://HOST:PORT/v1`, then `assay alias set "
            f"{target.alias} NAME`"
        )
    if target.provider != provider:
        return 400, (
            f"alias {target.alias!r} points at model {target.model!r} ({target.provider} API), "
            f"but this call to {path} uses the {provider} API; the proxy does not translate "
            "between APIs: call the alias through the matching path"
        )
    return None


def _with_key(
    headers: list[tuple[str, str]], target: Route, capture: Capture
) -> list[tuple[str, str]]:
    """The endpoint's own key replaces the caller's when its variable is set here."""
    key = os.environ.get(target.api_key_env) if target.api_key_env else None
    if not key:
        return headers
    capture.secrets.append(key)  # scrubbed from the record if the upstream echoes it
    credentials = {"authorization", "x-api-key", "api-key"}
    kept = [(name, value) for name, value in headers if name.lower() not in credentials]
    if target.provider == "anthropic":
        kept.append(("x-api-key", key))
    else:
        kept.append(("authorization", f"Bearer {key}"))
    return kept
