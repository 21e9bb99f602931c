"""Benchmark: the recording proxy's added latency and its throughput, on loopback.

Three processes: the fake LLM (``support.fakellm_server``, fixed latency), the proxy
(``create_proxy`` under uvicorn, recording into a fresh SQLite file) and this one, an
open-loop load generator (aiohttp): requests start on a fixed schedule at R per second
whatever the answers do, so a slow proxy shows up as latency, not as a lower rate. At each
rate the same load goes first straight to the fake server, then through the proxy; the
overhead is the difference of the percentiles. The sweep stops at the first rate where the
p99 overhead passes 10 ms (or the rate is no longer reached). At the end the database must
hold exactly one inference per proxied request: zero records lost. The proxy's CPU time per
request is printed too: on a shared machine the p99 swings with other load, the CPU much less.

    .venv/bin/python bench/bench_proxy.py [--rates 200 400 600 800] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import psutil
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "You are a support assistant for an online shop. Answer briefly and precisely."


def body(i: int) -> bytes:
    question = f"Where is my order {i:06d}? It was due on Monday and the tracking has not moved."
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return orjson.dumps({"model": "bench", "messages": messages})


def wait_port(port_file: Path, process: subprocess.Popen[bytes], what: str) -> str:
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit(f"{what} did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{port_file.read_text()}"


def start_fake(tmp: Path, latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tmp / "fake.port"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    config = orjson.dumps({"latency_ms": latency_ms}).decode()
    command = [sys.executable, "-m", "support.fakellm_server", "--port-file", str(port_file),
               "--config", config]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    return process, wait_port(port_file, process, "the fake server")


def start_proxy(tmp: Path, upstream: str, db_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tmp / "proxy.port"
    command = [sys.executable, __file__, "serve-proxy", upstream, db_url, str(tmp / "home"),
               str(port_file)]  # fmt: skip
    process = subprocess.Popen(command)
    return process, wait_port(port_file, process, "the proxy")


def serve_proxy(upstream: str, db_url: str, home: str, port_file: str) -> None:
    """The proxy process: bind first, write the port, then serve (uvloop + httptools)."""
    import socket

    import uvicorn

    from assay.capture import create_proxy
    from assay.store import open_store

    open_store(db_url, home).close()  # migrate before the clock starts
    app = create_proxy(upstream, database_url=db_url, home=home)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on",
                            log_level="error", access_log=False, timeout_keep_alive=60)  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])


async def load(url: str, rate: float, seconds: float, offset: int) -> tuple[list[float], int]:
    """Open loop: request i starts at t0 + i / rate; latencies (ms) of the successes, errors."""
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    headers = {"content-type": "application/json", "authorization": "Bearer bench-key"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int, at: float) -> None:
            nonlocal errors
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            start = time.perf_counter()
            try:
                async with session.post(url, data=body(offset + i), headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append((time.perf_counter() - start) * 1000)
            else:
                errors += 1

        for i in range(min(100, total)):  # warm up: connections, caches
            await one(10_000_000 + i, 0.0)
        latencies.clear()
        errors = 0
        t0 = time.perf_counter() + 0.05
        await asyncio.gather(*(one(i, t0 + i / rate) for i in range(total)))
    return latencies, errors


def _cpu_seconds(pid: int) -> float:
    """The proxy process's CPU time (all threads): unlike latency, barely moved by other load."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def count_inferences(db_url: str, expected: int, timeout: float = 60.0) -> int:
    engine = create_engine(db_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                count = conn.execute(text("SELECT count(*) FROM inferences")).scalar_one()
            if count >= expected or time.monotonic() > deadline:
                return int(count)
            time.sleep(0.2)
    finally:
        engine.dispose()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-proxy":
        serve_proxy(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[200, 400, 600, 800, 1000])
    parser.add_argument("--seconds", type=float, default=10.0, help="per rate and target")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="fake model latency")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="assay-bench-proxy-") as tmpdir:
        tmp = Path(tmpdir)
        db_url = f"sqlite:///{tmp / 'assay.db'}"
        fake, fake_url = start_fake(tmp, args.latency_ms)
        proxy, proxy_url = start_proxy(tmp, fake_url, db_url)
        proxied = warmups = 0
        try:
            for rate in args.rates:
                direct, direct_errors = asyncio.run(
                    load(f"{fake_url}/v1/chat/completions", rate, args.seconds, 0)
                )
                cpu_before = _cpu_seconds(proxy.pid)
                via, via_errors = asyncio.run(
                    load(f"{proxy_url}/v1/chat/completions", rate, args.seconds, 1_000_000)
                )
                cpu_ms = (_cpu_seconds(proxy.pid) - cpu_before) * 1000 / (len(via) + via_errors)
                proxied += len(via) + via_errors
                warmups += min(100, int(rate * args.seconds))
                row = (rate, pct(direct, 0.5), pct(direct, 0.99), pct(via, 0.5), pct(via, 0.99),
                       direct_errors, via_errors, cpu_ms)  # fmt: skip
                rows.append(row)
                print(f"  {rate:.0f}/s: direct p50 {row[1]:.2f} p99 {row[2]:.2f} ms, "
                      f"proxy p50 {row[3]:.2f} p99 {row[4]:.2f} ms, errors {direct_errors}/"
                      f"{via_errors}, proxy CPU {cpu_ms:.2f} ms/req", file=sys.stderr)  # fmt: skip
                if row[4] - row[2] > 10 or via_errors:
                    break
            stored = count_inferences(db_url, proxied + warmups)
        finally:
            proxy.terminate()
            proxy.wait(30)
            fake.terminate()
            fake.wait(10)
        stored = count_inferences(db_url, proxied + warmups, timeout=1)
    print(
        f"\nopen-loop load, {args.seconds:.0f} s per rate and target, fake model latency "
        f"{args.latency_ms:g} ms, separate processes on loopback; added = proxy - direct\n"
    )
    print("| req/s | direct p50 | direct p99 | proxy p50 | proxy p99 | added p50 | added p99 |"
          " errors | proxy CPU ms/req |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for rate, d50, d99, p50, p99, d_err, p_err, cpu_ms in rows:
        print(f"| {rate:.0f} | {d50:.2f} | {d99:.2f} | {p50:.2f} | {p99:.2f} | {p50 - d50:+.2f} "
              f"| {p99 - d99:+.2f} | {d_err + p_err} | {cpu_ms:.2f} |")  # fmt: skip
    print(
        f"\nrecords: {proxied + warmups} proxied requests, {stored} inferences stored, "
        f"{proxied + warmups - stored} lost"
    )
    past = [r for r in rows if r[4] - r[2] > 10]
    if past:
        print(f"p99 overhead passes 10 ms at {past[0][0]:.0f} req/s")
    else:
        print(f"p99 overhead stayed <= 10 ms up to {rows[-1][0]:.0f} req/s")


if __name__ == "__main__":
    main()
