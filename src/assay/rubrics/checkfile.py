"""Reading a checks file (YAML or JSON) into a ``ChecksSpec``, strictly.

Every error names where it is (``checks[2] (regex)``), the field, and what was expected, so
a user fixes a file in one pass per problem; nothing is guessed or silently dropped.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from pathlib import PurePath
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from assay.errors import ValidationError
from assay.rubrics import toolcalls
from assay.rubrics.checks import ChecksSpec
from assay.rubrics.checkspecs import (
    CHECK_MODELS,
    CHECK_TYPES,
    BaseCheck,
    Combine,
    ExactMatchCheck,
    JsonSchemaCheck,
    NormalizedMatchCheck,
    RegexCheck,
    ToolCallMatchCheck,
)

MAX_CHECKS = 50
MAX_NAME_CHARS = 100
# A checks file is small. These bound hostile ones: YAML aliases that expand a few lines into
# millions of values, and nesting deep enough to exhaust the recursion of the readers.
MAX_VALUES = 100_000
MAX_DEPTH = 100


def parse_checks_text(text: str, source: str) -> ChecksSpec:
    """Parse a checks file's text: JSON for ``.json``, YAML for ``.yaml``/``.yml``."""
    suffix = PurePath(source).suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except RecursionError:
            raise _too_deep(f"checks file {source}") from None
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"checks file {source}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                f"{exc.msg}"
            ) from exc
    elif suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise ValidationError(
                f"checks file {source}: invalid YAML{where}: {exc.problem}"
            ) from exc
        except yaml.YAMLError as exc:
            raise ValidationError(f"checks file {source}: invalid YAML: {exc}") from exc
        except ValueError as exc:  # PyYAML's own: a scalar such as 0x_ or 2020-99-99
            raise ValidationError(f"checks file {source}: invalid YAML value: {exc}") from exc
        except RecursionError:
            raise _too_deep(f"checks file {source}") from None
    else:
        raise ValidationError(
            f"checks file {source}: unknown file type {suffix or '(none)'!r}; use a .yaml, .yml "
            "or .json file"
        )
    return parse_checks(data, f"checks file {source}")


def parse_checks(data: Any, source: str = "checks") -> ChecksSpec:
    """Validate ``{"checks": [...], "combine": {...}}`` (or a bare list of checks).

    Raises ``ValidationError`` naming the check (``checks[2] (regex)``) and the field, with
    what was expected, for the first problem found.
    """
    _check_values(data, source)
    if isinstance(data, list):
        data = {"checks": data}
    if not isinstance(data, dict):
        raise ValidationError(
            f'{source}: expected an object {{"checks": [...], "combine": {{...}}}}, not '
            f"{_kind(data)}"
        )
    unknown = sorted(set(data) - {"checks", "combine"}, key=str)
    if unknown:
        raise ValidationError(
            f"{source}: unknown top-level key {unknown[0]!r}; expected 'checks' and 'combine'"
        )
    raw_checks = data.get("checks")
    if not isinstance(raw_checks, list) or not raw_checks:
        raise ValidationError(f"{source}: 'checks' must be a non-empty list of checks")
    if len(raw_checks) > MAX_CHECKS:
        raise ValidationError(f"{source}: {len(raw_checks)} checks; the limit is {MAX_CHECKS}")
    checks = [_parse_check(raw, index, source) for index, raw in enumerate(raw_checks)]
    checks = _name_checks(checks, source)
    combine = _parse_combine(data.get("combine"), source)
    return ChecksSpec(checks=checks, combine=combine)


def _parse_check(raw: Any, index: int, source: str) -> BaseCheck:
    where = f"{source}: checks[{index}]"
    if not isinstance(raw, dict):
        raise ValidationError(f"{where}: expected an object with a 'type', not {_kind(raw)}")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in CHECK_MODELS:
        close = difflib.get_close_matches(str(kind), CHECK_TYPES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        what = "has no 'type'" if kind is None else f"has unknown type {kind!r}{hint}"
        raise ValidationError(f"{where} {what} (check types: {', '.join(CHECK_TYPES)})")
    model = CHECK_MODELS[kind]
    where = f"{where} ({kind})"
    try:
        check = model.model_validate(raw)
    except PydanticValidationError as exc:
        raise ValidationError(f"{where}: {_pydantic_message(exc, model)}") from None
    try:
        _check_semantics(check)
    except (ValueError, toolcalls.GroundTruthError) as exc:
        raise ValidationError(f"{where}: {exc}") from None
    return check


def _check_semantics(check: BaseCheck) -> None:
    """What the field types alone cannot say; raises ValueError with the reason."""
    if isinstance(check, RegexCheck):
        patterns = [p for p in (check.must_match, check.must_not_match) if p is not None]
        if len(patterns) != 1:
            raise ValueError("give exactly one of 'must_match' and 'must_not_match'")
        field = "must_match" if check.must_match is not None else "must_not_match"
        try:
            re.compile(check.pattern, check.re_flags)
        except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}, (((...)))
            reason = exc if isinstance(exc, re.error) else "too large or nested too deeply"
            raise ValueError(f"field '{field}': invalid regular expression: {reason}") from None
    elif isinstance(check, JsonSchemaCheck):
        from jsonschema.exceptions import SchemaError
        from jsonschema.validators import validator_for

        dialect = check.json_schema.get("$schema")
        if dialect is not None and not isinstance(dialect, str):
            raise ValueError("field 'schema': '$schema' must be a string (a dialect URI)")
        try:
            validator_for(check.json_schema).check_schema(check.json_schema)
        except SchemaError as exc:
            at = "/".join(str(p) for p in exc.absolute_path) or "the top level"
            raise ValueError(
                f"field 'schema' is not a valid JSON Schema (at {at}): {_clip(exc.message)}"
            ) from None
    elif isinstance(check, ToolCallMatchCheck):
        if check.expected == "rubric" and check.calls is None:
            raise ValueError("expected: rubric needs the expected calls in 'calls'")
        if check.expected != "rubric" and check.calls is not None:
            raise ValueError(f"'calls' is only read with expected: rubric, not {check.expected}")
        if check.expected != "metadata" and check.metadata_key is not None:
            raise ValueError("'metadata_key' is only read with expected: metadata")
        if check.calls is not None:
            toolcalls.parse_ground_truth(check.calls, "calls")
        for function, arguments in check.accepted.items():
            toolcalls.accepted_arguments(arguments, f"accepted.{function}")
    matching = isinstance(check, ExactMatchCheck | NormalizedMatchCheck | ToolCallMatchCheck)
    if matching and check.metadata_key is not None and not check.metadata_key.strip():
        raise ValueError("'metadata_key' must not be empty")


def _too_deep(source: str) -> ValidationError:
    return ValidationError(f"{source}: nested more than {MAX_DEPTH} levels deep")


def _check_values(data: Any, source: str) -> None:
    """Refuse what no check needs and no database can store, walking without recursion:
    too many values (YAML aliases), deep nesting, keys that are not strings, NUL characters
    and lone surrogates."""
    stack, seen = [(data, 1)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ValidationError(
                f"{source}: more than {MAX_VALUES:,} values (YAML aliases that expand?); "
                "a checks file lists a few checks"
            )
        if isinstance(value, str):
            if "\x00" in value or not _encodable(value):
                raise ValidationError(
                    f"{source}: {_clip(repr(value))} contains a NUL character or a lone "
                    "surrogate, which cannot be stored"
                )
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise _too_deep(source)
            if isinstance(value, dict):
                for key in value:
                    if not isinstance(key, str):
                        raise ValidationError(
                            f"{source}: the key {_clip(repr(key))} is not a string; quote it "
                            f"({json.dumps(str(key))})"
                        )
                stack.extend((item, depth + 1) for item in (*value, *value.values()))
            else:
                stack.extend((item, depth + 1) for item in value)
        elif not _json_scalar(value):  # YAML dates, sets, binary, .nan: JSON cannot store them
            raise ValidationError(
                f"{source}: {_clip(repr(value))} is not a JSON value (a string, a finite "
                "number, true/false, null, a list or an object)"
            )


def _json_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name_checks(checks: list[BaseCheck], source: str) -> list[BaseCheck]:
    """Give every check a unique name: its own, else its type, then type_2, type_3..."""
    used: dict[str, int] = {}
    for index, check in enumerate(checks):
        if check.name:
            if len(check.name) > MAX_NAME_CHARS or check.name != check.name.strip():
                raise ValidationError(
                    f"{source}: checks[{index}] ({check.type}): field 'name' must be 1-"
                    f"{MAX_NAME_CHARS} characters without leading or trailing spaces"
                )
            if check.name in used:
                raise ValidationError(
                    f"{source}: checks[{index}] ({check.type}): name {check.name!r} is already "
                    f"used by checks[{used[check.name]}]; names must be unique"
                )
            used[check.name] = index
    named = []
    for index, check in enumerate(checks):
        if not check.name:
            name, n = check.type, 1
            while name in used:
                n += 1
                name = f"{check.type}_{n}"
            used[name] = index
            check = check.model_copy(update={"name": name})
        named.append(check)
    return named


def _parse_combine(raw: Any, source: str) -> Combine:
    where = f"{source}: combine"
    if raw is None:
        return Combine()
    if isinstance(raw, str):
        raw = {"mode": raw}
    if not isinstance(raw, dict):
        raise ValidationError(f"{where}: expected an object with a 'mode', not {_kind(raw)}")
    try:
        combine = Combine.model_validate(raw)
    except PydanticValidationError as exc:
        raise ValidationError(f"{where}: {_pydantic_message(exc, Combine)}") from None
    if combine.mode == "weighted":
        if combine.weight is None or not 0 < combine.weight < 1:
            raise ValidationError(
                f"{where}: mode weighted needs 'weight', the checks' share of the final score, "
                f"strictly between 0 and 1 (got {combine.weight})"
            )
    elif combine.weight is not None:
        raise ValidationError(f"{where}: 'weight' is only read with mode: weighted")
    return combine


def _pydantic_message(exc: PydanticValidationError, model: type[BaseModel]) -> str:
    error = exc.errors()[0]
    field = ""
    for part in error["loc"]:
        field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
    if error["type"] == "extra_forbidden":
        fields = [
            (f.alias or name) for name, f in model.model_fields.items() if name not in ("type",)
        ]
        return f"unknown field {field!r}; the fields here are: {', '.join(fields)}"
    if error["type"] == "missing":
        return f"missing required field {field!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"field {field!r}: {message} (got {_show(error.get('input'))})"


def spec_from_version(checks: Any, combine: Any) -> ChecksSpec | None:
    """The spec stored on a rubric version (None when it has no checks)."""
    if not checks:
        return None
    return parse_checks({"checks": checks, "combine": combine}, "the rubric version's checks")


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    return _clip(json.dumps(value, ensure_ascii=False, default=str))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string"}.get(
        type(value), f"the value {_show(value)}"
    )
