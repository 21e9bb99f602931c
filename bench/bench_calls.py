"""Benchmark: client CPU per model call, through ``ModelCaller`` and through the raw SDK.

The fake OpenAI-compatible server (``tests/support/fakellm.py``) runs in a separate process
(``support.fakellm_server``) at 0 ms latency, so that the CPU measured here
(``time.process_time`` of this process, every thread included) is the client's alone. Each
variant makes N calls (default 2,000) at concurrency C (default 32), after a warm-up, and is
repeated; the table shows medians.

Variants:
  sdk-httpx        openai SDK, ``chat.completions.create``, default httpx transport
  sdk-aiohttp      the same with ``http_client=DefaultAioHttpClient()``
  caller           ``ModelCaller`` (no store: no cache), OpenAI-compatible endpoint
  caller-limits    the same with ``max_concurrency``, ``rpm`` and ``tpm`` set (never binding)
  caller-cache     ``ModelCaller`` with a SQLite store, ``use_cache=False``: answers are still
                   written, in batches, from a worker thread
  caller-anthropic ``ModelCaller`` on an Anthropic endpoint (``/v1/messages``), no store

    .venv/bin/python bench/bench_calls.py [--calls 2000] [--concurrency 32] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import openai

from assay.providers import ChatRequest, ModelCaller, ModelInfo
from assay.store import open_store

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "You are a support assistant for an online shop. Answer briefly and precisely."


def messages(i: int) -> list[dict[str, Any]]:
    question = f"Where is my order {i:06d}? It was due on Monday and the tracking has not moved."
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tmp / "port"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    server_args = ["--port", "0", "--port-file", str(port_file)]
    command = [sys.executable, "-m", "support.fakellm_server", *server_args]
    server = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit("the fake server did not start")
        time.sleep(0.02)
    root = f"http://127.0.0.1:{port_file.read_text()}"
    while True:
        try:
            httpx.get(f"{root}/health", timeout=1).raise_for_status()
            return server, root
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


Call = Callable[[int], Awaitable[str | None]]


async def drive(call: Call, calls: int, concurrency: int) -> tuple[float, float, int, int]:
    """CPU seconds, wall seconds, failures, peak in flight for ``calls`` calls."""
    queue = iter(range(calls))
    failures = in_flight = peak = 0

    async def worker() -> None:
        nonlocal failures, in_flight, peak
        for i in queue:
            in_flight += 1
            peak = max(peak, in_flight)
            if await call(i) is None:
                failures += 1
            in_flight -= 1

    for i in range(100):  # warm up: connections, imports, caches
        await call(10_000_000 + i)
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu, time.perf_counter() - wall, failures, peak


async def variant(
    name: str, root: str, tmp: Path, calls: int, concurrency: int
) -> tuple[float, float, int, int]:
    if name.startswith("sdk"):
        http_client = openai.DefaultAioHttpClient() if name == "sdk-aiohttp" else None
        client = openai.AsyncOpenAI(
            base_url=f"{root}/v1", api_key="bench", max_retries=0, http_client=http_client
        )

        async def sdk_call(i: int) -> str | None:
            out = await client.chat.completions.create(model="bench", messages=messages(i))  # type: ignore[arg-type]
            return out.choices[0].message.content

        try:
            return await drive(sdk_call, calls, concurrency)
        finally:
            await client.close()

    provider = "anthropic" if name == "caller-anthropic" else "openai"
    limits = (
        {"max_concurrency": concurrency, "rpm": 10**7, "tpm": 10**10}
        if name == "caller-limits"
        else {}
    )
    info = ModelInfo(
        name=f"bench-{name}",
        provider=provider,
        base_url=root if provider == "anthropic" else f"{root}/v1",
        model_id="bench",
        price_input_per_mtok=1.0,
        price_output_per_mtok=2.0,
        **limits,
    )
    store = (
        open_store(f"sqlite:///{tmp / f'{name}.db'}", home=tmp) if name == "caller-cache" else None
    )
    caller = ModelCaller(info, store, use_cache=False)

    async def caller_call(i: int) -> str | None:
        result = await caller.complete(ChatRequest(messages=messages(i)))
        return result.text

    try:
        return await drive(caller_call, calls, concurrency)
    finally:
        await caller.aclose()
        if store is not None:
            store.close()


VARIANTS = (
    "sdk-httpx",
    "sdk-aiohttp",
    "caller",
    "caller-limits",
    "caller-cache",
    "caller-anthropic",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=VARIANTS, help="run only these variants")
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="assay-bench-calls-") as tmpdir:
        tmp = Path(tmpdir)
        server, root = start_server(tmp)
        try:
            rows = []
            for name in args.only or VARIANTS:
                runs = []
                for rep in range(args.reps):
                    runs.append(_run(name, root, tmp, rep, args))
                cpu = statistics.median(r[0] for r in runs)
                wall = statistics.median(r[1] for r in runs)
                failures = sum(r[2] for r in runs)
                peak = max(r[3] for r in runs)
                rows.append(
                    (name, 1000 * cpu / args.calls, wall, args.calls / wall, failures, peak)
                )
                print(f"  {name}: {rows[-1][1]:.3f} ms CPU/call, {wall:.2f} s", file=sys.stderr)
        finally:
            server.terminate()
            server.wait(10)
    print(
        f"\n{args.calls} calls at concurrency {args.concurrency}, fake server at 0 ms latency "
        f"(separate process), median of {args.reps}; CPU = time.process_time of this process; "
        f"client loop: {'uvloop' if args.uvloop else 'asyncio'}\n"
    )
    print("| variant | CPU ms / call | wall s | calls / s | failures | peak in-flight |")
    print("|---|---|---|---|---|---|")
    for name, cpu_ms, wall, rate, failures, peak in rows:
        print(f"| {name} | {cpu_ms:.3f} | {wall:.2f} | {rate:.0f} | {failures} | {peak} |")


def _run(
    name: str, root: str, tmp: Path, rep: int, args: argparse.Namespace
) -> tuple[float, float, int, int]:
    workdir = tmp / f"{name}-{rep}"
    workdir.mkdir()
    coroutine = variant(name, root, workdir, args.calls, args.concurrency)
    if args.uvloop:
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


if __name__ == "__main__":
    main()
