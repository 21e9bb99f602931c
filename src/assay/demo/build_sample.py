"""Regenerate ``data/bfcl_sample.jsonl``, the production traffic ``assay demo`` imports.

Not run by the demo: the JSONL ships in the package. Run it after changing the conversion::

    python -m assay.demo.build_sample /path/to/bfcl        # the folder holding
                                                           # BFCL_v4_simple_python.json and
                                                           # possible_answer/

Each BFCL "simple" item (one function, exactly one expected call) becomes one line of Assay's
traffic export format: the request an application would send (the user's question and the
function as an OpenAI tool), and the answer a strong production model would give (one tool
call with the first accepted value of each argument), tagged ``environment=production``,
``task=function-calling``, with BFCL's ground truth in the metadata (``accepted_calls``) so
the rubric's ``tool_call_match`` check can grade any model's call against it. BFCL function
names may contain dots, which OpenAI-style APIs refuse: tools and calls use underscores, the
ground truth keeps the dots, and the check is told ``dots_as_underscores``.

Nothing here is a measurement: the recorded answers are BFCL's accepted answers, the token
counts are estimates (4 characters a token), and no latency or cost is recorded.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

QUESTIONS = "BFCL_v4_simple_python.json"
ANSWERS = Path("possible_answer") / QUESTIONS
SAMPLE_ROWS = 250
PRODUCTION_MODEL = "prod-model"
ENVIRONMENT = "production"
TASK = "function-calling"
FIRST_CALL = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SPACING = timedelta(minutes=37)  # 250 calls spread over about six and a half days
CHARS_PER_TOKEN = 4
# BFCL's Python-flavoured parameter types, as JSON Schema types ("any" has none).
_TYPES = {"dict": "object", "float": "number", "tuple": "array"}
_SCHEMA_KEYS = {"type", "description", "properties", "required", "items", "enum", "default"}


def tool_name(name: str) -> str:
    """An OpenAI-safe function name (``math.factorial`` -> ``math_factorial``)."""
    return name.replace(".", "_")


def json_schema(spec: Any) -> Any:
    """A BFCL parameter spec as JSON Schema: types mapped, BFCL-only keys dropped."""
    if not isinstance(spec, dict):
        return spec
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "type":
            if value == "any":
                continue
            value = _TYPES.get(value, value)
        elif key == "properties":
            value = {name: json_schema(prop) for name, prop in value.items()}
        elif key == "items":
            value = json_schema(value)
        out[key] = value
    return out


def to_tool(function: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool_name(function["name"]),
            "description": function.get("description", ""),
            "parameters": json_schema(function["parameters"]),
        },
    }


def recorded_value(accepted: Any) -> Any:
    """One concrete value from an accepted value: objects are maps of accepted values again,
    lists are matched element by element."""
    if isinstance(accepted, dict):
        return {
            key: recorded_value(values[0])
            for key, values in accepted.items()
            if values and values[0] != ""
        }
    if isinstance(accepted, list):
        return [recorded_value(item) for item in accepted]
    return accepted


def recorded_arguments(arguments: dict[str, list[Any]]) -> dict[str, Any]:
    """The first accepted value of each argument; an argument whose first is ``""`` (optional,
    the default is fine) is left out, as a model would."""
    return {
        key: recorded_value(values[0])
        for key, values in arguments.items()
        if values and values[0] != ""
    }


def export_line(index: int, question: dict[str, Any], truth: list[Any]) -> dict[str, Any]:
    """One BFCL item as an Assay traffic export line (request, response, tags, metadata)."""
    (turn,) = question["question"]
    request = {
        "model": PRODUCTION_MODEL,
        "messages": turn,
        "tools": [to_tool(f) for f in question["function"]],
        "tool_choice": "required",
    }
    calls = []
    for number, call in enumerate(truth):
        ((name, arguments),) = call.items()
        calls.append(
            {
                "id": f"call_{question['id']}_{number}",
                "type": "function",
                "function": {
                    "name": tool_name(name),
                    "arguments": json.dumps(recorded_arguments(arguments), ensure_ascii=False),
                },
            }
        )
    started = FIRST_CALL + SPACING * index
    prompt_chars = len(json.dumps(request["messages"])) + len(json.dumps(request["tools"]))
    answer_chars = sum(len(c["function"]["arguments"]) + len(c["function"]["name"]) for c in calls)
    response = {
        "id": f"chatcmpl-{question['id']}",
        "object": "chat.completion",
        "created": int(started.timestamp()),
        "model": PRODUCTION_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": calls},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_chars // CHARS_PER_TOKEN,
            "completion_tokens": answer_chars // CHARS_PER_TOKEN + 1,
        },
    }
    return {
        "request": request,
        "response": response,
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "environment": ENVIRONMENT,
        "task": TASK,
        "metadata": {"bfcl_id": question["id"], "accepted_calls": truth},
    }


def build(source: Path, rows: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    """The first ``rows`` BFCL simple items with their answers, as export lines."""
    questions = [json.loads(line) for line in (source / QUESTIONS).open(encoding="utf-8")]
    answers = {}
    for line in (source / ANSWERS).open(encoding="utf-8"):
        record = json.loads(line)
        answers[record["id"]] = record["ground_truth"]
    return [export_line(i, q, answers[q["id"]]) for i, q in enumerate(questions[:rows])]


def write(lines: list[dict[str, Any]], target: Path) -> None:
    with target.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the demo's BFCL traffic sample.")
    parser.add_argument("source", type=Path, help="folder with BFCL_v4_simple_python.json")
    parser.add_argument("--rows", type=int, default=SAMPLE_ROWS)
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "data" / "bfcl_sample.jsonl"
    )
    args = parser.parse_args()
    lines = build(args.source, args.rows)
    write(lines, args.output)
    print(f"wrote {len(lines)} lines to {args.output}")


if __name__ == "__main__":
    main()
