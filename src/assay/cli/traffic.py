"""``assay traffic ...``: import captured logs, list, show and summarise inferences."""

from __future__ import annotations

from pathlib import Path

import typer

from assay.cli._output import info, print_json, print_table, warn
from assay.store import open_store
from assay.traffic import (
    TrafficFilter,
    get_inference,
    import_traffic,
    list_inferences,
    parse_filter,
    traffic_stats,
)

app = typer.Typer(help="Import, list and summarise captured traffic.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON (stable field names) instead.")
ENVIRONMENT = typer.Option(None, "--environment", "-e", help="Only this environment.")
TASK = typer.Option(None, "--task", help="Only this task.")
PROVIDER = typer.Option(None, "--provider", help="Only this provider (openai, anthropic, ...).")
MODEL = typer.Option(None, "--model", help="Only this model.")
STATUS = typer.Option(None, "--status", help="success, error, or an HTTP status code.")
SINCE = typer.Option(None, "--since", help="Started at or after (2026-01-31 or ISO time, UTC).")
UNTIL = typer.Option(None, "--until", help="Started before (date or ISO time, UTC).")
METADATA = typer.Option(None, "--metadata", "-m", help="key=value; repeat to require several.")


def make_filter(
    environment: str | None,
    task: str | None,
    provider: str | None,
    model: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    metadata: list[str] | None,
) -> TrafficFilter:
    """The shared filter options as a ``TrafficFilter`` (``dataset create`` uses it too)."""
    return parse_filter(
        environment=environment,
        task=task,
        provider=provider,
        model=model,
        status=status,
        since=since,
        until=until,
        metadata=metadata,
    )


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="JSONL: OpenAI batch output or Assay export."),
    requests: Path | None = typer.Option(
        None, "--requests", help="The batch input file, to pair requests by custom_id."
    ),
    environment: str | None = typer.Option(None, "--environment", "-e", help="Default env."),
    task: str | None = typer.Option(None, "--task", help="Default task for untagged lines."),
    json: bool = JSON_OPTION,
) -> None:
    """Import a JSONL log as inferences (one transaction; re-importing adds nothing)."""
    with open_store() as store:
        report = import_traffic(store, file, requests=requests, environment=environment, task=task)
    if json:
        print_json(report)
        return
    info(
        f"Imported {report.inferences_imported:,} inferences from {report.file}"
        + (f" ({report.already_present:,} already present)" if report.already_present else "")
    )
    if report.lines_skipped:
        lines = [f"{report.lines_skipped:,} lines skipped:"]
        lines += [f"  line {e.line}: {e.reason}" for e in report.errors]
        warn("\n".join(lines))


@app.command("list")
def list_(
    environment: str | None = ENVIRONMENT,
    task: str | None = TASK,
    provider: str | None = PROVIDER,
    model: str | None = MODEL,
    status: str | None = STATUS,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    metadata: list[str] | None = METADATA,
    limit: int = typer.Option(50, "--limit", help="At most N inferences, newest first."),
    json: bool = JSON_OPTION,
) -> None:
    """List inferences, newest first."""
    f = make_filter(environment, task, provider, model, status, since, until, metadata)
    with open_store() as store:
        rows = list_inferences(store, f, limit)
    if json:
        print_json(rows)
        return
    if not rows:
        info("No inferences match. Capture some with `assay proxy` or `assay traffic import`.")
        return
    print_table(
        ["id", "started", "env", "task", "provider", "model", "status", "ms", "in", "out"],
        [
            (
                r.id,
                r.started_at,
                r.environment,
                r.task,
                r.provider,
                r.model,
                r.status_code if r.success else f"{r.status_code or '-'} error",
                r.duration_ms,
                r.input_tokens,
                r.output_tokens,
            )
            for r in rows
        ],
    )


@app.command("show")
def show(
    inference_id: int = typer.Argument(..., metavar="ID", help="Inference id."),
    json: bool = JSON_OPTION,
) -> None:
    """Show one inference with its request and response."""
    with open_store() as store:
        detail = get_inference(store, inference_id)
    if json:
        print_json(detail)
        return
    fields = detail.model_dump(exclude={"request_body", "response_body"})
    print_table(["field", "value"], [(k, v) for k, v in fields.items()])
    print_json({"request": detail.request_body, "response": detail.response_body})


@app.command("stats")
def stats(
    environment: str | None = ENVIRONMENT,
    task: str | None = TASK,
    provider: str | None = PROVIDER,
    model: str | None = MODEL,
    status: str | None = STATUS,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    metadata: list[str] | None = METADATA,
    json: bool = JSON_OPTION,
) -> None:
    """Per task and model: count, error rate, p50/p95 latency, tokens, cost."""
    f = make_filter(environment, task, provider, model, status, since, until, metadata)
    with open_store() as store:
        rows = traffic_stats(store, f)
    if json:
        print_json(rows)
        return
    if not rows:
        info("No inferences match.")
        return
    print_table(
        ["task", "model", "count", "error rate", "p50 ms", "p95 ms", "in tok", "out tok", "cost $"],
        [
            (
                s.task,
                s.model,
                f"{s.count:,}",
                f"{s.error_rate:.1%}",
                s.p50_ms,
                s.p95_ms,
                f"{s.input_tokens:,}",
                f"{s.output_tokens:,}",
                f"{s.cost_usd:.4f}",
            )
            for s in rows
        ],
    )
