"""Running an attack in a forked child: a hang fails the test instead of stalling the suite,
and a memory cap turns a runaway allocation into an error instead of an out-of-memory kill."""

from __future__ import annotations

import multiprocessing
import resource
from collections.abc import Callable
from typing import Any

import pytest

HANG_SECONDS = 60
"""A child still running after this long is hung, not slow (no timing is asserted)."""


def in_child(function: Callable[[], Any], memory_headroom: int | None = None) -> Any:
    """``function()`` run in a forked child: its result, or its exception re-raised here.
    With ``memory_headroom``, the child may map at most that many bytes more than the parent."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()

    def child() -> None:
        if memory_headroom is not None:
            limit = mapped + memory_headroom
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            send.send((True, function()))
        except BaseException as exc:  # sent back to be re-raised in the test
            send.send((False, exc))

    process = context.Process(target=child)
    process.start()
    try:
        if not receive.poll(HANG_SECONDS):
            pytest.fail(f"still running after {HANG_SECONDS} s: a hang")
        ok, value = receive.recv()
    finally:
        process.kill()
        process.join()
    if not ok:
        raise value
    return value
