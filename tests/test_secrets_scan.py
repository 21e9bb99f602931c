"""Keys never land anywhere: distinctive provider keys go through every flow that touches one
(model endpoints reading a key from the environment, a foreground run and a background
worker with a provider that echoes a refused key, the recording proxy with the key in its
headers, during a store outage too, exports, gate reports, pages and API answers, refused
input), then every file under the test's directories (database, WAL, spool, logs, exports),
the database's rows and everything printed are searched for them. Both backends."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from assay.capture import create_proxy, default_spool_path
from assay.store import Store
from assay.web import create_app
from support.scan import database_bytes, files_holding
from support.served import Served
from tests_helpers import write_rows

KEY_ENV = "ASSAY_SCAN_PROVIDER_KEY"


def needles(secret: str, random_from: int) -> list[bytes]:
    """The secret, and overlapping 12-character pieces of its random part (from
    ``random_from``): a copy cut short or partly masked is still found."""
    random_part = secret[random_from:]
    pieces = [random_part[i : i + 12] for i in range(0, len(random_part) - 11, 10)]
    return [secret.encode(), *(piece.encode() for piece in pieces)]


@pytest.fixture
def provider_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = f"sk-scan-{secrets.token_hex(16)}"
    monkeypatch.setenv(KEY_ENV, key)  # the engine and the background worker read it here
    return key


@pytest.fixture
def outputs() -> list[str]:
    """Everything the flows printed or answered, searched at the end."""
    return []


def ok(result: Any, outputs: list[str]) -> Any:
    outputs.extend((result.stdout, result.stderr))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


# --- the flows -------------------------------------------------------------------------------


def run_groups(cli: Any, fake_llm: Any, tmp_path: Path, outputs: list[str]) -> None:
    """A foreground run: model ``leaky`` refuses the key and echoes it, as real providers do."""
    fake_llm.configure("leaky", script=["401"] * 50)
    fake_llm.configure("judge", judge_mode="json")
    rows = write_rows(tmp_path / "rows.jsonl", 6)
    ok(cli("dataset", "import", str(rows), "--name", "scan"), outputs)
    ok(cli("rubric", "create", "right", "--template", "correctness"), outputs)
    for name in ("good", "leaky", "judge"):
        add = ["model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name]
        ok(cli(*add, "--api-key-env", KEY_ENV), outputs)
    create = ["eval", "create", "scan-eval", "--dataset", "scan", "--rubric", "right"]
    ok(cli(*create, "--judge", "judge", "--baseline", "good", "--candidate", "leaky"), outputs)
    started = cli("run", "start", "scan-eval", "--max-attempts", "1")
    outputs.extend((started.stdout, started.stderr))
    assert started.exit_code in (0, 1), started.stderr  # the leaky arm fails every row
    assert fake_llm.requests("good")[0]["auth"].endswith(fake_llm_key(fake_llm, "good"))


def fake_llm_key(fake_llm: Any, model: str) -> str:
    """The key the fake server received (it was sent: the test is not vacuous)."""
    return fake_llm.requests(model)[0]["auth"].removeprefix("Bearer ")


def background_group(client: TestClient, outputs: list[str]) -> None:
    """The same eval started through the API: a worker process, its log under ASSAY_HOME/logs."""
    started = client.post("/api/v1/groups", json={"eval": "scan-eval", "max_attempts": 1})
    assert started.status_code == 202, started.text
    group_id = started.json()["id"]
    deadline = time.monotonic() + 90
    while True:
        status = client.get(f"/api/v1/groups/{group_id}").json()
        outputs.append(str(status))
        if status["status"] in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, f"the worker did not finish: {status}"
        time.sleep(0.2)


def capture(
    fake_llm: Any, database_url: str, home: Path, proxy_key: str, outputs: list[str]
) -> None:
    """Calls through the proxy with the key in Authorization: one answered, one refused with
    the key echoed in the answer body."""
    fake_llm.configure("refuses", script=["401"] * 50)
    proxy = create_proxy(fake_llm.root_url, database_url=database_url, home=home)
    served = Served(proxy, log_config=None, access_log=True)
    try:
        client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=proxy_key, max_retries=0)
        answer = client.chat.completions.create(
            model="captured", messages=[{"role": "user", "content": "Where is my order?"}]
        )
        outputs.append(answer.model_dump_json())
        with pytest.raises(openai.AuthenticationError) as refused:
            client.chat.completions.create(
                model="refuses", messages=[{"role": "user", "content": "hi"}]
            )
        assert proxy_key in str(refused.value)  # the upstream echoed it: the proxy must scrub
        raw = httpx.post(
            f"{served.url}/v1/chat/completions",
            json={"model": "captured", "messages": [{"role": "user", "content": "x"}]},
            headers={"x-api-key": proxy_key, "x-assay-task": "raw"},
        )
        assert raw.status_code == 200
        assert proxy.flush(20)
    finally:
        served.stop()


def capture_during_outage(fake_llm: Any, tmp_path: Path, proxy_key: str) -> Path:
    """The store is down: records wait in the spool file, which must be clean too."""
    home = tmp_path / "outage-home"
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")  # the database's directory cannot be created
    url = f"sqlite:///{blocker / 'assay.db'}"
    proxy = create_proxy(fake_llm.root_url, database_url=url, home=home, retry_seconds=60)
    served = Served(proxy, log_config=None, access_log=True)
    try:
        client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=proxy_key, max_retries=0)
        client.chat.completions.create(
            model="captured", messages=[{"role": "user", "content": "q"}]
        )
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="refuses", messages=[{"role": "user", "content": "q"}]
            )
        assert proxy.flush(20)
        assert proxy.recorder.spooled == 2
    finally:
        served.stop()
    spool = default_spool_path(home)
    assert spool.exists() and spool.stat().st_size > 0
    return spool


def exports(cli: Any, tmp_path: Path, outputs: list[str]) -> None:
    out = tmp_path / "exports"
    out.mkdir()
    ok(cli("dataset", "export", "scan", "-o", str(out / "scan.jsonl")), outputs)
    create = ["dataset", "create", "captured", "--type", "eval", "--from-traffic"]
    ok(cli(*create), outputs)
    for fmt in ("chat", "source"):
        target = out / f"captured-{fmt}.jsonl"
        ok(cli("dataset", "export", "captured", "-f", fmt, "-o", str(target)), outputs)
    for fmt, suffix in (("markdown", "md"), ("json", "json"), ("junit", "xml"), ("text", "txt")):
        result = cli("gate", "1", "--format", fmt, "-o", str(out / f"gate.{suffix}"))
        outputs.extend((result.stdout, result.stderr))
        assert result.exit_code in (0, 1, 3), result.stderr
    ok(cli("traffic", "list", "--json"), outputs)
    ok(cli("model", "list", "--json"), outputs)
    ok(cli("run", "list", "--json"), outputs)


def web_answers(client: TestClient, tmp_path: Path, outputs: list[str]) -> None:
    """Pages and API answers, saved to a file as a browser would cache them."""
    answers = []
    for path in (
        "/models", "/evals", "/groups", "/groups/1", "/groups/1/rows/0", "/traffic",
        "/traffic/1", "/datasets/captured", "/api/v1/models", "/api/v1/groups/1/rows",
        "/api/v1/groups/1/summary", "/api/v1/traffic?limit=500", "/api/v1/groups/2",
        "/api/v1/datasets/captured/export?format=source", "/api/v1/groups/1/gate",
        "/api/v1/openapi.json",
    ):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        answers.append(response.text)
    quick = client.post(
        "/api/v1/rubrics/right/test",
        json={"dataset": "scan", "rows": [0], "model": "leaky", "judge": "judge"},
    )
    answers.append(quick.text)  # the refused key's error, as the API reports it
    (tmp_path / "web-answers.txt").write_text("\n".join(answers))
    outputs.extend(answers)


def refused_input(cli: Any, fake_llm: Any, key: str, outputs: list[str]) -> None:
    """A key pasted where its variable's name belongs is refused without being repeated."""
    add = ["model", "add", "oops", "--base-url", fake_llm.base_url, "--model-id", "m"]
    result = cli(*add, "--api-key-env", key)
    outputs.extend((result.stdout, result.stderr))
    assert result.exit_code == 1 and "--api-key-env takes the NAME" in result.stderr


# --- the scan --------------------------------------------------------------------------------


@pytest.mark.slow
def test_no_key_is_written_anywhere(
    cli: Any,
    store: Store,
    fake_llm: Any,
    database_url: str,
    assay_home: Path,
    tmp_path: Path,
    provider_key: str,
    outputs: list[str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy_key = f"sk-proxy-{secrets.token_hex(16)}"
    token_result = ok(cli("token", "create", "scan"), [])  # its own output: shown once
    token = token_result.stdout.strip()

    run_groups(cli, fake_llm, tmp_path, outputs)
    assert fake_llm_key(fake_llm, "leaky") == provider_key  # the key was really used
    capture(fake_llm, database_url, assay_home, proxy_key, outputs)
    spool = capture_during_outage(fake_llm, tmp_path, proxy_key)
    exports(cli, tmp_path, outputs)
    with TestClient(create_app(store), headers={"Authorization": f"Bearer {token}"}) as client:
        background_group(client, outputs)
        web_answers(client, tmp_path, outputs)
    refused_input(cli, fake_llm, provider_key, outputs)

    # What the flows wrote is there to be searched: the scan is not looking at empty places.
    logs = sorted((assay_home / "logs").glob("group-*.log"))
    assert logs and all(log.stat().st_size > 0 for log in logs)
    assert spool.is_file() and (tmp_path / "exports" / "gate.md").is_file()
    data = database_bytes(store)
    assert b"scan-eval" in data and KEY_ENV.encode() in data and b"Where is my order?" in data
    # The refused keys' echoes were stored, scrubbed: the generation error and the capture.
    assert b"Incorrect API key provided" in data and b"[redacted]" in data
    assert b"[redacted]" in spool.read_bytes()

    # The token's first 8 characters are its displayed prefix, stored by design.
    secrets_ = [*needles(provider_key, 8), *needles(proxy_key, 9), *needles(token, 8)]
    assert not [n[:6] for n in secrets_ if n in data], "a secret is in the database"
    found = files_holding(tmp_path, secrets_)
    assert not found, f"secrets on disk: {[(str(p), n[:6]) for p, n in found]}"
    printed, errors = capfd.readouterr()
    everything = "\n".join([*outputs, printed, errors, caplog.text]).encode()
    assert everything.count(b"scan") > 0
    assert not [n[:6] for n in secrets_ if n in everything], "a secret was printed or answered"
    assert token_result.stdout.strip() == token and token not in token_result.stderr
