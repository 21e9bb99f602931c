"""Gate policy files: YAML and TOML, validation errors that name the file and field, and how
defaults, the ``default`` section and per-candidate sections combine."""

from __future__ import annotations

from pathlib import Path

import pytest

from assay.gate.policy import (
    Policy,
    PolicyError,
    load_policy,
    protected_keys,
    resolve,
    unknown_candidates,
)

YAML = """\
default:
  margin: 0.3
  min_paired_rows: 50
  protected_slices: [task, difficulty]
candidates:
  cand:
    min_improvement: 0.2
    max_failure_rate: 0.1
    max_noise_share: 0.5
"""

TOML = """\
[default]
margin = 0.3
min_paired_rows = 50
protected_slices = ["task", "difficulty"]

[candidates.cand]
min_improvement = 0.2
max_failure_rate = 0.1
max_noise_share = 0.5
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("name", "text"), [("p.yaml", YAML), ("p.yml", YAML), ("p.toml", TOML)])
def test_yaml_and_toml_read_the_same(tmp_path: Path, name: str, text: str) -> None:
    policy = load_policy(_write(tmp_path, name, text))
    assert policy.default.margin == 0.3
    assert policy.default.min_paired_rows == 50
    assert policy.candidates["cand"].min_improvement == 0.2
    applied = resolve(policy, "cand", 1, 10, "p")
    # The candidate's section overrides field by field; the rest comes from default.
    assert applied.margin == 0.3 and applied.margin_from == "policy"
    assert applied.min_paired_rows == 50
    assert applied.min_improvement == 0.2
    assert applied.max_failure_rate == 0.1
    assert applied.max_failure_increase == 0.05  # built-in default
    assert applied.protected_slices == ["task", "difficulty"]
    assert applied.max_noise_share == 0.5
    other = resolve(policy, "someone-else", 1, 10, "p")
    assert other.min_improvement is None and other.max_failure_rate == 0.2
    assert protected_keys(policy) == ["task", "difficulty"]
    assert unknown_candidates(policy, ["base", "cand"]) == []
    assert unknown_candidates(policy, ["base"]) == ["cand"]


def test_defaults_scale_the_margin_with_the_rubric_range() -> None:
    assert resolve(None, "x", 1, 10, "defaults").margin == pytest.approx(0.45)
    assert resolve(None, "x", 0, 100, "defaults").margin == pytest.approx(5.0)
    applied = resolve(Policy(), "x", 1, 5, "defaults")
    assert applied.margin == pytest.approx(0.2)
    assert applied.margin_from == "5% of the rubric range (1-5)"
    assert (applied.min_paired_rows, applied.max_failure_rate, applied.max_failure_increase) == (
        30,
        0.2,
        0.05,
    )
    assert applied.protected_slices == [] and applied.max_noise_share is None


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_policy(_write(tmp_path, "p.yaml", "")) == Policy()
    assert load_policy(_write(tmp_path, "p.toml", "")) == Policy()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "p.yaml",
            "default:\n  margn: 0.3\n",
            "default.margn: unknown key; known keys: margin, min_improvement",
        ),
        (
            "p.toml",
            "[default]\nmargn = 0.3\n",
            "default.margn: unknown key; known keys: margin, min_improvement",
        ),
        ("p.yaml", "defaults:\n  margin: 1\n", "defaults: unknown key; known keys: default, "),
        (
            "p.yaml",
            "candidates:\n  cand:\n    margin: lots\n",
            "candidates.cand.margin: expected a valid number, got 'lots'",
        ),
        (
            "p.toml",
            '[candidates.cand]\nmin_paired_rows = "many"\n',
            "candidates.cand.min_paired_rows: expected a valid integer, got 'many'",
        ),
        (
            "p.yaml",
            "default:\n  protected_slices: task\n",
            "default.protected_slices: expected a valid list, got 'task'",
        ),
        (
            "p.yaml",
            "default:\n  max_failure_rate: 1.5\n",
            "default.max_failure_rate: input should be less than or equal to 1",
        ),
        ("p.yaml", "default:\n  margin: -1\n", "default.margin: input should be greater"),
        ("p.yaml", "default:\n  min_paired_rows: 1\n", "default.min_paired_rows: input should"),
        ("p.yaml", "- margin: 1\n", "expected a mapping with 'default' and/or 'candidates'"),
        ("p.yaml", "default: [1, 2\n", "line 2, column 1: invalid YAML"),
        ("p.toml", "[default\nmargin = 1\n", "invalid TOML"),
        ("p.json", "{}", "unknown format '.json'; use a .yaml, .yml or .toml file"),
        (
            "p.yaml",
            "default:\n  require_calibration: true\n",
            "default.require_calibration: unknown key",
        ),
    ],
)
def test_errors_name_the_file_and_field(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(PolicyError) as error:
        load_policy(path)
    assert str(error.value).startswith(f"policy file {path}")
    assert message in str(error.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")


def test_calibration_is_not_a_policy_key_until_calibration_exists(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.yaml", "default:\n  require_calibration: false\n")
    with pytest.raises(PolicyError, match="require_calibration: unknown key"):
        load_policy(path)
