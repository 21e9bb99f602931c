"""Local models: GGUF files run in-process by llama.cpp (``llama-cpp-python``, the optional
extra ``assay[local]``), speaking the same OpenAI shapes as the other clients.

*One model, one thread.* llama.cpp is not thread-safe, so each loaded model (one per file,
chat format, context size and thread count, shared process-wide by every endpoint and event
loop that uses it) owns a single worker thread: calls queue there and run one at a time while
the event loop stays free. The model is loaded by that thread on its first call.

*Timeouts.* The timeout counts from the moment a call starts running, not while it waits for
the calls queued before it. A call that runs past it raises a retryable ``timeout`` like the
HTTP clients; its generation is told to stop and does so at the next token, so the model is
free again within one token (prompt processing, once begun, finishes first; that is the only
part that cannot be interrupted).

*Requests.* Messages become plain text turns (system, user, assistant): tool calls and tool
results are written out as text, image parts are refused. Sampling params llama.cpp knows
(``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``stop``, penalties...) pass through;
OpenAI-only ones are dropped. A ``json_schema`` response format becomes a grammar, so the
answer is valid JSON for that schema: free-text fields are capped at about ``max_tokens``
tokens (4 characters each) instead of cutting the JSON off at ``max_tokens``, and a number
with an integer ``minimum`` and ``maximum`` is restricted to that range in steps of 0.1.

*Results.* Token usage as llama.cpp counts it; prices default to 0, so cost is 0.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from assay.errors import AssayError
from assay.providers.endpoints import DEFAULT_N_CTX, ModelInfo
from assay.providers.local_model import INSTALL_HINT, ensure_bundled_model
from assay.providers.types import ErrorKind, ProviderError

# Sampling params llama.cpp's chat completion takes, under the same names as OpenAI's.
PASSED_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "typical_p",
        "stop",
        "seed",
        "max_tokens",
        "presence_penalty",
        "frequency_penalty",
        "repeat_penalty",
        "tool_choice",
    }
)
BUNDLED_CHAT_FORMAT = "gemma"
# Chat formats whose llama.cpp formatter silently drops system messages: fold them into the
# first user turn instead (as Gemma's own template does).
FOLD_SYSTEM_FORMATS = frozenset({"gemma"})
CHARS_PER_TOKEN = 4
DEFAULT_FIELD_CHARS = 1024  # a free-text JSON field's cap without max_tokens
MAX_ENUM_STEPS = 1000  # a bounded number becomes an enum only up to this many 0.1 steps


def cpu_threads() -> int:
    """The cores this process may use (the default thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class LocalSpec:
    """What identifies a loaded model: two endpoints with the same spec share one."""

    model_path: str | None  # None: the bundled Gemma 3 270M
    chat_format: str | None  # None: the GGUF's own template
    n_ctx: int
    threads: int

    @classmethod
    def of(cls, model: ModelInfo) -> LocalSpec:
        options = model.options
        path = options.get("model_path")
        chat_format = options.get("chat_format") or (BUNDLED_CHAT_FORMAT if path is None else None)
        return cls(
            model_path=path,
            chat_format=chat_format,
            n_ctx=int(options.get("n_ctx") or DEFAULT_N_CTX),
            threads=int(options.get("threads") or cpu_threads()),
        )


# --- requests and answers ------------------------------------------------------------------


def to_llama_request(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    params: dict[str, Any],
    *,
    fold_system: bool = False,
) -> dict[str, Any]:
    """An OpenAI-style request -> keyword arguments for ``create_chat_completion`` (plus
    ``json_schema``, turned into a grammar by the worker thread)."""
    request: dict[str, Any] = {k: v for k, v in params.items() if k in PASSED_PARAMS}
    if "max_tokens" not in request and params.get("max_completion_tokens"):
        request["max_tokens"] = params["max_completion_tokens"]
    request["messages"] = to_llama_messages(messages, fold_system=fold_system)
    if tools:
        request["tools"] = tools
        # llama.cpp forces a call (by a grammar) only for a named function; with one tool,
        # OpenAI's "required" means exactly that.
        if request.get("tool_choice") == "required" and len(tools) == 1:
            name = (tools[0].get("function") or {}).get("name")
            request["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        request.pop("tool_choice", None)
    response_format = params.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")  # type: ignore[union-attr]
        if not isinstance(schema, dict):
            raise ProviderError(
                "bad_request", "response_format json_schema has no 'schema' object", attempts=0
            )
        max_tokens = request.get("max_tokens")
        field_chars = max_tokens * CHARS_PER_TOKEN if max_tokens else DEFAULT_FIELD_CHARS
        request["json_schema"] = bounded_schema(schema, field_chars)
        # The schema bounds the answer; a token cap would only cut the JSON off mid-way.
        request.pop("max_tokens", None)
    elif kind == "json_object":
        request["response_format"] = {"type": "json_object"}
    return request


def to_llama_messages(
    messages: list[dict[str, Any]], *, fold_system: bool = False
) -> list[dict[str, str]]:
    """Plain text turns any chat template accepts: system / user / assistant, consecutive
    turns of one role merged (several templates insist that user and assistant alternate)."""
    turns: list[dict[str, str]] = []
    system: list[str] = []
    for message in messages:
        role = message.get("role")
        text = _text(message.get("content"))
        if role in ("tool", "function"):
            name = message.get("name") or message.get("tool_call_id") or "tool"
            role, text = "user", f"[result of {name}]\n{text}"
        elif role == "assistant":
            calls = [_call_text(call) for call in message.get("tool_calls") or []]
            text = "\n".join(part for part in [text, *calls] if part)
        elif role == "developer":
            role = "system"
        elif role != "system":
            role = "user"
        if role == "system" and (fold_system or not turns):
            system.append(text)
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": role, "content": text})
    preamble = "\n\n".join(s for s in system if s)
    if preamble and fold_system:
        if turns and turns[0]["role"] == "user":
            turns[0]["content"] = f"{preamble}\n\n{turns[0]['content']}"
        else:
            turns.insert(0, {"role": "user", "content": preamble})
    elif preamble:
        turns.insert(0, {"role": "system", "content": preamble})
    return turns


def bounded_schema(schema: Any, field_chars: int) -> Any:
    """A copy of ``schema`` whose every answer is finite: strings without ``maxLength`` get
    ``field_chars``; a number with integer ``minimum`` and ``maximum`` becomes the enum of
    that range in steps of 0.1 (integers only for ``integer``), which llama.cpp's schema
    converter otherwise ignores."""
    if isinstance(schema, list):
        return [bounded_schema(item, field_chars) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: bounded_schema(value, field_chars) for key, value in schema.items()}
    kind = out.get("type")
    if kind == "string" and "maxLength" not in out and "enum" not in out:
        out["maxLength"] = field_chars
    if kind in ("number", "integer") and "enum" not in out:
        values = _range_enum(out.get("minimum"), out.get("maximum"), decimals=kind == "number")
        if values is not None:
            out = {k: v for k, v in out.items() if k not in ("type", "minimum", "maximum")}
            out["enum"] = values
    return out


def _range_enum(low: Any, high: Any, *, decimals: bool) -> list[int | float] | None:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
        return None
    step = Decimal("0.1") if decimals else Decimal(1)
    steps = int((Decimal(high) - Decimal(low)) / step)
    if high < low or steps > MAX_ENUM_STEPS:
        return None
    values: list[int | float] = []
    for i in range(steps + 1):
        value = Decimal(low) + step * i
        values.append(int(value) if value == value.to_integral_value() else float(value))
    return values


def from_llama(completion: dict[str, Any]) -> dict[str, Any]:
    """A llama.cpp chat completion -> the normalized answer the caller expects."""
    choices = completion.get("choices") or []
    if not choices or not isinstance(choices[0].get("message"), dict):
        raise ProviderError("malformed_response", "llama.cpp returned no message")
    choice = choices[0]
    raw = choice["message"]
    message: dict[str, Any] = {"role": "assistant", "content": raw.get("content")}
    if raw.get("tool_calls"):
        message["tool_calls"] = raw["tool_calls"]
    usage = completion.get("usage") or {}
    return {
        "message": message,
        "finish_reason": choice.get("finish_reason"),
        "input_tokens": usage.get("prompt_tokens"),
        "output_tokens": usage.get("completion_tokens"),
        "model": completion.get("model"),
        "id": completion.get("id"),
        "latency_ms": completion.get("latency_ms"),
    }


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content if isinstance(content, list) else [content]:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text", "output_text"):
            parts.append(str(part.get("text", "")))
        else:
            raise ProviderError(
                "bad_request",
                f"local models take text only; this message has a {kind or 'non-text'!r} part",
                attempts=0,
            )
    return "".join(parts)


def _call_text(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    return f"[call {function.get('name')}({function.get('arguments') or ''})]"


# --- loaded models --------------------------------------------------------------------------


class _Cancelled(Exception):
    """The caller gave up on this call before it started running."""


class LoadedModel:
    """One model in memory and the single thread allowed to touch it."""

    def __init__(self, spec: LocalSpec) -> None:
        self.spec = spec
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="assay-llama"
        )
        self._llama: Any = None
        self._busy = 0
        self.max_busy = 0  # most calls ever inside llama.cpp at once: 1 by construction
        self.calls = 0

    def submit(
        self, request: dict[str, Any], cancel: threading.Event, on_start: Callable[[], None]
    ) -> concurrent.futures.Future[dict[str, Any]]:
        return self._executor.submit(self._run, request, cancel, on_start)

    def _run(
        self, request: dict[str, Any], cancel: threading.Event, on_start: Callable[[], None]
    ) -> dict[str, Any]:
        if cancel.is_set():
            raise _Cancelled
        llama = self._load()
        kwargs = dict(request)
        schema = kwargs.pop("json_schema", None)
        if schema is not None:
            kwargs["grammar"] = _grammar(schema)
        on_start()
        if cancel.is_set():
            raise _Cancelled
        self._busy += 1
        self.max_busy = max(self.max_busy, self._busy)
        llama.cancel = cancel
        started = time.perf_counter()
        try:
            completion = llama.create_chat_completion(**kwargs)
            completion["latency_ms"] = (time.perf_counter() - started) * 1000.0
            return completion
        finally:
            llama.cancel = None
            self._busy -= 1
            self.calls += 1

    def _load(self) -> Any:
        if self._llama is None:
            spec = self.spec
            path = spec.model_path or str(ensure_bundled_model())
            self._llama = _llama_class()(
                model_path=path,
                n_ctx=spec.n_ctx,
                n_threads=spec.threads,
                n_threads_batch=spec.threads,
                chat_format=spec.chat_format,
                verbose=False,
            )
        return self._llama

    def close(self) -> None:
        """Wait for the running call, then free the model."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._llama is not None:
            self._llama.close()
            self._llama = None


_models: dict[LocalSpec, LoadedModel] = {}
_models_lock = threading.Lock()


def loaded_model(spec: LocalSpec) -> LoadedModel:
    """The process-wide model for ``spec`` (loaded by its thread on its first call)."""
    with _models_lock:
        model = _models.get(spec)
        if model is None:
            model = _models[spec] = LoadedModel(spec)
        return model


def unload_all() -> None:
    """Free every loaded model (tests; a long-lived server that wants its memory back)."""
    with _models_lock:
        models = list(_models.values())
        _models.clear()
    for model in models:
        model.close()


# Free models before interpreter teardown, during which llama.cpp's finalizers fail.
atexit.register(unload_all)

_llama_subclass: Any = None


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ProviderError(
            "bad_request",
            f"local models run through llama-cpp-python, which is not installed "
            f"({exc.msg}): {INSTALL_HINT}",
            attempts=0,
        ) from None
    return llama_cpp


def _llama_class() -> Any:
    """``llama_cpp.Llama`` that stops generating once the current call's ``cancel`` is set.

    llama-cpp-python has no cancel of its own; its chat handlers all generate through
    ``create_completion``, which takes stopping criteria checked after every token.
    """
    global _llama_subclass
    if _llama_subclass is None:
        llama_cpp = _import_llama()

        class CancellableLlama(llama_cpp.Llama):  # type: ignore[misc,name-defined]
            cancel: threading.Event | None = None

            def create_completion(self, *args: Any, **kwargs: Any) -> Any:
                cancel = self.cancel
                if cancel is not None:
                    criteria = list(kwargs.get("stopping_criteria") or [])
                    criteria.append(lambda _ids, _logits: cancel.is_set())
                    kwargs["stopping_criteria"] = llama_cpp.StoppingCriteriaList(criteria)
                return super().create_completion(*args, **kwargs)

        _llama_subclass = CancellableLlama
    return _llama_subclass


def _grammar(schema: dict[str, Any]) -> Any:
    from llama_cpp.llama_grammar import LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(orjson.dumps(schema).decode(), verbose=False)
    except Exception as exc:  # the converter raises plain Exceptions for unsupported schemas
        raise ProviderError(
            "bad_request",
            f"llama.cpp cannot turn the response_format JSON schema into a grammar: {exc}",
        ) from None


# --- the client ---------------------------------------------------------------------------


class LocalClient:
    """Calls one local endpoint (same interface as ``OpenAIClient``; no key, no HTTP)."""

    def __init__(self, model: ModelInfo, timeout_s: float = 120.0) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.spec = LocalSpec.of(model)
        self._fold_system = (self.spec.chat_format or "") in FOLD_SYSTEM_FORMATS

    def encode(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: dict[str, Any],
    ) -> bytes:
        request = to_llama_request(messages, tools, params, fold_system=self._fold_system)
        return orjson.dumps(request)

    async def send(self, content: bytes, api_key: str) -> dict[str, Any]:
        """One call on the model's thread; the normalized answer, or ``ProviderError``."""
        request = orjson.loads(content)
        model = loaded_model(self.spec)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        cancel = threading.Event()

        def on_start() -> None:  # on the worker thread, just before generating
            try:
                loop.call_soon_threadsafe(lambda: started.done() or started.set_result(None))
            except RuntimeError:  # the caller's event loop is gone: nobody wants the answer
                cancel.set()

        future = model.submit(request, cancel, on_start)
        done = asyncio.wrap_future(future)
        try:
            # Waiting behind other calls (and the first call's load) is not timed...
            await asyncio.wait((started, done), return_when=asyncio.FIRST_COMPLETED)
            # ... running is.
            async with asyncio.timeout(self.timeout_s):
                completion = await done
        except TimeoutError:
            cancel.set()  # the worker stops at its next token
            raise ProviderError("timeout", f"no answer within {self.timeout_s:g} s") from None
        except ProviderError:
            raise
        except BaseException as exc:  # cancelled by our caller, or llama.cpp failed
            cancel.set()
            future.cancel()
            if isinstance(exc, Exception):
                raise _provider_error(exc) from None
            raise
        finally:
            started.cancel()
        return from_llama(completion)

    async def aclose(self) -> None:
        """Nothing to release: loaded models are shared process-wide (``unload_all``)."""


def _provider_error(exc: Exception) -> ProviderError:
    """llama.cpp's exceptions as ``ProviderError``s; only unexpected ones are retried."""
    message = str(exc) or type(exc).__name__
    kind: ErrorKind = "server_error"
    if isinstance(exc, AssayError):  # the bundled model's package is missing or damaged
        kind = "bad_request"
    elif "exceed context window" in message:
        kind = "bad_request"
        message += " (give the model a larger --n-ctx, or shorten the conversation)"
    elif isinstance(exc, ValueError | TypeError | KeyError) or _is_template_error(exc):
        kind = "bad_request"
    elif type(exc).__name__ == "LlamaChatCompletionHandlerNotFoundException":
        kind = "bad_request"
        message += " (fix the model's --chat-format)"
    return ProviderError(kind, f"llama.cpp: {message[:500]}", attempts=0)


def _is_template_error(exc: Exception) -> bool:
    """A chat template that rejects the conversation (raised by Jinja, e.g. roles order)."""
    return any(cls.__module__.startswith("jinja2") for cls in type(exc).__mro__)
