"""``assay run ...``: launch, resume, rejudge and read run groups."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.columns import Columns
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from assay.cli._output import console, err_console, print_json, print_table
from assay.engine.executor import RunProgress
from assay.engine.groups import create_group, list_groups
from assay.engine.results import GroupSummary, group_rows, group_summary, row_detail
from assay.engine.runner import (
    ExecutionOptions,
    check_input_warnings,
    create_rejudge_group,
    execute_group,
)
from assay.rubrics.transcript import format_message_body
from assay.stats.summary import RunSummary
from assay.store import Store, open_store

app = typer.Typer(help="Launch run groups and read their results.", no_args_is_help=True)

T = TypeVar("T")
EXIT_CANCELLED = 130


@app.command("start")
def start(
    eval_name: str = typer.Argument(..., metavar="EVAL", help="The eval definition to run."),
    sample_size: int | None = typer.Option(None, "--sample-size", help="Override the sample."),
    name: str | None = typer.Option(None, "--name", help="A label for this run group."),
    max_concurrency: int = typer.Option(32, "--max-concurrency", help="Calls in flight, total."),
    with_captured: bool | None = typer.Option(
        None,
        "--with-captured/--without-captured",
        help="Judge the dataset's captured outputs as an arm (default: as the eval says).",
    ),
    judge_samples: int | None = typer.Option(
        None, "--judge-samples", help="Judgments per output (default: as the eval says)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read the response cache."),
    max_attempts: int | None = typer.Option(None, "--max-attempts", help="Attempts per call."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds per attempt."),
) -> None:
    """Create a run group from an eval and execute it: every arm on the same sampled rows,
    every output judged as soon as it exists. Ctrl-C stops cleanly; `assay run resume`
    finishes the rest."""
    with open_store() as store:
        group = create_group(
            store,
            eval_name,
            sample_size=sample_size,
            name=name,
            with_captured=with_captured,
            judge_samples=judge_samples,
        )
        console.print(
            f"Run group [bold]{group.id}[/] ({group.sample_size} rows, "
            f"{len(group.runs)} arms, judge {escape(group.judge)})"
        )
        options = ExecutionOptions(max_concurrency, not no_cache, max_attempts, timeout)
        _execute_and_show(store, group.id, options)


@app.command("resume")
def resume(
    group_id: int = typer.Argument(..., metavar="GROUP"),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Also redo rows whose generation or judgment failed."
    ),
    max_concurrency: int = typer.Option(32, "--max-concurrency", help="Calls in flight, total."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read the response cache."),
    max_attempts: int | None = typer.Option(None, "--max-attempts", help="Attempts per call."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds per attempt."),
) -> None:
    """Finish a cancelled or interrupted group: only what is missing is done."""
    with open_store() as store:
        options = ExecutionOptions(
            max_concurrency, not no_cache, max_attempts, timeout, retry_failed=retry_failed
        )
        _execute_and_show(store, group_id, options)


@app.command("rejudge")
def rejudge(
    group_id: int = typer.Argument(..., metavar="GROUP"),
    rubric_version: int | None = typer.Option(
        None, "--rubric-version", help="Rubric version to judge with (default: latest)."
    ),
    judge: str | None = typer.Option(None, "--judge", help="Another judge model."),
    judge_samples: int | None = typer.Option(None, "--judge-samples"),
    max_concurrency: int = typer.Option(32, "--max-concurrency"),
    no_cache: bool = typer.Option(False, "--no-cache"),
) -> None:
    """Judge a group's stored outputs again (new rubric version or judge) as a new linked
    group, without generating anything."""
    with open_store() as store:
        group = create_rejudge_group(
            store,
            group_id,
            rubric_version_number=rubric_version,
            judge=judge,
            judge_samples=judge_samples,
        )
        console.print(
            f"Run group [bold]{group.id}[/] rejudges group {group_id} "
            f"with {escape(group.rubric)} v{group.rubric_version}, judge {escape(group.judge)}"
        )
        _execute_and_show(store, group.id, ExecutionOptions(max_concurrency, not no_cache))


def _execute_and_show(store: Store, group_id: int, options: ExecutionOptions) -> None:
    for warning in check_input_warnings(store, group_id):
        err_console.print(f"[yellow]Warning:[/] {escape(warning)}")
    with _ProgressDisplay() as display:
        options = ExecutionOptions(
            options.max_concurrency,
            options.use_cache,
            options.max_attempts,
            options.timeout_s,
            options.retry_failed,
            on_progress=display.update,
        )
        try:
            _run_cancellable(execute_group(store, group_id, options))
        except asyncio.CancelledError:
            display.stop()
            err_console.print(
                f"[yellow]Cancelled.[/] Finished rows are kept; finish with: "
                f"assay run resume {group_id}"
            )
            raise typer.Exit(EXIT_CANCELLED) from None
    _print_summary(group_summary(store, group_id))


def _run_cancellable(coro: Coroutine[Any, Any, T]) -> T:
    """Run to completion; SIGINT or SIGTERM cancels it (the executor then saves and stops)."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await coro
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(main())
    return uvloop.run(main())


class _ProgressDisplay:
    """One progress bar per arm: rows done, failed, rate, ETA and spend so far."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            TextColumn("${task.fields[spend]:.4f}"),
            console=err_console,
        )
        self.tasks: dict[int, TaskID] = {}
        self.started = time.monotonic()
        self.initial: dict[int, int] = {}

    def __enter__(self) -> _ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.progress.stop()

    def update(self, runs: list[RunProgress]) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        for run in runs:
            if run.run_id not in self.tasks:
                self.initial[run.run_id] = run.done
                self.tasks[run.run_id] = self.progress.add_task(
                    escape(run.model), total=run.total, failed=0, rate="", spend=0.0
                )
            rate = (run.done - self.initial[run.run_id]) / elapsed
            self.progress.update(
                self.tasks[run.run_id],
                completed=run.done,
                failed=run.failed,
                rate=f"{rate:.1f} rows/s",
                spend=run.cost_usd + run.judge_cost_usd,
            )


@app.command("list")
def list_(
    eval_name: str | None = typer.Option(None, "--eval", help="Only this eval's groups."),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List run groups, newest first."""
    with open_store() as store:
        groups = list_groups(store, eval_name, limit)
    if as_json:
        print_json(groups)
        return
    print_table(
        ["id", "eval", "name", "status", "rows", "models", "rubric", "judge", "created"],
        [
            (
                g.id,
                g.eval,
                g.name,
                g.status,
                g.sample_size,
                ", ".join(r.model for r in g.runs),
                f"{g.rubric} v{g.rubric_version}",
                g.judge,
                g.created_at,
            )
            for g in groups
        ],
    )


@app.command("show")
def show(
    group_id: int = typer.Argument(..., metavar="GROUP"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The summary: per model, scores over scored rows, failures by kind, latency, cost, and
    the pass rate of each deterministic check. With a pairwise rubric: each candidate's win
    rate against the baseline with its 95% interval, wins/ties/losses and the position-flip
    rate instead of scores."""
    with open_store() as store:
        summary = group_summary(store, group_id)
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


def _print_summary(summary: GroupSummary) -> None:
    if any(r.pairwise is not None for r in summary.runs):
        _print_pairwise(summary)
        return
    console.print(
        f"[bold]Run group {summary.id}[/] — {summary.status} — {summary.sample_size} rows of "
        f"{escape(summary.dataset)}, rubric {escape(summary.rubric)} v{summary.rubric_version} "
        f"({summary.score_min}-{summary.score_max}), judge {escape(summary.judge)}"
        + (f", {summary.judge_samples} samples" if summary.judge_samples > 1 else "")
    )
    print_table(
        ["model", "role", "status", "mean", "median", "Δ vs base", "scored", "gen fail",
         "judge fail", "unparseable", "p50 ms", "p90 ms", "tokens", "cost $", "judge $"],
        [_summary_row(r) for r in summary.runs],
    )  # fmt: skip
    panels = [Panel(_histogram(r), title=escape(r.model), expand=False) for r in summary.runs]
    console.print(Columns(panels))
    _print_check_rates(summary.runs)


def _print_pairwise(summary: GroupSummary) -> None:
    """A pairwise group: win rates against the baseline (docs/pairwise.md), no scores."""
    console.print(
        f"[bold]Run group {summary.id}[/] — {summary.status} — {summary.sample_size} rows of "
        f"{escape(summary.dataset)}, pairwise rubric {escape(summary.rubric)} "
        f"v{summary.rubric_version}, judge {escape(summary.judge)}, both orders"
        + (f", {summary.judge_samples} samples each" if summary.judge_samples > 1 else "")
    )
    rows = []
    for r in summary.runs:
        s = r.pairwise
        if s is None:
            cells: tuple[Any, ...] = (
                "(baseline)",
                None,
                None,
                None,
                f"{r.total - r.pending - r.generation_failed}/{r.total} generated",
            )
        else:
            interval = f"[{s.ci_low:.2f}, {s.ci_high:.2f}]" if s.ci_low is not None else None
            flips = f"{s.flip_rate:.0%} ({s.flipped})" if s.flip_rate is not None else None
            cells = (
                _num(s.win_rate),
                interval,
                f"{s.wins}/{s.ties}/{s.losses}",
                flips,
                f"{s.rows}/{r.total}",
            )
        rows.append(
            (r.model, r.role, r.status, *cells, r.generation_failed, r.judge_failed,
             r.judge_unparseable, _num(r.latency_ms_p50, 0), _num(r.latency_ms_p90, 0),
             r.input_tokens + r.output_tokens, f"{r.cost_usd:.4f}", f"{r.judge_cost_usd:.4f}")
        )  # fmt: skip
    print_table(
        ["model", "role", "status", "win rate", "95% CI", "W/T/L", "flips", "rows", "gen fail",
         "judge fail", "unparseable", "p50 ms", "p90 ms", "tokens", "cost $", "judge $"],
        rows,
    )  # fmt: skip
    console.print(
        "win rate = (wins + ties/2) / rows with a verdict in both orders (Wilson interval); "
        "flips: rows whose two orders disagreed, counted as ties",
        style="dim",
    )


def _print_check_rates(runs: list[RunSummary]) -> None:
    """Per model, how many outputs passed each deterministic check of the rubric."""
    names = list(dict.fromkeys(c.name for r in runs for c in r.checks))
    if not names:
        return
    rows = []
    for run in runs:
        by_name = {c.name: c for c in run.checks}
        cells = []
        for name in names:
            stat = by_name.get(name)
            cells.append(
                f"{stat.passed}/{stat.total} ({stat.passed / stat.total:.0%})"
                if stat is not None and stat.total
                else None
            )
        rows.append((run.model, *cells))
    print_table(["model", *names], rows, title="Deterministic checks passed")


def _summary_row(r: RunSummary) -> tuple[Any, ...]:
    diff = (
        f"{r.mean_diff_vs_baseline:+.2f} (n={r.paired_rows})"
        if r.mean_diff_vs_baseline is not None
        else None
    )
    return (
        r.model, r.role, r.status, _num(r.mean_score), _num(r.median_score), diff,
        f"{r.scored}/{r.total}", r.generation_failed, r.judge_failed, r.judge_unparseable,
        _num(r.latency_ms_p50, 0), _num(r.latency_ms_p90, 0), r.input_tokens + r.output_tokens,
        f"{r.cost_usd:.4f}", f"{r.judge_cost_usd:.4f}",
    )  # fmt: skip


def _num(value: float | None, digits: int = 2) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def _histogram(run: RunSummary, width: int = 24) -> str:
    peak = max((b.count for b in run.distribution), default=0) or 1
    lines = []
    for bucket in run.distribution:
        label = f"{bucket.bucket_min:g}"
        bar = "█" * round(bucket.count / peak * width)
        lines.append(f"{label:>5} {bar} {bucket.count}")
    return "\n".join(lines)


@app.command("rows")
def rows(
    group_id: int = typer.Argument(..., metavar="GROUP"),
    model: str | None = typer.Option(None, "--model", help="Only this model's rows."),
    status: str | None = typer.Option(
        None,
        "--status",
        help="scored, generation_failed, judge_failed, judge_unparseable, pending, or failed.",
    ),
    below: float | None = typer.Option(None, "--below", help="Only scores below this."),
    regressions: bool = typer.Option(
        False, "--regressions", help="Only rows where a model scored below the baseline."
    ),
    sort: str = typer.Option("row", "--sort", help="row, score or diff."),
    limit: int = typer.Option(50, "--limit"),
    offset: int = typer.Option(0, "--offset"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The rows: one line per row and model, with score and difference from the baseline."""
    with open_store() as store:
        results = group_rows(
            store, group_id, model=model, status=status, below=below,
            regressions=regressions, sort=sort, limit=limit, offset=offset,
        )  # fmt: skip
    if as_json:
        print_json(results)
        return
    print_table(
        ["row", "model", "status", "score", "baseline", "Δ", "output"],
        [
            (
                r.row,
                r.model,
                r.status,
                _num(r.score, 1),
                _num(r.baseline_score, 1),
                None if r.diff is None else f"{r.diff:+.1f}",
                r.output_preview,
            )
            for r in results
        ],
    )


@app.command("row")
def row(
    group_id: int = typer.Argument(..., metavar="GROUP"),
    position: int = typer.Argument(..., metavar="ROW", help="The row number `run rows` shows."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One row: the original request, each model's output beside the baseline's, the
    deterministic checks, the judge's score and reasoning."""
    with open_store() as store:
        detail = row_detail(store, group_id, position)
    if as_json:
        print_json(detail)
        return
    conversation = "\n".join(
        f"[bold]{escape(str(m.get('role')))}[/]: {escape(format_message_body(m))}"
        for m in detail.messages
    )
    console.print(Panel(conversation, title=f"row {detail.row}: request", expand=True))
    if detail.tools:
        console.print(f"[dim]{len(detail.tools)} tool(s) offered[/]")
    panels = []
    for arm in detail.arms:
        body = (
            escape(format_message_body(arm.output))
            if arm.output
            else f"[red]{escape(arm.error or 'no output')}[/]"
        )
        verdicts = []
        for j in arm.judgments:
            head = f"score {j.score:g}" if j.score is not None else j.status
            if j.checks is not None and j.judge_score is not None:
                head += f" (judge {j.judge_score:g})"
            verdicts.append(f"[bold]{head}[/]: {escape(j.reasoning or j.error or '')}")
        checks = _check_lines(arm.judgments[0].checks) if arm.judgments else []
        score = f"{arm.score:.2f}" if arm.score is not None else arm.status
        text = body + "\n\n" + "".join(line + "\n" for line in checks)
        text += "\n".join(verdicts) or "[dim]not judged yet[/]"
        panels.append(Panel(text, title=f"{escape(arm.model)} ({arm.role}) — {score}"))
    console.print(Columns(panels, equal=True, expand=True))


def _check_lines(checks: list[dict[str, Any]] | None) -> list[str]:
    """One line per deterministic check: pass or fail, and why it failed."""
    lines = []
    for check in checks or []:
        if check["passed"]:
            lines.append(f"[green]PASS[/] {escape(check['name'])}")
        else:
            detail = f": {escape(check['detail'])}" if check.get("detail") else ""
            lines.append(f"[red]FAIL[/] {escape(check['name'])}{detail}")
    return lines


def _attach_baseline() -> None:
    from assay.cli.run_baseline import baseline

    app.command("baseline")(baseline)


_attach_baseline()
