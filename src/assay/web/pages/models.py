"""The models page: every registered endpoint, with the name (never the value) of the
environment variable its API key is read from, and whether that variable is set here."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from assay.deploy import list_aliases
from assay.providers import list_models
from assay.web.deps import StoreDep
from assay.web.pages.render import render

router = APIRouter()


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, store: StoreDep) -> HTMLResponse:
    models = list_models(store)
    key_set = {m.name: bool(m.api_key_env and os.environ.get(m.api_key_env)) for m in models}
    context = {"section": "models", "models": models, "key_set": key_set}
    return render(request, "models.html", {**context, "aliases": list_aliases(store)})
