"""``assay dataset ...``: import, browse, export and delete datasets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from assay.cli._output import console, err_console, info, print_json, print_table, warn
from assay.datasets import (
    ImportReport,
    ProgressCallback,
    dataset_rows,
    delete_dataset,
    export_dataset,
    get_dataset,
    import_dataset,
    list_datasets,
)
from assay.datasets.export import export_lines
from assay.datasets.from_run import ROW_FORMATS, FromRunReport, create_dataset_from_run
from assay.errors import ValidationError
from assay.store import open_store

app = typer.Typer(
    help="Import, browse and export eval and training datasets.", no_args_is_help=True
)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON (stable field names) instead.")


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="JSONL file: chat or source-backed format."),
    name: str = typer.Option(..., "--name", "-n", help="Name of the new dataset."),
    type: str = typer.Option("eval", "--type", "-t", help="eval (≤ 10,000 rows) or training."),
    limit: int | None = typer.Option(None, "--limit", help="Import only the first N rows."),
    dedupe: bool = typer.Option(False, "--dedupe", help="Drop rows that repeat an earlier row."),
    json: bool = JSON_OPTION,
) -> None:
    """Import a JSONL file as a new dataset (one transaction: all of it or nothing)."""
    with open_store() as store, _progress_bar(file) as progress:
        report = import_dataset(
            store, file, name, type, limit=limit, dedupe=dedupe, progress=progress
        )
    if json:
        print_json(report)
        return
    _print_report(report, file, limit)


@app.command("list")
def list_(
    type: str | None = typer.Option(None, "--type", "-t", help="Only eval or training."),
    json: bool = JSON_OPTION,
) -> None:
    """List datasets."""
    with open_store() as store:
        datasets = list_datasets(store, type)
    if json:
        print_json(datasets)
        return
    if not datasets:
        info("No datasets yet. Import one with `assay dataset import FILE --name NAME`.")
        return
    print_table(
        ["name", "type", "rows", "duplicates", "format", "provenance", "source", "created"],
        [
            (d.name, d.type, f"{d.row_count:,}", d.duplicate_count, d.source_format,
             d.provenance, d.source, d.created_at)
            for d in datasets
        ],
    )  # fmt: skip


@app.command()
def show(name: str = typer.Argument(...), json: bool = JSON_OPTION) -> None:
    """Show one dataset: counts, type, provenance, source, filter, creation time."""
    with open_store() as store:
        dataset = get_dataset(store, name)
    if json:
        print_json(dataset)
        return
    filter_text = orjson.dumps(dataset.filter).decode() if dataset.filter else None
    print_table(
        ["field", "value"],
        [
            ("name", dataset.name),
            ("id", dataset.id),
            ("type", dataset.type),
            ("rows", f"{dataset.row_count:,}"),
            ("duplicates", dataset.duplicate_count),
            ("provenance", dataset.provenance),
            ("source", dataset.source),
            ("format", dataset.source_format),
            ("training rows", dataset.row_format or "-"),
            ("filter", filter_text),
            ("created", dataset.created_at),
        ],
    )


@app.command()
def rows(
    name: str = typer.Argument(...),
    limit: int = typer.Option(20, "--limit", help="How many rows."),
    offset: int = typer.Option(0, "--offset", help="Skip this many rows first."),
    json: bool = JSON_OPTION,
) -> None:
    """Show rows of a dataset, in order."""
    with open_store() as store:
        page = dataset_rows(store, name, limit=limit, offset=offset)
    if json:
        print_json(page)
        return
    if not page:
        info(f"No rows at offset {offset}.")
        return
    print_table(
        ["#", "turns", "last message", "reference", "hash"],
        [
            (r.position, len(r.messages), _clip(_text(r.messages[-1])),
             _clip(_text(r.reference)) if r.reference else None, r.content_hash[:12])
            for r in page
        ],
    )  # fmt: skip


@app.command()
def export(
    name: str = typer.Argument(...),
    format: str = typer.Option(
        "chat",
        "--format",
        "-f",
        help="chat or source (Assay's import formats, re-import to identical rows), openai "
        "(OpenAI fine-tuning: chat SFT lines, or DPO lines for a preference set) or trl "
        "(Hugging Face TRL: messages, or prompt/chosen/rejected).",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="File to write (JSONL); without it, lines go to stdout."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Export a dataset as JSONL: for re-import (chat, source) or for fine-tuning (openai, trl).

    A file is written whole or not at all; rows stream, so a million rows need no more memory
    than one.
    """
    with open_store() as store:
        if output is None:
            stdout = typer.get_binary_stream("stdout")
            count = 0
            for line in export_lines(store, name, format):
                stdout.write(line)
                count += 1
            stdout.flush()
            info(f"Exported {_n(count, 'row')} of '{escape(name)}' ({format} format).")
            return
        count = export_dataset(store, name, output, format, force=force)
    info(
        f"Exported {_n(count, 'row')} of '{escape(name)}' "
        f"to {escape(str(output))} ({format} format)."
    )


@app.command("from-run")
def from_run(
    group: int = typer.Argument(..., metavar="GROUP", help="Run group id (`assay run list`)."),
    name: str = typer.Option(..., "--name", "-n", help="Name of the new training dataset."),
    keep_eval: str | None = typer.Option(
        None,
        "--keep-eval",
        help="Eval dataset to keep clean (required): rows also in it are left out. Not the "
        "group's own dataset, whose rows this builds from.",
    ),
    format: str = typer.Option(
        "sft",
        "--format",
        "-f",
        help="sft (context + best output as the target) or preference (context, a chosen "
        "output and the low-scoring one as rejected).",
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Select the rows this model scored low (default: baseline)."
    ),
    below: float | None = typer.Option(
        None,
        "--below",
        help="Low means a score below this; the target must reach it (default: the middle "
        "of the rubric's range, 5.5 on 1-10).",
    ),
    use_reference: bool = typer.Option(
        False,
        "--use-reference",
        help="When no output reaches --below, take the row's reference as the target (unless "
        "the group judged it and it scored low).",
    ),
    min_gap: float = typer.Option(
        0.0, "--min-gap", help="The chosen output must beat the low one by at least this much."
    ),
    json: bool = JSON_OPTION,
) -> None:
    """Build a training dataset from a run group's low-scoring rows, with provenance.

    Rows where --model scored below --below are taken; the target (or, for preference, the
    chosen output) is the best-scoring output of the other arms at or above --below, ties to
    the baseline then run order. Failed rows are counted, never used. Every row records the
    group, the source row, each arm's score, what was taken and why, and the judge's reasoning.
    Export it for fine-tuning with `assay dataset export NAME --format openai|trl`.
    """
    if format not in ROW_FORMATS:
        raise ValidationError(f"unknown --format {format!r} (expected {' or '.join(ROW_FORMATS)})")
    with open_store() as store, _count_bar("Writing rows") as progress:
        report = create_dataset_from_run(
            store,
            group,
            name,
            row_format=format,
            model=model,
            below=below,
            keep_eval=keep_eval,
            use_reference=use_reference,
            min_gap=min_gap,
            progress=progress,
        )
    if json:
        print_json(report)
        return
    _print_from_run(report, keep_eval)


@app.command()
def delete(
    name: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a dataset and its rows."""
    with open_store() as store:
        dataset = get_dataset(store, name)
        if not yes:
            typer.confirm(
                f"Delete {dataset.type} dataset '{name}' and its {_n(dataset.row_count, 'row')}?",
                abort=True,
            )
        delete_dataset(store, name)
    info(f"Deleted dataset '{escape(name)}' ({_n(dataset.row_count, 'row')}).")


def _print_from_run(report: FromRunReport, keep_eval: str | None) -> None:
    d = report.dataset
    console.print(
        f"Created training dataset '{escape(d.name)}' ({report.row_format}) with "
        f"{_n(report.written, 'row')} from run group {report.group_id}: rows where "
        f"{escape(report.model)} scored below {report.below:g}."
    )
    print_table(
        ["step", "rows"],
        [
            ("considered (the group's sample)", f"{report.considered:,}"),
            (f"no score for {escape(report.model)} (failed, left out)", f"{report.failed:,}"),
            (f"below {report.below:g}", f"{report.below_threshold:,}"),
            ("no output good enough to learn from", f"{report.no_target:,}"),
            (f"also in '{escape(keep_eval or '')}' (removed)", f"{report.overlap_removed:,}"),
            ("written", f"{report.written:,}"),
        ],
    )
    info(f"Export it with `assay dataset export {escape(d.name)} --format openai|trl -o FILE`.")


def _print_report(report: ImportReport, file: Path, limit: int | None) -> None:
    d = report.dataset
    console.print(
        f"Imported {_n(report.rows_imported, 'row')} into {d.type} dataset '{escape(d.name)}' "
        f"from {escape(file.name)} ({d.source_format} format)."
    )
    if report.lines_skipped:
        lines = [f"skipped {_n(report.lines_skipped, 'invalid line')}:"]
        lines += [f"  line {e.line}: {escape(e.reason)}" for e in report.errors]
        rest = report.lines_skipped - len(report.errors)
        if rest > 0:
            lines.append(f"  ... and {rest:,} more")
        warn("\n".join(lines))
    if report.duplicates_dropped:
        info(f"Dropped {_n(report.duplicates_dropped, 'duplicate row')} (--dedupe).")
    if report.duplicates:
        warn(
            f"{_n(report.duplicates, 'row')} repeat an earlier row (same content hash); "
            "re-import with --dedupe to drop them."
        )
    if report.truncated:
        info(
            f"Stopped after {_n(report.rows_imported, 'row')} (--limit {limit}); "
            "the rest was not read."
        )


@contextmanager
def _progress_bar(file: Path) -> Iterator[ProgressCallback | None]:
    """A bytes-read bar on stderr, only for a person watching a terminal."""
    if not err_console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        size = file.stat().st_size if file.is_file() else None
        task = bar.add_task(f"Importing {escape(file.name)}", total=size)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def _count_bar(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rows-done bar on stderr, only for a person watching a terminal."""
    if not err_console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        console=err_console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(
            p.get("text", f"[{p.get('type')}]") for p in content if isinstance(p, dict)
        )
    text = content if isinstance(content, str) else ""
    calls = message.get("tool_calls") or []
    names = ", ".join(c.get("function", {}).get("name", "?") for c in calls if isinstance(c, dict))
    prefix = f"{message.get('role')}: "
    return prefix + " ".join(text.split()) + (f" [calls {names}]" if names else "")


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
