"""The demo's second half: the rubric and its quick test, the run group, the verdict.

As in ``steps_traffic``, every number printed is read back from the store (the group's
summary, its rows, the stored verdict), not carried over from the work that produced it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from assay.demo.narrate import Narrator, call_text, clip, number, question_text
from assay.demo.steps_traffic import CANDIDATE, DATASET, JUDGE
from assay.engine.definitions import create_eval
from assay.engine.executor import RunProgress
from assay.engine.groups import create_group
from assay.engine.quicktest import quick_test
from assay.engine.results import ArmDetail, GroupSummary, group_summary, row_detail, rows_page
from assay.engine.runner import ExecutionOptions, check_input_warnings, execute_group
from assay.gate import run_gate
from assay.gate.verdict import list_verdicts
from assay.rubrics import create_rubric, get_rubric_version
from assay.rubrics.checkfile import spec_from_version
from assay.store import Store

RUBRIC = "bfcl-calls"
EVAL = "bfcl-demo"
CHECKS: dict[str, Any] = {
    "checks": [{"type": "tool_call_match", "expected": "metadata", "dots_as_underscores": True}],
    "combine": {"mode": "gate"},
}
# Short on purpose: a 270M judge on two cores reads every token of it for every row.
JUDGE_TEMPLATE = """\
You are grading one answer of a function-calling assistant.

# The conversation
{{ conversation_context }}

# The call production made (the answer key)
{{ conversation_response }}

# Response under test
{{ eval_model_response }}

# How to score
{{ score_max }}: the same function, with arguments that mean the same as the answer key's.
Lower for each argument that is wrong, missing or made up.
{{ score_min }}: no call, or a different function.
"""


def create_rubric_and_test(store: Store, say: Narrator) -> None:
    """A rubric with a deterministic tool-call check gating a judge prompt, quick-tested."""
    say.step("Write a rubric and quick-test it on one row")
    create_rubric(
        store,
        RUBRIC,
        text=JUDGE_TEMPLATE,
        description="BFCL calls: accepted answers first, then the judge",
        checks=CHECKS,
    )
    version = get_rubric_version(store, RUBRIC)
    spec = spec_from_version(version.checks, version.combine)
    assert spec is not None
    say.fact(
        f"rubric {version.rubric} v{version.version}, scores {version.score_min}-"
        f"{version.score_max}, check: tool_call_match against the row's accepted_calls "
        "(dots_as_underscores)"
    )
    say.fact(f"combine: {spec.describe()}")
    report = asyncio.run(quick_test(store, RUBRIC, DATASET, judge=JUDGE, model=CANDIDATE))
    row = report.rows[0]
    say.fact(f"quick test, row {row.row} of {DATASET}, {CANDIDATE} answering, {JUDGE} judging:")
    say.fact(f"  output: {call_text(row.output)}")
    for check in row.checks or []:
        verdict = "PASS" if check.passed else f"FAIL: {check.detail}"
        say.fact(f"  check {check.name}: {clip(verdict)}")
    judged = f"judge {number(row.judge_score, 1)}" if row.judge_called else "judge not asked"
    say.fact(f"  status {row.status}, score {number(row.score, 1)} ({judged})")
    if row.reasoning:
        say.fact(f"  reasoning: {clip(row.reasoning, 240)}")
    for warning in [*row.warnings, *report.warnings]:
        say.warn(f"  warning: {warning}")


class _Bars:
    """One progress bar per arm while the group runs."""

    def __init__(self, say: Narrator) -> None:
        self.progress = Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
            console=say.console,
        )
        self.tasks: dict[int, TaskID] = {}

    def update(self, runs: list[RunProgress]) -> None:
        for run in runs:
            if run.run_id not in self.tasks:
                self.tasks[run.run_id] = self.progress.add_task(
                    run.model, total=run.total, failed=0
                )
            self.progress.update(self.tasks[run.run_id], completed=run.done, failed=run.failed)


def run_group(store: Store, say: Narrator, rows: int) -> int:
    """An eval (captured production outputs as the baseline, the local model as the
    candidate), then one run group of it, executed here; the group's id."""
    say.step("Launch a run group: production (captured) vs the local model")
    create_eval(
        store,
        EVAL,
        dataset=DATASET,
        rubric=RUBRIC,
        judge=JUDGE,
        candidates=[CANDIDATE],
        with_captured=True,
        sample_size=rows,
        seed=0,
    )
    group = create_group(store, EVAL, name="demo")
    arms = ", ".join(f"{r.model} ({r.role})" for r in group.runs)
    say.fact(f"run group {group.id}: {group.sample_size} rows, arms {arms}, judge {group.judge}")
    for warning in check_input_warnings(store, group.id):
        say.warn(f"warning: {warning}")
    bars = _Bars(say)
    options = ExecutionOptions(max_concurrency=4, on_progress=bars.update)
    with bars.progress:
        asyncio.run(execute_group(store, group.id, options))
    return group.id


def show_summary(store: Store, say: Narrator, group_id: int) -> GroupSummary:
    say.step("Read the results")
    summary = group_summary(store, group_id)
    say.fact(f"run group {summary.id}: {summary.status}, {summary.sample_size} rows")
    for run in summary.runs:
        failed = run.generation_failed + run.judge_failed + run.judge_unparseable
        checks = ", ".join(f"{c.name} {c.passed}/{c.total}" for c in run.checks)
        diff = (
            f", mean difference vs baseline {run.mean_diff_vs_baseline:+.2f} "
            f"over {run.paired_rows} paired rows"
            if run.mean_diff_vs_baseline is not None
            else ""
        )
        say.fact(
            f"arm {run.model} ({run.role}): {run.scored} scored, {failed} failed "
            f"(generation {run.generation_failed}, judge {run.judge_failed}, unparseable "
            f"{run.judge_unparseable}), mean {number(run.mean_score)}; checks: {checks}{diff}"
        )
    show_failed_row(store, say, group_id)
    return summary


def show_failed_row(store: Store, say: Narrator, group_id: int) -> None:
    """The candidate's worst row: a failure if there is one, else its lowest score."""
    page = rows_page(store, group_id, model=CANDIDATE, status="failed", limit=1)
    kind = "a failed row"
    if not page.items:
        page = rows_page(store, group_id, model=CANDIDATE, sort="score", limit=1)
        kind = "the lowest-scoring row"
    if not page.items:
        say.fact("no candidate row to show")
        return
    detail = row_detail(store, group_id, page.items[0].row)
    say.fact(f"{kind} of {CANDIDATE}: row {detail.row} ({detail.metadata.get('bfcl_id')})")
    say.fact(f"  question: {question_text(detail.messages)}")
    for arm in detail.arms:
        _show_arm(say, arm)


def _show_arm(say: Narrator, arm: ArmDetail) -> None:
    say.fact(f"  {arm.model} ({arm.role}): {arm.status}, score {number(arm.score, 1)}")
    if arm.error:
        say.fact(f"    error: {clip(arm.error)}")
    if arm.output is not None:
        say.fact(f"    output: {call_text(arm.output)}")
    for judgment in arm.judgments:
        for check in judgment.checks or []:
            verdict = "PASS" if check["passed"] else f"FAIL: {check['detail']}"
            say.fact(f"    check {check['name']}: {clip(verdict)}")
        if judgment.reasoning:
            say.fact(f"    reasoning: {clip(judgment.reasoning, 240)}")
        if judgment.error:
            say.fact(f"    judge error: {clip(judgment.error)}")


def decide(store: Store, say: Narrator, group_id: int) -> str:
    """The gate under the default policy; the stored verdict's decision."""
    say.step("Decide: the gate's verdict")
    run_gate(store, group_id)  # stores one verdict per candidate
    stored = list_verdicts(store, group_id, limit=1)[0]
    paired = stored.evidence["comparison"]["paired"]
    interval = (
        f"[{paired['ci_low']:+.2f}, {paired['ci_high']:+.2f}]"
        if paired["ci_low"] is not None and paired["ci_high"] is not None
        else "-"
    )
    say.fact(
        f"{stored.model} vs baseline on {paired['n_pairs']} paired rows: mean "
        f"{number(paired['mean_candidate'])} vs {number(paired['mean_baseline'])}, difference "
        f"{number(paired['mean_diff'])} (95% CI {interval}), "
        f"wins/ties/losses {paired['wins']}/{paired['ties']}/{paired['losses']}"
    )
    say.decision(f"verdict (stored as verdict {stored.id})", stored.decision)
    for reason in stored.reasons:
        say.fact(f"  - {reason}")
    say.note(
        "the statistics are real; the judge is the 270M base model, so its scores are not "
        "meaningful: swap in an instruction-tuned judge for a real decision (docs/demo.md)"
    )
    return stored.decision
