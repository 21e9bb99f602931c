"""``assay dataset ...``"""

import typer

app = typer.Typer(
    help="Import, browse and export eval and training datasets.", no_args_is_help=True
)
