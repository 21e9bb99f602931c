"""``assay rubric ...``"""

import typer

app = typer.Typer(help="Create, version and render rubrics.", no_args_is_help=True)
