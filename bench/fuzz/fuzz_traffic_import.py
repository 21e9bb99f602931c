"""Fuzz one line of a traffic log through ``assay traffic import``'s parser, then check the
row against the columns it is written to.

    python bench/fuzz/fuzz_traffic_import.py -max_total_time=60

Accepted outcomes: a ``LineError`` (the line is skipped with that reason) or an inference
row every column of which the database takes: strings within their VARCHAR lengths, integers
within a Postgres INTEGER, JSON that encodes without NUL, a uid of at most 36 characters.
"""

from __future__ import annotations

from datetime import datetime

import atheris
import orjson

with atheris.instrument_imports(include=["assay"]):
    from assay.datasets.formats import LineError, load_line
    from assay.traffic.importer import _tags_of, to_inference

import _common

SEEDS = [
    b'{"request": {"model": "gpt", "messages": [{"role": "system", "content": "s"}]}, '
    b'"response": {"object": "chat.completion", "usage": {"prompt_tokens": 3}}, '
    b'"started_at": "2026-01-01T00:00:00Z", "metadata": {"a": "b"}, "duration_ms": 5}',
    b'{"id": "b1", "custom_id": "c1", "response": {"status_code": 200, "body": '
    b'{"object": "chat.completion", "created": 1767225600, "model": "m"}}, "error": null}',
    b'{"custom_id": "c2", "response": null, "error": {"message": "rate limited"}}',
    b'{"request": {"system": "s", "messages": []}, "response": {"type": "message", '
    b'"content": []}, "provider": "anthropic", "uid": "u1"}',
]
TEXT = {"environment": 200, "task": 200, "provider": 50, "model": 200, "method": 10, "path": 200}


def line_from(data: bytes) -> bytes:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        return fdp.ConsumeBytes(fdp.remaining_bytes())
    if mode == 1:
        return _common.amplified(fdp)
    value = _common.json_value(fdp)
    outer = {"request": value} if mode == 2 else {"custom_id": "c", "response": value}
    if isinstance(value, dict) and fdp.ConsumeBool():
        outer = {**value, **outer}  # inference fields at the top level
    try:
        return orjson.dumps(outer)
    except orjson.JSONEncodeError:
        return b"{}"


def test_one_input(data: bytes) -> None:
    line = line_from(data)
    try:
        row = to_inference(load_line(line), line)
    except LineError as exc:
        assert exc.reason
        return
    assert isinstance(row["uid"], str) and len(row["uid"]) <= 36
    assert isinstance(row["started_at"], datetime)
    for column, limit in TEXT.items():
        value = row[column]
        assert (value is None and column == "model") or (
            isinstance(value, str) and len(value) <= limit
        )
    for column in ("status_code", "input_tokens", "output_tokens"):
        value = row[column]
        assert value is None or (type(value) is int and 0 <= value < 2**31), (column, value)
    for column in ("request_body", "response_body", "metadata"):
        assert b"\\u0000" not in orjson.dumps(row[column])
    for key, value in _tags_of(row["metadata"]).items():
        assert len(key) <= 200 and len(value) <= 1000


if __name__ == "__main__":
    _common.run(test_one_input, SEEDS)
