"""``assay labels ...``: import and inspect human labels (scores or pairwise preferences)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from assay.cli._output import info, print_json, print_table
from assay.cli.dataset import _progress_bar
from assay.labels import get_label_set, import_labels, list_label_sets
from assay.store import open_store

app = typer.Typer(
    help="Import and inspect human labels, to calibrate a rubric's judge against "
    "(see docs/calibration.md).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (stable field names).")]


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="JSONL file, one label per line.")],
    dataset: Annotated[
        str, typer.Option("--dataset", "-D", help="The dataset whose rows are labelled.")
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="Name of the label set (default: the file's stem)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Import human labels for rows of a dataset as a new label set.

    Each line names its row with "row" (0-based position) or "row_id" (database id), then
    either a pointwise label, "score" (plus optional "output", text or an assistant message;
    default the row's reference), or a pairwise one: "output_a", "output_b" and "preferred"
    ("a", "b" or "tie"; "A", "B", 1 and 2 also work). Optional: "annotator", "metadata".
    Any bad line is reported with its line and field, and nothing is stored.
    """
    with open_store() as store, _progress_bar(file) as progress:
        report = import_labels(store, file, dataset, name=name, progress=progress)
    if as_json:
        print_json(report)
        return
    info(
        f"Imported {report.labels:,} {report.kind} label(s) as [bold]{escape(report.name)}[/] "
        f"for dataset {escape(report.dataset)}. Calibrate a judge: assay rubric calibrate "
        f"RUBRIC --labels {escape(report.name)} --judge JUDGE"
    )


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List label sets: name, dataset, kind and how many labels."""
    with open_store() as store:
        found = list_label_sets(store)
    if as_json:
        print_json(found)
        return
    if not found:
        info("No label sets yet. Import one: assay labels import FILE --dataset DATASET")
        return
    print_table(
        ["name", "dataset", "kind", "labels", "source", "created"],
        [(s.name, s.dataset, s.kind, s.labels, s.source, s.created_at) for s in found],
    )


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The label set to show.")],
    first: Annotated[int, typer.Option("--first", help="How many labels to list.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Show a label set: its dataset, kind, score range or preference counts, first labels."""
    with open_store() as store:
        found = get_label_set(store, name, first=max(first, 0))
    if as_json:
        print_json(found)
        return
    typer.echo(f"{'Label set:':<12}{found.name}")
    typer.echo(f"{'Dataset:':<12}{found.dataset}")
    typer.echo(f"{'Kind:':<12}{found.kind}")
    typer.echo(f"{'Labels:':<12}{found.labels:,}")
    if found.score_min is not None:
        typer.echo(f"{'Scores:':<12}{found.score_min:g} to {found.score_max:g}")
    if found.preferences is not None:
        counts = ", ".join(f"{key} {value}" for key, value in found.preferences.items())
        typer.echo(f"{'Preferred:':<12}{counts}")
    typer.echo(f"{'Source:':<12}{found.source or '-'}")
    if not found.first:
        return
    if found.kind == "pointwise":
        rows = [
            (x.position, x.row, f"{x.score:g}", _clip(x.output), x.annotator) for x in found.first
        ]
        print_table(["#", "row", "score", "output", "annotator"], rows)
    else:
        rows = [
            (x.position, x.row, x.preferred, _clip(x.output_a), _clip(x.output_b), x.annotator)
            for x in found.first
        ]
        print_table(["#", "row", "preferred", "output a", "output b", "annotator"], rows)


def _clip(message: dict | None, width: int = 50) -> str:
    if message is None:
        return "(the row's reference)"
    content = message.get("content")
    text = " ".join(content.split()) if isinstance(content, str) else str(content)
    return text if len(text) <= width else text[: width - 1] + "…"
