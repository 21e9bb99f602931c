"""``/api/v1/evals``: eval definitions (dataset + pinned rubric version + judge + models)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from assay.engine.definitions import EvalInfo, create_eval, get_eval, list_evals
from assay.web.api.common import MAX_INT, errors
from assay.web.deps import StoreDep

router = APIRouter(tags=["evals"], responses=errors(404, 422))


class EvalCreate(BaseModel):
    """An eval definition; everything is validated now, not at run time."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="A name for the eval definition.")
    dataset: str = Field(description="An eval dataset.")
    rubric: str = Field(description="The rubric to judge with.")
    rubric_version: int | None = Field(
        None, ge=1, le=MAX_INT, description="Pin this version (default: the latest, pinned now)."
    )
    judge: str = Field(description="The model that judges every output.")
    baseline: str | None = Field(
        None, description="The model in production today; omit with with_captured."
    )
    candidates: list[str] = Field(description="The models to compare with the baseline.")
    sample_size: int | None = Field(
        None, le=MAX_INT, description="Rows per run group (default: the whole dataset)."
    )
    seed: int = Field(0, ge=-MAX_INT, le=MAX_INT, description="Seed of the row sample.")
    judge_samples: int = Field(1, description="Judgments per output (2+ measures judge noise).")
    with_captured: bool = Field(
        False,
        description="Also judge the dataset's captured (reference) outputs as an arm; they "
        "are the baseline when no baseline model is given.",
    )


@router.get("/evals", response_model=list[EvalInfo])
def evals_list(store: StoreDep) -> list[EvalInfo]:
    """Every eval definition, oldest first."""
    return list_evals(store)


@router.post("/evals", status_code=201, response_model=EvalInfo, responses=errors(409))
def evals_create(body: EvalCreate, store: StoreDep) -> EvalInfo:
    """Create an eval definition; run it with ``POST /groups``."""
    return create_eval(
        store,
        body.name,
        dataset=body.dataset,
        rubric=body.rubric,
        rubric_version_number=body.rubric_version,
        judge=body.judge,
        baseline=body.baseline,
        candidates=body.candidates,
        sample_size=body.sample_size,
        seed=body.seed,
        judge_samples=body.judge_samples,
        with_captured=body.with_captured,
    )


@router.get("/evals/{name:path}", response_model=EvalInfo)
def evals_show(name: str, store: StoreDep) -> EvalInfo:
    """One eval definition."""
    return get_eval(store, name)
