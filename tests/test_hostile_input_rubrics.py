"""Hostile input to the judge-output parser, the template validator, the checks-file parser and
the checks run on model output (reliability item 4, docs/reliability.md).

Properties: ``parse_judge_output`` never raises and a score it accepts is always in range;
``validate_template`` and rendering end in a result or a ``TemplateError``; the checks parser
ends in a spec or a ``ValidationError``, and ``run_checks`` never raises; a refused
``create_rubric`` writes nothing. Then the named attacks on 10 MB inputs, each run in a forked
child that is killed if it has not finished within a minute: a hang fails the test instead
of stalling the suite (this is a hang detector, not a timing measurement).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from assay.errors import AssayError, TemplateError, ValidationError
from assay.rubrics import (
    ChecksSpec,
    JudgeParse,
    build_judge_prompt,
    create_rubric,
    parse_checks,
    parse_checks_text,
    parse_judge_output,
    read_checks_file,
    run_checks,
    validate_template,
)
from assay.rubrics.checkspecs import CHECK_TYPES
from assay.rubrics.render import MAX_OUTPUT_CHARS, render_template
from assay.rubrics.transcript import delimit_response, template_variables
from assay.store import Store
from support.isolated import in_child
from tests_helpers import rubric_counts

TEN_MB = 10 * 1024 * 1024
ONE_MB = 1024 * 1024
PURE = settings(max_examples=400, deadline=None, database=None)
SLOWER = settings(max_examples=200, deadline=None, database=None)  # a check run per example


def finishes(function: Callable[[], Any]) -> Any:
    """``function()`` in a forked child: its result, or a failure if it hangs."""
    return in_child(function)


def scored(parse: JudgeParse, low: int, high: int) -> None:
    """What a parse must satisfy, whatever the reply."""
    assert isinstance(parse, JudgeParse)
    if parse.ok:
        assert parse.score is not None and low <= parse.score <= high
        assert Decimal(str(parse.score)) == Decimal(str(parse.score)).quantize(Decimal("0.1"))
        assert parse.reasoning and parse.reasoning.strip() and parse.format in ("json", "text")
        assert parse.error is None
    else:
        assert parse.score is None and parse.error


# --- judge output ----------------------------------------------------------------------------

_numbers = st.one_of(
    st.integers(1, 10).map(str),  # often in the usual 1-10 range, to exercise acceptance
    st.integers(1, 10).map(str),
    st.decimals(1, 10, places=1).map(str),
    st.integers(-20, 120).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["7.5", "7.55", "1e1", "-0", "0x5", "NaN", "Infinity", "9" * 5000, "5/10"]),
    st.sampled_from(["1e99999999999999999999", "-2E-99999999999999999999", "1e999999"]),
)
_gaps = st.sampled_from(["", "", "", " ", "\n", "\r\n", "\t", " " * 50, "\n" * 20, "\u00a0"])


@st.composite
def judge_replies(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["text", "json", "json", "fallback", "fallback", "fenced"]))
    if kind == "text":
        return draw(st.text(max_size=300))
    number = draw(_numbers)
    reasoning = draw(st.sampled_from(["Fine.", "Correct.", None, "", "  "]))
    if reasoning is None:
        reasoning = draw(st.text(max_size=40))
    if kind == "fallback":
        out_of = draw(st.sampled_from(["", "", "/10", "/5", "/" + "1" * 5000, "/010"]))
        labelled = draw(st.sampled_from(["", "Reasoning: ", "**Reasoning**: "])) + reasoning
        return f"{labelled}{draw(_gaps)}\n{draw(_gaps)}Score: {number}{out_of}{draw(_gaps)}"
    body = draw(
        st.sampled_from(
            [
                '{"reasoning": @R, "score": @N}',
                '{"reasoning": @R, "score": @N}',
                '{"score": @N, "reasoning": @R}',
                '{"score": @N, "reasoning": @R}',
                '{"reasoning": @R, "score": @N, "score": 1}',
                '{"reasoning": @R, "score": "@N"}',
                '{"reasoning": @R, "score": [@N]}',
                '{"reasoning": @R, "score": @N} {"score": 1}',
                '[{"reasoning": @R, "score": @N}]',
            ]
        )
    )
    text = body.replace("@R", json.dumps(reasoning)).replace("@N", number)
    if kind == "fenced":
        lang = draw(st.sampled_from(["json", "JSON", "", " json", "python"]))
        text = f"```{lang}{draw(_gaps)}{text}{draw(_gaps)}```"
    return draw(_gaps) + text + draw(_gaps)


@PURE
@given(
    st.one_of(judge_replies(), judge_replies(), judge_replies(), st.text(max_size=500), st.none()),
    st.one_of(st.just(1), st.just(1), st.integers(0, 99)),  # mostly the default range 1-10
    st.one_of(st.just(9), st.just(9), st.integers(1, 100)),
)
def test_any_judge_reply_parses_or_is_unparseable_never_raises(
    text: str | None, low: int, span: int
) -> None:
    high = min(low + span, 100)
    assume(low < high)
    parse = parse_judge_output(text, low, high)
    event(f"judge reply: {parse.format or 'unparseable'}")
    scored(parse, low, high)


def fence_then_spaces() -> JudgeParse:
    # Backtracked cubically before the fix: 400 spaces took 4 s, 10 MB would take years.
    return parse_judge_output("```" + " " * TEN_MB + "x", 1, 10)


HUGE_REPLIES: list[tuple[Callable[[], str], str | float]] = [
    (lambda: "```" + " " * TEN_MB + "x", "does not hold exactly one object"),
    (lambda: "```json\n" + "\n " * (TEN_MB // 2) + "x", "does not hold exactly one object"),
    (lambda: "Reasoning" + " " * TEN_MB + "x\nScore: 5", 5.0),
    (lambda: "<" * TEN_MB + "\nScore: 3", 3.0),
    (lambda: json.dumps({"reasoning": "x" * TEN_MB, "score": 7.5}), 7.5),
    (lambda: '{"reasoning": "x", "score": ' + "[" * 100_000, "nested too deeply"),
    (lambda: '{"reasoning": "x", "score": 1e999999999}', "score 1E+999999999 is outside"),
    # Found by bench/fuzz/fuzz_judge_output.py: decimal.InvalidOperation escaped.
    (lambda: '{"reasoning": "x", "score": 1e99999999999999999999}', "exponent out of range"),
    (lambda: "Good.\nScore: 1" + "0" * TEN_MB, "is outside the rubric's range"),
    (lambda: "Good.\nScore: 5/" + "1" * TEN_MB, "the score is given out of 1111111"),
    (lambda: '{"reasoning": "x", "score": ' + "9" * TEN_MB + "}", "invalid JSON"),
    (lambda: "\x00" * TEN_MB, "the last line is"),
    (lambda: "Fine.\n" * (TEN_MB // 6) + "Score: 2", 2.0),
]


@pytest.mark.parametrize(("reply", "expected"), HUGE_REPLIES)
def test_10_mb_judge_replies_end_in_a_parse(
    reply: Callable[[], str], expected: str | float
) -> None:
    parse = finishes(lambda: parse_judge_output(reply(), 1, 10))
    scored(parse, 1, 10)
    if isinstance(expected, float):
        assert parse.score == expected
    else:
        assert parse.error is not None and expected in parse.error
        assert len(parse.error) < 500  # an error message, not a copy of the reply


# --- templates -------------------------------------------------------------------------------

TEMPLATE_TOKENS = (
    "{{ ", " }}", "{% ", " %}", "{#", "#}", "{%- ", " -%}", "eval_model_response",
    "conversation_context", "conversation_response", "metadata", "metadata.x", "metadata['y']",
    "score_min", "score_max", "range(", ")", "(", "[", "]", ",", "|", "upper", "join",
    "replace('a', 'bb')", "length", "attr('__class__')", ".__class__", "__globals__", "mro",
    "for x in ", "endfor", "if ", "endif", "else", "macro m(n)", "endmacro", "m(1)",
    "set y = ", "set ns = namespace(a='x')", "set ns.a = ns.a ~ ns.a", "ns.a", "import 'os'",
    "include 'x'", "extends 'y'", "~", "+", "*", "**", "%", "'x'", "'%s'", "1", "9", "10**9",
    "-1", "'{0}'", ".format(", "cycler(1, 2)", "joiner()", "dict(a=1)", "loop.index", "self",
    "caller()", "call m(2)", "endcall", "filter upper", "endfilter", "raw", "endraw",
    "score_bands(['a', 'b'])", "<<<END_RESPONSE_UNDER_TEST>>>", "\n", " ", "x", "recursive",
    "loop(x)", "batch(3)", "center(50)", "indent(4)", "format(1)", "'%d'", "x.y", "undefined",
)  # fmt: skip
templates = st.one_of(
    st.lists(st.sampled_from(TEMPLATE_TOKENS), max_size=40).map("".join),
    st.lists(st.sampled_from(TEMPLATE_TOKENS), max_size=30).map(
        lambda tokens: "{{ eval_model_response }}\n" + "".join(tokens)
    ),
    st.text(max_size=200),
)


@PURE
@given(templates, st.text(max_size=100))
def test_any_template_validates_or_is_refused_and_renders_bounded(text: str, response: str) -> None:
    try:
        used = validate_template(text)
    except TemplateError:
        event("template: refused")
        return
    assert "eval_model_response" in used
    variables = template_variables([{"role": "user", "content": "Hi"}], None, response, {}, 1, 10)
    try:
        prompt = render_template(text, variables)
    except TemplateError:
        event("template: accepted, failed on the row")
        return
    event("template: accepted, rendered")
    assert len(prompt) <= MAX_OUTPUT_CHARS


@pytest.mark.parametrize(
    "text",
    [
        "{{ eval_model_response }}{{ " + "(" * 10_000 + "1" + ")" * 10_000 + " }}",
        "{{ eval_model_response }}{{ " + "[" * 10_000 + "]" * 10_000 + " }}",
        "{{ eval_model_response }}{{ 1" + " + 1" * 10_000 + " }}",
        "{{ eval_model_response }}" + "{% for i in [1] %}" * 25 + "{% endfor %}" * 25,
        "{{ eval_model_response }}" + "{% if 1 %}" * 200 + "{% endif %}" * 200,
        "{{ eval_model_response }}" + "{% filter upper %}" * 300 + "{% endfilter %}" * 300,
    ],
)
def test_templates_nested_too_deeply_are_a_template_error(text: str) -> None:
    # Each of these raised RecursionError, SyntaxError or IndentationError before the fix.
    with pytest.raises(TemplateError, match="nested too deeply"):
        validate_template(text)
    with pytest.raises(TemplateError, match="nested too deeply"):
        render_template(text, {})


def test_hostile_templates_through_create_rubric_write_nothing(store: Store) -> None:
    dialect = store.engine.dialect.name

    @settings(
        max_examples=120 if dialect == "sqlite" else 25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(templates)
    def check(text: str) -> None:
        before = rubric_counts(store)
        try:
            create_rubric(store, f"r{rubric_counts(store)[0]}", text=text)
        except AssayError:
            assert rubric_counts(store) == before
            return
        assert rubric_counts(store) == (before[0] + 1, before[1] + 1)

    check()


# --- checks files and checks on model output -------------------------------------------------

CHECK_KEYS = (
    "checks", "combine", "type", "name", "schema", "must_match", "must_not_match", "flags",
    "max_chars", "metadata_key", "strip", "case", "whitespace", "punctuation", "expected",
    "calls", "accepted", "ordered", "allow_fence", "mode", "weight", "$schema", "properties",
    "required", "items", "pattern", "$ref", "enum", "type", "get_weather", "city",
)  # fmt: skip
# Patterns that cannot backtrack catastrophically: a checks file's own regex is the rubric
# author's (see docs/reliability.md, "what this does not cover").
CHECK_WORDS = (
    *CHECK_TYPES, "gate", "weighted", "checks_only", "reference", "metadata", "rubric",
    "ignorecase", "multiline", "dotall", "object", "string", "array", "a", "^x", "[0-9]+",
    "(?i)as an ai", "(", "a{99999999999}", "#/nope", "", "\x00", "Paris",
)  # fmt: skip
_check_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(CHECK_WORDS),
    st.text(max_size=10),
)
check_values = st.recursive(
    _check_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(CHECK_KEYS), st.text(max_size=5)), inner, max_size=5
        ),
    ),
    max_leaves=20,
)


SAFE_PATTERNS = ("a", "^x", "[0-9]+", "(?i)as an ai", "\\d{3}-\\d{4}", "^\\s*\\{")
VALID_CHECKS = st.one_of(
    st.fixed_dictionaries({"type": st.just("json_valid")}, optional={"allow_fence": st.booleans()}),
    st.fixed_dictionaries(
        {
            "type": st.just("json_schema"),
            "schema": st.sampled_from(
                [
                    {"type": "object", "required": ["answer"]},
                    {"type": "array", "items": {"type": "integer"}},
                    {"type": "string", "pattern": "^a", "maxLength": 5},
                    {"properties": {"a": {"enum": [1, "x", None]}}},
                ]
            ),
        },
        optional={"allow_fence": st.booleans()},
    ),
    st.builds(
        lambda key, pattern, flags: {"type": "regex", key: pattern, "flags": flags},
        st.sampled_from(["must_match", "must_not_match"]),
        st.sampled_from(SAFE_PATTERNS),
        st.lists(st.sampled_from(["ignorecase", "multiline", "dotall"]), unique=True),
    ),
    st.fixed_dictionaries({"type": st.just("max_length"), "max_chars": st.integers(1, 50)}),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["exact_match", "normalized_match"])},
        optional={"metadata_key": st.just("k")},
    ),
    st.sampled_from(
        [
            {"type": "tool_call_match"},
            {"type": "tool_call_match", "expected": "metadata"},
            {"type": "tool_call_match", "expected": "rubric", "calls": [{"f": {"x": [1, ""]}}]},
            {"type": "tool_call_match", "accepted": {"f": {"x": [2]}}, "ordered": True},
        ]
    ),
)


@st.composite
def one_check(draw: st.DrawFn) -> Any:
    """A valid check, or one with a field replaced or added, or a random object."""
    check = dict(draw(VALID_CHECKS))
    how = draw(st.sampled_from(["valid", "valid", "replace", "add", "random"]))
    if how == "replace":
        check[draw(st.sampled_from(sorted(check)))] = draw(check_values)
    elif how == "add":
        check[draw(st.sampled_from(CHECK_KEYS))] = draw(check_values)
    elif how == "random":
        return draw(check_values)
    return check


@st.composite
def check_documents(draw: st.DrawFn) -> Any:
    """Mostly checks-shaped data: checks near valid, a combine rule near valid."""
    checks = draw(st.lists(one_check(), max_size=4))
    combine = draw(
        st.one_of(
            st.none(),
            st.sampled_from(["gate", "checks_only", {"mode": "weighted", "weight": 0.3}]),
            check_values,
        )
    )
    shape = draw(st.sampled_from(["document", "list", "anything"]))
    if shape == "anything":
        return draw(check_values)
    return checks if shape == "list" else {"checks": checks, "combine": combine}


outputs = st.one_of(
    st.text(max_size=200),
    st.none(),
    st.builds(lambda content: {"role": "assistant", "content": content}, check_values),
    st.builds(lambda calls: {"role": "assistant", "tool_calls": calls}, check_values),
)


metadatas = st.one_of(
    check_values,
    st.fixed_dictionaries({}, optional={"k": check_values, "accepted_calls": check_values}),
)


@SLOWER
@given(check_documents(), outputs, st.one_of(st.none(), outputs), metadatas)
def test_any_checks_data_parses_or_is_refused_and_checks_never_raise(
    data: Any, output: Any, reference: Any, metadata: Any
) -> None:
    try:
        spec = parse_checks(data)
    except ValidationError:
        event("checks: refused")
        return
    event("checks: accepted, run on an output")
    assert isinstance(spec, ChecksSpec)
    results = run_checks(spec, output, reference if isinstance(reference, dict) else None,
                         metadata if isinstance(metadata, dict) else None)  # fmt: skip
    assert [result.name for result in results] == [check.name for check in spec.checks]
    assert spec.needs_judge(results) in (True, False)


@SLOWER
@given(check_documents(), st.sampled_from([".yaml", ".json"]), st.integers(0, 40), st.binary())
def test_any_checks_file_text_parses_or_is_refused(
    data: Any, suffix: str, cut: int, junk: bytes
) -> None:
    try:
        text = json.dumps(data) if suffix == ".json" else yaml.safe_dump(data)
    except ValueError:  # NaN in strict JSON: write the damaged text instead
        text = str(data)
    text = text[:cut] + junk.decode("utf-8", "replace") + text[cut:]
    try:
        spec = parse_checks_text(text, f"checks{suffix}")
    except ValidationError as exc:
        assert str(exc).startswith(f"checks file checks{suffix}")  # says which file
        return
    assert isinstance(spec, ChecksSpec)


CHECKS_FILE_ATTACKS = [
    ("[" * 100_000, "x.json", "nested more than 100 levels deep"),
    ("[" * 10_000, "x.yaml", "nested more than 100 levels deep"),
    ("a:\n" + "".join(" " * i + "- \n" for i in range(3000)), "x.yaml", "nested more than"),
    ("checks: [{type: json_valid, name: !!binary aGVsbG8=}]", "x.yaml", "not a JSON value"),
    ("!!set {a, b}", "x.yaml", "not a JSON value"),
    ("2020-01-01: 1\nchecks: 2", "x.yaml", "is not a string; quote it"),
    ("{1: 2, x: 3}", "x.yaml", "the key 1 is not a string"),
    ("checks: [{type: [1]}]", "x.yaml", "has unknown type [1]"),
    ('[{"type": "json_valid", "name": "\\u0000"}]', "x.json", "contains a NUL character"),
    ('[{"type": "json_valid", "name": "\\ud800"}]', "x.json", "lone surrogate"),
    ("[{type: regex, must_match: 'a{99999999999}'}]", "x.yaml", "invalid regular expression"),
    ("[{type: regex, must_match: '" + "(" * 500 + ")" * 500 + "'}]", "x.yaml", "invalid regular"),
    ("[{type: json_schema, schema: {$schema: [1]}}]", "x.yaml", "'$schema' must be a string"),
    ("[{type: json_schema, schema: {maximum: .nan}}]", "x.yaml", "not a JSON value"),
    ("!!python/object/apply:os.system ['id']", "x.yaml", "invalid YAML"),
    # Found by bench/fuzz/fuzz_checks_file.py: PyYAML raised a bare ValueError.
    ("checks: 0x_", "x.yaml", "invalid YAML value: invalid literal for int"),
    ("checks: [{type: max_length, max_chars: 2020-99-99}]", "x.yaml", "month must be in 1..12"),
]


@pytest.mark.parametrize(("text", "source", "error"), CHECKS_FILE_ATTACKS)
def test_hostile_checks_files_are_refused_with_a_reason(
    text: str, source: str, error: str | None
) -> None:
    # Each raised RecursionError, TypeError, OverflowError or a database error before the fix.
    if error is None:
        parse_checks_text(text, source)  # anchors that do not expand past the limits are fine
        return
    with pytest.raises(ValidationError, match=error.replace("[", r"\[").replace("$", r"\$")):
        finishes(lambda: parse_checks_text(text, source))


def test_yaml_aliases_that_expand_to_millions_of_values_are_refused() -> None:
    lines = ["checks:", "  - type: json_schema", "    schema:", "      enum: &l0 [x, x, x, x, x]"]
    lines += [f"      x{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    lines.append("      all: *l8")  # 5 * 9**8 = 215 million values when expanded
    with pytest.raises(ValidationError, match="more than 100,000 values"):
        finishes(lambda: parse_checks_text("\n".join(lines), "bomb.yaml"))


@PURE
@given(st.binary(max_size=300), st.sampled_from([".yaml", ".yml", ".json", ".txt", ""]))
def test_any_checks_file_bytes_are_read_or_refused(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"checks{suffix}"
        path.write_bytes(data)
        try:
            spec = read_checks_file(path)
        except ValidationError as exc:
            assert f"checks{suffix}" in str(exc)  # says which file
            return
        assert isinstance(spec, ChecksSpec)


def test_hostile_checks_through_create_rubric_write_nothing(store: Store) -> None:
    dialect = store.engine.dialect.name

    @settings(
        max_examples=120 if dialect == "sqlite" else 25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(check_documents())
    def check(data: Any) -> None:
        before = rubric_counts(store)
        try:
            create_rubric(store, f"c{before[0]}", template="correctness", checks=data)
        except AssayError:
            assert rubric_counts(store) == before
            return
        assert rubric_counts(store) == (before[0] + 1, before[1] + 1)

    check()


SPEC = parse_checks(
    [
        {"type": "json_valid", "allow_fence": True},
        {"type": "json_schema", "schema": {"type": "object", "required": ["answer"]}},
        {"type": "regex", "must_not_match": "(?i)as an ai"},
        {"type": "max_length", "max_chars": 2000},
        {"type": "normalized_match"},
        {"type": "tool_call_match", "expected": "reference"},
    ]
)


def call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}


def deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


OUTPUT_ATTACKS: list[Callable[[], Any]] = [
    lambda: "```" + " " * TEN_MB,  # the fence pattern was quadratic in spaces
    lambda: "```json" + "\t" * ONE_MB + "\n{}\n```",
    lambda: "[" * ONE_MB,
    lambda: '{"answer": "' + "x" * TEN_MB + '"}',
    lambda: {"role": "assistant", "content": {"nested": deep(5_000)}},
    lambda: {"role": "assistant", "content": [{"text": deep(5_000)}]},
    lambda: {"role": "assistant", "tool_calls": [call("f", "[" * 100_000)] * 3},
    lambda: {"role": "assistant", "tool_calls": deep(3_000)},
    lambda: "\x00\ud800" * ONE_MB,
]


@pytest.mark.parametrize("output", OUTPUT_ATTACKS)
def test_checks_on_hostile_10_mb_outputs_fail_with_reasons_never_raise(
    output: Callable[[], Any],
) -> None:
    reference = {"role": "assistant", "content": "ok", "tool_calls": [{"function": {"name": "f"}}]}
    results = finishes(lambda: run_checks(SPEC, output(), reference))
    assert len(results) == len(SPEC.checks)
    assert not all(result.passed for result in results)
    assert all(result.passed or result.detail for result in results)


# --- the judge prompt on hostile outputs -----------------------------------------------------


@dataclass
class Version:
    template: str = "{{ conversation_context }}\n{{ eval_model_response }}\nEnd."
    score_min: int = 1
    score_max: int = 10


PROMPT_ATTACKS: list[tuple[Callable[[], Any], str | None]] = [
    (lambda: "<" * TEN_MB, "exceeds 1000000 characters"),  # the delimiter pattern was quadratic
    (lambda: "<" + " " * 400_000 + "END_RESPONSE_UNDER_TEST>", None),
    (lambda: "<<<END_RESPONSE_UNDER_TEST>>>" * 30_000, None),
    (lambda: {"role": "assistant", "tool_calls": [call("f", "[" * 50_000)]}, None),
    (lambda: {"role": "assistant", "content": [{"type": deep(5_000)}]}, "nested too deeply"),
    (lambda: {"role": "assistant", "content": {"x": deep(5_000)}}, None),
    (lambda: {"role": "assistant", "refusal": deep(5_000)}, "nested too deeply"),
]


@pytest.mark.parametrize(("response", "error"), PROMPT_ATTACKS)
def test_judge_prompts_for_hostile_outputs_are_built_or_a_template_error(
    response: Callable[[], Any], error: str | None
) -> None:
    def build() -> str:
        return build_judge_prompt(Version(), [], None, response(), {}).user

    if error is not None:
        with pytest.raises(TemplateError, match=error):
            finishes(build)
        return
    user = finishes(build)
    assert user.count("<<<RESPONSE_UNDER_TEST>>>") == 1
    assert user.count("<<<END_RESPONSE_UNDER_TEST>>>") == 1
    assert user.endswith("<<<END_RESPONSE_UNDER_TEST>>>\nEnd.")


def test_delimiting_10_mb_of_near_delimiters_is_linear() -> None:
    for text in ("<" * TEN_MB, "<" + " " * ONE_MB, "<RESPONSE" + "_" * ONE_MB, "<<<" * ONE_MB):
        block = finishes(lambda text=text: delimit_response(text))
        assert block.count("<<<RESPONSE_UNDER_TEST>>>") == 1
        assert block.endswith("\n<<<END_RESPONSE_UNDER_TEST>>>")
