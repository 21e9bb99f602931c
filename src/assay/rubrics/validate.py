"""Checking a rubric template when it is created, so that problems surface then, not mid-run.

Static checks on the parsed template (syntax, unknown variables, filters and tests, tags that
load other templates, attribute names that lead to Python internals, the reserved delimiters),
then one trial render in the sandbox on sample data, which catches sandbox escapes and runaway
loops or output that only show when the template runs.
"""

from __future__ import annotations

import difflib
import re

from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.meta import find_undeclared_variables

from assay.errors import TemplateError
from assay.rubrics.pairwise import PAIR_DELIMITERS, PAIRWISE_VARIABLES, delimit_pair_response
from assay.rubrics.render import (
    HELPERS,
    SANDBOX,
    TEMPLATE_VARIABLES,
    RenderLimitExceeded,
    compile_checked,
    render_template,
    syntax_message,
)
from assay.rubrics.transcript import RESPONSE_END, RESPONSE_START, delimit_response

MAX_TEMPLATE_CHARS = 100_000

# Attributes that lead from an ordinary object to the interpreter. The sandbox refuses them at
# render time whatever their spelling; this list lets creation refuse the obvious ones early.
_UNSAFE_ATTRIBUTES = frozenset(
    {
        "mro", "func_globals", "func_code", "func_closure", "func_defaults", "im_func",
        "im_self", "im_class", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame",
        "ag_code", "f_globals", "f_locals", "f_builtins", "f_code", "f_back", "tb_frame",
        "tb_next",
    }
)  # fmt: skip
# A str.format field that walks into an attribute or item starting with "_": "{0.__class__}".
_UNSAFE_FORMAT_FIELD = re.compile(r"\{[^{}]*[.\[]\s*_")


def validate_template(text: str, kind: str = "pointwise") -> list[str]:
    """Check a template as a rubric needs it; return the variables it uses, sorted.

    ``kind="pairwise"`` checks a pairwise template (``rubrics/pairwise.py``): it must use
    ``{{ response_a }}`` and ``{{ response_b }}`` instead of ``{{ eval_model_response }}``.

    Raises ``TemplateError`` (with the line number where there is one) for an empty or too
    long template, a syntax error, an unknown filter or test, an unknown variable, a missing
    ``{{ eval_model_response }}``, an unsupported tag, an attempt to reach Python internals,
    or a runaway loop or output found by a trial render on sample data.
    """
    if not isinstance(text, str) or not text.strip():
        raise TemplateError("the template is empty")
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(
            f"the template has {len(text)} characters; the limit is {MAX_TEMPLATE_CHARS}"
        )
    pairwise = kind == "pairwise"
    allowed = PAIRWISE_VARIABLES if pairwise else TEMPLATE_VARIABLES
    for delimiter in (RESPONSE_START, RESPONSE_END, *PAIR_DELIMITERS):
        if delimiter in text:
            line = text[: text.index(delimiter)].count("\n") + 1
            raise TemplateError(
                f"line {line}: the template contains {delimiter}, which is reserved to mark "
                "the responses judged; the response variables add the delimiters themselves"
            )
    compile_checked(text)  # syntax errors, and templates nested too deeply to compile
    try:
        ast = SANDBOX.parse(text)
        _static_checks(ast)
        used = find_undeclared_variables(ast)
    except JinjaSyntaxError as exc:
        raise TemplateError(syntax_message(exc, text)) from exc
    except RecursionError as exc:  # the walks over the syntax tree recurse too
        raise TemplateError("the template is nested too deeply to check; flatten it") from exc
    unknown = sorted(used - set(allowed) - set(HELPERS))
    if unknown:
        raise TemplateError(_unknown_message(unknown, ast, allowed))
    if pairwise:
        for name in ("response_a", "response_b"):
            if name not in used:
                raise TemplateError(
                    f"a pairwise template must contain {{{{ {name} }}}}: the judge compares "
                    "two responses, {{ response_a }} and {{ response_b }}"
                )
        _trial_render(text, pairwise=True)
        return sorted(used & set(allowed))
    if "eval_model_response" not in used:
        raise TemplateError(
            "the template must contain {{ eval_model_response }}: without it the judge never "
            "sees the response under test"
        )
    _trial_render(text)
    return sorted(used & set(TEMPLATE_VARIABLES))


def _first_line(ast: nodes.Template, name: str) -> int | None:
    for node in ast.find_all(nodes.Name):
        if node.name == name and node.ctx == "load":
            return node.lineno
    return None


def _unknown_message(
    unknown: list[str], ast: nodes.Template, allowed: tuple[str, ...] = TEMPLATE_VARIABLES
) -> str:
    parts = []
    for name in unknown:
        part = f"{name!r} (line {_first_line(ast, name)})"
        close = difflib.get_close_matches(name, allowed, n=1)
        if close:
            part += f", did you mean {close[0]!r}?"
        parts.append(part)
    noun = "variable" if len(unknown) == 1 else "variables"
    return (
        f"unknown template {noun}: {'; '.join(parts)}. A rubric template can use "
        f"{', '.join(allowed)}; row metadata is reached as {{{{ metadata.KEY }}}} "
        'or {{ metadata["KEY"] }}'
    )


def _is_unsafe_name(name: str) -> bool:
    return name.startswith("_") or name in _UNSAFE_ATTRIBUTES


def _static_checks(ast: nodes.Template) -> None:
    """Refuse, at creation, what can only fail or escape at render time."""
    for node in ast.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        tag = {
            nodes.Extends: "extends",
            nodes.Include: "include",
            nodes.Import: "import",
            nodes.FromImport: "from ... import",
        }[type(node)]
        raise TemplateError(
            f"line {node.lineno}: {{% {tag} %}} is not supported; a rubric is one "
            "self-contained template"
        )
    for node in ast.find_all(nodes.Getattr):
        if _is_unsafe_name(node.attr):
            raise _sandbox_error(node.lineno, f".{node.attr}")
        receiver = node.node.value if isinstance(node.node, nodes.Const) else None
        is_format = node.attr in ("format", "format_map") and isinstance(receiver, str)
        if is_format and _UNSAFE_FORMAT_FIELD.search(receiver):
            raise _sandbox_error(node.lineno, f"a format field in {receiver!r}")
    for node in ast.find_all(nodes.NSRef):  # {% set ns.__class__ = ... %}: inert, but named
        if _is_unsafe_name(node.attr):
            raise _sandbox_error(node.lineno, f".{node.attr}")
    for node in ast.find_all(nodes.Getitem):
        key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        if isinstance(key, str) and _is_unsafe_name(key):
            raise _sandbox_error(node.lineno, f"[{key!r}]")
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        kind, known = (
            ("filter", SANDBOX.filters)
            if isinstance(node, nodes.Filter)
            else ("test", SANDBOX.tests)
        )
        if node.name not in known:
            raise TemplateError(f"line {node.lineno}: unknown {kind} {node.name!r}")
        for value in _attribute_arguments(node):
            if any(_is_unsafe_name(part) for part in value.split(".")):
                raise _sandbox_error(node.lineno, f"{node.name}({value!r})")


# Filters and tests that look an attribute up by name (a dotted path): the position of that
# argument, or None when only the ``attribute=`` keyword names one (map's first argument is a
# filter name). The sandbox hands back an undefined value for an internal one; this names it.
_ATTRIBUTE_FILTERS: dict[str, int | None] = {
    "attr": 0, "map": None, "selectattr": 0, "rejectattr": 0, "groupby": 0, "sort": 2,
    "sum": 0, "join": 1, "unique": 1, "min": 1, "max": 1,
}  # fmt: skip


def _attribute_arguments(node: nodes.Filter | nodes.Test) -> list[str]:
    if node.name not in _ATTRIBUTE_FILTERS:
        return []
    position = _ATTRIBUTE_FILTERS[node.name]
    found = [node.args[position]] if position is not None and len(node.args) > position else []
    found += [kwarg.value for kwarg in node.kwargs if kwarg.key == "attribute"]
    return [
        arg.value for arg in found if isinstance(arg, nodes.Const) and isinstance(arg.value, str)
    ]


def _sandbox_error(lineno: int | None, what: str) -> TemplateError:
    return TemplateError(
        f"line {lineno}: {what} reaches Python internals, which the rubric sandbox forbids"
    )


class _SampleMetadata(dict):  # type: ignore[type-arg]
    """Metadata for the trial render: every key exists, so only real problems surface."""

    def __missing__(self, key: str) -> str:
        return f"(metadata {key})"


def _trial_render(text: str, *, pairwise: bool = False) -> None:
    """Render once on sample data; only sandbox and runaway failures count at creation.

    Other errors (a type mismatch on a metadata value, say) depend on the row and are
    reported when a real row is rendered.
    """
    sample = {
        "conversation_context": "[user]\nSample question?",
        "conversation_response": "Sample reference answer.",
        "eval_model_response": delimit_response("Sample answer under test."),
        "metadata": _SampleMetadata(),
        "score_min": 1,
        "score_max": 10,
    }
    if pairwise:
        del sample["eval_model_response"], sample["score_min"], sample["score_max"]
        sample["response_a"] = delimit_pair_response("Sample answer A.", "A")
        sample["response_b"] = delimit_pair_response("Sample answer B.", "B")
    try:
        render_template(text, sample)
    except TemplateError as exc:
        runaway = SecurityError | RenderLimitExceeded | RecursionError | MemoryError
        if isinstance(exc.__cause__, runaway):
            raise
