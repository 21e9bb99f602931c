"""``assay labels import | list | show``: human labels for dataset rows, one transaction."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import Result

from assay.store import Store
from assay.store.models import DatasetRow, Label, LabelSet
from tests_helpers import add_dataset, write

Cli = Callable[..., Result]


def _dataset(store: Store, rows: int = 4) -> None:
    add_dataset(
        store,
        "qa",
        [
            {
                "messages": [{"role": "user", "content": f"Question {i}?"}],
                "reference": {"role": "assistant", "content": f"Answer {i}."},
            }
            for i in range(rows)
        ],
    )


def _counts(store: Store) -> tuple[int, int]:
    with store.session() as session:
        sets = session.scalar(select(func.count()).select_from(LabelSet)) or 0
        labels = session.scalar(select(func.count()).select_from(Label)) or 0
    return sets, labels


def test_import_pointwise_by_position_and_by_id(cli: Cli, store: Store, tmp_path: Path) -> None:
    _dataset(store)
    with store.session() as session:
        third = session.scalar(select(DatasetRow.id).where(DatasetRow.position == 2))
    file = write(
        tmp_path / "human-scores.jsonl",
        [
            {"row": 0, "score": 4},
            {"row": 1, "score": 2.5, "output": "A different answer.", "annotator": "ann1"},
            "",
            {"row_id": third, "score": 1, "output": {"role": "assistant", "content": "No."},
             "metadata": {"batch": 7}},
        ],
    )  # fmt: skip
    result = cli("labels", "import", str(file), "--dataset", "qa", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == {
        "name": "human-scores",  # the file's stem
        "dataset": "qa",
        "kind": "pointwise",
        "labels": 3,
        "source": "human-scores.jsonl",
    }
    shown = json.loads(cli("labels", "show", "human-scores", "--json").stdout)
    assert shown["kind"] == "pointwise" and shown["labels"] == 3
    assert (shown["score_min"], shown["score_max"]) == (1, 4)
    first, second, third_label = shown["first"]
    assert (first["row"], first["score"], first["output"]) == (0, 4, None)  # the reference
    assert second["output"] == {"role": "assistant", "content": "A different answer."}
    assert second["annotator"] == "ann1"
    assert (third_label["row"], third_label["metadata"]) == (2, {"batch": 7})
    listed = cli("labels", "list")
    assert (
        listed.exit_code == 0 and "human-scores" in listed.stdout and "pointwise" in listed.stdout
    )
    text = cli("labels", "show", "human-scores")
    assert "1 to 4" in text.stdout and "A different answer." in text.stdout


def test_import_pairwise_reads_every_spelling_of_the_preference(
    cli: Cli, store: Store, tmp_path: Path
) -> None:
    _dataset(store)
    lines = [
        {"row": i, "output_a": "x", "output_b": "y", "preferred": p}
        for i, p in enumerate(["a", "B", 1, 2])
    ] + [{"row": 0, "output_a": "x", "output_b": "y", "preferred": "Tie"}]
    file = write(tmp_path / "prefs.jsonl", lines)
    result = cli("labels", "import", str(file), "-D", "qa", "--name", "prefs-v1")
    assert result.exit_code == 0, result.output
    assert "Imported 5 pairwise label(s) as prefs-v1" in result.output
    shown = json.loads(cli("labels", "show", "prefs-v1", "--json").stdout)
    assert [x["preferred"] for x in shown["first"]] == ["a", "b", "a", "b", "tie"]
    assert shown["preferences"] == {"a": 2, "b": 2, "tie": 1}


def test_every_bad_line_is_reported_and_nothing_stored(
    cli: Cli, store: Store, tmp_path: Path
) -> None:
    _dataset(store, rows=3)
    file = write(
        tmp_path / "bad.jsonl",
        [
            {"row": 0, "score": 3},
            {"row": 9, "score": 3},
            {"row": 1, "score": "high"},
            {"row": 1, "row_id": 1, "score": 2},
            {"row": 2},
            {"row": 2, "output_a": "x", "output_b": "y", "preferred": "a"},
            "{not json",
            {"row": 2, "score": 2, "output": {"role": "user", "content": "hi"}},
            {"row": 2, "score": 2, "sccore": 1},
            {"row_id": 999999, "score": 2},
        ],
    )
    result = cli("labels", "import", str(file), "--dataset", "qa")
    assert result.exit_code == 1
    err = " ".join(result.stderr.split())
    assert "9 invalid line(s); nothing was imported" in err
    assert "bad.jsonl line 2: row: the dataset has no row 9 (expected a position 0-2)" in err
    assert "line 3: score: expected a number, got 'high'" in err
    assert "line 4: give exactly one of 'row'" in err
    assert "line 5: missing 'score' (a pointwise label) or 'preferred'" in err
    assert "line 6: a pairwise label, but line 1 made this a pointwise label file" in err
    assert "line 7: not valid JSON" in err
    assert "line 8: output.role: expected 'assistant', got 'user'" in err
    assert "line 9: sccore: unknown field for a pointwise label" in err
    assert "line 10: row_id: no row with id 999999 in this dataset" in err
    assert _counts(store) == (0, 0)


def test_refusals(cli: Cli, store: Store, tmp_path: Path) -> None:
    _dataset(store)
    file = write(tmp_path / "ok.jsonl", [{"row": 0, "score": 1}])
    missing = cli("labels", "import", str(file), "--dataset", "nope")
    assert missing.exit_code == 1 and "no dataset named 'nope'" in missing.stderr
    assert cli("labels", "import", str(file), "--dataset", "qa").exit_code == 0
    again = cli("labels", "import", str(file), "--dataset", "qa")
    assert again.exit_code == 1 and "a label set named 'ok' already exists" in again.stderr
    bad = write(
        tmp_path / "p.jsonl",
        [
            {"row": 0, "output_a": "x", "preferred": "a"},
            {"row": 0, "output_a": "x", "output_b": "y", "preferred": 3},
        ],
    )
    err = " ".join(cli("labels", "import", str(bad), "--dataset", "qa").stderr.split())
    assert "line 1: output_b: missing (expected text or an assistant message)" in err
    assert 'line 2: preferred: expected "a", "b" or "tie" (or "A", "B", 1, 2), got 3' in err
    empty = write(tmp_path / "empty.jsonl", [""])
    assert "holds no labels" in cli("labels", "import", str(empty), "--dataset", "qa").stderr
    unknown = cli("labels", "show", "okk")
    assert unknown.exit_code == 1 and "did you mean 'ok'?" in unknown.stderr
    assert _counts(store) == (1, 1)
