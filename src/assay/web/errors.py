"""Domain errors to HTTP, in one place: JSON under ``/api``, an error page elsewhere."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

from assay.errors import (
    AlreadyExistsError,
    AssayError,
    LimitExceededError,
    NotFoundError,
    StoreError,
    ValidationError,
)

API_PREFIX = "/api/"

# Most specific first: LimitExceededError is a ValidationError.
_STATUS: list[tuple[type[AssayError], int, str]] = [
    (NotFoundError, 404, "not_found"),
    (AlreadyExistsError, 409, "already_exists"),
    (LimitExceededError, 413, "limit_exceeded"),
    (ValidationError, 422, "invalid"),
    (StoreError, 503, "store_unavailable"),
    (AssayError, 400, "error"),
]


def status_for(exc: AssayError) -> tuple[int, str]:
    for kind, status, name in _STATUS:
        if isinstance(exc, kind):
            return status, name
    return 400, "error"  # unreachable: every AssayError matches the last line


def is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


async def assay_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AssayError)
    status, kind = status_for(exc)
    return error_response(request, status, str(exc), kind)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    response = error_response(request, exc.status_code, message, "http")
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def data_error(request: Request, exc: Exception) -> Response:
    """A value the database cannot store (Postgres: a NUL character, an integer out of range):
    the client's input, not a server fault."""
    assert isinstance(exc, DataError)
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "invalid value"
    message = f"the database refused a value in this request ({reason}); nothing was written"
    return error_response(request, 422, message, "invalid")


async def validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, with one readable line per problem (``query.limit: ...``)."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in exc.errors()
    ]
    message = "; ".join(problems) or "invalid request"
    if is_api(request):
        return JSONResponse(
            {"detail": message, "type": "invalid", "errors": problems}, status_code=422
        )
    return error_response(request, 422, message, "invalid")


def error_response(request: Request, status: int, message: str, kind: str) -> Response:
    if is_api(request):
        return JSONResponse({"detail": message, "type": kind}, status_code=status)
    from assay.web.pages.render import render_error

    return render_error(request, status, message)
