"""Who may choose the upstream: ``x-assay-upstream`` on a non-loopback bind needs a token.

The header makes the proxy send a request (with the caller's body and headers) to any URL it
names. On loopback only local processes can ask that; on a network address anyone who reaches
the port could use the proxy to call internal services (SSRF). So there the header is honoured
only alongside ``x-assay-token: <an active Assay API token>`` (``assay token create``).

Checking a token costs a database query, run off the event loop; a valid token is then
trusted for ``ttl_seconds`` (so a revoked token keeps working at most that long).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable

from assay.auth.tokens import verify_token
from assay.store import Store

TOKEN_HEADER = "x-assay-token"
TOKEN_TTL_SECONDS = 30.0


class UpstreamGuard:
    """Decides whether a request may override the upstream, from its ``x-assay-token``."""

    def __init__(
        self, open_store_fn: Callable[[], Store], ttl_seconds: float = TOKEN_TTL_SECONDS
    ) -> None:
        self._open_store = open_store_fn
        self._store: Store | None = None
        self._lock = threading.Lock()
        self.ttl_seconds = ttl_seconds
        self._trusted: dict[str, float] = {}  # sha256 of a verified token -> trusted until

    async def refusal(self, token: str | None) -> tuple[int, str] | None:
        """None if the override may go ahead, else (HTTP status, message) for the answer."""
        if not token:
            return 403, (
                "x-assay-upstream is refused: this proxy listens on a network address, so "
                f"choosing the upstream per request needs an Assay API token in {TOKEN_HEADER} "
                "(create one with `assay token create NAME`)"
            )
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        if self._trusted.get(digest, 0.0) > time.monotonic():
            return None
        try:
            valid = await asyncio.to_thread(self._verify, token)
        except Exception as exc:
            return 503, (
                f"x-assay-upstream needs {TOKEN_HEADER} to be verified, and the Assay store "
                f"cannot be reached to do so ({type(exc).__name__}); retry later"
            )
        if not valid:
            return 403, f"x-assay-upstream is refused: {TOKEN_HEADER} is not an active Assay token"
        self._trusted[digest] = time.monotonic() + self.ttl_seconds
        return None

    def _verify(self, token: str) -> bool:
        with self._lock:
            if self._store is None:
                self._store = self._open_store()
            try:
                return verify_token(self._store, token) is not None
            except Exception:
                self._store.close()  # reopened on the next check
                self._store = None
                raise

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
