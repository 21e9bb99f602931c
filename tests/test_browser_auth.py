"""Signing in and out in a real browser (Chromium through Playwright, the app served by
uvicorn): the redirect to the sign-in page, a refused token, the session cookie out of
scripts' reach, the way back to the page asked for, signing out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from assay.auth import create_token
from assay.store import Store
from support.browser import *  # noqa: F403
from support.browser import screenshot


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the token queries are covered on both backends by test_web_auth.py."""
    return f"sqlite:///{tmp_path / 'assay.db'}"


@pytest.fixture
def token(store: Store) -> str:
    return create_token(store, "alice").token


def test_sign_in_and_out(token: str, live_app: Any, page: Any) -> None:
    page.goto(f"{live_app.url}/datasets")
    assert page.url == f"{live_app.url}/login?next=/datasets"
    expect(page.locator("h1")).to_have_text("Sign in")
    screenshot(page, "login")

    page.fill("input[name=token]", "not-the-token-0123456789")
    page.click("button[type=submit]")
    expect(page.locator("#login-result")).to_contain_text("That token is not valid")
    assert page.url.endswith("/login?next=/datasets")

    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_app.url}/datasets")
    expect(page.locator("h1")).to_have_text("Datasets")
    expect(page.locator("#sign-out")).to_be_visible()
    screenshot(page, "login-signed-in")
    assert token not in page.evaluate("document.cookie")  # HttpOnly: no script sees it
    session = next(c for c in page.context.cookies() if c["name"] == "assay_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["expires"] == -1
    page.goto(f"{live_app.url}/api/v1/models")  # the API answers the signed-in browser
    assert page.locator("body").inner_text().strip() == "[]"

    page.goto(f"{live_app.url}/models")
    page.click("#sign-out")
    page.wait_for_url(f"{live_app.url}/login")
    assert not [c for c in page.context.cookies() if c["name"] == "assay_session"]
    page.goto(f"{live_app.url}/groups")
    assert page.url == f"{live_app.url}/login?next=/groups"
