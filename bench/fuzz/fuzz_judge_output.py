"""Fuzz the strict reader of judge replies.

    python bench/fuzz/fuzz_judge_output.py -max_total_time=60

``parse_judge_output`` must never raise, and a reply it accepts must carry a score inside the
rubric's range with at most one decimal, and non-empty reasoning. Amplified inputs (a piece
repeated to ~1 MB) make a quadratic regular expression show as a libFuzzer timeout.
"""

from __future__ import annotations

from decimal import Decimal

import atheris

with atheris.instrument_imports(include=["assay"]):
    from assay.rubrics.judge import parse_judge_output

import _common

SEEDS = [
    b'\x00\x01{"reasoning": "Correct and complete.", "score": 8}',
    b'\x00\x01```json\n{"reasoning": "ok", "score": 7.5}\n```',
    b"\x00\x01Reasoning: fine\nScore: 9/10",
    b"\x00\x01**Reasoning**: meh\n**Score: 3**",
    b'\x00\x01{"score": 11, "reasoning": "x"} {"score": 1}',
]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    low = fdp.ConsumeIntInRange(0, 99)
    high = fdp.ConsumeIntInRange(low + 1, 100)
    if fdp.ConsumeBool():
        text = _common.amplified(fdp).decode("utf-8", "replace")
    else:
        text = fdp.ConsumeUnicode(fdp.remaining_bytes())
    parse = parse_judge_output(text, low, high)
    if parse.ok:
        assert parse.score is not None and low <= parse.score <= high, parse
        score = Decimal(str(parse.score))
        assert score == score.quantize(Decimal("0.1")), parse
        assert parse.reasoning and parse.reasoning.strip()
    else:
        assert parse.score is None and parse.error


if __name__ == "__main__":
    _common.run(test_one_input, SEEDS)
