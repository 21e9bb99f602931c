"""Benchmark: streaming import of a 100,000-row chat JSONL file.

Generates a realistic file (~1 KB per row: system prompt, user question, assistant answer;
one row in five a tool-calling conversation with a tool definition), then times
``import_dataset`` on SQLite and, when ``ASSAY_TEST_POSTGRES_URL`` answers, on Postgres. Each
import runs in a fresh child process so that its peak RSS is its own.

    .venv/bin/python bench/bench_import.py [--rows 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

_VOCABULARY = """
    order refund invoice account shipping delivery password reset subscription plan upgrade
    billing address payment card declined warranty return label tracking number customer
    support agent policy days within eligible request confirm email update profile settings
    the a to of and for your we you please can will is our this that with on in
"""
WORDS = _VOCABULARY.split()

TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Look up an order by its id and return its status and items.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "The order id."}},
            "required": ["order_id"],
        },
    },
}


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_row(rng: random.Random, i: int) -> dict:
    """One chat line of about 1 KB."""
    system = {"role": "system", "content": "You are a support assistant for Acme. " * 3}
    question = {"role": "user", "content": " ".join(_sentence(rng, 12) for _ in range(4))}
    row: dict = {"id": f"row-{i}", "metadata": {"task": "support", "shard": i % 7}}
    if i % 5 == 0:
        order = f"A{rng.randrange(10**6):06d}"
        call = {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "lookup_order", "arguments": json.dumps({"order_id": order})},
        }
        row["messages"] = [
            system,
            question,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{i}", "content": _sentence(rng, 15)},
            {"role": "assistant", "content": " ".join(_sentence(rng, 10) for _ in range(3))},
        ]
        row["tools"] = [TOOL]
    else:
        answer = " ".join(_sentence(rng, 14) for _ in range(6))
        row["messages"] = [system, question, {"role": "assistant", "content": answer}]
    return row


def generate(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            out.write(json.dumps(make_row(rng, i)) + "\n")


CHILD = """
import json, resource, sys, time
from assay.datasets import import_dataset
from assay.store import open_store
url, home, path = sys.argv[1:4]
with open_store(url, home=home) as store:
    start = time.perf_counter()
    report = import_dataset(store, path, "bench", "training")
    seconds = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": report.rows_imported, "seconds": seconds, "peak_rss_mb": peak_mb}))
"""


def run_import(url: str, home: Path, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(home), str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def postgres_url() -> str | None:
    url = os.environ.get(
        "ASSAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception:
        return None
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="write the file here and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        path = (args.keep or tmp) / f"chat-{args.rows}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        generate(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        per_row = size_mb * 1e3 / args.rows
        print(f"file: {args.rows:,} rows, {size_mb:.1f} MB ({per_row:.2f} KB/row)")

        targets = [("sqlite", f"sqlite:///{tmp / 'bench.db'}")]
        pg = postgres_url()
        if pg:
            targets.append(("postgres", _fresh_schema(pg)))
        else:
            print("postgres: not reachable, skipped")
        try:
            for label, url in targets:
                result = run_import(url, tmp / "home", path)
                rate = result["rows"] / result["seconds"]
                print(
                    f"{label:9s} {result['rows']:,} rows in {result['seconds']:.1f} s "
                    f"({rate:,.0f} rows/s, {size_mb / result['seconds']:.1f} MB/s), "
                    f"peak RSS {result['peak_rss_mb']:.0f} MB"
                )
        finally:
            if pg:
                _drop_schema(pg)


_SCHEMA = f"bench_{uuid.uuid4().hex[:8]}"


def _fresh_schema(url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{_SCHEMA}"'))
    engine.dispose()
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={_SCHEMA}"})
    return scoped.render_as_string(hide_password=False)


def _drop_schema(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{_SCHEMA}" CASCADE'))
    engine.dispose()


if __name__ == "__main__":
    main()
