"""``/api/v1/datasets``: list, show, rows, import (upload), export (download), delete."""

from __future__ import annotations

import re
import tempfile
from typing import Annotated, Any, Literal

import pydantic
from fastapi import APIRouter, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from assay.datasets import (
    DatasetInfo,
    DatasetRowInfo,
    ImportReport,
    dataset_rows,
    delete_dataset,
    get_dataset,
    import_dataset,
    list_datasets,
)
from assay.datasets.export import export_lines
from assay.datasets.from_run import FromRunReport, create_dataset_from_run
from assay.errors import LimitExceededError
from assay.store import Store
from assay.web import uploads
from assay.web.api.common import MAX_INT, Page, errors
from assay.web.deps import PagingDep, StoreDep

router = APIRouter(tags=["datasets"], responses=errors(404, 422))

RAW_TYPES = ("application/x-ndjson", "application/jsonl", "application/octet-stream")
MULTIPART = "multipart/form-data"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


@router.get("/datasets", response_model=list[DatasetInfo])
def datasets_list(
    store: StoreDep,
    type: Annotated[
        Literal["eval", "training"] | None, Query(description="Only eval or training datasets.")
    ] = None,
) -> list[DatasetInfo]:
    """Every dataset, by name (rows are under ``/datasets/{name}/rows``)."""
    return list_datasets(store, type)


class ImportOptions(BaseModel):
    """The import's options: form fields next to ``file``, or query parameters for a raw body."""

    name: str = Field(min_length=1, description="Name of the new dataset.")
    type: Literal["eval", "training"] = Field(
        "eval", description="eval (≤ 10,000 rows) or training."
    )
    limit: int | None = Field(None, ge=1, description="Import only the first N rows.")
    dedupe: bool = Field(False, description="Drop rows that repeat an earlier row.")


_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            MULTIPART: {
                "schema": {
                    "type": "object",
                    "required": ["file", "name"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A JSONL file (.jsonl, .ndjson or .json), chat or "
                            "source-backed format.",
                        },
                        "name": {"type": "string", "description": "Name of the new dataset."},
                        "type": {"type": "string", "enum": ["eval", "training"], "default": "eval"},
                        "limit": {"type": "integer", "minimum": 1},
                        "dedupe": {"type": "boolean", "default": False},
                    },
                }
            },
            RAW_TYPES[0]: {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "The JSONL file itself; options as query parameters.",
                }
            },
        },
    }
}


@router.post(
    "/datasets/import",
    status_code=201,
    response_model=ImportReport,
    openapi_extra=_IMPORT_BODY,
    responses=errors(403, 409, 413, 415),
)
async def datasets_import(
    request: Request,
    store: StoreDep,
    name: Annotated[str | None, Query(description="Raw body only: the dataset's name.")] = None,
    type: Annotated[
        Literal["eval", "training"] | None, Query(description="Raw body only: eval or training.")
    ] = None,
    limit: Annotated[int | None, Query(description="Raw body only: the first N rows.")] = None,
    dedupe: Annotated[bool | None, Query(description="Raw body only: drop repeats.")] = None,
    filename: Annotated[
        str | None, Query(description="Raw body only: the file's name, for messages.")
    ] = None,
) -> ImportReport:
    """Import a JSONL file as a new dataset: all of it or nothing.

    Either a ``multipart/form-data`` upload (field ``file`` plus ``name``, ``type``, ...; from
    a page, with its ``X-CSRF-Token`` header), or the raw file as an ``application/x-ndjson``
    body with the options as query parameters (``curl --data-binary @rows.jsonl``).
    """
    _refuse_oversized(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == MULTIPART:
        async with request.form(max_files=1, max_fields=10) as form:
            upload = form.get("file")
            if not isinstance(upload, StarletteUpload):
                raise _invalid("form", "file", "expected a file upload in the field 'file'")
            fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
            options = _options("form", fields)
            return await run_in_threadpool(_import_upload, store, upload, options)
    if content_type not in RAW_TYPES:
        raise HTTPException(
            415,
            f"unsupported content type {content_type or '(none)'!r}: upload multipart/form-data "
            f"(field 'file'), or send the file itself as {RAW_TYPES[0]}",
        )
    query = {"name": name, "type": type, "limit": limit, "dedupe": dedupe}
    options = _options("query", {k: v for k, v in query.items() if v is not None})
    with tempfile.SpooledTemporaryFile(max_size=uploads.CHUNK) as spool:
        await _spool_body(request, spool)
        upload = UploadFile(file=spool, filename=filename or f"{options.name}.jsonl")
        return await run_in_threadpool(_import_upload, store, upload, options)


def _options(where: str, values: dict[str, Any]) -> ImportOptions:
    try:
        return ImportOptions.model_validate(values)
    except pydantic.ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": (where, *error["loc"])} for error in exc.errors()]
        ) from None


def _invalid(where: str, field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": (where, field), "msg": message, "type": "value_error"}])


def _refuse_oversized(request: Request) -> None:
    """Refuse a body announced as too large before reading any of it."""
    length = request.headers.get("content-length", "")
    limit = uploads.MAX_UPLOAD_BYTES
    # Multipart framing adds a little to the file's own size.
    if length.isdigit() and int(length) > limit + 64 * 1024:
        raise LimitExceededError(
            f"the request body is {int(length) // (1024 * 1024)} MiB; uploads are limited to "
            f"{limit // (1024 * 1024)} MiB (set ASSAY_MAX_UPLOAD_MB to change it, or import "
            "the file with `assay dataset import`)"
        )


async def _spool_body(request: Request, spool: Any) -> None:
    """The raw body into ``spool``, cut just past the cap (``saved_upload`` then refuses it)."""
    written = 0
    async for chunk in request.stream():
        spool.write(chunk)
        written += len(chunk)
        if written > uploads.MAX_UPLOAD_BYTES:
            break
    spool.seek(0)


def _import_upload(store: Store, upload: Any, options: ImportOptions) -> ImportReport:
    with uploads.saved_upload(upload, uploads.MAX_UPLOAD_BYTES) as path:
        return import_dataset(
            store, path, options.name, options.type, limit=options.limit, dedupe=options.dedupe
        )


class FromRunCreate(BaseModel):
    """A training dataset built from a run group's low-scoring rows (see docs/training.md)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    group: int = Field(ge=1, le=MAX_INT, description="The run group's id.")
    name: str = Field(min_length=1, max_length=200, description="Name of the new dataset.")
    keep_eval: str | None = Field(
        None,
        description="Eval dataset to keep clean (required): rows also in it are left out. Not "
        "the group's own dataset.",
    )
    format: Literal["sft", "preference"] = Field("sft", description="sft or preference rows.")
    model: str | None = Field(
        None, description="The arm whose low scores select rows (default: the baseline)."
    )
    below: float | None = Field(
        None,
        allow_inf_nan=False,
        description="Low means below this; the target must reach it (default: mid-range).",
    )
    use_reference: bool = Field(
        False, description="No output reaches the threshold: take the row's reference."
    )
    min_gap: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Chosen must beat the low score by this."
    )


@router.post(
    "/datasets/from-run", status_code=201, response_model=FromRunReport, responses=errors(409)
)
def datasets_from_run(body: FromRunCreate, store: StoreDep) -> FromRunReport:
    """Build a training dataset (SFT targets or preference pairs, each row with its provenance)
    from the rows of a finished run group that one model scored low."""
    return create_dataset_from_run(
        store,
        body.group,
        body.name,
        row_format=body.format,
        model=body.model,
        below=body.below,
        keep_eval=body.keep_eval,
        use_reference=body.use_reference,
        min_gap=body.min_gap,
    )


@router.get("/datasets/{name:path}/rows", response_model=Page[DatasetRowInfo])
def datasets_rows(name: str, store: StoreDep, paging: PagingDep) -> dict[str, Any]:
    """A page of rows in dataset order; ``total`` is the dataset's row count."""
    info = get_dataset(store, name)
    items = dataset_rows(store, name, limit=paging.limit, offset=paging.offset)
    return paging.envelope(items, total=info.row_count)


@router.get(
    "/datasets/{name:path}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "The JSONL file."}},
)
def datasets_export(
    name: str,
    store: StoreDep,
    format: Annotated[
        Literal["chat", "source", "openai", "trl"],
        Query(description="chat or source (both re-import), openai or trl (fine-tuning)."),
    ] = "chat",
) -> StreamingResponse:
    """Download the dataset as JSONL, streamed row by row: chat or source re-import to
    identical rows; openai and trl are the fine-tuning formats of docs/training.md."""
    lines = export_lines(store, name, format)
    disposition = f'attachment; filename="{download_name(name)}.jsonl"'
    return StreamingResponse(
        lines, media_type="application/x-ndjson", headers={"Content-Disposition": disposition}
    )


def download_name(name: str) -> str:
    """A file name any browser and file system accepts: no quotes, slashes or control bytes."""
    safe = _UNSAFE_FILENAME.sub("_", name).strip("._")[:100]
    return safe or "dataset"


@router.get("/datasets/{name:path}", response_model=DatasetInfo)
def datasets_show(name: str, store: StoreDep) -> DatasetInfo:
    """One dataset: counts, type, provenance, source, the filter that built it."""
    return get_dataset(store, name)


@router.delete("/datasets/{name:path}", response_model=DatasetInfo)
def datasets_delete(name: str, store: StoreDep) -> DatasetInfo:
    """Delete a dataset and its rows (refused while an eval or a run group uses it)."""
    return delete_dataset(store, name)
