"""Run group pages: the list, one group (summary, chart, decision, rows), one row in detail."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from assay.engine.background import cancel_group, start_worker, worker_state
from assay.engine.groups import get_group, list_groups
from assay.engine.results import (
    GroupSummary,
    judge_prompt_for,
    neighbor_rows,
    row_detail,
    rows_page,
)
from assay.engine.results import group_summary as load_summary
from assay.errors import AssayError
from assay.stats.summary import OUTCOMES
from assay.web.deps import StoreDep
from assay.web.pages.common import conversation_view, form_error, message_view
from assay.web.pages.render import render

router = APIRouter()

ROWS_PER_PAGE = 50
LIVE_STATUSES = ("running", "pending")


@dataclass
class RowFilters:
    """The rows table's filters, as query parameters (so a filtered view has a URL)."""

    model: str | None = None
    status: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    regressions: bool = False
    slice: str | None = None
    sort: str = "row"
    desc: bool = False
    offset: int = 0

    def query(self, **changes: Any) -> str:
        values = {**asdict(self), **changes}
        kept = {k: v for k, v in values.items() if v not in (None, "", False, 0) or k == "sort"}
        kept = {k: ("1" if v is True else v) for k, v in kept.items()}
        if kept.get("sort") == "row":
            kept.pop("sort")
        return urlencode(kept)


def _blank(value: str | None) -> str | None:
    return value if value not in (None, "") else None


def _number(value: str | None, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        from assay.errors import ValidationError

        raise ValidationError(f"{name} must be a number, not {value!r}") from None


def row_filters(
    model: str | None = None,
    status: str | None = None,
    min_score: str | None = None,
    max_score: str | None = None,
    regressions: bool = False,
    slice: str | None = None,
    sort: str = "row",
    desc: bool = False,
    offset: int = Query(0, ge=0),
) -> RowFilters:
    """Empty form fields arrive as empty strings: they mean "no filter"."""
    return RowFilters(
        model=_blank(model),
        status=_blank(status),
        min_score=_number(min_score, "min score"),
        max_score=_number(max_score, "max score"),
        regressions=regressions,
        slice=_blank(slice),
        sort=sort or "row",
        desc=desc,
        offset=offset,
    )


@router.get("/groups", response_class=HTMLResponse)
def groups_page(request: Request, store: StoreDep) -> HTMLResponse:
    return render(request, "groups.html", {"section": "groups", "groups": list_groups(store)})


@router.get("/groups/{group_id}", response_class=HTMLResponse)
def group_page(
    request: Request, group_id: int, store: StoreDep, filters: RowFilters = Depends(row_filters)
) -> HTMLResponse:
    summary = load_summary(store, group_id)
    worker = worker_state(store, group_id)
    group = get_group(store, group_id)
    context = {
        "section": "groups",
        "group": group,
        "can_cancel": worker.alive and worker.on_this_host,
        "can_resume": not worker.alive and group.status != "completed",
        **_live_context(summary),
        **_rows_context(store, group_id, filters),
        "outcomes": OUTCOMES,
    }
    return render(request, "group.html", context)


@router.get("/groups/{group_id}/live", response_class=HTMLResponse)
def group_live(request: Request, group_id: int, store: StoreDep) -> HTMLResponse:
    """The model cards and chart; polled every few seconds while the group runs. Once it
    stops, the whole page reloads once, to show the final status and the decision."""
    summary = load_summary(store, group_id)
    context = {"group": get_group(store, group_id), "fragment": True, **_live_context(summary)}
    response = render(request, "_group_live.html", context)
    if not context["live"] and "hx-request" in request.headers:
        response.headers["HX-Refresh"] = "true"
    return response


@router.post("/groups/{group_id}/cancel", response_class=HTMLResponse)
def cancel(request: Request, group_id: int, store: StoreDep) -> HTMLResponse:
    """Stop the group's worker (finished rows are kept); the page then reloads."""
    try:
        report = cancel_group(store, group_id)
    except AssayError as exc:
        return form_error(request, exc, "Not cancelled")
    response = render(request, "_group_action.html", {"message": report.message})
    response.headers["HX-Refresh"] = "true"
    return response


@router.post("/groups/{group_id}/resume", response_class=HTMLResponse)
def resume(request: Request, group_id: int, store: StoreDep) -> HTMLResponse:
    """Finish the group in a background worker (the same as `assay run resume`)."""
    try:
        pid = start_worker(store, group_id)
    except AssayError as exc:
        return form_error(request, exc, "Not resumed")
    response = render(request, "_group_action.html", {"message": f"Resumed (worker {pid})."})
    response.headers["HX-Refresh"] = "true"
    return response


@router.get("/groups/{group_id}/rows", response_class=HTMLResponse)
def group_rows_fragment(
    request: Request, group_id: int, store: StoreDep, filters: RowFilters = Depends(row_filters)
) -> HTMLResponse:
    if "hx-request" not in request.headers:  # a reload of a pushed URL: the whole page
        return group_page(request, group_id, store, filters)
    context = {"group": get_group(store, group_id), **_rows_context(store, group_id, filters)}
    return render(request, "_group_rows.html", context)


@router.get("/groups/{group_id}/decision", response_class=HTMLResponse)
def group_decision(request: Request, group_id: int, store: StoreDep) -> HTMLResponse:
    """The gate's verdict under the default policy (what `assay gate GROUP` decides), with
    the paired difference and its interval per candidate; loaded after the page."""
    from assay.gate.verdict import run_gate

    try:
        result = run_gate(store, group_id)
    except AssayError as exc:  # not finished yet, no candidate, rows missing...
        return render(request, "_group_decision.html", {"unavailable": str(exc)})
    return render(request, "_group_decision.html", {"result": result, "group_id": group_id})


@router.get("/groups/{group_id}/rows/{position}", response_class=HTMLResponse)
def row_page(request: Request, group_id: int, position: int, store: StoreDep) -> HTMLResponse:
    detail = row_detail(store, group_id, position)
    baseline = next((a for a in detail.arms if a.role == "baseline"), None)
    previous, following = neighbor_rows(store, group_id, position)
    context = {
        "messages": conversation_view(detail.messages),
        "reference": message_view(detail.reference, "reference") if detail.reference else None,
        "outputs": {a.model: message_view(a.output, "output") for a in detail.arms if a.output},
        "previous": previous,
        "following": following,
        "section": "groups",
        "group": get_group(store, group_id),
        "row": detail,
        "baseline": baseline,
        "others": [a for a in detail.arms if a is not baseline],
    }
    return render(request, "row.html", context)


@router.get("/groups/{group_id}/rows/{position}/prompt", response_class=HTMLResponse)
def judge_prompt(
    request: Request, group_id: int, position: int, model: str, store: StoreDep
) -> HTMLResponse:
    prompt = judge_prompt_for(store, group_id, position, model)
    return render(request, "_judge_prompt.html", {"prompt": prompt, "model": model})


def _live_context(summary: GroupSummary) -> dict[str, Any]:
    labels = [
        f"{b.bucket_min:g}"
        if b.bucket_max - b.bucket_min <= 1
        else f"{b.bucket_min:g}-{b.bucket_max:g}"
        for b in (summary.runs[0].distribution if summary.runs else [])
    ]
    series = []
    for run in summary.runs:
        scored = sum(b.count for b in run.distribution)
        values = [round(100 * b.count / scored, 2) if scored else 0 for b in run.distribution]
        series.append({"name": f"{run.model} ({run.role})", "values": values})
    done = sum(r.total - r.pending for r in summary.runs)
    total = sum(r.total for r in summary.runs)
    return {
        "summary": summary,
        "chart": {"labels": labels, "series": series, "x_title": "judge score"},
        "done": done,
        "total": total,
        "live": summary.status in LIVE_STATUSES,
    }


def _rows_context(store: Any, group_id: int, filters: RowFilters) -> dict[str, Any]:
    page = rows_page(
        store,
        group_id,
        model=filters.model,
        status=filters.status,
        min_score=filters.min_score,
        max_score=filters.max_score,
        regressions=filters.regressions,
        slice=filters.slice,
        sort=filters.sort,
        descending=filters.desc,
        limit=ROWS_PER_PAGE,
        offset=filters.offset,
    )
    total = page.total or 0
    return {
        "rows": page.items,
        "rows_total": total,
        "filters": filters,
        "first": filters.offset + 1 if page.items else 0,
        "last": filters.offset + len(page.items),
        "prev_query": filters.query(offset=max(0, filters.offset - ROWS_PER_PAGE))
        if filters.offset
        else None,
        "next_query": filters.query(offset=filters.offset + ROWS_PER_PAGE)
        if filters.offset + ROWS_PER_PAGE < total
        else None,
    }
