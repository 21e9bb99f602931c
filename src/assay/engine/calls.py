"""One unit of work each: produce an arm's output for a row, or judge one output.

These turn provider results and errors into the column values of a ``Generation`` or a
``Judgment`` (the failure taxonomy of DESIGN.md), and never raise for a failed call: a failed
row is a stored fact, not an exception.

A rubric version's deterministic checks run here, before the judge call, on every output
judged: their results go into ``Judgment.checks`` whatever the judge does, ``score`` is the
final combined score and ``judge_score`` the judge's own. In ``gate`` mode a failed check
skips the judge (the row scores the minimum); in ``checks_only`` mode the judge is never
called.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from assay.errors import AssayError
from assay.providers import ChatRequest, ModelCaller, ProviderError
from assay.providers.endpoints import ModelInfo
from assay.rubrics.checkfile import spec_from_version
from assay.rubrics.checks import CheckResult, ChecksSpec, run_checks, summarize_results
from assay.rubrics.judge import build_judge_prompt, judge_output_schema, parse_judge_output
from assay.rubrics.pairwise import a_position, judge_order
from assay.store import Store
from assay.store.models import DatasetRow, RubricVersion

JUDGE_PARAMS = {"temperature": 0, "seed": 0}
"""Judge defaults (DESIGN.md): deterministic where the provider allows it."""


@dataclass(frozen=True)
class RowData:
    id: int
    position: int
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    reference: dict[str, Any] | None
    metadata: dict[str, Any]


def load_rows(store: Store, row_ids: list[int]) -> dict[int, RowData]:
    def read(session: Session) -> dict[int, RowData]:
        return {
            r.id: RowData(r.id, r.position, r.messages, r.tools, r.reference, r.metadata_ or {})
            for r in session.scalars(select(DatasetRow).where(DatasetRow.id.in_(row_ids)))
        }

    return store.retrying(read)  # a read: safe to redo if the connection drops meanwhile


@dataclass
class Outcome:
    values: dict[str, Any]  # column values for the stored record
    cache_entry: Any = None  # a provider response to add to the cache in the same batch
    judge_called: bool = True  # False when the checks decided alone (no judge prompt sent)


class ArmCaller(Protocol):
    async def generate(self, row: RowData) -> Outcome: ...


@dataclass
class ModelArm:
    """Generates with a model endpoint, carrying the row's tools and the endpoint's params."""

    caller: ModelCaller

    async def generate(self, row: RowData) -> Outcome:
        # Stored rows were validated on import: skip re-validating their messages per call.
        request = ChatRequest.model_construct(messages=row.messages, tools=row.tools, params={})
        try:
            result = await self.caller.complete(request)
        except ProviderError as exc:
            return Outcome(
                {
                    "status": "generation_failed",
                    "error": str(exc),
                    "attempts": exc.attempts,
                }
            )
        return Outcome(
            {
                "status": "completed",
                "output": result.message,
                "latency_ms": result.latency_ms,
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
                "cost_usd": result.cost_usd,
                "attempts": result.attempts,
                "cached": result.cached,
            },
            self.caller.cache_entry(result),
        )


class CapturedArm:
    """The production baseline: the row's captured reference output, judged, not regenerated."""

    async def generate(self, row: RowData) -> Outcome:
        if row.reference is None:
            return Outcome(
                {"status": "generation_failed", "error": "no captured output for this row"}
            )
        return Outcome({"status": "completed", "output": row.reference, "cost_usd": 0.0})


@dataclass
class JudgeCaller:
    """Judges one output under the group's pinned rubric version with the group's judge."""

    caller: ModelCaller
    version: RubricVersion
    judge_id: int
    params: dict[str, Any] = field(default_factory=dict)  # the judge endpoint's own params
    seed: int = 0
    structured: bool = True

    def __post_init__(self) -> None:
        self.checks: ChecksSpec | None = spec_from_version(
            self.version.checks, self.version.combine
        )
        schema = judge_output_schema(self.version.score_min, self.version.score_max)
        if self.caller.model.provider == "local":
            # llama.cpp turns the schema into a grammar, so bounds there keep a small model's
            # score in range; hosted strict modes may refuse these keywords, so only here.
            bounds = {"minimum": self.version.score_min, "maximum": self.version.score_max}
            schema["properties"]["score"] |= bounds
        self._response_format = (
            {
                "type": "json_schema",
                "json_schema": {"name": "judgment", "schema": schema, "strict": True},
            }
            if self.structured
            else None
        )

    def write_cache(self, session: Session, entries: list[Any]) -> None:
        """Persist every arm's and the judge's fresh answers (one table, one statement)."""
        if self.caller.cache is not None:
            self.caller.cache.store_many(entries, session)

    async def judge(self, row: RowData, output: dict[str, Any], sample_index: int) -> Outcome:
        base: dict[str, Any] = {
            "rubric_version_id": self.version.id,
            "judge_id": self.judge_id,
            "sample_index": sample_index,
        }
        results: list[CheckResult] = []
        if self.checks is not None:
            results = run_checks(self.checks, output, row.reference, row.metadata)
            base["checks"] = [r.model_dump() for r in results]
            if not self.checks.needs_judge(results):
                return self._decided_by_checks(base, results)
        outcome = await self._ask_judge(row, output, sample_index, base)
        values = outcome.values
        if values["status"] == "scored":
            values["judge_score"] = values["score"]
            if self.checks is not None:
                values["score"] = self.checks.final_score(
                    results, values["score"], self.version.score_min, self.version.score_max
                )
        return outcome

    def _decided_by_checks(self, base: dict[str, Any], results: list[CheckResult]) -> Outcome:
        assert self.checks is not None
        score = self.checks.final_score(
            results, None, self.version.score_min, self.version.score_max
        )
        mode = self.checks.combine.mode
        why = "judge skipped (gate)" if mode == "gate" else "no judge (checks_only)"
        values = {
            **base,
            "status": "scored",
            "score": score,
            "reasoning": f"{summarize_results(results)}; {why}",
            "cost_usd": 0.0,
        }
        return Outcome(values, judge_called=False)

    async def _ask_judge(
        self, row: RowData, output: dict[str, Any], sample_index: int, base: dict[str, Any]
    ) -> Outcome:
        try:
            prompt = build_judge_prompt(
                self.version, row.messages, row.reference, output, row.metadata
            )
        except AssayError as exc:  # the template fails on this row, e.g. a missing metadata key
            return Outcome({**base, "status": "judge_failed", "error": f"template: {exc}"})
        request = ChatRequest.model_construct(
            tools=None,
            messages=[
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            # A different seed per sample: k samples are k cache entries, not one.
            params={**JUDGE_PARAMS, **self.params, "seed": self.seed + sample_index},
            response_format=self._response_format,
        )
        started = time.perf_counter()
        try:
            result = await self.caller.complete(request)
        except ProviderError as exc:
            return Outcome(
                {
                    **base,
                    "status": "judge_failed",
                    "error": str(exc),
                    "latency_ms": (time.perf_counter() - started) * 1000,
                }
            )
        parsed = parse_judge_output(result.text, self.version.score_min, self.version.score_max)
        values = {
            **base,
            "raw_output": result.text,
            "latency_ms": result.latency_ms,
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "cost_usd": result.cost_usd,
        }
        if parsed.ok:
            values.update(status="scored", score=parsed.score, reasoning=parsed.reasoning)
            return Outcome(values, self.caller.cache_entry(result))
        values.update(status="judge_unparseable", error=parsed.error)
        # An unparseable answer is not cached: a retry may parse.
        return Outcome(values)


NO_OPPONENT = (
    "the baseline's generation for this row failed: there is no baseline output to compare with"
)


@dataclass
class PairJudgeCaller:
    """Judges a candidate output against the baseline's output for the same row, one order per
    call (``rubrics/pairwise.py``): ``sample_index = 2*k + o``, ``o = 1`` puts the candidate in
    position A, ``o = 0`` in position B. ``score`` is 1 (candidate preferred), 0.5 (tie) or 0."""

    caller: ModelCaller
    version: RubricVersion
    judge_id: int
    endpoint: ModelInfo  # the judge's: its default params apply over the judge defaults
    seed: int = 0
    structured: bool = True

    def write_cache(self, session: Session, entries: list[Any]) -> None:
        if self.caller.cache is not None:
            self.caller.cache.store_many(entries, session)

    async def judge(
        self,
        row: RowData,
        output: dict[str, Any],
        sample_index: int,
        opponent_id: int | None,
        opponent_output: dict[str, Any] | None,
    ) -> Outcome:
        position = a_position(sample_index)
        base: dict[str, Any] = {
            "rubric_version_id": self.version.id,
            "judge_id": self.judge_id,
            "sample_index": sample_index,
            "candidate_position": position,
            "opponent_generation_id": opponent_id,
        }
        if opponent_output is None:
            return Outcome({**base, "status": "judge_failed", "error": NO_OPPONENT}, None, False)
        result = await judge_order(
            self.caller,
            self.endpoint,
            self.version,
            row,
            output,
            opponent_output,
            sample_index=sample_index,
            seed=self.seed,
            structured=self.structured,
        )
        values = {
            **base,
            "status": result.status,
            "reasoning": result.reasoning,
            "raw_output": result.raw_output,
            "error": result.error,
            "latency_ms": result.latency_ms,
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "cost_usd": result.cost_usd,
        }
        if result.winner is not None:
            values["preference"] = PREFERENCE[result.winner]
            values["score"] = values["judge_score"] = PREFERENCE_SCORE[values["preference"]]
        return Outcome(values, result.cache_entry)


PREFERENCE = {"a": "candidate", "b": "baseline", "tie": "tie"}
PREFERENCE_SCORE = {"candidate": 1.0, "tie": 0.5, "baseline": 0.0}
