"""Calibrate a rubric version and a judge against human labels, and keep the result.

``calibrate`` judges every labelled output with the pinned rubric version and judge, exactly
as a run group would (``engine.calls.JudgeCaller`` for pointwise rubrics, ``judge_pair`` in
both orders for pairwise ones; the response cache is read and written, temperature 0 and a
seed), then measures agreement with the humans (``stats.agreement``) and stores a
``Calibration`` row for that version and judge. A gate policy can then require one.

Pointwise: the judge's score for a label is the mean of its scored samples (``k`` per label);
failed and unparseable judgments are counted and left out, never scored, and a label with no
scored sample is left out of every metric. Human scores on another scale than the rubric's
are mapped linearly onto the rubric's range (then rounded to the nearest integer) for exact,
within-1 and kappa; correlations use the raw numbers (they are scale-free).

Pairwise: each label's pair is judged with output A first and with B first (``k`` samples
per order); a label where either order has no usable answer is left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from assay.engine.calls import JudgeCaller, RowData, load_rows
from assay.errors import ValidationError
from assay.labels.service import label_set_by_name
from assay.providers import ModelCaller, get_model
from assay.providers.endpoints import ModelInfo
from assay.rubrics.pairwise import judge_pair, order_verdict
from assay.stats.agreement import (
    DEFAULT_RESAMPLES,
    METRICS,
    Metric,
    pairwise_agreement,
    pointwise_agreement,
)
from assay.store import Store
from assay.store.lookup import rubric_version
from assay.store.models import Calibration, Label, ModelEndpoint, Rubric, RubricVersion

MAX_JUDGE_SAMPLES = 20
DEFAULT_CONCURRENCY = 8
_SAMPLE_KEYS = ("status", "score", "judge_score", "reasoning", "error")

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(labels_done, labels_total)`` after each label."""


class CalibrationInfo(BaseModel):
    """A stored calibration, as the CLI, the API, the rubric page and the gate read it."""

    id: int
    rubric: str
    rubric_version: int
    judge: str
    label_set: str
    kind: str  # pointwise | pairwise
    judge_samples: int
    labels_total: int
    labels_judged: int
    labels_failed: int
    judgments: dict[str, int]  # scored / judge_failed / judge_unparseable
    metrics: dict[str, Metric]
    label_scale: list[float] | None  # pointwise: the human scale mapped from
    label_scale_from: str | None  # how that scale was chosen, in words
    rubric_scale: list[int] | None
    created_at: datetime


async def calibrate(
    store: Store,
    rubric: str,
    *,
    labels: str,
    judge: str,
    version: int | None = None,
    judge_samples: int = 1,
    concurrency: int = DEFAULT_CONCURRENCY,
    label_scale: tuple[float, float] | None = None,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    progress: ProgressCallback | None = None,
) -> CalibrationInfo:
    """Judge every label of ``labels`` with the rubric version and ``judge``, measure the
    agreement and store it (see the module docstring). ``label_scale`` is the range of the
    human scores (default: the rubric's when every score fits in it, else the labels' own
    lowest and highest)."""
    if not 1 <= judge_samples <= MAX_JUDGE_SAMPLES:
        raise ValidationError(f"--judge-samples must be 1-{MAX_JUDGE_SAMPLES}, got {judge_samples}")
    if concurrency < 1:
        raise ValidationError(f"--concurrency must be at least 1, got {concurrency}")
    if label_scale is not None and not label_scale[0] < label_scale[1]:
        raise ValidationError(
            f"the label scale's low end must be below its high end: {label_scale}"
        )
    with store.session() as session:
        pinned = rubric_version(session, rubric, version)
        session.expunge(pinned)
        label_set = label_set_by_name(session, labels)
        set_name, kind = label_set.name, label_set.kind
        found = list(
            session.scalars(
                select(Label).where(Label.label_set_id == label_set.id).order_by(Label.position)
            )
        )
        for label in found:
            session.expunge(label)
    if pinned.kind != kind:
        raise ValidationError(
            f"label set {set_name!r} holds {kind} labels but rubric {rubric!r} v{pinned.version} "
            f"is {pinned.kind}; calibrate {kind} labels with a {kind} rubric"
        )
    if not found:
        raise ValidationError(f"label set {set_name!r} holds no labels")
    rows = load_rows(store, list({label.row_id for label in found}))
    judge_model = get_model(store, judge)
    caller = ModelCaller(judge_model, store, write_cache=False)
    run = _Calibrator(caller, judge_model, pinned, judge_samples, concurrency, seed, progress)
    try:
        if kind == "pointwise":
            results, entries = await run.pointwise(found, rows)
        else:
            results, entries = await run.pairwise(found, rows)
    finally:
        await caller.aclose()
    summary: dict[str, Any] = {"judgments": run.judgments, "seed": seed, "resamples": resamples}
    if kind == "pointwise":
        summary |= _pointwise_metrics(results, pinned, label_scale, seed, resamples)
    else:
        summary |= _pairwise_metrics(results, seed, resamples)
    judged = sum(1 for r in results if r["status"] == "judged")
    with store.session() as session:
        if caller.cache is not None:
            caller.cache.store_many([e for e in entries if e is not None], session)
        row = Calibration(
            rubric_version_id=pinned.id,
            judge_id=judge_model.id,
            label_set_id=found[0].label_set_id,
            kind=kind,
            judge_samples=judge_samples,
            labels_total=len(found),
            labels_judged=judged,
            metrics=summary,
            results=results,
        )
        session.add(row)
        session.flush()
        return _info(row, rubric, pinned.version, judge, set_name)


class _Calibrator:
    """Judges labels with bounded concurrency, counting every judgment by status."""

    def __init__(
        self,
        caller: ModelCaller,
        judge: ModelInfo,
        version: RubricVersion,
        samples: int,
        concurrency: int,
        seed: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.caller, self.judge, self.version = caller, judge, version
        self.samples, self.seed, self.progress = samples, seed, progress
        self.limit = asyncio.Semaphore(concurrency)
        self.judgments = {"scored": 0, "judge_failed": 0, "judge_unparseable": 0}
        self.done = 0

    def _tick(self, total: int) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, total)

    async def pointwise(
        self, labels: list[Label], rows: dict[int, RowData]
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        judge_caller = JudgeCaller(
            self.caller, self.version, int(self.judge.id or 0), dict(self.judge.params), self.seed
        )
        entries: list[Any] = []

        async def one(label: Label) -> dict[str, Any]:
            row = rows[label.row_id]
            output = label.output if label.output is not None else row.reference
            result: dict[str, Any] = {
                "label": label.position,
                "row": row.position,
                "human": label.score,
            }
            if output is None:
                self._tick(len(labels))
                why = "no output: the label has none and the row no reference"
                return result | {"status": "failed", "judge": None, "samples": [], "error": why}
            async with self.limit:
                outcomes = await asyncio.gather(
                    *(judge_caller.judge(row, output, i) for i in range(self.samples))
                )
            samples = []
            for outcome in outcomes:
                values = outcome.values
                self.judgments[values["status"]] = self.judgments.get(values["status"], 0) + 1
                entries.append(outcome.cache_entry)
                samples.append({key: values.get(key) for key in _SAMPLE_KEYS})
            scores = [s["score"] for s in samples if s["status"] == "scored"]
            self._tick(len(labels))
            if not scores:
                return result | {"status": "failed", "judge": None, "samples": samples}
            mean = sum(scores) / len(scores)
            return result | {"status": "judged", "judge": mean, "samples": samples}

        return list(await asyncio.gather(*(one(label) for label in labels))), entries

    async def pairwise(
        self, labels: list[Label], rows: dict[int, RowData]
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        entries: list[Any] = []

        async def one(label: Label) -> dict[str, Any]:
            row = rows[label.row_id]
            async with self.limit:
                outcome = await judge_pair(
                    self.caller, self.judge, self.version, row, label.output_a, label.output_b,
                    samples=self.samples, seed=self.seed,
                )  # fmt: skip
            by_order: dict[str, list[Any]] = {"A": [], "B": []}
            calls = []
            for r in outcome.results:
                self.judgments[r.status] = self.judgments.get(r.status, 0) + 1
                entries.append(r.cache_entry)
                if r.winner is not None:
                    by_order[r.a_position].append(r.winner)
                calls.append(
                    {
                        "a_position": r.a_position,
                        "status": r.status,
                        "winner": r.winner,
                        "reasoning": r.reasoning,
                        "error": r.error,
                    }
                )
            first, second = order_verdict(by_order["A"]), order_verdict(by_order["B"])
            self._tick(len(labels))
            return {
                "label": label.position,
                "row": row.position,
                "human": label.preferred,
                "status": "judged" if first is not None and second is not None else "failed",
                "first": first,  # output A shown first
                "second": second,  # output B shown first
                "judge": outcome.verdict,
                "flipped": outcome.flipped,
                "samples": calls,
            }

        return list(await asyncio.gather(*(one(label) for label in labels))), entries


def _pointwise_metrics(
    results: list[dict[str, Any]],
    version: RubricVersion,
    label_scale: tuple[float, float] | None,
    seed: int,
    resamples: int,
) -> dict[str, Any]:
    scale = (version.score_min, version.score_max)
    humans = [float(r["human"]) for r in results]
    if label_scale is not None:
        source, why = label_scale, "given (--label-scale)"
    elif all(scale[0] <= h <= scale[1] for h in humans):
        source, why = (float(scale[0]), float(scale[1])), "the rubric's range (every label fits)"
    else:
        source = (min(humans), max(humans))
        why = "the labels' lowest and highest score (some fall outside the rubric's range)"
        if source[0] == source[1]:
            source = (source[0], source[0] + 1)
    judged = [r for r in results if r["status"] == "judged"]
    metrics = pointwise_agreement(
        [r["human"] for r in judged],
        [r["judge"] for r in judged],
        human_range=source,
        scale=scale,
        resamples=resamples,
        seed=seed,
    )
    return {
        "values": {name: m.model_dump() for name, m in metrics.items()},
        "label_scale": list(source),
        "label_scale_from": why,
        "rubric_scale": list(scale),
    }


def _pairwise_metrics(results: list[dict[str, Any]], seed: int, resamples: int) -> dict[str, Any]:
    judged = [r for r in results if r["status"] == "judged"]
    metrics = pairwise_agreement(
        [r["human"] for r in judged],
        [r["first"] for r in judged],
        [r["second"] for r in judged],
        resamples=resamples,
        seed=seed,
    )
    return {"values": {name: m.model_dump() for name, m in metrics.items()}}


# --- reading -----------------------------------------------------------------------------------


def _info(row: Calibration, rubric: str, version: int, judge: str, labels: str) -> CalibrationInfo:
    summary = row.metrics or {}
    values = summary.get("values") or {}
    created = row.created_at or datetime.now(UTC)
    return CalibrationInfo(
        id=row.id,
        rubric=rubric,
        rubric_version=version,
        judge=judge,
        label_set=labels,
        kind=row.kind,
        judge_samples=row.judge_samples,
        labels_total=row.labels_total,
        labels_judged=row.labels_judged,
        labels_failed=row.labels_total - row.labels_judged,
        judgments=summary.get("judgments") or {},
        metrics={name: Metric(**values[name]) for name in METRICS if name in values},
        label_scale=summary.get("label_scale"),
        label_scale_from=summary.get("label_scale_from"),
        rubric_scale=summary.get("rubric_scale"),
        created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
    )


def _query() -> Any:
    from assay.store.models import LabelSet

    return (
        select(Calibration, Rubric.name, RubricVersion.version, ModelEndpoint.name, LabelSet.name)
        .join(RubricVersion, RubricVersion.id == Calibration.rubric_version_id)
        .join(Rubric, Rubric.id == RubricVersion.rubric_id)
        .join(ModelEndpoint, ModelEndpoint.id == Calibration.judge_id)
        .join(LabelSet, LabelSet.id == Calibration.label_set_id)
    )


def list_calibrations(
    store: Store, rubric: str, version: int | None = None, *, all_versions: bool = False
) -> list[CalibrationInfo]:
    """The calibrations of one rubric version (default: the latest), or of every version with
    ``all_versions``; newest first."""
    with store.session() as session:
        pinned = rubric_version(session, rubric, version)
        query = _query().order_by(Calibration.id.desc())
        if all_versions:
            query = query.where(RubricVersion.rubric_id == pinned.rubric_id)
        else:
            query = query.where(Calibration.rubric_version_id == pinned.id)
        return [_info(*found) for found in session.execute(query)]


def latest_calibration(
    session: Session, rubric_version_id: int, judge_id: int
) -> CalibrationInfo | None:
    """The newest calibration of this rubric version with this judge, or None."""
    found = session.execute(
        _query()
        .where(Calibration.rubric_version_id == rubric_version_id, Calibration.judge_id == judge_id)
        .order_by(Calibration.id.desc())
        .limit(1)
    ).first()
    return _info(*found) if found is not None else None
