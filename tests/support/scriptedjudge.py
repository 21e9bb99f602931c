"""An OpenAI-compatible chat server over real HTTP whose every answer comes from a Python
function of (model id, last user message): the base of the fake judges in these tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[str, str], str]


class ScriptedJudgeServer:
    """Serves ``/v1/chat/completions`` from ``answer(model, user)``; counts calls per model and
    keeps every prompt, so tests can check what was paid for and what the judge saw."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls: dict[str, int] = {}
        self.prompts: list[tuple[str, str]] = []
        self.delay_s = 0.0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                model = body["model"]
                user = body["messages"][-1]["content"]
                with server._lock:  # counted on arrival, answered after the delay
                    server.calls[model] = server.calls.get(model, 0) + 1
                    server.prompts.append((model, user))
                if server.delay_s:
                    time.sleep(server.delay_s)
                data = json.dumps(_completion(model, server.answer(model, user))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }
