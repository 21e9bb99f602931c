"""Small builders shared by the engine tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_rows(path: Path, rows: int) -> Path:
    """A chat JSONL file of multiplication questions with their correct answers."""
    with path.open("w") as f:
        for i in range(rows):
            line = {
                "id": f"q{i}",
                "messages": [
                    {"role": "system", "content": "Answer with the number only."},
                    {"role": "user", "content": f"What is {i} times 3?"},
                    {"role": "assistant", "content": str(i * 3)},
                ],
                "metadata": {"difficulty": "easy" if i % 2 else "hard"},
            }
            f.write(json.dumps(line) + "\n")
    return path
