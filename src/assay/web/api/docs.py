"""The API's documentation page: Swagger UI served from our own static files (no CDN)."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from assay.web.pages.render import render

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    return render(request, "apidocs.html", {})
