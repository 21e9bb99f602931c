"""``assay demo``: the whole workflow on shipped sample traffic and the bundled local model.

A fresh demo home, production traffic imported, live capture through the proxy, a dataset, a
rubric with deterministic tool-call checks and a judge, a run group, the summary, the
verdict, and the web app on the result. See docs/demo.md.

Import from here; the modules behind it are internals that may move. ``run_demo`` and its
types load on first use, so the CLI can read ``DEFAULT_HOME`` without loading the engine.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from assay.demo.home import DEFAULT_HOME, MARKER, prepare_home

if TYPE_CHECKING:
    from assay.demo.run import DemoOptions, DemoResult, run_demo

__all__ = ["DEFAULT_HOME", "MARKER", "DemoOptions", "DemoResult", "prepare_home", "run_demo"]
_LAZY = {"DemoOptions", "DemoResult", "run_demo"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module("assay.demo.run"), name)
    raise AttributeError(f"module 'assay.demo' has no attribute {name!r}")
