"""OpenAI-compatible endpoints (OpenAI, vLLM, llama.cpp server, Ollama, ...) through the
official ``openai`` SDK.

The SDK provides authentication, base-URL handling, the HTTP transport (aiohttp, ~0.5 ms of
CPU per call cheaper than the default httpx one) and its typed errors. The request goes through
``client.post`` with a pre-encoded JSON body and the answer comes back as the raw HTTP
response, parsed once with orjson: the typed ``chat.completions.create`` path spends about as
much CPU again transforming params and building pydantic models we would only turn back into
dicts (measured in ``bench/bench_calls.py``). The SDK's own retries are off (``max_retries=0``):
``caller.py`` retries with its own policy and limits.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any

import httpx2
import openai
import orjson

from assay.providers.endpoints import DUMMY_API_KEY, ModelInfo
from assay.providers.retry import error_from_exception
from assay.providers.types import ProviderError

# Telemetry headers the SDK adds to every request; dropping them saves CPU and bytes.
STAINLESS_HEADERS = (
    "X-Stainless-Lang",
    "X-Stainless-Package-Version",
    "X-Stainless-OS",
    "X-Stainless-Arch",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Async",
    "X-Stainless-Retry-Count",
    "X-Stainless-Read-Timeout",
    "X-Stainless-Timeout",
)
# Only meaningful with tools; OpenAI rejects them without.
_TOOL_ONLY_PARAMS = ("tool_choice", "parallel_tool_calls")


class SDKClient(ABC):
    """One official SDK client per event loop (an SDK client is bound to the loop it was
    made in), built the same way for OpenAI and Anthropic: no SDK retries, aiohttp
    transport, no telemetry headers, a dummy key replaced by the real one per call."""

    def __init__(self, model: ModelInfo, timeout_s: float = 120.0) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @abstractmethod
    def _new_client(self) -> Any:
        """A fresh SDK client for the running event loop."""

    def _make(self, sdk: Any, client_class: Any, base_url: str) -> Any:
        return client_class(
            base_url=base_url,
            api_key=DUMMY_API_KEY,
            max_retries=0,
            timeout=self.timeout_s,
            http_client=sdk.DefaultAioHttpClient(),
            default_headers={name: sdk.Omit() for name in STAINLESS_HEADERS},
        )

    def _sdk(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = self._new_client()
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.close()


class OpenAIClient(SDKClient):
    """Calls one OpenAI-compatible endpoint."""

    def _new_client(self) -> openai.AsyncOpenAI:
        return self._make(openai, openai.AsyncOpenAI, self.model.base_url)

    def encode(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: dict[str, Any],
    ) -> bytes:
        """The JSON request body: params first, then what Assay sets (model, messages, tools)."""
        body = {**params, "model": self.model.model_id, "messages": messages}
        if tools:
            body["tools"] = tools
        else:
            for name in _TOOL_ONLY_PARAMS:
                body.pop(name, None)
        return orjson.dumps(body)

    async def send(self, content: bytes, api_key: str) -> dict[str, Any]:
        """One HTTP attempt; the normalized answer, or ``ProviderError``."""
        data = await post_raw(
            self._sdk(), "/chat/completions", content, api_key, self.timeout_s, openai.OpenAIError
        )
        return parse_completion(data)


async def post_raw(
    client: Any,
    path: str,
    content: bytes,
    api_key: str,
    timeout_s: float,
    sdk_error: type[Exception],
) -> bytes:
    """One POST through an official SDK client (OpenAI's or Anthropic's: same shape), the raw
    body back; the SDK's exceptions become ``ProviderError``s with the key scrubbed."""
    client.api_key = api_key  # read from the environment for this call, kept nowhere else
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.post(path, cast_to=httpx2.Response, content=content)
            return response.content
    except TimeoutError:
        raise ProviderError("timeout", f"no answer within {timeout_s:g} s") from None
    except sdk_error as exc:
        raise error_from_exception(exc, timeout_s=timeout_s, secret=api_key) from None


def parse_completion(data: bytes) -> dict[str, Any]:
    """A chat completion body -> the normalized answer (``message``, ``finish_reason``, usage)."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProviderError(
            "malformed_response", f"the response is not valid JSON ({len(data)} bytes)"
        ) from None
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        detail = body.get("error") if isinstance(body, dict) else None
        raise ProviderError(
            "malformed_response",
            f"the response has no choices{f': {str(detail)[:300]}' if detail else ''}",
        )
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ProviderError("malformed_response", "the first choice has no message")
    finish_reason = choice.get("finish_reason")
    if message.get("refusal"):
        raise ProviderError("refusal", f"the model refused: {str(message['refusal'])[:300]}")
    if finish_reason == "content_filter":
        raise ProviderError("refusal", "the provider's content filter stopped the answer")
    usage = body.get("usage") or {}
    return {
        "message": message,
        "finish_reason": finish_reason,
        "input_tokens": usage.get("prompt_tokens"),
        "output_tokens": usage.get("completion_tokens"),
        "model": body.get("model"),
        "id": body.get("id"),
    }
