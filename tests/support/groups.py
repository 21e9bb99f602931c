"""Finished run groups for the web tests, built through the CLI against the fake LLM server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
"""Text that would run if a page ever rendered model output as HTML."""


def hostile_rows(path: Path, rows: int) -> Path:
    """Chat rows whose request and captured answer carry HTML/script payloads."""
    with path.open("w") as f:
        for i in range(rows):
            line = {
                "messages": [
                    {"role": "system", "content": "Answer with the number only."},
                    {"role": "user", "content": f"What is {i} times 3? {HOSTILE}"},
                    {"role": "assistant", "content": f"{i * 3} {HOSTILE}"},
                ],
                "metadata": {"difficulty": "easy" if i % 2 else "hard"},
            }
            f.write(json.dumps(line) + "\n")
    return path


def build_group(
    cli: Any, fake_llm: Any, tmp_path: Path, *, rows: int = 12, failures: bool = True
) -> None:
    """Group 1: the captured answers as baseline, two candidate models (one named with an
    HTML payload, so its outputs carry it), a judge; some generations and judgments fail."""
    data = hostile_rows(tmp_path / "hostile.jsonl", rows)
    _ok(cli("dataset", "import", str(data), "--name", "support"))
    _ok(cli("rubric", "create", "right", "--template", "correctness"))
    for name, model_id in (("cand", "cand"), ("evil", f"evil{HOSTILE}"), ("judge", "judge")):
        _ok(cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", model_id))
    if failures:
        fake_llm.configure("cand", rate_500=0.3, seed=2)
        fake_llm.configure("judge", judge_mode="json")
    create = ["eval", "create", "support-eval", "--dataset", "support", "--rubric", "right"]
    arms = ["--judge", "judge", "--candidate", "cand", "--candidate", "evil", "--with-captured"]
    _ok(cli(*create, *arms))
    _ok(cli("run", "start", "support-eval", "--max-attempts", "1"))


def _ok(result: Any) -> None:
    assert result.exit_code == 0, (result.stdout, result.stderr)
