"""What the fuzz harnesses share: turning fuzz bytes into inputs, and starting libFuzzer.

Each harness is coverage-guided (atheris instruments the Assay modules it imports) and feeds
three kinds of input: the raw bytes as they are, a JSON value built from the bytes with a
vocabulary of the keys and words the code looks for (so that guidance reaches deep
validation instead of stopping at the JSON parser), and a short piece repeated up to about
a megabyte (so that quadratic or worse behaviour shows as a libFuzzer timeout).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import atheris

RESULTS = Path(__file__).resolve().parents[1] / "results" / "fuzz"
# Per-input time limit: a rubric render may legitimately take up to 5 s (MAX_RENDER_SECONDS).
DEFAULT_FLAGS = ("-timeout=20", "-rss_limit_mb=4096", "-print_final_stats=1")

KEYS = (
    "messages", "request", "response", "role", "content", "tool_calls", "tools", "function",
    "name", "arguments", "type", "text", "metadata", "params", "reference", "choices",
    "message", "system", "input_schema", "tool_call_id", "tool_use_id", "custom_id", "body",
    "status_code", "error", "created", "object", "usage", "prompt_tokens", "completion_tokens",
    "input_tokens", "uid", "started_at", "model", "provider", "path", "method", "id", "source",
    "image_url", "url", "duration_ms", "refusal", "success", "environment", "task", "input",
    "data", "media_type", "is_error", "cache_control", "description", "reasoning", "score",
)  # fmt: skip
WORDS = (
    "user", "assistant", "system", "tool", "developer", "text", "image", "image_url",
    "tool_use", "tool_result", "thinking", "redacted_thinking", "function", "message",
    "chat.completion", "base64", "url", "", " ", "\x00", "<<<END_RESPONSE_UNDER_TEST>>>",
    "2026-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "error", "list", "response",
)  # fmt: skip


def json_value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    """A JSON value shaped by the fuzz bytes, drawing keys and strings from the vocabulary."""
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 12 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-(2**63), 2**64 - 1)
    if kind == 3:
        return fdp.ConsumeRegularFloat()
    if kind == 4:
        return fdp.PickValueInList(list(WORDS))
    if kind == 5:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 16))
    if kind in (6, 7):
        return [json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    obj: dict[str, Any] = {}
    for _ in range(fdp.ConsumeIntInRange(0, 5)):
        key = (
            fdp.PickValueInList(list(KEYS))
            if fdp.ConsumeBool()
            else fdp.ConsumeUnicodeNoSurrogates(4)
        )
        obj[key] = json_value(fdp, depth + 1)
    return obj


def amplified(fdp: atheris.FuzzedDataProvider, limit: int = 1 << 20) -> bytes:
    """A short piece of the input repeated, up to about ``limit`` bytes, between a prefix
    and a suffix: how a fuzzer with small inputs still meets huge lines."""
    prefix = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32))
    piece = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8)) or b" "
    times = fdp.ConsumeIntInRange(1, max(1, limit // len(piece)))
    return prefix + piece * times + fdp.ConsumeBytes(64)


def run(test: Callable[[bytes], None], seeds: Sequence[bytes]) -> None:
    """Start libFuzzer on ``test`` with the default flags unless given. The corpus is the
    folder given on the command line, else bench/results/fuzz/corpus-NAME (kept between runs,
    so that a longer campaign resumes); the harness's seeds go into it when it is empty."""
    argv = list(sys.argv)
    flags = [arg for arg in argv[1:] if arg.startswith("-")]
    folders = [arg for arg in argv[1:] if not arg.startswith("-")]
    for default in DEFAULT_FLAGS:
        if not any(flag.startswith(default.split("=")[0] + "=") for flag in flags):
            argv.append(default)
    if not any(flag.startswith("-artifact_prefix=") for flag in flags):
        RESULTS.mkdir(parents=True, exist_ok=True)
        argv.append(f"-artifact_prefix={RESULTS}{os.sep}")
    if not folders:
        folders = [str(RESULTS / f"corpus-{Path(argv[0]).stem.removeprefix('fuzz_')}")]
        argv.append(folders[0])
    corpus = Path(folders[0])
    if corpus.is_file():  # replaying crash or timeout inputs: libFuzzer runs them once
        atheris.Setup(argv, test)
        atheris.Fuzz()
        return
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for index, seed in enumerate(seeds):
            (corpus / f"seed-{index}").write_bytes(seed)
    atheris.Setup(argv, test)
    atheris.Fuzz()
