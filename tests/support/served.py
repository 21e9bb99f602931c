"""An ASGI app served for real by uvicorn on a free loopback port, from a background thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class Served:
    """``Served(app)`` starts serving at ``.url``; ``stop()`` ends it. ``config`` overrides
    uvicorn's settings (quiet by default)."""

    def __init__(self, app: Any, **config: Any) -> None:
        # IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted sockets (no Nagle delays).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        settings = {"lifespan": "on", "log_level": "error", "access_log": False, **config}
        self.server = uvicorn.Server(uvicorn.Config(app, **settings))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


async def http_request_body(scope: dict[str, Any], receive: Any, send: Any) -> bytes | None:
    """For a hand-written test ASGI app: answer uvicorn's lifespan messages (returns None, the
    app has nothing more to do) or read an HTTP request's whole body."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return None
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body
