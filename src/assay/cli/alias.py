"""``assay alias ...``: deployment names the proxy routes to, their history and rollback."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from assay.cli._output import console, info, print_json, print_table
from assay.deploy import (
    AliasChange,
    AliasEventInfo,
    alias_history,
    get_alias,
    list_aliases,
    rollback_alias,
    set_alias,
)
from assay.store import open_store

app = typer.Typer(
    help=(
        "Deployment aliases: stable names (prod-chat) that applications send as the request's "
        "model to `assay proxy`, which forwards to the model the alias points at. Every change "
        "is recorded with who, when, why and the previous target."
    ),
    no_args_is_help=True,
)

JSON_HELP = "Print JSON (stable field names) instead of a table."
ACTOR_HELP = "Who makes the change (default: $ASSAY_ACTOR, else your user name)."


@app.command("set")
def set_(
    name: str = typer.Argument(..., help="The alias, e.g. prod-chat."),
    model: str = typer.Argument(..., help="The registered model it should point at."),
    reason: str | None = typer.Option(None, "--reason", help="Why (recorded in the history)."),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Create an alias, or point an existing one at another model, without a gate verdict.

    For a change backed by the release gate use `assay promote`. The proxy picks the new
    target up within a few seconds."""
    with open_store() as store:
        change = set_alias(store, name, model, actor=actor, reason=reason)
    report_change(change, "set")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List the aliases, the model each points at and its last change."""
    with open_store() as store:
        aliases = list_aliases(store)
    if as_json:
        print_json(aliases)
        return
    if not aliases:
        info("No aliases yet: create one with `assay alias set NAME MODEL`.")
        return
    rows = []
    for a in aliases:
        last = a.last_change
        change = f"{last.action} by {last.actor}" if last else None
        rows.append((a.name, a.model, a.model_id, change, a.updated_at))
    print_table(("alias", "model", "model id", "last change", "changed at (UTC)"), rows)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="The alias."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show where an alias points and its last change."""
    with open_store() as store:
        alias = get_alias(store, name)
    if as_json:
        print_json(alias)
        return
    fields: list[tuple[str, Any]] = [
        ("alias", alias.name),
        ("model", alias.model),
        ("model id", alias.model_id),
        ("provider", alias.provider),
        ("base url", alias.base_url),
        ("created at (UTC)", alias.created_at),
        ("changed at (UTC)", alias.updated_at),
    ]
    if alias.last_change is not None:
        fields.append(("last change", _summary(alias.last_change)))
    print_table(("field", "value"), fields, title=f"alias {alias.name}")


@app.command("history")
def history(
    name: str = typer.Argument(..., help="The alias."),
    limit: int = typer.Option(50, "--limit", help="Show at most this many changes."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List an alias's changes, newest first.

    Each change shows its action, new and previous target, who, when and why; promotions
    also show the gate evidence (group, verdict, Δ and its interval)."""
    with open_store() as store:
        events = alias_history(store, name, limit)
    if as_json:
        print_json(events)
        return
    columns = ("#", "when (UTC)", "action", "model", "previous", "by", "reason", "evidence")
    rows = [
        (e.id, e.created_at, e.action, e.model, e.previous_model, e.actor, e.reason, _evidence(e))
        for e in events
    ]
    print_table(columns, rows, title=f"alias {name}: history")


@app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="The alias."),
    reason: str | None = typer.Option(None, "--reason", help="Why (recorded in the history)."),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Point the alias back at the model its latest change replaced.

    Rolling back twice undoes the rollback. The proxy follows within a few seconds."""
    with open_store() as store:
        change = rollback_alias(store, name, actor=actor, reason=reason)
    report_change(change, "rolled back")


def report_change(change: AliasChange, verb: str) -> None:
    """One line saying what happened (stderr, like other status lines)."""
    alias = change.alias
    if change.event is None:
        info(
            f"Alias [bold]{escape(alias.name)}[/] already points at "
            f"[bold]{escape(alias.model)}[/]: nothing changed, nothing recorded."
        )
        return
    before = change.event.previous_model
    was = f" (was {escape(before)})" if before else ""
    info(
        f"Alias [bold]{escape(alias.name)}[/] {verb}: now [bold]{escape(alias.model)}[/] "
        f"({escape(alias.model_id)}){was}."
    )
    if change.event.forced:
        console.print(
            f"[bold yellow]Forced[/] over a {change.event.decision} verdict: "
            f"{escape(change.event.reason or '')}",
            highlight=False,
        )


def _summary(e: AliasEventInfo) -> str:
    text = f"{e.action} by {e.actor} at {e.created_at:%Y-%m-%d %H:%M}"
    return f"{text}: {e.reason}" if e.reason else text


def _evidence(e: AliasEventInfo) -> str | None:
    if e.action == "rollback":
        return f"undoes #{e.evidence.get('undoes_event_id')}"
    if e.group_id is None and not e.evidence:
        return None
    text = f"group {e.group_id} {e.decision}" + (" FORCED" if e.forced else "")
    ev = e.evidence
    if ev.get("verdict_id") is not None:
        text += f", verdict {ev['verdict_id']}"
    if ev.get("mean_diff") is not None:
        text += f", Δ {ev['mean_diff']:+.2f}"
        if ev.get("ci_low") is not None and ev.get("ci_high") is not None:
            text += f" [{ev['ci_low']:.2f}, {ev['ci_high']:.2f}]"
    return text
