"""``assay token ...``: the API tokens that ``assay serve`` requires once one exists."""

from __future__ import annotations

import typer

from assay.auth import TokenInfo, create_token, list_tokens, revoke_token
from assay.cli._output import console, info, print_json, print_table
from assay.store import open_store

app = typer.Typer(
    help="API tokens for the web app and its REST API: create (shown once), list, revoke.",
    no_args_is_help=True,
)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="A name for the token: who or what uses it (ci, alice)."),
    as_json: bool = typer.Option(
        False, "--json", help='Print {"name", "prefix", "token", ...} as JSON.'
    ),
) -> None:
    """Create a token and print it once: only its hash is stored, it cannot be shown again.

    From the first active token on, every page and API route of `assay serve` requires one:
    `Authorization: Bearer TOKEN` for the API, the sign-in page for a browser.
    """
    with open_store() as store:
        created = create_token(store, name)
    if as_json:
        print_json({**created.info.model_dump(mode="json"), "token": created.token})
        return
    # The token alone on stdout (a script can capture it); the explanation on stderr.
    console.file.write(created.token + "\n")
    info(
        f"Created token [bold]{created.info.name}[/] (starts {created.info.prefix}). Copy it "
        "now: only its hash is stored and it is never shown again. Send it as "
        "`Authorization: Bearer TOKEN`, or sign in with it at /login."
    )


@app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List tokens (name, first characters, when created, last used, revoked); never a secret."""
    with open_store() as store:
        tokens = list_tokens(store)
    if as_json:
        print_json(tokens)
        return
    if not tokens:
        info("No tokens: `assay serve` is open on loopback. Create one: `assay token create NAME`.")
        return
    print_table(("name", "starts", "created", "last used", "status"), (_row(t) for t in tokens))


@app.command("revoke")
def revoke(name: str = typer.Argument(..., help="The token's name.")) -> None:
    """Revoke a token: requests carrying it are refused from now on, sessions included."""
    with open_store() as store:
        revoked = revoke_token(store, name)
        remaining = [t for t in list_tokens(store) if t.active]
    info(f"Revoked token [bold]{revoked.name}[/] ({revoked.prefix}…).")
    if not remaining:
        info(
            "No active token is left: `assay serve` is open again on loopback, and refuses "
            "any other address until a token exists."
        )


def _row(token: TokenInfo) -> tuple[object, ...]:
    status = "active" if token.active else f"revoked {token.revoked_at:%Y-%m-%d %H:%M}"
    return (token.name, f"{token.prefix}…", token.created_at, token.last_used_at, status)
