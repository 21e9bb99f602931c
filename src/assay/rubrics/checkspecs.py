"""The check types a rubric version can declare, and its combine rule, as typed specs.

Field meanings and examples are in docs/checks.md; ``checkfile`` parses a file into these.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CHECK_TYPES = (
    "json_valid", "json_schema", "regex", "exact_match", "normalized_match",
    "tool_call_match", "max_length",
)  # fmt: skip
COMBINE_MODES = ("gate", "weighted", "checks_only")
DEFAULT_CALLS_KEY = "accepted_calls"
"""The row metadata key a ``tool_call_match`` with ``expected: metadata`` reads by default."""

_FLAGS = {"ignorecase": re.IGNORECASE, "multiline": re.MULTILINE, "dotall": re.DOTALL}


class BaseCheck(BaseModel):
    """Fields every check has. Strict: a string is not a number, unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    name: str = ""  # unique in the version; the type (then type_2, ...) when not given


class JsonValidCheck(BaseCheck):
    """The output text is one JSON value."""

    type: Literal["json_valid"] = "json_valid"
    allow_fence: bool = False  # also accept the JSON as the only content of a ``` fence


class JsonSchemaCheck(BaseCheck):
    """The output text is JSON that satisfies a JSON Schema."""

    type: Literal["json_schema"] = "json_schema"
    json_schema: dict[str, Any] = Field(alias="schema")
    allow_fence: bool = False


class RegexCheck(BaseCheck):
    """A regular expression must (or must not) be found in the output text."""

    type: Literal["regex"] = "regex"
    must_match: str | None = None
    must_not_match: str | None = None
    flags: list[Literal["ignorecase", "multiline", "dotall"]] = []

    @property
    def pattern(self) -> str:
        pattern = self.must_match if self.must_match is not None else self.must_not_match
        return pattern or ""

    @property
    def re_flags(self) -> int:
        flags = 0
        for name in self.flags:
            flags |= _FLAGS[name]
        return flags


class ExactMatchCheck(BaseCheck):
    """The output text equals the reference response's text (or a metadata value)."""

    type: Literal["exact_match"] = "exact_match"
    strip: bool = True  # ignore leading and trailing whitespace
    metadata_key: str | None = None  # compare with this row metadata value instead


class NormalizedMatchCheck(BaseCheck):
    """Like exact_match after folding case, whitespace and punctuation."""

    type: Literal["normalized_match"] = "normalized_match"
    case: bool = True
    whitespace: bool = True
    punctuation: bool = True
    metadata_key: str | None = None


class ToolCallMatchCheck(BaseCheck):
    """The output's tool calls match the expected ones (BFCL rules, see ``toolcalls``)."""

    type: Literal["tool_call_match"] = "tool_call_match"
    expected: Literal["reference", "metadata", "rubric"] = "reference"
    metadata_key: str | None = None  # expected: metadata (default "accepted_calls")
    calls: list[dict[str, Any]] | None = None  # expected: rubric
    accepted: dict[str, dict[str, list[Any]]] = {}  # extra accepted values, any source
    ordered: bool = False
    normalize_strings: bool = True
    dots_as_underscores: bool = False


class MaxLengthCheck(BaseCheck):
    """The output text has at most ``max_chars`` characters."""

    type: Literal["max_length"] = "max_length"
    max_chars: int = Field(gt=0)


Check = Annotated[
    JsonValidCheck | JsonSchemaCheck | RegexCheck | ExactMatchCheck | NormalizedMatchCheck
    | ToolCallMatchCheck | MaxLengthCheck,
    Field(discriminator="type"),
]  # fmt: skip
CHECK_MODELS: dict[str, type[BaseCheck]] = {
    "json_valid": JsonValidCheck,
    "json_schema": JsonSchemaCheck,
    "regex": RegexCheck,
    "exact_match": ExactMatchCheck,
    "normalized_match": NormalizedMatchCheck,
    "tool_call_match": ToolCallMatchCheck,
    "max_length": MaxLengthCheck,
}


class Combine(BaseModel):
    """How check results and the judge's score make the final score (docs/checks.md)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mode: Literal["gate", "weighted", "checks_only"] = "gate"
    weight: float | None = None  # weighted only: the checks' share, strictly between 0 and 1
