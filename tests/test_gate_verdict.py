"""The verdict rules and the reports, on comparisons built by hand (no store, no server).

The statistics are the real functions on chosen scores, so each case is a situation a user
meets: clearly better, clearly worse, an interval straddling the margin, too few rows,
failures, a regressing protected slice, a noisy judge.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from assay.gate.policy import Policy, Thresholds, resolve
from assay.gate.report import ci_bar, render, to_junit, to_markdown
from assay.gate.verdict import (
    CandidateVerdict,
    GateResult,
    decide,
    exit_code,
    overall,
)
from assay.stats import noise, paired, power, slices
from assay.stats.compare import ArmCounts, CandidateComparison, GroupHeader, RowDiff


def _arm(model: str, role: str, rows: int, failed: int = 0, run_id: int = 2) -> ArmCounts:
    return ArmCounts(
        model=model, role=role, run_id=run_id, group_id=1, rows=rows, scored=rows - failed,
        generation_failed=failed, judge_failed=0, judge_unparseable=0, mean_score=None,
    )  # fmt: skip


def _header(rows: int, dataset_rows: int = 200, missing: list[str] | None = None) -> GroupHeader:
    return GroupHeader(
        group_id=1, baseline_group_id=1, eval="e1", dataset="mult", dataset_rows=dataset_rows,
        rubric="right", rubric_version=1, score_min=1, score_max=10, judge="judge",
        judge_samples=1, sample_size=rows, compared_rows=rows, seed=0, resamples=2000,
        level=0.95, slice_keys=["difficulty"], missing_slice_keys=missing or [],
        baseline=_arm("base", "baseline", rows, run_id=1),
    )  # fmt: skip


def _comparison(
    base: list[float],
    cand: list[float],
    *,
    base_failed: int = 0,
    cand_failed: int = 0,
    slice_scores: dict[tuple[str, str], tuple[list[float], list[float]]] | None = None,
    judge_noise: Any = None,
) -> CandidateComparison:
    """Scores on the paired rows; failed rows are extra rows, counted in the failure check."""
    rows = len(base) + max(base_failed, cand_failed)
    base_flags = [False] * len(base) + [i < base_failed for i in range(rows - len(base))]
    cand_flags = [False] * len(cand) + [i < cand_failed for i in range(rows - len(cand))]
    comparison = paired.paired_comparison(base, cand, resamples=2000)
    diffs = [
        RowDiff(row=i, baseline_score=b, candidate_score=c, diff=c - b)
        for i, (b, c) in enumerate(zip(base, cand, strict=True))
        if c < b
    ]
    return CandidateComparison(
        arm=_arm("cand", "candidate", rows, cand_failed),
        paired=comparison,
        failures=paired.failure_comparison(base_flags, cand_flags),
        slices=slices.slice_comparisons(slice_scores, resamples=2000) if slice_scores else [],
        noise=judge_noise,
        mde=None,
        rows_needed=None,
        top_regressions=sorted(diffs, key=lambda d: d.diff)[:10],
    )


def _verdict(c: CandidateComparison, rows: int | None = None, **policy: Any) -> CandidateVerdict:
    applied = resolve(Policy(default=Thresholds(**policy)), "cand", 1, 10, "test")
    header = _header(rows if rows is not None else c.failures.n_rows)
    return decide(c, header, applied)


def _result(verdicts: list[CandidateVerdict], rows: int = 40) -> GateResult:
    return GateResult(
        decision=overall(verdicts),
        exit_code=exit_code(verdicts),
        policy_source="defaults",
        warnings=[],
        group=_header(rows),
        verdicts=verdicts,
    )


STRADDLE = [4.0, 6.0, 5.0, 4.0] * 10  # vs all-5 baseline: mean -0.25, CI about [-0.5, 0.0]


def test_better_and_equal_pass() -> None:
    better = _verdict(_comparison([5.0] * 40, [8.0] * 40))
    assert better.decision == "PASS" and better.reasons == []
    assert {c.name: c.status for c in better.checks} == {
        "failure_rate": "pass", "failure_increase": "pass", "paired_rows": "pass",
        "non_inferiority": "pass",
    }  # fmt: skip
    assert better.rows_needed is None and better.rerun_sample_size is None
    equal = _verdict(_comparison([5.0] * 40, [5.0] * 40))
    assert equal.decision == "PASS"
    assert "lies above the non-inferiority margin -0.45" in equal.checks[3].message


def test_worse_beyond_margin_fails() -> None:
    v = _verdict(_comparison([6.0] * 40, [5.0] * 40))
    assert v.decision == "FAIL"
    assert v.reasons == [
        "worse than the baseline beyond the margin: Δ -1.00, 95% CI [-1.00, -1.00] lies below -0.45"
    ]


def test_straddling_interval_is_inconclusive_with_rows_needed() -> None:
    c = _comparison([5.0] * 40, STRADDLE)
    assert c.paired.ci_low < -0.45 < c.paired.ci_high
    v = _verdict(c)
    assert v.decision == "INCONCLUSIVE"
    expected = power.rows_needed_noninferiority(c.paired.sd_diff, 0.0, 0.2)
    assert expected is not None and expected > 40
    assert v.rows_needed == expected and v.rerun_sample_size == expected
    assert "straddles the non-inferiority margin -0.45: not settled yet" in v.reasons[0]
    assert (
        v.reasons[-1]
        == f"rerun with {expected} rows: `assay run start e1 --sample-size {expected}`"
    )
    # A wider margin settles it.
    assert _verdict(c, margin=0.6).decision == "PASS"


def test_rows_needed_beyond_the_dataset_says_so() -> None:
    c = _comparison([5.0] * 40, STRADDLE)
    applied = resolve(None, "cand", 1, 10, "defaults")
    v = decide(c, _header(40, dataset_rows=50), applied)
    assert "dataset 'mult' has only 50 rows" in v.reasons[-1]


def test_too_few_rows_is_inconclusive_even_when_clear() -> None:
    v = _verdict(_comparison([5.0] * 10, [9.0] * 10))
    assert v.decision == "INCONCLUSIVE"
    assert v.reasons[0] == "10 paired rows (scored by both arms); the policy needs at least 30"
    assert v.rows_needed == 30 and v.rerun_sample_size == 30
    assert _verdict(_comparison([5.0] * 10, [9.0] * 10), min_paired_rows=10).decision == "PASS"
    # Evidence of failure still fails with few rows.
    failing = _verdict(_comparison([5.0] * 10, [9.0] * 10, cand_failed=5))
    assert failing.decision == "FAIL"


def test_failures_fail_with_every_reason() -> None:
    v = _verdict(_comparison([5.0] * 40, [4.0] * 40, cand_failed=12))
    assert v.decision == "FAIL"
    assert v.reasons == [
        "failure rate 23.1% (12/52 rows) exceeds the maximum 20.0%",
        "failure rate 23.1% vs the baseline's 0.0%: a change of +23.1 points, above the allowed "
        "+5.0",
        "worse than the baseline beyond the margin: Δ -1.00, 95% CI [-1.00, -1.00] lies "
        "below -0.45",
    ]
    # An increase alone, under the maximum rate.
    v = _verdict(_comparison([5.0] * 40, [5.0] * 40, cand_failed=4), max_failure_increase=0.05)
    assert v.decision == "FAIL"
    assert [c.name for c in v.checks if c.status == "fail"] == ["failure_increase"]
    assert (
        _verdict(
            _comparison([5.0] * 40, [5.0] * 40, cand_failed=4), max_failure_increase=0.1
        ).decision
        == "PASS"
    )


def test_required_improvement() -> None:
    slightly = _comparison([5.0] * 40, [5.0] * 20 + [6.0] * 20)  # +0.5, CI about [0.35, 0.65]
    assert _verdict(slightly, min_improvement=0.2).decision == "PASS"
    v = _verdict(slightly, min_improvement=1.0)
    assert v.decision == "FAIL"
    assert v.reasons[0].startswith("not the required improvement: Δ +0.50")
    v = _verdict(slightly, min_improvement=0.5)
    assert v.decision == "INCONCLUSIVE" and v.rows_needed is None  # the mean sits on it


def test_protected_slices() -> None:
    scores = {
        ("difficulty", "easy"): ([5.0] * 20, [5.0] * 20),
        ("difficulty", "hard"): ([7.0] * 20, [2.0, 3.0] * 10),
    }
    c = _comparison([5.0] * 20 + [7.0] * 20, [5.0] * 20 + [2.0, 3.0] * 10, slice_scores=scores)
    v = _verdict(c, protected_slices=["difficulty"], margin=5.0)
    assert v.decision == "FAIL"
    assert len(v.reasons) == 1
    assert v.reasons[0].startswith("protected slice difficulty=hard regresses: Δ -4.50 over 20")
    # Unprotected, the same slice does not fail the candidate.
    assert _verdict(c, margin=5.0).decision == "PASS"
    applied = resolve(Policy(default=Thresholds(protected_slices=["lang"])), "cand", 1, 10, "t")
    missing = decide(_comparison([5.0] * 40, [6.0] * 40), _header(40, missing=["lang"]), applied)
    assert missing.decision == "INCONCLUSIVE"
    assert missing.reasons == ["protected slice 'lang': no compared row has this key"]


def _noise(share: float | None) -> Any:
    return noise.JudgeNoise(
        k=3, outputs=80, mean_spread=0.5, disagreement_rate=0.2,
        noise_sd_of_mean_diff=0.1, noise_share=share,
    )  # fmt: skip


def test_judge_noise_limit() -> None:
    unmeasured = _verdict(_comparison([5.0] * 40, [6.0] * 40), max_noise_share=0.3)
    assert unmeasured.decision == "INCONCLUSIVE"
    assert "rerun with --judge-samples 3" in unmeasured.reasons[0]
    noisy = _verdict(
        _comparison([5.0] * 40, [6.0] * 40, judge_noise=_noise(0.5)), max_noise_share=0.3
    )
    assert noisy.decision == "FAIL"
    assert noisy.reasons == ["judge-noise share 50.0% exceeds the maximum 30.0%"]
    quiet = _verdict(
        _comparison([5.0] * 40, [6.0] * 40, judge_noise=_noise(0.1)), max_noise_share=0.3
    )
    assert quiet.decision == "PASS"


def test_overall_and_exit_codes() -> None:
    passing = _verdict(_comparison([5.0] * 40, [6.0] * 40))
    failing = _verdict(_comparison([6.0] * 40, [5.0] * 40))
    unsure = _verdict(_comparison([5.0] * 40, STRADDLE))
    assert exit_code([passing]) == 0
    assert exit_code([passing, failing, unsure]) == 1
    assert exit_code([passing, unsure]) == 3
    assert overall([passing, unsure]) == "INCONCLUSIVE"


def test_ci_bar_marks_zero_margin_and_interval() -> None:
    v = _verdict(_comparison([5.0] * 40, [7.0] * 40))
    bar = ci_bar(v, half=2.5, width=41)
    assert len(bar) == 41
    assert bar[20] == "|"  # zero in the middle
    assert bar[round((2.5 - 0.45) / 5 * 40)] == ":"  # -margin
    assert bar[round(4.5 / 5 * 40)] == "o"  # mean +2 (the interval is a point here)
    wide = _verdict(_comparison([5.0] * 40, STRADDLE))
    bar = ci_bar(wide, half=1.0, width=41)
    assert bar.count("[") == 1 and bar.count("]") == 1 and "o" in bar
    assert bar.index("[") < bar.index("o") < bar.index("]")


def _three() -> GateResult:
    passing = _verdict(_comparison([5.0] * 40, [6.0] * 40))
    failing = _verdict(_comparison([6.0] * 40, [5.0, 4.0] * 20))
    failing.model = "worse"
    unsure = _verdict(_comparison([5.0] * 40, STRADDLE))
    unsure.model = "unsure"
    return _result([passing, failing, unsure])


def test_markdown_report() -> None:
    text = to_markdown(_three())
    lines = text.splitlines()
    assert lines[0] == "## ❌ Assay gate: run group 1: **FAIL**"
    start = lines.index(next(line for line in lines if line.startswith("| model | n |")))
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start:]]
    assert table[0][:3] == ["model", "n", "mean"]
    rows = {row[0]: row for row in table[2:6]}
    assert rows["cand"][1] == "40" and rows["cand"][3] == "+1.00 [+1.00, +1.00]"
    assert rows["cand"][4] == "40 / 0 / 0" and rows["cand"][6] == "✅ PASS"
    assert rows["worse"][6] == "❌ FAIL" and rows["unsure"][6] == "⚠️ INCONCLUSIVE"
    assert "### ❌ worse: FAIL" in text and "### ⚠️ unsure: INCONCLUSIVE" in text
    assert "- rerun with" in text
    assert "### Top regressions" in text and "`assay run row 1 " in text
    assert "```text" in text


def test_junit_report() -> None:
    root = ET.fromstring(to_junit(_three()))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {"cand", "worse", "unsure"}
    assert cases["cand"].find("failure") is None and cases["cand"].find("skipped") is None
    failure = cases["worse"].find("failure")
    assert failure is not None and "beyond the margin" in failure.get("message", "")
    skipped = cases["unsure"].find("skipped")
    assert skipped is not None and skipped.get("message", "").startswith("INCONCLUSIVE: ")


def test_json_and_text_reports() -> None:
    result = _three()
    data = json.loads(render(result, "json"))
    assert data["decision"] == "FAIL" and data["exit_code"] == 1
    assert [v["decision"] for v in data["verdicts"]] == ["PASS", "FAIL", "INCONCLUSIVE"]
    first = data["verdicts"][0]
    assert first["comparison"]["paired"]["mean_diff"] == 1.0
    assert first["policy"]["margin"] == pytest.approx(0.45)
    assert GateResult.model_validate(data) == result
    text = render(result, "text")
    assert text.startswith("Assay gate: run group 1: FAIL\n")
    assert "worse: FAIL" in text and "  - worse than the baseline beyond the margin" in text
    with pytest.raises(ValueError, match="unknown format"):
        render(result, "html")
