"""The release gate: policies, verdicts per candidate, reports, accepted baselines."""

from assay.gate.baseline import BaselineChange, mark_baseline
from assay.gate.policy import AppliedPolicy, Policy, PolicyError, Thresholds, load_policy
from assay.gate.report import FORMATS, render
from assay.gate.verdict import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_PASS,
    EXIT_USAGE,
    CandidateVerdict,
    Check,
    GateResult,
    run_gate,
)

__all__ = [
    "EXIT_FAIL",
    "EXIT_INCONCLUSIVE",
    "EXIT_PASS",
    "EXIT_USAGE",
    "FORMATS",
    "AppliedPolicy",
    "BaselineChange",
    "CandidateVerdict",
    "Check",
    "GateResult",
    "Policy",
    "PolicyError",
    "Thresholds",
    "load_policy",
    "mark_baseline",
    "render",
    "run_gate",
]
