"""A 1,000-row group under a 10 % fault rate: every row ends scored or failed with its reason,
the store's invariants hold, the counts add up, and finishing again calls nobody."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from assay.store import open_store
from assay.store.models import Generation, Judgment
from tests_helpers import check_invariants, write_rows

ROWS = 1000
FAULTS = {  # 10 % of attempts, of every kind a provider produces
    "rate_429": 0.03,
    "rate_500": 0.025,
    "rate_503": 0.02,
    "rate_reset": 0.01,
    "rate_truncated": 0.01,
    "rate_slow": 0.005,
}


@pytest.mark.slow
def test_thousand_rows_at_ten_percent_faults(
    cli: Any, fake_llm: Any, tmp_path: Path, database_url: str, assay_home: Path
) -> None:
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    assert cli("dataset", "import", str(data), "--name", "big").exit_code == 0
    assert cli("rubric", "create", "right", "--template", "correctness").exit_code == 0
    for name in ("base", "cand", "judge"):
        added = cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name)
        assert added.exit_code == 0, added.stderr
    fake_llm.configure("*", retry_after="0", slow_ms=3000, seed=11, **FAULTS)
    created = cli(
        "eval", "create", "e", "--dataset", "big", "--rubric", "right", "--judge", "judge",
        "--baseline", "base", "--candidate", "cand",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    # Two attempts and a 1 s timeout: some calls fail for good, and are counted as failures.
    started = cli("run", "start", "e", "--max-attempts", "2", "--timeout", "1")
    assert started.exit_code == 0, started.stderr

    shown = json.loads(cli("run", "show", "1", "--json").stdout)
    assert shown["status"] == "completed"
    failed_kinds = ("generation_failed", "judge_failed", "judge_unparseable")
    for run in shown["runs"]:
        assert run["pending"] == 0
        assert run["scored"] + sum(run[k] for k in failed_kinds) == ROWS
        assert run["generation_failed"] > 0 and run["scored"] > 0.8 * ROWS
    stats = fake_llm.stats()["models"]
    faults = sum(sum(s["errors"].values()) for s in stats.values())
    attempts = sum(s["attempts"] for s in stats.values())
    assert faults > 0.05 * attempts  # the faults really happened

    with open_store(database_url, home=assay_home) as store, store.session() as s:
        assert not s.execute(
            select(Generation.run_id, Generation.row_id)
            .group_by(Generation.run_id, Generation.row_id)
            .having(func.count() > 1)
        ).all()
        assert not s.execute(
            select(Judgment.generation_id)
            .group_by(Judgment.generation_id, Judgment.rubric_version_id, Judgment.judge_id,
                      Judgment.sample_index)
            .having(func.count() > 1)
        ).all()  # fmt: skip
        assert s.scalar(select(func.count()).where(Generation.status != "completed",
                                                   Generation.error.is_(None))) == 0  # fmt: skip
        assert s.scalar(select(func.count()).where(Judgment.status != "scored",
                                                   Judgment.score.is_not(None))) == 0  # fmt: skip
        assert s.scalar(select(func.count()).where(Judgment.status != "scored",
                                                   Judgment.error.is_(None),
                                                   Judgment.raw_output.is_(None))) == 0  # fmt: skip
        judged_failures = s.scalar(
            select(func.count())
            .select_from(Judgment)
            .join(Generation, Generation.id == Judgment.generation_id)
            .where(Generation.status != "completed")
        )
        assert judged_failures == 0

    # Everything is done: resuming finds nothing to do and calls no provider.
    before = sum(s["attempts"] for s in fake_llm.stats()["models"].values())
    assert cli("run", "resume", "1").exit_code == 0
    assert sum(s["attempts"] for s in fake_llm.stats()["models"].values()) == before


@pytest.mark.slow
def test_twenty_seeded_sigkills_then_resume(
    cli: Any, fake_llm: Any, tmp_path: Path, database_url: str, assay_home: Path
) -> None:
    """Kill the engine outright 20 times at seeded random points (each time a few more results
    are stored, plus a random delay, so it lands anywhere: mid-call, mid-flush); after every kill
    the invariants hold and nothing stored is lost; a final resume finishes exactly."""
    rows = 50
    data = write_rows(tmp_path / "rows.jsonl", rows)
    assert cli("dataset", "import", str(data), "--name", "mult").exit_code == 0
    assert cli("rubric", "create", "right", "--template", "correctness").exit_code == 0
    for name in ("base", "cand", "judge"):
        added = cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name)
        assert added.exit_code == 0, added.stderr
    created = cli(
        "eval", "create", "e", "--dataset", "mult", "--rubric", "right", "--judge", "judge",
        "--baseline", "base", "--candidate", "cand",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    fake_llm.configure("*", latency_ms=40)
    env = {**os.environ, "ASSAY_DATABASE_URL": database_url, "ASSAY_HOME": str(assay_home)}
    rng = random.Random(20261127)
    stored = 0
    group = ["run", "start", "e", "--max-concurrency", "2"]
    for _trial in range(20):
        target = stored + rng.randint(1, 6)
        proc = subprocess.Popen(
            [sys.executable, "-m", "assay.cli", *group],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            counts = check_invariants(database_url, assay_home)
            if counts["generations"] + counts["judgments"] >= target:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        counts = check_invariants(database_url, assay_home)  # asserts the invariants
        now = counts["generations"] + counts["judgments"]
        assert now >= stored  # nothing stored is ever lost
        stored = now
        group = ["run", "resume", "1", "--max-concurrency", "2"]
    assert 0 < stored < 4 * rows, "the kills should land mid-run"
    fake_llm.configure("*", latency_ms=0)
    result = cli("run", "resume", "1")
    assert result.exit_code == 0, result.stderr
    assert check_invariants(database_url, assay_home) == {
        "generations": 2 * rows,
        "judgments": 2 * rows,
    }
    shown = json.loads(cli("run", "show", "1", "--json").stdout)
    assert shown["status"] == "completed"
    assert [r["scored"] for r in shown["runs"]] == [rows, rows]
