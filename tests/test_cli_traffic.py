"""``assay traffic ...`` and ``assay dataset create/overlap`` as a user runs them.

Registration in the root app is the lead's; these tests mount the commands on a local app
with the same central error handling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from assay.cli import _AssayGroup, dataset, dataset_traffic, traffic
from assay.store import open_store
from assay.store.models import Dataset, DatasetRow, Inference
from conftest import Cli
from test_traffic import batch_input, batch_line
from tests_helpers import export_line, write

SUMMARY_FIELDS = [
    "id", "uid", "started_at", "environment", "task", "provider", "model", "path",
    "status_code", "success", "streamed", "duration_ms", "input_tokens", "output_tokens",
    "cost_usd", "error",
]  # fmt: skip


def _app() -> typer.Typer:
    root = typer.Typer(cls=_AssayGroup, add_completion=False, pretty_exceptions_enable=False)
    root.add_typer(traffic.app, name="traffic")
    group = typer.Typer()
    group.command("create")(dataset_traffic.create)
    group.command("overlap")(dataset_traffic.overlap)
    group.command("show")(dataset.show)
    root.add_typer(group, name="dataset")
    return root


APP = _app()


@pytest.fixture
def run(cli: Cli) -> Any:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(APP, list(args), env=cli.env, catch_exceptions=False)

    return invoke


def _count(model: Any) -> int:
    with open_store() as store, store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


@pytest.fixture
def log(tmp_path: Path) -> Path:
    lines = [export_line(i, environment="prod" if i % 2 else "staging") for i in range(12)]
    lines.append(export_line(50, response=None, error="upstream down", status_code=502))
    return write(tmp_path / "log.jsonl", lines)


def test_import_list_show_stats(run: Any, log: Path, tmp_path: Path) -> None:
    result = run("traffic", "import", str(log))
    assert result.exit_code == 0, result.stderr
    assert "Imported 13 inferences from log.jsonl" in result.stderr
    again = run("traffic", "import", str(log), "--json")
    assert json.loads(again.stdout)["already_present"] == 13

    listed = json.loads(run("traffic", "list", "--json", "--environment", "prod").stdout)
    assert len(listed) == 7 and list(listed[0]) == SUMMARY_FIELDS
    assert listed[0]["status_code"] == 502 and listed[0]["error"] == "upstream down"
    errors = json.loads(run("traffic", "list", "--json", "--status", "502").stdout)
    assert [e["success"] for e in errors] == [False]
    tagged = run("traffic", "list", "--json", "-m", "customer=c1", "--limit", "2").stdout
    assert len(json.loads(tagged)) == 2
    table = run("traffic", "list", "--since", "2026-01-01T00:10:00Z")
    assert table.exit_code == 0 and "502 error" in table.stdout and "gpt-a" in table.stdout

    shown = json.loads(run("traffic", "show", str(listed[1]["id"]), "--json").stdout)
    assert shown["request_body"]["messages"][1]["content"] == "Question 11?"
    assert shown["metadata"] == {"customer": "c1"}
    human = run("traffic", "show", str(listed[1]["id"]))
    assert "Answer 11." in human.stdout and "prompt_hash" in human.stdout

    stats = json.loads(run("traffic", "stats", "--json").stdout)
    assert [(s["task"], s["count"], s["errors"]) for s in stats] == [("support", 13, 1)]
    assert "7.7%" in run("traffic", "stats").stdout


def test_batch_import_with_requests(run: Any, tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", [batch_input(0)])
    out = write(tmp_path / "out.jsonl", [batch_line(0), "{oops"])
    result = run("traffic", "import", str(out), "--requests", str(requests), "--task", "batch")
    assert result.exit_code == 0
    assert "1 lines skipped" in result.stderr and "line 2: not valid JSON" in result.stderr
    (row,) = json.loads(run("traffic", "list", "--json", "--task", "batch").stdout)
    assert (row["model"], row["provider"], row["path"]) == (
        "gpt-b",
        "openai",
        "/v1/chat/completions",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["traffic", "list", "--status", "broken"], "--status: expected success, error or an"),
        (["traffic", "list", "--metadata", "novalue"], "--metadata: expected key=value"),
        (["traffic", "list", "--until", "soon"], "--until: expected a date or time"),
        (["traffic", "list", "--limit", "0"], "--limit must be at least 1"),
        (["traffic", "show", "999"], "no inference with id 999"),
        (["traffic", "import", "missing.jsonl"], "file not found: missing.jsonl"),
    ],
)
def test_bad_arguments(run: Any, args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 1
    assert f"Error: {message}" in result.stderr
    assert _count(Inference) == 0


def test_bad_import_file_writes_nothing(run: Any, tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.jsonl", [export_line(0), "[]"])
    bad.write_text(bad.read_text().replace('"request"', '"requests"'))
    result = run("traffic", "import", str(bad))
    assert result.exit_code == 1
    assert "Error: no valid inferences in bad.jsonl (2 lines rejected)" in result.stderr
    assert "line 2: expected a JSON object, got an empty array" in result.stderr
    assert _count(Inference) == 0


def test_dataset_create_from_traffic_and_overlap(run: Any, log: Path) -> None:
    assert run("traffic", "import", str(log)).exit_code == 0
    ev = run("dataset", "create", "ev", "--type", "eval", "--from-traffic",
             "--environment", "prod", "--sample", "3", "--seed", "1")  # fmt: skip
    assert ev.exit_code == 0, ev.stderr
    assert "Created eval dataset 'ev': 3 rows from 6 matching inferences" in ev.stderr
    shown = json.loads(run("dataset", "show", "ev", "--json").stdout)
    assert shown["filter"] == {"environment": "prod", "sample": 3, "seed": 1}
    assert shown["provenance"] == "traffic"

    tr = run("dataset", "create", "tr", "--type", "training", "--from-traffic",
             "-e", "prod", "--exclude", "ev", "--json")  # fmt: skip
    report = json.loads(tr.stdout)
    assert (report["rows"], report["overlap_removed"]) == (3, 3)
    assert "Warning: 50% of the matching rows were already in eval dataset 'ev'" in tr.stderr

    overlap = json.loads(run("dataset", "overlap", "ev", "tr", "--json").stdout)
    assert (overlap["a_rows"], overlap["b_rows"], overlap["a_in_b"]) == (3, 3, 0)
    assert "0.0%" in run("dataset", "overlap", "ev", "tr").stdout

    refused = run("dataset", "create", "t2", "--type", "training", "--from-traffic",
                  "-e", "prod", "--sample", "3", "--seed", "1", "--exclude", "tr")  # fmt: skip
    assert refused.exit_code == 1
    assert "--exclude tr: expected an eval dataset, it is training" in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x", "--type", "eval"],
         "`dataset create` builds from captured traffic: add --from-traffic"),
        (["x", "--type", "training", "--from-traffic"],
         "a training dataset must exclude an eval dataset"),
        (["x", "--type", "eval", "--from-traffic", "--status", "error"],
         "--status error: only successful requests enter a dataset"),
        (["x", "--type", "eval", "--from-traffic", "--limit", "20000"],
         "--limit 20,000 is above the maximum of 10,000 rows"),
        (["x", "--type", "eval", "--from-traffic", "--model", "none"],
         "no successful inferences match the filter"),
        (["x", "--type", "training", "--from-traffic", "--exclude", "nope"],
         "no dataset named 'nope'"),
    ],
)  # fmt: skip
def test_dataset_create_refusals_write_nothing(
    run: Any, log: Path, args: list[str], message: str
) -> None:
    assert run("traffic", "import", str(log)).exit_code == 0
    result = run("dataset", "create", *args)
    assert result.exit_code == 1
    assert f"Error: {message}" in result.stderr
    assert _count(Dataset) == 0 and _count(DatasetRow) == 0


def test_full_overlap_is_refused(run: Any, log: Path) -> None:
    assert run("traffic", "import", str(log)).exit_code == 0
    assert run("dataset", "create", "ev", "--type", "eval", "--from-traffic").exit_code == 0
    result = run("dataset", "create", "tr", "--type", "training", "--from-traffic",
                 "--exclude", "ev")  # fmt: skip
    assert result.exit_code == 1
    assert "all 12 matching rows are already in eval dataset 'ev' (100 % overlap)" in result.stderr
    assert _count(Dataset) == 1 and _count(DatasetRow) == 12
