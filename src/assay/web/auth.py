"""Authentication for the web app: once an API token exists, every page and API route needs one.

* API clients send ``Authorization: Bearer TOKEN``; without a valid one they get 401 JSON
  (``{"detail", "type": "unauthorized"}``) and ``WWW-Authenticate: Bearer``.
* Browsers sign in at ``/login`` with the token. The session cookie holds the token itself,
  ``HttpOnly`` (no script can read it), ``SameSite=Strict`` (never sent by another site's
  request), ``Secure`` when the request came over HTTPS, and without an expiry (it ends with
  the browser session or ``/logout``). Every request checks it against the database like a
  Bearer token, so ``assay token revoke`` ends every browser session at once. A signed
  session value would have to be checked against the database anyway to honour revocation,
  and would need a signing secret shared by every server process; it would add a secret to
  manage and nothing a script-proof, same-site-only cookie lacks.
* Static files, ``/login`` and ``/logout`` stay public; every other path is checked,
  ``/api/v1/openapi.json`` included.
* With no active token and ``require_auth`` off (``assay serve`` on loopback), the app is open
  as before: whoever can reach 127.0.0.1 is already on the machine. ``assay serve`` on any other
  address sets ``require_auth``, so revoking the last token closes the app rather than opening
  it.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from assay.auth import TokenInfo, auth_configured, verify_token
from assay.errors import StoreError
from assay.store import Store
from assay.web.errors import API_PREFIX
from assay.web.security import ASGIApp, Receive, Scope, Send, _cookie, _headers

SESSION_COOKIE = "assay_session"
PUBLIC_PATHS = frozenset({"/login", "/logout"})
PUBLIC_PREFIXES = ("/static/",)
LOGIN_PATH = "/login"
SECURITY_SCHEME = "bearerToken"


class AuthMiddleware:
    """Lets a request through with a valid token (Bearer header or session cookie), or when
    authentication is not configured; otherwise 401 for the API and the sign-in page for
    pages. Sets ``scope["state"]["auth"]``: ``{"token": NAME, "via": "bearer" | "session"}``,
    or None when the app is open."""

    def __init__(self, app: ASGIApp, require_auth: bool = False) -> None:
        self.app = app
        self.require_auth = require_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["auth"] = None
        path: str = scope["path"]
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        store: Store = scope["app"].state.store
        presented = _credentials(_headers(scope))
        try:
            found, configured = await anyio.to_thread.run_sync(self._check, store, presented)
        except (StoreError, SQLAlchemyError):  # refuse: never let an unchecked request in
            await _unavailable(scope)(scope, receive, send)
            return
        if found is not None:
            token, via = found
            state["auth"] = {"token": token.name, "via": via}
        elif configured:
            await _refusal(scope, bool(presented))(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(
        self, store: Store, presented: list[tuple[str, str]]
    ) -> tuple[tuple[TokenInfo, str] | None, bool]:
        for via, token in presented:
            info = verify_token(store, token)
            if info is not None:
                return (info, via), True
        return None, self.require_auth or auth_configured(store)


def _credentials(headers: dict[str, str]) -> list[tuple[str, str]]:
    """What the request offers, Bearer header first: [(via, token)]."""
    found = []
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(("bearer", value.strip()))
    cookie = _cookie(headers, SESSION_COOKIE)
    if cookie:
        found.append(("session", cookie))
    return found


def _refusal(scope: Scope, presented: bool) -> Response:
    if scope["path"].startswith(API_PREFIX):
        detail = (
            "the token sent is not valid (unknown or revoked): send a current one as "
            "Authorization: Bearer TOKEN (create one with `assay token create NAME`)"
            if presented
            else "authentication required: send Authorization: Bearer TOKEN (create one on "
            "the server with `assay token create NAME`)"
        )
        challenge = 'Bearer realm="assay"' + (', error="invalid_token"' if presented else "")
        return JSONResponse(
            {"detail": detail, "type": "unauthorized"},
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )
    headers = _headers(scope)
    if headers.get("hx-request") == "true":
        # htmx follows HX-Redirect whatever the status: the whole page goes to the sign-in.
        current = urlsplit(headers.get("hx-current-url", ""))
        target = login_url(_local(current.path + (f"?{current.query}" if current.query else "")))
        return Response(status_code=401, headers={"HX-Redirect": target})
    wanted = scope["path"]
    if scope.get("query_string"):
        wanted += "?" + scope["query_string"].decode("latin-1")
    is_read = scope["method"] in ("GET", "HEAD")
    return RedirectResponse(login_url(wanted if is_read else None), status_code=303)


def _unavailable(scope: Scope) -> Response:
    message = "the database is unavailable, so the request's token cannot be checked; retry"
    if scope["path"].startswith(API_PREFIX):
        return JSONResponse({"detail": message, "type": "store_unavailable"}, status_code=503)
    return Response(message, status_code=503, media_type="text/plain")


def login_url(next_path: str | None) -> str:
    if not next_path or _local(next_path) in ("/", LOGIN_PATH):
        return LOGIN_PATH
    return f"{LOGIN_PATH}?next={quote(_local(next_path), safe='/')}"


def _local(target: str) -> str:
    """``target`` if it is a path on this server, else ``/``: after signing in, the browser
    goes only where this app's own pages are (never ``//evil.example`` or ``https://...``)."""
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
    ):
        return "/"
    return target


# --- sign-in pages ---------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


@router.get(LOGIN_PATH, response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return _login(request, _local(next))


@router.post(LOGIN_PATH, response_class=HTMLResponse)
def login(
    request: Request,
    token: Annotated[str, Form(max_length=400)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the token and set the session cookie. Reached through htmx, whose request carries
    the page's CSRF token: a plain cross-site form cannot sign a browser in."""
    store: Store = request.app.state.store
    target = _local(next)
    found = verify_token(store, token.strip())
    htmx = request.headers.get("hx-request") == "true"
    if found is None:
        message = "That token is not valid: it is unknown or was revoked."
        if htmx:  # htmx swaps only 2xx answers
            context = {"title": "Not signed in", "message": message}
            response = _render(request, "_page_refused.html", context)
            response.headers["X-Assay-Form-Error"] = "1"
            return response
        return _login(request, target, error=message, status_code=401)
    response = (
        Response(status_code=200, headers={"HX-Redirect": target})
        if htmx
        else RedirectResponse(target, status_code=303)
    )
    response.set_cookie(
        SESSION_COOKIE,
        token.strip(),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """Forget the session cookie (the token itself stays valid until revoked)."""
    htmx = request.headers.get("hx-request") == "true"
    response = (
        Response(status_code=200, headers={"HX-Redirect": LOGIN_PATH})
        if htmx
        else RedirectResponse(LOGIN_PATH, status_code=303)
    )
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _login(
    request: Request, target: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    store: Store = request.app.state.store
    require: bool = getattr(request.app.state, "require_auth", False)
    context = {"next": target, "error": error, "open": not (require or auth_configured(store))}
    return _render(request, "login.html", context, status_code)


def _render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    from assay.web.pages.render import render

    return render(request, template, context, status_code)


# --- OpenAPI ---------------------------------------------------------------------------------


def document_security(app: FastAPI) -> None:
    """Declare the Bearer scheme in the OpenAPI spec, and the 401 answer on every operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        spec = build()
        if first:
            _add_security(spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _add_security(spec: dict[str, Any]) -> None:
    components = spec.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token from `assay token create NAME`. Required on every route "
        "once a token exists (always, when the server listens beyond loopback).",
    }
    # `{}`: a loopback server with no token at all takes requests without one.
    spec["security"] = [{SECURITY_SCHEME: []}, {}]
    unauthorized = {
        "description": 'No valid API token (type "unauthorized"); see WWW-Authenticate.',
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}},
    }
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("401", unauthorized)
