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

Limits keep a runaway template from hanging a run: ``range()`` yields at most ``MAX_RANGE``
items, all loops together at most ``MAX_LOOP_ITERATIONS`` iterations, the output at most
``MAX_OUTPUT_CHARS`` characters, a render at most ``MAX_RENDER_SECONDS``; ``*``, ``**`` and
``%`` refuse to build huge strings or numbers. Templates are written by the team, so these
bound mistakes, while the sandbox stops any attempt to reach Python internals.
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
import string
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from jinja2 import StrictUndefined, nodes, pass_context
from jinja2 import TemplateError as JinjaTemplateError
from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace

from assay.errors import TemplateError

TEMPLATE_VARIABLES = (
    "conversation_context",
    "conversation_response",
    "eval_model_response",
    "metadata",
    "score_min",
    "score_max",
)
HELPERS = ("range", "dict", "namespace", "cycler", "joiner", "score_bands")

MAX_OUTPUT_CHARS = 1_000_000
MAX_RANGE = 10_000
MAX_LOOP_ITERATIONS = 100_000
MAX_RENDER_SECONDS = 5.0
MAX_INT_BITS = 4096
MAX_FORMAT_WIDTH = 10_000

_PERCENT_WIDTH = re.compile(r"%[-#0 +]*(\d+)")
_SPEC_NUMBER = re.compile(r"\d+")


class RenderLimitExceeded(Exception):
    """Raised inside a render when a runaway bound is hit; reported as a TemplateError."""


class _Budget:
    """Per-render counters, reached through a context variable (safe for threads and tasks)."""

    def __init__(self) -> None:
        self.iterations = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def tick(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise RenderLimitExceeded(
                f"the template's loops ran more than {MAX_LOOP_ITERATIONS} iterations"
            )
        if self.iterations % 1024 == 0:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitExceeded(f"rendering took longer than {MAX_RENDER_SECONDS:g} s")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


def _bounded_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise RenderLimitExceeded(
            f"range() of {len(rng)} items exceeds the limit of {MAX_RANGE} in a rubric template"
        )
    return rng


def _loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _BUDGET.get()
    for item in iterable:
        if budget is not None:
            budget.tick()
        yield item


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


def _check_format_widths(fmt: str) -> None:
    for match in _PERCENT_WIDTH.finditer(fmt):
        if int(match.group(1)) > MAX_FORMAT_WIDTH:
            raise RenderLimitExceeded(f"a format width of {match.group(1)} is too large")


def _check_str_format(fmt: str) -> None:
    for _literal, _field, spec, _conv in string.Formatter().parse(fmt):
        for number in _SPEC_NUMBER.findall(spec or ""):
            if int(number) > MAX_FORMAT_WIDTH:
                raise RenderLimitExceeded(f"a format width of {number} is too large")


class _RubricEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox plus the runaway bounds described in the module docstring."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
        )
        self.globals.clear()
        self.globals.update(
            range=_bounded_range,
            dict=dict,
            namespace=Namespace,
            cycler=Cycler,
            joiner=Joiner,
            score_bands=score_bands,
        )
        base_format = self.filters["format"]

        def bounded_format(value: Any, *args: Any, **kwargs: Any) -> str:
            _check_format_widths(str(value))
            return base_format(value, *args, **kwargs)

        self.filters["format"] = bounded_format
        for name in ("center", "indent"):
            self.filters[name] = _bounded_width_filter(self.filters[name])
        self.assay_loop_guard = _loop_guard

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_str_format(value.__self__)
        return wrapped

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        # Every for-loop iterates through the guard, which counts iterations for this render.
        for loop in source.find_all(nodes.For):
            guard = nodes.EnvironmentAttribute("assay_loop_guard", lineno=loop.lineno)
            call = nodes.Call(guard, [loop.iter], [], None, None, lineno=loop.lineno)
            loop.iter = call.set_environment(self)
        return super()._generate(source, *args, **kwargs)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``*``, ``**`` and ``%`` results that would be huge before building them."""
    both_ints = isinstance(left, int) and isinstance(right, int)
    if operator == "*" and both_ints:
        too_big = left.bit_length() + right.bit_length() > MAX_INT_BITS
    elif operator == "*":
        seq, times = (left, right) if isinstance(right, int) else (right, left)
        sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
        too_big = sized and len(seq) * times > MAX_OUTPUT_CHARS
    elif operator == "**":
        too_big = both_ints and abs(left) > 1 and right > MAX_INT_BITS / math.log2(abs(left))
    else:
        too_big = False
        if isinstance(left, str):
            _check_format_widths(left)
    if too_big:
        raise RenderLimitExceeded(f"the result of {operator!r} here would be too large")


def _bounded_width_filter(base: Any) -> Any:
    def bounded(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > MAX_FORMAT_WIDTH:
            raise RenderLimitExceeded(f"a width of {width} is too large")
        return base(value, width, *args, **kwargs)

    return bounded


SANDBOX = _RubricEnvironment()


# --- rendering -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def compile_template(text: str) -> Any:
    """Compile once per distinct template: a run renders the same version for every row."""
    return SANDBOX.from_string(text)


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
    try:
        template = compile_template(text)
    except JinjaSyntaxError as exc:
        raise TemplateError(syntax_message(exc, text)) from exc
    budget = _Budget()
    token = _BUDGET.set(budget)
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
        _BUDGET.reset(token)
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
