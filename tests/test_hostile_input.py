"""Hostile input to the JSONL importers (reliability item 4, docs/reliability.md).

Property: whatever the bytes of a file, ``import_dataset`` and ``import_traffic`` either
succeed with a report that matches what was stored, or raise a documented ``AssayError``
having written nothing (row counts exactly as before). Random files mix arbitrary bytes, JSON
values of random shapes, valid rows with one random subtree replaced, invalid UTF-8, NUL
bytes, BOMs and CRLF. Then the named attacks, one test each: 10 MB strings, 10,000 levels of
nesting, and one regression test per bug these tests found.

Hypothesis runs the bulk on SQLite and a smaller sample on Postgres (both via ``store``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from assay.datasets import import_dataset, importer, iter_rows
from assay.datasets.formats import MAX_DEPTH
from assay.errors import AlreadyExistsError, AssayError, ImportFileError, ValidationError
from assay.store import Store, open_store
from assay.store.models import Dataset, DatasetRow, Inference, InferenceTag
from assay.traffic import get_inference, import_traffic, list_inferences
from tests_helpers import chat, export_line, write

TEN_MB = 10 * 1024 * 1024
_names = itertools.count()


@pytest.fixture
def sqlite_store(tmp_path: Path, assay_home: Path) -> Iterator[Store]:
    """SQLite only, for the many one-line cases; each attack also runs on both backends below."""
    with open_store(f"sqlite:///{tmp_path / 'one.db'}", home=assay_home) as opened:
        yield opened


def examples(store: Store, sqlite: int, postgres: int) -> Any:
    """Hypothesis settings for a test that shares one database across its examples."""
    return settings(
        max_examples=sqlite if store.engine.dialect.name == "sqlite" else postgres,
        deadline=None,
        database=None,  # no .hypothesis/ directory in the work tree
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def table_counts(store: Store) -> tuple[int, ...]:
    """Rows in every table an import writes: how we know a failed import wrote nothing."""
    with store.engine.connect() as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (Dataset, DatasetRow, Inference, InferenceTag)
        )


# --- strategies ------------------------------------------------------------------------------

KEYS = (
    "messages", "request", "response", "role", "content", "tool_calls", "tools", "function",
    "name", "arguments", "type", "text", "metadata", "params", "reference", "choices",
    "message", "system", "input_schema", "tool_call_id", "tool_use_id", "custom_id", "body",
    "status_code", "error", "created", "object", "usage", "prompt_tokens", "uid", "started_at",
    "model", "provider", "path", "method", "id", "source", "image_url", "url", "duration_ms",
    "refusal", "success", "environment", "task", "input", "tool_use",
)  # fmt: skip
WORDS = (
    "user", "assistant", "system", "tool", "developer", "text", "image", "tool_use",
    "tool_result", "thinking", "function", "message", "chat.completion", "base64", "",
    "\x00", "<<<END_RESPONSE_UNDER_TEST>>>", "2026-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-05:00", "x" * 300,
)  # fmt: skip
# orjson cannot encode lone surrogates; raw bytes below cover invalid encodings.
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(WORDS),
    _text,
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), _text), inner, max_size=5),
    ),
    max_leaves=25,
)

ANTHROPIC = {
    "request": {
        "model": "claude",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi?"}]}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    },
    "response": {
        "type": "message",
        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
    },
}
OPENAI_SOURCE = {
    "request": {"model": "gpt", "messages": [{"role": "user", "content": "Hi?"}]},
    "response": {"choices": [{"message": {"role": "assistant", "content": "Hello."}}]},
}
BATCH = {
    "id": "b1",
    "custom_id": "c1",
    "request": {"method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}},
    "response": {
        "status_code": 200,
        "body": {"object": "chat.completion", "created": 1767225600, "usage": {}},
    },
}
VALID = [chat(1), chat(2, "Yes."), ANTHROPIC, OPENAI_SOURCE, export_line(1), BATCH]


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """A valid line with one random subtree (possibly the whole line) replaced."""
    if isinstance(value, dict | list) and value and draw(st.booleans()):
        if isinstance(value, dict):
            key = draw(st.sampled_from(sorted(value)))
            return {**value, key: draw(mutated(value[key]))}
        index = draw(st.integers(0, len(value) - 1))
        return [*value[:index], draw(mutated(value[index])), *value[index + 1 :]]
    return draw(json_values)


@st.composite
def hostile_lines(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(["valid", "valid", "valid", "mutated", "random", "bytes", "damaged"])
    )
    if kind == "bytes":
        return draw(st.binary(max_size=120))
    if kind == "random":
        return orjson.dumps(draw(json_values))
    line = draw(st.sampled_from(VALID))
    line = orjson.dumps(draw(mutated(line)) if kind == "mutated" else line)
    if kind == "damaged":
        at = draw(st.integers(0, len(line)))
        junk = draw(st.sampled_from([b"\xff", b"\x00", b"\xef\xbb\xbf", b"\xc3", b"\\u0000", b""]))
        line = line[:at] + junk + line[at + draw(st.integers(0, 3)) :]
    return line


@st.composite
def hostile_files(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(hostile_lines(), min_size=1, max_size=10))
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    data = newline.join(lines) + draw(st.sampled_from([b"", newline]))
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return data


# --- properties: datasets --------------------------------------------------------------------


def check_dataset_import(store: Store, path: Path, data: bytes, name: str, type: str) -> None:
    """Import; on success the report matches the store, on failure nothing changed."""
    path.write_bytes(data)
    before = table_counts(store)
    try:
        report = import_dataset(store, path, name, type)
    except AssayError:
        assert table_counts(store) == before
        return
    after = table_counts(store)
    assert after[0] == before[0] + 1
    assert after[1] == before[1] + report.rows_imported
    assert report.rows_imported >= 1
    assert report.rows_imported + report.lines_skipped <= report.lines_read
    assert len(report.errors) == min(report.lines_skipped, importer.MAX_REPORTED_ERRORS)
    rows = list(iter_rows(store, report.dataset.name))  # what was stored reads back
    assert [row.position for row in rows] == list(range(report.rows_imported))


def test_any_file_imports_as_a_dataset_or_fails_writing_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches and a small row limit, so that failures also come after rows were
    # inserted in the import's transaction (a mixed format, a limit): they must roll back.
    monkeypatch.setattr(importer, "BATCH_ROWS", 2)
    monkeypatch.setattr(importer, "MAX_EVAL_ROWS", 4)
    names = st.one_of(
        st.builds(lambda: f"ds-{next(_names)}"),
        st.sampled_from(["ds-taken", " ", "x" * 201, "a\x00b", "a\ud800b", "\u202e\ufeff"]),
        _text,
    )

    @examples(store, sqlite=200, postgres=40)
    @given(hostile_files(), names, st.sampled_from(["eval", "training"]))
    def check(data: bytes, name: str, type: str) -> None:
        check_dataset_import(store, tmp_path / "in.jsonl", data, name, type)

    import_dataset(store, write(tmp_path / "taken.jsonl", [chat(0)]), "ds-taken")
    check()


# --- properties: traffic ---------------------------------------------------------------------


def check_traffic_import(store: Store, path: Path, data: bytes) -> None:
    path.write_bytes(data)
    before = table_counts(store)
    try:
        report = import_traffic(store, path)
    except AssayError:
        assert table_counts(store) == before
        return
    after = table_counts(store)
    assert after[2] == before[2] + report.inferences_imported
    assert report.inferences_imported + report.already_present >= 1
    assert report.inferences_imported + report.already_present + report.lines_skipped <= (
        report.lines_read
    )
    for inference in list_inferences(store, limit=5):  # what was stored reads back
        get_inference(store, inference.id)


def test_any_file_imports_as_traffic_or_fails_writing_nothing(store: Store, tmp_path: Path) -> None:
    @examples(store, sqlite=200, postgres=40)
    @given(hostile_files())
    def check(data: bytes) -> None:
        check_traffic_import(store, tmp_path / "log.jsonl", data)

    check()


# --- the named attacks, on both backends -----------------------------------------------------


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b"[" * depth + leaf + b"]" * depth


def test_a_10_mb_string_is_stored_whole(store: Store, tmp_path: Path) -> None:
    huge = "é" * (TEN_MB // 2)  # 10 MB of UTF-8
    path = write(tmp_path / "big.jsonl", [chat(0, huge), chat(1)])
    report = import_dataset(store, path, "big")
    assert (report.rows_imported, report.lines_skipped) == (2, 0)
    first = next(iter(iter_rows(store, "big")))
    assert first.reference is not None and first.reference["content"] == huge


def test_a_10_mb_line_of_garbage_is_skipped_with_its_reason(store: Store, tmp_path: Path) -> None:
    garbage = b'{"messages": "' + b"\xff" * TEN_MB + b'"}'
    path = write(tmp_path / "garbage.jsonl", [garbage, chat(1)])
    report = import_dataset(store, path, "garbage")
    assert report.rows_imported == 1
    assert report.errors[0].line == 1
    assert report.errors[0].reason.startswith("not valid UTF-8 (byte 0xff at column 15)")
    before = table_counts(store)
    with pytest.raises(ImportFileError, match="no valid rows"):
        import_dataset(store, write(tmp_path / "only.jsonl", [garbage]), "only-garbage")
    assert table_counts(store) == before


DATASET_LINES = [
    (b'{"messages": ' + nested(10_000) + b"}", "not valid JSON: depth limit exceeded"),
    (b'{"messages": ' + nested(MAX_DEPTH + 5) + b"}", "nested more than 100 levels deep"),
    (b'{"messages": ' + nested(600, b'"\\u0000"') + b"}", "nested more than 100 levels"),
    (b'{"messages": [{"role": "user", "content": "\\u0000"}]}', "contains a NUL character"),
    (b'{"messages": [\x00]}', "not valid JSON"),
    (b'{"messages": [{"role": "user", "content": "\xc3\x28"}]}', "not valid UTF-8"),
    (b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}', "not valid UTF-8"),
    (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "not valid JSON"),
    (
        orjson.dumps(
            {
                "request": {"messages": [{"role": "user", "content": [{"type": [1]}]}]},
                "response": None,
            }
        ),
        "content[0]: expected a content part object with a 'type'",
    ),
    (
        orjson.dumps({"request": {"system": "s", "messages": [{"role": [1]}]}, "response": None}),
        "request.messages[0].role: [1] is not valid in an Anthropic request",
    ),
    (
        orjson.dumps({"request": {"tools": 5, "messages": []}, "response": None}),
        "request.messages: expected a non-empty list",
    ),
]


@pytest.mark.parametrize(("line", "reason"), DATASET_LINES)
def test_hostile_dataset_lines_are_skipped_with_a_reason(
    sqlite_store: Store, tmp_path: Path, line: bytes, reason: str
) -> None:
    first = OPENAI_SOURCE if line.startswith(b'{"request"') else chat(0)  # one format per file
    report = import_dataset(sqlite_store, write(tmp_path / "in.jsonl", [first, line]), "ds")
    assert report.rows_imported == 1
    assert [issue.line for issue in report.errors] == [2]
    assert reason in report.errors[0].reason


def test_every_hostile_dataset_line_on_both_backends(store: Store, tmp_path: Path) -> None:
    for fmt, first in (("chat", chat(0)), ("source", OPENAI_SOURCE)):
        source = fmt == "source"
        lines = [line for line, _ in DATASET_LINES if line.startswith(b'{"request"') == source]
        report = import_dataset(store, write(tmp_path / f"{fmt}.jsonl", [first, *lines]), fmt)
        assert (report.rows_imported, report.lines_skipped) == (1, len(lines))


def test_nesting_up_to_the_limit_is_kept(sqlite_store: Store, tmp_path: Path) -> None:
    line = b'{"metadata": {"deep": ' + nested(MAX_DEPTH - 2) + b"}, " + orjson.dumps(chat(0))[1:]
    report = import_dataset(sqlite_store, write(tmp_path / "deep.jsonl", [line]), "deep")
    assert report.rows_imported == 1
    assert next(iter(iter_rows(sqlite_store, "deep"))).metadata["deep"] == orjson.loads(
        nested(MAX_DEPTH - 2)
    )


def test_bom_crlf_and_blank_lines_are_read_as_text(sqlite_store: Store, tmp_path: Path) -> None:
    rows = [orjson.dumps(chat(i)) for i in range(3)]
    data = b"\xef\xbb\xbf" + rows[0] + b"\r\n\r\n" + b"\xef\xbb\xbf" + rows[1] + b"\r\n" + rows[2]
    (tmp_path / "crlf.jsonl").write_bytes(data)
    report = import_dataset(sqlite_store, tmp_path / "crlf.jsonl", "crlf")
    assert (report.rows_imported, report.lines_skipped) == (3, 0)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ("\ufeff" + orjson.dumps(chat(0)).decode(), "UTF-16 encoded"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 20, "gzip-compressed"),
        (b"\n\r\n \n", "is empty"),
        (b"\x00" * 1000, "no valid rows"),
    ],
)
def test_unreadable_files_write_nothing(
    sqlite_store: Store, tmp_path: Path, data: str | bytes, error: str
) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(data.encode("utf-16") if isinstance(data, str) else data)
    before = table_counts(sqlite_store)
    with pytest.raises(ImportFileError, match=error):
        import_dataset(sqlite_store, path, "f")
    assert table_counts(sqlite_store) == before


def test_a_failure_after_batches_were_inserted_leaves_nothing(store: Store, tmp_path: Path) -> None:
    hostile = [chat(i, "x" * 100_000 if i % 100 == 0 else "ok") for i in range(1_500)]
    hostile += [b'{"messages": ' + nested(10_000) + b"}", {"request": {}, "response": None}]
    before = table_counts(store)
    with pytest.raises(ImportFileError, match="mixes formats: line 1 is chat"):
        import_dataset(store, write(tmp_path / "mixed.jsonl", hostile), "mixed", "training")
    assert table_counts(store) == before


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("a\x00b", "cannot contain a NUL character or a lone surrogate"),
        ("a\ud800b", "cannot contain a NUL character or a lone surrogate"),
        ("x" * 201, "dataset name is too long"),
        (" \t ", "a dataset needs a name"),
    ],
)
def test_hostile_dataset_names_are_refused(
    store: Store, tmp_path: Path, name: str, error: str
) -> None:
    before = table_counts(store)
    with pytest.raises(ValidationError, match=error):
        import_dataset(store, write(tmp_path / "in.jsonl", [chat(0)]), name)
    assert table_counts(store) == before
    import_dataset(store, write(tmp_path / "in.jsonl", [chat(0)]), "\u202e\ufeffunicode")
    with pytest.raises(AlreadyExistsError):
        import_dataset(store, write(tmp_path / "in.jsonl", [chat(0)]), "\u202e\ufeffunicode")


# --- traffic: one regression test per bug found ----------------------------------------------


def batch(**response_body: Any) -> dict[str, Any]:
    return {"custom_id": "c", "response": {"status_code": 200, "body": response_body}}


TRAFFIC_LINES: list[tuple[Any, str | None]] = [
    # Each of these escaped as an exception other than ImportFileError before the fix.
    (batch(created=1e20), "response.body.created: 1e+20 is not a Unix time"),
    (batch(object=[1]), None),
    ({**batch(), "request": {"body": 5}}, "request.body: expected an object"),
    (export_line(0, started_at="0001-01-01T00:00:00+01:00"), "started_at: expected an ISO"),
    (export_line(0, response={"object": {"a": 1}}), None),
    (export_line(0, request={"messages": 5}), None),
    (export_line(0, request={"messages": [{"role": [1]}]}), None),
    (export_line(0, provider={"name": "x"}), "provider: expected a string, got dict"),
    (export_line(0, model="m" * 201), "model: at most 200 characters, got 201"),
    (export_line(0, method="P" * 11), "method: at most 10 characters"),
    (export_line(0, status_code=2**40), "status_code: expected a whole number"),
    (export_line(0, status_code=True), "status_code: expected a whole number"),
    (
        export_line(0, response={"usage": {"prompt_tokens": {"n": 1}}}),
        "input_tokens: expected a whole number",
    ),
    (
        export_line(0, response={"usage": {"prompt_tokens": 2**63}}),
        "input_tokens: expected a whole number",
    ),
    (export_line(0, response={"usage": {"prompt_tokens": 7.0}}), None),
    (export_line(0, duration_ms=2**64 - 1), None),
    (export_line(0, metadata={"k" * 200 + "a": 1, "k" * 200 + "b": 2}), None),
    (export_line(0, metadata={"deep": orjson.loads(nested(200))}), "nested more than 100"),
    (  # found by bench/fuzz/fuzz_traffic_import.py: a ValueError escaped
        export_line(0, request={"system": "s", "messages": []}),
        "request mixes OpenAI (response.choices) and Anthropic (top-level 'system') conventions",
    ),
]


@pytest.mark.parametrize(("line", "reason"), TRAFFIC_LINES)
def test_hostile_traffic_lines_are_imported_or_skipped_with_a_reason(
    sqlite_store: Store, tmp_path: Path, line: Any, reason: str | None
) -> None:
    path = write(tmp_path / "log.jsonl", [export_line(1), line])
    report = import_traffic(sqlite_store, path)
    if reason is None:
        assert (report.inferences_imported, report.lines_skipped) == (2, 0)
    else:
        assert (report.inferences_imported, report.lines_skipped) == (1, 1)
        assert reason in report.errors[0].reason
    for inference in list_inferences(sqlite_store):
        get_inference(sqlite_store, inference.id)


def test_every_hostile_traffic_line_on_both_backends(store: Store, tmp_path: Path) -> None:
    # Distinct uids, so that lines that import do not count as re-imports of each other.
    lines = [
        {**line, "uid": f"u{i}"} if "request" in line else line
        for i, (line, _) in enumerate(TRAFFIC_LINES)
    ]
    report = import_traffic(store, write(tmp_path / "log.jsonl", lines))
    skipped = [i + 1 for i, (_, reason) in enumerate(TRAFFIC_LINES) if reason is not None]
    assert [issue.line for issue in report.errors] == skipped[: len(report.errors)]
    assert report.lines_skipped == len(skipped)
    assert report.inferences_imported == len(TRAFFIC_LINES) - len(skipped)
    for inference in list_inferences(store, limit=100):
        get_inference(store, inference.id)


def test_traffic_survives_deep_huge_and_broken_lines(store: Store, tmp_path: Path) -> None:
    lines: list[Any] = [
        b'{"request": ' + nested(10_000) + b', "response": null}',
        export_line(1, response={"content": "x" * TEN_MB, "object": "chat.completion"}),
        b'{"request": {"a": "\xff"}, "response": null}',
        b'{"request": {"a": "\\u0000"}, "response": null}',
        b"\xef\xbb\xbf" + orjson.dumps(export_line(2)),
    ]
    report = import_traffic(store, write(tmp_path / "log.jsonl", lines))
    assert (report.inferences_imported, report.lines_skipped) == (2, 3)
    assert [issue.line for issue in report.errors] == [1, 3, 4]
    big = [i for i in list_inferences(store) if i.model == "gpt-a"]
    assert len(big) == 2


def test_traffic_names_from_the_caller_are_checked_per_line(store: Store, tmp_path: Path) -> None:
    line = export_line(0)
    del line["environment"]
    before = table_counts(store)
    with pytest.raises(ImportFileError, match="environment: at most 200 characters"):
        import_traffic(store, write(tmp_path / "l.jsonl", [line]), environment="e" * 201)
    assert table_counts(store) == before
