"""A fake OpenAI-compatible judge for calibration tests, over real HTTP, whose answers are a
known function of the output under test (so the expected agreement can be computed).

Model ids:

* ``length``: pointwise; scores the response under test by its length (``length_score``);
  responses whose length is a multiple of 13 get a prose answer (``judge_unparseable``).
* ``oracle``: pointwise; answers ``scores[text]`` (rounded to one decimal), the human score
  the test registered for that exact text; pairwise: prefers the block whose text is in
  ``better`` (tie when neither or both are).
* ``always-a``: pairwise; always prefers position A.
"""

from __future__ import annotations

import json
import re

from assay.rubrics import RESPONSE_END, RESPONSE_START
from support.scriptedjudge import ScriptedJudgeServer

_UNDER_TEST = re.compile(re.escape(RESPONSE_START) + r"\n(.*?)\n" + re.escape(RESPONSE_END), re.S)
_BLOCK = re.compile(
    r"<<<RESPONSE_(?P<which>[AB])>>>\n(?P<body>.*?)\n<<<END_RESPONSE_(?P=which)>>>", re.S
)


def length_score(text: str) -> int | None:
    """The ``length`` judge's score (1-3) for a response text; None: it answers in prose."""
    if len(text) % 13 == 0:
        return None
    return 1 if len(text) < 60 else 2 if len(text) < 120 else 3


class LabelJudge(ScriptedJudgeServer):
    def __init__(self) -> None:
        self.scores: dict[str, float] = {}
        self.better: set[str] = set()
        super().__init__(self.answer)

    def answer(self, model: str, user: str) -> str:
        blocks = {m["which"]: m["body"] for m in _BLOCK.finditer(user)}
        if blocks:
            if model == "always-a":
                preferred = "A"
            else:
                hits = [w for w, text in sorted(blocks.items()) if text in self.better]
                preferred = hits[0] if len(hits) == 1 else "tie"
            return json.dumps({"reasoning": "Compared A and B.", "preferred": preferred})
        found = _UNDER_TEST.search(user)
        text = found.group(1) if found else ""
        if model == "oracle":
            known = self.scores.get(text)
            score: float | None = round(known, 1) if known is not None else None
        else:
            score = length_score(text)
        if score is None:
            return "It reads fine to me."
        return json.dumps({"reasoning": f"Judged {len(text)} characters.", "score": score})
