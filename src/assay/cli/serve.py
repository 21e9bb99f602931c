"""``assay serve``: the web app (REST API + pages) on loopback."""

from __future__ import annotations

import ipaddress

import typer

from assay.cli._output import console
from assay.errors import ValidationError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback only)."),
    port: int = typer.Option(8787, "--port", help="Port to listen on."),
) -> None:
    """Start the web app: pages at http://HOST:PORT/ and the REST API under /api/v1 (OpenAPI
    docs at /api/v1/docs). Uses the same database as every other command."""
    if not is_loopback(host):
        raise ValidationError(
            f"refusing to serve on {host}: the web app has no authentication yet, so it only "
            "binds to a loopback address (127.0.0.1, ::1, localhost). To reach it from another "
            "machine, use an SSH tunnel: ssh -L 8787:127.0.0.1:8787 HOST"
        )
    if not 0 < port < 65536:
        raise ValidationError(f"--port must be between 1 and 65535, not {port}")
    import uvicorn

    from assay.web import create_app

    app = create_app()
    shown = f"[{host}]" if ":" in host else host
    console.print(f"Assay is serving at [bold]http://{shown}:{port}/[/] (Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
