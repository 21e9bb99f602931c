"""A fake OpenAI-compatible pairwise judge, over real HTTP, with a fixed habit per model id.

* ``judge-a``: always prefers position A (the position-biased judge);
* ``judge-cand`` / ``judge-base``: prefers whichever response came from the fake LLM model
  ``cand`` / ``base`` (its replies start with ``[cand]`` / ``[base]``), wherever it stands;
* ``judge-junk``: answers in prose, never the JSON object.

It counts calls per model and keeps every prompt, so tests can check that nothing was paid
twice and what the judge saw.
"""

from __future__ import annotations

import json
import re

from support.scriptedjudge import ScriptedJudgeServer

_BLOCK = re.compile(
    r"<<<RESPONSE_(?P<which>[AB])>>>\n(?P<body>.*?)\n<<<END_RESPONSE_(?P=which)>>>", re.S
)


def preference(model: str, user: str) -> str:
    """What the judge ``model`` answers to a pairwise prompt ``user``."""
    if model == "judge-junk":
        return "Response A reads better to me overall."
    blocks = {m["which"]: m["body"] for m in _BLOCK.finditer(user)}
    if model == "judge-a":
        preferred = "A"
    else:
        wanted = "[cand]" if model == "judge-cand" else "[base]"
        hits = [w for w, body in sorted(blocks.items()) if body.startswith(wanted)]
        preferred = hits[0] if len(hits) == 1 else "tie"
    return json.dumps({"reasoning": f"Compared {sorted(blocks)}.", "preferred": preferred})


class PairJudgeServer(ScriptedJudgeServer):
    def __init__(self) -> None:
        super().__init__(preference)
