"""``run_demo``: the whole workflow on a fresh demo home, step by step."""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from shlex import quote

from rich.console import Console
from rich.markup import escape

from assay.demo import steps_eval, steps_traffic
from assay.demo.home import DEFAULT_HOME, prepare_home
from assay.demo.narrate import Narrator
from assay.demo.servers import HOST, reserve_port, serve_forever
from assay.errors import ValidationError
from assay.providers.local_model import INSTALL_HINT, bundled_package
from assay.store import open_store

MAX_ROWS = 200
MAX_LIVE = 50


@dataclass(frozen=True)
class DemoOptions:
    """What ``assay demo`` takes (its options, one for one)."""

    home: Path = DEFAULT_HOME
    rows: int = 30  # eval rows: 30 paired rows is what the default gate policy needs
    live: int = 5  # requests sent through the proxy
    port: int = 8787
    serve: bool = True


@dataclass(frozen=True)
class DemoResult:
    """Where the demo's results are, and the decision it reached."""

    home: Path
    database_url: str
    group_id: int
    decision: str
    seconds: float  # wall time up to the verdict (serving excluded)


@contextmanager
def _demo_environment(home: Path, database_url: str) -> Iterator[None]:
    """``ASSAY_HOME``/``ASSAY_DATABASE_URL`` pointing at the demo for its duration: the local
    model's file and anything reading the environment use the demo home, never the user's
    database (a team Postgres in ``ASSAY_DATABASE_URL`` stays untouched)."""
    saved = {key: os.environ.get(key) for key in ("ASSAY_HOME", "ASSAY_DATABASE_URL")}
    os.environ["ASSAY_HOME"] = str(home)
    os.environ["ASSAY_DATABASE_URL"] = database_url
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_options(options: DemoOptions) -> None:
    """Refuse bad options, and a machine that cannot run the local model, before any work."""
    if not 2 <= options.rows <= MAX_ROWS:
        raise ValidationError(f"--rows must be between 2 and {MAX_ROWS}, got {options.rows}")
    if not 1 <= options.live <= MAX_LIVE:
        raise ValidationError(f"--live must be between 1 and {MAX_LIVE}, got {options.live}")
    if not 0 < options.port < 65536:
        raise ValidationError(f"--port must be between 1 and 65535, not {options.port}")
    if importlib.util.find_spec("llama_cpp") is None:
        raise ValidationError(
            f"the demo runs a local model through llama-cpp-python, which is not installed: "
            f"{INSTALL_HINT} (or `make demo`, which installs it)"
        )
    bundled_package()  # the bundled model's package, or an error saying how to install it


def run_demo(options: DemoOptions, console: Console) -> DemoResult:
    """Run every step, printing as it goes; with ``serve``, end by serving the web app on the
    result until Ctrl-C."""
    check_options(options)
    web_socket = reserve_port(options.port) if options.serve else None
    try:
        home = prepare_home(options.home)
        database_url = f"sqlite:///{home / 'assay.db'}"
        say = Narrator(console, total_steps=8 + options.serve)
        console.print(f"[bold]Assay demo[/] in {escape(str(home))} (a fresh home, SQLite inside)")
        with _demo_environment(home, database_url), open_store(database_url, home) as store:
            steps_traffic.import_production(store, say)
            steps_traffic.add_local_models(store, say)
            steps_traffic.capture_live(store, say, options.live, database_url, home)
            steps_traffic.build_dataset(store, say, options.rows)
            steps_eval.create_rubric_and_test(store, say)
            group_id = steps_eval.run_group(store, say, options.rows)
            steps_eval.show_summary(store, say, group_id)
            decision = steps_eval.decide(store, say, group_id)
            seconds = say.finish()
            result = DemoResult(home, database_url, group_id, decision, seconds)
            console.print(f"\n[bold]Demo finished in {seconds:.0f} s.[/] Explore it with the CLI:")
            where = f"ASSAY_HOME={quote(str(home))} ASSAY_DATABASE_URL={quote(database_url)}"
            console.print(f"  {escape(where)} \\", highlight=False)
            console.print(f"    assay run show {group_id}   # or: assay run rows {group_id}")
            if web_socket is not None:
                _serve(say, web_socket, group_id, database_url, home)
                web_socket = None
        return result
    finally:
        if web_socket is not None:
            web_socket.close()


def _serve(
    say: Narrator, sock: socket.socket, group_id: int, database_url: str, home: Path
) -> None:
    """``assay serve`` on the demo's database, in the foreground until Ctrl-C."""
    from assay.web import create_app

    port = sock.getsockname()[1]
    say.step("Serve the web app")
    say.fact(f"run group page: http://{HOST}:{port}/groups/{group_id}")
    say.note("the web app (assay serve) runs on the demo's database until Ctrl-C")
    serve_forever(create_app(database_url=database_url, home=str(home)), sock)
