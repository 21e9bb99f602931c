"""``assay gate`` and ``assay run baseline`` end to end: real run groups on the fake LLM server
(``score_hint`` makes a candidate clearly better, clearly worse or equal), a real store on
SQLite and Postgres, the CLI runner, every exit code and every report format."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from assay.engine.groups import create_group
from assay.store import open_store
from assay.store.models import RunGroup, Verdict
from tests_helpers import write_rows

ROWS = 40
HINTS = {"base": 6, "good": 9, "bad": 3, "same": 6}


@pytest.fixture
def setup(cli: Any, fake_llm: Any, tmp_path: Path) -> Any:
    """A 40-row eval dataset, a 1-10 rubric, four models with fixed judge scores, a judge, and
    evals: ``ok`` (good, same), ``mixed`` (good, bad), ``one`` (good only)."""
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    assert cli("dataset", "import", str(data), "--name", "mult").exit_code == 0
    assert cli("rubric", "create", "right", "--template", "correctness").exit_code == 0
    for name in (*HINTS, "judge"):
        result = cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name)
        assert result.exit_code == 0, result.stderr
    for name, candidates in (("ok", ["good", "same"]), ("mixed", ["good", "bad"]),
                             ("one", ["good"])):  # fmt: skip
        args = [x for c in candidates for x in ("--candidate", c)]
        result = cli(
            "eval", "create", name, "--dataset", "mult", "--rubric", "right", "--judge", "judge",
            "--baseline", "base", *args, "--seed", "3",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
    _hints(fake_llm)
    return cli


def _hints(fake_llm: Any, **overrides: float) -> None:
    for model, hint in {**HINTS, **overrides}.items():
        fake_llm.configure(model, score_hint=hint)


def _run(cli: Any, *args: str) -> None:
    result = cli("run", "start", *args)
    assert result.exit_code == 0, result.stderr


def _verdicts(database_url: str, home: Path) -> list[tuple[int, int, str]]:
    with open_store(database_url, home=home) as store, store.session() as s:
        rows = s.execute(select(Verdict.group_id, Verdict.run_id, Verdict.decision).order_by(
            Verdict.id)).all()  # fmt: skip
        return [tuple(r) for r in rows]


def _gate_json(cli: Any, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("gate", *args, "--format", "json", "--resamples", "2000")
    assert result.exit_code in (0, 1, 3), result.stderr
    return result.exit_code, json.loads(result.stdout)


def test_all_pass_exits_0_and_every_gate_appends_verdicts(
    setup: Any, database_url: str, assay_home: Path
) -> None:
    cli = setup
    _run(cli, "ok")
    result = cli("gate", "1", "--resamples", "2000")
    assert result.exit_code == 0, result.stderr
    assert "Assay gate: run group 1: PASS" in result.stdout
    assert "good" in result.stdout and "same" in result.stdout
    stored = _verdicts(database_url, assay_home)
    assert [(g, d) for g, _, d in stored] == [(1, "PASS"), (1, "PASS")]
    assert cli("gate", "1", "--resamples", "2000").exit_code == 0
    assert len(_verdicts(database_url, assay_home)) == 4
    with open_store(database_url, home=assay_home) as store, store.session() as s:
        verdict = s.scalars(select(Verdict).order_by(Verdict.id)).first()
        assert verdict is not None
        assert verdict.policy["margin"] == pytest.approx(0.45)
        assert verdict.reasons == []
        assert verdict.evidence["comparison"]["paired"]["n_pairs"] == ROWS
        assert {c["name"] for c in verdict.evidence["checks"]} >= {"non_inferiority"}


def test_fail_exits_1_with_json_report(setup: Any, database_url: str, assay_home: Path) -> None:
    cli = setup
    _run(cli, "mixed")
    code, data = _gate_json(cli, "1")
    assert code == 1
    assert data["decision"] == "FAIL" and data["exit_code"] == 1
    assert data["group"]["group_id"] == 1 and data["group"]["baseline"]["model"] == "base"
    good, bad = data["verdicts"]
    assert (good["model"], good["decision"], good["reasons"]) == ("good", "PASS", [])
    assert good["comparison"]["paired"]["mean_diff"] == pytest.approx(3.0)
    assert good["comparison"]["paired"]["wins"] == ROWS
    assert (good["comparison"]["paired"]["ci_low"], good["comparison"]["paired"]["ci_high"]) == (
        pytest.approx(3.0),
        pytest.approx(3.0),
    )
    assert bad["decision"] == "FAIL"
    assert bad["comparison"]["paired"]["mean_diff"] == pytest.approx(-3.0)
    assert bad["reasons"] == [
        "worse than the baseline beyond the margin: Δ -3.00, 95% CI [-3.00, -3.00] lies below -0.45"
    ]
    regressions = bad["comparison"]["top_regressions"]
    assert len(regressions) == 10 and all(r["diff"] == pytest.approx(-3.0) for r in regressions)
    assert bad["comparison"]["failures"]["candidate_failed"] == 0
    # Every stored verdict matches the report.
    decisions = [(d, v["run_id"]) for (_, _, d), v in zip(
        _verdicts(database_url, assay_home), data["verdicts"], strict=True)]  # fmt: skip
    assert [d for d, _ in decisions] == ["PASS", "FAIL"]
    assert [v["verdict_id"] for v in data["verdicts"]] == [1, 2]


def test_markdown_and_junit_and_output_file(setup: Any, tmp_path: Path) -> None:
    cli = setup
    _run(cli, "mixed")
    md = cli("gate", "1", "--format", "markdown", "--resamples", "2000")
    assert md.exit_code == 1
    lines = md.stdout.splitlines()
    assert lines[0] == "## ❌ Assay gate: run group 1: **FAIL**"
    header = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[header : header + 5]]
    assert cells[0] == ["model", "n", "mean", "Δ vs base (95% CI)", "win / tie / loss",
                        "failures", "verdict"]  # fmt: skip
    assert cells[2][0] == "base (baseline)"
    assert cells[3][:3] == ["good", "40", "9.00"]
    assert cells[3][3:] == ["+3.00 [+3.00, +3.00]", "40 / 0 / 0", "0/40 (0.0%)", "✅ PASS"]
    assert cells[4][0] == "bad" and cells[4][-1] == "❌ FAIL"
    assert "### ❌ bad: FAIL" in md.stdout
    assert "### Top regressions" in md.stdout and "`assay run row 1 " in md.stdout

    junit = cli("gate", "1", "--format", "junit", "--resamples", "2000")
    assert junit.exit_code == 1
    suite = ET.fromstring(junit.stdout).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "0")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["good"].find("failure") is None
    failure = cases["bad"].find("failure")
    assert failure is not None and "beyond the margin" in (failure.text or "")

    out = tmp_path / "report.md"
    written = cli("gate", "1", "--format", "markdown", "-o", str(out), "--resamples", "2000")
    assert written.exit_code == 1
    assert out.read_text().startswith("## ❌ Assay gate: run group 1")
    assert "Assay gate: run group 1: FAIL" in written.stdout  # the terminal summary
    assert "##" not in written.stdout
    plain = tmp_path / "report.txt"
    assert cli("gate", "1", "-o", str(plain), "--resamples", "2000").exit_code == 1
    assert plain.read_text().startswith("Assay gate: run group 1: FAIL\n")
    missing_dir = cli("gate", "1", "-o", str(tmp_path / "nope" / "r.md"))
    assert missing_dir.exit_code == 2 and "does not exist" in missing_dir.stderr


def test_too_few_rows_exits_3_with_rows_needed(setup: Any, tmp_path: Path) -> None:
    cli = setup
    _run(cli, "ok", "--sample-size", "10")
    result = cli("gate", "1", "--resamples", "2000")
    assert result.exit_code == 3, result.stderr
    assert "INCONCLUSIVE" in result.stdout
    assert "rerun with 30 rows: `assay run start ok --sample-size 30`" in result.stdout
    code, data = _gate_json(cli, "1")
    assert code == 3 and {v["decision"] for v in data["verdicts"]} == {"INCONCLUSIVE"}
    assert {v["rows_needed"] for v in data["verdicts"]} == {30}
    policy = tmp_path / "small.toml"
    policy.write_text("[default]\nmin_paired_rows = 10\n")
    assert cli("gate", "1", "--policy", str(policy), "--resamples", "2000").exit_code == 0


def test_straddling_interval_exits_3(setup: Any, fake_llm: Any, tmp_path: Path) -> None:
    """Without a hint the judge's scores vary by row, so the interval has width; a margin at
    its middle leaves it straddling."""
    cli = setup
    fake_llm.configure("good", score_hint=None)
    _run(cli, "one")
    _, data = _gate_json(cli, "1")
    paired = data["verdicts"][0]["comparison"]["paired"]
    assert paired["ci_low"] < paired["ci_high"]
    threshold = (paired["ci_low"] + paired["ci_high"]) / 2
    policy = tmp_path / "p.yaml"
    if threshold < 0:
        policy.write_text(f"default:\n  margin: {-threshold}\n")
    else:
        policy.write_text(f"default:\n  margin: 0\n  min_improvement: {threshold}\n")
    code, data = _gate_json(cli, "1", "--policy", str(policy))
    verdict = data["verdicts"][0]
    assert code == 3 and verdict["decision"] == "INCONCLUSIVE"
    assert any("straddles" in reason for reason in verdict["reasons"])
    assert verdict["rows_needed"] is None or verdict["rows_needed"] > 2


def test_failures_fail_the_gate(setup: Any, fake_llm: Any) -> None:
    cli = setup
    fake_llm.configure("good", rate_500=1.0, retry_after="0")
    _run(cli, "one", "--max-attempts", "1")
    code, data = _gate_json(cli, "1")
    assert code == 1
    verdict = data["verdicts"][0]
    assert verdict["decision"] == "FAIL"
    assert verdict["comparison"]["failures"]["candidate_failed"] == ROWS
    assert verdict["reasons"][:2] == [
        "failure rate 100.0% (40/40 rows) exceeds the maximum 20.0%",
        "failure rate 100.0% vs the baseline's 0.0%: a change of +100.0 points, above the "
        "allowed +5.0",
    ]
    assert verdict["comparison"]["paired"]["n_pairs"] == 0


def test_slices_and_protected_slices(setup: Any, tmp_path: Path) -> None:
    cli = setup
    _run(cli, "mixed")
    _, data = _gate_json(cli, "1", "--slice-by", "difficulty")
    assert data["group"]["slice_keys"] == ["difficulty"]
    good, bad = data["verdicts"]
    assert {(s["key"], s["value"]) for s in good["comparison"]["slices"]} == {
        ("difficulty", "easy"), ("difficulty", "hard"),
    }  # fmt: skip
    assert sum(s["comparison"]["n_pairs"] for s in good["comparison"]["slices"]) == ROWS
    assert not any(s["regresses"] for s in good["comparison"]["slices"])
    assert all(s["regresses"] for s in bad["comparison"]["slices"])
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "default:\n  margin: 5\n  protected_slices: [difficulty]\n"
        "candidates:\n  good:\n    protected_slices: [lang]\n"
    )
    code, data = _gate_json(cli, "1", "--policy", str(policy))
    good, bad = data["verdicts"]
    assert code == 1
    assert bad["decision"] == "FAIL"
    assert sorted(r.split(":")[0] for r in bad["reasons"]) == [
        "protected slice difficulty=easy regresses", "protected slice difficulty=hard regresses",
    ]  # fmt: skip
    assert good["decision"] == "INCONCLUSIVE"
    assert good["reasons"] == ["protected slice 'lang': no compared row has this key"]
    md = cli("gate", "1", "--policy", str(policy), "--format", "markdown")
    assert "### Slices" in md.stdout and "| bad | difficulty=hard | 20 |" in md.stdout


def test_judge_noise_with_repeated_judgments(setup: Any, tmp_path: Path) -> None:
    cli = setup
    _run(cli, "one", "--judge-samples", "2")
    policy = tmp_path / "p.yaml"
    policy.write_text("default:\n  max_noise_share: 0.5\n")
    code, data = _gate_json(cli, "1", "--policy", str(policy))
    noise = data["verdicts"][0]["comparison"]["noise"]
    assert noise is not None and noise["k"] == 2
    assert noise["mean_spread"] == 0  # the hinted judge always agrees with itself
    assert code == 0
    _run(cli, "one")  # one judgment per output: the noise limit cannot be checked
    code, data = _gate_json(cli, "2", "--policy", str(policy))
    assert code == 3 and data["verdicts"][0]["comparison"]["noise"] is None
    assert "--judge-samples 3" in data["verdicts"][0]["reasons"][0]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.yaml", "default:\n  margn: 0.3\n", "default.margn: unknown key"),
        ("p.toml", "[default]\nmargn = 0.3\n", "default.margn: unknown key"),
        ("p.yaml", "default:\n  margin: wide\n", "default.margin: expected a valid number"),
        ("p.toml", '[default]\nmax_failure_rate = "low"\n', "default.max_failure_rate: expected"),
        ("p.yaml", "default: [\n", "invalid YAML"),
        ("p.toml", "default = \n", "invalid TOML"),
    ],
)
def test_policy_errors_exit_2_and_store_nothing(
    setup: Any, tmp_path: Path, database_url: str, assay_home: Path,
    name: str, text: str, message: str,
) -> None:  # fmt: skip
    cli = setup
    _run(cli, "one", "--sample-size", "5")
    policy = tmp_path / name
    policy.write_text(text)
    result = cli("gate", "1", "--policy", str(policy))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: policy file {policy}")
    assert message in result.stderr
    assert result.stdout == ""
    assert _verdicts(database_url, assay_home) == []


def test_usage_errors_exit_2(
    setup: Any, tmp_path: Path, database_url: str, assay_home: Path
) -> None:
    cli = setup
    unknown = cli("gate", "9")
    assert unknown.exit_code == 2 and "Error: no run group 9" in unknown.stderr
    with open_store(database_url, home=assay_home) as store:
        create_group(store, "one")  # created, never executed
    pending = cli("gate", "1")
    assert pending.exit_code == 2
    assert "run group 1 is not finished (status pending)" in pending.stderr
    assert "assay run resume 1" in pending.stderr
    missing = cli("gate", "1", "--policy", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    bad_format = cli("gate", "1", "--format", "html")
    assert bad_format.exit_code == 2
    _run(cli, "one", "--sample-size", "5")
    few = cli("gate", "2", "--resamples", "10")
    assert few.exit_code == 2 and "--resamples must be at least 100" in few.stderr
    assert _verdicts(database_url, assay_home) == []


def test_baseline_marking_and_against_baseline(
    setup: Any, fake_llm: Any, database_url: str, assay_home: Path
) -> None:
    cli = setup
    _run(cli, "mixed")  # group 1
    none_yet = cli("gate", "1", "--against-baseline")
    assert none_yet.exit_code == 2
    assert "eval 'mixed' has no accepted baseline group" in none_yet.stderr
    assert "assay run baseline GROUP" in none_yet.stderr

    marked = cli("run", "baseline", "1")
    assert marked.exit_code == 0, marked.stderr
    assert "Run group 1 is now the accepted baseline of eval 'mixed'" in marked.stdout
    itself = cli("gate", "1", "--against-baseline")
    assert itself.exit_code == 2 and "itself the accepted baseline" in itself.stderr

    # A new release: the baseline model slipped a little, "good" got worse, "bad" better.
    _hints(fake_llm, base=6, good=5, bad=8)
    _run(cli, "mixed", "--no-cache")  # group 2
    code, data = _gate_json(cli, "2", "--against-baseline")
    assert data["group"]["group_id"] == 2 and data["group"]["baseline_group_id"] == 1
    assert data["group"]["baseline"]["group_id"] == 1
    by_model = {v["model"]: v for v in data["verdicts"]}
    assert set(by_model) == {"base", "good", "bad"}  # every arm of group 2, its baseline too
    diffs = {m: v["comparison"]["paired"]["mean_diff"] for m, v in by_model.items()}
    assert diffs == {"base": pytest.approx(0), "good": pytest.approx(-1), "bad": pytest.approx(2)}
    assert {m: v["decision"] for m, v in by_model.items()} == {
        "base": "PASS", "good": "FAIL", "bad": "PASS",
    }  # fmt: skip
    assert code == 1
    assert all(v["comparison"]["paired"]["n_pairs"] == ROWS for v in data["verdicts"])
    stored = _verdicts(database_url, assay_home)
    assert {g for g, _, _ in stored} == {2} and len(stored) == 3

    # Marking group 2 unmarks group 1.
    again = cli("run", "baseline", "2", "--json")
    assert json.loads(again.stdout) == {"group_id": 2, "eval": "mixed", "previous_group_id": 1}
    with open_store(database_url, home=assay_home) as store, store.session() as s:
        assert list(s.scalars(select(RunGroup.id).where(RunGroup.is_baseline))) == [2]
        assert s.scalar(select(func.count()).select_from(RunGroup)) == 2


def test_against_baseline_refuses_a_different_rubric_version(
    setup: Any, tmp_path: Path, database_url: str, assay_home: Path
) -> None:
    cli = setup
    _run(cli, "one", "--sample-size", "5")
    assert cli("run", "baseline", "1").exit_code == 0
    template = tmp_path / "v2.jinja"
    template.write_text("Rate the answer.\n{{ eval_model_response }}\n")
    assert cli("rubric", "edit", "right", "--file", str(template)).exit_code == 0
    assert cli("run", "rejudge", "1", "--rubric-version", "2").exit_code == 0  # group 2
    result = cli("gate", "2", "--against-baseline")
    assert result.exit_code == 2
    assert (
        "run group 2 cannot be compared with the accepted baseline group 1: different rubric "
        "'right' v1 vs 'right' v2"
    ) in result.stderr
    assert _verdicts(database_url, assay_home) == []


def test_run_baseline_errors(setup: Any, database_url: str, assay_home: Path) -> None:
    cli = setup
    unknown = cli("run", "baseline", "5")
    assert unknown.exit_code == 1 and "no run group 5" in unknown.stderr
    with open_store(database_url, home=assay_home) as store:
        create_group(store, "one")
    pending = cli("run", "baseline", "1")
    assert pending.exit_code == 1 and "is not finished" in pending.stderr
    with open_store(database_url, home=assay_home) as store, store.session() as s:
        assert s.scalar(select(func.count()).where(RunGroup.is_baseline)) == 0
