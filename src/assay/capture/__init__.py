"""Traffic capture: the recording proxy and the recorder that stores what it sees.

``create_proxy`` builds the ASGI app ``assay proxy`` serves; ``replay_spool`` brings records
spooled during a store outage home (the running proxy also does it by itself).
"""

from __future__ import annotations

from pathlib import Path

from assay.capture.guard import UpstreamGuard
from assay.capture.proxy import (
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_UPSTREAMS,
    CaptureProxy,
)
from assay.capture.recorder import (
    DEFAULT_MAX_QUEUED,
    Recorder,
    default_spool_path,
    replay_spool,
    write_records,
)
from assay.capture.records import Capture, build_record
from assay.capture.routing import AliasRouter
from assay.config import load_settings
from assay.store import Store, open_store

__all__ = [
    "DEFAULT_MAX_QUEUED",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_UPSTREAMS",
    "Capture",
    "CaptureProxy",
    "Recorder",
    "UpstreamGuard",
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
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    batch_size: int = 200,
    retry_seconds: float = 5.0,
    max_queued: int = DEFAULT_MAX_QUEUED,
    guard_upstream: bool = False,
) -> CaptureProxy:
    """The proxy app recording into the store the arguments (or ``ASSAY_*``) choose.

    The store is opened lazily by the recorder's thread, so the proxy starts and forwards
    even when the database is down; records then wait in ``<home>/spool/inferences.jsonl``.
    ``guard_upstream`` (for a non-loopback bind): ``x-assay-upstream`` needs ``x-assay-token``.
    """
    settings = load_settings(home=home, database_url=database_url)

    def opener() -> Store:
        return open_store(settings.database_url, settings.home)

    recorder = Recorder(
        default_spool_path(settings.home),
        opener,
        batch_size=batch_size,
        retry_seconds=retry_seconds,
        max_queued=max_queued,
    )
    return CaptureProxy(
        recorder,
        upstream,
        max_request_bytes=max_request_bytes,
        max_response_bytes=max_response_bytes,
        upstream_guard=UpstreamGuard(opener) if guard_upstream else None,
        router=AliasRouter(opener),
    )
