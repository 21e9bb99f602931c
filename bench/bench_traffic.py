"""Benchmark: traffic filters and a 1,000,000-row training dataset built with exclusion.

Fills a fresh database with ``--inferences`` captured chat completions (about 5 % errors, three
environments, four tasks, three models, a ``customer`` metadata tag), then measures:

* filter latency of ``list_inferences`` (newest 50) for each filter of ``traffic list``, and
  ``traffic_stats`` over one task;
* an eval dataset (seeded sample of 5,000) and then a training dataset of ``--rows`` rows
  excluding it, in a child process so that its wall time and peak RSS are its own.
  Target: under 2 minutes and under 1 GiB.

    .venv/bin/python bench/bench_traffic.py [--inferences 1070000] [--rows 1000000] [--postgres]

Measured 2026-11-27 on the project machine (2 cores, other jobs running), 1,070,000 inferences
(1,060,000 for the SQLite run, hence 999,210 rows):

| backend  | list p50 (indexed filters) | --metadata | stats 1 task | training 1M rows | peak RSS |
|----------|----------------------------|------------|--------------|------------------|----------|
| SQLite   | 2.3-3.1 ms                 | 75 ms      | 3.0 s        | 100.9 s          | 106 MB   |
| Postgres | 2.4-3.3 ms                 | 40 ms      | 1.6 s        | 117.2 s (COPY)   | 137 MB   |
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text

from assay.store import open_store
from assay.store.models import Inference, InferenceTag
from assay.traffic import (
    create_dataset_from_traffic,
    list_inferences,
    parse_filter,
    traffic_stats,
)

PG_URL = os.environ.get(
    "ASSAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ENVS, TASKS, MODELS = (
    ("prod", "staging", "dev"),
    ("support", "billing", "search", "summary"),
    (
        "gpt-a",
        "gpt-b",
        "claude-c",
    ),
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SYSTEM = "You are a support assistant for Acme. Answer briefly and politely. " * 2


def fill(url: str, home: Path, n: int) -> float:
    """Insert n inferences (and their tags) by executemany batches; returns seconds."""
    start = time.perf_counter()
    with open_store(url, home=home) as store, store.engine.begin() as conn:
        batch, tags = [], []
        for i in range(n):
            ok = i % 19 != 0
            request = {
                "model": MODELS[i % 3],
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Where is my order number {i}? It is late."},
                ],
            }
            response = (
                {
                    "object": "chat.completion",
                    "choices": [{"message": {"role": "assistant", "content": f"Order {i}: soon."}}],
                    "usage": {"prompt_tokens": 60, "completion_tokens": 8},
                }
                if ok
                else None
            )
            batch.append(
                {
                    "id": i + 1,
                    "uid": str(uuid.UUID(int=i)),
                    "started_at": T0 + timedelta(seconds=i),
                    "environment": ENVS[i % 3],
                    "task": TASKS[i % 4],
                    "provider": "anthropic" if i % 3 == 2 else "openai",
                    "model": MODELS[i % 3],
                    "method": "POST",
                    "path": "/v1/chat/completions",
                    "status_code": 200 if ok else 500,
                    "success": ok,
                    "error": None if ok else "upstream error",
                    "streamed": i % 2 == 0,
                    "duration_ms": float(100 + i % 900),
                    "ttft_ms": None,
                    "input_tokens": 60,
                    "output_tokens": 8 if ok else None,
                    "cost_usd": 0.0001,
                    "prompt_hash": None,
                    "request_body": request,
                    "request_truncated": False,
                    "response_body": response,
                    "metadata": {"customer": f"c{i % 100}"},
                }
            )
            tags.append({"inference_id": i + 1, "key": "customer", "value": f"c{i % 100}"})
            if len(batch) == 5000:
                conn.execute(insert(Inference.__table__), batch)
                conn.execute(insert(InferenceTag.__table__), tags)
                batch, tags = [], []
        if batch:
            conn.execute(insert(Inference.__table__), batch)
            conn.execute(insert(InferenceTag.__table__), tags)
    if url.startswith("postgresql"):
        with create_engine(url).begin() as conn:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - start


def time_filters(url: str, home: Path) -> None:
    cases = {
        "no filter": {},
        "--environment prod": {"environment": "prod"},
        "--task billing --status error": {"task": "billing", "status": "error"},
        "--model gpt-b --status 500": {"model": "gpt-b", "status": "500"},
        "--metadata customer=c42": {"metadata": ["customer=c42"]},
        "--since/--until (1 day)": {"since": "2026-01-05", "until": "2026-01-06"},
        "--provider anthropic -e dev": {"provider": "anthropic", "environment": "dev"},
    }
    with open_store(url, home=home) as store:
        print(f"{'filter':40} {'list p50 ms':>12} {'rows':>5}")
        for label, kw in cases.items():
            f = parse_filter(**kw)
            times, rows = [], 0
            for _ in range(5):
                start = time.perf_counter()
                rows = len(list_inferences(store, f, limit=50))
                times.append((time.perf_counter() - start) * 1000)
            print(f"{label:40} {statistics.median(times):12.1f} {rows:5}")
        start = time.perf_counter()
        stats = traffic_stats(store, parse_filter(task="support"))
        elapsed = time.perf_counter() - start
        print(f"stats --task support: {elapsed:.2f} s ({sum(s.count for s in stats):,} inferences)")


def build(url: str, home: str, rows: int) -> None:
    """Child process: eval sample, then the training dataset excluding it."""
    with open_store(url, home=home) as store:
        start = time.perf_counter()
        ev = create_dataset_from_traffic(store, "ev", "eval", sample=5000, seed=1)
        t_eval = time.perf_counter() - start
        start = time.perf_counter()
        tr = create_dataset_from_traffic(store, "tr", "training", limit=rows, exclude="ev")
        t_train = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "eval_rows": ev.rows,
                "eval_s": round(t_eval, 1),
                "training_rows": tr.rows,
                "overlap_removed": tr.overlap_removed,
                "training_s": round(t_train, 1),
                "peak_rss_mb": round(peak_mb),
            }
        )
    )


def run(url: str, home: Path, args: argparse.Namespace) -> None:
    print(f"filling {args.inferences:,} inferences ...", flush=True)
    print(f"filled in {fill(url, home, args.inferences):.0f} s")
    time_filters(url, home)
    child = subprocess.run(
        [sys.executable, __file__, "--child", url, str(home), str(args.rows)],
        capture_output=True,
        text=True,
        check=True,
    )
    print(child.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inferences", type=int, default=1_070_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        build(args.child[0], args.child[1], int(args.child[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if args.postgres:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG_URL)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            sep = "&" if "?" in PG_URL else "?"
            try:
                print("== Postgres")
                run(f"{PG_URL}{sep}options=-csearch_path%3D{schema}", home, args)
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        else:
            print("== SQLite")
            run(f"sqlite:///{home / 'assay.db'}", home, args)


if __name__ == "__main__":
    main()
