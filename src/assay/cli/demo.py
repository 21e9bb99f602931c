"""``assay demo``: the whole workflow, end to end, on a fresh demo home (see docs/demo.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from assay.cli._output import console
from assay.demo import DEFAULT_HOME


def demo(
    home: Path = typer.Option(
        DEFAULT_HOME,
        "--home",
        help="The demo's own ASSAY_HOME, wiped and recreated on every run. An existing folder "
        "not made by the demo is refused, never deleted.",
    ),
    rows: int = typer.Option(
        30, "--rows", help="Eval dataset rows, 2-200 (the default gate policy decides from 30)."
    ),
    live: int = typer.Option(5, "--live", help="Requests sent live through the proxy, 1-50."),
    port: int = typer.Option(8787, "--port", help="Port of the web app at the end."),
    no_serve: bool = typer.Option(
        False, "--no-serve", help="Stop after the verdict instead of serving the web app."
    ),
) -> None:
    """Run Assay end to end on shipped production-style traffic (BFCL function-calling
    questions) with the bundled local model: import, live capture through the proxy, an eval
    dataset, a rubric with tool-call checks and a judge, a run group, its summary and the
    gate's verdict; then serve the web app on the result until Ctrl-C.

    The bundled model (Gemma 3 270M) is a small base model: it proves the pipeline runs; its
    answers and judgments are not meaningful."""
    from assay.demo import DemoOptions, run_demo

    run_demo(DemoOptions(home=home, rows=rows, live=live, port=port, serve=not no_serve), console)
