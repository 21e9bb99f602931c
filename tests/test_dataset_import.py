"""Importing, browsing, exporting and deleting datasets through the service, on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from assay.datasets import (
    dataset_rows,
    delete_dataset,
    export_dataset,
    get_dataset,
    import_dataset,
    importer,
    iter_rows,
    list_datasets,
)
from assay.datasets import export as export_module
from assay.errors import (
    AlreadyExistsError,
    ImportFileError,
    LimitExceededError,
    NotFoundError,
    ValidationError,
)
from assay.store import Store
from assay.store.models import Dataset, DatasetRow
from tests_helpers import chat, write

DATA = Path(__file__).parent / "data" / "datasets"
ROW_FIELDS = ("position", "messages", "tools", "reference", "params", "metadata", "content_hash")


def counts(store: Store) -> tuple[int, int]:
    """(datasets, dataset rows) in the whole database: how we know nothing was written."""
    with store.engine.connect() as conn:
        datasets = conn.execute(select(func.count()).select_from(Dataset)).scalar_one()
        rows = conn.execute(select(func.count()).select_from(DatasetRow)).scalar_one()
    return datasets, rows


def stored(store: Store, name: str) -> list[dict[str, Any]]:
    return [row.model_dump(include=set(ROW_FIELDS)) for row in iter_rows(store, name)]


# --- importing ---------------------------------------------------------------------------------


def test_import_stores_rows_in_order_with_dataset_info(store: Store) -> None:
    report = import_dataset(store, DATA / "chat_rich.jsonl", "support")
    info = report.dataset
    assert (report.rows_imported, report.lines_read, report.lines_skipped) == (6, 6, 0)
    assert (report.duplicates, report.duplicates_dropped, report.truncated) == (0, 0, False)
    assert (info.name, info.type, info.provenance) == ("support", "eval", "upload")
    assert (info.source, info.source_format, info.row_count) == ("chat_rich.jsonl", "chat", 6)
    assert get_dataset(store, "support") == info
    assert [d.name for d in list_datasets(store)] == ["support"]
    rows = stored(store, "support")
    assert [r["position"] for r in rows] == list(range(6))
    assert rows[0]["metadata"] == {"task": "faq", "lang": "en", "id": "faq-1"}
    assert rows[1]["tools"][0]["function"]["name"] == "lookup_order"
    assert rows[2]["params"] == {"model": "gpt-4o-mini", "temperature": 0.2}
    assert rows[4]["reference"] is None
    # Absent values are SQL NULL (not the JSON value null), so IS NULL filters work.
    t = DatasetRow.__table__
    with store.engine.connect() as conn:
        nulls = select(func.count()).select_from(t)
        assert conn.execute(nulls.where(t.c.reference.is_(None))).scalar_one() == 2
        assert conn.execute(nulls.where(t.c.tools.is_(None))).scalar_one() == 4
        assert conn.execute(nulls.where(t.c.params.is_(None))).scalar_one() == 5


def test_invalid_lines_are_skipped_and_the_first_reasons_reported(
    store: Store, tmp_path: Path
) -> None:
    lines: list[Any] = [chat(0)]
    lines += [{"messages": [{"role": "robot", "content": "x"}]}] * 12
    lines += ["", "not json", chat(1)]
    report = import_dataset(store, write(tmp_path / "f.jsonl", lines), "d")
    assert (report.rows_imported, report.lines_skipped, report.lines_read) == (2, 13, 16)
    assert len(report.errors) == importer.MAX_REPORTED_ERRORS
    assert report.errors[0].line == 2
    assert "messages[0].role: 'robot' is not a valid role" in report.errors[0].reason
    assert counts(store) == (1, 2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "f.jsonl is empty"),
        (b"\n  \n\n", "f.jsonl is empty"),
        ("caf\u00e9\n".encode("utf-16"), "f.jsonl is UTF-16 encoded; save it as UTF-8"),
        (b'{"messages": "caf\xe9"}\n', "line 1: not valid UTF-8 (byte 0xe9 at column 18)"),
        (b"hello\n[1]\n", "line 1: not valid JSON"),
        (b'{"prompt": "x"}\n', "line 1: missing 'messages' (chat format) or 'request'"),
        (b'{"messages": [{"role": "bot", "content": "x"}]}\n', "'bot' is not a valid role"),
        (
            b'{"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}]}',
            "line 1: messages[1]: a tool message needs a 'tool_call_id'",
        ),
    ],
)
def test_a_file_without_any_valid_line_writes_nothing(
    store: Store, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    with pytest.raises(ImportFileError) as info:
        import_dataset(store, path, "d")
    assert message in str(info.value)
    assert counts(store) == (0, 0)


def test_no_valid_rows_message_lists_reasons_and_counts_the_rest(
    store: Store, tmp_path: Path
) -> None:
    path = write(tmp_path / "bad.jsonl", ["nope"] * 14)
    with pytest.raises(ImportFileError) as info:
        import_dataset(store, path, "d")
    message = str(info.value)
    assert message.startswith("no valid rows in bad.jsonl (all 14 lines rejected):")
    assert "line 10: not valid JSON" in message and "line 11" not in message
    assert message.endswith("... and 4 more")


def test_missing_file_and_bad_arguments_are_clear_errors(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match=r"file not found: .*missing\.jsonl"):
        import_dataset(store, tmp_path / "missing.jsonl", "d")
    path = write(tmp_path / "f.jsonl", [chat(0)])
    with pytest.raises(ValidationError, match="unknown dataset type 'test'"):
        import_dataset(store, path, "d", "test")
    with pytest.raises(ValidationError, match="--limit must be at least 1"):
        import_dataset(store, path, "d", limit=0)
    with pytest.raises(ValidationError, match="a dataset needs a name"):
        import_dataset(store, path, "  ")
    assert counts(store) == (0, 0)


def test_mixed_formats_fail_the_whole_file_even_after_rows_were_inserted(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH_ROWS", 2)  # rows 1-4 reach the database first
    source = {"request": {"messages": [{"role": "user", "content": "q"}]}, "response": None}
    path = write(tmp_path / "mixed.jsonl", ["oops", chat(1), chat(2), chat(3), chat(4), source])
    with pytest.raises(ImportFileError) as info:
        import_dataset(store, path, "d")
    assert str(info.value) == (
        'mixed.jsonl mixes formats: line 2 is chat ({"messages": ...}) but line 6 is '
        'source-backed ({"request": ...}); a file must use one format'
    )
    assert counts(store) == (0, 0)


def test_a_taken_name_is_refused_and_the_existing_dataset_kept(
    store: Store, tmp_path: Path
) -> None:
    path = write(tmp_path / "f.jsonl", [chat(0), chat(1)])
    import_dataset(store, path, "d")
    with pytest.raises(AlreadyExistsError, match="a dataset named 'd' already exists"):
        import_dataset(store, DATA / "anthropic.jsonl", "d", "training")
    assert counts(store) == (1, 2)
    assert get_dataset(store, "d").type == "eval"


# --- limits --------------------------------------------------------------------------------------


def test_row_limit_per_type_is_an_error_unless_limit_asks_for_a_part(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "MAX_EVAL_ROWS", 5)
    monkeypatch.setattr(importer, "MAX_TRAINING_ROWS", 7)
    monkeypatch.setattr(importer, "BATCH_ROWS", 2)
    six = write(tmp_path / "six.jsonl", [chat(i) for i in range(6)])
    with pytest.raises(LimitExceededError) as info:
        import_dataset(store, six, "d")
    assert str(info.value) == (
        "six.jsonl has more than 5 valid rows, the maximum for an eval dataset; import the "
        "first ones with --limit 5 or --type training"
    )
    with pytest.raises(LimitExceededError, match="--limit 6 is above the maximum of 5 rows"):
        import_dataset(store, six, "d", limit=6)
    assert counts(store) == (0, 0)

    assert import_dataset(store, six, "training", "training").rows_imported == 6
    truncated = import_dataset(store, six, "part", limit=3)
    assert (truncated.rows_imported, truncated.truncated, truncated.lines_read) == (3, True, 4)
    exact = import_dataset(store, six, "exact", "training", limit=6)
    assert (exact.rows_imported, exact.truncated) == (6, False)
    five = write(tmp_path / "five.jsonl", [chat(i) for i in range(5)] + ["bad line"])
    assert import_dataset(store, five, "full").rows_imported == 5
    eight = write(tmp_path / "eight.jsonl", [chat(i) for i in range(8)])
    with pytest.raises(LimitExceededError, match="maximum for a training dataset; import the"):
        import_dataset(store, eight, "too-many", "training")
    assert counts(store) == (4, 6 + 3 + 6 + 5)


def test_the_real_million_line_limit_counts_physical_lines(store: Store, tmp_path: Path) -> None:
    """Blank lines make a 1,000,001-line file without generating a gigabyte."""
    assert importer.MAX_FILE_LINES == 1_000_000
    row = orjson.dumps(chat(0)) + b"\n"
    padding = b"\n" * (importer.MAX_FILE_LINES - 2)
    at_limit = tmp_path / "at.jsonl"
    at_limit.write_bytes(row + padding + orjson.dumps(chat(1)) + b"\n")  # row on line 1,000,000
    assert import_dataset(store, at_limit, "ok").rows_imported == 2
    over = tmp_path / "over.jsonl"
    over.write_bytes(row + padding + b"\n" + orjson.dumps(chat(1)) + b"\n")  # line 1,000,001
    with pytest.raises(LimitExceededError, match=r"over\.jsonl has more than 1,000,000 lines"):
        import_dataset(store, over, "too-long")
    assert counts(store) == (1, 2)


# --- duplicates ----------------------------------------------------------------------------------


def test_duplicates_are_counted_or_dropped_across_batches(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH_ROWS", 2)
    spaced = {"messages": [{"role": "user", "content": " Question  1? "}, chat(9)["messages"][1]]}
    lines = [chat(1), chat(2), chat(1, answer="Other."), chat(3), spaced, chat(2)]
    path = write(tmp_path / "dups.jsonl", lines)
    kept = import_dataset(store, path, "kept")
    assert (kept.rows_imported, kept.duplicates, kept.duplicates_dropped) == (6, 3, 0)
    assert get_dataset(store, "kept").duplicate_count == 3

    deduped = import_dataset(store, path, "deduped", dedupe=True)
    assert (deduped.rows_imported, deduped.duplicates, deduped.duplicates_dropped) == (3, 0, 3)
    rows = stored(store, "deduped")
    assert [r["position"] for r in rows] == [0, 1, 2]
    assert [r["metadata"]["id"] for r in rows] == ["r1", "r2", "r3"]  # the first one wins
    assert get_dataset(store, "deduped").duplicate_count == 0


def test_dedupe_frees_room_under_the_row_limit(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "MAX_EVAL_ROWS", 3)
    path = write(tmp_path / "f.jsonl", [chat(1), chat(2), chat(1), chat(3), chat(2), chat(3)])
    with pytest.raises(LimitExceededError):
        import_dataset(store, path, "d")
    report = import_dataset(store, path, "d", dedupe=True)
    assert (report.rows_imported, report.duplicates_dropped, report.truncated) == (3, 3, False)


def test_progress_reports_bytes_read_up_to_the_file_size(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH_ROWS", 10)
    path = write(tmp_path / "f.jsonl", [chat(i) for i in range(35)])
    calls: list[tuple[int, int]] = []
    import_dataset(store, path, "d", progress=lambda done, total: calls.append((done, total)))
    size = path.stat().st_size
    assert len(calls) == 4 and all(total == size for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert calls[-1] == (size, size)


# --- browsing, exporting, deleting --------------------------------------------------------------


def test_rows_page_and_unknown_names_suggest_the_list(store: Store, tmp_path: Path) -> None:
    import_dataset(store, write(tmp_path / "f.jsonl", [chat(i) for i in range(5)]), "support")
    page = dataset_rows(store, "support", limit=2, offset=3)
    assert [(r.position, r.metadata["id"]) for r in page] == [(3, "r3"), (4, "r4")]
    with pytest.raises(ValidationError, match="--offset must be 0 or more"):
        dataset_rows(store, "support", offset=-1)
    with pytest.raises(NotFoundError) as info:
        get_dataset(store, "suport")
    assert str(info.value) == (
        "no dataset named 'suport'; did you mean 'support'? (see `assay dataset list`)"
    )


@pytest.mark.parametrize("fixture", ["chat_rich.jsonl", "anthropic.jsonl", "openai_source.jsonl"])
@pytest.mark.parametrize("fmt", ["chat", "source"])
def test_export_then_import_round_trips_to_identical_rows(
    store: Store, tmp_path: Path, fixture: str, fmt: str
) -> None:
    original = import_dataset(store, DATA / fixture, "original")
    out = tmp_path / f"out.{fmt}.jsonl"
    assert export_dataset(store, "original", out, fmt) == original.rows_imported
    again = import_dataset(store, out, "again")
    assert again.dataset.source_format == fmt
    assert (again.rows_imported, again.lines_skipped) == (original.rows_imported, 0)
    assert stored(store, "again") == stored(store, "original")
    second = tmp_path / "second.jsonl"
    export_dataset(store, "again", second, fmt)
    assert second.read_bytes() == out.read_bytes()


def test_export_refuses_to_overwrite_and_leaves_no_partial_file(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_dataset(store, write(tmp_path / "f.jsonl", [chat(i) for i in range(5)]), "d")
    out = tmp_path / "out" / "d.jsonl"
    out.parent.mkdir()
    out.write_text("precious\n")
    with pytest.raises(AlreadyExistsError, match=r"d.jsonl already exists; use --force"):
        export_dataset(store, "d", out, "chat")
    with pytest.raises(ValidationError, match="unknown export format 'csv'"):
        export_dataset(store, "d", out, "csv", force=True)

    seen: list[int] = []

    def failing(row: Any) -> dict[str, Any]:
        seen.append(row.position)
        if len(seen) == 3:
            raise OSError("disk full")
        return export_module.chat_line(row)

    monkeypatch.setitem(export_module._LINE_BUILDERS, "chat", failing)
    with pytest.raises(OSError, match="disk full"):
        export_dataset(store, "d", out, "chat", force=True)
    assert out.read_text() == "precious\n"
    assert [p.name for p in out.parent.iterdir()] == ["d.jsonl"]  # no temporary file left
    monkeypatch.undo()
    assert export_dataset(store, "d", out, "chat", force=True) == 5
    assert len(out.read_text().splitlines()) == 5


def test_delete_removes_the_dataset_and_its_rows(store: Store, tmp_path: Path) -> None:
    import_dataset(store, write(tmp_path / "a.jsonl", [chat(1), chat(2)]), "a")
    import_dataset(store, write(tmp_path / "b.jsonl", [chat(3)]), "b", "training")
    assert [d.name for d in list_datasets(store, "training")] == ["b"]
    assert delete_dataset(store, "a").row_count == 2
    assert counts(store) == (1, 1)
    with pytest.raises(NotFoundError, match="no dataset named 'a'"):
        delete_dataset(store, "a")


# --- memory --------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import resource, sys
    from assay.datasets import import_dataset
    from assay.store import open_store
    url, home, path = sys.argv[1:4]
    with open_store(url, home=home) as store:
        report = import_dataset(store, path, path.rsplit("/", 1)[-1], "training")
    print(report.rows_imported, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """
)


def _generate(path: Path, rows: int) -> None:
    """~1.2 KB chat rows, every one distinct (the id is in the question)."""
    filler = "All work and no play makes a dull assistant. " * 12
    template = orjson.dumps(
        {
            "id": "ID",
            "messages": [
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": f"Question ID: {filler}"},
                {"role": "assistant", "content": filler},
            ],
            "metadata": {"task": "memory"},
        }
    )
    with path.open("wb", buffering=1 << 20) as out:
        for i in range(rows):
            out.write(template.replace(b"ID", str(i).encode()) + b"\n")


def _peak_rss_mb(database_url: str, home: Path, path: Path) -> tuple[int, int]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, database_url, str(home), str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    rows, peak = out.stdout.split()
    return int(rows), int(peak)


@pytest.mark.slow
def test_memory_stays_flat_on_a_large_file(tmp_path: Path) -> None:
    """Peak RSS importing ~120 MB vs a 10x smaller file, each measured in a child process.

    SQLite only, to keep the suite fast: the streaming is the importer's, shared by both
    backends (``bench/bench_import.py`` measures Postgres too).
    """
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    _generate(small, 10_000)
    _generate(large, 100_000)
    assert large.stat().st_size > 100e6
    url, home = f"sqlite:///{tmp_path / 'memory.db'}", tmp_path / "home"
    small_rows, small_peak = _peak_rss_mb(url, home, small)
    large_rows, large_peak = _peak_rss_mb(url, home, large)
    assert (small_rows, large_rows) == (10_000, 100_000)
    assert large_peak - small_peak < 60, f"peak RSS {small_peak} MB -> {large_peak} MB"
