"""``assay model ...``"""

import typer

app = typer.Typer(
    help="Register the models Assay calls: candidates, baselines and judges.", no_args_is_help=True
)
