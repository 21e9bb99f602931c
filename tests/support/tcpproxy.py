"""A TCP forwarder that can cut every connection through it: a database restart, as a client
sees one, without touching the database server that other tests share.

``TcpProxy(5432)`` listens on a free loopback port and forwards each connection to
``127.0.0.1:5432``; ``drop(seconds)`` closes every live connection and refuses new ones
(accepted, then closed at once) for that long, then forwards again; ``cut()`` does the same
until ``restore()``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._refuse_until = 0.0
        self._closed = False
        self.connections = 0  # forwarded connections opened so far
        self.dropped = 0  # live connections cut by ``drop``
        self.refused = 0  # connections refused during an outage
        threading.Thread(target=self._accept, name="tcpproxy-accept", daemon=True).start()

    def drop(self, refuse_seconds: float = 0.0) -> int:
        """Close every live connection; refuse new ones for ``refuse_seconds``. Returns how many
        connections were cut."""
        with self._lock:
            self._refuse_until = time.monotonic() + refuse_seconds
            live, self._live = self._live, set()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        cut = len(live) // 2  # each connection is a client socket and an upstream socket
        self.dropped += cut
        return cut

    def cut(self) -> None:
        """A host that is down until ``restore()``: live connections closed, new ones refused."""
        self.drop(refuse_seconds=float("inf"))

    def restore(self) -> None:
        with self._lock:
            self._refuse_until = 0.0

    def refusing(self) -> bool:
        return time.monotonic() < self._refuse_until

    def close(self) -> None:
        self._closed = True
        self.drop()
        with contextlib.suppress(OSError):
            self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live.update((client, upstream))
            self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._live.discard(src)
                self._live.discard(dst)
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
