"""Quick test: a rubric on a handful of rows, before paying for a run group.

Generates (or takes the reference), runs the version's deterministic checks, judges, and
returns the exact judge prompt with the check results, the score and reasoning, plus warnings
for what makes a rubric untrustworthy: answers that do not parse, scores pinned to an end of
the range, reasoning that never refers to the response, rows lacking what a check reads.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from assay.engine.calls import CapturedArm, JudgeCaller, ModelArm, RowData, load_rows
from assay.errors import ValidationError
from assay.providers import ModelCaller, get_model
from assay.rubrics.checks import CheckResult
from assay.rubrics.judge import JudgePrompt, build_judge_prompt
from assay.rubrics.transcript import format_message_body
from assay.store import Store
from assay.store.lookup import dataset_by_name, rubric_version
from assay.store.models import DatasetRow

MAX_ROWS = 20
_WORD = re.compile(r"[A-Za-z0-9_]{4,}")


class QuickTestRow(BaseModel):
    row: int
    prompt: JudgePrompt | None
    output: dict[str, Any] | None
    output_source: str  # model name, or "reference"
    status: str  # scored | generation_failed | judge_failed | judge_unparseable
    score: float | None  # the final score (after the checks combine with the judge's)
    judge_score: float | None = None  # the judge's own; None when it was not asked
    checks: list[CheckResult] | None = None  # None when the version has no checks
    judge_called: bool = True
    reasoning: str | None
    raw_output: str | None
    error: str | None
    warnings: list[str]


class QuickTestReport(BaseModel):
    rubric: str
    rubric_version: int
    score_min: int
    score_max: int
    judge: str
    combine: str | None = None  # how checks and judge combine, in words (None: no checks)
    rows: list[QuickTestRow]
    warnings: list[str]


async def quick_test(
    store: Store,
    rubric: str,
    dataset: str,
    *,
    judge: str,
    model: str | None = None,
    positions: list[int] | None = None,
    version: int | None = None,
    use_reference: bool = False,
) -> QuickTestReport:
    if model is None and not use_reference:
        raise ValidationError("name a --model to generate with, or pass --reference")
    positions = positions or [0]
    if len(positions) > MAX_ROWS:
        raise ValidationError(f"a quick test takes at most {MAX_ROWS} rows; use a run group")
    with store.session() as session:
        pinned = rubric_version(session, rubric, version)
        if pinned.kind == "pairwise":
            raise ValidationError(
                f"rubric {rubric!r} v{pinned.version} is pairwise: it compares two outputs, and "
                "the quick test judges one; run a small run group instead (assay run start "
                "EVAL --sample-size 5), which judges each candidate against the baseline"
            )
        session.expunge(pinned)
        ds = dataset_by_name(session, dataset)
        ids = dict(
            session.execute(
                select(DatasetRow.position, DatasetRow.id).where(
                    DatasetRow.dataset_id == ds.id, DatasetRow.position.in_(positions)
                )
            ).all()
        )
        missing = [p for p in positions if p not in ids]
        if missing:
            raise ValidationError(
                f"dataset {dataset!r} has no row {missing[0]} (rows 0-{ds.row_count - 1})"
            )
    rows = load_rows(store, list(ids.values()))
    judge_model = get_model(store, judge)
    judge_caller = JudgeCaller(
        ModelCaller(judge_model, store), pinned, judge_model.id, params=dict(judge_model.params)
    )
    arm: CapturedArm | ModelArm = (
        CapturedArm() if use_reference else ModelArm(ModelCaller(get_model(store, model), store))
    )
    source = "reference" if use_reference else str(model)

    async def one(row: RowData) -> QuickTestRow:
        generated = await arm.generate(row)
        values = generated.values
        if values["status"] != "completed":
            return QuickTestRow(
                row=row.position, prompt=None, output=None, output_source=source,
                status="generation_failed", score=None, reasoning=None, raw_output=None,
                error=values.get("error"), warnings=[],
            )  # fmt: skip
        output = values["output"]
        outcome = await judge_caller.judge(row, output, 0)
        judged = outcome.values
        prompt = (
            build_judge_prompt(pinned, row.messages, row.reference, output, row.metadata)
            if outcome.judge_called
            else None
        )
        checks = judged.get("checks")
        result = QuickTestRow(
            row=row.position, prompt=prompt, output=output, output_source=source,
            status=judged["status"], score=judged.get("score"),
            judge_score=judged.get("judge_score"),
            checks=[CheckResult(**c) for c in checks] if checks is not None else None,
            judge_called=outcome.judge_called, reasoning=judged.get("reasoning"),
            raw_output=judged.get("raw_output"), error=judged.get("error"), warnings=[],
        )  # fmt: skip
        result.warnings = _row_warnings(result)
        if judge_caller.checks is not None:
            missing = judge_caller.checks.missing_inputs(row.reference is not None, row.metadata)
            result.warnings += [
                f"check {name!r} needs {need}, which this row lacks: the check fails"
                for name, need in missing
            ]
        return result

    try:
        results = await asyncio.gather(*(one(rows[ids[p]]) for p in positions))
    finally:
        await judge_caller.caller.aclose()
        if isinstance(arm, ModelArm):
            await arm.caller.aclose()
    return QuickTestReport(
        rubric=rubric,
        rubric_version=pinned.version,
        score_min=pinned.score_min,
        score_max=pinned.score_max,
        judge=judge,
        combine=judge_caller.checks.describe() if judge_caller.checks is not None else None,
        rows=list(results),
        warnings=_overall_warnings(list(results), pinned.score_min, pinned.score_max),
    )


def _row_warnings(result: QuickTestRow) -> list[str]:
    warnings = []
    if result.status == "judge_unparseable":
        warnings.append(f"the judge's answer could not be parsed: {result.error}")
    if result.status == "judge_failed":
        warnings.append(f"the judge call failed: {result.error}")
    if (
        result.judge_called
        and result.reasoning
        and result.output
        and not _mentions(result.reasoning, result.output)
    ):
        warnings.append("the judge's reasoning never refers to the response; it may be ignoring it")
    return warnings


def _mentions(reasoning: str, output: dict[str, Any]) -> bool:
    """Whether the reasoning shares any distinctive word with the response (or quotes it)."""
    response_words = {w.lower() for w in _WORD.findall(format_message_body(output))}
    reasoning_words = {w.lower() for w in _WORD.findall(reasoning)}
    if not response_words:
        return True  # an empty response cannot be quoted
    generic = {"response", "answer", "model", "assistant", "user", "this", "that", "with"}
    return bool((response_words - generic) & reasoning_words)


def _overall_warnings(results: list[QuickTestRow], low: int, high: int) -> list[str]:
    scores = [r.score for r in results if r.score is not None]
    if scores and all(s == high for s in scores):
        return [f"every row scored the maximum ({high}); the rubric may not discriminate"]
    if scores and all(s == low for s in scores):
        return [f"every row scored the minimum ({low}); check the rubric and the judge"]
    return []
