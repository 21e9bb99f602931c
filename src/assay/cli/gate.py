"""``assay gate GROUP``: a verdict per candidate, as an exit code a CI pipeline can use.

Exit codes: 0 every candidate passes, 1 some candidate fails, 3 none fails but some are
inconclusive, 2 the gate could not run (bad policy file, unknown or unfinished group, ...).
Usage errors exit 2 here, not 1 like other commands: a pipeline must never mistake a typo
in a policy file for a failing candidate.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from assay.cli._output import console, err_console, warn
from assay.errors import AssayError
from assay.gate import EXIT_USAGE, GateResult, render, run_gate
from assay.gate.report import (
    axis,
    bar_legend,
    ci_bar,
    evidence,
    failures,
    headline,
    interval,
    number,
    signed,
    wtl,
)
from assay.store import open_store

_STYLES = {"PASS": "bold green", "FAIL": "bold red", "INCONCLUSIVE": "bold yellow"}


class Format(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"
    junit = "junit"


def gate(
    group_id: int = typer.Argument(..., metavar="GROUP", help="The run group to decide on."),
    policy: Path | None = typer.Option(
        None, "--policy", help="Policy file (.yaml/.yml or .toml); default thresholds without."
    ),
    fmt: Format = typer.Option(Format.text, "--format", help="text, markdown, json or junit."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the report here; the terminal gets the summary."
    ),
    slice_by: list[str] | None = typer.Option(
        None, "--slice-by", help="Also compare per value of this row metadata key (repeatable)."
    ),
    against_baseline: bool = typer.Option(
        False,
        "--against-baseline",
        help="Compare every arm with the baseline arm of the eval's accepted baseline group "
        "(`assay run baseline`).",
    ),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed: same seed, same intervals."),
    resamples: int = typer.Option(10_000, "--resamples", help="Bootstrap resamples."),
) -> None:
    """Give each candidate a verdict against the baseline: PASS, FAIL (with every reason) or
    INCONCLUSIVE (with the rows that would settle it). Each verdict is stored.

    Exit code 0: all pass; 1: some candidate fails; 3: none fails, some inconclusive;
    2: the gate could not run."""
    try:
        if output is not None and not output.parent.is_dir():
            raise AssayError(f"cannot write {output}: directory {output.parent} does not exist")
        with open_store() as store:
            result = run_gate(
                store,
                group_id,
                policy_path=policy,
                slice_by=slice_by or [],
                against_baseline=against_baseline,
                seed=seed,
                resamples=resamples,
            )
        report = render(result, fmt.value)
        if output is not None:
            try:
                output.write_text(report, encoding="utf-8")
            except OSError as exc:
                raise AssayError(f"cannot write {output}: {exc.strerror or exc}") from exc
    except AssayError as exc:
        err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from exc
    if output is not None or fmt is Format.text:
        print_result(result)
    else:
        console.file.write(report)  # byte for byte: no Rich markup or wrapping
    for message in result.warnings:
        warn(escape(message))
    raise typer.Exit(result.exit_code)


def print_result(result: GateResult) -> None:
    """The verdicts for a person at a terminal."""
    g = result.group
    console.print(
        f"[bold]Assay gate: run group {g.group_id}[/]: "
        f"[{_STYLES[result.decision]}]{result.decision}[/]"
    )
    console.print(escape(headline(result)), style="dim")
    level = f"{g.level * 100:g}%"
    table = Table("model", "n", "mean", "Δ", f"{level} CI", "W/T/L", "failures", "verdict",
                  header_style="bold")  # fmt: skip
    table.add_row(escape(f"{g.baseline.model} (baseline)"), str(g.baseline.scored),
                  number(g.baseline.mean_score), "", "", "", "", "")  # fmt: skip
    for v in result.verdicts:
        d = v.comparison.paired
        table.add_row(
            escape(v.model), str(d.n_pairs), number(d.mean_candidate), signed(d.mean_diff),
            interval(v), wtl(v), failures(v), f"[{_STYLES[v.decision]}]{v.decision}[/]",
        )  # fmt: skip
    console.print(table)
    half = axis(result.verdicts)
    console.print(escape(bar_legend(result, half)), style="dim")
    width = max(len(v.model) for v in result.verdicts)
    for v in result.verdicts:
        console.print(escape(f"{v.model:<{width}}  {ci_bar(v, half)}"))
    for v in result.verdicts:
        console.print(f"\n[{_STYLES[v.decision]}]{v.decision}[/] {escape(v.model)}")
        for reason in v.reasons:
            console.print(f"  - {escape(reason)}")
        for line in evidence(v):
            console.print(f"    {escape(line)}", style="dim")
