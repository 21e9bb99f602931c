"""REST API as a whole: the OpenAPI spec documents every route, errors are JSON everywhere,
unsafe calls need JSON or the page's CSRF token, and no schema has room for an API key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from assay.store import Store
from assay.web import create_app
from assay.web.api import datasets, evals, gate, groups, models, rubrics, traffic

API = "/api/v1"


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as c:
        yield c


def api_routes() -> list[tuple[str, str]]:
    """(method, full path) of every route the resource modules declare."""
    found = [
        (method, API + route.path.replace(":path}", "}"))
        for module in (datasets, rubrics, models, evals, groups, gate, traffic)
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    ]
    assert len(found) > 30
    return found


def test_spec_lists_every_route_with_docs_and_models(client: TestClient) -> None:
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["info"]["title"] == "Assay"
    for method, path in api_routes():
        operation = spec["paths"][path][method.lower()]
        assert operation["description"], (method, path)  # the route's docstring
        assert operation["tags"], (method, path)
        ok = next(code for code in operation["responses"] if code.startswith("2"))
        if ok != "204":
            assert operation["responses"][ok]["content"], (method, path)
        errors = {code for code in operation["responses"] if code.startswith("4")}
        assert errors, (method, path)
        for code in errors:
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ApiError"}, (method, path, code)
    upload = spec["paths"][f"{API}/datasets/import"]["post"]["requestBody"]["content"]
    assert set(upload) == {"multipart/form-data", "application/x-ndjson"}
    rows = spec["paths"][f"{API}/groups/{{group_id}}/rows"]["get"]["parameters"]
    assert {p["name"] for p in rows} >= {
        "model", "status", "below", "min_score", "max_score", "regressions", "slice", "sort",
        "descending", "limit", "offset",
    }  # fmt: skip
    limit = next(p for p in rows if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 500


def test_no_schema_has_room_for_an_api_key(client: TestClient) -> None:
    schemas = client.get(f"{API}/openapi.json").json()["components"]["schemas"]
    for name in ("ModelInfo", "ModelCreate"):
        fields = set(schemas[name]["properties"])
        assert "api_key_env" in fields
        assert not [f for f in fields if "key" in f.lower() and f != "api_key_env"], name
    assert schemas["ModelCreate"]["additionalProperties"] is False


def test_docs_page_is_served_from_our_own_files(client: TestClient) -> None:
    page = client.get(f"{API}/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/vendor/swagger-ui" in page.text and "//cdn" not in page.text
    assert client.get("/static/apidocs.js").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/nowhere", 404),
        ("put", "/models", 405),
        ("patch", "/datasets/x", 405),
        ("get", "/groups/1.5", 422),
    ],
)
def test_errors_are_json(client: TestClient, method: str, path: str, status: int) -> None:
    response = client.request(method.upper(), f"{API}{path}", json={})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body["detail"], str) and body["type"] in ("http", "invalid")


def test_validation_errors_list_every_problem(client: TestClient) -> None:
    response = client.post(f"{API}/evals", json={"name": "e", "seed": "x"})
    assert response.status_code == 422
    body: dict[str, Any] = response.json()
    assert body["type"] == "invalid"
    assert "body.dataset: Field required" in body["errors"]
    assert any(e.startswith("body.seed:") for e in body["errors"])
    assert body["detail"] == "; ".join(body["errors"])
    not_json = client.post(
        f"{API}/models", content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422 and not_json.json()["detail"].startswith("body")


def test_unsafe_calls_need_json_or_the_page_token(client: TestClient) -> None:
    """A cross-site form can post urlencoded, multipart or text/plain without a preflight."""
    body = {"name": "m", "base_url": "http://127.0.0.1:9/v1", "model_id": "m"}
    for kind in ("form", "text"):
        response = (
            client.post(f"{API}/models", data=body)
            if kind == "form"
            else client.post(f"{API}/models", content=b"{}", headers={"content-type": "text/plain"})
        )
        assert response.status_code == 403 and response.json()["type"] == "csrf"
    assert client.get(f"{API}/models").json() == []

    client.get(f"{API}/models")  # a page visit hands out the cookie
    token = client.cookies.get("assay_csrf")
    assert token
    with_token = client.post(
        f"{API}/models",
        content=b"{}",
        headers={"content-type": "text/plain", "X-CSRF-Token": token},
    )
    assert with_token.status_code == 422  # past the CSRF check; the body is still validated
    assert client.post(f"{API}/models", json=body).status_code == 201


def test_values_a_database_cannot_store_are_422_not_500(client: TestClient, store: Store) -> None:
    """Integers beyond a 32-bit column are refused up front; a NUL character is stored by
    SQLite and refused by Postgres, as a 422 rather than a server error."""
    too_big = [
        ("get", f"{API}/groups/99999999999", None),
        ("get", f"{API}/traffic/99999999999", None),
        ("get", f"{API}/rubrics/r/versions/99999999999", None),
        ("post", f"{API}/groups/1/gate", {"json": {"seed": -1}}),  # numpy needs seed >= 0
        ("post", f"{API}/evals", {"json": {"name": "e", "seed": 2**40}}),
        ("post", f"{API}/rubrics/r/render", {"json": {"dataset": "d", "row": 2**40}}),
        ("post", f"{API}/models", {"json": {"name": "m", "base_url": "http://h/v1", "rpm": 2**40}}),
    ]
    for method, url, kwargs in too_big:
        response = client.request(method.upper(), url, **(kwargs or {}))
        assert response.status_code == 422, (url, response.text)
        assert (
            "less than or equal to 2147483647" in response.text or "greater than" in response.text
        )

    postgres = store.dialect == "postgresql"
    nul = "a\x00b"
    with_nul = [
        ("get", f"{API}/datasets/a%00b", None, 404),
        ("get", f"{API}/traffic", {"params": {"task": nul}}, 200),
        (
            "post",
            f"{API}/models",
            {"json": {"name": "m", "base_url": "http://h/v1", "model_id": nul}},
            201,
        ),
    ]
    for method, url, kwargs, sqlite_status in with_nul:
        response = client.request(method.upper(), url, **(kwargs or {}))
        assert response.status_code == (422 if postgres else sqlite_status), (url, response.text)
        if postgres:
            assert "cannot contain NUL" in response.json()["detail"]
