"""``/api/v1/rubrics``: built-in templates, rubrics and their versions, render, quick test."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from assay.engine.quicktest import MAX_ROWS, QuickTestReport, quick_test
from assay.rubrics import (
    RubricInfo,
    RubricVersionInfo,
    TemplateInfo,
    create_rubric,
    edit_rubric,
    get_rubric,
    get_rubric_version,
    get_template,
    list_rubrics,
    list_templates,
    list_versions,
    render_for_row,
)
from assay.rubrics.calibrate import CalibrationInfo, list_calibrations
from assay.rubrics.draft import DEFAULT_ROWS as DRAFT_ROWS
from assay.rubrics.draft import MAX_ROWS as DRAFT_MAX_ROWS
from assay.rubrics.draft import DraftResult, draft_rubric
from assay.web.api.common import MAX_INT, errors
from assay.web.deps import StoreDep

router = APIRouter(tags=["rubrics"], responses=errors(404, 422))


class TemplateSummary(BaseModel):
    name: str
    description: str


@router.get("/rubrics/templates", response_model=list[TemplateSummary])
def rubrics_templates() -> list[TemplateSummary]:
    """The built-in templates a rubric can start from (text under ``/templates/{name}``)."""
    return [TemplateSummary(name=t.name, description=t.description) for t in list_templates()]


@router.get("/rubrics/templates/{name}", response_model=TemplateInfo)
def rubrics_template(name: str) -> TemplateInfo:
    """One built-in template with its Jinja text."""
    return get_template(name)


@router.get("/rubrics", response_model=list[RubricInfo])
def rubrics_list(store: StoreDep) -> list[RubricInfo]:
    """Every rubric with its latest version, by name."""
    return list_rubrics(store)


class RubricCreate(BaseModel):
    """A new rubric (its version 1): from a built-in template, or from a template text."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="1-200 letters, digits, '.', '_' or '-'.")
    template: str | None = Field(None, description="A built-in template's name.")
    text: str | None = Field(None, description="A Jinja template text (instead of `template`).")
    score_min: int = Field(1, description="Lowest score (>= 0).")
    score_max: int = Field(10, description="Highest score (<= 100).")
    description: str | None = Field(None, description="One line on what it judges.")
    kind: Literal["pointwise", "pairwise"] | None = Field(
        None,
        description="pointwise (a score per output) or pairwise (which of two outputs is "
        "better); default: the built-in template's kind, else pointwise.",
    )


@router.post("/rubrics", status_code=201, response_model=RubricVersionInfo, responses=errors(409))
def rubrics_create(body: RubricCreate, store: StoreDep) -> RubricVersionInfo:
    """Create a rubric and its version 1; give exactly one of ``template`` and ``text``."""
    return create_rubric(
        store,
        body.name,
        template=body.template,
        text=body.text,
        score_min=body.score_min,
        score_max=body.score_max,
        description=body.description,
        kind=body.kind,
    )


@router.get("/rubrics/{name}", response_model=RubricInfo)
def rubrics_show(name: str, store: StoreDep) -> RubricInfo:
    """One rubric: description, latest version and its score range."""
    return get_rubric(store, name)


@router.get("/rubrics/{name}/versions", response_model=list[RubricVersionInfo])
def rubrics_versions(name: str, store: StoreDep) -> list[RubricVersionInfo]:
    """Every version of a rubric, oldest first; versions never change once stored."""
    return list_versions(store, name)


@router.get("/rubrics/{name}/versions/{version}", response_model=RubricVersionInfo)
def rubrics_version(
    name: str, version: Annotated[int, Path(ge=1, le=MAX_INT)], store: StoreDep
) -> RubricVersionInfo:
    """One version: its template, score range, origin and what changed."""
    return get_rubric_version(store, name, version)


@router.get("/rubrics/{name}/calibrations", response_model=list[CalibrationInfo])
def rubrics_calibrations(
    name: str,
    store: StoreDep,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_INT, description="Rubric version (default: latest).")
    ] = None,
    all_versions: Annotated[
        bool, Query(alias="all", description="Every version's calibrations.")
    ] = False,
) -> list[CalibrationInfo]:
    """How well judges under this rubric agree with human labels (`assay rubric calibrate`),
    newest first: the metrics with 95 % bootstrap intervals, labels judged and failed."""
    return list_calibrations(store, name, version, all_versions=all_versions)


class RubricEdit(BaseModel):
    """What changes in the new version; anything left out is kept from the latest."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="The new Jinja template text.")
    score_min: int | None = Field(None, description="New lowest score.")
    score_max: int | None = Field(None, description="New highest score.")


@router.post("/rubrics/{name}/versions", status_code=201, response_model=RubricVersionInfo)
def rubrics_edit(name: str, body: RubricEdit, store: StoreDep) -> RubricVersionInfo:
    """Add version n+1 (an edit); earlier versions stay exactly as they were."""
    return edit_rubric(
        store, name, text=body.text, score_min=body.score_min, score_max=body.score_max
    )


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="The dataset holding the row.")
    row: int = Field(0, ge=0, le=MAX_INT, description="The row's position (0-based).")
    version: int | None = Field(
        None, ge=1, le=MAX_INT, description="Rubric version (default: the latest)."
    )
    response: str | None = Field(
        None,
        description="The response under test, as text (default: the row's reference response).",
    )


class RenderedPrompt(BaseModel):
    """The exact judge prompt for one row, as the judge receives it."""

    rubric: str
    version: int
    dataset: str
    row: int
    response_source: Literal["reference", "text"]
    system: str
    user: str


@router.post("/rubrics/{name}/render", response_model=RenderedPrompt)
def rubrics_render(name: str, body: RenderRequest, store: StoreDep) -> RenderedPrompt:
    """Render the judge prompt (system and user message) for one dataset row; nothing is
    called or stored."""
    pinned = get_rubric_version(store, name, body.version)
    prompt = render_for_row(store, name, body.dataset, body.row, pinned.version, body.response)
    return RenderedPrompt(
        rubric=name,
        version=pinned.version,
        dataset=body.dataset,
        row=body.row,
        response_source="reference" if body.response is None else "text",
        system=prompt.system,
        user=prompt.user,
    )


class QuickTestRequest(BaseModel):
    """A quick test: a few rows through a model (or their reference) and the judge."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="The dataset holding the rows.")
    judge: str = Field(description="The judge model.")
    model: str | None = Field(None, description="Generate the response with this model.")
    reference: bool = Field(False, description="Judge the rows' reference responses instead.")
    rows: list[Annotated[int, Field(ge=0, le=MAX_INT)]] = Field(
        default_factory=lambda: [0],
        min_length=1,
        max_length=MAX_ROWS,
        description=f"Row positions (at most {MAX_ROWS}).",
    )
    version: int | None = Field(
        None, ge=1, le=MAX_INT, description="Rubric version (default: the latest)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> QuickTestRequest:
        if (self.model is None) == (not self.reference):
            raise ValueError(
                "give either model (generate a response to judge) or reference: true (judge "
                "the rows' reference responses)"
            )
        return self


@router.post("/rubrics/{name}/test", response_model=QuickTestReport)
async def rubrics_quick_test(name: str, body: QuickTestRequest, store: StoreDep) -> Any:
    """Quick test: generate (or take the reference), judge, and return the exact judge
    prompt, output, score and reasoning per row, with warnings when the rubric looks
    unreliable. Calls the models; stores no results."""
    return await quick_test(
        store,
        name,
        body.dataset,
        judge=body.judge,
        model=body.model,
        positions=body.rows,
        version=body.version,
        use_reference=body.reference,
    )


class RubricDraftRequest(BaseModel):
    """A rubric drafted by a model from a seeded sample of a dataset (see docs: drafting)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name of the new rubric; it must not exist yet.")
    dataset: str = Field(description="The dataset whose rows the model reads.")
    model: str = Field(description="The registered model that writes the draft.")
    rows: int = Field(DRAFT_ROWS, ge=1, le=DRAFT_MAX_ROWS, description="Rows shown to it.")
    seed: int = Field(0, ge=0, le=MAX_INT, description="Seed of the row sample.")
    score_min: int = Field(1, description="Lowest score (>= 0).")
    score_max: int = Field(10, description="Highest score (<= 100).")


@router.post("/rubrics/draft", status_code=201, response_model=DraftResult, responses=errors(409))
async def rubrics_draft(body: RubricDraftRequest, store: StoreDep) -> DraftResult:
    """Draft a rubric from data: the model reads the sampled rows and proposes the task's
    outcome, score levels, failure modes and criteria, saved as version 1 of a new rubric for
    a person to review. Calls the model; nothing is saved if its answer is not a valid draft."""
    return await draft_rubric(
        store,
        body.name,
        dataset=body.dataset,
        model=body.model,
        rows=body.rows,
        seed=body.seed,
        score_min=body.score_min,
        score_max=body.score_max,
    )
