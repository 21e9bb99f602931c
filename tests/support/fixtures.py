"""Pytest fixtures for tests that make real HTTP calls to the fake LLM server.

``fake_llm`` gives each test a clean server (configuration, counters and recorded requests
reset; the server itself is started once per session on a free loopback port, in a
background thread)::

    def test_retry(fake_llm):
        fake_llm.configure("m1", script=["429"], retry_after="0")
        ...call fake_llm.base_url with model "m1"...
        assert fake_llm.stats("m1")["attempts"] == 2
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from assay.providers.endpoints import ModelInfo
from support.fakellm_server import ServerThread

__all__ = ["FakeLLMHandle", "fake_llm", "fake_llm_server"]

_EMPTY_STATS = {
    "attempts": 0,
    "ok": 0,
    "errors": {},
    "unique_requests": 0,
    "retries": 0,
    "in_flight": 0,
    "peak_in_flight": 0,
    "input_tokens": 0,
    "output_tokens": 0,
}


class FakeLLMHandle:
    """A test's view of the fake server: URLs, configuration, counters, recorded requests,
    and ``http``, an ``httpx.Client`` on the server's root URL for raw requests."""

    def __init__(self, root_url: str) -> None:
        self.root_url = root_url
        self.base_url = f"{root_url}/v1"  # OpenAI-compatible base URL
        self.anthropic_url = root_url  # the Anthropic SDK adds /v1 itself
        self.http = httpx.Client(base_url=root_url, timeout=10)

    def configure(self, model: str = "*", **fields: Any) -> None:
        """Merge ``ModelConfig`` fields for ``model`` (``"*"``: every model)."""
        response = self.http.post("/control/configure", json={"model": model, **fields})
        if response.status_code != 200:
            raise ValueError(response.json()["error"])

    def stats(self, model: str | None = None) -> dict[str, Any]:
        """Counters for one model (zeros if it was never called), or the whole ``/stats``."""
        data = self.http.get("/stats").json()
        if model is None:
            return data
        return data["models"].get(model, dict(_EMPTY_STATS))

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """Requests received, oldest first: ``model``, ``path``, ``attempt``, ``body``, ``auth``."""
        params = {"model": model} if model is not None else {}
        return self.http.get("/control/requests", params=params).json()

    def reset(self) -> None:
        self.http.post("/control/reset").raise_for_status()

    def model_info(self, name: str, provider: str = "openai", **fields: Any) -> ModelInfo:
        """An (unsaved) endpoint pointing at this server, with ``model_id == name``."""
        base_url = self.anthropic_url if provider == "anthropic" else self.base_url
        return ModelInfo(name=name, provider=provider, base_url=base_url, model_id=name, **fields)

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[ServerThread]:
    server = ServerThread().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_llm(fake_llm_server: ServerThread) -> Iterator[FakeLLMHandle]:
    handle = FakeLLMHandle(fake_llm_server.root_url)
    handle.reset()
    try:
        yield handle
    finally:
        handle.close()
