"""``assay serve``: the web app (REST API + pages), on loopback unless tokens protect it."""

from __future__ import annotations

import ipaddress

import typer

from assay.cli._output import console, warn
from assay.errors import ValidationError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to bind. Loopback by default; any other address needs an API token "
        "(`assay token create NAME`).",
    ),
    port: int = typer.Option(8787, "--port", help="Port to listen on."),
) -> None:
    """Start the web app: pages at http://HOST:PORT/ and the REST API under /api/v1 (OpenAPI
    docs at /api/v1/docs). Uses the same database as every other command.

    Once an API token exists, every page and API route requires one. On an address other
    than loopback the server starts only if a token exists, and then requires one always.
    """
    if not 0 < port < 65536:
        raise ValidationError(f"--port must be between 1 and 65535, not {port}")
    import uvicorn

    from assay.auth import auth_configured
    from assay.store import open_store
    from assay.web import create_app

    loopback = is_loopback(host)
    if not loopback:
        with open_store() as store:
            protected = auth_configured(store)
        if not protected:
            raise ValidationError(
                f"refusing to serve on {host}: no API token exists, so anyone who can reach "
                "this address could read and change everything. Create one first with "
                "`assay token create NAME` (clients then send Authorization: Bearer TOKEN, "
                "browsers sign in at /login), or keep the default loopback address and reach "
                "it from another machine through an SSH tunnel: "
                "ssh -L 8787:127.0.0.1:8787 HOST"
            )
    # Off loopback, a token is required even if every token is later revoked: the server
    # then refuses everyone instead of opening up.
    app = create_app(require_auth=not loopback)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"Assay is serving at [bold]http://{shown}:{port}/[/] (Ctrl-C stops it)")
    if not loopback:
        warn(
            "this is plain HTTP: put a TLS-terminating reverse proxy in front of it (tokens "
            "and session cookies must not cross a network in clear text)."
        )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
