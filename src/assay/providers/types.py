"""The types every provider speaks: a chat request, its result, and the one error it raises.

Requests and results are OpenAI-shaped whatever the provider: ``messages`` and ``tools`` as the
OpenAI Chat Completions API takes them, the answer as an OpenAI-style assistant message dict
(``content`` and, when the model called tools, ``tool_calls``). The Anthropic client converts
both ways, so nothing above this layer knows which provider answered.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from assay.errors import AssayError

ErrorKind = Literal[
    "rate_limited",  # 429
    "server_error",  # 5xx, 409
    "timeout",  # no answer within the timeout, or 408
    "connection",  # refused, reset, DNS...
    "bad_request",  # other 4xx: the request itself is wrong (or the model does not exist)
    "auth",  # 401/403, or the API key's environment variable is not set
    "refusal",  # the provider flagged a refusal / content filter
    "malformed_response",  # the body is not the JSON we expect
]

RETRYABLE_KINDS: frozenset[str] = frozenset(
    {"rate_limited", "server_error", "timeout", "connection"}
)


class ProviderError(AssayError):
    """A model call failed for good (after retries, when the failure was retryable).

    ``kind`` is what the engine records (``generation_failed`` / ``judge_failed`` with this
    reason); ``status`` is the HTTP status if there was one; ``attempts`` counts HTTP attempts
    made (0 when the call never left, e.g. a missing API key variable). The message never
    contains the API key.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.status = status
        self.attempts = attempts
        self.retry_after = retry_after  # seconds the server asked us to wait, if it said
        self.endpoint = endpoint

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    def __str__(self) -> str:
        where = f"model {self.endpoint!r}: " if self.endpoint else ""
        status = f"HTTP {self.status}, " if self.status is not None else ""
        plural = "" if self.attempts == 1 else "s"
        return f"{where}{self.kind}: {self.message} ({status}{self.attempts} attempt{plural})"

    def __repr__(self) -> str:
        return f"ProviderError({self.kind!r}, {self.message!r}, status={self.status})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable (keyword-only arguments need this), e.g. across worker processes."""
        return (type(self), (self.kind, self.message), dict(self.__dict__))


class ChatRequest(BaseModel):
    """One chat call. ``params`` override the endpoint's default params (e.g. a judge's
    ``temperature=0`` and ``seed``); ``response_format`` asks for structured output
    (``{"type": "json_schema", "json_schema": {...}}`` or ``{"type": "json_object"}``), passed
    through to OpenAI-compatible endpoints and converted for Anthropic."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    response_format: dict[str, Any] | None = None


class ChatResult(BaseModel):
    """A successful answer, with what it cost.

    ``latency_ms`` is the duration of the successful HTTP attempt (not the queueing, retries or
    backoff before it; for a local model, its time running on the model's thread); a cached
    result reports the original call's tokens and latency with ``cost_usd=0`` and
    ``cached=True``. ``cache_key`` and ``response`` are what the response cache stores, so an
    engine can persist them in its own batched transaction.
    """

    message: dict[str, Any]
    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float
    cost_usd: float = 0.0
    attempts: int = 1
    cached: bool = False
    finish_reason: str | None = None
    cache_key: str | None = Field(default=None, exclude=True, repr=False)
    response: dict[str, Any] | None = Field(default=None, exclude=True, repr=False)


def message_text(message: dict[str, Any]) -> str:
    """The text of an assistant message: its string content, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "output_text")
        )
    return ""


class ProviderClient(Protocol):
    """What ``ModelCaller`` needs from a provider's client (OpenAI, Anthropic, local)."""

    def encode(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: dict[str, Any],
    ) -> bytes:
        """The request, encoded once per call whatever the number of attempts."""
        ...

    async def send(self, content: bytes, api_key: str) -> dict[str, Any]:
        """One attempt: the normalized answer (``message``, ``finish_reason``,
        ``input_tokens``, ``output_tokens``), or ``ProviderError``."""
        ...

    async def aclose(self) -> None: ...
