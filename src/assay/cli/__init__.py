"""The ``assay`` command line: one module per command group, each a thin shell over services."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from assay.cli._output import err_console
from assay.errors import AssayError


class _AssayGroup(TyperGroup):
    """Turns every domain error into one red line on stderr and exit code 1, in one place."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except AssayError as exc:
            err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from exc


app = typer.Typer(
    cls=_AssayGroup,
    help=(
        "Assay: a self-hosted release gate for LLM applications.\n\n"
        "The database is a SQLite file under ASSAY_HOME (default ~/.assay); set "
        "ASSAY_DATABASE_URL=postgresql+psycopg://USER@HOST/DB to use Postgres instead."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from assay import __version__

        typer.echo(f"assay {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Assay: a self-hosted release gate for LLM applications."""


def _register() -> None:
    from assay.cli import (
        alias,
        dataset,
        dataset_traffic,
        demo,
        evals,
        gate,
        labels,
        model,
        promote,
        proxy,
        rubric,
        rubric_calibrate,
        run,
        serve,
        token,
        traffic,
    )

    dataset.app.command("create")(dataset_traffic.create)
    dataset.app.command("overlap")(dataset_traffic.overlap)
    app.add_typer(dataset.app, name="dataset")
    rubric.app.command("calibrate")(rubric_calibrate.calibrate_command)
    app.add_typer(rubric.app, name="rubric")
    app.add_typer(labels.app, name="labels")
    app.add_typer(model.app, name="model")
    app.add_typer(evals.app, name="eval")
    app.add_typer(run.app, name="run")
    app.command("gate")(gate.gate)
    app.add_typer(alias.app, name="alias")
    app.command("promote")(promote.promote)
    app.command("proxy")(proxy.proxy)
    app.command("serve")(serve.serve)
    app.add_typer(token.app, name="token")
    app.add_typer(traffic.app, name="traffic")
    app.command("demo")(demo.demo)


_register()


def main() -> None:
    app()
