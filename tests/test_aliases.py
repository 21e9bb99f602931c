"""Deployment aliases and promotion through the CLI: a real run group on the fake LLM server,
gated for real (one candidate passes, one fails, one is inconclusive), a real store on SQLite
and Postgres."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assay.deploy import alias_history, promote, rollback_alias, set_alias
from assay.errors import NotFoundError, ValidationError
from assay.store import open_store
from tests_helpers import write_rows

ROWS = 12
HINTS = {"base": 6, "good": 9, "bad": 3, "unsure": 9}
# ``unsure`` is as good as ``good`` but its section asks for more rows than the group has.
POLICY = "default:\n  min_paired_rows: 10\ncandidates:\n  unsure:\n    min_paired_rows: 500\n"


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


@pytest.fixture
def gated(cli: Any, fake_llm: Any, tmp_path: Path) -> Any:
    """Run group 1 (baseline ``base``; candidates ``good``, ``bad``, ``unsure``) gated with a
    policy that makes them PASS, FAIL and INCONCLUSIVE; alias ``prod-chat`` -> ``base``."""
    _ok(cli("dataset", "import", str(write_rows(tmp_path / "rows.jsonl", ROWS)), "--name", "m"))
    _ok(cli("rubric", "create", "right", "--template", "correctness"))
    for name in (*HINTS, "judge"):
        _ok(cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", f"id-{name}"))
    for model, hint in HINTS.items():
        fake_llm.configure(f"id-{model}", score_hint=hint)
    _ok(cli("eval", "create", "e", "--dataset", "m", "--rubric", "right", "--judge", "judge",
            "--baseline", "base", "--candidate", "good", "--candidate", "bad",
            "--candidate", "unsure"))  # fmt: skip
    _ok(cli("run", "start", "e"))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    gate = cli("gate", "1", "--policy", str(policy), "--resamples", "1000", "--format", "json")
    assert gate.exit_code == 1, gate.stderr
    decisions = {v["model"]: v["decision"] for v in json.loads(gate.stdout)["verdicts"]}
    assert decisions == {"good": "PASS", "bad": "FAIL", "unsure": "INCONCLUSIVE"}
    _ok(cli("alias", "set", "prod-chat", "base", "--actor", "alice", "--reason", "first"))
    return cli


def _history(cli: Any) -> list[dict[str, Any]]:
    return json.loads(_ok(cli("alias", "history", "prod-chat", "--json")).stdout)


def _target(cli: Any) -> str:
    return json.loads(_ok(cli("alias", "show", "prod-chat", "--json")).stdout)["model"]


def test_promotion_refused_on_fail_and_inconclusive(gated: Any) -> None:
    cli = gated
    bad = cli("promote", "1", "--candidate", "bad", "--alias", "prod-chat")
    assert bad.exit_code == 1
    assert "promotion refused" in bad.stderr and "'bad'" in bad.stderr
    assert "is FAIL (verdict" in bad.stderr and "worse than the baseline" in bad.stderr
    unsure = cli("promote", "1", "--candidate", "unsure", "--alias", "prod-chat")
    assert unsure.exit_code == 1
    assert "is INCONCLUSIVE (verdict" in unsure.stderr and "500" in unsure.stderr
    # Nothing changed, nothing recorded.
    assert _target(cli) == "base"
    assert [e["action"] for e in _history(cli)] == ["set"]


def test_promotion_on_pass_records_who_when_evidence_and_previous(
    gated: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = gated
    monkeypatch.setenv("ASSAY_ACTOR", "ci-pipeline")
    result = _ok(cli("promote", "1", "--candidate", "good", "--alias", "prod-chat"))
    assert "now good (id-good) (was base)" in result.stderr
    assert _target(cli) == "good"
    latest, first = _history(cli)
    assert (first["action"], first["actor"], first["reason"]) == ("set", "alice", "first")
    assert first["previous_model"] is None
    assert latest["action"] == "promote" and latest["actor"] == "ci-pipeline"
    assert (latest["model"], latest["previous_model"]) == ("good", "base")
    assert (latest["group_id"], latest["decision"], latest["forced"]) == (1, "PASS", False)
    assert latest["created_at"] >= first["created_at"]
    evidence = latest["evidence"]
    assert evidence["group_id"] == 1 and evidence["decision"] == "PASS"
    assert evidence["model"] == "good" and evidence["verdict_id"] >= 1
    assert evidence["mean_diff"] == pytest.approx(3.0)
    assert evidence["ci_low"] == pytest.approx(3.0) and evidence["n_pairs"] == ROWS
    assert evidence["policy"]["min_paired_rows"] == 10
    table = _ok(cli("alias", "history", "prod-chat")).stdout
    assert "promote" in table and "group 1 PASS" in table and "ci-pipeline" in table
    listed = _ok(cli("alias", "list")).stdout
    assert "prod-chat" in listed and "promote by ci-pipeline" in listed
    # Promoting again to the same target changes nothing.
    again = _ok(cli("promote", "1", "--candidate", "good", "--alias", "prod-chat"))
    assert "nothing changed" in again.stderr and len(_history(cli)) == 2


def test_force_requires_a_reason_and_is_recorded(gated: Any) -> None:
    cli = gated
    bare = cli("promote", "1", "--candidate", "bad", "--alias", "prod-chat", "--force")
    assert bare.exit_code == 1 and "--force needs --reason" in bare.stderr
    blank = cli("promote", "1", "--candidate", "bad", "--alias", "prod-chat", "--force",
                "--reason", "  ")  # fmt: skip
    assert blank.exit_code == 1 and "--force needs --reason" in blank.stderr
    assert _target(cli) == "base"
    forced = _ok(cli("promote", "1", "--candidate", "unsure", "--alias", "prod-chat", "--force",
                     "--reason", "hotfix for incident 42", "--actor", "bob"))  # fmt: skip
    assert "Forced" in forced.stdout and "INCONCLUSIVE" in forced.stdout
    latest = _history(cli)[0]
    assert (latest["forced"], latest["decision"], latest["actor"]) == (True, "INCONCLUSIVE", "bob")
    assert latest["reason"] == "hotfix for incident 42"
    assert latest["evidence"]["reasons"] and latest["model"] == "unsure"
    assert "FORCED" in _ok(cli("alias", "history", "prod-chat")).stdout


def test_rollback_restores_the_previous_target(gated: Any) -> None:
    cli = gated
    only_set = cli("alias", "rollback", "prod-chat")
    assert only_set.exit_code == 1 and "no previous target to roll back to" in only_set.stderr
    _ok(cli("promote", "1", "--candidate", "good", "--alias", "prod-chat"))
    result = _ok(cli("alias", "rollback", "prod-chat", "--reason", "latency", "--actor", "carol"))
    assert "now base" in result.stderr and "(was good)" in result.stderr
    assert _target(cli) == "base"
    latest = _history(cli)[0]
    assert (latest["action"], latest["model"], latest["previous_model"]) == (
        "rollback", "base", "good"
    )  # fmt: skip
    assert latest["actor"] == "carol" and latest["reason"] == "latency"
    # Rolling back the rollback goes forward again.
    _ok(cli("alias", "rollback", "prod-chat"))
    assert _target(cli) == "good"
    assert [e["action"] for e in _history(cli)] == ["rollback", "rollback", "promote", "set"]


def test_clear_errors(gated: Any, cli: Any, fake_llm: Any) -> None:
    cli = gated
    unknown_alias = cli("promote", "1", "--candidate", "good", "--alias", "prod-caht")
    assert unknown_alias.exit_code == 1
    assert "no alias named 'prod-caht'; did you mean 'prod-chat'?" in unknown_alias.stderr
    unknown_model = cli("alias", "set", "prod-chat", "goood")
    assert unknown_model.exit_code == 1 and "no model named 'goood'" in unknown_model.stderr
    not_candidate = cli("promote", "1", "--candidate", "judge", "--alias", "prod-chat")
    assert not_candidate.exit_code == 1
    assert "not a candidate of run group 1" in not_candidate.stderr
    assert cli("promote", "7", "--candidate", "good", "--alias", "x").exit_code == 1
    assert cli("alias", "history", "nope").exit_code == 1
    assert cli("alias", "set", "bad name!", "base").exit_code == 1
    # A second group, run but never gated.
    _ok(cli("run", "start", "e"))
    ungated = cli("promote", "2", "--candidate", "good", "--alias", "prod-chat")
    assert ungated.exit_code == 1
    assert "no stored gate verdict for 'good'" in ungated.stderr
    assert "run `assay gate 2` first" in ungated.stderr
    same = _ok(cli("alias", "set", "prod-chat", "base"))
    assert "already points at base" in same.stderr
    assert _ok(cli("alias", "list", "--json")).stdout.count('"name"') == 1


def test_services_directly(gated: Any, database_url: str, assay_home: Path) -> None:
    """The Python API behaves like the CLI (the web app uses it)."""
    with open_store(database_url, home=assay_home) as store:
        with pytest.raises(ValidationError, match="is FAIL"):
            promote(store, 1, "bad", "prod-chat", actor="x")
        change = promote(store, 1, "good", "prod-chat", actor="x")
        assert change.changed and change.alias.model == "good"
        assert rollback_alias(store, "prod-chat", actor="y").alias.model == "base"
        created = set_alias(store, "canary", "bad", actor="z")
        assert created.event is not None and created.event.previous_model is None
        assert [e.action for e in alias_history(store, "prod-chat", limit=2)] == [
            "rollback",
            "promote",
        ]
        with pytest.raises(NotFoundError):
            alias_history(store, "missing")


def test_help_explains(cli: Any) -> None:
    for args in (("alias",), ("alias", "set"), ("alias", "history"), ("alias", "rollback"),
                 ("promote",)):  # fmt: skip
        text = _ok(cli(*args, "--help")).stdout
        assert "alias" in text.lower()
    assert "--force" in cli("promote", "--help").stdout
    assert "Deployment aliases" in cli("proxy", "--help").stdout


def test_models_page_and_api_show_aliases(gated: Any, store: Any) -> None:
    from fastapi.testclient import TestClient

    from assay.web import create_app

    cli = gated
    _ok(cli("promote", "1", "--candidate", "bad", "--alias", "prod-chat", "--force",
            "--reason", "<script>window.x=1</script> demo", "--actor", "dana"))  # fmt: skip
    with TestClient(create_app(store)) as client:
        page = client.get("/models")
        assert page.status_code == 200
        assert "Deployment aliases" in page.text and "prod-chat" in page.text
        assert "dana" in page.text and 'href="/groups/1"' in page.text and "forced" in page.text
        assert "<script>window.x=1</script>" not in page.text  # escaped
        listed = client.get("/api/v1/aliases").json()
        assert [(a["name"], a["model"]) for a in listed] == [("prod-chat", "bad")]
        assert listed[0]["last_change"]["decision"] == "FAIL"
        history = client.get("/api/v1/aliases/prod-chat/history").json()
        assert [e["action"] for e in history] == ["promote", "set"]
        assert history[0]["previous_model"] == "base" and history[0]["forced"] is True
        assert client.get("/api/v1/aliases/nope").status_code == 404
