"""Server-rendered pages: each route calls a service and renders a template."""

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

router = APIRouter(include_in_schema=False)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/evals", status_code=302)


def _include() -> None:
    from assay.web.pages import datasets, evals, groups, models, rubrics, traffic

    router.include_router(groups.router)
    router.include_router(evals.router)
    router.include_router(rubrics.router)
    router.include_router(datasets.router)
    router.include_router(traffic.router)
    router.include_router(models.router)


_include()
