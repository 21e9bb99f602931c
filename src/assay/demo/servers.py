"""ASGI apps served on loopback for the demo: in a background thread (the local model's
server, the proxy), or in the foreground until Ctrl-C (the web app)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from assay.errors import ValidationError

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0


def reserve_port(port: int) -> socket.socket:
    """A socket bound to ``HOST:port`` (0: any free port), for uvicorn to listen on later.

    Binding early is how the demo refuses a busy ``--port`` before minutes of work, not after.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise ValidationError(
            f"port {port} on {HOST} is not available ({exc.strerror or exc}): pass another "
            "--port, or --no-serve"
        ) from None
    return sock


def _config(app: Any, port: int, lifespan: str) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=HOST, port=port, lifespan=lifespan, log_level="warning", access_log=False
    )


class BackgroundServer:
    """``app`` served by uvicorn in a daemon thread on a free loopback port until ``stop``."""

    def __init__(self, app: Any, *, lifespan: str = "auto") -> None:
        self._sock = reserve_port(0)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self.server = uvicorn.Server(_config(app, self.port, lifespan))
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the demo's server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut down gracefully (the app's lifespan shutdown runs) and wait for the thread."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=START_TIMEOUT_S)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(app: Any, sock: socket.socket) -> None:
    """Serve ``app`` on the reserved socket in this thread until Ctrl-C (or SIGTERM)."""
    port = sock.getsockname()[1]
    try:
        uvicorn.Server(_config(app, port, "on")).run(sockets=[sock])
    finally:
        sock.close()
