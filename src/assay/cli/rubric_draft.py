"""``assay rubric draft``: a model reads a sample of a dataset and drafts a rubric to review."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from assay.cli._output import err_console, info, print_json
from assay.store import open_store

if TYPE_CHECKING:  # the service imports the provider SDKs: only when the command runs
    from assay.rubrics.draft import DraftResult


def draft(
    name: Annotated[str, typer.Argument(help="Name of the new rubric (must not exist yet).")],
    dataset: Annotated[
        str, typer.Option("--dataset", "-D", help="Dataset whose rows the model reads.")
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Registered model that writes the draft.")
    ],
    rows: Annotated[
        int, typer.Option("--rows", help="How many rows to show it (1-50), sampled with --seed.")
    ] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the row sample.")] = 0,
    score_min: Annotated[int, typer.Option("--score-min", help="Lowest score (>= 0).")] = 1,
    score_max: Annotated[int, typer.Option("--score-max", help="Highest score (<= 100).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (stable field names).")] = (
        False
    ),
) -> None:
    """Draft a rubric from data: MODEL reads a seeded sample of DATASET's conversations and
    reference responses and proposes the task's outcome, what each score level means, the
    failure modes it sees and what to check. The result is saved as version 1 of a new rubric
    NAME. Nothing is saved if the model's answer is not a valid draft.

    It is a draft for you to review, not a finished rubric:
    - read it: assay rubric show NAME
    - try it on a few rows: assay rubric test NAME --dataset DATASET --judge JUDGE --reference
    - save your corrections as version 2: assay rubric edit NAME --file FILE

    Long rows are cut (head and tail kept) so the prompt stays bounded; the command says what.
    """
    from assay.rubrics.draft import DraftPrompt, draft_rubric

    with open_store() as store, err_console.status(f"Preparing rows of {dataset}...") as status:

        def sending(prompt: DraftPrompt) -> None:
            status.update(
                f"Waiting for {escape(model)} to draft a rubric from {len(prompt.rows)} rows..."
            )

        result = asyncio.run(
            draft_rubric(
                store,
                name,
                dataset=dataset,
                model=model,
                rows=rows,
                seed=seed,
                score_min=score_min,
                score_max=score_max,
                on_prompt=sending,
            )
        )
    if as_json:
        print_json(result)
        return
    _print(result)


def _print(result: DraftResult) -> None:
    version = result.version
    typer.echo(f"# Draft rubric {version.rubric} v1 ({version.score_min}-{version.score_max})")
    typer.echo(f"# {version.origin}")
    typer.echo(version.template, nl=not version.template.endswith("\n"))
    if result.draft.failure_modes:
        typer.echo("\n# Failure modes the model saw")
        for mode in result.draft.failure_modes:
            typer.echo(f"- {mode}")
    for cut in result.truncated:
        info(f"[yellow]Cut to fit:[/] {escape(cut)}")
    name = escape(version.rubric)
    info(
        f"Saved rubric [bold]{name}[/] version 1 from {len(result.rows)} rows of "
        f"{escape(result.dataset)}. It is a draft: review it before you rely on it.\n"
        f"  assay rubric show {name}\n"
        f"  assay rubric test {name} --dataset {escape(result.dataset)} --judge JUDGE "
        "--reference --rows 5\n"
        f"  assay rubric edit {name} --file FILE"
    )
