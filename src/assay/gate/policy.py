"""Gate policies: the thresholds a candidate must meet, read from a YAML or TOML file.

A policy has a ``default`` section (applies to every candidate) and optional per-candidate
sections under ``candidates`` (by model name) that override it field by field::

    default:
      margin: 0.5               # points: PASS needs the CI's lower bound above -margin
      min_paired_rows: 30
      protected_slices: [task]
    candidates:
      my-finetune:
        min_improvement: 0.2    # this one must be better, not just not worse

Every field is optional; without a file the defaults below apply. Unknown keys are an error:
a misspelt threshold silently ignored is a gate that does not gate.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from assay.errors import ValidationError
from assay.gate.calibration import CalibrationRequirement

DEFAULT_MARGIN_FRACTION = 0.05
"""Without an explicit margin: 5 % of the rubric's range (0.45 points on 1-10)."""
DEFAULT_MIN_PAIRED_ROWS = 30
DEFAULT_MAX_FAILURE_RATE = 0.2
DEFAULT_MAX_FAILURE_INCREASE = 0.05
DEFAULT_WIN_RATE_MARGIN = 0.05


class PolicyError(ValidationError):
    """A policy file could not be read or is invalid; nothing was evaluated or stored."""


class Thresholds(BaseModel):
    """One policy section as written: every field optional, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    margin: float | None = Field(None, ge=0)
    min_improvement: float | None = Field(None, ge=0)
    max_failure_rate: float | None = Field(None, ge=0, le=1)
    max_failure_increase: float | None = Field(None, ge=0, le=1)
    min_paired_rows: int | None = Field(None, ge=2)
    protected_slices: list[str] | None = None
    max_noise_share: float | None = Field(None, ge=0)
    win_rate_margin: float | None = Field(None, ge=0, le=0.5)
    calibration: CalibrationRequirement | None = None  # see gate/calibration.py


class Policy(BaseModel):
    """A whole policy file: defaults for all candidates, overrides per candidate model."""

    model_config = ConfigDict(extra="forbid", strict=True)

    default: Thresholds = Field(default_factory=Thresholds)
    candidates: dict[str, Thresholds] = Field(default_factory=dict)


class AppliedPolicy(BaseModel):
    """The thresholds actually applied to one candidate, every value resolved."""

    source: str  # the policy file, or "defaults"
    margin: float  # in score points
    margin_from: str  # "policy" or "5% of the rubric range (1-10)"
    min_improvement: float | None
    max_failure_rate: float
    max_failure_increase: float
    min_paired_rows: int
    protected_slices: list[str]
    max_noise_share: float | None
    # Pairwise rubrics: PASS needs the win rate's lower bound at or above 0.5 - this margin.
    win_rate_margin: float = DEFAULT_WIN_RATE_MARGIN
    # A calibrated judge required before any PASS (gate/calibration.py); None: not required.
    calibration: CalibrationRequirement | None = None


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file (``.yaml``/``.yml`` or ``.toml``)."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise PolicyError(
            f"policy file {path}: unknown format {suffix or '(no extension)'!r}; "
            "use a .yaml, .yml or .toml file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"policy file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy file {path} could not be read: {exc}") from None
    data = _parse_toml(path, text) if suffix == ".toml" else _parse_yaml(path, text)
    if data is None:
        data = {}  # an empty file: all defaults
    if not isinstance(data, dict):
        raise PolicyError(
            f"policy file {path}: expected a mapping with 'default' and/or 'candidates' "
            f"at the top level, got {_kind(data)}"
        )
    try:
        policy = Policy.model_validate(data)
    except pydantic.ValidationError as exc:
        raise PolicyError(f"policy file {path}: {_describe(exc)}") from None
    return policy


def _parse_yaml(path: Path, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise PolicyError(f"policy file {path}{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path}: invalid YAML: {exc}") from None


def _parse_toml(path: Path, text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path}: invalid TOML: {exc}") from None


def _describe(exc: pydantic.ValidationError) -> str:
    """Pydantic's errors as ``field.path: what is wrong`` lines, known keys listed for typos."""
    messages = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            known = Thresholds.model_fields if len(error["loc"]) > 1 else Policy.model_fields
            messages.append(f"{loc}: unknown key; known keys: {', '.join(known)}")
        elif kind in ("float_parsing", "float_type", "int_parsing", "int_type", "bool_parsing",
                      "bool_type", "list_type", "string_type", "dict_type", "model_type",
                      "int_from_float"):  # fmt: skip
            expected = error["msg"].removeprefix("Input should be ").lower()
            messages.append(f"{loc}: expected {expected}, got {_kind(error['input'])}")
        else:
            messages.append(f"{loc}: {error['msg'].lower()}")
    return "; ".join(messages)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"{value!r}"


def resolve(
    policy: Policy | None, model: str, score_min: int, score_max: int, source: str
) -> AppliedPolicy:
    """The thresholds for one candidate: its section over ``default`` over built-in defaults."""
    policy = policy or Policy()
    section = policy.default.model_dump(exclude_none=True)
    override = policy.candidates.get(model)
    if override is not None:
        section.update(override.model_dump(exclude_none=True))
    if "margin" in section:
        margin, margin_from = float(section["margin"]), "policy"
    else:
        margin = round(DEFAULT_MARGIN_FRACTION * (score_max - score_min), 10)
        margin_from = f"5% of the rubric range ({score_min}-{score_max})"
    return AppliedPolicy(
        source=source,
        margin=margin,
        margin_from=margin_from,
        min_improvement=section.get("min_improvement"),
        max_failure_rate=section.get("max_failure_rate", DEFAULT_MAX_FAILURE_RATE),
        max_failure_increase=section.get("max_failure_increase", DEFAULT_MAX_FAILURE_INCREASE),
        min_paired_rows=section.get("min_paired_rows", DEFAULT_MIN_PAIRED_ROWS),
        protected_slices=list(dict.fromkeys(section.get("protected_slices", []))),
        max_noise_share=section.get("max_noise_share"),
        win_rate_margin=section.get("win_rate_margin", DEFAULT_WIN_RATE_MARGIN),
        calibration=section.get("calibration"),
    )


def protected_keys(policy: Policy | None) -> list[str]:
    """Every slice key some section protects: the comparison must compute them all."""
    if policy is None:
        return []
    keys: list[str] = []
    for section in [policy.default, *policy.candidates.values()]:
        keys.extend(section.protected_slices or [])
    return list(dict.fromkeys(keys))


def unknown_candidates(policy: Policy | None, models: list[str]) -> list[str]:
    """Candidate sections naming no arm of the group: probably a typo, worth a warning."""
    if policy is None:
        return []
    return sorted(set(policy.candidates) - set(models))
