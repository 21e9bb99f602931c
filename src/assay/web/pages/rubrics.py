"""Rubric pages: the list, and one rubric's editor (save as a new version), its versions with
a diff between any two, and the quick-test panel (the judge prompt for a row, then a real run
through a model and the judge)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, TemplateSyntaxError, nodes

from assay.datasets import list_datasets
from assay.engine.quicktest import quick_test
from assay.errors import AssayError, TemplateError, ValidationError
from assay.providers import list_models
from assay.rubrics import (
    edit_rubric,
    get_rubric,
    list_rubrics,
    list_templates,
    list_versions,
    render_for_row,
    validate_template,
)
from assay.rubrics.calibrate import list_calibrations
from assay.rubrics.draft import DEFAULT_ROWS as DRAFT_ROWS
from assay.rubrics.draft import draft_rubric
from assay.web.deps import StoreDep
from assay.web.pages.common import form_error, message_view, whole
from assay.web.pages.render import render

router = APIRouter()

REFERENCE = "@reference"
"""The quick test's "model" that judges the row's reference response (no name starts with @)."""

VARIABLES = (
    ("conversation_context", "the conversation before the response, as a transcript"),
    ("conversation_response", "the row's reference (captured) response"),
    ("eval_model_response", "the response under test, delimited (required)"),
    ("metadata", "the row's metadata: {{ metadata.KEY }}"),
    ("score_min", "the lowest score of the range"),
    ("score_max", "the highest score of the range"),
)


# --- views -----------------------------------------------------------------------------------


@dataclass
class DiffLine:
    kind: str  # same | add | del | gap
    old: int | None  # line number in the older version
    new: int | None  # line number in the newer version
    text: str


def template_diff(old: str, new: str, context: int = 3) -> list[DiffLine]:
    """Changed lines with ``context`` lines around them; ``gap`` rows stand for the rest."""
    a, b = old.splitlines(), new.splitlines()
    if a == b:
        return []
    lines: list[DiffLine] = []
    shown_to = 0  # old lines shown so far
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        shown_to = group[-1][2]
        if group[0][1] > 0 or lines:
            lines.append(DiffLine("gap", None, None, "⋯"))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines.extend(
                    DiffLine("same", i1 + k + 1, j1 + k + 1, a[i1 + k]) for k in range(i2 - i1)
                )
                continue
            lines.extend(DiffLine("del", i + 1, None, a[i]) for i in range(i1, i2))
            lines.extend(DiffLine("add", None, j + 1, b[j]) for j in range(j1, j2))
    if shown_to < len(a):
        lines.append(DiffLine("gap", None, None, "⋯"))
    return lines


def metadata_keys(template: str) -> list[str]:
    """The row metadata keys a template reads (``metadata.KEY`` or ``metadata["KEY"]``)."""
    try:
        ast = Environment().parse(template)
    except TemplateSyntaxError:
        return []
    keys: set[str] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "metadata"):
            continue
        if isinstance(node, nodes.Getattr):
            keys.add(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            keys.add(node.arg.value)
    return sorted(keys)


def used_variables(template: str) -> list[str] | None:
    """The template variables the validator finds in use; None if it no longer validates."""
    try:
        return validate_template(template)
    except TemplateError:
        return None


# --- pages -----------------------------------------------------------------------------------


@router.get("/rubrics", response_class=HTMLResponse)
def rubrics_page(request: Request, store: StoreDep) -> HTMLResponse:
    return render(
        request,
        "rubrics.html",
        {
            "section": "rubrics",
            "rubrics": list_rubrics(store),
            "templates": list_templates(),
            "datasets": sorted(list_datasets(store), key=lambda d: (d.type != "eval", d.name)),
            "models": list_models(store),
        },
    )


@router.post("/rubrics/draft", response_class=HTMLResponse)
async def draft_from_data(
    request: Request,
    store: StoreDep,
    name: Annotated[str, Form()] = "",
    dataset: Annotated[str, Form()] = "",
    model: Annotated[str, Form()] = "",
    rows: Annotated[str, Form()] = "",
    seed: Annotated[str, Form()] = "",
    score_min: Annotated[str, Form()] = "",
    score_max: Annotated[str, Form()] = "",
) -> Response:
    """The "Draft from data" form: saves version 1 and opens the rubric for review."""
    try:
        if not name.strip() or not dataset or not model:
            raise ValidationError("give the new rubric a name and pick a dataset and a model")
        number = whole(rows, "rows")
        low, high = whole(score_min, "lowest score"), whole(score_max, "highest score")
        result = await draft_rubric(
            store,
            name.strip(),
            dataset=dataset,
            model=model,
            rows=DRAFT_ROWS if number is None else number,
            seed=whole(seed, "seed") or 0,
            score_min=1 if low is None else low,
            score_max=10 if high is None else high,
        )
    except AssayError as exc:
        return form_error(request, exc, "No draft saved")
    target = f"/rubrics/{quote(result.version.rubric)}?saved=1"
    return Response(status_code=200, headers={"HX-Redirect": target})


@router.get("/rubrics/{name}", response_class=HTMLResponse)
def rubric_page(
    request: Request,
    store: StoreDep,
    name: str,
    a: Annotated[int | None, Query(ge=1)] = None,
    b: Annotated[int | None, Query(ge=1)] = None,
    saved: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    info = get_rubric(store, name)
    versions = list_versions(store, name)
    latest = versions[-1]
    diff = _diff_context(versions, a, b) if a is not None and b is not None else None
    datasets = list_datasets(store)
    datasets.sort(key=lambda d: (d.type != "eval", d.name))
    return render(
        request,
        "rubric.html",
        {
            "section": "rubrics",
            "rubric": info,
            "latest": latest,
            "versions": list(reversed(versions)),
            "used": used_variables(latest.template),
            "metadata_keys": metadata_keys(latest.template),
            "variables": VARIABLES,
            "diff": diff,
            "diff_a": a if a is not None else max(1, latest.version - 1),
            "diff_b": b if b is not None else latest.version,
            "saved": saved,
            "datasets": datasets,
            "models": list_models(store),
            "reference": REFERENCE,
            "calibrations": list_calibrations(store, name, latest.version),
        },
    )


def _diff_context(versions: list[Any], a: int, b: int) -> dict[str, Any]:
    by_number = {v.version: v for v in versions}
    for number in (a, b):
        if number not in by_number:
            raise ValidationError(
                f"rubric {versions[0].rubric!r} has no version {number} "
                f"(versions 1-{versions[-1].version})"
            )
    old, new = by_number[a], by_number[b]
    lines = template_diff(old.template, new.template)
    return {
        "old": old,
        "new": new,
        "lines": lines,
        "added": sum(1 for line in lines if line.kind == "add"),
        "removed": sum(1 for line in lines if line.kind == "del"),
    }


@router.get("/rubrics/{name}/diff", response_class=HTMLResponse)
def rubric_diff(
    request: Request,
    store: StoreDep,
    name: str,
    a: Annotated[int, Query(ge=1)],
    b: Annotated[int, Query(ge=1)],
) -> HTMLResponse:
    try:
        diff = _diff_context(list_versions(store, name), a, b)
    except AssayError as exc:
        return form_error(request, exc, "Cannot compare")
    return render(request, "_rubric_diff.html", {"diff": diff})


@router.post("/rubrics/{name}/versions", response_class=HTMLResponse)
def save_version(
    request: Request,
    store: StoreDep,
    name: str,
    template: Annotated[str, Form()] = "",
    score_min: Annotated[str, Form()] = "",
    score_max: Annotated[str, Form()] = "",
) -> Response:
    # Browsers send textarea lines with CRLF; the stored template uses LF.
    text = template.replace("\r\n", "\n")
    try:
        saved = edit_rubric(
            store,
            name,
            text=text,
            score_min=whole(score_min, "lowest score"),
            score_max=whole(score_max, "highest score"),
        )
    except AssayError as exc:
        return form_error(request, exc, "Not saved")
    target = f"/rubrics/{name}?saved={saved.version}"
    return Response(status_code=200, headers={"HX-Redirect": target})


@router.get("/rubrics/{name}/prompt", response_class=HTMLResponse)
def judge_prompt(
    request: Request,
    store: StoreDep,
    name: str,
    dataset: str = "",
    row: str = "0",
    version: str = "",
) -> HTMLResponse:
    try:
        if not dataset:
            raise ValidationError("pick a dataset to render the judge prompt for one of its rows")
        position = whole(row, "row") or 0
        prompt = render_for_row(store, name, dataset, position, version=whole(version, "version"))
    except AssayError as exc:
        return form_error(request, exc, "Cannot render the prompt")
    return render(
        request, "_rubric_prompt.html", {"prompt": prompt, "dataset": dataset, "row": position}
    )


@router.post("/rubrics/{name}/quicktest", response_class=HTMLResponse)
async def run_quick_test(
    request: Request,
    store: StoreDep,
    name: str,
    dataset: Annotated[str, Form()] = "",
    row: Annotated[str, Form()] = "0",
    version: Annotated[str, Form()] = "",
    model: Annotated[str, Form()] = "",
    judge: Annotated[str, Form()] = "",
) -> HTMLResponse:
    try:
        if not dataset or not judge or not model:
            raise ValidationError("pick a dataset, a model (or the reference response) and a judge")
        position = whole(row, "row") or 0
        report = await quick_test(
            store,
            name,
            dataset,
            judge=judge,
            model=None if model == REFERENCE else model,
            use_reference=model == REFERENCE,
            positions=[position],
            version=whole(version, "version"),
        )
    except AssayError as exc:
        return form_error(request, exc, "The quick test did not run")
    results = [
        {
            "row": r,
            "output": message_view(r.output, f"output · {r.output_source}") if r.output else None,
            "percent": _percent(r.score, report.score_min, report.score_max),
        }
        for r in report.rows
    ]
    return render(
        request,
        "_rubric_quicktest.html",
        {"report": report, "results": results, "dataset": dataset},
    )


def _percent(score: float | None, low: int, high: int) -> float | None:
    if score is None or high <= low:
        return None
    return round(100 * (score - low) / (high - low), 1)
