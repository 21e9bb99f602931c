"""Sandboxed rendering of rubric templates (``validate.py`` checks them at creation).

A rubric template is Jinja2 rendered in an ``ImmutableSandboxedEnvironment`` with
``StrictUndefined`` and autoescaping off (the output is a prompt, not HTML); ``trim_blocks`` and
``lstrip_blocks`` are on so block tags do not leave blank lines in the prompt.

Variables a template can use (any other top-level name is rejected when the rubric is created):

* ``conversation_context``: the conversation as a readable transcript;
* ``conversation_response``: the reference (captured) assistant response, or
  ``(no reference response)``;
* ``eval_model_response`` (required): the response under test, already wrapped in the
  delimiters of ``transcript.RESPONSE_START`` / ``RESPONSE_END``;
* ``metadata``: the row's metadata, as ``{{ metadata.KEY }}`` or ``{{ metadata["KEY"] }}``
  (use the bracket form for keys that are not identifiers or clash with dict methods such as
  ``items``);
* ``score_min`` / ``score_max``: the rubric version's score range;
* helpers: ``range`` (bounded), ``dict``, ``namespace``, ``cycler``, ``joiner`` and
  ``score_bands(descriptions)``, which spreads band descriptions (best first) evenly over the
  score range and returns ``(scores, description)`` pairs such as ``("9-10", "...")``.

Limits (``limits.py``) keep a runaway template from hanging a run or exhausting memory:
loops, calls and time are bounded, and no operation may build a string or list longer than
``MAX_OUTPUT_CHARS``, checked before it is built. Templates are written by the team, so these
bound mistakes, while the sandbox stops any attempt to reach Python internals.
"""

from __future__ import annotations

import functools
import math
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import StrictUndefined, nodes, pass_context
from jinja2 import TemplateError as JinjaTemplateError
from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace
from markupsafe import Markup

from assay.errors import TemplateError
from assay.rubrics import limits
from assay.rubrics.limits import (
    BUDGET,
    MAX_FORMAT_WIDTH,
    MAX_INT_BITS,
    MAX_LOOP_ITERATIONS,
    MAX_OUTPUT_CHARS,
    MAX_RANGE,
    MAX_RENDER_SECONDS,
    Budget,
    RenderLimitExceeded,
)

__all__ = [
    "HELPERS",
    "MAX_FORMAT_WIDTH",
    "MAX_INT_BITS",
    "MAX_LOOP_ITERATIONS",
    "MAX_OUTPUT_CHARS",
    "MAX_RANGE",
    "MAX_RENDER_SECONDS",
    "SANDBOX",
    "TEMPLATE_VARIABLES",
    "RenderLimitExceeded",
    "compile_checked",
    "compile_template",
    "render_template",
    "score_bands",
    "syntax_message",
]

TEMPLATE_VARIABLES = (
    "conversation_context",
    "conversation_response",
    "eval_model_response",
    "metadata",
    "score_min",
    "score_max",
)
HELPERS = ("range", "dict", "namespace", "cycler", "joiner", "score_bands")


@pass_context
def score_bands(context: Context, descriptions: Sequence[str]) -> list[tuple[str, str]]:
    """Spread band descriptions (best first) over the score range: ``[("9-10", "..."), ...]``.

    The range is cut into equal slices, one per description. On a range with fewer scores
    than descriptions, each score takes the nearest description, so the best and worst ones
    keep the extreme scores and middle descriptions drop out.
    """
    if isinstance(descriptions, str) or not isinstance(descriptions, Sequence):
        raise TypeError("score_bands() takes a list of band descriptions, best first")
    low, high = int(context.resolve("score_min")), int(context.resolve("score_max"))
    count = len(descriptions)
    if count == 0 or high <= low:
        return []
    members: dict[int, list[int]] = {}
    size = high - low + 1
    for score in range(low, high + 1):
        if size >= count:
            worst_first = (score - low) * count // size
        else:
            worst_first = math.floor((score - low) / (high - low) * (count - 1) + 0.5)
        members.setdefault(count - 1 - worst_first, []).append(score)
    bands = []
    for index, text in enumerate(descriptions):
        scores = members.get(index)
        if scores:
            label = str(scores[0]) if len(scores) == 1 else f"{scores[0]}-{scores[-1]}"
            bands.append((label, str(text)))
    return bands


class _RubricEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox plus the runaway bounds of ``limits.py``."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = limits.BoundedCodeGenerator

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
        )
        self.globals.clear()
        self.globals.update(
            range=limits.bounded_range,
            dict=dict,
            namespace=Namespace,
            cycler=Cycler,
            joiner=Joiner,
            score_bands=score_bands,
        )
        limits.bound_filters(self.filters)
        self.assay_loop_guard = limits.loop_guard
        self.assay_buffer = limits.BoundedBuffer
        self.assay_concat = limits.bounded_concat

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limits.check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = BUDGET.get()
        if budget is not None:
            budget.call()
        args = limits.check_call(obj, args, kwargs)
        return super().call(context, obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        """The sandbox's ``str.format`` / ``format_map``, with every field bounded."""
        if super().wrap_str_format(value) is None:
            return None
        fmt = value.__self__
        is_format_map = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one mapping argument")
                args, kwargs = (), args[0]
            formatter = (
                limits.BoundedEscapeFormatter(self, escape=fmt.escape)
                if isinstance(fmt, Markup)
                else limits.BoundedFormatter(self)
            )
            return type(fmt)(formatter.vformat(fmt, args, kwargs))

        return functools.update_wrapper(bounded, value)

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        # Every for-loop iterates through the guard, which counts iterations for this render.
        for loop in source.find_all(nodes.For):
            guard = nodes.EnvironmentAttribute("assay_loop_guard", lineno=loop.lineno)
            call = nodes.Call(guard, [loop.iter], [], None, None, lineno=loop.lineno)
            loop.iter = call.set_environment(self)
        return super()._generate(source, *args, **kwargs)


SANDBOX = _RubricEnvironment()


# --- rendering -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def compile_template(text: str) -> Any:
    """Compile once per distinct template: a run renders the same version for every row."""
    return SANDBOX.from_string(text)


def compile_checked(text: str) -> Any:
    """Compile, turning every way a template can fail to compile into a TemplateError."""
    try:
        return compile_template(text)
    except JinjaSyntaxError as exc:
        raise TemplateError(syntax_message(exc, text)) from exc
    except (RecursionError, SyntaxError, MemoryError) as exc:
        # Jinja's parser and Python's compiler recurse: expressions or blocks nested hundreds
        # deep fail here (Python also refuses more than 20 nested loops, or 100 indents).
        raise TemplateError(
            "the template is nested too deeply to compile (parentheses, lists, loops or "
            "blocks inside each other hundreds of levels deep); flatten it"
        ) from exc


def syntax_message(exc: JinjaSyntaxError, text: str) -> str:
    lines = text.splitlines()
    where = f"line {exc.lineno}" if exc.lineno else "an unknown line"
    message = f"template syntax error on {where}: {exc.message}"
    if exc.lineno and 0 < exc.lineno <= len(lines):
        message += f"\n  {exc.lineno} | {lines[exc.lineno - 1].rstrip()}"
    return message


def _template_line(exc: BaseException) -> int | None:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == "<template>":
            line = frame.lineno
    return line


def render_template(text: str, variables: Mapping[str, Any]) -> str:
    """Render a template in the sandbox with the runaway bounds; errors become TemplateError."""
    template = compile_checked(text)
    budget = Budget()
    token = BUDGET.set(budget)
    chunks: list[str] = []
    size = 0
    try:
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise RenderLimitExceeded(
                    f"the rendered prompt exceeds {MAX_OUTPUT_CHARS} characters"
                )
            budget.check_time()
            chunks.append(chunk)
    except TemplateError:
        raise
    except Exception as exc:
        raise TemplateError(_render_message(exc, variables)) from exc
    finally:
        BUDGET.reset(token)
    return "".join(chunks)


def _render_message(exc: Exception, variables: Mapping[str, Any]) -> str:
    line = _template_line(exc)
    prefix = f"line {line}: " if line else ""
    failed = f"rendering failed on line {line}: " if line else "rendering failed: "
    if isinstance(exc, SecurityError):
        return f"{prefix}the template tried to leave the sandbox ({exc})"
    if isinstance(exc, RenderLimitExceeded):
        return f"{prefix}{exc}"
    if isinstance(exc, RecursionError):
        return f"{prefix}recursion too deep (a macro calling itself without end?)"
    if isinstance(exc, UndefinedError):
        metadata = variables.get("metadata")
        keys = ", ".join(sorted(map(str, metadata))) if isinstance(metadata, Mapping) else ""
        return f"{failed}{exc.message}; this row's metadata keys: {keys or '(none)'}"
    if isinstance(exc, JinjaTemplateError):
        return f"{failed}{exc.message}"
    return f"{failed}{type(exc).__name__}: {exc}"
