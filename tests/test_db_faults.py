"""Database faults: concurrent writers on one SQLite file, a disk that fills during an import,
a Postgres server that goes away mid-run. Each operation either completes or fails with one
clear line, and the data stays consistent: no half-imported dataset, no result stored twice,
no provider call repeated for a row already stored.

Real components throughout: the engine in its own process, the recording proxy and the web
app served by uvicorn, a real SQLite file, the shared Postgres server behind a TCP forwarder
(tests/support/tcpproxy.py) that cuts connections the way a restart does.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from assay.capture import create_proxy
from assay.cli import app as cli_app
from assay.store import open_store
from assay.store.models import Dataset, DatasetRow, Inference, Run
from assay.web import create_app
from conftest import _PG_SKIP_REASON, POSTGRES_URL
from support.served import Served
from support.tcpproxy import TcpProxy
from tests_helpers import check_invariants, export_line, write, write_rows

API = "/api/v1"
NDJSON = {"content-type": "application/x-ndjson"}
PROCESS_TIMEOUT = 180  # a worker still running after this long is hung (no timing asserted)


def assay(env: dict[str, str], *args: str, **popen: Any) -> subprocess.Popen[str]:
    """``python -m assay ARGS`` in a process of its own, against ``env``'s database."""
    return subprocess.Popen(
        [sys.executable, "-m", "assay", *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = process.communicate(timeout=PROCESS_TIMEOUT)
    return process.returncode, out + err


def cli_ok(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result.stdout


def make_group(env: dict[str, str], base_url: str, tmp_path: Path, rows: int) -> None:
    """Dataset, rubric, three models on the fake LLM, and an eval ``e`` (baseline vs cand)."""
    data = write_rows(tmp_path / "rows.jsonl", rows)
    cli_ok(env, "dataset", "import", str(data), "--name", "mult")
    cli_ok(env, "rubric", "create", "right", "--template", "correctness")
    for name in ("base", "cand", "judge"):
        cli_ok(env, "model", "add", name, "--base-url", base_url, "--model-id", name)
    cli_ok(env, "eval", "create", "e", "--dataset", "mult", "--rubric", "right",
           "--judge", "judge", "--baseline", "base", "--candidate", "cand")  # fmt: skip


def integrity_ok(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        engine.dispose()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# --- a: every writer at once on one database ----------------------------------------------

PROXY_THREADS, PROXY_CALLS = 12, 30
WEB_THREADS, WEB_IMPORTS, WEB_IMPORT_ROWS, WEB_RUBRICS = 4, 2, 3000, 5


@pytest.mark.slow
def test_engine_proxy_and_web_write_at_once(
    fake_llm: Any, tmp_path: Path, database_url: str, assay_home: Path
) -> None:
    env = {"ASSAY_DATABASE_URL": database_url, "ASSAY_HOME": str(assay_home)}
    rows = 80
    make_group(env, fake_llm.base_url, tmp_path, rows)
    fake_llm.configure("*", latency_ms=15)
    web_store = open_store(database_url, home=assay_home)
    web = Served(create_app(web_store))
    proxy_app = create_proxy(fake_llm.root_url, database_url=database_url, home=assay_home)
    proxy = Served(proxy_app)
    warnings = _Collect()
    logging.getLogger("assay.capture").addHandler(warnings)
    failures: list[str] = []
    payload = write_rows(tmp_path / "upload.jsonl", WEB_IMPORT_ROWS).read_bytes()

    def proxy_client(t: int) -> None:
        with httpx.Client(base_url=proxy.url, timeout=60) as client:
            for i in range(PROXY_CALLS):
                body = {"model": "p", "messages": [{"role": "user", "content": f"call {t}-{i}"}]}
                response = client.post("/v1/chat/completions", json=body)
                if response.status_code != 200:
                    failures.append(f"proxy {t}-{i}: {response.status_code} {response.text}")

    def web_client(t: int) -> None:
        with httpx.Client(base_url=web.url, timeout=120) as client:
            for i in range(WEB_IMPORTS):
                params = {"name": f"web-{t}-{i}", "type": "training"}
                response = client.post(
                    f"{API}/datasets/import", params=params, content=payload, headers=NDJSON
                )
                if response.status_code != 201:
                    failures.append(f"import {t}-{i}: {response.status_code} {response.text}")
            for i in range(WEB_RUBRICS):
                body = {"name": f"rubric-{t}-{i}", "template": "correctness"}
                response = client.post(f"{API}/rubrics", json=body)
                if response.status_code != 201:
                    failures.append(f"rubric {t}-{i}: {response.status_code} {response.text}")

    try:
        engine = assay(env, "run", "start", "e", "--max-concurrency", "8")
        threads = [threading.Thread(target=proxy_client, args=(t,)) for t in range(PROXY_THREADS)]
        threads += [threading.Thread(target=web_client, args=(t,)) for t in range(WEB_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PROCESS_TIMEOUT)
        code, output = finish(engine)
        assert proxy_app.flush(60)
    finally:
        logging.getLogger("assay.capture").removeHandler(warnings)
        proxy.stop()
        web.stop()
        web_store.close()

    print(f"\nconcurrent: engine {rows} rows x 2 arms + judge ({rows * 4} provider calls), "
          f"{PROXY_THREADS * PROXY_CALLS} proxied calls, "
          f"{WEB_THREADS * WEB_IMPORTS} imports of {WEB_IMPORT_ROWS} rows, "
          f"{WEB_THREADS * WEB_RUBRICS} rubrics; failures {len(failures)}, recorder warnings "
          f"{len(warnings.messages)}")  # fmt: skip
    assert code == 0, output
    assert "locked" not in output and "Traceback" not in output
    assert failures == []
    assert warnings.messages == []  # nothing spooled: every batch went straight in
    assert proxy_app.recorder.spooled == 0

    integrity_ok(database_url)
    counts = check_invariants(database_url, assay_home)
    assert counts["generations"] == rows * 2
    with open_store(database_url, home=assay_home) as store, store.session() as s:
        assert set(s.scalars(select(Run.status))) == {"completed"}
        calls = PROXY_THREADS * PROXY_CALLS
        assert s.scalar(select(func.count()).select_from(Inference)) == calls
        bodies = s.scalars(select(Inference.request_body))
        recorded = Counter(_question(body["messages"]) for body in bodies)
        expected = {f"call {t}-{i}" for t in range(PROXY_THREADS) for i in range(PROXY_CALLS)}
        assert set(recorded) == expected and set(recorded.values()) == {1}  # each exactly once
        uploads = s.execute(
            select(Dataset.name, Dataset.row_count).where(Dataset.name.like("web-%"))
        ).all()
        assert len(uploads) == WEB_THREADS * WEB_IMPORTS
        assert {count for _, count in uploads} == {WEB_IMPORT_ROWS}
        stored_rows = s.execute(
            select(Dataset.name, func.count(DatasetRow.id))
            .join(DatasetRow, DatasetRow.dataset_id == Dataset.id)
            .where(Dataset.name.like("web-%"))
            .group_by(Dataset.name)
        ).all()
        assert {count for _, count in stored_rows} == {WEB_IMPORT_ROWS}
    rubrics = json.loads(cli_ok(env, "rubric", "list", "--json"))
    assert len(rubrics) == 1 + WEB_THREADS * WEB_RUBRICS


# --- b: the disk fills during an import -------------------------------------------------


def _file_size_limit(limit: int) -> Any:
    def apply() -> None:
        # Ignored, SIGXFSZ no longer kills the writer: its write fails with EFBIG instead,
        # which is what a full disk or an exhausted quota looks like to SQLite.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dataset", "traffic"])
def test_disk_full_during_import_keeps_nothing(kind: str, tmp_path: Path, assay_home: Path) -> None:
    db = tmp_path / "assay.db"
    url = f"sqlite:///{db}"
    env = {"ASSAY_DATABASE_URL": url, "ASSAY_HOME": str(assay_home)}
    cli_ok(env, "dataset", "import", str(write_rows(tmp_path / "small.jsonl", 50)),
           "--name", "earlier")  # fmt: skip
    cli_ok(env, "traffic", "import", str(write(tmp_path / "t0.jsonl", [export_line(i) for i in
                                                                        range(20)])))  # fmt: skip
    size = _db_bytes(db)  # every connection closed: the WAL was checkpointed away
    limit = size + 256 * 1024
    if kind == "dataset":
        big = write_rows(tmp_path / "big.jsonl", 20_000)
        args = ["dataset", "import", str(big), "--name", "big", "--type", "training"]
    else:
        big = write(tmp_path / "big.jsonl", [export_line(i) for i in range(100, 8_100)])
        args = ["traffic", "import", str(big)]
    code, output = finish(assay(env, *args, preexec_fn=_file_size_limit(limit)))
    print(f"\ndisk full ({kind}): database {size} B, limit {limit} B, file {big.stat().st_size} B")
    assert code == 1, output
    assert "Traceback" not in output
    error = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, output
    assert "database or disk is full" in error[0]
    assert "free some disk space" in error[0]
    assert ("dataset 'big' was not imported" if kind == "dataset" else "big.jsonl") in error[0]

    integrity_ok(url)
    with open_store(url, home=assay_home) as store, store.session() as s:
        names = s.execute(select(Dataset.name, Dataset.row_count)).all()
        assert names == [("earlier", 50)]
        assert s.scalar(select(func.count()).select_from(DatasetRow)) == 50
        assert s.scalar(select(func.count()).select_from(Inference)) == 20
    # With room again the same import succeeds: nothing half-written is in its way.
    cli_ok(env, *args)


# --- c: Postgres goes away mid-run ------------------------------------------------------


@pytest.fixture
def forwarded_postgres() -> Iterator[tuple[str, TcpProxy, Any]]:
    """A private schema on the shared server, reached through a forwarder that can cut it;
    also a direct engine for watching (and for pg_terminate_backend)."""
    if _PG_SKIP_REASON:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{_PG_SKIP_REASON}; CI must provide one")
        pytest.skip(_PG_SKIP_REASON)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    direct = create_engine(make_url(POSTGRES_URL))
    with direct.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    real = make_url(POSTGRES_URL)
    forwarder = TcpProxy(real.port or 5432, real.host or "127.0.0.1")
    url = real.set(host="127.0.0.1", port=forwarder.port).update_query_dict(
        {"options": f"-csearch_path={schema}", "application_name": schema}
    )
    try:
        yield url.render_as_string(hide_password=False), forwarder, (direct, schema)
    finally:
        forwarder.close()
        with direct.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        direct.dispose()


def _wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.05)


def _scalar(watch: tuple[Any, str], sql: str) -> Any:
    engine, schema = watch
    with engine.connect() as conn:
        conn.execute(text(f'SET search_path TO "{schema}"'))
        return conn.execute(text(sql)).scalar()


def _terminate(watch: tuple[Any, str]) -> int:
    """pg_terminate_backend for every backend this test's processes opened."""
    engine, schema = watch
    with engine.connect() as conn:
        return len(
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = :name AND pid <> pg_backend_pid()"),
                {"name": schema},
            ).all()
        )  # fmt: skip


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_cut_mid_run(
    forwarded_postgres: tuple[str, TcpProxy, Any], fake_llm: Any, tmp_path: Path, assay_home: Path
) -> None:
    url, forwarder, watch = forwarded_postgres
    env = {"ASSAY_DATABASE_URL": url, "ASSAY_HOME": str(assay_home)}
    rows = 60
    make_group(env, fake_llm.base_url, tmp_path, rows)
    fake_llm.configure("*", latency_ms=60)
    engine = assay(env, "run", "start", "e", "--max-concurrency", "4")
    _wait_for(lambda: _scalar(watch, "SELECT count(*) FROM generations") >= rows // 2,
              "a quarter of the generations stored")  # fmt: skip
    before = _stored_generations(watch)
    outage = 3.0
    cut = forwarder.drop(refuse_seconds=outage)
    time.sleep(outage)
    _wait_for(lambda: engine.poll() is not None
              or _scalar(watch, "SELECT count(*) FROM generations") >= rows,
              "half of the generations stored, or the engine stopped",
              timeout=PROCESS_TIMEOUT)  # fmt: skip
    terminated = _terminate(watch) if engine.poll() is None else 0
    code, output = finish(engine)
    print(f"\npostgres cut: {cut} connections dropped, link down {outage} s, "
          f"{forwarder.refused} connections refused, {terminated} backends terminated; "
          f"engine exit {code}")  # fmt: skip
    assert cut >= 1
    assert "Traceback" not in output, output
    if code != 0:  # stopped rather than retried: it says so, and resume finishes
        assert "database connection lost" in output and "assay run resume" in output, output
        resumed, resume_output = finish(assay(env, "run", "resume", "1"))
        assert resumed == 0, resume_output

    counts = check_invariants(url, assay_home)
    assert counts["generations"] == rows * 2
    assert _scalar(watch, "SELECT count(*) FROM runs WHERE status <> 'completed'") == 0
    # No provider call was made twice for a row stored before the cut.
    asked = Counter()
    for request in fake_llm.requests():
        if request["model"] in ("base", "cand"):
            asked[(request["model"], _question(request["body"]["messages"]))] += 1
    repeated = [key for key in before if asked[key] != 1]
    assert repeated == []


def _stored_generations(watch: tuple[Any, str]) -> list[tuple[str, str]]:
    """(model, question) of every generation stored now."""
    engine, schema = watch
    with engine.connect() as conn:
        conn.execute(text(f'SET search_path TO "{schema}"'))
        found = conn.execute(
            text("SELECT m.model_id, r.messages FROM generations g "
                 "JOIN runs ru ON ru.id = g.run_id JOIN model_endpoints m ON m.id = ru.endpoint_id "
                 "JOIN dataset_rows r ON r.id = g.row_id")
        ).all()  # fmt: skip
    return [(model, _question(_messages(messages))) for model, messages in found]


def _question(messages: list[dict[str, Any]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def _messages(value: Any) -> list[dict[str, Any]]:
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_cut_during_import_keeps_nothing(
    forwarded_postgres: tuple[str, TcpProxy, Any], tmp_path: Path, assay_home: Path
) -> None:
    url, forwarder, watch = forwarded_postgres
    env = {"ASSAY_DATABASE_URL": url, "ASSAY_HOME": str(assay_home)}
    cli_ok(env, "dataset", "import", str(write_rows(tmp_path / "small.jsonl", 30)),
           "--name", "earlier")  # fmt: skip
    big = write_rows(tmp_path / "big.jsonl", 100_000)
    importing = assay(env, "dataset", "import", str(big), "--name", "big", "--type", "training")
    in_transaction = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :n "
        "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
    )

    def importing_now() -> bool:
        engine, schema = watch
        with engine.connect() as conn:
            return bool(conn.execute(text(in_transaction), {"n": schema}).scalar())

    _wait_for(importing_now, "the import's transaction open")
    time.sleep(0.5)  # some batches in
    cut = forwarder.drop(refuse_seconds=2)
    code, output = finish(importing)
    print(f"\npostgres cut during import: {cut} connections dropped; import exit {code}")
    assert code == 1, output
    assert "Traceback" not in output
    error = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, output
    assert "dataset 'big' was not imported" in error[0]
    assert "database connection lost" in error[0]
    time.sleep(2)
    assert _scalar(watch, "SELECT count(*) FROM datasets WHERE name = 'big'") == 0
    assert _scalar(watch, "SELECT count(*) FROM dataset_rows") == 30
