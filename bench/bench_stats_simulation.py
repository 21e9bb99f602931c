"""Benchmark: do Assay's paired statistics mean what they say, and how fast are they?

Simulates many eval runs where the true difference between candidate and baseline is known,
runs :func:`assay.stats.paired.paired_comparison` on each exactly as the gate does (10,000
bootstrap resamples, 95 % level), and reports:

1. coverage: how often the 95 % CI contains the true mean difference (should be ~95 %), the
   mean CI width, and how often the test rejects at p < 0.05 (the false positive rate at a
   true difference of 0, the power elsewhere) next to the power formula's prediction;
2. non-inferiority: how often the rule "CI lower bound > -margin" passes a candidate that is
   truly worse by 2x the margin (must be <= 5 %), exactly at the margin (~2.5 %), equal, or
   better, next to :func:`assay.stats.power.noninferiority_power`'s prediction;
3. timing of paired_comparison at 10,000 rows x 10,000 resamples, and of judge_noise.

The data model (per row): a row quality q ~ N(7, 1.5) shared by both arms (some prompts are
harder), a candidate-specific deviation u ~ N(0, 0.6) (the candidate is better on some rows
and worse on others), independent judge noise e ~ N(0, 1) per judgment, and integer scores
clip(round(q + e), 1, 10) for the baseline, clip(round(q + shift + u + e), 1, 10) for the
candidate. The "true difference" is the expected score difference E[candidate] - E[baseline],
computed exactly from the normal distribution (the shift is solved to hit each target).

    .venv/bin/python bench/bench_stats_simulation.py [--trials 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from assay.stats.noise import judge_noise
from assay.stats.paired import paired_comparison
from assay.stats.power import noninferiority_power, paired_power

ROW_MEAN, ROW_SD, MODEL_SD, JUDGE_SD = 7.0, 1.5, 0.6, 1.0
SIZES = (50, 200, 1000)
COVERAGE_TARGETS = (-1.0, -0.5, 0.0, 0.5, 1.0)
MARGIN = 0.25
NI_TARGETS = (-2 * MARGIN, -MARGIN, 0.0, MARGIN)
BASE_SEED = 2025


@dataclass(frozen=True)
class Scenario:
    target: float
    n: int
    model_sd: float  # 0: the arms are exchangeable (a pure null)

    @property
    def label(self) -> str:
        return "exchangeable" if self.model_sd == 0 else "row-varying"


def expected_score(mean: float, sd: float) -> float:
    """E[clip(round(X), 1, 10)] for X ~ N(mean, sd): 1 + the thresholds 1.5 .. 9.5 exceeded."""
    return 1 + sum(stats.norm.sf((k + 0.5 - mean) / sd) for k in range(1, 10))


def shift_for(target: float, model_sd: float) -> float:
    base = expected_score(ROW_MEAN, math.hypot(ROW_SD, JUDGE_SD))
    cand_sd = math.sqrt(ROW_SD**2 + model_sd**2 + JUDGE_SD**2)
    return optimize.brentq(lambda s: expected_score(ROW_MEAN + s, cand_sd) - base - target, -5, 5)


def simulate(shift: float, model_sd: float, n: int, rng: np.random.Generator) -> tuple:
    quality = rng.normal(ROW_MEAN, ROW_SD, n)
    deviation = rng.normal(0, model_sd, n) if model_sd else 0.0
    baseline = np.clip(np.round(quality + rng.normal(0, JUDGE_SD, n)), 1, 10)
    candidate = np.clip(np.round(quality + shift + deviation + rng.normal(0, JUDGE_SD, n)), 1, 10)
    return baseline, candidate


def true_sd_diff(shift: float, model_sd: float) -> float:
    """The population SD of the per-row difference, by Monte Carlo on 4 million rows."""
    baseline, candidate = simulate(shift, model_sd, 4_000_000, np.random.default_rng(7))
    return float(np.std(candidate - baseline))


def run_cell(args: tuple[int, Scenario, int]) -> dict:
    index, scenario, trials = args
    shift = shift_for(scenario.target, scenario.model_sd)
    rng = np.random.default_rng(np.random.SeedSequence([BASE_SEED, index]))
    covered = rejected = passed = 0
    widths = []
    started = time.perf_counter()
    for trial in range(trials):
        result = paired_comparison(*simulate(shift, scenario.model_sd, scenario.n, rng), seed=trial)
        covered += result.ci_low <= scenario.target <= result.ci_high
        rejected += result.p_value is not None and result.p_value < 0.05
        passed += result.ci_low > -MARGIN
        widths.append(result.ci_high - result.ci_low)
    sd = true_sd_diff(shift, scenario.model_sd)
    return {
        "scenario": scenario,
        "sd": sd,
        "coverage": covered / trials,
        "width": statistics.fmean(widths),
        "rejected": rejected / trials,
        "predicted_power": paired_power(scenario.target, sd, scenario.n),
        "ni_pass": passed / trials,
        "ni_predicted": noninferiority_power(sd, MARGIN, scenario.target, scenario.n),
        "seconds": time.perf_counter() - started,
    }


def timing() -> list[tuple[str, float]]:
    """Median of 5 calls, after one warm-up call."""
    rng = np.random.default_rng(1)
    quality = rng.normal(ROW_MEAN, ROW_SD, 10_000)
    integer = (
        np.clip(np.round(quality + rng.normal(0, 1, 10_000)), 1, 10).tolist(),
        np.clip(np.round(quality + rng.normal(0.2, 1, 10_000)), 1, 10).tolist(),
    )
    continuous = (
        (quality + rng.normal(0, 1, 10_000)).tolist(),
        (quality + rng.normal(0.2, 1, 10_000)).tolist(),
    )
    samples = [
        np.clip(np.round(quality[:, None] + rng.normal(0, 1, (10_000, 3))), 1, 10).tolist()
        for _ in range(2)
    ]
    cases = [
        ("paired_comparison, 10,000 rows, integer scores", lambda: paired_comparison(*integer)),
        (
            "paired_comparison, 10,000 rows, continuous scores",
            lambda: paired_comparison(*continuous),
        ),
        ("judge_noise, 10,000 rows x k=3 per arm", lambda: judge_noise(*samples, 0.2)),
    ]
    results = []
    for name, call in cases:
        call()
        times = []
        for _ in range(5):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        results.append((name, statistics.median(times)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="datasets per cell")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    options = parser.parse_args()

    scenarios = [Scenario(t, n, MODEL_SD) for n in SIZES for t in COVERAGE_TARGETS]
    scenarios += [Scenario(0.0, n, 0.0) for n in SIZES]
    scenarios += [
        Scenario(t, n, MODEL_SD) for n in SIZES for t in NI_TARGETS if t not in COVERAGE_TARGETS
    ]
    started = time.perf_counter()
    jobs = [(i, s, options.trials) for i, s in enumerate(scenarios)]
    with ProcessPoolExecutor(options.workers) as pool:
        cells = {cell["scenario"]: cell for cell in pool.map(run_cell, jobs)}
    wall = time.perf_counter() - started

    print(f"{options.trials} datasets per cell, 10,000 resamples each, 95 % level; {wall:.0f} s\n")
    print("Coverage and tests (row-varying model unless marked exchangeable):\n")
    print("| true diff | n | sd_diff | CI covers truth | mean CI width | p < 0.05 | "
          "predicted (t-test power) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    coverage_rows = [s for s in scenarios if s.target in COVERAGE_TARGETS and s.model_sd]
    coverage_rows += [s for s in scenarios if not s.model_sd]
    for s in sorted(coverage_rows, key=lambda s: (s.model_sd == 0, s.target, s.n)):
        c = cells[s]
        label = f"{s.target:+.1f}" + (" (exchangeable)" if not s.model_sd else "")
        print(
            f"| {label} | {s.n} | {c['sd']:.2f} | {c['coverage']:.1%} | {c['width']:.3f} | "
            f"{c['rejected']:.1%} | {c['predicted_power']:.1%} |"
        )
    print(f'\nNon-inferiority rule "95 % CI lower bound > -{MARGIN}" (margin {MARGIN}):\n')
    print("| true diff | n | passes | predicted |")
    print("|---|---|---|---|")
    for s in sorted(
        (s for s in scenarios if s.target in NI_TARGETS and s.model_sd),
        key=lambda s: (s.target, s.n),
    ):
        c = cells[s]
        print(f"| {s.target:+.2f} | {s.n} | {c['ni_pass']:.1%} | {c['ni_predicted']:.1%} |")
    print("\nTiming (median of 5):\n")
    print("| call | seconds |")
    print("|---|---|")
    for name, seconds in timing():
        print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
