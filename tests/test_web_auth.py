"""Server mode: API tokens (created once, stored hashed, revocable), required on every API route
and page once one exists, the sign-in flow, `assay serve` beyond loopback, and the API's file
paths confined to ASSAY_HOME. Both backends."""

from __future__ import annotations

import hmac
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from assay.auth import create_token, list_tokens, revoke_token, verify_token
from assay.auth import tokens as token_service
from assay.store import Store, open_store
from assay.store.models import ApiToken, utcnow
from assay.web import create_app
from assay.web.api.datasets import download_name
from assay.web.auth import SESSION_COOKIE, login_url
from assay.web.pages import router as pages_router
from support.scan import database_bytes

API = "/api/v1"
JSON = {"content-type": "application/json"}


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf(client: TestClient) -> dict[str, str]:
    """The page's CSRF header, as htmx sends it (a visit hands out the cookie)."""
    client.get("/login")
    return {"X-CSRF-Token": client.cookies["assay_csrf"]}


def filled(path: str) -> str:
    """A route's path with every parameter given a value."""
    return re.sub(r"\{[^}]+\}", "1", path)


def leaf_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every route, through the routers included in this one (none adds a prefix)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from leaf_routes(route.original_router.routes)


# --- tokens through the CLI ------------------------------------------------------------------


def test_token_lifecycle_through_the_cli(cli: Any, store: Store) -> None:
    created = cli("token", "create", "ci")
    assert created.exit_code == 0, created.stderr
    token = created.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 32 random bytes, URL-safe
    assert "never shown again" in created.stderr and token not in created.stderr

    as_json = cli("token", "create", "alice", "--json")
    second = json.loads(as_json.stdout)
    assert second["name"] == "alice" and second["prefix"] == second["token"][:8]
    assert second["token"] != token

    listed = cli("token", "list")
    assert listed.exit_code == 0 and "ci" in listed.stdout and token[:8] in listed.stdout
    assert token[8:] not in listed.stdout and "active" in listed.stdout
    rows = json.loads(cli("token", "list", "--json").stdout)
    assert [r["name"] for r in rows] == ["ci", "alice"]
    assert all(
        set(r) == {"name", "prefix", "created_at", "last_used_at", "revoked_at"} for r in rows
    )

    taken = cli("token", "create", "ci")
    assert taken.exit_code == 1 and "already exists" in taken.stderr
    bad = cli("token", "create", "no spaces")
    assert bad.exit_code == 1 and "token name" in bad.stderr

    assert verify_token(store, token) is not None
    revoked = cli("token", "revoke", "ci")
    assert revoked.exit_code == 0 and "Revoked token ci" in revoked.stderr
    assert verify_token(store, token) is None  # at once
    again = cli("token", "create", "ci")
    assert again.exit_code == 1 and "names are not reused" in again.stderr
    assert "revoked" in cli("token", "list").stdout
    missing = cli("token", "revoke", "nobody")
    assert missing.exit_code == 1 and "no token named 'nobody'" in missing.stderr

    last = cli("token", "revoke", "alice")
    assert "No active token is left" in last.stderr


def test_only_the_hash_is_stored(store: Store) -> None:
    created = create_token(store, "ci")
    token = created.token
    with store.session() as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.token_hash == token_service.hash_token(token) and len(row.token_hash) == 64
        assert row.prefix == token[:8]
    data = database_bytes(store)
    assert row.token_hash.encode() in data  # the scan does see the table...
    assert token.encode() not in data and token[8:].encode() not in data  # ...never the token
    assert "token" not in created.info.model_dump()


def test_verify_compares_hashes_in_constant_time(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = create_token(store, "ci").token
    compared: list[tuple[str, str]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(token_service.hmac, "compare_digest", spy)
    assert verify_token(store, token) is not None
    assert compared == [(token_service.hash_token(token),) * 2]
    wrong = token[:8] + ("A" if token[8] != "A" else "B") + token[9:]  # same prefix
    assert verify_token(store, wrong) is None
    assert compared[-1] == (token_service.hash_token(token), token_service.hash_token(wrong))
    for junk in ("", "short", "x" * 500, token + "\x00", "ünïcode-token-ünïcode"):
        assert verify_token(store, junk) is None


def test_last_use_is_written_at_most_once_a_minute(store: Store) -> None:
    token = create_token(store, "ci").token
    first = verify_token(store, token)
    assert first is not None and first.last_used_at is not None
    again = verify_token(store, token)
    assert again is not None and again.last_used_at == first.last_used_at
    earlier = utcnow() - timedelta(minutes=2)
    with store.session() as session:
        session.execute(update(ApiToken).values(last_used_at=earlier))
    moved = verify_token(store, token)
    assert moved is not None and moved.last_used_at is not None
    assert moved.last_used_at > earlier + timedelta(minutes=1)


# --- enforcement -----------------------------------------------------------------------------


def test_open_without_tokens_on_loopback(client: TestClient) -> None:
    assert client.get(f"{API}/models").status_code == 200
    assert client.get("/groups").status_code == 200
    login = client.get("/login")
    assert login.status_code == 200 and "No API token exists" in login.text


def test_every_api_route_needs_the_token(client: TestClient, store: Store) -> None:
    token = create_token(store, "ci").token
    spec_response = client.get(f"{API}/openapi.json", headers=bearer(token))
    assert spec_response.status_code == 200
    spec = spec_response.json()
    assert spec["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    operations = [
        (method.upper(), filled(path))
        for path, methods in spec["paths"].items()
        for method in methods
    ]
    assert len(operations) > 30
    for method, path in [*operations, ("GET", f"{API}/openapi.json"), ("GET", f"{API}/docs")]:
        for headers in ({}, bearer("not-a-token-at-all-0123456789"), bearer(token[:-1] + "x")):
            response = client.request(method, path, json={}, headers={**JSON, **headers})
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["type"] == "unauthorized", (method, path)
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith("Bearer"), (method, path)
            assert ('error="invalid_token"' in challenge) == bool(headers)
            assert response.headers["x-frame-options"] == "DENY"  # security headers still on
    for path, methods in spec["paths"].items():
        for operation in methods.values():
            assert operation["responses"]["401"]["content"]["application/json"], path
    assert client.get(f"{API}/models", headers=bearer(token)).status_code == 200
    assert client.get("/static/app.css").status_code == 200  # static files stay public


def test_every_page_redirects_to_the_sign_in(client: TestClient, store: Store) -> None:
    create_token(store, "ci")
    pages = [
        (method, filled(route.path))
        for route in leaf_routes(pages_router.routes)
        for method in route.methods
    ]
    assert len(pages) > 15
    headers = csrf(client)
    for method, path in pages:
        response = client.request(method, path, headers=headers, follow_redirects=False)
        assert response.status_code == 303, (method, path, response.text)
        expected = login_url(path) if method == "GET" else "/login"
        assert response.headers["location"] == expected, (method, path)
        htmx = client.request(
            method, path, headers={**headers, "HX-Request": "true"}, follow_redirects=False
        )
        assert htmx.status_code == 401 and htmx.headers["hx-redirect"].startswith("/login")
    deep = client.get("/groups?eval=a&status=b", follow_redirects=False)
    assert deep.headers["location"] == "/login?next=/groups%3Feval%3Da%26status%3Db"
    followed = client.get("/groups")
    assert followed.url.path == "/login" and 'name="next" value="/groups"' in followed.text


def test_revoking_one_token_refuses_it_at_once(client: TestClient, store: Store) -> None:
    keep = create_token(store, "keep").token
    gone = create_token(store, "gone").token
    assert client.get(f"{API}/models", headers=bearer(gone)).status_code == 200
    revoke_token(store, "gone")
    assert client.get(f"{API}/models", headers=bearer(gone)).status_code == 401
    assert client.get(f"{API}/models", headers=bearer(keep)).status_code == 200
    used = {t.name: t.last_used_at for t in list_tokens(store)}
    assert used["keep"] is not None


def test_a_server_beyond_loopback_stays_closed_without_tokens(store: Store) -> None:
    """`assay serve --host 0.0.0.0` builds the app with require_auth: revoking the last token
    closes it instead of opening it."""
    with TestClient(create_app(store, require_auth=True)) as client:
        assert client.get(f"{API}/models").status_code == 401
        assert client.get("/groups", follow_redirects=False).status_code == 303
        login = client.get("/login")
        assert login.status_code == 200 and "No API token exists" not in login.text
        token = create_token(store, "ci").token
        assert client.get(f"{API}/models", headers=bearer(token)).status_code == 200
        revoke_token(store, "ci")
        assert client.get(f"{API}/models", headers=bearer(token)).status_code == 401
        assert client.get(f"{API}/models").status_code == 401


def test_an_unreachable_database_is_a_503_not_an_open_door() -> None:
    """The token cannot be checked: refuse (503), never let the request through."""
    down = open_store("postgresql+psycopg://nobody@127.0.0.1:1/none", migrate=False)
    with down, TestClient(create_app(down, require_auth=True)) as client:
        api = client.get(f"{API}/models", headers=bearer("x" * 43))
        assert api.status_code == 503 and api.json()["type"] == "store_unavailable"
        client.cookies.set(SESSION_COOKIE, "x" * 43)
        page = client.get("/groups")
        assert page.status_code == 503 and "cannot be checked" in page.text


# --- signing in ------------------------------------------------------------------------------


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_clears_it(
    client: TestClient, store: Store
) -> None:
    token = create_token(store, "ci").token
    headers = csrf(client)
    wrong = client.post("/login", data={"token": "nope" * 10}, headers=headers)
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert SESSION_COOKIE not in client.cookies
    htmx_wrong = client.post(
        "/login", data={"token": "nope"}, headers={**headers, "HX-Request": "true"}
    )
    assert htmx_wrong.status_code == 200 and htmx_wrong.headers["x-assay-form-error"] == "1"

    no_csrf = client.post("/login", data={"token": token})
    assert no_csrf.status_code == 403  # a cross-site form cannot sign a browser in

    signed = client.post(
        "/login",
        data={"token": f"  {token} ", "next": "/datasets"},
        headers={**headers, "HX-Request": "true"},
    )
    assert signed.status_code == 200 and signed.headers["hx-redirect"] == "/datasets"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie and "expires" not in cookie.lower()  # http; browser session
    page = client.get("/datasets")
    assert page.status_code == 200 and 'id="sign-out"' in page.text
    assert client.get(f"{API}/models").status_code == 200  # the API docs page uses the cookie

    out = client.post("/logout", headers={**headers, "HX-Request": "true"})
    assert out.status_code == 200 and out.headers["hx-redirect"] == "/login"
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    assert client.get("/datasets", follow_redirects=False).status_code == 303
    assert client.get(f"{API}/models", headers=bearer(token)).status_code == 200  # still valid


def test_cookie_is_secure_over_https(store: Store) -> None:
    token = create_token(store, "ci").token
    with TestClient(create_app(store), base_url="https://testserver") as client:
        response = client.post(
            "/login", data={"token": token}, headers=csrf(client), follow_redirects=False
        )
        assert response.status_code == 303 and response.headers["location"] == "/"
        assert "Secure" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "https://evil.example/", "/\\evil.example", "evil", "/ok\r\nx: y", ""],
)
def test_sign_in_never_sends_the_browser_elsewhere(
    client: TestClient, store: Store, target: str
) -> None:
    token = create_token(store, "ci").token
    response = client.post(
        "/login",
        data={"token": token, "next": target},
        headers=csrf(client),
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/"
    page = client.get("/login", params={"next": target})
    assert 'name="next" value="/"' in page.text


# --- assay serve -----------------------------------------------------------------------------


def test_serve_refuses_other_addresses_until_a_token_exists(cli: Any) -> None:
    refused = cli("serve", "--host", "0.0.0.0")
    assert refused.exit_code == 1
    assert "refusing to serve on 0.0.0.0: no API token exists" in refused.stderr
    assert "assay token create NAME" in refused.stderr and "SSH tunnel" in refused.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_beyond_loopback_with_a_token_requires_it(cli: Any) -> None:
    token = cli("token", "create", "ci").stdout.strip()
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "assay", "serve", "--host", "0.0.0.0", "--port", str(port)],
        env={**os.environ, **cli.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                anonymous = httpx.get(f"{url}{API}/models", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "assay serve did not start"
                time.sleep(0.2)
        assert anonymous.status_code == 401
        assert httpx.get(f"{url}{API}/models", headers=bearer(token)).status_code == 200
        page = httpx.get(f"{url}/groups", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/groups"
        assert cli("token", "revoke", "ci").exit_code == 0
        assert httpx.get(f"{url}{API}/models", headers=bearer(token)).status_code == 401
        assert httpx.get(f"{url}{API}/models").status_code == 401  # closed, not open
    finally:
        process.terminate()
        out, err = process.communicate(timeout=20)
    assert f"http://0.0.0.0:{port}/" in out and "plain HTTP" in err
    assert token not in out + err


# --- file paths the API accepts --------------------------------------------------------------


def test_gate_policy_files_only_under_assay_home_policies(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("default:\n  margin: 1\n")
    policies = store.settings.home / "policies"
    policies.mkdir()
    (policies / "link.yaml").symlink_to(outside)
    (policies / "ok.yaml").write_text("default:\n  margin: 1\n")
    for given in (
        str(outside),
        "../outside.yaml",
        "../../outside.yaml",
        "sub/../../outside.yaml",
        "link.yaml",
        "/etc/passwd",
        "",
        ".",
        "a\x00b.yaml",
    ):
        response = client.post(f"{API}/groups/1/gate", json={"policy_path": given})
        assert response.status_code == 422, (given, response.text)
        assert response.json()["type"] == "invalid", given
    refused = client.post(f"{API}/groups/1/gate", json={"policy_path": str(outside)}).json()
    assert "only under ASSAY_HOME/policies" in refused["detail"]
    # A file inside passes the check (then the group is looked up: there is none).
    for given in ("ok.yaml", str(policies / "ok.yaml"), "./ok.yaml"):
        response = client.post(f"{API}/groups/1/gate", json={"policy_path": given})
        assert response.status_code == 404, (given, response.text)


def test_local_model_files_only_under_assay_home_models(client: TestClient, tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + b"\x00" * 64)
    for given in (str(gguf), "../model.gguf", "/etc/passwd"):
        body = {"name": "m", "provider": "local", "options": {"model_path": given}}
        response = client.post(f"{API}/models", json=body)
        assert response.status_code == 422, (given, response.text)
        assert "only under ASSAY_HOME/models" in response.json()["detail"]
    body = {"name": "m", "provider": "local", "options": {"model_path": 5}}
    assert client.post(f"{API}/models", json=body).status_code == 422


def test_export_file_names_cannot_name_a_path() -> None:
    for name in ("../../etc/passwd", "a/b\\c", 'x"; filename=evil.sh', "..", "\x00\r\n"):
        safe = download_name(name)
        assert re.fullmatch(r"[A-Za-z0-9._-]+", safe) and not safe.startswith("."), name
        assert "/" not in safe and "\\" not in safe, name
