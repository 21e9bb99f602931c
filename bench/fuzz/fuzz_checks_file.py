"""Fuzz checks files (YAML and JSON), then the checks they declare on fuzzed model output.

    python bench/fuzz/fuzz_checks_file.py -max_total_time=60

``parse_checks_text`` must end in a ``ChecksSpec`` or a ``ValidationError``; ``run_checks``
on a spec it accepts must never raise and must return one result per check. The checks a
fuzzed file can declare include regular expressions of its own: one that backtracks
catastrophically is the rubric author's, so patterns with nested quantifiers are left out of
what is run (docs/reliability.md says why).
"""

from __future__ import annotations

import re

import atheris
import orjson

with atheris.instrument_imports(include=["assay", "yaml"]):
    from assay.errors import ValidationError
    from assay.rubrics.checkfile import parse_checks_text
    from assay.rubrics.checks import run_checks
    from assay.rubrics.checkspecs import RegexCheck

import _common

SEEDS = [
    b"\x00checks:\n  - type: json_valid\n  - type: regex\n    must_not_match: '(?i)as an ai'\n"
    b"  - type: max_length\n    max_chars: 100\ncombine: {mode: weighted, weight: 0.3}\n",
    b'\x01{"checks": [{"type": "json_schema", "schema": {"type": "object", "required": ["a"]}},'
    b' {"type": "exact_match", "metadata_key": "k"}], "combine": "gate"}',
    b"\x00- type: tool_call_match\n  expected: rubric\n  calls: [{f: {x: [1, '']}}]\n",
    b"\x00[{type: normalized_match}, {type: json_valid, allow_fence: true}]",
]
# A quantifier applied to a group or class that itself repeats: (a+)+, (\w*)*, (x|y+)+ ...
_NESTED_QUANTIFIER = re.compile(r"[+*}]\)*[+*{]|\)[+*{]")


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    suffix = ".json" if fdp.ConsumeIntInRange(0, 1) else ".yaml"
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 2000))
    try:
        spec = parse_checks_text(text, f"fuzz{suffix}")
    except ValidationError as exc:
        assert str(exc).startswith(f"checks file fuzz{suffix}")
        return
    if any(isinstance(c, RegexCheck) and _NESTED_QUANTIFIER.search(c.pattern) for c in spec.checks):
        return
    choice = fdp.ConsumeIntInRange(0, 2)
    if choice == 0:
        output: object = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    elif choice == 1:
        output = {
            "role": "assistant",
            "content": _common.json_value(fdp),
            "tool_calls": _common.json_value(fdp),
        }
    else:
        output = _common.amplified(fdp).decode("utf-8", "replace")
    reference = {"role": "assistant", "content": "ok", "tool_calls": _common.json_value(fdp)}
    results = run_checks(spec, output, reference, {"k": _common.json_value(fdp)})
    assert [r.name for r in results] == [c.name for c in spec.checks]
    orjson.dumps([r.model_dump() for r in results])  # stored with the judgment


if __name__ == "__main__":
    _common.run(test_one_input, SEEDS)
