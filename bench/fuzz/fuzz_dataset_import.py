"""Fuzz one line of a dataset JSONL file through the importer's parser, then the encoder the
store writes it with.

    python bench/fuzz/fuzz_dataset_import.py -max_total_time=60

Accepted outcomes: a ``LineError`` (the line is skipped with that reason) or a row that the
database can store: every JSON column encodes with the store's serializer (orjson), holds no
NUL character (Postgres refuses it), and the content hash is a sha256. Anything else raised
is a crash, written to bench/results/fuzz/.
"""

from __future__ import annotations

import atheris
import orjson

with atheris.instrument_imports(include=["assay"]):
    from assay.datasets.formats import LineError, line_format, load_line, parse_object

import _common

SEEDS = [
    b'{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Yo"}]}',
    b'{"id": 1, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}], '
    b'"tools": [{"type": "function", "function": {"name": "f"}}], "metadata": {"k": 1}}',
    b'{"request": {"model": "m", "messages": [{"role": "user", "content": "q"}]}, '
    b'"response": {"choices": [{"message": {"role": "assistant", "content": "a"}}]}}',
    b'{"request": {"system": "s", "messages": [{"role": "user", "content": [{"type": "text", '
    b'"text": "q"}]}]}, "response": {"type": "message", "content": [{"type": "tool_use", '
    b'"id": "t", "name": "f", "input": {}}]}}',
]


def line_from(data: bytes) -> bytes:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        return fdp.ConsumeBytes(fdp.remaining_bytes())
    if mode == 1:
        return _common.amplified(fdp)
    value = _common.json_value(fdp)
    try:
        line = orjson.dumps(
            {"messages": value}
            if mode == 2
            else {"request": value, "response": _common.json_value(fdp)}
        )
    except orjson.JSONEncodeError:  # deeper than orjson writes: not a line a file can hold
        return b"{}"
    return line


def test_one_input(data: bytes) -> None:
    line = line_from(data)
    try:
        obj = load_line(line)
        row = parse_object(obj, line_format(obj))
    except LineError as exc:
        assert exc.reason
        return
    for column in (row.messages, row.tools, row.reference, row.params, row.metadata):
        encoded = orjson.dumps(column)
        assert b"\\u0000" not in encoded, "a NUL would reach the database"
    assert len(row.content_hash) == 64


if __name__ == "__main__":
    _common.run(test_one_input, SEEDS)
