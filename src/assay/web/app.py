"""The FastAPI application: one app serving the REST API, the pages and their static files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

from assay import __version__
from assay.errors import AssayError
from assay.store import Store, open_store
from assay.web import auth, errors
from assay.web.auth import AuthMiddleware
from assay.web.security import SecurityMiddleware

STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    store: Store | None = None,
    *,
    database_url: str | None = None,
    home: str | None = None,
    require_auth: bool = False,
) -> FastAPI:
    """Build the app over ``store`` (kept open by the caller), or over one it opens itself
    from ``database_url``/``home`` (else the environment) for the app's lifetime.
    ``require_auth``: refuse every request without a valid token even while none exists (a
    server reachable beyond loopback); otherwise tokens are required once one exists."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if store is not None:
            yield
            return
        with open_store(database_url, home=home) as opened:
            app.state.store = opened
            yield

    app = FastAPI(
        title="Assay",
        version=__version__,
        description="Self-hosted release gate for LLM applications: the REST API.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # our own page: FastAPI's loads Swagger UI from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    if store is not None:
        app.state.store = store
    app.add_exception_handler(AssayError, errors.assay_error)
    app.add_exception_handler(HTTPException, errors.http_error)
    app.add_exception_handler(RequestValidationError, errors.validation_error)
    app.add_exception_handler(DataError, errors.data_error)
    app.state.require_auth = require_auth
    app.add_middleware(AuthMiddleware, require_auth=require_auth)
    app.add_middleware(SecurityMiddleware)  # outermost: its headers go on refusals too
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    from assay.web.api import router as api_router
    from assay.web.pages import router as pages_router

    app.include_router(auth.router)
    app.include_router(api_router)
    app.include_router(pages_router)
    auth.document_security(app)
    return app
