"""Reading a group back in SQL: the rows table and the summaries agree with the row-by-row
Python reading (``stats.summary.row_outcomes``) on every filter, sort and outcome."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from assay.engine.results import group_summary, row_detail, rows_page
from assay.errors import NotFoundError, ValidationError
from assay.stats.summary import RowOutcome, row_outcomes
from assay.store import Store, open_store
from assay.store.models import DatasetRow, Run, RunGroup
from tests_helpers import write_rows

ROWS = 24


@pytest.fixture
def finished(cli: Any, fake_llm: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """A finished group with scored rows and every kind of failure, on three arms."""
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    assert cli("dataset", "import", str(data), "--name", "mult").exit_code == 0
    assert cli("rubric", "create", "right", "--template", "correctness").exit_code == 0
    for name in ("base", "cand", "other", "judge"):
        added = cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name)
        assert added.exit_code == 0, added.stderr
    fake_llm.configure("cand", rate_500=0.25, seed=3)
    fake_llm.configure("judge", rate_500=0.1, seed=5)
    result = cli(
        "eval", "create", "e1", "--dataset", "mult", "--rubric", "right", "--judge", "judge",
        "--baseline", "base", "--candidate", "cand", "--candidate", "other",
        "--sample-size", "20", "--seed", "7", "--judge-samples", str(request.param),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    result = cli("run", "start", "e1", "--max-attempts", "1")
    assert result.exit_code == 0, result.stderr
    return cli


def _oracle(store: Store, group_id: int) -> tuple[dict[str, dict[int, RowOutcome]], dict]:
    with store.session() as session:
        group = session.get(RunGroup, group_id)
        assert group is not None
        runs = list(session.scalars(select(Run).where(Run.group_id == group_id)))
        outcomes = {run.label: row_outcomes(session, group, run.id) for run in runs}
        positions = dict(session.execute(select(DatasetRow.id, DatasetRow.position)).all())
        return outcomes, positions


@pytest.mark.parametrize("finished", [1, 3], indirect=True)
def test_rows_page_matches_row_by_row_reading(
    finished: Any, database_url: str, assay_home: Path
) -> None:
    with open_store(database_url, home=assay_home) as store:
        outcomes, positions = _oracle(store, 1)
        base = outcomes["base"]
        expected = {
            (positions[row_id], model): o for model, by_row in outcomes.items()
            for row_id, o in by_row.items()
        }  # fmt: skip
        statuses = {o.status for o in expected.values()}
        assert {"scored", "generation_failed"} <= statuses  # the fixture made failures

        everything = rows_page(store, 1, limit=500)
        assert everything.total == 60 and len(everything.items) == 60
        for line in everything.items:
            o = expected[(line.row, line.model)]
            assert (line.status, line.score) == (o.status, o.score)

        failed = rows_page(store, 1, status="failed", limit=500)
        want = sorted(k for k, o in expected.items() if o.status not in ("scored", "pending"))
        assert sorted((x.row, x.model) for x in failed.items) == want
        assert failed.total == len(want)

        ranged = rows_page(store, 1, min_score=3, max_score=8, limit=500).items
        want = sorted(k for k, o in expected.items() if o.score is not None and 3 <= o.score <= 8)
        assert sorted((x.row, x.model) for x in ranged) == want

        regress = rows_page(store, 1, regressions=True, model="cand", limit=500).items
        want_rows = sorted(
            positions[row_id] for row_id, o in outcomes["cand"].items()
            if o.score is not None and (b := base.get(row_id)) is not None
            and b.score is not None and o.score < b.score
        )  # fmt: skip
        assert sorted(x.row for x in regress) == want_rows
        assert all(x.diff is not None and x.diff < 0 for x in regress)

        by_diff = rows_page(store, 1, model="cand", sort="diff", limit=500).items
        diffs = [x.diff for x in by_diff]
        known = [d for d in diffs if d is not None]
        assert known == sorted(known) and diffs[: len(known)] == known  # missing last
        by_score_desc = rows_page(store, 1, sort="score", descending=True, limit=500).items
        scores = [x.score for x in by_score_desc if x.score is not None]
        assert scores == sorted(scores, reverse=True)

        hard = rows_page(store, 1, slice="difficulty=hard", limit=500).items
        assert hard and all(x.row % 2 == 0 for x in hard)  # write_rows: even rows are hard

        first, second = rows_page(store, 1, limit=7), rows_page(store, 1, limit=7, offset=7)
        assert [(x.row, x.model) for x in first.items + second.items] == [
            (x.row, x.model) for x in everything.items[:14]
        ]
        assert everything.items[0].role == "baseline"  # baseline first within a row


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    rank = (len(values) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return values[low] + (values[high] - values[low]) * (rank - low)


@pytest.mark.parametrize("finished", [1, 3], indirect=True)
def test_summary_matches_row_by_row_reading(
    finished: Any, database_url: str, assay_home: Path
) -> None:
    with open_store(database_url, home=assay_home) as store:
        fast = group_summary(store, 1)
        outcomes, _ = _oracle(store, 1)
    base = outcomes["base"]
    for got in fast.runs:
        mine = list(outcomes[got.model].values())
        scores = sorted(o.score for o in mine if o.score is not None)
        latencies = sorted(o.latency_ms for o in mine if o.latency_ms is not None)
        counts = Counter(o.status for o in mine)
        assert got.total == 20
        assert got.pending == 20 - len(mine) + counts["pending"]
        for status in ("scored", "generation_failed", "judge_failed", "judge_unparseable"):
            assert getattr(got, status) == counts[status], status
        assert got.mean_score == pytest.approx(statistics.fmean(scores) if scores else None)
        assert got.median_score == pytest.approx(statistics.median(scores) if scores else None)
        assert sum(b.count for b in got.distribution) == len(scores)
        assert got.latency_ms_p50 == pytest.approx(_percentile(latencies, 50))
        assert got.latency_ms_p90 == pytest.approx(_percentile(latencies, 90))
        assert got.cost_usd == pytest.approx(sum(o.cost_usd for o in mine))
        assert got.judge_cost_usd == pytest.approx(sum(o.judge_cost_usd for o in mine))
        assert got.output_tokens == sum(o.output_tokens for o in mine)
        if got.role == "baseline":
            assert got.paired_rows is None
            continue
        pairs = [
            (b.score, o.score)
            for row_id, o in outcomes[got.model].items()
            if o.score is not None and (b := base.get(row_id)) and b.score is not None
        ]
        assert got.paired_rows == len(pairs)
        want = statistics.fmean(c - b for b, c in pairs) if pairs else None
        assert got.mean_diff_vs_baseline == pytest.approx(want)
    with open_store(database_url, home=assay_home) as store:
        assert group_summary(store, 1) == fast  # served from the cache, and still equal


@pytest.mark.parametrize("finished", [1], indirect=True)
def test_summary_cache_follows_new_writes(
    finished: Any, database_url: str, assay_home: Path
) -> None:
    cli = finished
    with open_store(database_url, home=assay_home) as store:
        before = group_summary(store, 1)
        assert any(r.generation_failed for r in before.runs)
    assert cli("run", "resume", "1", "--retry-failed").exit_code == 0
    with open_store(database_url, home=assay_home) as store:
        after = group_summary(store, 1)
    cand_before = next(r for r in before.runs if r.model == "cand")
    cand_after = next(r for r in after.runs if r.model == "cand")
    assert cand_after.scored > cand_before.scored


@pytest.mark.parametrize("finished", [1], indirect=True)
def test_rows_page_rejects_bad_filters(finished: Any, database_url: str, assay_home: Path) -> None:
    with open_store(database_url, home=assay_home) as store:
        with pytest.raises(ValidationError, match="unknown status"):
            rows_page(store, 1, status="bogus")
        with pytest.raises(ValidationError, match="unknown sort"):
            rows_page(store, 1, sort="name")
        with pytest.raises(ValidationError, match="KEY=VALUE"):
            rows_page(store, 1, slice="difficulty")
        with pytest.raises(NotFoundError, match="no model 'nope'"):
            rows_page(store, 1, model="nope")
        with pytest.raises(NotFoundError, match="not in run group"):
            row_detail(store, 1, 10_000)
        detail = row_detail(store, 1, rows_page(store, 1).items[0].row)
        assert [a.model for a in detail.arms] == ["base", "cand", "other"]
