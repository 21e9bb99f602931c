"""The built-in rubric templates: one ``templates/NAME.jinja`` file is one template.

Each file opens with a Jinja comment ``{# description: One line. #}``; the file name is the
template's name. Adding a template is adding a file. A pairwise template (two responses,
``rubrics/pairwise.py``) says so on its second line: ``{# kind: pairwise #}``.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from pydantic import BaseModel, ConfigDict

from assay.errors import NotFoundError

_DESCRIPTION = re.compile(r"\{#-?\s*description:\s*(?P<text>[^\n]+?)\s*-?#\}")
_KIND = re.compile(r"\{#-?\s*kind:\s*(?P<kind>pointwise|pairwise)\s*-?#\}")


class TemplateInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    text: str
    kind: str = "pointwise"  # pointwise | pairwise


def list_templates() -> list[TemplateInfo]:
    """Every built-in template, by name."""
    return list(_load())


@functools.cache
def _load() -> tuple[TemplateInfo, ...]:
    folder = resources.files("assay.rubrics") / "templates"
    found = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".jinja"):
            continue
        text = entry.read_text(encoding="utf-8")
        first_line, second_line, *_ = [*text.split("\n", 2), "", ""]
        match = _DESCRIPTION.fullmatch(first_line.strip())
        kind = _KIND.fullmatch(second_line.strip())
        if not match:  # a packaging mistake, caught by the tests
            raise RuntimeError(f"built-in template {entry.name} has no description header")
        found.append(
            TemplateInfo(
                name=entry.name[: -len(".jinja")],
                description=match["text"],
                text=text,
                kind=kind["kind"] if kind else "pointwise",
            )
        )
    return tuple(sorted(found, key=lambda info: info.name))


def get_template(name: str) -> TemplateInfo:
    for info in list_templates():
        if info.name == name:
            return info
    names = ", ".join(info.name for info in list_templates())
    raise NotFoundError(f"no built-in template named {name!r}; available: {names}")
