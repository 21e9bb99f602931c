"""``assay rubric ...``: create, version, inspect and render rubrics."""

from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape

from assay.cli._output import info, print_json, print_table
from assay.cli.rubric_draft import draft as _draft
from assay.errors import ValidationError
from assay.rubrics import (
    create_rubric,
    edit_rubric,
    get_rubric,
    get_rubric_version,
    get_template,
    list_rubrics,
    list_templates,
    list_versions,
    read_checks_file,
    read_text_file,
    render_for_row,
)
from assay.rubrics.checkfile import spec_from_version
from assay.rubrics.checks import ChecksSpec, describe_check
from assay.rubrics.service import MAX_RESPONSE_CHARS
from assay.store import open_store

app = typer.Typer(help="Create, version and render rubrics.", no_args_is_help=True)
app.command("draft")(_draft)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (stable field names).")]
ChecksOption = Annotated[
    str | None,
    typer.Option(
        "--checks",
        help="Deterministic checks and how they combine with the judge, from a .yaml or .json "
        "file (see docs/checks.md).",
    ),
]


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command("templates")
def templates(
    name: Annotated[
        str | None, typer.Argument(help="Print this template's text instead of the list.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the built-in templates, or print one."""
    if name is not None:
        template = get_template(name)
        if as_json:
            print_json(template)
        else:
            typer.echo(template.text, nl=not template.text.endswith("\n"))
        return
    found = list_templates()
    if as_json:
        print_json([t.model_dump(exclude={"text"}) for t in found])
        return
    print_table(
        ["template", "kind", "description"], [(t.name, t.kind, t.description) for t in found]
    )
    info("Start a rubric from one: assay rubric create NAME --template TEMPLATE")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Name of the new rubric.")],
    template: Annotated[
        str | None,
        typer.Option("--template", "-t", help="Start from a built-in template (see `templates`)."),
    ] = None,
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="Read the Jinja template from this file.")
    ] = None,
    score_min: Annotated[int, typer.Option("--score-min", help="Lowest score (>= 0).")] = 1,
    score_max: Annotated[int, typer.Option("--score-max", help="Highest score (<= 100).")] = 10,
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="One line on what it judges.")
    ] = None,
    checks: ChecksOption = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="pointwise (the judge scores each output) or pairwise (the judge prefers one "
            "of two outputs, judged in both orders; see docs/pairwise.md). A built-in template "
            "has its own kind; --kind pairwise alone starts from the built-in 'pairwise' "
            "template.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a rubric (version 1) from a built-in template or a template file."""
    if kind == "pairwise" and template is None and file is None:
        template = "pairwise"
    if (template is None) == (file is None):
        raise ValidationError("give exactly one of --template NAME or --file PATH")
    text = read_text_file(file) if file is not None else None
    spec = read_checks_file(checks) if checks is not None else None
    with open_store() as store:
        version = create_rubric(
            store,
            name,
            template=template,
            text=text,
            origin=f"file:{file}" if file is not None else None,
            score_min=score_min,
            score_max=score_max,
            description=description,
            checks=spec,
            kind=kind,
        )
    if as_json:
        print_json(version)
    elif version.kind == "pairwise":
        info(
            f"Created pairwise rubric [bold]{name}[/] version 1 (from "
            f"{escape(version.origin or '-')}): each candidate is compared with the baseline, "
            "in both orders"
        )
    else:
        with_checks = f", {len(version.checks)} check(s)" if version.checks else ""
        info(
            f"Created rubric [bold]{name}[/] version 1 (scores {version.score_min}-"
            f"{version.score_max}{with_checks}, from {escape(version.origin or '-')}). Try it: "
            f"assay rubric render {name} "
            "--dataset DATASET"
        )


@app.command("edit")
def edit(
    name: Annotated[str, typer.Argument(help="The rubric to edit.")],
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="New Jinja template, from this file.")
    ] = None,
    score_min: Annotated[int | None, typer.Option("--score-min", help="New lowest score.")] = None,
    score_max: Annotated[int | None, typer.Option("--score-max", help="New highest score.")] = None,
    checks: ChecksOption = None,
    no_checks: Annotated[
        bool, typer.Option("--no-checks", help="The new version has no checks.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a new version; earlier versions stay exactly as they were. The checks carry over
    unless --checks or --no-checks says otherwise."""
    if checks is not None and no_checks:
        raise ValidationError("give --checks FILE or --no-checks, not both")
    text = read_text_file(file) if file is not None else None
    spec = read_checks_file(checks) if checks is not None else None
    with open_store() as store:
        version = edit_rubric(
            store,
            name,
            text=text,
            score_min=score_min,
            score_max=score_max,
            origin=f"file:{file}" if file is not None else None,
            checks=spec,
            remove_checks=no_checks,
        )
    if as_json:
        print_json(version)
    else:
        info(
            f"Rubric [bold]{name}[/] is now at version {version.version} "
            f"({escape(version.note or '')})."
        )


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The rubric to show.")],
    version: Annotated[
        int | None, typer.Option("--version", help="Version number (default: latest).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show one version of a rubric: its template, score range, origin and checks."""
    with open_store() as store:
        rubric = get_rubric(store, name)
        found = get_rubric_version(store, name, version)
    if as_json:
        print_json(found)
        return
    fields = [
        ("Rubric", rubric.name),
        ("Description", rubric.description or "-"),
        ("Version", f"{found.version} of {rubric.latest_version}"),
        (
            "Range",
            f"{found.score_min}-{found.score_max}"
            if found.kind != "pairwise"
            else "none: the judge prefers A, B or tie",
        ),
        ("Kind", found.kind),
        ("Origin", found.origin or "-"),
        ("Changes", found.note or "-"),
        ("Created", _when(found.created_at)),
    ]
    spec = spec_from_version(found.checks, found.combine)
    fields.insert(-2, ("Checks", _combine_line(spec)))
    for label, value in fields:
        typer.echo(f"{label + ':':<13}{value}")
        if label == "Checks" and spec is not None:
            for check in spec.checks:
                typer.echo(f"  - {describe_check(check)}")
    typer.echo("")
    typer.echo(found.template, nl=not found.template.endswith("\n"))
    _show_calibrations(name, found.version)


def _show_calibrations(name: str, version: int) -> None:
    """The version's calibrations against human labels (`assay rubric calibrate`)."""
    from assay.cli.rubric_calibrate import calibration_rows
    from assay.rubrics.calibrate import list_calibrations

    with open_store() as store:
        found = list_calibrations(store, name, version)
    typer.echo("")
    if not found:
        typer.echo("Calibrations: none (assay rubric calibrate NAME --labels L --judge J)")
        return
    print_table(*calibration_rows(found), title="Calibrations against human labels")


def _combine_line(spec: ChecksSpec | None) -> str:
    if spec is None:
        return "none (the judge alone scores)"
    return f"{len(spec.checks)}; {spec.describe()}"


@app.command("versions")
def versions(
    name: Annotated[str, typer.Argument(help="The rubric whose versions to list.")],
    as_json: JsonOption = False,
) -> None:
    """List every version of a rubric, oldest first."""
    with open_store() as store:
        found = list_versions(store, name)
    if as_json:
        print_json(found)
        return
    rows = [
        (v.version, f"{v.score_min}-{v.score_max}", v.origin, v.note, v.created_at) for v in found
    ]
    print_table(["version", "range", "origin", "changes", "created"], rows, title=name)


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List rubrics with their latest version."""
    with open_store() as store:
        found = list_rubrics(store)
    if as_json:
        print_json(found)
        return
    if not found:
        info("No rubrics yet. Start from a template: assay rubric templates")
        return
    rows = [
        (r.name, r.latest_version, f"{r.score_min}-{r.score_max}", r.description, r.created_at)
        for r in found
    ]
    print_table(["name", "latest", "range", "description", "created"], rows)


@app.command("render")
def render(
    name: Annotated[str, typer.Argument(help="The rubric to render.")],
    dataset: Annotated[str, typer.Option("--dataset", "-D", help="Dataset holding the row.")],
    row: Annotated[int, typer.Option("--row", "-r", help="Row position (0-based).")] = 0,
    version: Annotated[
        int | None, typer.Option("--version", help="Rubric version (default: latest).")
    ] = None,
    response: Annotated[
        str | None, typer.Option("--response", help="Response under test, as text.")
    ] = None,
    response_file: Annotated[
        str | None, typer.Option("--response-file", help="Response under test, from a file.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print the exact judge prompt (system and user) for one dataset row.

    Without --response or --response-file, the row's reference response is the response under test.
    """
    if response is not None and response_file is not None:
        raise ValidationError("give at most one of --response and --response-file")
    source = "reference"
    if response_file is not None:
        source = "file"
        response = read_text_file(
            response_file, "response file", allow_empty=True, max_bytes=MAX_RESPONSE_CHARS * 4
        )
    elif response is not None:
        source = "text"
    with open_store() as store:
        pinned = get_rubric_version(store, name, version)
        prompt = render_for_row(store, name, dataset, row, pinned.version, response)
    if as_json:
        print_json(
            {
                "rubric": name,
                "version": pinned.version,
                "dataset": dataset,
                "row": row,
                "response_source": source,
                "system": prompt.system,
                "user": prompt.user,
            }
        )
        return
    origin = {
        "reference": "the row's reference response (the default; pass --response TEXT or "
        "--response-file FILE to judge another)",
        "text": "the text given with --response",
        "file": f"the contents of {response_file}",
    }[source]
    typer.echo(f"# Judge prompt: rubric {name} v{pinned.version}, dataset {dataset} row {row}")
    typer.echo(f"# Response under test: {origin}")
    typer.echo("\n===== system =====")
    typer.echo(prompt.system)
    typer.echo("\n===== user =====")
    typer.echo(prompt.user)


@app.command("test")
def test(
    name: Annotated[str, typer.Argument(help="The rubric to try.")],
    dataset: Annotated[str, typer.Option("--dataset", "-D", help="Dataset holding the rows.")],
    judge: Annotated[str, typer.Option("--judge", help="The judge model.")],
    model: Annotated[
        str | None, typer.Option("--model", help="Generate the response with this model.")
    ] = None,
    reference: Annotated[
        bool, typer.Option("--reference", help="Judge the row's reference response instead.")
    ] = False,
    row: Annotated[
        list[int] | None, typer.Option("--row", "-r", help="Row position (repeatable).")
    ] = None,
    rows: Annotated[
        int | None, typer.Option("--rows", help="The first N rows instead (at most 20).")
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Rubric version (default: latest).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Quick test: generate (or take the reference), judge, and show the exact judge prompt,
    the output, the score and the reasoning, with warnings when the rubric looks unreliable."""
    import asyncio

    from assay.engine.quicktest import quick_test

    if row and rows is not None:
        raise ValidationError("give --row or --rows, not both")
    if model is not None and reference:
        raise ValidationError("give --model or --reference, not both")
    positions = row or (list(range(rows)) if rows is not None else [0])
    with open_store() as store:
        report = asyncio.run(
            quick_test(
                store,
                name,
                dataset,
                judge=judge,
                model=model,
                positions=positions,
                version=version,
                use_reference=reference,
            )
        )
    if as_json:
        print_json(report)
        return
    typer.echo(
        f"# Quick test: rubric {name} v{report.rubric_version} "
        f"({report.score_min}-{report.score_max}), judge {report.judge}"
    )
    if report.combine:
        typer.echo(f"# Checks: {report.combine}")
    for result in report.rows:
        typer.echo(f"\n===== row {result.row} ({result.output_source}) =====")
        if result.prompt is not None:
            typer.echo("--- judge prompt: system ---")
            typer.echo(result.prompt.system)
            typer.echo("--- judge prompt: user ---")
            typer.echo(result.prompt.user)
        elif result.checks is not None and not result.judge_called:
            typer.echo("--- judge not called: the checks decided the score")
        for check in result.checks or []:
            verdict = "PASS" if check.passed else "FAIL"
            why = f": {check.detail}" if check.detail and not check.passed else ""
            typer.echo(f"--- check {verdict} {check.name}{why}")
        score = f"{result.score:g}" if result.score is not None else result.status
        if result.checks is not None and result.judge_score is not None:
            score += f" (judge {result.judge_score:g})"
        typer.echo(f"--- score: {score}")
        if result.reasoning:
            typer.echo(f"--- reasoning: {result.reasoning}")
        if result.error:
            typer.echo(f"--- error: {result.error}")
        for warning in result.warnings:
            info(f"[yellow]Warning (row {result.row}):[/] {escape(warning)}")
    for warning in report.warnings:
        info(f"[yellow]Warning:[/] {escape(warning)}")
