"""Benchmark: web pages and API answers for a run group of 10,000 rows x 5 models.

Fills a fresh database (a SQLite file by default, ``--postgres`` for the test server) with an
eval dataset of ``--rows`` rows, a finished run group over all of them with ``--models``
arms (one baseline), every output judged, ~3 % of rows failed, then requests each page and API
route ``--repeat`` times in-process (FastAPI's TestClient: server time, no network) and prints
p50 / p95 / max per route. Target: p95 under 300 ms for every route.

    .venv/bin/python bench/bench_web.py [--rows 10000] [--models 5] [--repeat 20] [--postgres]

Results are in bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text, update

from assay.datasets import import_dataset
from assay.engine.definitions import create_eval
from assay.engine.groups import create_group
from assay.providers.endpoints import add_model
from assay.rubrics import create_rubric
from assay.store import Store, open_store
from assay.store.models import Generation, Judgment, Run, RunGroup, RunGroupRow

PG_URL = os.environ.get(
    "ASSAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BATCH = 5000


def fill(store: Store, folder: Path, rows: int, models: int) -> int:
    """The dataset, models, rubric, eval and a finished group; returns the group id."""
    data = folder / "bench.jsonl"
    with data.open("w") as out:
        for i in range(rows):
            tier = ("free", "pro", "enterprise")[i % 3]
            out.write(
                '{"messages": [{"role": "system", "content": "You are a support agent."}, '
                f'{{"role": "user", "content": "Question {i}: how do I reset my password on '
                f'plan {tier}?"}}, {{"role": "assistant", "content": "Open settings, then '
                f'security, then reset ({i})."}}], "metadata": {{"tier": "{tier}"}}}}\n'
            )
    import_dataset(store, data, "bench-eval", type="eval")
    create_rubric(store, "bench-rubric", template="correctness")
    names = [f"model-{k}" for k in range(models)]
    for name in names:
        add_model(store, name, base_url="http://127.0.0.1:9/v1", model_id=name)
    create_eval(
        store, "bench", dataset="bench-eval", rubric="bench-rubric", judge=names[0],
        baseline=names[0], candidates=names[1:], sample_size=rows,
    )  # fmt: skip
    group = create_group(store, "bench")
    rng = random.Random(7)
    now = datetime.now(UTC)
    with store.session() as session:
        db = session.get(RunGroup, group.id)
        assert db is not None
        row_ids = list(
            session.scalars(select(RunGroupRow.row_id).where(RunGroupRow.group_id == group.id))
        )
        runs = list(session.scalars(select(Run).where(Run.group_id == group.id)))
        version_id, judge_id = db.rubric_version_id, db.judge_id
    for k, run in enumerate(runs):
        generations, judgments = [], []
        for row_id in row_ids:
            failed = rng.random() < 0.02
            generations.append(
                {
                    "run_id": run.id, "row_id": row_id,
                    "status": "generation_failed" if failed else "completed",
                    "output": None if failed else {
                        "role": "assistant",
                        "content": f"Go to settings and reset it. Row {row_id}, model {k}. "
                        * 3,
                    },
                    "error": "HTTP 500 after 3 attempts" if failed else None,
                    "latency_ms": rng.uniform(150, 900), "input_tokens": 40,
                    "output_tokens": rng.randint(20, 200), "cost_usd": 0.0004,
                    "attempts": 1, "cached": False, "created_at": now,
                }
            )  # fmt: skip
        with store.session() as session:
            for start in range(0, len(generations), BATCH):
                session.execute(insert(Generation), generations[start : start + BATCH])
            gen_ids = dict(
                session.execute(
                    select(Generation.row_id, Generation.id).where(
                        Generation.run_id == run.id, Generation.status == "completed"
                    )
                ).all()
            )
        for gen_id in gen_ids.values():
            unparseable = rng.random() < 0.01
            score = None if unparseable else float(min(10, max(1, round(rng.gauss(7 - k / 2, 2)))))
            judgments.append(
                {
                    "generation_id": gen_id, "group_id": group.id,
                    "rubric_version_id": version_id, "judge_id": judge_id, "sample_index": 0,
                    "status": "judge_unparseable" if unparseable else "scored", "score": score,
                    "reasoning": "The answer names the right steps but misses a detail.",
                    "raw_output": '{"reasoning": "...", "score": 7}', "latency_ms": 300.0,
                    "input_tokens": 500, "output_tokens": 60, "cost_usd": 0.001,
                    "created_at": now,
                }
            )  # fmt: skip
        with store.session() as session:
            for start in range(0, len(judgments), BATCH):
                session.execute(insert(Judgment), judgments[start : start + BATCH])
            session.execute(
                update(Run)
                .where(Run.id == run.id)
                .values(status="completed", started_at=now, finished_at=now)
            )
    with store.session() as session:
        session.execute(update(RunGroup).where(RunGroup.id == group.id).values(finished_at=now))
    # What the engine does when it finishes a group (fills here bypass it).
    store.refresh_statistics("generations", "judgments", "dataset_rows", "run_group_rows")
    return group.id


def routes(group_id: int, rows: int) -> dict[str, str]:
    mid = rows // 2
    g = f"/api/v1/groups/{group_id}"
    return {
        "page: run group": f"/groups/{group_id}",
        "page: rows fragment, failures": f"/groups/{group_id}/rows?status=failed&hx=1",
        "page: rows fragment, by diff": f"/groups/{group_id}/rows?sort=diff&hx=1",
        "page: decision (gate, 10k resamples)": f"/groups/{group_id}/decision",
        "page: row detail": f"/groups/{group_id}/rows/{mid}",
        "api: summary": f"{g}/summary",
        "api: distribution": f"{g}/distribution",
        "api: rows, first page": f"{g}/rows",
        "api: rows, page 100": f"{g}/rows?offset=5000&limit=50",
        "api: rows, sort by diff": f"{g}/rows?sort=diff",
        "api: rows, regressions": f"{g}/rows?regressions=true&model=model-2",
        "api: rows, score 1-3": f"{g}/rows?min_score=1&max_score=3",
        "api: rows, slice tier=pro": f"{g}/rows?slice=tier%3Dpro",
        "api: row detail": f"{g}/rows/{mid}",
    }


def measure(store: Store, group_id: int, rows: int, repeat: int) -> None:
    from fastapi.testclient import TestClient

    from assay.web import create_app

    client = TestClient(create_app(store))
    print(f"{'route':36} {'first ms':>9} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, url in routes(group_id, rows).items():
        times = []
        for _ in range(3 if "decision" in label else repeat):
            started = time.perf_counter()
            headers = {"HX-Request": "true"} if "hx=1" in url else {}
            response = client.get(url, headers=headers)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{url}: HTTP {response.status_code} {response.text[:300]}")
        first = times[0]
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(
            f"{label:36} {first:9.1f} {statistics.median(times):8.1f} {p95:8.1f} {times[-1]:8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        schema = None
        if args.postgres:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            with create_engine(PG_URL).begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        try:
            with open_store(url, home=folder) as store:
                started = time.perf_counter()
                group_id = fill(store, Path(folder), args.rows, args.models)
                print(
                    f"filled {args.rows:,} rows x {args.models} models in "
                    f"{time.perf_counter() - started:.1f} s ({'Postgres' if schema else 'SQLite'})"
                )
                measure(store, group_id, args.rows, args.repeat)
        finally:
            if schema:
                with create_engine(PG_URL).begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
