"""``assay model add|list|show|remove`` through the CLI runner, on SQLite and Postgres."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from assay.store import Store
from assay.store.models import (
    Dataset,
    EvalDefinition,
    ModelEndpoint,
    Rubric,
    RubricVersion,
    Run,
    RunGroup,
)

FIELDS = [
    "id",
    "name",
    "provider",
    "base_url",
    "model_id",
    "api_key_env",
    "params",
    "options",
    "max_concurrency",
    "rpm",
    "tpm",
    "price_input_per_mtok",
    "price_output_per_mtok",
    "created_at",
]


def add_gpt(cli, *extra: str):  # type: ignore[no-untyped-def]
    return cli(
        "model",
        "add",
        "gpt",
        "--base-url",
        "https://api.openai.com/v1",
        "--model-id",
        "gpt-4o",
        *extra,
    )


def count(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(ModelEndpoint)) or 0


def test_add_then_show_and_list_as_json(cli, store: Store) -> None:
    result = add_gpt(
        cli,
        "--api-key-env",
        "OPENAI_API_KEY",
        "--param",
        "temperature=0",
        "--param",
        "seed=7",
        "--param",
        "logprobs=true",
        "--param",
        'stop=["END"]',
        "--param",
        "user=bob",
        "--param",
        'name="quoted"',
        "--max-concurrency",
        "8",
        "--rpm",
        "500",
        "--tpm",
        "90000",
        "--price-input",
        "2.5",
        "--price-output",
        "10",
    )
    assert result.exit_code == 0, result.stderr
    assert "Added model gpt (openai, gpt-4o)" in result.stderr

    shown = cli("model", "show", "gpt", "--json")
    assert shown.exit_code == 0
    data = json.loads(shown.stdout)
    assert list(data) == FIELDS
    assert data["params"] == {
        "temperature": 0,
        "seed": 7,
        "logprobs": True,
        "stop": ["END"],
        "user": "bob",
        "name": "quoted",
    }
    assert isinstance(data["params"]["temperature"], int)
    assert data | {"id": None, "created_at": None, "params": None} == {
        "id": None,
        "name": "gpt",
        "provider": "openai",
        "base_url": "https://api.openai.com/v1",
        "model_id": "gpt-4o",
        "api_key_env": "OPENAI_API_KEY",
        "params": None,
        "options": {},
        "max_concurrency": 8,
        "rpm": 500,
        "tpm": 90000,
        "price_input_per_mtok": 2.5,
        "price_output_per_mtok": 10.0,
        "created_at": None,
    }
    assert data["created_at"].endswith("Z")

    listed = cli("model", "list", "--json")
    assert [m["name"] for m in json.loads(listed.stdout)] == ["gpt"]
    assert json.loads(listed.stdout)[0] == data


def test_add_anthropic_and_tables(cli) -> None:
    result = cli(
        "model",
        "add",
        "claude",
        "--provider",
        "anthropic",
        "--base-url",
        "https://api.anthropic.com",
        "--model-id",
        "claude-sonnet-4-5",
        "--api-key-env",
        "ANTHROPIC_API_KEY",
    )
    assert result.exit_code == 0, result.stderr
    assert add_gpt(cli, "--rpm", "100", "--price-input", "2.5").exit_code == 0
    table = cli("model", "list")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    claude = next(line for line in lines if "claude" in line)
    gpt = next(line for line in lines if "gpt-4o" in line)
    assert "anthropic" in claude and "ANTHROPIC_API_KEY" in claude
    assert "rpm 100" in gpt and "2.5 / 0" in gpt
    shown = cli("model", "show", "claude")
    assert shown.exit_code == 0
    assert "claude-sonnet-4-5" in shown.stdout and "https://api.anthropic.com" in shown.stdout


def test_add_json_prints_the_model(cli) -> None:
    result = add_gpt(cli, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["name"] == "gpt"


def test_add_warns_when_the_key_variable_is_not_set(cli, monkeypatch) -> None:
    monkeypatch.delenv("ASSAY_TEST_UNSET_KEY", raising=False)
    result = add_gpt(cli, "--api-key-env", "ASSAY_TEST_UNSET_KEY")
    assert result.exit_code == 0
    assert "ASSAY_TEST_UNSET_KEY is not set here" in result.stderr


def test_list_empty(cli) -> None:
    assert cli("model", "list", "--json").stdout.strip() == "[]"
    result = cli("model", "list")
    assert result.exit_code == 0
    assert "No models yet" in result.stderr


BAD_ADDS = [
    (["--api-key-env", "sk-proj-abc123def456"], "takes the NAME of an environment variable"),
    (["--api-key-env", "hf_AbCdEf0123456789"], "Assay stores only the variable name"),
    (["--api-key-env", "a1b2c3d4e5f6g7h8i9j0k1l2m3"], "not the key itself"),
    (["--api-key-env", "MY-KEY"], "[A-Za-z_][A-Za-z0-9_]*"),
    (["--provider", "cohere"], "unknown provider 'cohere': expected one of openai, anthropic"),
    (["--price-input", "-1"], "--price-input must be a price >= 0"),
    (["--price-output", "-0.5"], "--price-output must be a price >= 0"),
    (["--price-output", "nan"], "--price-output must be a price >= 0"),
    (["--max-concurrency", "0"], "--max-concurrency must be a positive integer, got 0"),
    (["--rpm", "-5"], "--rpm must be a positive integer, got -5"),
    (["--tpm", "0"], "--tpm must be a positive integer, got 0"),
    (["--param", "temperature"], "--param 'temperature': expected KEY=VALUE"),
    (["--param", "=1"], "expected KEY=VALUE"),
    (["--param", "messages=[]"], "Assay sets 'messages' itself"),
    (["--param", "seed=1", "--param", "seed=2"], "--param seed is given twice"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_ADDS)
def test_bad_add_is_refused_and_writes_nothing(cli, store: Store, extra, message) -> None:
    result = add_gpt(cli, *extra)
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stderr.startswith("Error:")
    assert count(store) == 0


def test_a_key_given_as_variable_name_is_never_echoed(cli, store: Store) -> None:
    key = "sk-proj-SECRET0123456789abcdef"
    result = add_gpt(cli, "--api-key-env", key)
    assert result.exit_code == 1
    assert key not in result.stderr + result.stdout
    assert count(store) == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/v1", "invalid --base-url 'ftp://host/v1': expected an http(s) URL"),
        ("localhost:8000", "expected an http(s) URL"),
        ("https://", "expected an http(s) URL"),
        ("https://user:pw@host/v1", "no credentials, query or fragment"),
    ],
)
def test_bad_base_url(cli, store: Store, url: str, message: str) -> None:
    result = cli("model", "add", "m", "--base-url", url, "--model-id", "x")
    assert result.exit_code == 1
    assert message in result.stderr
    assert "pw" not in result.stderr
    assert count(store) == 0


@pytest.mark.parametrize("name", ["has space", "_underscore-first", "a/b", "x" * 201])
def test_bad_name(cli, store: Store, name: str) -> None:
    result = cli("model", "add", name, "--base-url", "http://h/v1", "--model-id", "x")
    assert result.exit_code == 1
    assert "invalid model name" in result.stderr
    assert count(store) == 0


def test_name_taken(cli, store: Store) -> None:
    assert add_gpt(cli).exit_code == 0
    result = add_gpt(cli, "--rpm", "5")
    assert result.exit_code == 1
    assert "a model named 'gpt' already exists" in result.stderr
    assert count(store) == 1
    assert json.loads(cli("model", "show", "gpt", "--json").stdout)["rpm"] is None


def test_missing_required_option_is_a_usage_error(cli, store: Store) -> None:
    result = cli("model", "add", "gpt", "--base-url", "http://h/v1")
    assert result.exit_code == 2
    assert "--model-id" in result.stderr
    assert count(store) == 0


def test_show_and_remove_unknown(cli) -> None:
    for command in ("show", "remove"):
        result = cli("model", command, "nope")
        assert result.exit_code == 1
        assert "no model named 'nope' (see `assay model list`)" in result.stderr


def test_remove(cli, store: Store) -> None:
    assert add_gpt(cli).exit_code == 0
    result = cli("model", "remove", "gpt")
    assert result.exit_code == 0
    assert "Removed model gpt" in result.stderr
    assert count(store) == 0


def _eval_fixtures(store: Store) -> tuple[int, int]:
    with store.session() as session:
        dataset = Dataset(name="d", type="eval", provenance="upload")
        rubric = Rubric(name="r")
        session.add_all([dataset, rubric])
        session.flush()
        version = RubricVersion(
            rubric_id=rubric.id, version=1, template="{{ eval_model_response }}"
        )
        session.add(version)
        session.flush()
        return dataset.id, version.id


def _endpoint_id(store: Store, name: str) -> int:
    with store.session() as session:
        return session.scalar(select(ModelEndpoint.id).where(ModelEndpoint.name == name))


@pytest.mark.parametrize("role", ["judge", "baseline", "candidate"])
def test_remove_refuses_a_model_used_by_an_eval(cli, store: Store, role: str) -> None:
    assert add_gpt(cli).exit_code == 0
    assert cli("model", "add", "j", "--base-url", "http://h/v1", "--model-id", "x").exit_code == 0
    dataset_id, version_id = _eval_fixtures(store)
    gpt, judge = _endpoint_id(store, "gpt"), _endpoint_id(store, "j")
    refs = {
        "judge": {"judge_id": gpt},
        "baseline": {"judge_id": judge, "baseline_id": gpt},
        "candidate": {"judge_id": judge, "candidate_ids": [gpt]},
    }[role]
    with store.session() as session:
        session.add(
            EvalDefinition(
                name="nightly", dataset_id=dataset_id, rubric_version_id=version_id, **refs
            )
        )
    result = cli("model", "remove", "gpt")
    assert result.exit_code == 1
    assert "model 'gpt' is still used by eval definition(s) 'nightly'" in result.stderr
    assert "nothing was deleted" in result.stderr
    assert count(store) == 2


def test_remove_refuses_a_model_used_by_a_run(cli, store: Store) -> None:
    assert add_gpt(cli).exit_code == 0
    dataset_id, version_id = _eval_fixtures(store)
    gpt = _endpoint_id(store, "gpt")
    with store.session() as session:
        group = RunGroup(
            dataset_id=dataset_id, rubric_version_id=version_id, judge_id=gpt, sample_size=1, seed=0
        )
        session.add(group)
        session.flush()
        session.add(Run(group_id=group.id, endpoint_id=gpt, role="candidate", label="gpt"))
    result = cli("model", "remove", "gpt")
    assert result.exit_code == 1
    assert "1 run(s)" in result.stderr and "1 run group(s) as judge" in result.stderr
    assert count(store) == 1
