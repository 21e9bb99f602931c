"""Traffic pages: captured inferences (filters, statistics, pages of results), one inference in
detail, and saving the current slice as a dataset."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse

from assay.datasets import LineError, list_datasets, parse_line
from assay.errors import AssayError, ValidationError
from assay.traffic import (
    TrafficFilter,
    create_dataset_from_traffic,
    get_inference,
    list_inferences,
    parse_filter,
    traffic_stats,
)
from assay.web.deps import MAX_PAGE, StoreDep
from assay.web.pages.common import (
    TRAFFIC_FILTER_KEYS as FILTER_FIELDS,
)
from assay.web.pages.common import (
    conversation_view,
    form_error,
    message_view,
    pager,
    whole,
)
from assay.web.pages.render import render

router = APIRouter()

PER_PAGE = 50


def _blank_to_none(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


@dataclass
class FilterForm:
    """The filter as the user typed it (shown again as is), and its parsed form."""

    values: dict[str, str]
    metadata: list[str]

    @classmethod
    def of(cls, values: dict[str, str | None], metadata: list[str]) -> FilterForm:
        return cls(
            {key: (values.get(key) or "").strip() for key in FILTER_FIELDS},
            [item.strip() for item in metadata if item and item.strip()],
        )

    def pairs(self) -> list[tuple[str, str]]:
        """The fields in use as (name, value): query strings and hidden inputs."""
        pairs = [(key, self.values[key]) for key in FILTER_FIELDS if self.values[key]]
        return pairs + [("metadata", item) for item in self.metadata]

    def parse(self) -> TrafficFilter:
        """Validated by the service; blank fields mean "any"."""
        fields = {key: _blank_to_none(self.values[key]) for key in FILTER_FIELDS}
        return parse_filter(**fields, metadata=self.metadata)


def filter_query(
    environment: str | None = None,
    task: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    status: str | None = None,
    since: str | None = None,
    until: str | None = None,
    metadata: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
) -> FilterForm:
    values = {"environment": environment, "task": task, "provider": provider, "model": model,
              "status": status, "since": since, "until": until}  # fmt: skip
    return FilterForm.of(values, metadata)


FilterDep = Annotated[FilterForm, Depends(filter_query)]


@router.get("/traffic", response_class=HTMLResponse)
def traffic_page(
    request: Request,
    store: StoreDep,
    form: FilterDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = PER_PAGE,
) -> HTMLResponse:
    """The list comes at once; the statistics (an aggregate over every matching inference)
    load after it, from ``/traffic/stats``, so a large table never delays the page."""
    context: dict[str, Any] = {
        "section": "traffic",
        "form": form,
        "filter_pairs": form.pairs(),
        "filter_error": None,
        "inferences": [],
        "pager": None,
        "eval_datasets": [d.name for d in list_datasets(store, "eval")],
    }
    try:
        f = form.parse()
    except ValidationError as exc:
        context["filter_error"] = str(exc)
        return render(request, "traffic.html", context, status_code=422)
    inferences = list_inferences(store, f, limit=limit, offset=offset)
    context.update(
        inferences=inferences,
        pager=pager(request, "/traffic", offset, limit, len(inferences), None, "inferences"),
    )
    return render(request, "traffic.html", context)


@router.get("/traffic/stats", response_class=HTMLResponse)
def traffic_stats_fragment(request: Request, store: StoreDep, form: FilterDep) -> HTMLResponse:
    try:
        f = form.parse()
    except ValidationError as exc:
        return form_error(request, exc, "Invalid filter")
    stats = traffic_stats(store, f)
    return render(
        request,
        "_traffic_stats.html",
        {"stats": stats, "totals": _totals(stats), "filter_pairs": form.pairs()},
    )


def _totals(stats: list[Any]) -> dict[str, Any]:
    count = sum(s.count for s in stats)
    errors = sum(s.errors for s in stats)
    return {
        "count": count,
        "errors": errors,
        "error_rate": errors / count if count else None,
        "input_tokens": sum(s.input_tokens for s in stats),
        "output_tokens": sum(s.output_tokens for s in stats),
        "cost_usd": sum(s.cost_usd for s in stats),
    }


@router.post("/traffic/dataset", response_class=HTMLResponse)
def save_as_dataset(
    request: Request,
    store: StoreDep,
    name: Annotated[str, Form()] = "",
    type: Annotated[str, Form()] = "eval",
    take: Annotated[str, Form()] = "all",
    count: Annotated[str, Form()] = "",
    seed: Annotated[str, Form()] = "0",
    exclude: Annotated[str, Form()] = "",
    environment: Annotated[str, Form()] = "",
    task: Annotated[str, Form()] = "",
    provider: Annotated[str, Form()] = "",
    model: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "",
    since: Annotated[str, Form()] = "",
    until: Annotated[str, Form()] = "",
    metadata: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
) -> HTMLResponse:
    values = {"environment": environment, "task": task, "provider": provider, "model": model,
              "status": status, "since": since, "until": until}  # fmt: skip
    try:
        if take not in ("all", "limit", "sample"):
            raise ValidationError(f"rows: expected all, limit or sample, got {take!r}")
        f = FilterForm.of(values, metadata).parse()
        n = whole(count, "number of rows") if take in ("limit", "sample") else None
        if take in ("limit", "sample") and n is None:
            raise ValidationError(
                f"give the number of rows to {'take' if take == 'limit' else 'sample'}"
            )
        report = create_dataset_from_traffic(
            store,
            name,
            type,
            f,
            limit=n if take == "limit" else None,
            sample=n if take == "sample" else None,
            seed=whole(seed, "seed") or 0,
            exclude=_blank_to_none(exclude),
        )
    except AssayError as exc:
        return form_error(request, exc, "No dataset was created")
    return render(request, "_traffic_dataset_report.html", {"report": report, "exclude": exclude})


@router.get("/traffic/{inference_id}", response_class=HTMLResponse)
def inference_page(request: Request, store: StoreDep, inference_id: int) -> HTMLResponse:
    inference = get_inference(store, inference_id)
    request_view, response_view, tools, params = _conversation(
        inference.request_body, inference.response_body if inference.success else None
    )
    return render(
        request,
        "inference.html",
        {
            "section": "traffic",
            "inference": inference,
            "messages": request_view,
            "response": response_view,
            "tools": tools,
            "params": params,
        },
    )


def _conversation(
    request_body: dict[str, Any] | None, response_body: dict[str, Any] | None
) -> tuple[list[Any] | None, Any, list[Any] | None, dict[str, Any] | None]:
    """The request as a conversation and the response as a message, read the way datasets
    read them (OpenAI or Anthropic); None where the bodies are not a chat exchange."""
    if not request_body:
        return None, None, None, None
    try:
        row = parse_line(json.dumps({"request": request_body, "response": response_body}))
    except LineError:
        try:  # a response that is not a chat completion: the request alone
            row = parse_line(json.dumps({"request": request_body, "response": None}))
        except LineError:
            return None, None, None, None
    reference = message_view(row.reference) if row.reference is not None else None
    return conversation_view(row.messages), reference, row.tools, row.params
