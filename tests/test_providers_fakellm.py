"""The fake LLM server the provider tests rely on: determinism, judge modes, faults, stats."""

from __future__ import annotations

import asyncio

import httpx
import openai
import orjson
import pytest

from support.fakellm_replies import judge_score, reply_text, score_range

JUDGE = 'Grade the response. Reply with a JSON object with "reasoning" and "score" from 1 to 5.'


def chat(fake_llm, model: str, messages: list[dict], **extra: object) -> httpx.Response:
    body = {"model": model, "messages": messages, **extra}
    return fake_llm.http.post("/v1/chat/completions", json=body)


def content(response: httpx.Response) -> str:
    return response.json()["choices"][0]["message"]["content"]


def test_answers_are_a_function_of_model_and_messages(fake_llm) -> None:
    hi = [{"role": "user", "content": "hi"}]
    first, again = content(chat(fake_llm, "a", hi)), content(chat(fake_llm, "a", hi))
    assert first == again == reply_text("a", hi)
    assert content(chat(fake_llm, "b", hi)) != first
    assert content(chat(fake_llm, "a", [{"role": "user", "content": "hello"}])) != first
    stats = fake_llm.stats("a")
    assert (stats["attempts"], stats["unique_requests"], stats["retries"]) == (3, 2, 1)


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("json", lambda text: orjson.loads(text)["score"] == 3),
        ("out_of_range", lambda text: orjson.loads(text)["score"] == 10),
        ("text_score", lambda text: text.endswith("Score: 3")),
        ("unparseable", lambda text: "score" not in text.lower() and "{" not in text),
        ("malformed", lambda text: text.startswith('{"reasoning"') and not text.endswith("}")),
    ],
)
def test_judge_modes(fake_llm, mode: str, check) -> None:
    fake_llm.configure("judge", judge_mode=mode)
    messages = [{"role": "system", "content": JUDGE}, {"role": "user", "content": "SCORE_HINT=3"}]
    text = content(chat(fake_llm, "judge", messages))
    assert check(text), text


def test_judge_scores_are_deterministic_and_in_range() -> None:
    scores = {judge_score(f"response {i}", 1, 5) for i in range(200)}
    assert scores == {1, 2, 3, 4, 5}
    assert judge_score("same", 1, 10) == judge_score("same", 1, 10)
    assert score_range("score from 0 to 3", None) == (0, 3)
    schema = {"properties": {"score": {"minimum": 1, "maximum": 7}}}
    assert score_range("1-10", schema) == (1, 7)
    assert score_range("no range here", None) == (1, 10)


def test_score_hint_makes_the_judge_agree(fake_llm) -> None:
    fake_llm.configure("cand", score_hint=9)
    answer = content(chat(fake_llm, "cand", [{"role": "user", "content": "q"}]))
    assert answer.endswith("SCORE_HINT=9")
    verdict = content(
        chat(
            fake_llm,
            "judge",
            [
                {"role": "system", "content": JUDGE.replace("5", "10")},
                {"role": "user", "content": answer},
            ],
        )
    )
    assert orjson.loads(verdict)["score"] == 9


def test_script_then_rates_and_error_counters(fake_llm) -> None:
    fake_llm.configure("m", script=["429", "500", "503", "400"], retry_after="2")
    messages = [{"role": "user", "content": "x"}]
    statuses = [chat(fake_llm, "m", messages) for _ in range(5)]
    assert [r.status_code for r in statuses] == [429, 500, 503, 400, 200]
    assert statuses[0].headers["retry-after"] == "2"
    assert statuses[0].json()["error"]["type"] == "rate_limit_exceeded"
    stats = fake_llm.stats("m")
    assert stats["errors"] == {"429": 1, "500": 1, "503": 1, "400": 1}
    assert (stats["ok"], stats["attempts"], stats["unique_requests"]) == (1, 5, 1)


def test_error_rates_are_deterministic(fake_llm) -> None:
    fake_llm.configure("m", rate_500=0.3, rate_429=0.2, retry_after="0")
    codes = [
        chat(fake_llm, "m", [{"role": "user", "content": str(i)}]).status_code for i in range(200)
    ]
    fake_llm.reset()
    fake_llm.configure("m", rate_500=0.3, rate_429=0.2, retry_after="0")
    again = [
        chat(fake_llm, "m", [{"role": "user", "content": str(i)}]).status_code for i in range(200)
    ]
    assert codes == again
    assert 20 < codes.count(500) < 100 and 10 < codes.count(429) < 70


def test_reset_closes_the_connection(fake_llm) -> None:
    fake_llm.configure("m", script=["reset"])
    with pytest.raises(httpx.RemoteProtocolError):
        chat(fake_llm, "m", [{"role": "user", "content": "x"}])
    assert chat(fake_llm, "m", [{"role": "user", "content": "x"}]).status_code == 200


def test_unknown_config_is_refused(fake_llm) -> None:
    with pytest.raises(ValueError, match="unknown config fields"):
        fake_llm.configure("m", latency=5)
    with pytest.raises(ValueError, match="unknown script outcomes"):
        fake_llm.configure("m", script=["418"])


def test_models_and_streaming_through_the_sdk(fake_llm) -> None:
    fake_llm.configure("listed")

    async def go() -> tuple[list[str], str]:
        async with openai.AsyncOpenAI(base_url=fake_llm.base_url, api_key="x") as client:
            models = [m.id async for m in client.models.list()]
            stream = await client.chat.completions.create(
                model="s",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return models, text

    models, text = asyncio.run(go())
    assert "listed" in models
    assert text == reply_text("s", [{"role": "user", "content": "hi"}])
