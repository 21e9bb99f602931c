"""``assay rubric calibrate`` on real human labels, with deterministic judges over real HTTP.

Pointwise: Topical-Chat coherence scores (USR annotations, via UniEval), read from
``../shared/data`` at test time (its terms forbid copying it here). Pairwise: LLMBar Natural
(MIT, copied into ``tests/data/llmbar`` with its notice).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from assay.rubrics.transcript import format_message_body
from assay.stats.agreement import pairwise_agreement, pointwise_agreement, to_scale
from assay.store import Store
from support.labeljudge import LabelJudge, length_score
from tests_helpers import write, write_rows

Cli = Callable[..., Result]


def _shared_data() -> Path:
    """The workplace's shared data folder: $ASSAY_SHARED_DATA, else ``shared/data`` beside the
    checkout, else the project machines' ``/work/shared/data`` (a CI clone may live elsewhere)."""
    if os.environ.get("ASSAY_SHARED_DATA"):
        return Path(os.environ["ASSAY_SHARED_DATA"])
    beside = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    machine = Path("/work/shared/data")
    return beside if beside.is_dir() or not machine.is_dir() else machine


SHARED = _shared_data()
TOPICAL_CHAT = SHARED / "unieval_human_scores" / "topical_chat.json"
LLMBAR = Path(__file__).parent / "data" / "llmbar" / "Natural.json"
TEMPLATE = (
    "Rate how coherent the response is with the dialogue, from 1 (incoherent) to 3.\n"
    "{{ conversation_context }}\n{{ eval_model_response }}\n"
)

needs_topical_chat = pytest.mark.skipif(
    not TOPICAL_CHAT.exists(),
    reason=f"the Topical-Chat human scores are not at {TOPICAL_CHAT} (shared data folder absent)",
)


@pytest.fixture
def judge() -> Iterator[LabelJudge]:
    server = LabelJudge()
    try:
        yield server
    finally:
        server.close()


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def _topical_chat(cli: Cli, tmp_path: Path) -> list[dict[str, Any]]:
    """Import the 60 dialogue contexts as a dataset (reference: the original reply), and
    return the 360 scored records with the dataset row each belongs to."""
    records = json.loads(TOPICAL_CHAT.read_text())
    contexts: dict[str, int] = {}
    lines = []
    for record in records:
        if record["source"] not in contexts:
            contexts[record["source"]] = len(contexts)
            turns = [t.strip() for t in record["source"].strip().split("\n") if t.strip()]
            roles = ["user" if (len(turns) - i) % 2 else "assistant" for i in range(len(turns))]
            messages = [{"role": "system", "content": f"Knowledge: {record['context']}"}]
            messages += [{"role": r, "content": t} for r, t in zip(roles, turns, strict=True)]
            lines.append({"messages": messages, "reference": None})
        record["row"] = contexts[record["source"]]
    _ok(cli("dataset", "import", str(write(tmp_path / "tc.jsonl", lines)), "--name", "tc"))
    return records


def _label_file(path: Path, records: list[dict[str, Any]]) -> Path:
    return write(
        path,
        [
            {
                "row": r["row"],
                "score": r["scores"]["coherence"],
                "output": r["system_output"],
                "annotator": "usr-mean-of-3",
                "metadata": {"system": r["system_id"]},
            }
            for r in records
        ],
    )


def _metrics(result: Result) -> dict[str, Any]:
    return json.loads(_ok(result).stdout)


@needs_topical_chat
@pytest.mark.slow
def test_pointwise_calibration_on_topical_chat_coherence(
    cli: Cli, store: Store, judge: LabelJudge, tmp_path: Path
) -> None:
    records = _topical_chat(cli, tmp_path)
    assert len(records) == 360
    _ok(cli("labels", "import", str(_label_file(tmp_path / "coherence.jsonl", records)),
            "--dataset", "tc"))  # fmt: skip
    template = tmp_path / "coherence.jinja"
    template.write_text(TEMPLATE)
    _ok(cli("rubric", "create", "coherence", "--file", str(template),
            "--score-min", "1", "--score-max", "3"))  # fmt: skip
    _ok(cli("model", "add", "length", "--base-url", judge.base_url, "--model-id", "length"))

    got = _metrics(cli("rubric", "calibrate", "coherence", "--labels", "coherence",
                       "--judge", "length", "--judge-samples", "2", "--json"))  # fmt: skip

    # What the length judge said, computed from the same outputs it was shown.
    said = [
        length_score(format_message_body({"role": "assistant", "content": r["system_output"]}))
        for r in records
    ]
    failed = sum(1 for s in said if s is None)
    assert 0 < failed < 360  # some prose answers, counted and left out
    human = [r["scores"]["coherence"] for r, s in zip(records, said, strict=True) if s is not None]
    scores = [s for s in said if s is not None]
    expected = pointwise_agreement(human, scores, human_range=(1, 3), scale=(1, 3))
    assert got["labels_total"] == 360
    assert got["labels_judged"] == 360 - failed and got["labels_failed"] == failed
    assert got["judgments"] == {
        "scored": 2 * (360 - failed),
        "judge_failed": 0,
        "judge_unparseable": 2 * failed,
    }
    assert got["label_scale"] == [1.0, 3.0] and got["rubric_scale"] == [1, 3]
    for name, metric in expected.items():
        assert got["metrics"][name] == metric.model_dump(), name
    assert got["metrics"]["spearman"]["n"] == 360 - failed
    calls = judge.total()
    assert calls == 720

    # Again: every scored judgment comes from the response cache; unparseable ones were not
    # cached and are asked again.
    again = _metrics(cli("rubric", "calibrate", "coherence", "--labels", "coherence",
                         "--judge", "length", "--judge-samples", "2", "--json"))  # fmt: skip
    assert judge.total() - calls == 2 * failed
    assert again["metrics"] == got["metrics"] and again["id"] == got["id"] + 1

    shown = _ok(cli("rubric", "show", "coherence"))
    assert "Calibrations against human labels" in shown.stdout
    assert f"spearman {got['metrics']['spearman']['value']:.3f}" in shown.stdout

    table = _ok(cli("rubric", "calibrate", "coherence", "--labels", "coherence", "--judge",
                    "length"))  # fmt: skip
    out = " ".join(table.stdout.split())
    assert f"Judged {360 - failed} of 360 labels ({failed} failed)" in out
    assert "weighted kappa (quadratic)" in out
    assert f"{expected['kappa'].value:.3f}" in out


@needs_topical_chat
def test_a_judge_returning_the_human_score_agrees_perfectly(
    cli: Cli, store: Store, judge: LabelJudge, tmp_path: Path
) -> None:
    records = _topical_chat(cli, tmp_path)[:60]  # the first dialogue's six systems and more
    for r in records:
        text = format_message_body({"role": "assistant", "content": r["system_output"]})
        judge.scores[text] = r["scores"]["coherence"]
    _ok(cli("labels", "import", str(_label_file(tmp_path / "gold.jsonl", records)),
            "--dataset", "tc"))  # fmt: skip
    template = tmp_path / "t.jinja"
    template.write_text(TEMPLATE)
    # A 1-3 rubric, like the human scale: the scale is the rubric's own.
    _ok(cli("rubric", "create", "c3", "--file", str(template), "--score-min", "1",
            "--score-max", "3"))  # fmt: skip
    _ok(cli("model", "add", "oracle", "--base-url", judge.base_url, "--model-id", "oracle"))
    got = _metrics(cli("rubric", "calibrate", "c3", "--labels", "gold", "--judge", "oracle",
                       "--json"))  # fmt: skip
    assert got["labels_judged"] == 60
    for name in ("spearman", "kendall", "exact", "within_1", "kappa"):
        assert got["metrics"][name]["value"] == pytest.approx(1.0), name


@needs_topical_chat
def test_labels_on_another_scale_are_mapped_onto_the_rubric(
    cli: Cli, store: Store, judge: LabelJudge, tmp_path: Path
) -> None:
    records = _topical_chat(cli, tmp_path)[:60]
    for r in records:
        text = format_message_body({"role": "assistant", "content": r["system_output"]})
        # The human score on the 1-10 scale, as a judge answers: a whole number.
        judge.scores[text] = to_scale(r["scores"]["coherence"], (1, 3), (1, 10))
    _ok(cli("labels", "import", str(_label_file(tmp_path / "gold.jsonl", records)),
            "--dataset", "tc"))  # fmt: skip
    template = tmp_path / "t.jinja"
    template.write_text(TEMPLATE)
    _ok(cli("rubric", "create", "c10", "--file", str(template)))  # 1-10
    _ok(cli("model", "add", "oracle", "--base-url", judge.base_url, "--model-id", "oracle"))
    out = _ok(cli("rubric", "calibrate", "c10", "--labels", "gold", "--judge", "oracle",
                  "--label-scale", "1-3"))  # fmt: skip
    text = " ".join(out.stdout.split())
    assert "Human scores 1-3 mapped linearly onto the rubric's 1-10 and rounded" in text
    got = _metrics(cli("rubric", "calibrate", "c10", "--labels", "gold", "--judge", "oracle",
                       "--label-scale", "1-3", "--json"))  # fmt: skip
    assert got["metrics"]["spearman"]["value"] == pytest.approx(1.0)
    assert got["metrics"]["exact"]["value"] == pytest.approx(1.0)
    assert got["label_scale_from"] == "given (--label-scale)"


def _llmbar(cli: Cli, tmp_path: Path, judge: LabelJudge) -> list[dict[str, Any]]:
    records = json.loads(LLMBAR.read_text())
    lines = [{"messages": [{"role": "user", "content": r["input"]}]} for r in records]
    _ok(cli("dataset", "import", str(write(tmp_path / "bar.jsonl", lines)), "--name", "bar"))
    labels = [
        {"row": i, "output_a": r["output_1"], "output_b": r["output_2"], "preferred": r["label"]}
        for i, r in enumerate(records)
    ]
    _ok(cli("labels", "import", str(write(tmp_path / "natural.jsonl", labels)), "-D", "bar"))
    _ok(cli("rubric", "create", "pref", "--kind", "pairwise"))
    for name in ("always-a", "oracle"):
        _ok(cli("model", "add", name, "--base-url", judge.base_url, "--model-id", name))
    for r in records:
        better = r[f"output_{r['label']}"]
        judge.better.add(format_message_body({"role": "assistant", "content": better}))
    return records


def test_pairwise_calibration_on_llmbar(
    cli: Cli, store: Store, judge: LabelJudge, tmp_path: Path
) -> None:
    records = _llmbar(cli, tmp_path, judge)
    human = ["a" if r["label"] == 1 else "b" for r in records]
    assert human.count("a") == 42

    biased = _metrics(cli("rubric", "calibrate", "pref", "--labels", "natural",
                          "--judge", "always-a", "--json"))  # fmt: skip
    expected = pairwise_agreement(human, ["a"] * 100, ["b"] * 100)
    assert biased["labels_judged"] == 100 and biased["judgments"]["scored"] == 200
    for name, metric in expected.items():
        assert biased["metrics"][name] == metric.model_dump(), name
    assert biased["metrics"]["pairwise_accuracy"]["value"] == 0.0  # no human ties
    assert biased["metrics"]["order_accuracy"]["value"] == 0.5
    assert biased["metrics"]["consistency"]["value"] == 0.0

    oracle = _metrics(cli("rubric", "calibrate", "pref", "--labels", "natural",
                          "--judge", "oracle", "--judge-samples", "2", "--json"))  # fmt: skip
    assert oracle["judgments"]["scored"] == 400
    for name in ("pairwise_accuracy", "order_accuracy", "consistency"):
        assert oracle["metrics"][name]["value"] == 1.0, name

    out = " ".join(_ok(cli("rubric", "show", "pref")).stdout.split())
    assert "pairwise_accuracy 1.000" in out and "pairwise_accuracy 0.000" in out


def test_calibrate_refuses_mismatched_kinds_and_bad_options(
    cli: Cli, store: Store, judge: LabelJudge, tmp_path: Path
) -> None:
    _llmbar(cli, tmp_path, judge)
    template = tmp_path / "t.jinja"
    template.write_text(TEMPLATE)
    _ok(cli("rubric", "create", "point", "--file", str(template)))
    mismatch = cli("rubric", "calibrate", "point", "--labels", "natural", "--judge", "oracle")
    assert mismatch.exit_code == 1
    assert "label set 'natural' holds pairwise labels but rubric 'point' v1 is pointwise" in (
        " ".join(mismatch.stderr.split())
    )
    bad = cli("rubric", "calibrate", "pref", "--labels", "natural", "--judge", "oracle",
              "--judge-samples", "0")  # fmt: skip
    assert bad.exit_code == 1 and "--judge-samples must be 1-20" in bad.stderr
    scale = cli("rubric", "calibrate", "point", "--labels", "natural", "--judge", "oracle",
                "--label-scale", "5")  # fmt: skip
    assert scale.exit_code == 1 and "expected MIN-MAX such as 1-5" in scale.stderr
    assert judge.total() == 0


def test_gate_policy_requires_a_calibrated_judge(
    cli: Cli, store: Store, fake_llm: Any, tmp_path: Path
) -> None:
    """No calibration: INCONCLUSIVE naming it; a good one: PASS; a newer poor one:
    INCONCLUSIVE again (the latest calibration of that version and judge counts)."""
    _ok(cli("dataset", "import", str(write_rows(tmp_path / "rows.jsonl", 40)), "--name", "mult"))
    _ok(cli("rubric", "create", "right", "--template", "correctness"))
    for name in ("base", "good", "judge"):
        _ok(cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name))
    fake_llm.configure("base", score_hint=6)
    fake_llm.configure("good", score_hint=9)
    _ok(cli("eval", "create", "ok", "--dataset", "mult", "--rubric", "right", "--judge", "judge",
            "--baseline", "base", "--candidate", "good", "--seed", "3"))  # fmt: skip
    _ok(cli("run", "start", "ok"))
    assert cli("gate", "1", "--resamples", "500").exit_code == 0  # no requirement: PASS
    policy = tmp_path / "policy.yaml"
    policy.write_text("default:\n  calibration: {metric: spearman, min: 0.5}\n")

    def gate() -> tuple[int, dict[str, Any]]:
        result = cli("gate", "1", "--policy", str(policy), "--format", "json",
                     "--resamples", "500")  # fmt: skip
        return result.exit_code, json.loads(result.stdout)

    code, report = gate()
    assert code == 3 and report["decision"] == "INCONCLUSIVE"
    reason = report["verdicts"][0]["reasons"][0]
    assert "rubric right v1 with judge judge has no calibration against human labels" in reason
    assert "assay rubric calibrate right --version 1 --judge judge --labels LABELS" in reason

    # Human scores the fake judge reproduces (it answers the SCORE_HINT in the output).
    scores = [1 + (i * 7) % 10 for i in range(20)]
    good = [
        {"row": i, "score": s, "output": f"{i * 3} SCORE_HINT={s}"} for i, s in enumerate(scores)
    ]
    _ok(cli("labels", "import", str(write(tmp_path / "agree.jsonl", good)), "-D", "mult"))
    _ok(cli("rubric", "calibrate", "right", "--labels", "agree", "--judge", "judge"))
    code, report = gate()
    assert code == 0 and report["decision"] == "PASS"
    check = report["verdicts"][0]["checks"][-1]
    assert check["name"] == "calibration" and check["status"] == "pass"
    assert "judge calibration spearman 1.000" in check["message"]

    reversed_ = [dict(line, score=11 - line["score"]) for line in good]
    _ok(cli("labels", "import", str(write(tmp_path / "disagree.jsonl", reversed_)), "-D", "mult"))
    _ok(cli("rubric", "calibrate", "right", "--labels", "disagree", "--judge", "judge"))
    code, report = gate()
    assert code == 3
    assert "judge calibration spearman -1.000" in report["verdicts"][0]["reasons"][0]
    assert "below the policy's minimum 0.5" in report["verdicts"][0]["reasons"][0]

    policy.write_text("default:\n  calibration: {metric: pairwise_accuracy, min: 0.5}\n")
    code, report = gate()
    assert (
        code == 3
        and "does not measure it (a pointwise calibration)" in (report["verdicts"][0]["reasons"][0])
    )
    policy.write_text("default:\n  calibration: {metric: kapa, min: 0.5}\n")
    result = cli("gate", "1", "--policy", str(policy))
    assert result.exit_code == 2 and "default.calibration.metric" in result.stderr
