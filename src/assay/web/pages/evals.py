"""The evals page: every eval definition with its latest run group and that group's latest
stored gate verdict."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from assay.engine.definitions import list_evals
from assay.engine.groups import list_groups
from assay.gate.history import latest_verdicts
from assay.web.deps import StoreDep
from assay.web.pages.render import render

router = APIRouter()


@router.get("/evals", response_class=HTMLResponse)
def evals_page(request: Request, store: StoreDep) -> HTMLResponse:
    evals = list_evals(store)
    latest = {}
    for definition in evals:
        groups = list_groups(store, definition.name, limit=1)
        if groups:
            latest[definition.name] = groups[0]
    verdicts = latest_verdicts(store, [group.id for group in latest.values()])
    rows = [
        {
            "eval": definition,
            "group": latest.get(definition.name),
            "verdict": verdicts.get(latest[definition.name].id)
            if definition.name in latest
            else None,
        }
        for definition in evals
    ]
    return render(request, "evals.html", {"section": "evals", "rows": rows})
