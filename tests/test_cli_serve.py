"""``assay serve``: loopback only, and a real server answering pages and the API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from assay.cli.serve import is_loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_refuses_non_loopback(cli: Any, host: str) -> None:
    result = cli("serve", "--host", host)
    assert result.exit_code == 1
    assert f"refusing to serve on {host}" in result.stderr
    assert "SSH tunnel" in result.stderr


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))


def test_bad_port(cli: Any) -> None:
    result = cli("serve", "--port", "70000")
    assert result.exit_code == 1 and "--port must be between 1 and 65535" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serves_pages_and_api(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "ASSAY_HOME": str(tmp_path), "ASSAY_DATABASE_URL": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "assay", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/groups", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "assay serve did not start"
                time.sleep(0.2)
        assert response.status_code == 200 and "Run groups" in response.text
        spec = httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json").json()
        assert spec["info"]["title"] == "Assay"
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/" in out
    assert (tmp_path / "assay.db").exists()
