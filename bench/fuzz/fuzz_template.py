"""Fuzz rubric templates: the validator, then a render of what it accepts.

    python bench/fuzz/fuzz_template.py -max_total_time=60

``validate_template`` must end in a list of variables or a ``TemplateError``; a template it
accepts must render for a row to a prompt within ``MAX_OUTPUT_CHARS`` or fail with a
``TemplateError``. Jinja's parser is instrumented too, so coverage guides the fuzzer through
the template grammar; templates are assembled from tokens of that grammar or taken raw.
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["assay", "jinja2"]):
    from assay.errors import TemplateError
    from assay.rubrics.render import MAX_OUTPUT_CHARS, render_template
    from assay.rubrics.transcript import template_variables
    from assay.rubrics.validate import validate_template

import _common

TOKENS = [
    "{{ ", " }}", "{% ", " %}", "{#", "#}", "{%- ", " -%}", "eval_model_response",
    "conversation_context", "conversation_response", "metadata", "metadata.x", "score_min",
    "score_max", "range(", ")", "(", "[", "]", ",", "|", "upper", "join", "replace",
    "length", "attr", "__class__", "__globals__", "mro", "format", "for x in ", "endfor",
    "if ", "endif", "else", "macro m(n)", "endmacro", "m(", "set y = ", "set ns = namespace(",
    "ns.a", "import", "include", "extends", "~", "+", "*", "**", "%", "'x'", "'%s'", "'{0}'",
    "1", "9", "10**9", "-1", ".", "cycler", "joiner", "dict(", "loop", "self", "caller()",
    "call", "endcall", "filter", "endfilter", "raw", "endraw", "score_bands(", "recursive",
    "batch", "slice", "center", "indent", "wordwrap", "sum", "map", "sort", "'\\t'", "=", "\n",
    " ", "x", "y", "n", ":", "'a'", "true", "none", "is", "not", "in", "and", "or",
]  # fmt: skip
SEEDS = [
    b"\x00{{ eval_model_response }}",
    b"\x00Judge:\n{{ conversation_context }}\n{{ eval_model_response }}\n"
    b"{% for s, t in score_bands(['good', 'bad']) %}{{ s }}: {{ t }}\n{% endfor %}",
    b"\x00{% macro m(n) %}{{ n }}{% endmacro %}{{ m(1) }}{{ eval_model_response|upper }}",
]
VARIABLES = template_variables(
    [{"role": "user", "content": "Hi?"}], None, "An answer.", {"x": 1}, 1, 10
)


def template_from(data: bytes) -> str:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 3) == 0:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    tokens = [fdp.PickValueInList(TOKENS) for _ in range(fdp.ConsumeIntInRange(0, 60))]
    return "{{ eval_model_response }}" + "".join(tokens)


def test_one_input(data: bytes) -> None:
    text = template_from(data)
    try:
        used = validate_template(text)
    except TemplateError as exc:
        assert str(exc)
        return
    assert "eval_model_response" in used
    try:
        prompt = render_template(text, VARIABLES)
    except TemplateError as exc:
        assert str(exc)
        return
    assert isinstance(prompt, str) and len(prompt) <= MAX_OUTPUT_CHARS


if __name__ == "__main__":
    _common.run(test_one_input, SEEDS)
