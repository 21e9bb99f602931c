"""``assay dataset ...`` as a user runs it: output, exit codes, and what is (not) written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assay.datasets import importer
from conftest import Cli
from tests_helpers import chat, write

DATA = Path(__file__).parent / "data" / "datasets"
DATASET_FIELDS = [
    "id", "name", "type", "provenance", "source", "source_format", "row_format",
    "row_count", "duplicate_count", "filter", "created_at",
]  # fmt: skip
ROW_FIELDS = [
    "id",
    "position",
    "messages",
    "tools",
    "reference",
    "params",
    "metadata",
    "content_hash",
]


def ok(cli: Cli, *args: str, input: str | None = None) -> Any:
    """Run a command that must succeed; parse its stdout as JSON when ``--json`` is given."""
    result = cli(*args, input=input)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else result


def names(cli: Cli) -> list[str]:
    return [d["name"] for d in ok(cli, "dataset", "list", "--json")]


def rows(cli: Cli, name: str) -> list[dict[str, Any]]:
    return ok(cli, "dataset", "rows", name, "--limit", "1000", "--json")


# --- import ------------------------------------------------------------------------------------


def test_import_prints_a_summary_and_stores_the_rows(cli: Cli) -> None:
    result = ok(cli, "dataset", "import", str(DATA / "chat_rich.jsonl"), "--name", "support")
    assert result.stdout.strip() == (
        "Imported 6 rows into eval dataset 'support' from chat_rich.jsonl (chat format)."
    )
    assert result.stderr == ""
    stored = rows(cli, "support")
    assert [r["position"] for r in stored] == list(range(6))
    assert stored[0]["metadata"]["id"] == "faq-1"


def test_import_reports_skipped_lines_duplicates_and_truncation(cli: Cli, tmp_path: Path) -> None:
    lines: list[Any] = [chat(1), chat(1, "Again.")]
    lines += [{"messages": [{"role": "robot", "content": "x"}]}] * 12
    lines += [chat(2), chat(3)]
    path = write(tmp_path / "f.jsonl", lines)
    result = ok(cli, "dataset", "import", str(path), "--name", "d", "--limit", "3")
    assert "Imported 3 rows into eval dataset 'd' from f.jsonl (chat format)." in result.stdout
    assert "Warning: skipped 12 invalid lines:" in result.stderr
    assert "  line 3: messages[0].role: 'robot' is not a valid role" in result.stderr
    assert "  line 12:" in result.stderr and "  line 13:" not in result.stderr
    assert "  ... and 2 more" in result.stderr
    assert "1 row repeat an earlier row (same content hash); re-import with --dedupe" in (
        result.stderr
    )
    assert "Stopped after 3 rows (--limit 3); the rest was not read." in result.stderr

    deduped = ok(cli, "dataset", "import", str(path), "--name", "e", "--dedupe", "--json")
    assert (deduped["rows_imported"], deduped["duplicates_dropped"]) == (3, 1)
    assert deduped["lines_skipped"] == 12 and len(deduped["errors"]) == 10
    assert deduped["errors"][0] == {
        "line": 3,
        "reason": "messages[0].role: 'robot' is not a valid role "
        "(expected system, developer, user, assistant, tool)",
    }
    assert list(deduped["dataset"]) == DATASET_FIELDS
    assert set(deduped) == {
        "dataset", "rows_imported", "lines_read", "lines_skipped", "errors",
        "duplicates", "duplicates_dropped", "truncated",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "Error: f.jsonl is empty: expected one JSON object per line"),
        (
            b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n',
            "Error: no valid rows in f.jsonl (1 line rejected):\n  line 1: not valid UTF-8 "
            "(byte 0xe9 at column 47); save the file as UTF-8",
        ),
        (
            b"id,prompt\n1,hello\n",
            "Error: no valid rows in f.jsonl (all 2 lines rejected):\n  line 1: not valid JSON",
        ),
        (
            b'{"prompt": "hello"}\n',
            "line 1: missing 'messages' (chat format) or 'request' (source-backed format)",
        ),
        (
            b'{"request": {"model": "gpt-4o"}, "response": null}\n',
            "line 1: request: missing 'messages'",
        ),
        (
            b'{"messages": [{"role": "human", "content": "hi"}]}\n',
            "line 1: messages[0].role: 'human' is not a valid role (expected system, developer, "
            "user, assistant, tool)",
        ),
        (
            b'{"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}]}\n',
            "line 1: messages[1]: a tool message needs a 'tool_call_id' (the id of the "
            "assistant tool call it answers)",
        ),
        (
            b'{"messages": [{"role": "user", "content": "q"}]}\n'
            b'{"request": {"messages": [{"role": "user", "content": "q"}]}, "response": null}\n',
            'Error: f.jsonl mixes formats: line 1 is chat ({"messages": ...}) but line 2 is '
            'source-backed ({"request": ...}); a file must use one format',
        ),
    ],
)
def test_bad_files_are_clear_errors_and_write_nothing(
    cli: Cli, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    result = cli("dataset", "import", str(path), "--name", "d")
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stdout == ""
    assert names(cli) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "test"], "Error: unknown dataset type 'test' (expected eval or training)"),
        (["--limit", "20000"], "Error: --limit 20,000 is above the maximum of 10,000 rows"),
        (["--limit", "0"], "Error: --limit must be at least 1, got 0"),
    ],
)  # fmt: skip
def test_bad_options_are_clear_errors(
    cli: Cli, tmp_path: Path, args: list[str], message: str
) -> None:
    path = write(tmp_path / "f.jsonl", [chat(1)])
    result = cli("dataset", "import", str(path), "--name", "d", *args)
    assert result.exit_code == 1 and result.stderr.startswith(message)
    assert names(cli) == []


def test_missing_file_taken_name_and_row_limit(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli("dataset", "import", str(tmp_path / "nope.jsonl"), "--name", "d")
    assert result.exit_code == 1 and "Error: file not found: " in result.stderr

    monkeypatch.setattr(importer, "MAX_EVAL_ROWS", 3)
    four = write(tmp_path / "four.jsonl", [chat(i) for i in range(4)])
    result = cli("dataset", "import", str(four), "--name", "d")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: four.jsonl has more than 3 valid rows, the maximum for an eval dataset; "
        "import the first ones with --limit 3 or --type training"
    )
    assert names(cli) == []

    ok(cli, "dataset", "import", str(four), "--name", "d", "--type", "training")
    result = cli("dataset", "import", str(DATA / "anthropic.jsonl"), "--name", "d")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: a dataset named 'd' already exists; choose another --name or delete it first "
        "(`assay dataset delete d`)"
    )
    assert names(cli) == ["d"] and len(rows(cli, "d")) == 4


# --- list, show, rows ---------------------------------------------------------------------------


def test_list_show_and_rows_have_stable_json_fields(cli: Cli) -> None:
    ok(cli, "dataset", "import", str(DATA / "anthropic.jsonl"), "--name", "claude")
    ok(cli, "dataset", "import", str(DATA / "chat_rich.jsonl"), "--name", "chat", "-t", "training")
    listed = ok(cli, "dataset", "list", "--json")
    assert [list(d) for d in listed] == [DATASET_FIELDS, DATASET_FIELDS]
    assert [d["name"] for d in listed] == ["chat", "claude"]
    assert [d["name"] for d in ok(cli, "dataset", "list", "--type", "eval", "--json")] == ["claude"]

    shown = ok(cli, "dataset", "show", "claude", "--json")
    assert shown == listed[1]
    assert {
        k: shown[k] for k in ("type", "provenance", "source", "source_format", "row_count")
    } == {
        "type": "eval",
        "provenance": "upload",
        "source": "anthropic.jsonl",
        "source_format": "source",
        "row_count": 4,
    }
    assert shown["created_at"].endswith("Z") and shown["duplicate_count"] == 0

    page = ok(cli, "dataset", "rows", "claude", "--limit", "2", "--offset", "1", "--json")
    assert [list(r) for r in page] == [ROW_FIELDS, ROW_FIELDS]
    assert [r["position"] for r in page] == [1, 2]
    assert page[0]["params"]["tool_choice"] == {"type": "auto"}


def test_human_output_of_list_show_and_rows(cli: Cli) -> None:
    assert "No datasets yet." in cli("dataset", "list").stderr
    ok(cli, "dataset", "import", str(DATA / "chat_rich.jsonl"), "--name", "support")
    listing = ok(cli, "dataset", "list").stdout
    assert "support" in listing and "chat_rich.jsonl" in listing and "upload" in listing
    shown = ok(cli, "dataset", "show", "support").stdout
    assert "provenance" in shown and "duplicates" in shown and "chat_rich.jsonl" in shown
    table = ok(cli, "dataset", "rows", "support", "--limit", "2").stdout
    assert "user: How do I reset my password?" in table
    assert "tool: " in table and "assistant: Order A123 has shipped" in table


def test_unknown_dataset_points_to_the_list(cli: Cli) -> None:
    ok(cli, "dataset", "import", str(DATA / "chat_rich.jsonl"), "--name", "support")
    for command in (["show", "suport"], ["rows", "suport"], ["delete", "suport", "--yes"]):
        result = cli("dataset", *command)
        assert result.exit_code == 1
        assert result.stderr.strip() == (
            "Error: no dataset named 'suport'; did you mean 'support'? (see `assay dataset list`)"
        )


# --- export, delete -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["chat", "source"])
def test_export_reimports_to_identical_rows(cli: Cli, tmp_path: Path, fmt: str) -> None:
    ok(cli, "dataset", "import", str(DATA / "anthropic.jsonl"), "--name", "orig")
    out = tmp_path / "out.jsonl"
    result = ok(cli, "dataset", "export", "orig", "--format", fmt, "-o", str(out))
    assert f"Exported 4 rows of 'orig' to {out} ({fmt} format)." in result.stderr
    ok(cli, "dataset", "import", str(out), "--name", "copy")

    def without_ids(name: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "id"} for r in rows(cli, name)]

    assert without_ids("copy") == without_ids("orig")


def test_export_refuses_to_overwrite_without_force(cli: Cli, tmp_path: Path) -> None:
    ok(cli, "dataset", "import", str(DATA / "openai_source.jsonl"), "--name", "d")
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    result = cli("dataset", "export", "d", "--format", "source", "-o", str(out))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {out} already exists; use --force to overwrite it"
    assert out.read_text() == "keep me\n"
    result = cli("dataset", "export", "d", "--format", "jsonl", "-o", str(out), "--force")
    assert result.exit_code == 1 and "unknown export format 'jsonl'" in result.stderr
    ok(cli, "dataset", "export", "d", "--format", "source", "-o", str(out), "--force")
    assert len(out.read_text().splitlines()) == 3


def test_delete_asks_for_confirmation(cli: Cli, tmp_path: Path) -> None:
    ok(cli, "dataset", "import", str(DATA / "chat_rich.jsonl"), "--name", "support")
    declined = cli("dataset", "delete", "support", input="n\n")
    assert declined.exit_code == 1
    assert "Delete eval dataset 'support' and its 6 rows?" in declined.stdout
    assert names(cli) == ["support"]
    confirmed = ok(cli, "dataset", "delete", "support", input="y\n")
    assert "Deleted dataset 'support' (6 rows)." in confirmed.stderr
    assert names(cli) == []
    ok(cli, "dataset", "import", str(DATA / "chat_rich.jsonl"), "--name", "again")
    ok(cli, "dataset", "delete", "again", "--yes")
    assert names(cli) == []
