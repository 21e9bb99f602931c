"""``assay proxy``: serve the recording proxy (the lead registers the command)."""

from __future__ import annotations

import typer

from assay.capture import (
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_UPSTREAMS,
    create_proxy,
)
from assay.cli._output import info
from assay.cli.serve import is_loopback
from assay.errors import ValidationError


def proxy(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8788, "--port", help="Port to listen on."),
    upstream: str | None = typer.Option(
        None,
        "--upstream",
        help=(
            "Base URL every call is forwarded to (default: "
            f"{DEFAULT_UPSTREAMS['openai']} for OpenAI paths, "
            f"{DEFAULT_UPSTREAMS['anthropic']} for /v1/messages). "
            "A request's x-assay-upstream header overrides it (on a non-loopback --host "
            "only with a valid x-assay-token)."
        ),
    ),
    max_request_kb: int = typer.Option(
        DEFAULT_MAX_REQUEST_BYTES // 1024,
        "--max-request-kb",
        help="Request bodies above this size are stored truncated (and flagged).",
    ),
    max_response_kb: int = typer.Option(
        DEFAULT_MAX_RESPONSE_BYTES // 1024,
        "--max-response-kb",
        help=(
            "Response bodies above this size (streams: the reassembled answer) are stored "
            "truncated and flagged; tokens and errors are read from the whole answer first."
        ),
    ),
) -> None:
    """Forward LLM API calls to the provider and record each one as an inference.

    Point the application's SDK at http://HOST:PORT/v1. Tag calls with the headers
    x-assay-environment, x-assay-task and x-assay-metadata-<key>; they are not forwarded.
    API keys are forwarded, never stored.

    The header x-assay-upstream sends one call to another base URL. On a loopback --host
    (the default) any caller may use it. On any other address it would let whoever reaches
    the port make the proxy call internal services, so there it is honoured only when the
    call also carries x-assay-token: <an active Assay API token> (`assay token create`);
    otherwise the proxy answers 403. x-assay-token is never forwarded nor stored.

    Deployment aliases: a call whose model is an alias (`assay alias set prod-chat MODEL`,
    `assay promote`) goes to the model the alias points at: its base URL, its model id, and
    its API key when the model's --api-key-env variable is set here. The record shows that
    model id with metadata alias=<name>. Alias changes take effect within a few seconds.
    """
    import uvicorn

    if upstream is not None and not upstream.startswith(("http://", "https://")):
        raise ValidationError(f"--upstream {upstream!r} is not an http:// or https:// URL")
    if max_request_kb < 1:
        raise ValidationError(f"--max-request-kb must be at least 1, got {max_request_kb}")
    if max_response_kb < 1:
        raise ValidationError(f"--max-response-kb must be at least 1, got {max_response_kb}")
    app = create_proxy(
        upstream,
        max_request_bytes=max_request_kb * 1024,
        max_response_bytes=max_response_kb * 1024,
        guard_upstream=not is_loopback(host),
    )
    info(f"assay proxy on http://{host}:{port}/v1 -> {upstream or 'provider defaults'}")
    uvicorn.run(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=60,
    )
