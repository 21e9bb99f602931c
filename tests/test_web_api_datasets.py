"""REST API, datasets: list, show, rows (paginated), import by upload or raw body, export
download, delete; CSRF on form uploads; upload size and suffix limits. Both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from assay.store import Store
from assay.web import create_app, uploads
from tests_helpers import write_rows

API = "/api/v1"
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as c:
        yield c


def rows_file(tmp_path: Path, rows: int = 12) -> bytes:
    return write_rows(tmp_path / "rows.jsonl", rows).read_bytes()


def import_raw(client: TestClient, body: bytes, **params: Any) -> Any:
    return client.post(f"{API}/datasets/import", params=params, content=body, headers=NDJSON)


def csrf_headers(client: TestClient) -> dict[str, str]:
    """What a page sends: any GET hands out the cookie; the header repeats it."""
    client.get(f"{API}/openapi.json")
    token = client.cookies.get("assay_csrf")
    assert token
    return {"X-CSRF-Token": token}


def names(client: TestClient) -> list[str]:
    response = client.get(f"{API}/datasets")
    assert response.status_code == 200
    return [d["name"] for d in response.json()]


def test_raw_import_then_list_show_and_paginated_rows(client: TestClient, tmp_path: Path) -> None:
    response = import_raw(client, rows_file(tmp_path), name="mult")
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["rows_imported"] == 12 and report["lines_skipped"] == 0
    assert report["dataset"]["type"] == "eval" and report["dataset"]["source"] == "mult.jsonl"
    assert names(client) == ["mult"]
    assert client.get(f"{API}/datasets", params={"type": "training"}).json() == []

    shown = client.get(f"{API}/datasets/mult").json()
    assert shown["row_count"] == 12 and shown["source_format"] == "chat"

    first = client.get(f"{API}/datasets/mult/rows", params={"limit": 5}).json()
    assert [r["position"] for r in first["items"]] == [0, 1, 2, 3, 4]
    assert (first["limit"], first["offset"], first["next_offset"], first["total"]) == (5, 0, 5, 12)
    assert first["items"][1]["messages"][1]["content"] == "What is 1 times 3?"
    assert first["items"][1]["reference"]["content"] == "3"
    last = client.get(f"{API}/datasets/mult/rows", params={"limit": 5, "offset": 10}).json()
    assert [r["position"] for r in last["items"]] == [10, 11]
    assert last["next_offset"] is None
    default = client.get(f"{API}/datasets/mult/rows").json()
    assert default["limit"] == 50 and len(default["items"]) == 12


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"limit": 501}, "query.limit"),
        ({"limit": 0}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"limit": "many"}, "query.limit"),
    ],
)
def test_rows_page_cap_and_bad_paging_are_422(
    client: TestClient, tmp_path: Path, params: dict[str, Any], where: str
) -> None:
    assert import_raw(client, rows_file(tmp_path, 3), name="small").status_code == 201
    response = client.get(f"{API}/datasets/small/rows", params=params)
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "invalid" and body["detail"].startswith(where)
    if params.get("limit") == 501:
        assert "less than or equal to 500" in body["detail"]


def test_missing_dataset_is_404_with_a_suggestion(client: TestClient, tmp_path: Path) -> None:
    assert import_raw(client, rows_file(tmp_path, 2), name="support").status_code == 201
    for path in ("suport", "suport/rows", "suport/export"):
        response = client.get(f"{API}/datasets/{path}")
        assert response.status_code == 404
        assert response.json() == {
            "detail": "no dataset named 'suport'; did you mean 'support'? "
            "(see `assay dataset list`)",
            "type": "not_found",
        }


def test_import_refusals_store_nothing(client: TestClient, tmp_path: Path) -> None:
    body = rows_file(tmp_path, 3)
    assert import_raw(client, body, name="taken").status_code == 201

    again = import_raw(client, body, name="taken")
    assert again.status_code == 409 and again.json()["type"] == "already_exists"
    assert "already exists" in again.json()["detail"]

    no_name = import_raw(client, body)
    assert no_name.status_code == 422 and no_name.json()["detail"].startswith("query.name")

    bad_type = import_raw(client, body, name="x", type="test")
    assert bad_type.status_code == 422
    assert "query.type" in bad_type.json()["detail"] and "'eval'" in bad_type.json()["detail"]

    garbage = import_raw(client, b"not json\n{also not}\n", name="junk")
    assert garbage.status_code == 422 and "junk.jsonl" in garbage.json()["detail"]

    long_name = import_raw(client, body, name="x", filename="a" * 300 + ".jsonl")
    assert long_name.status_code == 422 and "at most 200 bytes" in long_name.json()["detail"]

    empty = import_raw(client, b"", name="empty")
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]

    over = import_raw(client, body, name="x", limit=20_000)
    assert over.status_code == 413 and over.json()["type"] == "limit_exceeded"
    assert names(client) == ["taken"]


def test_raw_import_options(client: TestClient, tmp_path: Path) -> None:
    body = rows_file(tmp_path, 6)
    response = import_raw(
        client, body + body, name="t", type="training", dedupe="true", filename="logs.ndjson"
    )
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["dataset"]["type"] == "training" and report["dataset"]["source"] == "logs.ndjson"
    assert report["rows_imported"] == 6 and report["duplicates_dropped"] == 6
    limited = import_raw(client, body, name="first2", limit=2).json()
    assert limited["rows_imported"] == 2 and limited["truncated"] is True


def test_multipart_upload_needs_the_page_csrf_header(client: TestClient, tmp_path: Path) -> None:
    files = {"file": ("mine.jsonl", rows_file(tmp_path, 4), "application/octet-stream")}
    data = {"name": "uploaded", "type": "eval"}
    refused = client.post(f"{API}/datasets/import", files=files, data=data)
    assert refused.status_code == 403
    assert refused.json()["type"] == "csrf" and "X-CSRF-Token" in refused.json()["detail"]
    wrong = client.post(
        f"{API}/datasets/import", files=files, data=data, headers={"X-CSRF-Token": "x" * 43}
    )
    assert wrong.status_code == 403
    assert names(client) == []

    response = client.post(
        f"{API}/datasets/import", files=files, data=data, headers=csrf_headers(client)
    )
    assert response.status_code == 201, response.text
    assert response.json()["dataset"]["source"] == "mine.jsonl"
    assert response.json()["rows_imported"] == 4
    assert names(client) == ["uploaded"]


def test_multipart_form_errors(client: TestClient, tmp_path: Path) -> None:
    headers = csrf_headers(client)
    body = rows_file(tmp_path, 2)
    csv = client.post(
        f"{API}/datasets/import",
        files={"file": ("rows.csv", body, "text/csv")},
        data={"name": "x"},
        headers=headers,
    )
    assert csv.status_code == 422
    assert "upload 'rows.csv': expected a JSONL file (.jsonl, .ndjson, .json)" in csv.text

    no_file = client.post(
        f"{API}/datasets/import",
        files={"other": ("a.jsonl", body, "text/plain")},
        data={"name": "x"},
        headers=headers,
    )
    assert no_file.status_code == 422 and no_file.json()["detail"].startswith("form.file")

    no_name = client.post(
        f"{API}/datasets/import", files={"file": ("a.jsonl", body, "text/plain")}, headers=headers
    )
    assert no_name.status_code == 422 and no_name.json()["detail"].startswith("form.name")

    bad_limit = client.post(
        f"{API}/datasets/import",
        files={"file": ("a.jsonl", body, "text/plain")},
        data={"name": "x", "limit": "lots"},
        headers=headers,
    )
    assert bad_limit.status_code == 422 and bad_limit.json()["detail"].startswith("form.limit")
    # The file name is only used in messages, never as a path.
    sneaky = client.post(
        f"{API}/datasets/import",
        files={"file": ("../../etc/x.jsonl", body, "text/plain")},
        data={"name": "sneaky"},
        headers=headers,
    )
    assert sneaky.status_code == 201 and sneaky.json()["dataset"]["source"] == "x.jsonl"


def test_unsupported_content_types(client: TestClient, tmp_path: Path) -> None:
    body = rows_file(tmp_path, 2)
    as_json = client.post(
        f"{API}/datasets/import",
        params={"name": "x"},
        content=body,
        headers={"content-type": "application/json"},
    )
    assert as_json.status_code == 415 and "application/x-ndjson" in as_json.json()["detail"]
    # text/plain is what a cross-site form can send: refused before the route sees it.
    as_text = client.post(
        f"{API}/datasets/import",
        params={"name": "x"},
        content=body,
        headers={"content-type": "text/plain"},
    )
    assert as_text.status_code == 403
    assert names(client) == []


def test_uploads_above_the_cap_are_413_and_store_nothing(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = 1024 * 1024
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", cap)
    line = orjson.dumps({"messages": [{"role": "user", "content": "x" * 1000}]}) + b"\n"
    just_over = line * (cap // len(line) + 1)  # past the cap, within the framing allowance
    assert cap < len(just_over) < cap + 64 * 1024

    raw = import_raw(client, just_over, name="big")
    assert raw.status_code == 413 and raw.json()["type"] == "limit_exceeded"
    assert "larger than the 1 MiB limit" in raw.json()["detail"]

    form = client.post(
        f"{API}/datasets/import",
        files={"file": ("big.jsonl", just_over, "application/octet-stream")},
        data={"name": "big"},
        headers=csrf_headers(client),
    )
    assert form.status_code == 413 and "'big.jsonl' is larger than" in form.json()["detail"]

    huge = import_raw(client, just_over * 2, name="huge")  # refused from Content-Length alone
    assert huge.status_code == 413 and "limited to 1 MiB" in huge.json()["detail"]

    fits = import_raw(client, line * 10, name="fits")
    assert fits.status_code == 201
    assert names(client) == ["fits"]


def test_export_round_trips_in_both_formats(client: TestClient, tmp_path: Path) -> None:
    assert import_raw(client, rows_file(tmp_path, 7), name="mult").status_code == 201
    original = client.get(f"{API}/datasets/mult/rows").json()["items"]
    for fmt in ("chat", "source"):
        response = client.get(f"{API}/datasets/mult/export", params={"format": fmt})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["content-disposition"] == 'attachment; filename="mult.jsonl"'
        lines = response.content.splitlines()
        assert len(lines) == 7 and all(json.loads(line) for line in lines)
        copy = import_raw(client, response.content, name=f"copy-{fmt}")
        assert copy.status_code == 201 and copy.json()["dataset"]["source_format"] == fmt
        again = client.get(f"{API}/datasets/copy-{fmt}/rows").json()["items"]
        assert [r["content_hash"] for r in again] == [r["content_hash"] for r in original]
        assert [r["reference"] for r in again] == [r["reference"] for r in original]

    bad = client.get(f"{API}/datasets/mult/export", params={"format": "csv"})
    assert bad.status_code == 422 and "query.format" in bad.json()["detail"]


def test_odd_dataset_names_are_reachable_and_downloads_get_safe_names(
    client: TestClient, tmp_path: Path
) -> None:
    name = 'team/a "b"\\c;ü'
    assert import_raw(client, rows_file(tmp_path, 2), name=name).status_code == 201
    path = "team/a%20%22b%22%5Cc%3B%C3%BC"
    assert client.get(f"{API}/datasets/{path}").json()["name"] == name
    assert client.get(f"{API}/datasets/{path}/rows").json()["total"] == 2
    response = client.get(f"{API}/datasets/{path}/export")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="team_a_b_c.jsonl"'
    assert client.get(f"{API}/datasets/%2E%2E/export").status_code == 404


def test_delete(client: TestClient, tmp_path: Path) -> None:
    assert import_raw(client, rows_file(tmp_path, 2), name="gone").status_code == 201
    refused = client.delete(f"{API}/datasets/gone")  # no body: a cross-site form could do this
    assert refused.status_code == 403
    response = client.delete(f"{API}/datasets/gone", headers=csrf_headers(client))
    assert response.status_code == 200 and response.json()["name"] == "gone"
    assert client.get(f"{API}/datasets/gone").status_code == 404
    # Scripts send a JSON content type instead of the page's token.
    again = client.delete(f"{API}/datasets/gone", headers={"content-type": "application/json"})
    assert again.status_code == 404 and again.json()["type"] == "not_found"
