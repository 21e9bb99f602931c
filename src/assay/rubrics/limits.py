"""The runaway bounds of the rubric sandbox: no template can hang a run or exhaust memory.

Jinja's sandbox stops a template from reaching Python internals; it does not stop work. These
bounds do, for one render:

* time and repetition: ``range()`` yields at most ``MAX_RANGE`` items, all loops together run
  at most ``MAX_LOOP_ITERATIONS`` iterations, calls (macros, functions, methods) are at most
  ``MAX_CALLS``, and the wall clock (``MAX_RENDER_SECONDS``) is checked on every filter, call
  and intercepted operator and every 1,024 loop iterations;
* size: no single operation may build a string or list longer than ``MAX_OUTPUT_CHARS``, and
  this is checked *before* it is built, for every operation that can amplify its inputs:
  ``*``, ``**``, ``+``, ``~``, ``%`` and ``str.format`` (widths, fields), the string methods
  ``center``, ``ljust``, ``rjust``, ``zfill``, ``expandtabs``, ``replace``, ``join`` and
  ``translate``, ``int.to_bytes``, and the filters ``join``, ``replace``, ``indent``,
  ``center``, ``wordwrap``, ``batch``, ``slice``, ``sum`` and ``format``. What a macro, a
  ``{% set %}`` block or a filter block writes is capped the same way, and so is the prompt.

Every other operation is at most linear in its inputs, so with these bounds work and memory
stay proportional to ``MAX_OUTPUT_CHARS`` times the number of steps, and steps are bounded.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import make_attrgetter
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter

MAX_OUTPUT_CHARS = 1_000_000
MAX_RANGE = 10_000
MAX_LOOP_ITERATIONS = 100_000
MAX_CALLS = 100_000
MAX_RENDER_SECONDS = 5.0
MAX_INT_BITS = 4096
MAX_FORMAT_WIDTH = 10_000

_PERCENT_SPEC = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*+(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlL]?"
    r"(?P<type>.)?",
    re.DOTALL,
)
_SPEC_NUMBER = re.compile(r"\d+")
_SEQUENCES = (str, bytes, list, tuple)


class RenderLimitExceeded(Exception):
    """Raised inside a render when a runaway bound is hit; reported as a TemplateError."""


class Budget:
    """Per-render counters, reached through a context variable (safe for threads and tasks)."""

    def __init__(self) -> None:
        self.iterations = 0
        self.calls = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def tick(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise RenderLimitExceeded(
                f"the template's loops ran more than {MAX_LOOP_ITERATIONS} iterations"
            )
        if self.iterations % 1024 == 0:
            self.check_time()

    def call(self) -> None:
        self.calls += 1
        if self.calls > MAX_CALLS:
            raise RenderLimitExceeded(
                f"the template made more than {MAX_CALLS} calls (a macro calling itself "
                "over and over?)"
            )
        self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitExceeded(f"rendering took longer than {MAX_RENDER_SECONDS:g} s")


BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("budget", default=None)


def check_time() -> None:
    budget = BUDGET.get()
    if budget is not None:
        budget.check_time()


def check_size(size: int, what: str) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise RenderLimitExceeded(
            f"{what} would build {size:,} characters; the limit is {MAX_OUTPUT_CHARS:,}"
        )


def _check_width(number: str) -> None:
    if len(number) > 9 or int(number) > MAX_FORMAT_WIDTH:
        shown = number if len(number) <= 20 else number[:20] + "..."
        raise RenderLimitExceeded(f"a format width of {shown} is too large")


# --- loops, ranges, operators ----------------------------------------------------------------


def bounded_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise RenderLimitExceeded(
            f"range() of {len(rng)} items exceeds the limit of {MAX_RANGE} in a rubric template"
        )
    return rng


def loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = BUDGET.get()
    for item in iterable:
        if budget is not None:
            budget.tick()
        yield item


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``*``, ``**``, ``+`` and ``%`` results that would be huge before building them."""
    check_time()
    both_ints = isinstance(left, int) and isinstance(right, int)
    if operator == "*" and both_ints:
        too_big = left.bit_length() + right.bit_length() > MAX_INT_BITS
    elif operator == "*":
        seq, times = (left, right) if isinstance(right, int) else (right, left)
        sized = isinstance(seq, _SEQUENCES) and isinstance(times, int)
        too_big = sized and len(seq) * times > MAX_OUTPUT_CHARS
    elif operator == "**":
        too_big = both_ints and abs(left) > 1 and right > MAX_INT_BITS / math.log2(abs(left))
    elif operator == "+":
        sized = isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES)
        too_big = sized and len(left) + len(right) > MAX_OUTPUT_CHARS
    else:
        too_big = False
        if isinstance(left, str | bytes):
            check_percent_format(left, right)
    if too_big:
        raise RenderLimitExceeded(f"the result of {operator!r} here would be too large")


def bounded_concat(values: tuple[Any, ...]) -> str:
    """The ``~`` operator (Jinja's ``str_join``), refusing a result over the size limit."""
    texts = [value if isinstance(value, str) else str(value) for value in values]
    check_size(sum(map(len, texts)), "'~'")
    return "".join(texts)


# --- formatting --------------------------------------------------------------------------------


def _field_size(value: Any, sizes: dict[int, int]) -> int:
    """An upper bound of one formatted field (``%f`` of 1e300 is 300 digits: hence the slack)."""
    key = id(value)
    if key not in sizes:
        sizes[key] = len(value) if isinstance(value, str | bytes) else len(repr(value)) + 400
    return sizes[key]


def check_percent_format(fmt: str | bytes, args: Any) -> None:
    """Bound ``fmt % args`` (and the ``format`` filter): widths, ``*``, and the result size."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    positional: list[Any] | None = [args]
    if isinstance(args, Mapping):
        positional = None
    elif isinstance(args, tuple):
        positional = list(args)
    size, index, sizes = len(text), 0, dict[int, int]()
    for match in _PERCENT_SPEC.finditer(text):
        if match["type"] == "%":
            continue
        for number in (match["width"], match["precision"]):
            if number == "*":
                raise RenderLimitExceeded(
                    "a '*' width or precision in a % format is not supported in a rubric template"
                )
            if number:
                _check_width(number)
        value: Any = ""
        if match["key"] is not None and isinstance(args, Mapping):
            value = args.get(match["key"], "")
        elif positional is not None and index < len(positional):
            value, index = positional[index], index + 1
        size += _field_size(value, sizes) + int(match["width"] or 0) + int(match["precision"] or 0)
        check_size(size, "this % format")


class _CountingFields:
    """A formatter mixin that bounds each field's width and the sum of all fields."""

    size = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in _SPEC_NUMBER.findall(format_spec):
            _check_width(number)
        text = super().format_field(value, format_spec)  # type: ignore[misc]
        self.size += len(text)
        check_size(self.size, "this str.format()")
        return text


class BoundedFormatter(_CountingFields, SandboxedFormatter):
    pass


class BoundedEscapeFormatter(_CountingFields, SandboxedEscapeFormatter):
    pass


# --- methods ---------------------------------------------------------------------------------

_GROWING_METHODS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join", "translate", "to_bytes"}
)


def _joined_size(items: list[Any], separator: Any) -> int:
    sizes: dict[int, int] = {}
    total = len(separator if isinstance(separator, str | bytes) else str(separator)) * max(
        len(items) - 1, 0
    )
    for item in items:
        key = id(item)
        if key not in sizes:
            sizes[key] = len(item) if isinstance(item, str | bytes) else len(str(item))
        total += sizes[key]
        if total > MAX_OUTPUT_CHARS:
            break
    return total


def _replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    if not (isinstance(old, type(text)) and isinstance(new, type(text))) or len(new) <= len(old):
        return len(text)
    found = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return int(len(text) + found * (len(new) - len(old)))


def check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Bound a call to a method that can amplify its input; returns the arguments to use
    (an iterable given to ``join`` is read once, here, and passed on as a list)."""
    name = getattr(obj, "__name__", None)
    if name not in _GROWING_METHODS:
        return args
    owner = getattr(obj, "__self__", None)
    size = 0
    if isinstance(owner, int) and name == "to_bytes":
        length = args[0] if args else kwargs.get("length", 1)
        size = length if isinstance(length, int) else 0
    elif not isinstance(owner, str | bytes):
        return args
    elif name == "join" and args:
        items = list(args[0])
        check_size(_joined_size(items, owner), ".join()")
        return (items, *args[1:])
    elif name == "replace" and len(args) >= 2:
        size = _replaced_size(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
        size = len(owner) + tabs * tab if isinstance(tab, int) else 0
    elif name == "translate" and isinstance(owner, str) and args:
        table = args[0]
        values = table.values() if isinstance(table, Mapping) else table
        strings = values if isinstance(values, Iterable) and not isinstance(values, str) else ()
        longest = max((len(v) for v in strings if isinstance(v, str)), default=1)
        size = len(owner) * max(longest, 1)
    elif name in ("center", "ljust", "rjust", "zfill") and args:
        size = args[0] if isinstance(args[0], int) else 0
    check_size(size, f".{name}()")
    return args


# --- filters ---------------------------------------------------------------------------------


def _width_bound(base: Callable[..., Any], *, per_line: bool) -> Callable[..., Any]:
    """center and indent: a width over ``MAX_FORMAT_WIDTH`` is refused; indent pads each line."""

    @functools.wraps(base)
    def bounded(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > MAX_FORMAT_WIDTH:
            raise RenderLimitExceeded(f"a width of {width} is too large")
        if per_line:  # the width may also be a string, the indentation itself
            text = str(value)
            pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
            check_size(len(text) + (text.count("\n") + 1) * pad, "indent")
        return base(value, width, *args, **kwargs)

    return bounded


def _join(base: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(base)
    def join(eval_ctx: Any, value: Iterable[Any], d: Any = "", attribute: Any = None) -> Any:
        items = list(value)
        if attribute is not None:
            items = list(map(make_attrgetter(eval_ctx.environment, attribute), items))
        check_size(_joined_size(items, d), "join")
        return base(eval_ctx, items, d)

    return join


def _replace(base: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(base)
    def replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
        size = _replaced_size(str(s), str(old), str(new), -1 if count is None else count)
        check_size(size, "replace")
        return base(eval_ctx, s, old, new, count)

    return replace


def _wordwrap(base: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(base)
    def wordwrap(environment: Any, s: Any, *args: Any, **kwargs: Any) -> Any:
        wrapstring = kwargs.get("wrapstring", args[2] if len(args) > 2 else None)
        if isinstance(wrapstring, str) and len(wrapstring) > 1:
            text = str(s)  # at most one break per character
            check_size(len(text) + (len(text) + 1) * len(wrapstring), "wordwrap")
        return base(environment, s, *args, **kwargs)

    return wordwrap


def _count_bound(base: Callable[..., Any], what: str, name: str) -> Callable[..., Any]:
    """batch and slice: their count argument becomes a loop (and a fill) that long."""
    first = 1 if getattr(base, "jinja_pass_arg", None) is not None else 0  # slice: eval ctx

    @functools.wraps(base)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        count = args[first + 1] if len(args) > first + 1 else kwargs.get(name)
        if isinstance(count, int) and count > MAX_RANGE:
            raise RenderLimitExceeded(
                f"{what}({count}) exceeds the limit of {MAX_RANGE} in a rubric template"
            )
        return base(*args, **kwargs)

    return bounded


def _sum(base: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(base)
    def sum_(
        environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0
    ) -> Any:
        items = list(iterable)
        if attribute is not None:
            items = list(map(make_attrgetter(environment, attribute), items))
        kind = type(start)
        if kind in (list, tuple) and all(type(item) is kind for item in items):
            # Summing sequences builds every partial result (quadratic): chain them instead.
            check_size(len(start) + sum(map(len, items)), "sum")
            return kind(itertools.chain(start, *items))
        return base(environment, items, start=start)

    return sum_


def _format(base: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(base)
    def format_(value: Any, *args: Any, **kwargs: Any) -> Any:
        check_percent_format(str(value), kwargs or args)
        return base(value, *args, **kwargs)

    return format_


def _timed(base: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(base)  # keeps jinja's pass_context / pass_eval_context marker
    def timed(*args: Any, **kwargs: Any) -> Any:
        check_time()
        return base(*args, **kwargs)

    return timed


def bound_filters(filters: dict[str, Callable[..., Any]]) -> None:
    """Replace, in place, the filters that can amplify their input, and time every filter."""
    filters["join"] = _join(filters["join"])
    filters["replace"] = _replace(filters["replace"])
    filters["wordwrap"] = _wordwrap(filters["wordwrap"])
    filters["batch"] = _count_bound(filters["batch"], "batch", "linecount")
    filters["slice"] = _count_bound(filters["slice"], "slice", "slices")
    filters["sum"] = _sum(filters["sum"])
    filters["format"] = _format(filters["format"])
    filters["center"] = _width_bound(filters["center"], per_line=False)
    filters["indent"] = _width_bound(filters["indent"], per_line=True)
    for name, function in filters.items():
        filters[name] = _timed(function)


# --- blocks ----------------------------------------------------------------------------------


class BoundedBuffer(list):  # type: ignore[type-arg]
    """What a macro, a ``{% set %}`` block or a filter block writes, capped like the prompt."""

    size = 0

    def append(self, item: Any) -> None:
        self._grow(len(item) if isinstance(item, str) else 0)
        super().append(item)

    def extend(self, items: Iterable[Any]) -> None:
        items = tuple(items)
        self._grow(sum(len(item) for item in items if isinstance(item, str)))
        super().extend(items)

    def _grow(self, chars: int) -> None:
        self.size += chars
        if self.size > MAX_OUTPUT_CHARS:
            raise RenderLimitExceeded(
                f"a macro or block wrote more than {MAX_OUTPUT_CHARS} characters"
            )


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with bounded block buffers and a bounded ``~``."""

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.assay_buffer()")

    def visit_Concat(self, node: Any, frame: Frame) -> None:
        self.write("environment.assay_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")
