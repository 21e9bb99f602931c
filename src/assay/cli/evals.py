"""``assay eval ...``"""

from __future__ import annotations

import typer

from assay.cli._output import console, print_json, print_table
from assay.engine.definitions import EvalInfo, create_eval, get_eval, list_evals
from assay.store import open_store

app = typer.Typer(
    help="Define evals: an eval dataset, a pinned rubric version, a judge, the models to compare.",
    no_args_is_help=True,
)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="A name for the eval definition."),
    dataset: str = typer.Option(..., "--dataset", help="An eval dataset."),
    rubric: str = typer.Option(..., "--rubric", help="The rubric to judge with."),
    rubric_version: int | None = typer.Option(
        None, "--rubric-version", help="Pin this version (default: the latest, pinned now)."
    ),
    judge: str = typer.Option(..., "--judge", help="The model that judges every output."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="The model in production today. Omit with --with-captured."
    ),
    candidate: list[str] = typer.Option(..., "--candidate", help="A model to compare (repeat)."),
    sample_size: int | None = typer.Option(
        None, "--sample-size", help="Rows per run group (default: the whole dataset)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the row sample."),
    judge_samples: int = typer.Option(
        1, "--judge-samples", help="Judgments per output (≥2 measures judge noise)."
    ),
    with_captured: bool = typer.Option(
        False,
        "--with-captured",
        help="Also judge the dataset's captured (reference) outputs as an arm; "
        "they are the baseline when no --baseline model is given.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the definition as JSON."),
) -> None:
    """Create an eval definition; everything is validated now, not at run time."""
    with open_store() as store:
        info = create_eval(
            store,
            name,
            dataset=dataset,
            rubric=rubric,
            rubric_version_number=rubric_version,
            judge=judge,
            baseline=baseline,
            candidates=candidate,
            sample_size=sample_size,
            seed=seed,
            judge_samples=judge_samples,
            with_captured=with_captured,
        )
    if as_json:
        print_json(info)
        return
    console.print(f"Created eval [bold]{info.name}[/]. Run it with: assay run start {info.name}")
    _print_eval(info)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List eval definitions."""
    with open_store() as store:
        evals = list_evals(store)
    if as_json:
        print_json(evals)
        return
    print_table(
        ["name", "dataset", "rubric", "judge", "baseline", "candidates", "sample"],
        [
            (
                e.name,
                e.dataset,
                f"{e.rubric} v{e.rubric_version}",
                e.judge,
                e.baseline,
                ", ".join(e.candidates),
                e.sample_size,
            )
            for e in evals
        ],
    )


@app.command("show")
def show(
    name: str = typer.Argument(..., help="The eval definition."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one eval definition."""
    with open_store() as store:
        info = get_eval(store, name)
    if as_json:
        print_json(info)
        return
    _print_eval(info)


def _print_eval(info: EvalInfo) -> None:
    print_table(
        ["field", "value"],
        [
            ("name", info.name),
            ("dataset", f"{info.dataset} ({info.dataset_rows} rows)"),
            ("rubric", f"{info.rubric} v{info.rubric_version}"),
            ("judge", info.judge),
            ("baseline", info.baseline),
            ("candidates", ", ".join(info.candidates)),
            ("captured outputs arm", "yes" if info.with_captured else "no"),
            ("sample size", info.sample_size),
            ("seed", info.seed),
            ("judge samples", info.judge_samples),
        ],
    )
