"""Traffic capture: the recording proxy and the recorder that stores what it sees.

``create_proxy`` builds the ASGI app ``assay proxy`` serves; ``replay_spool`` brings records
spooled during a store outage home (the running proxy also does it by itself).
"""

from __future__ import annotations

from pathlib import Path

from assay.capture.proxy import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_UPSTREAMS, CaptureProxy
from assay.capture.recorder import Recorder, default_spool_path, replay_spool, write_records
from assay.capture.records import Capture, build_record
from assay.config import load_settings
from assay.store import open_store

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_UPSTREAMS",
    "Capture",
    "CaptureProxy",
    "Recorder",
    "build_record",
    "create_proxy",
    "default_spool_path",
    "replay_spool",
    "write_records",
]


def create_proxy(
    upstream: str | None = None,
    *,
    database_url: str | None = None,
    home: str | Path | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    batch_size: int = 200,
    retry_seconds: float = 5.0,
) -> CaptureProxy:
    """The proxy app recording into the store the arguments (or ``ASSAY_*``) choose.

    The store is opened lazily by the recorder's thread, so the proxy starts and forwards
    even when the database is down; records then wait in ``<home>/spool/inferences.jsonl``.
    """
    settings = load_settings(home=home, database_url=database_url)
    recorder = Recorder(
        default_spool_path(settings.home),
        lambda: open_store(settings.database_url, settings.home),
        batch_size=batch_size,
        retry_seconds=retry_seconds,
    )
    return CaptureProxy(recorder, upstream, max_request_bytes=max_request_bytes)
