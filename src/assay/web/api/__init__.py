"""The REST API under ``/api/v1``: each route parses, calls a service, returns its model."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")


def _include() -> None:
    from assay.web.api import (
        aliases,
        datasets,
        docs,
        evals,
        gate,
        groups,
        labels,
        models,
        rubrics,
        traffic,
    )

    router.include_router(docs.router)
    router.include_router(datasets.router)
    router.include_router(rubrics.router)
    router.include_router(labels.router)
    router.include_router(models.router)
    router.include_router(aliases.router)
    router.include_router(evals.router)
    router.include_router(groups.router)
    router.include_router(gate.router)
    router.include_router(traffic.router)


_include()
