"""``assay promote GROUP``: point a deployment alias at a candidate the release gate passed."""

from __future__ import annotations

import typer

from assay.cli.alias import report_change
from assay.deploy import promote as promote_candidate
from assay.store import open_store


def promote(
    group_id: int = typer.Argument(
        ..., metavar="GROUP", help="The run group whose stored gate verdict is the evidence."
    ),
    candidate: str = typer.Option(
        ..., "--candidate", help="The candidate model (as registered) to promote."
    ),
    alias: str = typer.Option(
        ..., "--alias", help="The alias to point at it (create it first with `assay alias set`)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Promote despite a FAIL or INCONCLUSIVE verdict (needs --reason)."
    ),
    reason: str | None = typer.Option(
        None, "--reason", help="Why (required with --force; recorded in the alias history)."
    ),
    actor: str | None = typer.Option(
        None, "--actor", help="Who promotes (default: $ASSAY_ACTOR, else your user name)."
    ),
) -> None:
    """Point ALIAS at CANDIDATE if the latest verdict `assay gate GROUP` stored for it is PASS.

    FAIL and INCONCLUSIVE are refused (with the verdict's reasons) unless --force --reason is
    given; the override is recorded as forced. A group never gated is refused: run
    `assay gate GROUP` first. The change is recorded with who, when, the group, the verdict
    and the previous target (`assay alias history ALIAS`); `assay alias rollback ALIAS` undoes
    it. The proxy routes the alias to the new model within a few seconds."""
    with open_store() as store:
        change = promote_candidate(
            store, group_id, candidate, alias, force=force, reason=reason, actor=actor
        )
    report_change(change, "promoted")
