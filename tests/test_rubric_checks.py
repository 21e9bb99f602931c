"""Deterministic checks: every check type, the checks-file parser's errors, the combine rules,
and checks on rubric versions through the service and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import assay
from assay.errors import ValidationError
from assay.rubrics import (
    CheckResult,
    ChecksSpec,
    create_rubric,
    edit_rubric,
    get_rubric_version,
    parse_checks,
    parse_checks_text,
    run_checks,
)
from assay.rubrics.checkfile import spec_from_version
from assay.store import Store
from tests_helpers import rubric_counts


def one(check: dict[str, Any], output: Any, reference: Any = None, **metadata: Any) -> CheckResult:
    """Run a single check on an output (text or assistant message)."""
    spec = parse_checks([check])
    (result,) = run_checks(spec, output, reference, metadata)
    return result


def said(text: str | None, *calls: dict[str, Any]) -> dict[str, Any]:
    """An assistant message with some text and tool calls."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = list(calls)
    return message


def call(name: str, arguments: Any = None, **kwargs: Any) -> dict[str, Any]:
    """An OpenAI tool call; arguments as the JSON string a provider returns."""
    args = kwargs if arguments is None else arguments
    encoded = args if isinstance(args, str) else json.dumps(args)
    return {
        "id": f"call_{name}",
        "type": "function",
        "function": {"name": name, "arguments": encoded},
    }


# --- json_valid / json_schema ---------------------------------------------------------------


def test_json_valid_accepts_json_and_names_where_malformed_json_breaks() -> None:
    assert one({"type": "json_valid"}, '{"a": [1, 2]}').passed
    assert one({"type": "json_valid"}, "  42\n").passed  # any JSON value
    bad = one({"type": "json_valid"}, '{"a": 1,\n "b": }')
    assert not bad.passed
    assert bad.detail == "not valid JSON: Expecting value at line 2 column 7"
    assert bad.name == "json_valid" and bad.type == "json_valid"
    assert one({"type": "json_valid"}, "").detail == "the output is empty, not JSON"
    assert "NaN is not a JSON value" in str(one({"type": "json_valid"}, '{"a": NaN}').detail)
    trailing = one({"type": "json_valid"}, '{"a": 1} and more')
    assert trailing.detail == "not valid JSON: Extra data at line 1 column 10"


def test_json_in_a_fence_only_when_allowed() -> None:
    fenced = '```json\n{"a": 1}\n```'
    assert not one({"type": "json_valid"}, fenced).passed
    assert one({"type": "json_valid", "allow_fence": True}, fenced).passed
    assert one({"type": "json_valid", "allow_fence": True}, '{"a": 1}').passed


def test_json_reads_text_parts_and_ignores_tool_calls() -> None:
    parts = {"role": "assistant", "content": [{"type": "text", "text": '{"a":'}, {"text": "1}"}]}
    assert one({"type": "json_valid"}, parts).passed
    only_call = said(None, call("f", x=1))
    assert one({"type": "json_valid"}, only_call).detail == "the output is empty, not JSON"


SCHEMA = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["price"],
                "properties": {"price": {"type": "number"}},
            },
        }
    },
}


def test_json_schema_passes_and_reports_the_first_violation_with_its_path() -> None:
    check = {"type": "json_schema", "schema": SCHEMA}
    assert one(check, '{"items": [{"price": 1.5}, {"price": 2}]}').passed
    bad = one(check, '{"items": [{"price": "cheap"}, {}]}')
    assert not bad.passed
    assert bad.detail == (
        "schema violation at $.items[0].price: 'cheap' is not of type 'number' (and 1 more)"
    )
    missing = one(check, "{}")
    assert missing.detail == "schema violation at $: 'items' is a required property"


def test_json_schema_on_malformed_json_says_it_is_not_json() -> None:
    bad = one({"type": "json_schema", "schema": SCHEMA}, "{'items': []}")
    assert not bad.passed and bad.detail is not None
    assert bad.detail.startswith("not valid JSON: Expecting property name")


def test_a_check_that_cannot_run_fails_with_the_reason_instead_of_raising() -> None:
    remote = one({"type": "json_schema", "schema": {"$ref": "https://example.com/s.json"}}, "{}")
    assert not remote.passed and remote.detail is not None
    assert remote.detail.startswith("the check could not run: ")
    assert "https://example.com/s.json" in remote.detail
    deep = one({"type": "json_valid"}, "[" * 100_000)
    assert not deep.passed and deep.detail is not None


def test_an_invalid_schema_is_refused_when_parsed() -> None:
    with pytest.raises(ValidationError) as err:
        parse_checks([{"type": "json_schema", "schema": {"type": "nope"}}])
    assert "checks[0] (json_schema): field 'schema' is not a valid JSON Schema" in str(err.value)


# --- regex -----------------------------------------------------------------------------------


def test_regex_must_match_and_must_not_match() -> None:
    assert one({"type": "regex", "must_match": r"\bParis\b"}, "It is Paris.").passed
    miss = one({"type": "regex", "must_match": r"\bParis\b"}, "It is Lyon.")
    assert miss.detail == r"no match for /\bParis\b/"
    assert one({"type": "regex", "must_not_match": "as an AI"}, "Sure.").passed
    hit = one({"type": "regex", "must_not_match": "as an AI"}, "Well, as an AI I cannot.")
    assert not hit.passed and hit.detail == "matched 'as an AI' at character 6"


def test_regex_flags() -> None:
    assert not one({"type": "regex", "must_match": "^yes$"}, "YES").passed
    assert one({"type": "regex", "must_match": "^yes$", "flags": ["ignorecase"]}, "YES").passed
    lines = "first\nyes\nlast"
    assert not one({"type": "regex", "must_match": "^yes$"}, lines).passed
    assert one({"type": "regex", "must_match": "^yes$", "flags": ["multiline"]}, lines).passed
    assert one({"type": "regex", "must_match": "a.b", "flags": ["dotall"]}, "a\nb").passed


# --- exact / normalised match ----------------------------------------------------------------


def test_exact_match_against_the_reference() -> None:
    reference = said("Paris")
    assert one({"type": "exact_match"}, "Paris\n", reference).passed  # stripped by default
    assert not one({"type": "exact_match", "strip": False}, "Paris\n", reference).passed
    wrong = one({"type": "exact_match"}, "Parish", reference)
    assert wrong.detail == "output differs from the reference at character 5: expected '', got 'h'"
    case = one({"type": "exact_match"}, "paris", reference)
    assert (
        case.detail
        == "output differs from the reference at character 0: expected 'Paris', got 'paris'"
    )


def test_normalized_match_folds_case_whitespace_and_punctuation() -> None:
    reference = said("The answer is: Paris!")
    assert one({"type": "normalized_match"}, "the  answer is\nparis", reference).passed
    assert not one(
        {"type": "normalized_match", "case": False}, "the answer is paris", reference
    ).passed
    assert not one(
        {"type": "normalized_match", "punctuation": False}, "The answer is Paris", reference
    ).passed
    wrong = one({"type": "normalized_match"}, "The answer is Lyon", reference)
    assert wrong.detail == (
        "normalised output differs from the reference at character 14: expected 'paris', got 'lyon'"
    )


def test_match_without_a_reference_fails_with_a_clear_detail() -> None:
    for kind in ("exact_match", "normalized_match"):
        result = one({"type": kind}, "Paris", None)
        assert not result.passed and result.detail == "no reference response"


def test_match_against_a_metadata_value_or_list() -> None:
    check = {"type": "normalized_match", "metadata_key": "answer"}
    assert one(check, "PARIS.", None, answer="Paris").passed
    assert one(check, "paris", None, answer=["Lyon", "Paris"]).passed
    assert one({"type": "exact_match", "metadata_key": "n"}, "12", None, n=12).passed
    lyon = one(check, "Nice", None, answer=["Lyon", "Paris"])
    assert lyon.detail is not None and "metadata 'answer' (one of 2)" in lyon.detail
    missing = one(check, "Paris", None, other=1)
    assert missing.detail == "row metadata has no 'answer'"


# --- max_length ------------------------------------------------------------------------------


def test_max_length_counts_characters_of_the_text() -> None:
    assert one({"type": "max_length", "max_chars": 5}, "héllo").passed
    long = one({"type": "max_length", "max_chars": 5}, "héllo!")
    assert long.detail == "6 characters; the limit is 5"
    assert one({"type": "max_length", "max_chars": 1}, said(None, call("f", x="a" * 50))).passed


# --- tool_call_match -------------------------------------------------------------------------

WEATHER = {"type": "tool_call_match"}
REF_WEATHER = said(None, call("get_weather", city="Paris", unit="celsius"))


def test_tool_calls_match_the_reference_calls() -> None:
    assert one(
        WEATHER, said(None, call("get_weather", city="Paris", unit="celsius")), REF_WEATHER
    ).passed
    # BFCL's string standardisation: case, spaces and ",./-_*^" do not matter.
    assert one(
        WEATHER, said(None, call("get_weather", city=" paris", unit="Celsius")), REF_WEATHER
    ).passed
    strict = {**WEATHER, "normalize_strings": False}
    assert not one(
        strict, said(None, call("get_weather", city="paris", unit="celsius")), REF_WEATHER
    ).passed


def test_tool_call_failures_say_what_differs() -> None:
    cases = [
        (
            call("get_forecast", city="Paris", unit="celsius"),
            "function 'get_forecast' instead of 'get_weather'",
        ),
        (
            call("get_weather", city="Lyon", unit="celsius"),
            "get_weather: argument 'city' = \"Lyon\" is not an accepted value "
            '(accepted: ["Paris"])',
        ),
        (call("get_weather", city="Paris"), "get_weather: missing argument 'unit'"),
        (
            call("get_weather", city="Paris", unit="celsius", days=3),
            "get_weather: unexpected argument 'days'",
        ),
        (
            call("get_weather", "{city: Paris}"),
            "call 1 (get_weather): its arguments are not valid JSON",
        ),
    ]
    for made, expected in cases:
        result = one(WEATHER, said(None, made), REF_WEATHER)
        assert not result.passed
        assert result.detail is not None and result.detail.startswith(expected), result.detail
    none = one(WEATHER, said("It is sunny."), REF_WEATHER)
    assert none.detail == "expected 1 call (get_weather); the output made none"


def test_accepted_values_with_optional_arguments() -> None:
    check = {
        **WEATHER,
        "accepted": {"get_weather": {"city": ["Paris", "Paris, France"], "unit": ["", "celsius"]}},
    }
    assert one(
        check, said(None, call("get_weather", city="Paris, France", unit="celsius")), REF_WEATHER
    ).passed
    # "" makes the argument optional: it may be left out...
    assert one(check, said(None, call("get_weather", city="Paris")), REF_WEATHER).passed
    # ...but when given it must still be an accepted value.
    bad_unit = one(check, said(None, call("get_weather", city="Paris", unit="kelvin")), REF_WEATHER)
    assert bad_unit.detail is not None and "argument 'unit' = \"kelvin\"" in bad_unit.detail
    # An argument the reference leaves out stays optional when the rubric accepts values for it.
    days = {**WEATHER, "accepted": {"get_weather": {"days": [1, 2]}}}
    assert one(
        days, said(None, call("get_weather", city="Paris", unit="celsius")), REF_WEATHER
    ).passed
    assert one(
        days, said(None, call("get_weather", city="Paris", unit="celsius", days=2)), REF_WEATHER
    ).passed
    assert not one(
        days, said(None, call("get_weather", city="Paris", unit="celsius", days=9)), REF_WEATHER
    ).passed


def test_parallel_calls_match_in_any_order_unless_ordered() -> None:
    reference = said(None, call("get_weather", city="Paris"), call("get_weather", city="Rome"))
    reversed_calls = said(None, call("get_weather", city="Rome"), call("get_weather", city="Paris"))
    assert one(WEATHER, reversed_calls, reference).passed
    ordered = one({**WEATHER, "ordered": True}, reversed_calls, reference)
    assert ordered.detail is not None and ordered.detail.startswith(
        "call 1: get_weather: argument 'city' = \"Rome\""
    )
    twice = said(None, call("get_weather", city="Rome"), call("get_weather", city="Rome"))
    result = one(WEATHER, twice, reference)
    assert result.detail is not None
    assert result.detail.startswith(
        "no call matches expected call 1 (get_weather); closest, call 2"
    )
    short = one(WEATHER, said(None, call("get_weather", city="Rome")), reference)
    assert short.detail == (
        "expected 2 calls (get_weather, get_weather); the output made 1 call (get_weather)"
    )


def test_parallel_matching_finds_a_pairing_a_greedy_pass_would_miss() -> None:
    # The first output call fits both expected calls; the second fits only the first one.
    check = {
        "type": "tool_call_match",
        "expected": "rubric",
        "calls": [{"f": {"x": [1, 2]}}, {"f": {"x": [1]}}],
    }
    assert one(check, said(None, call("f", x=1), call("f", x=2))).passed
    assert not one(check, said(None, call("f", x=2), call("f", x=2))).passed


def test_value_rules_numbers_booleans_lists_and_objects() -> None:
    check = {
        "type": "tool_call_match",
        "expected": "rubric",
        "calls": [
            {
                "f": {
                    "n": [5.0],
                    "flag": [True],
                    "xs": [[1, "a b"]],
                    "where": [{"city": ["Paris"], "zip": ["", "75001"]}],
                }
            }
        ],
    }
    good = {"n": 5, "flag": True, "xs": [1.0, "A-B"], "where": {"city": "paris"}}
    assert one(check, said(None, call("f", good))).passed
    for key, value in [
        ("n", 6),
        ("flag", 1),
        ("xs", [1]),
        ("xs", [1, "c"]),
        ("where", {"city": "Paris", "zip": "1"}),
        ("where", {"town": "Paris"}),
        ("where", "Paris"),
    ]:
        assert not one(check, said(None, call("f", {**good, key: value}))).passed, (key, value)


def test_legacy_function_call_and_dots_as_underscores() -> None:
    legacy = {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "math_factorial", "arguments": '{"number": 5}'},
    }
    check = {
        "type": "tool_call_match",
        "expected": "rubric",
        "calls": [{"math.factorial": {"number": [5]}}],
    }
    assert not one(check, legacy).passed
    assert one({**check, "dots_as_underscores": True}, legacy).passed


def test_reference_without_calls_expects_none_and_no_reference_fails() -> None:
    assert one(WEATHER, said("Hello"), said("Hi there")).passed
    made = one(WEATHER, said(None, call("f")), said("Hi there"))
    assert made.detail == "expected no call; the output made 1 call (f)"
    assert one(WEATHER, said(None, call("f")), None).detail == "no reference response"


# Real BFCL ground truth (BFCL_v4_simple_python, possible_answer), as a row's metadata.
BFCL_ROWS = {
    "simple_python_0": [
        {"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}
    ],
    "simple_python_13": [
        {
            "calculate_area_under_curve": {
                "function": ["x**2", "lambda x: x**2", "y=x**2"],
                "interval": [[1.0, 3.0]],
                "method": ["", "trapezoidal"],
            }
        }
    ],
    "simple_python_89": [
        {
            "get_student_data": {
                "conditions": [
                    {"department": ["Science"], "school": ["Bluebird High School", "Bluebird HS"]}
                ]
            }
        }
    ],
}
BFCL = {"type": "tool_call_match", "expected": "metadata"}


def test_bfcl_ground_truth_from_row_metadata() -> None:
    truth = BFCL_ROWS["simple_python_0"]
    ok = said(None, call("calculate_triangle_area", base=10, height=5))
    assert one(BFCL, ok, None, accepted_calls=truth).passed
    with_unit = said(None, call("calculate_triangle_area", base=10, height=5, unit="units"))
    assert one(BFCL, with_unit, None, accepted_calls=truth).passed
    wrong = one(
        BFCL,
        said(None, call("calculate_triangle_area", base=5, height=10)),
        None,
        accepted_calls=truth,
    )
    assert wrong.detail == (
        "calculate_triangle_area: argument 'base' = 5 is not an accepted value (accepted: [10])"
    )
    area = said(None, call("calculate_area_under_curve", function="x**2", interval=[1, 3]))
    assert one(BFCL, area, None, accepted_calls=BFCL_ROWS["simple_python_13"]).passed
    conditions = {"department": "science", "school": "Bluebird HS"}
    student = said(None, call("get_student_data", conditions=conditions))
    assert one(BFCL, student, None, accepted_calls=BFCL_ROWS["simple_python_89"]).passed
    # Metadata imported from text may hold the ground truth as a JSON string.
    assert one(BFCL, ok, None, accepted_calls=json.dumps(truth)).passed
    custom = {**BFCL, "metadata_key": "gt"}
    assert one(custom, ok, None, gt=truth).passed


def test_bfcl_ground_truth_missing_or_malformed_in_a_row() -> None:
    ok = said(None, call("calculate_triangle_area", base=10, height=5))
    assert one(BFCL, ok, None).detail == "row metadata has no 'accepted_calls'"
    bad = one(BFCL, ok, None, accepted_calls={"calculate_triangle_area": {}})
    assert bad.detail is not None and bad.detail.startswith(
        "cannot read the expected calls: row metadata 'accepted_calls' must be a list"
    )
    bad_args = one(BFCL, ok, None, accepted_calls=[{"f": {"x": 3}}])
    assert bad_args.detail is not None and "[0].f.x must be a non-empty list" in bad_args.detail


# --- a whole spec ----------------------------------------------------------------------------


def test_run_checks_keeps_order_and_defaults_unique_names() -> None:
    spec = parse_checks(
        {
            "checks": [
                {"type": "regex", "must_match": "a"},
                {"type": "regex", "must_match": "b"},
                {"type": "max_length", "max_chars": 3, "name": "short"},
            ]
        }
    )
    results = run_checks(spec, "abcd", None)
    assert [(r.name, r.type, r.passed) for r in results] == [
        ("regex", "regex", True),
        ("regex_2", "regex", True),
        ("short", "max_length", False),
    ]
    assert spec_from_version(*spec.stored()) == spec
    assert spec_from_version(None, None) is None


def test_combine_rules() -> None:
    two = [{"type": "regex", "must_match": "a"}, {"type": "regex", "must_match": "b"}]
    passed = [CheckResult(name="x", type="regex", passed=True)] * 2
    half = [passed[0], CheckResult(name="y", type="regex", passed=False, detail="no")]

    gate = parse_checks({"checks": two})  # gate is the default
    assert gate.combine.mode == "gate"
    assert gate.needs_judge(passed) and not gate.needs_judge(half)
    assert gate.final_score(half, None, 1, 10) == 1.0
    assert gate.final_score(passed, 7.5, 1, 10) == 7.5
    assert gate.final_score(passed, None, 1, 10) is None  # the judge failed: no score

    weighted = parse_checks({"checks": two, "combine": {"mode": "weighted", "weight": 0.25}})
    assert weighted.needs_judge(half)
    # checks: 1 of 2 -> 5.5 on 1-10; 0.25 * 5.5 + 0.75 * 8 = 7.375
    assert weighted.final_score(half, 8.0, 1, 10) == 7.375
    assert weighted.final_score(half, None, 1, 10) is None

    only = parse_checks({"checks": two, "combine": "checks_only"})
    assert not only.needs_judge(passed)
    assert only.final_score(passed, None, 0, 4) == 4.0
    assert only.final_score(half, None, 0, 4) == 2.0
    assert "no judge" in only.describe() and "0.25" in weighted.describe()


def test_missing_inputs_name_what_a_row_lacks_for_each_check() -> None:
    spec = parse_checks(
        [
            {"type": "exact_match"},
            {"type": "normalized_match", "metadata_key": "answer"},
            {"type": "tool_call_match", "expected": "metadata"},
            {"type": "tool_call_match", "expected": "rubric", "calls": [{"f": {}}]},
            {"type": "json_valid"},
        ]
    )
    assert spec.missing_inputs(False, {}) == [
        ("exact_match", "the reference response"),
        ("normalized_match", "row metadata 'answer'"),
        ("tool_call_match", "row metadata 'accepted_calls'"),
    ]
    assert spec.missing_inputs(True, {"answer": "x", "accepted_calls": []}) == []


# --- parser errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("nope", 'checks: expected an object {"checks": [...], "combine": {...}}, not a string'),
        ({"chekcs": []}, "unknown top-level key 'chekcs'; expected 'checks' and 'combine'"),
        ({"checks": []}, "'checks' must be a non-empty list of checks"),
        ([3], "checks[0]: expected an object with a 'type', not the value 3"),
        ([{"max_chars": 3}], "checks[0] has no 'type' (check types: json_valid, json_schema"),
        ([{"type": "jsn_valid"}],
         "checks[0] has unknown type 'jsn_valid'; did you mean 'json_valid'?"),
        ([{"type": "json_valid"}, {"type": "max_length"}],
         "checks[1] (max_length): missing required field 'max_chars'"),
        ([{"type": "max_length", "max_chars": "5"}],
         "checks[0] (max_length): field 'max_chars': Input should be a valid integer (got \"5\")"),
        ([{"type": "max_length", "max_chars": 0}],
         "checks[0] (max_length): field 'max_chars': Input should be greater than 0 (got 0)"),
        ([{"type": "max_length", "max_chars": 5, "min_chars": 1}],
         "checks[0] (max_length): unknown field 'min_chars'; the fields here are: name, max_chars"),
        ([{"type": "regex"}],
         "checks[0] (regex): give exactly one of 'must_match' and 'must_not_match'"),
        ([{"type": "regex", "must_match": "a", "must_not_match": "b"}], "give exactly one of"),
        ([{"type": "regex", "must_match": "(a"}],
         "checks[0] (regex): field 'must_match': invalid regular expression: missing ), "
         "unterminated subpattern at position 0"),
        ([{"type": "regex", "must_match": "a", "flags": ["i"]}],
         "field 'flags[0]': Input should be 'ignorecase', 'multiline' or 'dotall' (got \"i\")"),
        ([{"type": "json_schema"}], "checks[0] (json_schema): missing required field 'schema'"),
        ([{"type": "tool_call_match", "expected": "rubric"}],
         "expected: rubric needs the expected calls in 'calls'"),
        ([{"type": "tool_call_match", "calls": [{"f": {"x": [1]}}]}],
         "'calls' is only read with expected: rubric, not reference"),
        ([{"type": "tool_call_match", "metadata_key": "gt"}],
         "'metadata_key' is only read with expected: metadata"),
        ([{"type": "tool_call_match", "expected": "rubric", "calls": [{"f": {}, "g": {}}]}],
         "calls[0] must be an object with exactly one key, the function name"),
        ([{"type": "tool_call_match", "accepted": {"f": {"x": []}}}],
         "accepted.f.x must be a non-empty list of accepted values (add \"\" to make the "
         "argument optional), not an empty list"),
        ([{"type": "json_valid", "name": "a"}, {"type": "json_valid", "name": "a"}],
         "checks[1] (json_valid): name 'a' is already used by checks[0]; names must be unique"),
        ({"checks": [{"type": "json_valid"}], "combine": {"mode": "weighted"}},
         "combine: mode weighted needs 'weight', the checks' share of the final score, strictly "
         "between 0 and 1 (got None)"),
        ({"checks": [{"type": "json_valid"}], "combine": {"mode": "weighted", "weight": 1}},
         "strictly between 0 and 1 (got 1.0)"),
        ({"checks": [{"type": "json_valid"}], "combine": {"mode": "gate", "weight": 0.5}},
         "combine: 'weight' is only read with mode: weighted"),
        ({"checks": [{"type": "json_valid"}], "combine": {"mode": "vote"}},
         "combine: field 'mode': Input should be 'gate', 'weighted' or 'checks_only' "
         '(got "vote")'),
    ],
)  # fmt: skip
def test_bad_checks_are_refused_with_where_and_what(data: Any, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_checks(data)
    assert message in str(err.value)


def test_checks_files_in_yaml_and_json() -> None:
    spec = parse_checks_text(
        "checks:\n  - type: regex\n    must_match: '^ok'\ncombine:\n  mode: checks_only\n",
        "c.yaml",
    )
    assert isinstance(spec, ChecksSpec) and spec.combine.mode == "checks_only"
    assert parse_checks_text('[{"type": "json_valid"}]', "c.json").checks[0].type == "json_valid"
    cases = [
        ("checks: [\n", "c.yml", "checks file c.yml: invalid YAML at line 2 column 1"),
        ('{"checks": [}', "c.json", "checks file c.json: invalid JSON at line 1 column 13"),
        ("checks: []", "c.txt", "unknown file type '.txt'; use a .yaml, .yml or .json file"),
        ("checks:\n  - type: nope\n", "c.yaml", "checks file c.yaml: checks[0] has unknown type"),
    ]
    for text, name, message in cases:
        with pytest.raises(ValidationError) as err:
            parse_checks_text(text, name)
        assert message in str(err.value), str(err.value)


def test_public_api_exports() -> None:
    assert assay.run_checks is run_checks
    assert assay.parse_checks is parse_checks
    assert assay.CheckResult is CheckResult


# --- on rubric versions: service and CLI -----------------------------------------------------

TEMPLATE = "Judge this.\n{{ eval_model_response }}\n"


def test_versions_store_checks_and_edits_carry_replace_or_remove_them(store: Store) -> None:
    checks = {"checks": [{"type": "json_valid"}], "combine": {"mode": "weighted", "weight": 0.5}}
    v1 = create_rubric(store, "r", text=TEMPLATE, checks=checks)
    assert v1.checks == [{"name": "json_valid", "type": "json_valid"}]
    assert v1.combine == {"mode": "weighted", "weight": 0.5}
    v2 = edit_rubric(store, "r", score_max=5)
    assert (v2.checks, v2.combine) == (v1.checks, v1.combine)  # carried over
    v3 = edit_rubric(store, "r", checks=[{"type": "max_length", "max_chars": 10}])
    assert v3.checks == [{"name": "max_length", "type": "max_length", "max_chars": 10}]
    assert v3.combine == {"mode": "gate"}
    assert v3.note == "from v2: checks changed (1, gate)"
    with pytest.raises(ValidationError, match="identical to version 3"):
        edit_rubric(store, "r", checks=[{"type": "max_length", "max_chars": 10}])
    v4 = edit_rubric(store, "r", remove_checks=True)
    assert v4.checks is None and v4.combine is None and v4.note == "from v3: checks removed"
    assert get_rubric_version(store, "r", 1).checks == v1.checks  # versions never change
    with pytest.raises(ValidationError, match="not both"):
        edit_rubric(store, "r", checks=checks, remove_checks=True)
    with pytest.raises(ValidationError, match="checks\\[0\\] has unknown type"):
        create_rubric(store, "r2", text=TEMPLATE, checks=[{"type": "nope"}])
    assert rubric_counts(store) == (1, 4)


def test_cli_create_edit_show_with_a_checks_file(cli: Any, store: Store, tmp_path: Path) -> None:
    template = tmp_path / "t.jinja"
    template.write_text(TEMPLATE)
    checks = tmp_path / "checks.yaml"
    checks.write_text(
        "checks:\n"
        "  - {type: json_schema, schema: {type: object, required: [answer]}}\n"
        "  - {type: regex, must_not_match: 'as an AI', flags: [ignorecase], name: no-disclaimer}\n"
        "  - {type: tool_call_match, expected: metadata}\n"
        "combine: {mode: weighted, weight: 0.4}\n"
    )
    created = cli("rubric", "create", "r", "--file", str(template), "--checks", str(checks))
    assert created.exit_code == 0, created.stderr
    assert "3 check(s)" in created.stderr
    shown = cli("rubric", "show", "r")
    assert shown.exit_code == 0
    assert "Checks:      3; weighted: 0.4 x checks passed (on the score range) + 0.6 x judge" in (
        shown.stdout
    )
    assert "  - json_schema: the output is JSON valid against" in shown.stdout
    assert "  - no-disclaimer (regex): must not match 'as an AI' [ignorecase]" in shown.stdout
    assert "  - tool_call_match: tool calls match row metadata 'accepted_calls'" in shown.stdout
    as_json = json.loads(cli("rubric", "show", "r", "--json").stdout)
    assert as_json["combine"] == {"mode": "weighted", "weight": 0.4}
    assert [c["name"] for c in as_json["checks"]] == [
        "json_schema",
        "no-disclaimer",
        "tool_call_match",
    ]

    removed = cli("rubric", "edit", "r", "--no-checks")
    assert removed.exit_code == 0 and "checks removed" in removed.stderr
    assert "Checks:      none (the judge alone scores)" in cli("rubric", "show", "r").stdout

    bad = tmp_path / "bad.json"
    bad.write_text('{"checks": [{"type": "regex", "must_match": "(", "name": "x"}]}')
    refused = cli("rubric", "edit", "r", "--checks", str(bad))
    assert refused.exit_code == 1
    assert (
        f"checks file {bad}: checks[0] (regex): field 'must_match': invalid regular expression"
        in refused.stderr
    )
    missing = cli("rubric", "create", "r2", "--template", "tone", "--checks", str(bad) + ".x")
    assert missing.exit_code == 1 and "checks file not found" in missing.stderr
    both = cli("rubric", "edit", "r", "--checks", str(checks), "--no-checks")
    assert both.exit_code == 1 and "not both" in both.stderr
    assert rubric_counts(store) == (1, 2)
