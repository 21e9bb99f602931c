"""The built-in rubric templates: one ``templates/NAME.jinja`` file is one template.

Each file opens with a Jinja comment ``{# description: One line. #}``; the file name is the
template's name. Adding a template is adding a file.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from pydantic import BaseModel, ConfigDict

from assay.errors import NotFoundError

_DESCRIPTION = re.compile(r"\{#-?\s*description:\s*(?P<text>[^\n]+?)\s*-?#\}")


class TemplateInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    text: str


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
        first_line = text.split("\n", 1)[0]
        match = _DESCRIPTION.fullmatch(first_line.strip())
        if not match:  # a packaging mistake, caught by the tests
            raise RuntimeError(f"built-in template {entry.name} has no description header")
        found.append(
            TemplateInfo(name=entry.name[: -len(".jinja")], description=match["text"], text=text)
        )
    return tuple(sorted(found, key=lambda info: info.name))


def get_template(name: str) -> TemplateInfo:
    for info in list_templates():
        if info.name == name:
            return info
    names = ", ".join(info.name for info in list_templates())
    raise NotFoundError(f"no built-in template named {name!r}; available: {names}")
