"""``assay dataset from-run`` and the training exports, end to end: real run groups executed by
the engine against the fake LLM server (``SCORE_HINT`` in an output makes the judge give that
score), a real store on SQLite and Postgres, the CLI runner.

The group: 9 rows. The captured answers are the baseline and score 2 on even rows, 8 on odd
ones; row 8 has no captured answer (its baseline output fails). Candidates, in run order:
``meh`` (6 everywhere), ``good`` and ``twin`` (9 everywhere: a tie). The eval dataset
``holdout`` shares row 0's conversation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from assay.datasets.export import export_dataset
from assay.datasets.from_run import create_dataset_from_run
from assay.datasets.from_run_select import Arm, Counts, Rule, choose
from assay.engine.groups import create_group
from assay.errors import ValidationError
from assay.stats.summary import RowOutcome
from assay.store import Store, open_store
from assay.store.models import Dataset, RubricVersion
from assay.web import create_app

API = "/api/v1"
ROWS = 9
TOOLS = [
    {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
]
HINTS = {"meh": 6, "good": 9, "twin": 9}


def _conversation(i: int) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": f"Question {i}: how do I reset my password?"},
    ]


def _line(i: int) -> dict[str, Any]:
    messages = _conversation(i)
    if i < ROWS - 1:
        score = 2 if i % 2 == 0 else 8
        messages.append({"role": "assistant", "content": f"Answer {i}. SCORE_HINT={score}"})
    line: dict[str, Any] = {"messages": messages, "metadata": {"tier": "pro" if i % 3 else "free"}}
    if i == 2:
        line["tools"] = TOOLS
    return line


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _pair(question: str, answer: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


def ok(cli: Any, *args: str) -> Any:
    result = cli(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout) if "--json" in args else result


def fails(cli: Any, *args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    return " ".join(result.stderr.split())


def rows(cli: Any, name: str) -> list[dict[str, Any]]:
    return ok(cli, "dataset", "rows", name, "--limit", "1000", "--json")


@pytest.fixture
def group(cli: Any, fake_llm: Any, tmp_path: Path) -> Any:
    """Run group 1 (captured baseline, meh, good, twin) executed; eval datasets ``support``
    (the group's) and ``holdout``; a training dataset ``other``."""
    ok(cli, "dataset", "import", str(_write(tmp_path / "s.jsonl", [_line(i) for i in range(ROWS)])),
       "--name", "support")  # fmt: skip
    holdout = [
        {"messages": [*_conversation(0), {"role": "assistant", "content": "Held out."}]},
        _pair("Unrelated", "x"),
    ]  # fmt: skip
    ok(cli, "dataset", "import", str(_write(tmp_path / "h.jsonl", holdout)), "--name", "holdout")
    ok(cli, "dataset", "import", str(_write(tmp_path / "o.jsonl", holdout)), "--name", "other",
       "--type", "training")  # fmt: skip
    template = tmp_path / "plain.jinja"
    template.write_text("Rate the answer.\n{{ eval_model_response }}\n")
    ok(cli, "rubric", "create", "plain", "--file", str(template))
    for name in (*HINTS, "judge"):
        ok(cli, "model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name)
    for name, hint in HINTS.items():
        fake_llm.configure(name, score_hint=hint, tool_calls=False)
    ok(cli, "eval", "create", "sup", "--dataset", "support", "--rubric", "plain",
       "--judge", "judge", "--with-captured", "--candidate", "meh", "--candidate", "good",
       "--candidate", "twin")  # fmt: skip
    ok(cli, "run", "start", "sup")
    return cli


def build(cli: Any, name: str, *args: str) -> dict[str, Any]:
    return ok(cli, "dataset", "from-run", "1", "--name", name, "--keep-eval", "holdout", *args,
              "--json")  # fmt: skip


# --- selection ---------------------------------------------------------------------------------


def test_sft_takes_the_best_output_for_rows_the_baseline_scored_low(group: Any) -> None:
    cli = group
    report = build(cli, "fix")
    counts = {k: report[k] for k in ("considered", "failed", "below_threshold", "no_target",
                                      "overlap_removed", "written")}  # fmt: skip
    # Rows 0, 2, 4, 6 scored 2; row 8 failed (no captured answer); row 0 is in holdout.
    assert counts == {"considered": 9, "failed": 1, "below_threshold": 4, "no_target": 0,
                      "overlap_removed": 1, "written": 3}  # fmt: skip
    assert report["model"] == "captured" and report["below"] == 5.5
    info = report["dataset"]
    assert (info["type"], info["provenance"], info["row_count"]) == ("training", "derived", 3)
    assert info["filter"] == {"group": 1, "model": "captured", "below": 5.5, "format": "sft",
                              "keep_eval": "holdout"}  # fmt: skip

    source = {r["position"]: r for r in rows(cli, "support")}
    written = rows(cli, "fix")
    assert [r["metadata"]["provenance"]["row"] for r in written] == [2, 4, 6]
    for row in written:
        prov = row["metadata"]["provenance"]
        original = source[prov["row"]]
        assert row["messages"] == original["messages"]
        assert row["content_hash"] == original["content_hash"]
        assert row["tools"] == original["tools"]
        assert row["metadata"]["tier"] == original["metadata"]["tier"]
        # good and twin tie at 9: the earlier run (good) wins, and the provenance says so.
        assert row["reference"]["role"] == "assistant"
        assert row["reference"]["content"].startswith("[good] ")
        assert prov["chosen"]["model"] == "good" and prov["chosen"]["score"] == 9
        assert "tied" in prov["chosen"]["why"]
        assert prov["rejected"] == {
            "model": "captured", "role": "baseline", "score": 2.0,
            "generation_id": prov["rejected"]["generation_id"],
            "why": "scored 2, below 5.5",
            "judge_reasoning": prov["rejected"]["judge_reasoning"],
        }  # fmt: skip
        assert prov["chosen"]["judge_reasoning"] and prov["rejected"]["judge_reasoning"]
        assert all("judged on" in text for text in prov["chosen"]["judge_reasoning"])
        assert [(a["model"], a["status"], a["score"]) for a in prov["arms"]] == [
            ("captured", "scored", 2.0), ("meh", "scored", 6.0), ("good", "scored", 9.0),
            ("twin", "scored", 9.0),
        ]  # fmt: skip
        fields = ("group_id", "dataset", "rubric", "rubric_version", "judge", "score_range")
        assert [prov[k] for k in fields] == [1, "support", "plain", 1, "judge", [1, 10]]
        assert "rejected" not in row["metadata"]  # an SFT row has no rejected output


def test_human_output_counts_every_step(group: Any) -> None:
    result = ok(group, "dataset", "from-run", "1", "--name", "fix", "--keep-eval", "holdout")
    out = " ".join(result.stdout.split())
    assert "Created training dataset 'fix' (sft) with 3 rows from run group 1" in out
    assert "no score for captured (failed, left out) │ 1" in out
    assert "also in 'holdout' (removed) │ 1" in out
    assert "written │ 3" in out
    assert "assay dataset export fix --format openai|trl" in result.stderr


def test_preference_pairs_the_low_output_with_the_best(group: Any) -> None:
    cli = group
    report = build(cli, "pairs", "--format", "preference")
    assert report["written"] == 3 and report["row_format"] == "preference"
    source = {r["position"]: r for r in rows(cli, "support")}
    for row in rows(cli, "pairs"):
        prov = row["metadata"]["provenance"]
        assert row["metadata"]["rejected"] == source[prov["row"]]["reference"]  # the captured
        assert row["reference"]["content"].startswith("[good] ")
        assert prov["chosen"]["score"] - prov["rejected"]["score"] == 7


def test_model_threshold_gap_and_no_target(group: Any) -> None:
    cli = group
    # meh scored 6 on every row: below 7 everywhere; good (9) beats the captured 8s and 2s.
    report = build(cli, "meh7", "--model", "meh", "--below", "7")
    assert (report["failed"], report["below_threshold"], report["no_target"]) == (0, 9, 0)
    assert report["overlap_removed"] == 1 and report["written"] == 8
    # With a gap of 4, only outputs scoring >= 10 would do: nothing qualifies, nothing is made.
    message = fails(cli, "dataset", "from-run", "1", "--name", "none", "--keep-eval", "holdout",
                    "--model", "meh", "--below", "7", "--min-gap", "4")  # fmt: skip
    assert "no row qualifies, so no dataset was created" in message
    assert "9 below 7, 9 without an output scoring ≥ 7 to learn from" in message
    # good never scores low.
    message = fails(cli, "dataset", "from-run", "1", "--name", "none", "--keep-eval", "holdout",
                    "--model", "good")  # fmt: skip
    assert "0 below 5.5" in message
    # The captured arm judged the references, and low: --use-reference does not bring them back.
    message = fails(cli, "dataset", "from-run", "1", "--name", "none", "--keep-eval", "holdout",
                    "--model", "meh", "--below", "9.5", "--use-reference")  # fmt: skip
    assert "9 below 9.5, 9 without an output scoring ≥ 9.5" in message


def test_use_reference_when_no_output_reaches_the_threshold(
    cli: Any, fake_llm: Any, tmp_path: Path
) -> None:
    lines = [_line(i) for i in range(4)]
    ok(cli, "dataset", "import", str(_write(tmp_path / "s.jsonl", lines)), "--name", "support")
    other = [
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}
    ]
    ok(cli, "dataset", "import", str(_write(tmp_path / "h.jsonl", other)), "--name", "holdout")
    template = tmp_path / "plain.jinja"
    template.write_text("Rate the answer.\n{{ eval_model_response }}\n")
    ok(cli, "rubric", "create", "plain", "--file", str(template))
    for name in ("meh", "weak", "judge"):
        ok(cli, "model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name)
    fake_llm.configure("meh", score_hint=3, tool_calls=False)
    fake_llm.configure("weak", score_hint=4, tool_calls=False)
    ok(cli, "eval", "create", "e", "--dataset", "support", "--rubric", "plain", "--judge", "judge",
       "--baseline", "meh", "--candidate", "weak")  # fmt: skip
    ok(cli, "run", "start", "e")
    without = fails(cli, "dataset", "from-run", "1", "--name", "t", "--keep-eval", "holdout")
    assert "4 without an output scoring ≥ 5.5" in without
    report = build(cli, "t", "--use-reference")
    assert report["written"] == 4 and report["no_target"] == 0
    support = rows(cli, "support")
    for row, original in zip(rows(cli, "t"), support, strict=True):
        assert row["reference"] == original["reference"]
        chosen = row["metadata"]["provenance"]["chosen"]
        assert (chosen["model"], chosen["score"], chosen["generation_id"]) == ("reference", None,
                                                                              None)  # fmt: skip
        assert "not scored in this group" in chosen["why"]


# --- refusals ----------------------------------------------------------------------------------


def test_zero_overlap_refusals_write_nothing(group: Any) -> None:
    cli = group
    message = fails(cli, "dataset", "from-run", "1", "--name", "t")
    assert "are rows of eval dataset 'support': training on them leaks that eval" in message
    assert "--keep-eval EVAL" in message
    message = fails(cli, "dataset", "from-run", "1", "--name", "t", "--keep-eval", "support")
    assert "that is the group's own eval dataset" in message
    message = fails(cli, "dataset", "from-run", "1", "--name", "t", "--keep-eval", "other")
    assert "--keep-eval other: expected an eval dataset, it is training" in message
    message = fails(cli, "dataset", "from-run", "1", "--name", "t", "--keep-eval", "holdut")
    assert "no dataset named 'holdut'; did you mean 'holdout'?" in message
    assert "t" not in [d["name"] for d in ok(cli, "dataset", "list", "--json")]


def test_bad_options_are_refused(group: Any) -> None:
    cli = group
    base = ["dataset", "from-run", "1", "--name", "t", "--keep-eval", "holdout"]
    assert "unknown --format 'dpo'" in fails(cli, *base, "--format", "dpo")
    assert "no model 'gpt' in this run group (models: captured, meh, good, twin)" in fails(
        cli, *base, "--model", "gpt"
    )
    assert "--below 1 is outside the rubric's range" in fails(cli, *base, "--below", "1")
    assert "--below 11 is outside" in fails(cli, *base, "--below", "11")
    assert "no run group 7" in fails(cli, "dataset", "from-run", "7", "--name", "t")
    ok(cli, *base)
    assert "a dataset named 't' already exists" in fails(cli, *base)


def test_unfinished_and_pairwise_groups_are_refused(
    group: Any, database_url: str, assay_home: Path
) -> None:
    with open_store(database_url, home=assay_home) as store:
        pending = create_group(store, "sup").id
        with pytest.raises(ValidationError, match=f"run group {pending} is not finished"):
            create_dataset_from_run(store, pending, "t", keep_eval="holdout")
        with store.session() as session:
            session.execute(update(RubricVersion).values(kind="pairwise"))
        with pytest.raises(ValidationError, match=r"pairwise rubric.*needs pointwise scores"):
            create_dataset_from_run(store, 1, "t", keep_eval="holdout")
        with store.session() as session:
            assert session.scalar(select(Dataset).where(Dataset.name == "t")) is None


# --- export ------------------------------------------------------------------------------------


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_message(message: Any, role: str | None = None) -> None:
    assert isinstance(message, dict) and message["role"] in ("system", "user", "assistant", "tool")
    assert role is None or message["role"] == role
    assert isinstance(message.get("content"), str) or message.get("tool_calls")


@pytest.mark.parametrize("fmt", ["openai", "trl"])
def test_sft_export_round_trips_through_import(group: Any, tmp_path: Path, fmt: str) -> None:
    cli = group
    build(cli, "fix")
    out = tmp_path / f"fix.{fmt}.jsonl"
    result = ok(cli, "dataset", "export", "fix", "--format", fmt, "-o", str(out))
    assert f"Exported 3 rows of 'fix' to {out} ({fmt} format)." in result.stderr
    stored = rows(cli, "fix")
    lines = _lines(out)
    for line, row in zip(lines, stored, strict=True):
        assert set(line) <= {"messages", "tools"}
        for message in line["messages"]:
            _check_message(message)
        _check_message(line["messages"][-1], "assistant")
        assert line["messages"] == [*row["messages"], row["reference"]]
        assert line.get("tools") == row["tools"]
    assert any("tools" in line for line in lines)  # row 2 carries its tools through

    ok(cli, "dataset", "import", str(out), "--name", "back", "--type", "training")
    keys = ("messages", "tools", "reference", "content_hash")
    assert [{k: r[k] for k in keys} for r in rows(cli, "back")] == [
        {k: r[k] for k in keys} for r in stored
    ]
    # Without -o the same lines go to stdout.
    piped = ok(cli, "dataset", "export", "fix", "--format", fmt)
    assert piped.stdout == out.read_text()


@pytest.mark.parametrize("fmt", ["openai", "trl"])
def test_preference_export_has_the_documented_shape(group: Any, tmp_path: Path, fmt: str) -> None:
    cli = group
    build(cli, "pairs", "--format", "preference")
    out = tmp_path / "pairs.jsonl"
    ok(cli, "dataset", "export", "pairs", "--format", fmt, "-o", str(out))
    stored = rows(cli, "pairs")
    for line, row in zip(_lines(out), stored, strict=True):
        if fmt == "openai":
            assert set(line) == {"input", "preferred_output", "non_preferred_output"}
            assert set(line["input"]) <= {"messages", "tools"}
            context, tools = line["input"]["messages"], line["input"].get("tools")
            chosen, rejected = line["preferred_output"], line["non_preferred_output"]
        else:
            assert set(line) <= {"prompt", "chosen", "rejected", "tools"}
            context, tools = line["prompt"], line.get("tools")
            chosen, rejected = line["chosen"], line["rejected"]
        for message in context:
            _check_message(message)
        assert len(chosen) == 1 and len(rejected) == 1
        _check_message(chosen[0], "assistant")
        _check_message(rejected[0], "assistant")
        assert context == row["messages"] and tools == row["tools"]
        assert chosen[0] == row["reference"] and rejected[0] == row["metadata"]["rejected"]
        assert chosen[0] != rejected[0]


def test_preference_round_trips_through_the_chat_format(group: Any, tmp_path: Path) -> None:
    cli = group
    build(cli, "pairs", "--format", "preference")
    out = tmp_path / "pairs.chat.jsonl"
    ok(cli, "dataset", "export", "pairs", "--format", "chat", "-o", str(out))
    ok(cli, "dataset", "import", str(out), "--name", "back", "--type", "training")

    def without_ids(name: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "id"} for r in rows(cli, name)]

    assert without_ids("back") == without_ids("pairs")  # provenance and rejected included


def test_training_export_refuses_rows_without_a_target(
    group: Any, tmp_path: Path, database_url: str, assay_home: Path
) -> None:
    cli = group
    out = tmp_path / "support.jsonl"
    message = fails(cli, "dataset", "export", "support", "--format", "openai", "-o", str(out))
    assert "1 of the 9 rows of 'support' have no reference, so there is no target" in message
    assert not out.exists()
    # An eval dataset whose rows all have a reference exports as SFT lines.
    ok(cli, "dataset", "export", "holdout", "--format", "trl", "-o", str(out))
    assert [list(line) for line in _lines(out)] == [["messages"], ["messages"]]
    expected = "expected one of chat, source, openai, trl"
    with (
        open_store(database_url, home=assay_home) as store,
        pytest.raises(ValidationError, match=expected),
    ):
        export_dataset(store, "holdout", out, "csv", force=True)


# --- the rule's tie-break, and the API -------------------------------------------------------


def _outcome(row_id: int, score: float | None, status: str = "scored") -> RowOutcome:
    return RowOutcome(row_id, row_id * 10, status, score, None, 0, 0, 0.0, 0.0, 0, 0)


def test_ties_go_to_the_baseline_then_run_order() -> None:
    def arm(label: str, role: str, order: int, score: float | None, status: str = "scored") -> Arm:
        return Arm(order + 1, label, role, order, {1: _outcome(1, score, status)}, captured=False)

    low = arm("low", "candidate", 3, 2)
    arms = [arm("a", "candidate", 1, 8), arm("base", "baseline", 0, 8), arm("b", "candidate", 2, 8),
            low, arm("broken", "candidate", 4, None, "judge_failed")]  # fmt: skip
    counts = Counts()
    pick = choose(Rule(low, arms, 5.5, False, 0.0), 1, True, counts)
    assert pick is not None and pick.chosen.model == "base" and "tied" in pick.chosen.reason
    assert pick.rejected.model == "low" and pick.rejected.score == 2
    # A gap of 7 needs 9 or more: nobody qualifies, and the row counts as without a target.
    assert choose(Rule(low, arms, 5.5, False, 7.0), 1, True, counts) is None
    assert (counts.below_threshold, counts.no_target, counts.failed) == (2, 1, 0)
    assert choose(Rule(arms[4], arms, 5.5, False, 0.0), 1, True, counts) is None
    assert counts.failed == 1


def test_api_builds_and_exports(group: Any, store: Store) -> None:
    with TestClient(create_app(store)) as client:
        body = {"group": 1, "name": "api", "keep_eval": "holdout", "format": "preference"}
        created = client.post(f"{API}/datasets/from-run", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["written"] == 3 and created.json()["row_format"] == "preference"
        again = client.post(f"{API}/datasets/from-run", json=body)
        assert again.status_code == 409 and again.json()["type"] == "already_exists"
        refused = client.post(f"{API}/datasets/from-run", json={"group": 1, "name": "x"})
        assert refused.status_code == 422 and "leaks that eval" in refused.json()["detail"]
        unknown = client.post(f"{API}/datasets/from-run", json={**body, "nope": 1})
        assert unknown.status_code == 422
        export = client.get(f"{API}/datasets/api/export", params={"format": "trl"})
        assert export.status_code == 200
        lines = [json.loads(line) for line in export.text.splitlines()]
        assert len(lines) == 3 and all({"prompt", "chosen", "rejected"} <= set(x) for x in lines)


def test_help_explains_the_rules(cli: Any) -> None:
    text = " ".join(ok(cli, "dataset", "from-run", "--help").stdout.split())
    for phrase in ("--keep-eval", "--below", "--use-reference", "--min-gap", "preference"):
        assert phrase in text
    text = " ".join(ok(cli, "dataset", "export", "--help").stdout.split())
    assert "openai" in text and "trl" in text and "stdout" in text
