#!/usr/bin/env python3
"""The shared report.py, taught to read Assay's store: same RESULT line, same checks.

A row counts as judged when its stored judgment is ``scored`` and the reasoning holds one of
the mock's fixed reasons (the reply arrived and was parsed), as for the peers.
"""

from __future__ import annotations

import os
import sqlite3
import sys


def check_assay(run_dir: str, n: int) -> dict:
    from mockllm import REASONS

    db = sqlite3.connect(os.path.join(run_dir, "home", "assay.db"))
    out = {"rows_expected": 2 * n, "rows_present": 0, "rows_generated": 0, "rows_judged": 0,
           "rows_error": 0, "rows_pass": 0, "error_samples": []}  # fmt: skip
    rows = db.execute(
        "SELECT g.status, g.error, j.status, j.reasoning, j.score FROM generations g "
        "JOIN runs r ON r.id = g.run_id LEFT JOIN judgments j ON j.generation_id = g.id"
    ).fetchall()
    for gen_status, gen_error, judge_status, reasoning, score in rows:
        out["rows_present"] += 1
        out["rows_generated"] += gen_status == "completed"
        judged = judge_status == "scored" and any(r in (reasoning or "") for r in REASONS)
        out["rows_judged"] += judged
        out["rows_pass"] += bool(judged and score is not None and score >= 5)
        if gen_status != "completed" or judge_status not in ("scored", None):
            out["rows_error"] += 1
            if len(out["error_samples"]) < 3:
                out["error_samples"].append(gen_error or judge_status)
    return out


def main() -> None:
    args = sys.argv[1:]
    shared = args[args.index("--shared") + 1]
    del args[args.index("--shared") : args.index("--shared") + 2]
    sys.path.insert(0, shared)
    import report

    report.check_inspect = check_assay  # report.main reads every non-promptfoo tool this way
    sys.argv = [sys.argv[0], *args]
    report.main()


if __name__ == "__main__":
    main()
