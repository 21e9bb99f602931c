"""What the API modules share: the page envelope and the error bodies, as OpenAPI models."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path
from pydantic import BaseModel, Field

T = TypeVar("T")

MAX_INT = 2_147_483_647
"""The largest integer every backend stores in an integer column (Postgres INTEGER)."""

GroupId = Annotated[int, Path(ge=1, le=MAX_INT, description="The run group's id.")]
Position = Annotated[int, Path(ge=0, le=MAX_INT, description="A dataset row's position (0-based).")]


class Page(BaseModel, Generic[T]):
    """One page of a long list; ask again with ``offset=next_offset`` for the next one."""

    items: list[T]
    limit: int = Field(description="Page size asked for (at most 500).")
    offset: int = Field(description="Items skipped before this page.")
    next_offset: int | None = Field(
        description="Where the next page starts; null when this page is the last."
    )
    total: int | None = Field(None, description="Items in the whole list, when known cheaply.")


class ApiError(BaseModel):
    """Every error answer: a message written for a person, and its kind."""

    detail: str = Field(description="What went wrong, where, and what to do.")
    type: str = Field(
        description="not_found, already_exists, limit_exceeded, invalid, store_unavailable, "
        "csrf, http or error."
    )
    errors: list[str] | None = Field(
        None, description="For request validation errors: one line per problem."
    )


_DESCRIPTIONS = {
    400: "The request could not be carried out.",
    403: "Cross-site request refused: send JSON, or the page's X-CSRF-Token header.",
    404: "A named thing does not exist.",
    409: "The name is already taken.",
    413: "A size limit was exceeded.",
    415: "Unsupported content type.",
    422: "The input is invalid; nothing was written.",
    503: "The database is unavailable.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all with the ``ApiError`` body."""
    return {code: {"model": ApiError, "description": _DESCRIPTIONS[code]} for code in codes}
