"""``assay rubric calibrate``: how well a judge under a rubric version agrees with humans."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from assay.cli._output import err_console, print_json, print_table, warn
from assay.errors import ValidationError
from assay.rubrics.calibrate import (
    DEFAULT_CONCURRENCY,
    CalibrationInfo,
    ProgressCallback,
    calibrate,
)
from assay.stats.agreement import Metric
from assay.store import open_store

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (stable field names).")]
METRIC_NAMES = {
    "spearman": "Spearman rho",
    "kendall": "Kendall tau-b",
    "exact": "exact agreement",
    "within_1": "within 1 point",
    "kappa": "weighted kappa (quadratic)",
    "pairwise_accuracy": "accuracy (both orders combined)",
    "order_accuracy": "accuracy per order (mean of both)",
    "consistency": "position-swap consistency",
}


def calibrate_command(
    name: Annotated[str, typer.Argument(help="The rubric to calibrate.")],
    labels: Annotated[str, typer.Option("--labels", "-l", help="The label set (`labels list`).")],
    judge: Annotated[str, typer.Option("--judge", help="The judge model.")],
    version: Annotated[
        int | None, typer.Option("--version", help="Rubric version (default: latest).")
    ] = None,
    judge_samples: Annotated[
        int,
        typer.Option(
            "--judge-samples", "-k", help="Judgments per label (per order, pairwise); averaged."
        ),
    ] = 1,
    label_scale: Annotated[
        str | None,
        typer.Option(
            "--label-scale",
            help="The human scores' range as MIN-MAX (e.g. 1-5), mapped onto the rubric's "
            "range for exact, within-1 and kappa. Default: the rubric's range when every "
            "label fits in it, else the labels' own lowest and highest.",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Labels judged at once.")
    ] = DEFAULT_CONCURRENCY,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap intervals.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (stable field names).")
    ] = False,
) -> None:
    """Judge every labelled output with the rubric and judge, and report the agreement with
    the humans, with 95 % bootstrap intervals.

    Pointwise labels: Spearman and Kendall correlation, exact and within-1 agreement, Cohen's
    weighted kappa (quadratic weights). Pairwise labels (a pairwise rubric): accuracy of the
    verdict combined over both presentation orders, accuracy per order, and position-swap
    consistency. The result is stored with the rubric version and judge (see `rubric show`),
    where a gate policy's `calibration` requirement finds it.
    """
    scale = _parse_scale(label_scale) if label_scale is not None else None
    with open_store() as store, _bar(not as_json) as progress:
        result = asyncio.run(
            calibrate(
                store,
                name,
                labels=labels,
                judge=judge,
                version=version,
                judge_samples=judge_samples,
                concurrency=concurrency,
                label_scale=scale,
                seed=seed,
                progress=progress,
            )
        )
    if as_json:
        print_json(result)
        return
    render(result)


def render(result: CalibrationInfo) -> None:
    typer.echo(
        f"# Calibration {result.id}: rubric {result.rubric} v{result.rubric_version}, judge "
        f"{result.judge}, labels {result.label_set} ({result.kind})"
    )
    typer.echo(
        f"# Judged {result.labels_judged} of {result.labels_total} labels "
        f"({result.labels_failed} failed), {result.judge_samples} sample(s) each"
        + ("" if result.kind == "pointwise" else " per order")
    )
    judgments = ", ".join(f"{k} {v}" for k, v in result.judgments.items())
    typer.echo(f"# Judgments: {judgments}")
    if result.kind == "pointwise" and result.label_scale and result.rubric_scale:
        low, high = result.label_scale
        r_low, r_high = result.rubric_scale
        if [low, high] != [float(r_low), float(r_high)]:
            typer.echo(
                f"# Human scores {low:g}-{high:g} mapped linearly onto the rubric's "
                f"{r_low}-{r_high} and rounded for exact, within-1 and kappa "
                f"(scale: {result.label_scale_from}); correlations use the raw scores"
            )
        else:
            typer.echo(
                f"# Human and judge scores rounded to integers {r_low}-{r_high} for exact, "
                "within-1 and kappa; correlations use the raw scores"
            )
    print_table(
        ["metric", "value", "95% interval", "n"],
        [
            (METRIC_NAMES.get(key, key), _number(m.value), _interval(m), m.n)
            for key, m in result.metrics.items()
        ],
    )
    if result.labels_judged == 0:
        warn("no label was judged: every judgment failed; check the judge and the rubric")


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _interval(metric: Metric) -> str:
    if metric.low is None or metric.high is None:
        return "-"
    return f"{metric.low:.3f} to {metric.high:.3f}"


def _parse_scale(text: str) -> tuple[float, float]:
    parts = text.replace(" ", "").split("-")
    try:
        if len(parts) != 2:
            raise ValueError
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValidationError(
            f"--label-scale: expected MIN-MAX such as 1-5, got {text!r}"
        ) from None
    if not low < high:
        raise ValidationError(f"--label-scale: MIN must be below MAX, got {text!r}")
    return low, high


@contextmanager
def _bar(wanted: bool) -> Iterator[ProgressCallback | None]:
    """A labels-judged bar on stderr, only for a person watching a terminal."""
    if not wanted or not err_console.is_terminal:
        yield None
        return
    columns = (TextColumn("Judging labels"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("judge", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def calibration_rows(
    found: list[CalibrationInfo],
) -> tuple[list[str], list[tuple[object, ...]]]:
    """Columns and rows of a calibrations table (`rubric show`): key metrics with intervals."""
    rows = []
    for c in found:
        keys = ("spearman", "kappa") if c.kind == "pointwise" else ("pairwise_accuracy",)
        metrics = "; ".join(
            f"{key} {_number(c.metrics[key].value)} [{_interval(c.metrics[key])}]"
            for key in keys
            if key in c.metrics
        )
        rows.append(
            (c.id, f"v{c.rubric_version}", c.judge, c.label_set,
             f"{c.labels_judged}/{c.labels_total}", metrics, c.created_at)
        )  # fmt: skip
    return ["id", "version", "judge", "labels", "judged", "key metrics", "created"], rows
