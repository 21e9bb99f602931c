"""A drafting model's answer: its schema, its strict reading, and the template built from it.

The model answers with one JSON object (``draft_schema``)::

    {"task_outcome": "...", "score_levels": [{"score": 10, "meaning": "..."}, ...],
     "failure_modes": ["..."], "criteria": ["..."]}

``parse_draft`` accepts that object alone, in one ```` ```json ```` fence, or (a fallback for
models without structured output) as the first JSON object in prose. Anything else raises
``ValidationError`` naming what was wrong, with the start of the answer.

The answer is untrusted data that ends up inside a Jinja template. ``literal`` makes every
piece of it plain text to Jinja: an opening ``{{``, ``{%`` or ``{#`` gets a space after its
brace, so a model cannot add a loop, reach an attribute or hide part of the template in a
comment; response delimiters are defused as in any other data.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from assay.errors import ValidationError
from assay.rubrics.transcript import neutralise_delimiters

MAX_LEVELS = 21
MAX_ITEMS = 20  # failure modes, criteria
MAX_OUTCOME_CHARS = 2000
MAX_ITEM_CHARS = 600
_EXCERPT_CHARS = 200

_FENCE = re.compile(r"```[ \t]*+(?:json)?(.*)```", re.DOTALL | re.IGNORECASE)
# A brace that Jinja would read as the start of a tag ("{{", "{%", "{#"), or one that ends the
# text (so that nothing placed after it can complete a tag).
_JINJA_OPENER = re.compile(r"\{(?=[{%#]|$)")


class ScoreLevel(BaseModel):
    score: int
    meaning: str


class RubricDraft(BaseModel):
    """What the drafting model proposed, checked and with its levels best first."""

    task_outcome: str
    score_levels: list[ScoreLevel]
    failure_modes: list[str]
    criteria: list[str]


def draft_schema(score_min: int, score_max: int) -> dict[str, Any]:
    """JSON schema of the answer; only keywords strict structured-output modes accept."""
    text = {"type": "string"}
    return {
        "type": "object",
        "properties": {
            "task_outcome": {
                **text,
                "description": "What a successful response achieves for the user, in 1-3 "
                "sentences.",
            },
            "score_levels": {
                "type": "array",
                "description": f"What a score means, best first, from {score_max} down to "
                f"{score_min}; each level covers the scores up to the next level above it.",
                "items": {
                    "type": "object",
                    "properties": {"score": {"type": "integer"}, "meaning": text},
                    "required": ["score", "meaning"],
                    "additionalProperties": False,
                },
            },
            "failure_modes": {
                "type": "array",
                "items": text,
                "description": "Ways responses in the examples fall short.",
            },
            "criteria": {
                "type": "array",
                "items": text,
                "description": "What a grader should check, most important first.",
            },
        },
        "required": ["task_outcome", "score_levels", "failure_modes", "criteria"],
        "additionalProperties": False,
    }


# --- reading the answer ----------------------------------------------------------------------


class _Bad(ValueError):
    """Why the answer is not a usable draft."""


def parse_draft(text: str | None, score_min: int, score_max: int, model: str) -> RubricDraft:
    """The draft in ``text``, checked strictly; ``ValidationError`` if it is not usable."""
    try:
        return _check(_json_object(text), score_min, score_max)
    except _Bad as exc:
        excerpt = (text or "").strip()
        if len(excerpt) > _EXCERPT_CHARS:
            excerpt = excerpt[:_EXCERPT_CHARS] + "..."
        raise ValidationError(
            f"model {model!r} did not answer with a usable rubric draft: {exc}. Nothing was "
            f"saved. Its answer began: {excerpt!r}"
        ) from None


def _json_object(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        raise _Bad("the answer is empty")
    stripped = text.strip()
    fenced = _FENCE.search(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    start = stripped.find("{")
    if start < 0:
        raise _Bad('the answer is not JSON: expected an object {"task_outcome": ...}')
    try:
        data, _ = json.JSONDecoder().raw_decode(stripped, start)
    except json.JSONDecodeError as exc:
        raise _Bad(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except (ValueError, RecursionError) as exc:
        raise _Bad(f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _Bad("expected a JSON object")
    return data


def _text(value: Any, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{where} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise _Bad(f"{where} is empty")
    if len(value) > limit:
        raise _Bad(f"{where} is longer than {limit} characters")
    return value.strip()


def _texts(data: dict[str, Any], key: str, *, required: bool) -> list[str]:
    if key not in data:
        raise _Bad(f"the answer has no {key!r} list")
    items = data[key]
    if not isinstance(items, list):
        raise _Bad(f"{key!r} must be a list of strings, not {type(items).__name__}")
    if required and not items:
        raise _Bad(f"{key!r} is empty")
    if len(items) > MAX_ITEMS:
        raise _Bad(f"{key!r} has {len(items)} items; at most {MAX_ITEMS}")
    return [_text(item, f"{key}[{i}]", MAX_ITEM_CHARS) for i, item in enumerate(items)]


def _score(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"{where} must be an integer, not {json.dumps(value)[:40]}")
    if isinstance(value, float) and not value.is_integer():
        raise _Bad(f"{where} must be an integer, not {value}")
    return int(value)


def _check(data: dict[str, Any], score_min: int, score_max: int) -> RubricDraft:
    if "task_outcome" not in data:
        raise _Bad("the answer has no 'task_outcome'")
    outcome = _text(data["task_outcome"], "'task_outcome'", MAX_OUTCOME_CHARS)
    levels = data.get("score_levels")
    if not isinstance(levels, list) or not levels:
        raise _Bad("the answer has no 'score_levels' list (what each score means)")
    if len(levels) > MAX_LEVELS:
        raise _Bad(f"'score_levels' has {len(levels)} levels; at most {MAX_LEVELS}")
    checked: dict[int, ScoreLevel] = {}
    for i, level in enumerate(levels):
        where = f"score_levels[{i}]"
        if not isinstance(level, dict) or "score" not in level or "meaning" not in level:
            raise _Bad(f'{where} must be an object {{"score": N, "meaning": "..."}}')
        score = _score(level["score"], f"{where}.score")
        if not score_min <= score <= score_max:
            raise _Bad(f"{where}.score {score} is outside the range {score_min}-{score_max}")
        if score in checked:
            raise _Bad(f"{where}.score {score} appears twice")
        checked[score] = ScoreLevel(
            score=score, meaning=_text(level["meaning"], f"{where}.meaning", MAX_ITEM_CHARS)
        )
    for end, label in ((score_max, "highest"), (score_min, "lowest")):
        if end not in checked:
            raise _Bad(f"'score_levels' does not say what the {label} score, {end}, means")
    return RubricDraft(
        task_outcome=outcome,
        score_levels=[checked[s] for s in sorted(checked, reverse=True)],
        failure_modes=_texts(data, "failure_modes", required=False),
        criteria=_texts(data, "criteria", required=True),
    )


# --- the template ----------------------------------------------------------------------------


def literal(text: str) -> str:
    """Model text as plain template text: no Jinja tag can start in it, no delimiter fake."""
    return _JINJA_OPENER.sub("{ ", neutralise_delimiters(text))


def _line(text: str) -> str:
    return literal(" ".join(text.split()))


def _bands(levels: list[ScoreLevel]) -> list[tuple[str, str]]:
    """Levels (best first) as bands: a level covers its score up to the next level above."""
    bands = []
    above: int | None = None
    for level in levels:
        top = level.score if above is None else above - 1
        label = str(level.score) if top == level.score else f"{level.score}-{top}"
        bands.append((label, level.meaning))
        above = level.score
    return bands


_HEADER = """\
{#
  Assay rubric drafted by a model from a sample of a dataset. It is a draft: check the task,
  the criteria, the failure modes and every score band against your own idea of a good answer,
  try it with `assay rubric test`, and save your changes as a new version with
  `assay rubric edit NAME --file FILE`. Row metadata is available as {{ metadata.KEY }}.
#}
"""

_REFERENCE = (
    "The response recorded for the same conversation, from production or written by a person. "
    "Use it as an example of the outcome the task needs; the response under test need not "
    "match its wording, length or structure. If the reference is clearly wrong, judge against "
    "what is actually right and say so in your reasoning."
)


def build_template(draft: RubricDraft) -> str:
    """The rubric template for a draft, in the style of the built-in templates."""
    parts = [
        _HEADER,
        "You are grading whether an AI assistant's response achieves the task's outcome.\n",
        "# The task\n" + literal(draft.task_outcome) + "\n",
        "# The conversation\n{{ conversation_context }}\n",
        "# Reference response\n" + _REFERENCE + "\n\n{{ conversation_response }}\n",
        "# Response under test\n{{ eval_model_response }}\n",
        "# How to judge\n"
        + "\n".join(f"{i}. {_line(c)}" for i, c in enumerate(draft.criteria, 1))
        + "\n",
    ]
    if draft.failure_modes:
        parts.append(
            "# Failure modes seen in this task's data\n"
            "Score a response down for each of these it shows:\n"
            + "\n".join(f"- {_line(mode)}" for mode in draft.failure_modes)
            + "\n"
        )
    parts.append(
        "# Score bands\n"
        + "\n".join(f"- {label}: {_line(meaning)}" for label, meaning in _bands(draft.score_levels))
        + "\n\nUse a decimal only to place a response between two bands.\n"
    )
    return "\n".join(parts)
