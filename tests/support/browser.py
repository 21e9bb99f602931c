"""Browser tests: the web app served for real (uvicorn, loopback) and Debian's Chromium driven
by Playwright.

``live_app`` serves ``create_app(store)`` over the test's store; ``page`` is a fresh Chromium
page that fails the test on any console error (a CSP violation, a script error) and
``screenshot(page, name)`` saves a PNG under ``ASSAY_SCREENSHOTS`` (default
``build/screenshots``) to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assay.store import Store
from assay.web import create_app
from support.served import Served

__all__ = ["browser", "chromium_path", "live_app", "page", "screenshot"]

SCREENSHOTS = Path(os.environ.get("ASSAY_SCREENSHOTS", "build/screenshots"))


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class LiveApp(Served):
    """The web app over ``store``, served on a free loopback port."""

    def __init__(self, store: Store) -> None:
        super().__init__(create_app(store))


@pytest.fixture
def live_app(store: Store) -> Iterator[LiveApp]:
    app = LiveApp(store)
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Per test: Playwright's sync API keeps an event loop running in the main thread while it
    is open, and tests build their data first through the CLI, which runs its own loop. So
    list the fixtures that build data before ``page`` (or ``browser``) in a test's arguments."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no Chromium at /usr/bin/chromium; .ci/run must install it")
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.console_problems = problems  # tests may inspect; the fixture checks at the end
    try:
        yield page
    finally:
        context.close()
    expected = [p for p in problems if "Failed to load resource" in p and "404" in p]
    unexpected = [p for p in problems if p not in expected]
    assert not unexpected, f"browser console errors: {unexpected}"


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
