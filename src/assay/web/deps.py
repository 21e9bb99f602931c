"""What every route needs: the store, and a bounded page of results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from assay.store import Store

MAX_PAGE = 500
"""No page of rows is larger than this, whatever a client asks for."""

DEFAULT_PAGE = 50


def get_store(request: Request) -> Store:
    return request.app.state.store


StoreDep = Annotated[Store, Depends(get_store)]


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int

    def envelope(self, items: list[Any], total: int | None = None) -> dict[str, Any]:
        """The list answer every paginated route gives: items, and where the next page starts."""
        full = len(items) == self.limit
        return {
            "items": items,
            "limit": self.limit,
            "offset": self.offset,
            "next_offset": self.offset + self.limit if full else None,
            "total": total,
        }


def paging(
    limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description=f"At most {MAX_PAGE}."),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> Paging:
    return Paging(limit, offset)


PagingDep = Annotated[Paging, Depends(paging)]
