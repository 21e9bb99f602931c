"""Dataset pages: the list with the import form, one dataset with its rows."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse

from assay.datasets import (
    DatasetRowInfo,
    dataset_rows,
    get_dataset,
    import_dataset,
    list_datasets,
)
from assay.errors import AssayError
from assay.web.deps import MAX_PAGE, StoreDep
from assay.web.pages.common import (
    TRAFFIC_FILTER_KEYS,
    conversation_view,
    form_error,
    message_view,
    pager,
    preview,
    whole,
)
from assay.web.pages.render import render
from assay.web.uploads import UPLOAD_SUFFIXES, saved_upload

router = APIRouter()

ROWS_PER_PAGE = 20


# --- pages -----------------------------------------------------------------------------------


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, store: StoreDep) -> HTMLResponse:
    return render(
        request,
        "datasets.html",
        {
            "section": "datasets",
            "datasets": list_datasets(store),
            "suffixes": ", ".join(UPLOAD_SUFFIXES),
        },
    )


@router.post("/datasets/import", response_class=HTMLResponse)
def import_upload(
    request: Request,
    store: StoreDep,
    file: Annotated[UploadFile, File()],
    name: Annotated[str, Form()] = "",
    type: Annotated[str, Form()] = "eval",
    limit: Annotated[str, Form()] = "",
    dedupe: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    try:
        wanted = whole(limit, "limit")
        with saved_upload(file) as path:
            report = import_dataset(
                store, path, name.strip() or path.stem, type, limit=wanted, dedupe=dedupe
            )
    except AssayError as exc:
        return form_error(request, exc, "Nothing was imported")
    return render(
        request, "_dataset_import_report.html", {"report": report, "datasets": list_datasets(store)}
    )


@router.get("/datasets/{name:path}", response_class=HTMLResponse)
def dataset_page(
    request: Request,
    store: StoreDep,
    name: str,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = ROWS_PER_PAGE,
) -> HTMLResponse:
    info = get_dataset(store, name)
    rows = dataset_rows(store, name, limit=limit, offset=offset)
    path = f"/datasets/{quote(name, safe='/')}"
    return render(
        request,
        "dataset.html",
        {
            "section": "datasets",
            "dataset": info,
            "rows": [_row_view(row) for row in rows],
            "pager": pager(request, path, offset, limit, len(rows), info.row_count, "rows"),
            "traffic_query": _traffic_query(info.filter),
        },
    )


def _row_view(row: DatasetRowInfo) -> dict[str, Any]:
    return {
        "row": row,
        "preview": preview(row.messages),
        "messages": conversation_view(row.messages),
        "reference": message_view(row.reference) if row.reference is not None else None,
    }


def _traffic_query(stored: dict[str, Any] | None) -> list[tuple[str, str]] | None:
    """The /traffic query that shows the slice a traffic dataset was built from."""
    if not stored:
        return None
    pairs = [(key, str(stored[key])) for key in TRAFFIC_FILTER_KEYS if stored.get(key)]
    pairs += [("metadata", f"{k}={v}") for k, v in (stored.get("metadata") or {}).items()]
    return pairs
