"""What the fake LLM answers, and when it fails: per-model config, fates, response bodies.

Everything here is a pure function of the request (and of the attempt number for fates), so
identical requests get identical answers and tests can predict them (``reply_text``,
``judge_score``). The HTTP side (routing, counters, sockets) lives in ``fakellm.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

_VOCABULARY = (
    "the answer depends on context but in short it is best to start with a clear definition "
    "then give an example and note the main exception people miss when they apply the idea "
    "in practice because real systems have limits such as memory time cost and data quality"
)
WORDS = _VOCABULARY.split()

JUDGE_MODES = ("json", "out_of_range", "unparseable", "text_score", "malformed")
SCORE_HINT = re.compile(r"SCORE_HINT=(-?\d+(?:\.\d)?)")
_RANGE = re.compile(r"(-?\d+)\s*(?:-|\u2013|\u2014|to|and)\s*(-?\d+)")


OUTCOMES = ("ok", "429", "500", "503", "529", "400", "401", "408", "reset", "slow",
            "truncated", "hang", "refusal", "empty")  # fmt: skip
RATED = ("429", "500", "503", "reset", "slow", "truncated", "hang")


@dataclass
class ModelConfig:
    """How one model behaves; ``configure`` merges fields for a model or for ``"*"`` (all)."""

    latency_ms: float = 0.0
    jitter: float = 0.0  # +- fraction of latency, deterministic per attempt
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_reset: float = 0.0  # close the socket without answering
    rate_slow: float = 0.0  # answer after slow_ms (longer than the client's timeout)
    rate_truncated: float = 0.0  # 200 with half a JSON body
    rate_hang: float = 0.0  # never answer (until the client gives up or the server stops)
    retry_after: str | None = "1"  # header value on 429/503/529; None sends no header
    slow_ms: float = 5000.0
    judge_mode: str = "json"  # one of JUDGE_MODES
    script: list[str] = field(default_factory=list)  # outcome of attempt n = script[n-1]
    tool_calls: bool = True  # answer with a call to the first tool when tools are given
    score_hint: float | None = None  # append SCORE_HINT=N to replies (the judge then says N)
    seed: int = 0


CONFIG_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}


def check_config(values: dict[str, Any]) -> None:
    """Refuse typos early: a test configuring a field that does not exist is a broken test."""
    unknown = set(values) - CONFIG_FIELDS
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}; known: {sorted(CONFIG_FIELDS)}")
    bad = [o for o in values.get("script") or [] if o not in OUTCOMES]
    if bad:
        raise ValueError(f"unknown script outcomes {bad}; known: {OUTCOMES}")
    if values.get("judge_mode", "json") not in JUDGE_MODES:
        raise ValueError(f"unknown judge_mode {values['judge_mode']!r}; known: {JUDGE_MODES}")


def fate(config: ModelConfig, rid: int, attempt: int) -> str:
    """The outcome of attempt ``attempt`` (1-based) of request ``rid``."""
    if attempt <= len(config.script):
        return config.script[attempt - 1]
    rates = [(name, getattr(config, f"rate_{name}")) for name in RATED]
    if not any(rate for _, rate in rates):
        return "ok"
    u = digest(b"fate", str(config.seed).encode(), rid.to_bytes(8, "big"), str(attempt).encode())
    u /= 2**64
    for name, rate in rates:
        u -= rate
        if u < 0:
            return name
    return "ok"


def latency_ms(config: ModelConfig, rid: int, attempt: int) -> float:
    if not config.jitter:
        return config.latency_ms
    u = digest(b"jitter", rid.to_bytes(8, "big"), str(attempt).encode()) / 2**64
    return config.latency_ms * (1 + config.jitter * (2 * u - 1))


def digest(*parts: bytes) -> int:
    """A stable 64-bit integer from some bytes (blake2b: fast and the same on every run)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part)
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "big")


def text_of(content: Any) -> str:
    """The text of an OpenAI or Anthropic ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def reply_text(model: str, messages: list[Any], score_hint: float | None = None) -> str:
    """The deterministic answer of ``model`` to ``messages``."""
    seed = digest(model.encode(), orjson.dumps(messages, option=orjson.OPT_SORT_KEYS))
    count = 8 + seed % 17
    words = [WORDS[((seed >> (i % 48)) ^ i) % len(WORDS)] for i in range(count)]
    text = f"[{model}] " + " ".join(words) + "."
    if score_hint is not None:
        text += f" SCORE_HINT={score_hint:g}"
    return text


def is_judge_prompt(system_text: str) -> bool:
    """A judge prompt: the system message asks for a JSON object with reasoning and score."""
    lowered = system_text.lower()
    return "json" in lowered and "reasoning" in lowered and "score" in lowered


def score_range(system_text: str, schema: dict[str, Any] | None) -> tuple[int, int]:
    """The range the judge must answer in: from the JSON schema, else the prompt, else 1-10."""
    if schema:
        score = (schema.get("properties") or {}).get("score") or {}
        if "minimum" in score and "maximum" in score:
            return int(score["minimum"]), int(score["maximum"])
    for match in _RANGE.finditer(system_text):
        low, high = int(match.group(1)), int(match.group(2))
        if low < high <= low + 100:
            return low, high
    return 1, 10


def judge_score(judged_text: str, low: int = 1, high: int = 10) -> float:
    """The judge's score for a text: ``SCORE_HINT=N`` in the text if present, else a hash."""
    hint = SCORE_HINT.search(judged_text)
    if hint:
        value = float(hint.group(1))
        return int(value) if value.is_integer() else value
    return low + digest(judged_text.encode()) % (high - low + 1)


def judge_answer(mode: str, judged_text: str, low: int, high: int) -> str:
    """The judge's reply in one of ``JUDGE_MODES``."""
    score = judge_score(judged_text, low, high)
    reasoning = f"The response addresses the request; judged on {len(judged_text)} characters."
    if mode == "json":
        return orjson.dumps({"reasoning": reasoning, "score": score}).decode()
    if mode == "out_of_range":
        return orjson.dumps({"reasoning": reasoning, "score": high + 5}).decode()
    if mode == "text_score":
        return f"Reasoning: {reasoning}\nScore: {score}"
    if mode == "malformed":
        return '{"reasoning": "' + reasoning[:20] + '", "score": '
    return "I think it is quite good overall, though hard to say exactly."


def judge_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks the answer to follow (OpenAI or Anthropic form)."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema")
    config = body.get("output_config")
    if isinstance(config, dict) and isinstance(config.get("format"), dict):
        return config["format"].get("schema")
    return None


def tool_arguments(tool_schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments filling every required property of a JSON schema with a plain value."""
    samples = {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "array": []}
    props = tool_schema.get("properties") or {}
    return {
        name: samples.get((props.get(name) or {}).get("type", "string"), {})
        for name in tool_schema.get("required") or []
    }


def estimate_tokens(size: int) -> int:
    return max(1, size // 4)


# --- OpenAI ---------------------------------------------------------------------------------


def openai_completion(
    model: str,
    rid: int,
    content: str | None,
    tool_call: dict[str, Any] | None,
    prompt_tokens: int,
    finish_reason: str = "stop",
    refusal: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_call is not None:
        message["tool_calls"] = [tool_call]
        finish_reason = "tool_calls"
    if refusal is not None:
        message["refusal"] = refusal
    completion_tokens = estimate_tokens(len(content or "") + (100 if tool_call else 0))
    return {
        "id": f"chatcmpl-{rid:016x}",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def openai_tool_call(tools: list[Any], rid: int) -> dict[str, Any]:
    function = (tools[0] or {}).get("function") or {}
    arguments = tool_arguments(function.get("parameters") or {})
    return {
        "id": f"call_{rid % 10**12:012d}",
        "type": "function",
        "function": {
            "name": function.get("name", "tool"),
            "arguments": orjson.dumps(arguments).decode(),
        },
    }


def openai_sse(completion: dict[str, Any], include_usage: bool) -> bytes:
    """The completion as a server-sent event stream (one content chunk, finish, usage, DONE)."""
    choice = completion["choices"][0]
    base = {k: completion[k] for k in ("id", "created", "model")} | {
        "object": "chat.completion.chunk"
    }
    delta = {k: v for k, v in choice["message"].items() if v is not None}
    chunks = [
        base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
        base | {"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]},
    ]
    if include_usage:
        chunks.append(base | {"choices": [], "usage": completion["usage"]})
    out = b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks)
    return out + b"data: [DONE]\n\n"


def openai_error(status: int, message: str) -> dict[str, Any]:
    kinds = {429: "rate_limit_exceeded", 401: "invalid_api_key", 400: "invalid_request_error"}
    return {
        "error": {"message": message, "type": kinds.get(status, "server_error"), "code": status}
    }


# --- Anthropic ------------------------------------------------------------------------------


def anthropic_message(
    model: str,
    rid: int,
    content: str,
    tools: list[Any] | None,
    input_tokens: int,
    stop_reason: str = "end_turn",
) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}]
    if tools:
        tool = tools[0] or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": f"toolu_{rid % 10**12:012d}",
                "name": tool.get("name", "tool"),
                "input": tool_arguments(tool.get("input_schema") or {}),
            }
        )
        stop_reason = "tool_use"
    return {
        "id": f"msg_{rid:016x}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": estimate_tokens(len(content))},
    }


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kinds = {429: "rate_limit_error", 401: "authentication_error", 400: "invalid_request_error",
             529: "overloaded_error"}  # fmt: skip
    return {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": message}}


# --- whole answers ---------------------------------------------------------------------------


def openai_answer(
    body: dict[str, Any], size: int, config: ModelConfig, rid: int, refusal: bool
) -> dict[str, Any]:
    """The chat completion for an OpenAI request of ``size`` bytes."""
    model = str(body.get("model", ""))
    messages = body.get("messages") or []
    prompt_tokens = estimate_tokens(size)
    if refusal:
        return openai_completion(model, rid, None, None, prompt_tokens, refusal="I can't help.")
    system = "\n".join(
        text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    )
    if is_judge_prompt(system):
        content = _judge(config, system, messages, body)
        return openai_completion(model, rid, content, None, prompt_tokens)
    tools = body.get("tools")
    if tools and config.tool_calls and messages and messages[-1].get("role") == "user":
        return openai_completion(model, rid, None, openai_tool_call(tools, rid), prompt_tokens)
    content = reply_text(model, messages, config.score_hint)
    return openai_completion(model, rid, content, None, prompt_tokens)


def anthropic_answer(
    body: dict[str, Any], size: int, config: ModelConfig, rid: int, refusal: bool
) -> dict[str, Any]:
    """The message for an Anthropic request of ``size`` bytes."""
    model = str(body.get("model", ""))
    messages = body.get("messages") or []
    tokens = estimate_tokens(size)
    if refusal:
        return anthropic_message(model, rid, "", None, tokens, stop_reason="refusal")
    system = text_of(body.get("system") or "")
    if is_judge_prompt(system):
        return anthropic_message(model, rid, _judge(config, system, messages, body), None, tokens)
    tools = body.get("tools") if config.tool_calls else None
    last = messages[-1].get("content") if messages else None
    if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
        tools = None  # answering a tool result: reply in text
    content = reply_text(model, messages, config.score_hint)
    return anthropic_message(model, rid, content, tools, tokens)


def _judge(config: ModelConfig, system: str, messages: list[Any], body: dict[str, Any]) -> str:
    """The judge answers about the last user message (where the judged response is)."""
    judged = next(
        (text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    low, high = score_range(system, judge_schema(body))
    return judge_answer(config.judge_mode, judged, low, high)
