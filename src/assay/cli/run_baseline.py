"""``assay run baseline GROUP``: mark the accepted baseline of an eval (attached to ``run``)."""

from __future__ import annotations

import typer

from assay.cli._output import console, print_json
from assay.gate import mark_baseline
from assay.store import open_store


def baseline(
    group_id: int = typer.Argument(..., metavar="GROUP"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Mark a finished run group as its eval's accepted baseline (unmarking the previous one):
    `assay gate NEW_GROUP --against-baseline` then compares with this group's baseline arm."""
    with open_store() as store:
        change = mark_baseline(store, group_id)
    if as_json:
        print_json(change)
        return
    previous = (
        f" (replacing group {change.previous_group_id})"
        if change.previous_group_id is not None
        else ""
    )
    console.print(
        f"Run group {change.group_id} is now the accepted baseline of eval "
        f"{change.eval!r}{previous}",
        markup=False,
    )
