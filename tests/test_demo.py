"""``assay demo``: the shipped sample, the demo home's safety, live capture through the proxy,
the local model's OpenAI-compatible server, and (marked slow) the whole demo on the real
bundled model, its printed numbers checked against the store it leaves behind."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from assay.cli import app
from assay.demo import MARKER, prepare_home
from assay.demo.build_sample import export_line, json_schema, recorded_arguments
from assay.demo.live import LIVE_ENVIRONMENT, send_live
from assay.demo.servers import BackgroundServer
from assay.demo.steps_eval import CHECKS
from assay.demo.steps_traffic import SAMPLE, sample_lines
from assay.errors import ValidationError
from assay.providers.local_client import to_llama_request
from assay.providers.local_server import create_local_server
from assay.rubrics import parse_checks, run_checks
from assay.store import Store, open_store
from assay.store.models import (
    Dataset,
    DatasetRow,
    Generation,
    Inference,
    InferenceTag,
    Judgment,
    Run,
    Verdict,
)
from assay.traffic.importer import to_inference
from support.fixtures import FakeLLMHandle

# --- the shipped sample --------------------------------------------------------------------------


def test_every_recorded_answer_passes_its_own_check() -> None:
    """The production answers are BFCL's accepted answers: the demo's check accepts each."""
    spec = parse_checks(CHECKS)
    lines = sample_lines()
    assert len(lines) == 250
    ids = set()
    for line in lines:
        ids.add(line["metadata"]["bfcl_id"])
        answer = line["response"]["choices"][0]["message"]
        results = run_checks(spec, answer, None, line["metadata"])
        assert [r.passed for r in results] == [True], (line["metadata"]["bfcl_id"], results)
        assert line["environment"] == "production" and line["task"] == "function-calling"
        for tool in line["request"]["tools"]:
            assert "." not in tool["function"]["name"]  # OpenAI-style APIs refuse dots
            jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])
        to_inference(line, json.dumps(line).encode())  # a valid traffic export line
    assert len(ids) == 250


def test_a_wrong_call_fails_the_check() -> None:
    """The check is not a formality on this data: a changed argument fails it."""
    spec = parse_checks(CHECKS)
    line = sample_lines(1)[0]  # calculate_triangle_area(base=10, height=5, unit="units")
    call = line["response"]["choices"][0]["message"]["tool_calls"][0]
    wrong = {**call, "function": {**call["function"], "arguments": '{"base": 10, "height": 6}'}}
    results = run_checks(spec, {"role": "assistant", "tool_calls": [wrong]}, None, line["metadata"])
    assert not results[0].passed and "'height' = 6" in (results[0].detail or "")


def test_conversion_of_one_bfcl_item() -> None:
    question = {
        "id": "simple_python_2",
        "question": [[{"role": "user", "content": "Hypotenuse of 4 and 5?"}]],
        "function": [
            {
                "name": "math.hypot",
                "description": "Euclidean norm.",
                "parameters": {
                    "type": "dict",
                    "properties": {
                        "x": {"type": "integer", "description": "x"},
                        "scale": {"type": "float", "optional": True},
                        "pair": {"type": "tuple", "items": {"type": "any"}},
                        "options": {"type": "dict", "properties": {"k": {"type": "string"}}},
                    },
                    "required": ["x"],
                },
            }
        ],
    }
    truth = [
        {
            "math.hypot": {
                "x": [4],
                "scale": ["", 1.0],
                "pair": [[1, 2]],
                "options": [{"k": ["a", "A"], "z": ["", "q"]}],
            }
        }
    ]
    line = export_line(3, question, truth)
    tool = line["request"]["tools"][0]["function"]
    assert tool["name"] == "math_hypot"
    assert tool["parameters"] == {
        "type": "object",
        "properties": {
            "x": {"type": "integer", "description": "x"},
            "scale": {"type": "number"},
            "pair": {"type": "array", "items": {}},
            "options": {"type": "object", "properties": {"k": {"type": "string"}}},
        },
        "required": ["x"],
    }
    call = line["response"]["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "math_hypot"
    assert json.loads(call["arguments"]) == {"x": 4, "pair": [1, 2], "options": {"k": "a"}}
    assert line["metadata"] == {"bfcl_id": "simple_python_2", "accepted_calls": truth}
    assert line["started_at"] == "2026-03-02T09:51:00Z"  # 3 x 37 minutes after the first
    assert json_schema({"type": "any", "description": "d"}) == {"description": "d"}
    assert recorded_arguments({"a": ["", 1], "b": [[{"c": [2]}]]}) == {"b": [{"c": 2}]}


def test_the_license_ships_beside_the_sample() -> None:
    text = (SAMPLE.parent / "LICENSE-bfcl.txt").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it
    assert "bfcl-eval, version 2026.3.23" in text and "Changes made" in text


# --- the demo home ----------------------------------------------------------------------------


def test_a_new_home_gets_the_marker(tmp_path: Path) -> None:
    home = prepare_home(tmp_path / "fresh" / "demo")
    assert home.is_dir() and sorted(p.name for p in home.iterdir()) == [MARKER]


def test_a_previous_demo_home_is_wiped(tmp_path: Path) -> None:
    home = prepare_home(tmp_path / "demo")
    (home / "assay.db").write_text("old")
    (home / "models").mkdir()
    (home / "models" / "x.gguf").write_text("old")
    assert prepare_home(home) == home
    assert sorted(p.name for p in home.iterdir()) == [MARKER]


def test_a_folder_not_made_by_the_demo_is_refused_and_kept(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    with pytest.raises(ValidationError, match="was not made by `assay demo`"):
        prepare_home(mine)
    assert (mine / "notes.txt").read_text() == "precious" and not (mine / MARKER).exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValidationError, match="is a file"):
        prepare_home(a_file)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (prepare_home(empty) / MARKER).is_file()  # nothing in it to lose


def _invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, ["demo", *args], env=env, catch_exceptions=False)


def test_the_cli_refuses_a_foreign_home_before_any_work(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    result = _invoke("--home", str(mine), "--no-serve")
    assert result.exit_code == 1
    assert "was not made by `assay demo`" in result.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_the_cli_refuses_a_busy_port_before_touching_the_home(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _invoke("--home", str(tmp_path / "demo"), "--port", str(port))
    assert result.exit_code == 1 and f"port {port}" in result.stderr
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize(("option", "value"), [("--rows", "1"), ("--live", "0"), ("--port", "0")])
def test_bad_options_are_refused(tmp_path: Path, option: str, value: str) -> None:
    result = _invoke("--home", str(tmp_path / "demo"), "--no-serve", option, value)
    assert result.exit_code == 1 and option in result.stderr
    assert not (tmp_path / "demo").exists()


# --- the local model's server and live capture ------------------------------------------------


def test_required_tool_choice_with_one_tool_names_it_for_llama_cpp() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    other = {"type": "function", "function": {"name": "g", "parameters": {"type": "object"}}}
    messages = [{"role": "user", "content": "hi"}]
    forced = to_llama_request(messages, [tool], {"tool_choice": "required"})
    assert forced["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    several = to_llama_request(messages, [tool, other], {"tool_choice": "required"})
    assert several["tool_choice"] == "required"  # llama.cpp cannot force one of several


def test_local_server_speaks_the_openai_api(fake_llm: FakeLLMHandle) -> None:
    """Any endpoint behind it (here the fake LLM, standing in for the local model)."""
    model = fake_llm.model_info("m1")
    with BackgroundServer(create_local_server(model)) as server, httpx.Client() as http:
        listed = http.get(f"{server.url}/v1/models").json()
        assert [m["id"] for m in listed["data"]] == ["m1"]
        body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
        answer = http.post(f"{server.url}/v1/chat/completions", json=body).json()
        assert answer["object"] == "chat.completion" and answer["model"] == "m1"
        assert answer["choices"][0]["message"]["role"] == "assistant"
        assert answer["usage"]["total_tokens"] == (
            answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]
        )
        sent = fake_llm.requests("m1")[-1]["body"]
        assert sent["temperature"] == 0  # params pass through
        streamed = http.post(f"{server.url}/v1/chat/completions", json={**body, "stream": True})
        assert streamed.status_code == 400 and "streaming" in streamed.json()["error"]["message"]
        empty = http.post(f"{server.url}/v1/chat/completions", json={"messages": []})
        assert empty.status_code == 400 and "messages" in empty.json()["error"]["message"]
        # The server answers with its own model, whatever the request names.
        other = http.post(f"{server.url}/v1/chat/completions", json={**body, "model": "x"})
        assert other.status_code == 200 and fake_llm.requests()[-1]["model"] == "m1"
        fake_llm.configure("m1", script=["400"])
        bad = {**body, "messages": [{"role": "user", "content": "refuse this"}]}
        refused = http.post(f"{server.url}/v1/chat/completions", json=bad)
    assert refused.status_code == 400  # the endpoint's error, OpenAI-shaped
    assert refused.json()["error"]["type"] == "bad_request"


def test_live_capture_records_every_request(
    fake_llm: FakeLLMHandle, store: Store, database_url: str, assay_home: Path
) -> None:
    lines = sample_lines(3)
    requests = [(line["metadata"]["bfcl_id"], line["request"]) for line in lines]
    seen: list[int] = []
    url, calls = send_live(
        fake_llm.model_info("m1"),
        requests,
        database_url=database_url,
        home=str(assay_home),
        on_call=lambda index, call: seen.append(index),
    )
    assert url.startswith("http://127.0.0.1:") and seen == [1, 2, 3]
    assert [c.bfcl_id for c in calls] == ["simple_python_0", "simple_python_1", "simple_python_2"]
    assert all(c.error is None and c.answer and c.answer.get("tool_calls") for c in calls)
    with store.session() as session:
        rows = session.scalars(select(Inference).order_by(Inference.started_at)).all()
        tags = session.execute(
            select(InferenceTag.value).where(InferenceTag.key == "bfcl_id")
        ).scalars()
        assert sorted(tags) == ["simple_python_0", "simple_python_1", "simple_python_2"]
    assert len(rows) == 3
    for row, line in zip(rows, lines, strict=True):
        assert row.environment == LIVE_ENVIRONMENT and row.task == "function-calling"
        assert row.success and row.status_code == 200 and row.model == "m1"
        assert row.request_body["messages"] == line["request"]["messages"]
        assert row.request_body["tool_choice"] == "required"
        assert row.response_body["choices"][0]["message"]["tool_calls"]
        assert "demo-no-key" not in json.dumps(row.request_body)


# --- the whole demo on the real bundled model (slow) -------------------------------------------


def _need_llama_cpp() -> None:
    """Skip without llama-cpp-python, except under CI, which must install it."""
    if importlib.util.find_spec("llama_cpp") is None:
        reason = "llama-cpp-python is not installed (pip install 'assay[local]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)


def _number(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the demo's output"
    return found.group(1)


@pytest.mark.slow
def test_the_demo_prints_what_it_stored(tmp_path: Path) -> None:
    _need_llama_cpp()
    home = tmp_path / "demo"
    user_db = tmp_path / "user.db"
    # The user's own settings: the demo must not touch them.
    env = {
        "ASSAY_HOME": str(tmp_path / "user-home"),
        "ASSAY_DATABASE_URL": f"sqlite:///{user_db}",
        "COLUMNS": "200",
    }
    result = _invoke("--rows", "6", "--live", "2", "--no-serve", "--home", str(home), env=env)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert not user_db.exists() and not (tmp_path / "user-home").exists()
    assert (home / MARKER).is_file()
    assert re.search(r"\[8/8\] Decide", out) and "http://" not in out.split("[8/8]")[1]

    with open_store(f"sqlite:///{home / 'assay.db'}", home) as store, store.session() as s:

        def count(*where: Any) -> int:
            return s.scalar(select(func.count()).select_from(Inference).where(*where)) or 0

        assert int(_number(r"production inferences: (\d+)", out)) == count(
            Inference.environment == "production"
        )
        assert count(Inference.environment == "production") == 250
        live = int(_number(r"live requests captured: (\d+)", out))
        assert live == count(Inference.environment == LIVE_ENVIRONMENT) == 2
        dataset = s.scalar(select(Dataset).where(Dataset.name == "bfcl-eval"))
        assert dataset is not None
        shown_rows = int(_number(r"eval dataset bfcl-eval: (\d+) rows", out))
        stored_rows = s.scalar(
            select(func.count()).select_from(DatasetRow).where(DatasetRow.dataset_id == dataset.id)
        )
        assert shown_rows == dataset.row_count == stored_rows == 6

        for run in s.scalars(select(Run)):
            line = _number(rf"(arm {re.escape(run.label)} \({run.role}\): .*)", out)
            generations = s.scalars(select(Generation).where(Generation.run_id == run.id)).all()
            judgments = s.scalars(
                select(Judgment).where(Judgment.generation_id.in_([g.id for g in generations]))
            ).all()
            scored = [j.score for j in judgments if j.status == "scored"]
            failed = sum(g.status == "generation_failed" for g in generations) + sum(
                j.status != "scored" for j in judgments
            )
            passed = sum(all(c["passed"] for c in j.checks or []) for j in judgments)
            assert len(generations) == 6
            assert f"{len(scored)} scored, {failed} failed" in line
            mean = f"mean {sum(scored) / len(scored):.2f}" if scored else "mean -"
            assert mean in line
            assert f"tool_call_match {passed}/{len(judgments)}" in line
            if run.role == "baseline":
                assert run.label == "captured" and passed == 6  # production answers pass

        verdict = s.scalars(select(Verdict)).one()
        shown = _number(r"verdict \(stored as verdict (\d+)\): (?:PASS|FAIL|INCONCLUSIVE)", out)
        assert int(shown) == verdict.id
        assert f"verdict (stored as verdict {verdict.id}): {verdict.decision}" in out
        for reason in verdict.reasons:
            assert reason in out
