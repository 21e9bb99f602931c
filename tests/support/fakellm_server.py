"""Serving the fake LLM: from a background thread (tests) or as a process (benchmarks).

PYTHONPATH=tests python -m support.fakellm_server --port 0 --port-file /tmp/port
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import ipaddress
import socket
import threading
import time
from pathlib import Path

import orjson
import uvicorn

from support.fakellm import FakeLLM

_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def _loopback_socket(host: str, port: int) -> socket.socket:
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"fakellm binds loopback only, not {host}")
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it Nagle + delayed ACK add ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _config(app: FakeLLM, loop: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop=loop,
        http="httptools",
        lifespan="on",
        log_level="error",
        access_log=False,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=60,
    )


class ServerThread:
    """The fake server on a free loopback port, served from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = FakeLLM()
        self._sock = _loopback_socket(host, port)
        self.port = self._sock.getsockname()[1]
        self.root_url = f"http://{host}:{self.port}"
        self._server = uvicorn.Server(_config(self.app, _LOOP))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True, name="fakellm"
        )

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fakellm did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self.app.release_hung()
        self._server.should_exit = True
        self._thread.join(10)
        with contextlib.suppress(OSError):
            self._sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake LLM on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the chosen port here once serving")
    parser.add_argument("--config", default="{}", help='JSON for "*", e.g. {"latency_ms": 5}')
    args = parser.parse_args(argv)
    app = FakeLLM()
    app.configure("*", orjson.loads(args.config))
    sock = _loopback_socket(args.host, args.port)
    if args.port_file:
        # The socket already listens: clients that connect before uvicorn runs just wait.
        args.port_file.write_text(str(sock.getsockname()[1]))
    server = uvicorn.Server(_config(app, _LOOP))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
