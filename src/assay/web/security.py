"""Security for a local tool that renders untrusted model output.

* Headers: a CSP with no inline script or style, no framing, no MIME sniffing.
* CSRF: every unsafe request must prove it came from our own pages. Pages carry a token
  (double-submit: cookie + ``X-CSRF-Token`` header, sent by htmx). API clients instead send a
  JSON (or other non-form) body, which a cross-site form cannot produce without a CORS
  preflight that this server never grants.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

from assay.web.errors import API_PREFIX

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSRF_COOKIE = "assay_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What an HTML form can send cross-site without a preflight (the Fetch spec's "simple" types).
FORM_CONTENT_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""}
)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookie(headers: dict[str, str], name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is the client's problem, not a crash
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


def csrf_ok(method: str, path: str, headers: dict[str, str]) -> bool:
    if method in SAFE_METHODS:
        return True
    if headers.get("authorization", "").lower().startswith("bearer "):
        # A browser never adds a Bearer token by itself, and a page cannot add one cross-site
        # without a CORS preflight this server never grants: such a request is not forged.
        return True
    cookie = _cookie(headers, CSRF_COOKIE)
    sent = headers.get(CSRF_HEADER)
    if cookie and sent and hmac.compare_digest(cookie, sent):
        return True
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return path.startswith(API_PREFIX) and content_type not in FORM_CONTENT_TYPES


class SecurityMiddleware:
    """Adds the security headers to every response, hands pages a CSRF token (cookie, and
    ``scope["state"]["csrf_token"]`` for templates) and rejects unsafe requests without proof."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        token = _cookie(headers, CSRF_COOKIE)
        set_cookie = token is None or len(token) < 32
        if set_cookie:
            token = new_csrf_token()
        scope.setdefault("state", {})["csrf_token"] = token

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(SECURITY_HEADERS)
                if set_cookie:
                    cookie = f"{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                    extra.append((b"set-cookie", cookie.encode()))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        if not csrf_ok(scope["method"], scope["path"], headers):
            await _forbidden(scope, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


async def _forbidden(scope: Scope, send: Send) -> None:
    body = (
        b'{"detail": "cross-site request refused: send JSON, or the X-CSRF-Token header '
        b'of the page you came from", "type": "csrf"}'
    )
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
