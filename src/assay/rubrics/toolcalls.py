"""Tool-call matching for the ``tool_call_match`` check, on BFCL's ground-truth shape.

Expected calls are written as BFCL (the Berkeley Function Calling Leaderboard) writes its
answers: a list with one ``{function name: {argument: [accepted values...]}}`` per call::

    [{"get_weather": {"city": ["Paris", "paris"], "unit": ["", "celsius"]}}]

Rules, as BFCL's AST checker applies them (``docs/checks.md`` explains them with examples):

* the output must make as many calls as are expected; each output call is paired with a
  different expected call, in any order (parallel calls), unless the check says ``ordered``;
* a call matches when the function name is the same and every argument it passes is listed
  with a matching accepted value; an expected argument it leaves out must list ``""`` (the
  argument is optional) among its accepted values;
* strings match after BFCL's standardisation (spaces and ``,./-_*^`` dropped, lower case,
  ``'`` read as ``"``) unless the check turns it off; numbers match by value (``5`` and
  ``5.0``), booleans only booleans; an accepted list matches a list of the same length element
  by element; an accepted object is itself a map of accepted values for the keys of an object.

Expected calls come from the rubric, from a row's metadata, or from the row's reference
response (each argument's value becomes its only accepted value); ``merge_accepted`` then
adds the rubric's extra accepted values on top.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_CALLS = 100
_BFCL_DROP = re.compile(r"[ ,./\-_*^]")


@dataclass(frozen=True)
class ExpectedCall:
    name: str
    arguments: dict[str, list[Any]]  # argument -> accepted values ("" = may be omitted)


@dataclass(frozen=True)
class OutputCall:
    name: str
    arguments: dict[str, Any] | None
    error: str | None = None  # why the arguments cannot be read


@dataclass(frozen=True)
class MatchOptions:
    ordered: bool = False
    normalize_strings: bool = True
    dots_as_underscores: bool = False


class GroundTruthError(ValueError):
    """Expected calls not in BFCL's shape; the message says where and what was expected."""


# --- reading calls ---------------------------------------------------------------------------


def output_calls(message: Mapping[str, Any] | None) -> list[OutputCall]:
    """The calls an assistant message makes (``tool_calls``, or a legacy ``function_call``)."""
    if not message:
        return []
    raw = list(message.get("tool_calls") or [])
    if message.get("function_call"):
        raw.append(message["function_call"])
    return [_read_call(call) for call in raw]


def _read_call(call: Any) -> OutputCall:
    if not isinstance(call, Mapping):
        return OutputCall("?", None, "the call is not an object")
    function = call.get("function") if isinstance(call.get("function"), Mapping) else call
    name = str(function.get("name") or "")
    arguments = function.get("arguments")
    if arguments is None or arguments == "":
        return OutputCall(name, {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError as exc:
            return OutputCall(name, None, f"its arguments are not valid JSON ({exc})")
    if not isinstance(arguments, dict):
        return OutputCall(name, None, "its arguments are not a JSON object")
    return OutputCall(name, arguments)


def parse_ground_truth(value: Any, where: str) -> list[ExpectedCall]:
    """Read BFCL-shaped expected calls; a JSON string holding them is read too (metadata)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise GroundTruthError(f"{where} is a string that is not valid JSON ({exc})") from exc
    shape = 'a list of {"function": {"argument": [accepted values]}}'
    if not isinstance(value, list):
        raise GroundTruthError(f"{where} must be {shape}, not {_kind(value)}")
    if len(value) > MAX_CALLS:
        raise GroundTruthError(f"{where} lists {len(value)} calls; the limit is {MAX_CALLS}")
    calls = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise GroundTruthError(
                f"{here} must be an object with exactly one key, the function name ({shape})"
            )
        ((name, arguments),) = item.items()
        calls.append(ExpectedCall(name, accepted_arguments(arguments, f"{here}.{name}")))
    return calls


def accepted_arguments(arguments: Any, where: str) -> dict[str, list[Any]]:
    """Check one ``{argument: [accepted values]}`` map (every list non-empty)."""
    if not isinstance(arguments, dict):
        raise GroundTruthError(
            f"{where} must map each argument to a list of accepted values, not {_kind(arguments)}"
        )
    for argument, accepted in arguments.items():
        if not isinstance(accepted, list) or not accepted:
            raise GroundTruthError(
                f"{where}.{argument} must be a non-empty list of accepted values "
                f'(add "" to make the argument optional), not {_kind(accepted)}'
            )
    return dict(arguments)


def expected_from_reference(reference: Mapping[str, Any]) -> list[ExpectedCall]:
    """The reference response's calls, each argument's value its only accepted value."""
    expected = []
    for index, call in enumerate(output_calls(reference)):
        if call.arguments is None:
            raise GroundTruthError(f"reference call {index + 1} ({call.name}): {call.error}")
        arguments = {key: [_as_accepted(value)] for key, value in call.arguments.items()}
        expected.append(ExpectedCall(call.name, arguments))
    return expected


def _as_accepted(value: Any) -> Any:
    """A literal value in the accepted-values shape (an object becomes a map of accepted)."""
    if isinstance(value, dict):
        return {key: [_as_accepted(item)] for key, item in value.items()}
    if isinstance(value, list):
        return [_as_accepted(item) for item in value]
    return value


def merge_accepted(
    expected: list[ExpectedCall], accepted: Mapping[str, Mapping[str, list[Any]]]
) -> list[ExpectedCall]:
    """Add the rubric's extra accepted values per function and argument.

    An argument the expected call does not list stays optional: the rubric widens what is
    accepted, it never makes an argument required that the row does not ask for.
    """
    if not accepted:
        return expected
    merged = []
    for call in expected:
        extra = accepted.get(call.name) or {}
        arguments = {key: list(values) for key, values in call.arguments.items()}
        for key, values in extra.items():
            current = arguments.setdefault(key, [""])
            current.extend(v for v in values if v not in current)
        merged.append(ExpectedCall(call.name, arguments))
    return merged


# --- matching --------------------------------------------------------------------------------


def match_calls(
    calls: list[OutputCall], expected: list[ExpectedCall], options: MatchOptions
) -> str | None:
    """None when the calls match the expected ones, else why not (for a person to read)."""
    for index, call in enumerate(calls):
        if call.error:
            return f"call {index + 1} ({call.name or 'no name'}): {call.error}"
    if len(calls) != len(expected):
        made = f"{_count(calls)} ({_names(calls)})" if calls else "none"
        wanted = f"{_count(expected)} ({_names(expected)})" if expected else "no call"
        return f"expected {wanted}; the output made {made}"
    if len(calls) == 1:
        return _call_error(calls[0], expected[0], options)
    if options.ordered:
        for index, (call, want) in enumerate(zip(calls, expected, strict=True)):
            error = _call_error(call, want, options)
            if error:
                return f"call {index + 1}: {error}"
        return None
    errors = [[_call_error(call, want, options) for want in expected] for call in calls]
    owner = _pair(errors)
    if len(owner) == len(calls):
        return None
    matched = set(owner.values())
    free_want = next(j for j in range(len(expected)) if j not in owner)
    free_calls = [i for i in range(len(calls)) if i not in matched]
    same_name = [i for i in free_calls if _same_name(calls[i], expected[free_want], options)]
    closest = (same_name or free_calls)[0]
    return (
        f"no call matches expected call {free_want + 1} ({expected[free_want].name}); "
        f"closest, call {closest + 1}: {errors[closest][free_want]}"
    )


def _pair(errors: list[list[str | None]]) -> dict[int, int]:
    """Pair calls with expected calls they match, as many as possible (Kuhn's augmenting
    paths): expected index -> call index. Greedy pairing could miss a full matching."""
    owner: dict[int, int] = {}

    def place(call: int, seen: set[int]) -> bool:
        for want, error in enumerate(errors[call]):
            if error is None and want not in seen:
                seen.add(want)
                if want not in owner or place(owner[want], seen):
                    owner[want] = call
                    return True
        return False

    for call in range(len(errors)):
        place(call, set())
    return owner


def _same_name(call: OutputCall, want: ExpectedCall, options: MatchOptions) -> bool:
    if options.dots_as_underscores:
        return call.name.replace(".", "_") == want.name.replace(".", "_")
    return call.name == want.name


def _call_error(call: OutputCall, want: ExpectedCall, options: MatchOptions) -> str | None:
    if not _same_name(call, want, options):
        return f"function {call.name!r} instead of {want.name!r}"
    assert call.arguments is not None
    error = _arguments_error(call.arguments, want.arguments, options.normalize_strings)
    return f"{call.name}: {error}" if error else None


def _arguments_error(
    values: Mapping[str, Any], accepted: Mapping[str, list[Any]], normalize: bool
) -> str | None:
    for key, value in values.items():
        if key not in accepted:
            return f"unexpected argument {key!r}"
        if not any(_matches(value, option, normalize) for option in accepted[key]):
            options = [option for option in accepted[key] if option != ""]
            return (
                f"argument {key!r} = {_show(value)} is not an accepted value "
                f"(accepted: {_show(options)})"
            )
    for key, options in accepted.items():
        if key not in values and "" not in options:
            return f"missing argument {key!r}"
    return None


def _matches(value: Any, accepted: Any, normalize: bool) -> bool:
    if isinstance(accepted, dict):
        return isinstance(value, dict) and _arguments_error(value, accepted, normalize) is None
    if isinstance(accepted, list):
        return (
            isinstance(value, list)
            and len(value) == len(accepted)
            and all(_matches(v, a, normalize) for v, a in zip(value, accepted, strict=True))
        )
    if isinstance(accepted, bool) or isinstance(value, bool):
        return isinstance(accepted, bool) and isinstance(value, bool) and value == accepted
    if isinstance(accepted, int | float):
        return isinstance(value, int | float) and value == accepted
    if isinstance(accepted, str):
        if not isinstance(value, str):
            return False
        return standardize(value) == standardize(accepted) if normalize else value == accepted
    return bool(value == accepted)


def standardize(text: str) -> str:
    """BFCL's string standardisation, so "April 1, 2024" matches "april 1 2024"."""
    return _BFCL_DROP.sub("", text).lower().replace("'", '"')


def _count(calls: list[OutputCall] | list[ExpectedCall]) -> str:
    return "1 call" if len(calls) == 1 else f"{len(calls)} calls"


def _names(calls: list[OutputCall] | list[ExpectedCall]) -> str:
    return ", ".join(call.name or "no name" for call in calls)


def _show(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if value == []:
        return "an empty list"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"the value {_show(value)}"
    )
