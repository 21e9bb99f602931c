"""``assay dataset create --from-traffic`` and ``assay dataset overlap``.

Plain command functions: the lead attaches them to the ``dataset`` group.
"""

from __future__ import annotations

import typer

from assay.cli._output import info, print_json, print_table, warn
from assay.cli.traffic import (
    ENVIRONMENT,
    JSON_OPTION,
    METADATA,
    MODEL,
    PROVIDER,
    SINCE,
    STATUS,
    TASK,
    UNTIL,
    make_filter,
)
from assay.errors import ValidationError
from assay.store import open_store
from assay.traffic import create_dataset_from_traffic, dataset_overlap


def create(
    name: str = typer.Argument(..., help="Name of the new dataset."),
    type: str = typer.Option(..., "--type", "-t", help="eval (≤ 10,000 rows) or training."),
    from_traffic: bool = typer.Option(
        False, "--from-traffic", help="Build from captured inferences (successful only)."
    ),
    environment: str | None = ENVIRONMENT,
    task: str | None = TASK,
    provider: str | None = PROVIDER,
    model: str | None = MODEL,
    status: str | None = STATUS,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    metadata: list[str] | None = METADATA,
    limit: int | None = typer.Option(None, "--limit", help="The first N rows (oldest first)."),
    sample: int | None = typer.Option(None, "--sample", help="A seeded random sample of N."),
    seed: int = typer.Option(0, "--seed", help="Seed of --sample."),
    exclude: str | None = typer.Option(
        None, "--exclude", help="Eval dataset to keep out (required for training)."
    ),
    json: bool = JSON_OPTION,
) -> None:
    """Create a dataset from captured traffic, with the filter stored alongside."""
    if not from_traffic:
        raise ValidationError(
            "`dataset create` builds from captured traffic: add --from-traffic "
            "(to load a file, use `assay dataset import FILE --name NAME`)"
        )
    f = make_filter(environment, task, provider, model, status, since, until, metadata)
    with open_store() as store:
        report = create_dataset_from_traffic(
            store, name, type, f, limit=limit, sample=sample, seed=seed, exclude=exclude
        )
    if report.warning:
        warn(report.warning)
    if json:
        print_json(report)
        return
    info(
        f"Created {report.dataset.type} dataset '{report.dataset.name}': {report.rows:,} rows "
        f"from {report.matched:,} matching inferences"
    )
    if report.overlap_removed:
        info(f"{report.overlap_removed:,} rows removed: already in '{exclude}'")
    if report.unconvertible:
        info(f"{report.unconvertible:,} inferences skipped: not chat conversations")


def overlap(
    a: str = typer.Argument(..., help="First dataset."),
    b: str = typer.Argument(..., help="Second dataset."),
    json: bool = JSON_OPTION,
) -> None:
    """How many rows two datasets share (same inference or same conversation)."""
    with open_store() as store:
        report = dataset_overlap(store, a, b)
    if json:
        print_json(report)
        return
    print_table(
        ["dataset", "rows", "also in the other", "fraction"],
        [
            (report.a, f"{report.a_rows:,}", f"{report.a_in_b:,}", f"{report.a_fraction:.1%}"),
            (report.b, f"{report.b_rows:,}", f"{report.b_in_a:,}", f"{report.b_fraction:.1%}"),
        ],
    )
