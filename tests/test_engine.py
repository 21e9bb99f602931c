"""Run groups end to end: real HTTP to the fake LLM server, a real store, the CLI runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from assay.store import open_store
from assay.store.models import ResponseCache, Run
from tests_helpers import check_invariants as _invariants
from tests_helpers import write_rows

ROWS = 12


@pytest.fixture
def setup(cli: Any, fake_llm: Any, tmp_path: Path) -> Any:
    """An eval dataset, a rubric, three models on the fake server and an eval definition."""
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    assert cli("dataset", "import", str(data), "--name", "mult").exit_code == 0
    assert cli("rubric", "create", "right", "--template", "correctness").exit_code == 0
    for name in ("base", "cand", "judge"):
        result = cli(
            "model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name,
            "--price-input", "1", "--price-output", "2",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
    result = cli(
        "eval", "create", "e1", "--dataset", "mult", "--rubric", "right", "--judge", "judge",
        "--baseline", "base", "--candidate", "cand", "--sample-size", "10", "--seed", "7",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return cli


def test_run_start_show_rows_row(
    setup: Any, fake_llm: Any, database_url: str, assay_home: Path
) -> None:
    cli = setup
    result = cli("run", "start", "e1", "--max-concurrency", "4")
    assert result.exit_code == 0, result.stderr
    assert "Run group 1" in result.stdout
    counts = _invariants(database_url, assay_home)
    assert counts == {"generations": 20, "judgments": 20}
    # 10 generations per model, 20 judge calls, nothing repeated.
    assert fake_llm.stats("base")["ok"] == 10
    assert fake_llm.stats("cand")["ok"] == 10
    assert fake_llm.stats("judge")["ok"] == 20

    shown = json.loads(cli("run", "show", "1", "--json").stdout)
    assert shown["status"] == "completed"
    assert shown["sample_size"] == 10
    assert [r["model"] for r in shown["runs"]] == ["base", "cand"]
    for run in shown["runs"]:
        assert run["total"] == 10
        assert (
            run["scored"]
            + run["generation_failed"]
            + run["judge_failed"]
            + run["judge_unparseable"]
            == 10
        )
        assert run["scored"] == 10
        assert 1 <= run["mean_score"] <= 10
        assert sum(b["count"] for b in run["distribution"]) == run["scored"]
        assert run["cost_usd"] > 0 and run["judge_cost_usd"] > 0
        for key in ("median_score", "latency_ms_p50", "latency_ms_p90", "role", "status"):
            assert key in run
    assert shown["runs"][1]["paired_rows"] == 10
    assert shown["runs"][1]["mean_diff_vs_baseline"] is not None

    text = cli("run", "show", "1")
    assert text.exit_code == 0 and "base" in text.stdout and "cand" in text.stdout

    rows = json.loads(cli("run", "rows", "1", "--json", "--limit", "100").stdout)
    assert len(rows) == 20
    assert {r["model"] for r in rows} == {"base", "cand"}
    cand_rows = json.loads(cli("run", "rows", "1", "--model", "cand", "--json").stdout)
    assert len(cand_rows) == 10 and all(r["baseline_score"] is not None for r in cand_rows)
    low = json.loads(cli("run", "rows", "1", "--below", "5", "--json").stdout)
    assert all(r["score"] < 5 for r in low)
    regressions = json.loads(cli("run", "rows", "1", "--regressions", "--json").stdout)
    assert all(r["diff"] < 0 and r["model"] == "cand" for r in regressions)
    by_score = json.loads(cli("run", "rows", "1", "--sort", "score", "--json").stdout)
    scores = [r["score"] for r in by_score]
    assert scores == sorted(scores)

    position = rows[0]["row"]
    detail = json.loads(cli("run", "row", "1", str(position), "--json").stdout)
    assert detail["messages"][1]["content"] == f"What is {position} times 3?"
    assert [a["model"] for a in detail["arms"]] == ["base", "cand"]
    for arm in detail["arms"]:
        assert arm["output"]["role"] == "assistant"
        assert arm["judgments"][0]["reasoning"]
    assert cli("run", "row", "1", str(position)).exit_code == 0

    listed = json.loads(cli("run", "list", "--json").stdout)
    assert [g["id"] for g in listed] == [1]


def test_same_rows_for_every_model_and_seeded(setup: Any, fake_llm: Any) -> None:
    cli = setup
    assert cli("run", "start", "e1").exit_code == 0
    assert cli("run", "start", "e1").exit_code == 0
    seen = {}
    for model in ("base", "cand"):
        prompts = [r["body"]["messages"][1]["content"] for r in fake_llm.requests(model)]
        seen[model] = sorted(set(prompts))
    assert seen["base"] == seen["cand"]
    assert len(seen["base"]) == 10
    # The second group hit the response cache: no new generation calls.
    assert fake_llm.stats("base")["ok"] == 10
    second = json.loads(cli("run", "rows", "2", "--json", "--limit", "100").stdout)
    first = json.loads(cli("run", "rows", "1", "--json", "--limit", "100").stdout)
    assert [(r["row"], r["score"]) for r in first] == [(r["row"], r["score"]) for r in second]


def test_failures_are_counted_never_scored(
    setup: Any, fake_llm: Any, database_url: str, assay_home: Path
) -> None:
    cli = setup
    fake_llm.configure("cand", rate_500=1.0, retry_after="0")
    fake_llm.configure("judge", judge_mode="out_of_range")
    result = cli("run", "start", "e1", "--max-attempts", "2")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(cli("run", "show", "1", "--json").stdout)
    base, cand = shown["runs"]
    assert cand["generation_failed"] == 10 and cand["scored"] == 0
    assert cand["mean_score"] is None and cand["status"] == "failed"
    assert base["judge_unparseable"] == 10 and base["scored"] == 0
    assert base["mean_score"] is None
    _invariants(database_url, assay_home)
    failed = json.loads(cli("run", "rows", "1", "--status", "failed", "--json").stdout)
    assert len(failed) == 20 and all(r["score"] is None for r in failed)
    detail = json.loads(cli("run", "row", "1", str(failed[0]["row"]), "--json").stdout)
    cand_arm = next(a for a in detail["arms"] if a["model"] == "cand")
    assert "server_error" in cand_arm["error"]
    base_arm = next(a for a in detail["arms"] if a["model"] == "base")
    assert base_arm["judgments"][0]["raw_output"]

    # Fix the world, then --retry-failed redoes exactly the failed rows.
    fake_llm.configure("cand", rate_500=0.0)
    fake_llm.configure("judge", judge_mode="json")
    assert cli("run", "resume", "1", "--retry-failed").exit_code == 0
    shown = json.loads(cli("run", "show", "1", "--json").stdout)
    assert [r["scored"] for r in shown["runs"]] == [10, 10]
    assert _invariants(database_url, assay_home) == {"generations": 20, "judgments": 20}


def test_captured_outputs_as_baseline(cli: Any, fake_llm: Any, tmp_path: Path) -> None:
    data = write_rows(tmp_path / "rows.jsonl", rows=5)
    cli("dataset", "import", str(data), "--name", "mult")
    cli("rubric", "create", "right", "--template", "correctness")
    for name in ("cand", "judge"):
        cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name)
    result = cli(
        "eval", "create", "e2", "--dataset", "mult", "--rubric", "right", "--judge", "judge",
        "--candidate", "cand", "--with-captured",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert cli("run", "start", "e2").exit_code == 0
    shown = json.loads(cli("run", "show", "1", "--json").stdout)
    captured, cand = shown["runs"]
    assert captured["model"] == "captured" and captured["role"] == "baseline"
    assert captured["scored"] == 5 and captured["cost_usd"] == 0
    assert cand["paired_rows"] == 5
    # Captured outputs are judged, never generated.
    judged = [r["body"]["messages"][1]["content"] for r in fake_llm.requests("judge")]
    assert any("<<<RESPONSE_UNDER_TEST>>>\n3\n" in m or "\n3\n" in m for m in judged)


def test_judge_samples_keep_every_judgment(
    setup: Any, fake_llm: Any, database_url: str, assay_home: Path
) -> None:
    cli = setup
    assert cli("run", "start", "e1", "--judge-samples", "3", "--sample-size", "4").exit_code == 0
    assert _invariants(database_url, assay_home) == {"generations": 8, "judgments": 24}
    assert fake_llm.stats("judge")["ok"] == 24


def test_rejudge_uses_stored_outputs(setup: Any, fake_llm: Any, tmp_path: Path) -> None:
    cli = setup
    assert cli("run", "start", "e1").exit_code == 0
    template = tmp_path / "v2.jinja"
    template.write_text("Rate the answer.\n{{ eval_model_response }}\n")
    assert cli("rubric", "edit", "right", "--file", str(template)).exit_code == 0
    result = cli("run", "rejudge", "1", "--rubric-version", "2")
    assert result.exit_code == 0, result.stderr
    assert fake_llm.stats("base")["ok"] == 10  # no new generation
    assert fake_llm.stats("judge")["ok"] == 40
    shown = json.loads(cli("run", "show", "2", "--json").stdout)
    assert shown["rubric_version"] == 2
    assert [r["scored"] for r in shown["runs"]] == [10, 10]
    again = cli("run", "rejudge", "1", "--rubric-version", "1")
    assert again.exit_code == 1 and "already judged" in again.stderr


def test_eval_validation(setup: Any, tmp_path: Path) -> None:
    cli = setup
    cases = [
        (["--dataset", "nope"], "no dataset named 'nope'"),
        (["--judge", "nobody"], "no model named 'nobody'"),
        (["--sample-size", "99"], "larger than dataset 'mult' (12 rows)"),
        (["--rubric-version", "9"], "has no version 9"),
    ]
    base = {"--dataset": "mult", "--rubric": "right", "--judge": "judge", "--baseline": "base",
            "--candidate": "cand"}  # fmt: skip
    for override, message in cases:
        args = dict(base)
        args.update(dict(zip(override[::2], override[1::2], strict=True)))
        flat = [x for pair in args.items() for x in pair]
        result = cli("eval", "create", "bad", *flat)
        assert result.exit_code == 1, override
        assert message in result.stderr, (override, result.stderr)
    dup = cli("eval", "create", "e1", *[x for p in base.items() for x in p])
    assert dup.exit_code == 1 and "already exists" in dup.stderr
    same = cli("eval", "create", "e3", *[x for p in base.items() for x in p][:-1], "base")
    assert same.exit_code == 1 and "repeated: base" in same.stderr
    training = tmp_path / "t.jsonl"
    write_rows(training, 3)
    cli("dataset", "import", str(training), "--name", "train", "--type", "training")
    wrong = cli("eval", "create", "e4", "--dataset", "train", "--rubric", "right", "--judge",
                "judge", "--baseline", "base", "--candidate", "cand")  # fmt: skip
    assert wrong.exit_code == 1 and "evals need an eval dataset" in wrong.stderr
    listed = json.loads(cli("eval", "list", "--json").stdout)
    assert [e["name"] for e in listed] == ["e1"]
    shown = json.loads(cli("eval", "show", "e1", "--json").stdout)
    assert shown["candidates"] == ["cand"] and shown["sample_size"] == 10


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(
    setup: Any, fake_llm: Any, database_url: str, assay_home: Path
) -> None:
    """Kill the engine outright mid-run; resume finishes with exactly one of everything."""
    cli = setup
    fake_llm.configure("*", latency_ms=150)
    env = {**os.environ, "ASSAY_DATABASE_URL": database_url, "ASSAY_HOME": str(assay_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "assay.cli", "run", "start", "e1", "--max-concurrency", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _invariants(database_url, assay_home)["judgments"] >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _invariants(database_url, assay_home)
    assert 0 < before["judgments"] < 20
    shown = json.loads(cli("run", "show", "1", "--json").stdout)
    assert shown["status"] == "interrupted"

    fake_llm.configure("*", latency_ms=0)
    result = cli("run", "resume", "1")
    assert result.exit_code == 0, result.stderr
    assert _invariants(database_url, assay_home) == {"generations": 20, "judgments": 20}
    calls_after = fake_llm.stats()["models"]
    total_calls = sum(calls_after[m]["ok"] for m in calls_after)
    # 40 results are stored; the calls paid twice are those in flight when the process died
    # plus results not yet flushed: each bounded by the concurrency (2 here).
    assert 0 <= total_calls - 40 <= 2 * 2
    with open_store(database_url, home=assay_home) as store, store.session() as s:
        assert set(s.scalars(select(Run.status))) == {"completed"}
        assert s.scalar(select(func.count()).select_from(ResponseCache)) > 0


def test_sigint_cancels_cleanly_and_resume_finishes(
    setup: Any, fake_llm: Any, database_url: str, assay_home: Path
) -> None:
    cli = setup
    fake_llm.configure("*", latency_ms=100)
    env = {**os.environ, "ASSAY_DATABASE_URL": database_url, "ASSAY_HOME": str(assay_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "assay.cli", "run", "start", "e1", "--max-concurrency", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _invariants(database_url, assay_home)["judgments"] < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "assay run resume 1" in stderr
    shown = json.loads(cli("run", "show", "1", "--json").stdout)
    assert shown["status"] == "cancelled"
    assert {r["status"] for r in shown["runs"]} == {"cancelled"}
    fake_llm.configure("*", latency_ms=0)
    assert cli("run", "resume", "1").exit_code == 0
    assert _invariants(database_url, assay_home) == {"generations": 20, "judgments": 20}
    assert json.loads(cli("run", "show", "1", "--json").stdout)["status"] == "completed"


def test_missing_api_key_fails_before_any_call(
    setup: Any, fake_llm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = setup
    monkeypatch.delenv("ASSAY_TEST_JUDGE_KEY", raising=False)
    cli("model", "add", "keyed", "--base-url", fake_llm.base_url, "--model-id", "keyed",
        "--api-key-env", "ASSAY_TEST_JUDGE_KEY")  # fmt: skip
    cli("eval", "create", "e5", "--dataset", "mult", "--rubric", "right", "--judge", "keyed",
        "--baseline", "base", "--candidate", "cand")  # fmt: skip
    result = cli("run", "start", "e5")
    assert result.exit_code == 1
    assert "ASSAY_TEST_JUDGE_KEY is not set" in result.stderr
    assert fake_llm.stats()["models"] == {}
    assert json.loads(cli("run", "list", "--json").stdout) == []
