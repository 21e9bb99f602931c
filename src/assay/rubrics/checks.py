"""Deterministic checks: cheap, exact tests of an output that run before (or instead of) the
judge, and the rule that combines them with the judge's score.

A rubric version may carry a checks file (YAML or JSON)::

    checks:
      - type: json_schema
        schema: {type: object, required: [answer]}
      - type: regex
        must_not_match: "(?i)as an ai"
      - type: max_length
        max_chars: 2000
    combine:
      mode: gate            # gate | weighted | checks_only
      weight: 0.3           # weighted only: the checks' share of the final score

``checkfile.parse_checks`` validates it strictly; ``run_checks`` evaluates it on one output,
purely; ``ChecksSpec.final_score`` combines the results with the judge's score. The check
types are in ``checkspecs``, tool-call matching in ``toolcalls``; docs/checks.md documents
them all.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from assay.rubrics import toolcalls
from assay.rubrics.checkspecs import (
    DEFAULT_CALLS_KEY,
    BaseCheck,
    Check,
    Combine,
    ExactMatchCheck,
    JsonSchemaCheck,
    JsonValidCheck,
    MaxLengthCheck,
    NormalizedMatchCheck,
    RegexCheck,
    ToolCallMatchCheck,
)

NO_REFERENCE = "no reference response"
# Possessive: two [ \t]* around an optional word backtrack quadratically on a run of spaces.
_FENCE = re.compile(r"\A```[ \t]*+(?:json)?[ \t]*+\n(.*?)\n?```\Z", re.DOTALL | re.IGNORECASE)


class CheckResult(BaseModel):
    """One check on one output: stored per judgment, shown per row."""

    name: str
    type: str
    passed: bool
    detail: str | None = None  # why it failed (or what it could not read)


class ChecksSpec(BaseModel):
    """A rubric version's checks and combine rule, validated."""

    model_config = ConfigDict(frozen=True)

    checks: list[Check]
    combine: Combine = Combine()

    def stored(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The JSON kept on the version: (checks, combine)."""
        checks = [
            {
                "name": check.name,
                "type": check.type,
                **check.model_dump(by_alias=True, exclude_defaults=True, exclude={"name", "type"}),
            }
            for check in self.checks
        ]
        return checks, self.combine.model_dump(exclude_none=True)

    def needs_judge(self, results: list[CheckResult]) -> bool:
        """Whether the judge must be asked: never for checks_only, not after a failed gate."""
        if self.combine.mode == "checks_only":
            return False
        if self.combine.mode == "gate":
            return all(r.passed for r in results)
        return True

    def final_score(
        self, results: list[CheckResult], judge_score: float | None, score_min: int, score_max: int
    ) -> float | None:
        """The score every statistic reads; None when it needs a judge score it lacks."""
        passed = sum(r.passed for r in results)
        checks_score = score_min + (score_max - score_min) * passed / len(results)
        mode = self.combine.mode
        if mode == "checks_only":
            return round(checks_score, 4)
        if mode == "gate" and passed < len(results):
            return float(score_min)
        if judge_score is None:
            return None
        if mode == "gate":
            return judge_score
        weight = self.combine.weight
        assert weight is not None
        return round(weight * checks_score + (1 - weight) * judge_score, 4)

    def describe(self) -> str:
        """The combine rule in words, for ``rubric show``."""
        mode = self.combine.mode
        if mode == "gate":
            return "gate: any failed check gives the minimum score and skips the judge"
        if mode == "checks_only":
            return (
                "checks_only: no judge; the score is the fraction of checks passed, "
                "mapped onto the score range"
            )
        return (
            f"weighted: {self.combine.weight:g} x checks passed (on the score range) + "
            f"{1 - (self.combine.weight or 0):g} x judge score"
        )

    def missing_inputs(
        self, has_reference: bool, metadata: Mapping[str, Any]
    ) -> list[tuple[str, str]]:
        """What a row lacks that a check reads, as (check name, what it needs): on such a
        row the check fails, so a run or a quick test warns before it happens."""
        problems = []
        for check in self.checks:
            key = _row_key(check)
            if key is not None and key not in metadata:
                problems.append((check.name, f"row metadata {key!r}"))
            elif key is None and _uses_reference(check) and not has_reference:
                problems.append((check.name, "the reference response"))
        return problems


def _row_key(check: BaseCheck) -> str | None:
    if isinstance(check, ExactMatchCheck | NormalizedMatchCheck):
        return check.metadata_key
    if isinstance(check, ToolCallMatchCheck) and check.expected == "metadata":
        return check.metadata_key or DEFAULT_CALLS_KEY
    return None


def _uses_reference(check: BaseCheck) -> bool:
    if isinstance(check, ToolCallMatchCheck):
        return check.expected == "reference"
    return isinstance(check, ExactMatchCheck | NormalizedMatchCheck)


# --- evaluation ------------------------------------------------------------------------------


def run_checks(
    spec: ChecksSpec,
    output: Mapping[str, Any] | str | None,
    reference: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None = None,
) -> list[CheckResult]:
    """Evaluate every check on one output (an assistant message, or its text). Pure.

    Never raises: a check that cannot run on this output (a schema ``$ref`` that does not
    resolve, JSON nested too deep) fails with the reason, like any other failed check.
    """
    try:
        text = message_text(output)
    except RecursionError:  # content nested thousands of levels deep: every check fails
        detail = "the check could not run: the output is nested too deeply to read"
        return [
            CheckResult(name=check.name, type=check.type, passed=False, detail=detail)
            for check in spec.checks
        ]
    message = {"role": "assistant", "content": output} if isinstance(output, str) else output
    results = []
    for check in spec.checks:
        try:
            detail = _evaluate(check, text, message, reference, metadata or {})
        except Exception as exc:  # a failed row is a stored fact, never a crashed run
            detail = f"the check could not run: {type(exc).__name__}: {_clip(str(exc), 200)}"
        results.append(
            CheckResult(name=check.name, type=check.type, passed=detail is None, detail=detail)
        )
    return results


def message_text(message: Mapping[str, Any] | str | None) -> str:
    """The text of an assistant message: its content (text parts joined), no tool calls."""
    if message is None:
        return ""
    if isinstance(message, str):
        return message
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(part.get("text", "")) if isinstance(part, dict) else str(part)
            for part in content
            if isinstance(part, str) or (isinstance(part, dict) and "text" in part)
        ]
        return "\n".join(parts)
    return str(content)


def _evaluate(
    check: BaseCheck,
    text: str,
    message: Mapping[str, Any] | None,
    reference: Mapping[str, Any] | None,
    metadata: Mapping[str, Any],
) -> str | None:
    """None when the check passes, else the reason it failed."""
    if isinstance(check, JsonValidCheck):
        return _load_json(text, check.allow_fence)[1]
    if isinstance(check, JsonSchemaCheck):
        data, error = _load_json(text, check.allow_fence)
        return error or _schema_error(check.json_schema, data)
    if isinstance(check, RegexCheck):
        return _regex_error(check, text)
    if isinstance(check, MaxLengthCheck):
        if len(text) > check.max_chars:
            return f"{len(text)} characters; the limit is {check.max_chars}"
        return None
    if isinstance(check, ExactMatchCheck | NormalizedMatchCheck):
        return _match_error(check, text, reference, metadata)
    assert isinstance(check, ToolCallMatchCheck)
    return _tool_call_error(check, message, reference, metadata)


def _load_json(text: str, allow_fence: bool) -> tuple[Any, str | None]:
    body = text.strip()
    if allow_fence:
        fenced = _FENCE.match(body)
        body = fenced.group(1).strip() if fenced else body
    if not body:
        return None, "the output is empty, not JSON"
    try:
        return json.loads(body, parse_constant=_reject_constant), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:
        return None, f"not valid JSON: {exc}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    from jsonschema.validators import validator_for

    schema = json.loads(schema_json)
    return validator_for(schema)(schema)


def _schema_error(schema: dict[str, Any], data: Any) -> str | None:
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return None
    first = errors[0]
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"schema violation at {path}: {_clip(first.message, 200)}{more}"


def _regex_error(check: RegexCheck, text: str) -> str | None:
    pattern = check.pattern
    found = re.search(pattern, text, check.re_flags)
    if check.must_match is not None:
        return None if found else f"no match for /{_clip(pattern)}/"
    if found is None:
        return None
    return f"matched {_clip(found.group(0))!r} at character {found.start()}"


def _match_error(
    check: ExactMatchCheck | NormalizedMatchCheck,
    text: str,
    reference: Mapping[str, Any] | None,
    metadata: Mapping[str, Any],
) -> str | None:
    if check.metadata_key is not None:
        if check.metadata_key not in metadata:
            return f"row metadata has no {check.metadata_key!r}"
        value = metadata[check.metadata_key]
        targets = [_as_text(v) for v in value] if isinstance(value, list) else [_as_text(value)]
        against = f"metadata {check.metadata_key!r}"
    else:
        if reference is None:
            return NO_REFERENCE
        targets, against = [message_text(reference)], "the reference"
    if isinstance(check, ExactMatchCheck):
        fold = str.strip if check.strip else (lambda s: s)
        label = "output"
    else:
        fold, label = functools.partial(_normalize, check=check), "normalised output"
    got = fold(text)
    if any(fold(target) == got for target in targets):
        return None
    want = fold(targets[0]) if targets else ""
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    at = min(len(got), len(want)) if at is None else at
    extra = f" (one of {len(targets)})" if len(targets) > 1 else ""
    return (
        f"{label} differs from {against}{extra} at character {at}: expected "
        f"{_clip(want[at:])!r}, got {_clip(got[at:])!r}"
    )


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _normalize(text: str, check: NormalizedMatchCheck) -> str:
    text = unicodedata.normalize("NFKC", text)
    if check.case:
        text = text.casefold()
    if check.punctuation:
        text = "".join(c for c in text if not unicodedata.category(c).startswith("P"))
    if check.whitespace:
        text = " ".join(text.split())
    return text


def _tool_call_error(
    check: ToolCallMatchCheck,
    message: Mapping[str, Any] | None,
    reference: Mapping[str, Any] | None,
    metadata: Mapping[str, Any],
) -> str | None:
    try:
        if check.expected == "rubric":
            expected = toolcalls.parse_ground_truth(check.calls, "the rubric's calls")
        elif check.expected == "metadata":
            key = check.metadata_key or DEFAULT_CALLS_KEY
            if key not in metadata:
                return f"row metadata has no {key!r}"
            expected = toolcalls.parse_ground_truth(metadata[key], f"row metadata {key!r}")
        elif reference is None:
            return NO_REFERENCE
        else:
            expected = toolcalls.expected_from_reference(reference)
    except toolcalls.GroundTruthError as exc:
        return f"cannot read the expected calls: {exc}"
    expected = toolcalls.merge_accepted(expected, check.accepted)
    options = toolcalls.MatchOptions(
        ordered=check.ordered,
        normalize_strings=check.normalize_strings,
        dots_as_underscores=check.dots_as_underscores,
    )
    return toolcalls.match_calls(toolcalls.output_calls(message), expected, options)


def describe_check(check: BaseCheck) -> str:
    """One line on what a check demands, for ``rubric show``."""
    head = check.name if check.name == check.type else f"{check.name} ({check.type})"
    if isinstance(check, JsonValidCheck):
        what = "the output is JSON"
    elif isinstance(check, JsonSchemaCheck):
        what = f"the output is JSON valid against {_clip(json.dumps(check.json_schema), 80)}"
    elif isinstance(check, RegexCheck):
        verb = "must match" if check.must_match is not None else "must not match"
        flags = f" [{', '.join(check.flags)}]" if check.flags else ""
        what = f"{verb} {check.pattern!r}{flags}"
    elif isinstance(check, MaxLengthCheck):
        what = f"at most {check.max_chars} characters"
    elif isinstance(check, ExactMatchCheck | NormalizedMatchCheck):
        target = f"row metadata {check.metadata_key!r}" if check.metadata_key else "the reference"
        what = f"the output equals {target}"
        if isinstance(check, NormalizedMatchCheck):
            ignored = [n for n in ("case", "whitespace", "punctuation") if getattr(check, n)]
            what += f" ignoring {', '.join(ignored)}" if ignored else ""
    else:
        assert isinstance(check, ToolCallMatchCheck)
        source = {
            "reference": "the reference response's calls",
            "metadata": f"row metadata {check.metadata_key or DEFAULT_CALLS_KEY!r}",
            "rubric": f"{len(check.calls or [])} call(s) given in the rubric",
        }[check.expected]
        what = f"tool calls match {source}" + (" in order" if check.ordered else "")
        if check.accepted:
            what += f", more accepted values for {', '.join(check.accepted)}"
    if getattr(check, "allow_fence", False):
        what += " (a ``` fence allowed)"
    return f"{head}: {what}"


def summarize_results(results: list[CheckResult]) -> str:
    """One line for a judgment's reasoning when no judge spoke: what passed and what failed."""
    failed = [r.name for r in results if not r.passed]
    head = f"{len(results) - len(failed)} of {len(results)} checks passed"
    return f"{head}; failed: {', '.join(failed)}" if failed else head


# --- small helpers ---------------------------------------------------------------------------


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
