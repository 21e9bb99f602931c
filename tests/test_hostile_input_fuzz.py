"""Bounded coverage-guided fuzzing in CI (reliability item 4, docs/reliability.md).

Every atheris harness in bench/fuzz runs for ``SECONDS``, all at once (they are independent
processes), on a fresh corpus seeded by the harness; none may crash, time out on an input or
leave a crash file. Longer campaigns: ``make fuzz`` (``FUZZ_SECONDS``, default 60 each).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris has Linux wheels only (pip install atheris)")

HARNESSES = sorted((Path(__file__).parents[1] / "bench" / "fuzz").glob("fuzz_*.py"))
SECONDS = 10
MAX_RUNS = 2_000_000  # a bound on inputs too, whatever the machine's speed


@pytest.mark.slow
def test_every_fuzz_harness_runs_clean(tmp_path: Path) -> None:
    assert [h.stem for h in HARNESSES] == [
        "fuzz_checks_file",
        "fuzz_dataset_import",
        "fuzz_judge_output",
        "fuzz_template",
        "fuzz_traffic_import",
    ]
    running = {}
    for harness in HARNESSES:
        corpus = tmp_path / harness.stem
        corpus.mkdir()
        command = [
            sys.executable,
            str(harness),
            f"-max_total_time={SECONDS}",
            f"-runs={MAX_RUNS}",
            f"-artifact_prefix={tmp_path}/{harness.stem}-",
            str(corpus),
        ]
        running[harness.stem] = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    reports = {
        name: process.communicate(timeout=SECONDS + 240)[0] for name, process in running.items()
    }
    for name, output in reports.items():
        tail = output[-4000:]
        assert running[name].returncode == 0, f"{name} crashed:\n{tail}"
        done = re.search(r"Done (\d+) runs in \d+ second", output)
        assert done and int(done.group(1)) > 100, f"{name} hardly ran:\n{tail}"
    assert not list(tmp_path.glob("*-crash-*")) and not list(tmp_path.glob("*-timeout-*"))
