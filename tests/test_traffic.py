"""Traffic services on SQLite and Postgres: import, filters, stats, datasets from traffic."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from assay.datasets import content_hash, get_dataset, import_dataset
from assay.errors import (
    AlreadyExistsError,
    ImportFileError,
    LimitExceededError,
    NotFoundError,
    ValidationError,
)
from assay.store import Store
from assay.store.models import Dataset, DatasetRow, Inference, InferenceTag
from assay.traffic import (
    TrafficFilter,
    create_dataset_from_traffic,
    dataset_overlap,
    get_inference,
    import_traffic,
    list_inferences,
    parse_filter,
    to_dataset,
    traffic_stats,
)
from tests_helpers import T0, export_line, write


def batch_line(i: int, status: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = (
        {
            "object": "chat.completion",
            "created": 1767225600 + i,
            "model": "gpt-b",
            "choices": [{"message": {"role": "assistant", "content": f"B{i}"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        }
        if status == 200
        else {"error": {"message": "rate limited", "type": "rate_limit"}}
    )
    return {
        "id": f"batch_req_{i}",
        "custom_id": f"req-{i}",
        "response": {"status_code": status, "request_id": f"r{i}", "body": body},
        "error": None,
    }


def batch_input(i: int) -> dict[str, Any]:
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-b", "messages": [{"role": "user", "content": f"Batch {i}?"}]},
    }


def count(store: Store, model: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def seed_traffic(store: Store, tmp_path: Path, n: int = 20) -> None:
    """n successful export lines (half prod/half staging) plus 2 errors."""
    lines = [export_line(i, environment="prod" if i % 2 else "staging") for i in range(n)]
    lines.append(export_line(100, response=None, error="boom", status_code=500))
    lines.append(export_line(101, response=None, error={"message": "bad"}, status_code=429))
    import_traffic(store, write(tmp_path / "seed.jsonl", lines))


# --- import --------------------------------------------------------------------------------


def test_import_export_and_batch_lines(store: Store, tmp_path: Path) -> None:
    write(tmp_path / "in.jsonl", [batch_input(0), batch_input(1)])
    lines = [export_line(0), batch_line(0), batch_line(1, status=429), "not json", {"x": 1}]
    report = import_traffic(
        store, write(tmp_path / "log.jsonl", lines), requests=tmp_path / "in.jsonl"
    )
    assert (report.inferences_imported, report.lines_skipped) == (3, 2)
    assert [e.line for e in report.errors] == [4, 5]
    assert "not valid JSON" in report.errors[0].reason
    assert "OpenAI batch output" in report.errors[1].reason
    rows = list_inferences(store, limit=10)
    by_model = {(r.model, r.success): r for r in rows}
    exported = by_model[("gpt-a", True)]
    assert (exported.environment, exported.task, exported.status_code) == ("prod", "support", 200)
    assert (exported.input_tokens, exported.output_tokens) == (10, 3)
    detail = get_inference(store, exported.id)
    assert detail.metadata == {"customer": "c0"} and detail.prompt_hash
    ok = get_inference(store, by_model[("gpt-b", True)].id)
    assert ok.request_body == batch_input(0)["body"] and ok.path == "/v1/chat/completions"
    assert ok.environment == "default" and ok.metadata == {"custom_id": "req-0"}
    failed = by_model[("gpt-b", False)]
    assert (failed.status_code, failed.error) == (429, "rate limited")
    with store.engine.connect() as conn:
        tags = conn.execute(select(InferenceTag.key, InferenceTag.value)).all()
    assert ("customer", "c0") in tags and ("custom_id", "req-1") in tags


def test_reimport_adds_nothing(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "log.jsonl", [export_line(0), export_line(1), batch_line(2)])
    assert import_traffic(store, path).inferences_imported == 3
    again = import_traffic(store, path)
    assert (again.inferences_imported, again.already_present) == (0, 3)
    assert count(store, Inference) == 3


def test_import_defaults_environment_and_task(store: Store, tmp_path: Path) -> None:
    line = export_line(0)
    del line["environment"], line["task"]
    import_traffic(store, write(tmp_path / "l.jsonl", [line]), environment="dev", task="qa")
    (row,) = list_inferences(store)
    assert (row.environment, row.task) == ("dev", "qa")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "is empty"),
        (["{", "[1]"], "no valid inferences in bad.jsonl (2 lines rejected)"),
        ([{"custom_id": "a", "response": None, "error": None}], "neither a response nor"),
        ([export_line(0, started_at="yesterday")], "started_at: expected an ISO 8601 time"),
        ([export_line(0, duration_ms="slow")], "duration_ms: expected a number"),
    ],
)
def test_bad_import_files_write_nothing(
    store: Store, tmp_path: Path, lines: list[Any], message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    with pytest.raises(ImportFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_traffic(store, path)
    assert count(store, Inference) == 0


def test_import_failure_midway_rolls_back(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="not found"):
        import_traffic(store, tmp_path / "missing.jsonl")
    lines = [export_line(i) for i in range(5)] + [export_line(9, uid="x" * 40)]
    report = import_traffic(store, write(tmp_path / "l.jsonl", lines))
    assert report.lines_skipped == 1 and "uid: at most 36" in report.errors[0].reason


# --- explore -------------------------------------------------------------------------------


def test_filters(store: Store, tmp_path: Path) -> None:
    seed_traffic(store, tmp_path)

    def ids(**kw: Any) -> int:
        return len(list_inferences(store, parse_filter(**kw), limit=1000))

    assert ids() == 22
    assert ids(environment="prod") == 12  # 10 odd + the 2 errors
    assert ids(status="success") == 20
    assert ids(status="error") == 2
    assert ids(status="429") == 1
    assert ids(metadata=["customer=c1"]) == 11
    assert ids(metadata=["customer=c1"], environment="staging") == 0
    assert ids(since="2026-01-01T00:05:00Z", until="2026-01-01T00:10:00Z") == 5
    assert ids(model="nope") == 0
    newest = list_inferences(store, limit=1)[0]
    assert newest.started_at == T0 + timedelta(minutes=101)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"status": "ok"}, "--status: expected success, error or an HTTP status code"),
        ({"metadata": ["customer"]}, "--metadata: expected key=value"),
        ({"since": "last week"}, "--since: expected a date or time"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "is after --until"),
    ],
)
def test_bad_filters(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_filter(**kw)


def test_show_missing_and_bad_limit(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no inference with id 42"):
        get_inference(store, 42)
    with pytest.raises(ValidationError, match="--limit must be at least 1"):
        list_inferences(store, limit=0)


def test_stats(store: Store, tmp_path: Path) -> None:
    seed_traffic(store, tmp_path)
    requests = write(tmp_path / "in.jsonl", [batch_input(1), batch_input(2)])
    batch = write(tmp_path / "b.jsonl", [batch_line(1), batch_line(2, 500), batch_line(3, 500)])
    import_traffic(store, batch, requests=requests)
    stats = {(s.task, s.model): s for s in traffic_stats(store)}
    a = stats[("support", "gpt-a")]
    assert (a.count, a.errors) == (22, 2)
    assert a.error_rate == pytest.approx(2 / 22)
    # durations 1..20 plus 101 and 102: nearest-rank p50 = 11th of 22, p95 = 21st.
    assert (a.p50_ms, a.p95_ms) == (11.0, 101.0)
    assert (a.input_tokens, a.output_tokens) == (200, 60)
    assert a.cost_usd == pytest.approx(0.022)
    b = stats[("default", "gpt-b")]
    assert (b.count, b.errors, b.p50_ms, b.input_tokens) == (2, 1, None, 5)
    assert stats[("default", None)].count == 1  # an error without its request: no model
    only = traffic_stats(store, parse_filter(environment="prod", status="success"))
    assert [(s.model, s.count, s.errors) for s in only] == [("gpt-a", 10, 0)]


# --- datasets from traffic -----------------------------------------------------------------


def test_eval_then_training_with_exclusion(store: Store, tmp_path: Path) -> None:
    seed_traffic(store, tmp_path)
    ev = create_dataset_from_traffic(
        store, "ev", "eval", parse_filter(environment="prod"), sample=4, seed=7
    )
    assert (ev.rows, ev.matched, ev.overlap_removed, ev.warning) == (4, 10, 0, None)
    again = create_dataset_from_traffic(
        store, "ev2", "eval", parse_filter(environment="prod"), sample=4, seed=7
    )
    with store.engine.connect() as conn:
        inf_ids = [
            list(
                conn.execute(
                    select(DatasetRow.inference_id)
                    .where(DatasetRow.dataset_id == d)
                    .order_by(DatasetRow.position)
                ).scalars()
            )
            for d in (ev.dataset.id, again.dataset.id)
        ]
    assert inf_ids[0] == inf_ids[1] and None not in inf_ids[0]
    assert ev.dataset.provenance == "traffic"
    assert ev.dataset.filter == {"environment": "prod", "sample": 4, "seed": 7}

    tr = create_dataset_from_traffic(store, "tr", "training", TrafficFilter(), exclude="ev")
    assert (tr.rows, tr.matched, tr.overlap_removed) == (16, 20, 4)  # errors never enter
    assert tr.overlap_ratio == pytest.approx(0.2) and tr.warning is None
    assert get_dataset(store, "tr").filter == {"exclude": "ev"}
    report = dataset_overlap(store, "ev", "tr")
    assert (report.a_rows, report.b_rows, report.a_in_b, report.b_in_a) == (4, 16, 0, 0)
    full = dataset_overlap(store, "ev", "ev2")
    assert (full.a_in_b, full.shared_inferences, full.a_fraction) == (4, 4, 1.0)


def test_exclusion_by_content_hash_warns_and_refuses(store: Store, tmp_path: Path) -> None:
    seed_traffic(store, tmp_path, n=8)
    # An uploaded eval set holding the same conversations as 3 of the 4 prod rows.
    eval_rows = [
        {"messages": [{"role": "system", "content": "Be  brief."},
                      {"role": "user", "content": f"Question {i}?"}]}
        for i in (1, 3, 5)
    ]  # fmt: skip
    import_dataset(store, write(tmp_path / "e.jsonl", eval_rows), "up", "eval")
    tr = create_dataset_from_traffic(
        store, "tr", "training", parse_filter(environment="prod"), exclude="up"
    )
    assert (tr.rows, tr.overlap_removed) == (1, 3)
    assert tr.warning and "75%" in tr.warning and "too narrow" in tr.warning
    with pytest.raises(ValidationError, match="100 % overlap"):
        create_dataset_from_traffic(
            store,
            "none",
            "training",
            parse_filter(metadata=["customer=c1"], until="2026-01-01T00:06:00Z"),
            exclude="up",
        )
    assert [d for d in _names(store)] == ["tr", "up"]


def _names(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(select(Dataset.name)).scalars())


def test_refusals_write_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_traffic(store, tmp_path, n=6)
    create_dataset_from_traffic(store, "ev", "eval", limit=2)
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"name": "t", "type": "training"}, ValidationError, "must exclude an eval dataset"),
        ({"name": "t", "type": "training", "exclude": "evv"}, NotFoundError, "did you mean 'ev'"),
        ({"name": "ev", "type": "eval"}, AlreadyExistsError, "already exists"),
        ({"name": "x", "type": "big"}, ValidationError, "unknown dataset type"),
        ({"name": "x", "type": "eval", "limit": 0}, ValidationError, "at least 1"),
        ({"name": "x", "type": "eval", "sample": 10_001}, LimitExceededError, "maximum of 10,000"),
        ({"name": "x", "type": "eval", "filters": TrafficFilter(status="error")},
         ValidationError, "only successful requests"),
        ({"name": "x", "type": "eval", "filters": TrafficFilter(model="zz")},
         ValidationError, "no successful inferences match"),
    ]  # fmt: skip
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            create_dataset_from_traffic(store, **kwargs)
    monkeypatch.setattr("assay.datasets.importer.MAX_EVAL_ROWS", 3)
    with pytest.raises(LimitExceededError, match="more than 3 rows"):
        create_dataset_from_traffic(store, "x", "eval")
    monkeypatch.setattr(to_dataset, "BATCH_ROWS", 2)  # fail after rows were flushed
    with pytest.raises(LimitExceededError):
        create_dataset_from_traffic(store, "x", "eval")
    assert _names(store) == ["ev"]
    assert count(store, DatasetRow) == 2


def test_limit_takes_the_oldest_and_rows_carry_provenance(store: Store, tmp_path: Path) -> None:
    seed_traffic(store, tmp_path, n=5)
    report = create_dataset_from_traffic(store, "ev", "eval", limit=2)
    with store.session() as session:
        rows = session.execute(
            select(DatasetRow).where(DatasetRow.dataset_id == report.dataset.id)
            .order_by(DatasetRow.position)
        ).scalars().all()  # fmt: skip
    assert [r.messages[-1]["content"] for r in rows] == ["Question 0?", "Question 1?"]
    assert rows[0].reference == {"role": "assistant", "content": "Answer 0."}
    assert rows[0].metadata_ == {"customer": "c0", "environment": "staging", "task": "support"}
    assert rows[0].content_hash == content_hash(rows[0].messages, None)
    assert rows[0].params == {"model": "gpt-a"}
