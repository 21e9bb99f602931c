"""Gate reports: plain text, Markdown (a pull-request comment), JSON (every number), JUnit.

All four render the same ``GateResult``; none of them decides anything.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

import orjson

from assay.gate.verdict import CandidateVerdict, GateResult
from assay.stats.pairwise import format_win_rate

FORMATS = ("text", "markdown", "json", "junit")
BAR_WIDTH = 41
MARKDOWN_REGRESSIONS = 5  # per candidate; the JSON carries all the comparison kept
_ICONS = {"PASS": "✅", "FAIL": "❌", "INCONCLUSIVE": "⚠️"}


def render(result: GateResult, fmt: str) -> str:
    if fmt == "text":
        return to_text(result)
    if fmt == "markdown":
        return to_markdown(result)
    if fmt == "json":
        return to_json(result)
    if fmt == "junit":
        return to_junit(result)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def to_json(result: GateResult) -> str:
    return orjson.dumps(result.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode() + "\n"


# --- shared pieces ------------------------------------------------------------------------------


def signed(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def interval(v: CandidateVerdict) -> str:
    d = v.comparison.paired
    if d.ci_low is None or d.ci_high is None:
        return "-"
    return f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]"


def failures(v: CandidateVerdict) -> str:
    f = v.comparison.failures
    rate = f" ({f.candidate_rate * 100:.1f}%)" if f.candidate_rate is not None else ""
    return f"{f.candidate_failed}/{f.n_rows}{rate}"


def wtl(v: CandidateVerdict) -> str:
    d = v.comparison.paired
    return f"{d.wins}/{d.ties}/{d.losses}"


def headline(result: GateResult) -> str:
    g = result.group
    against = (
        f", against accepted baseline group {g.baseline_group_id}"
        if g.baseline_group_id != g.group_id
        else ""
    )
    return (
        f"eval {g.eval or '-'}, dataset {g.dataset} ({g.compared_rows} rows compared), "
        f"rubric {g.rubric} v{g.rubric_version} ({g.score_min}-{g.score_max}), judge {g.judge}"
        f"{', ' + str(g.judge_samples) + ' samples' if g.judge_samples > 1 else ''}, "
        f"baseline {g.baseline.model}{against}, policy {result.policy_source}"
    )


def axis(verdicts: Sequence[CandidateVerdict]) -> float:
    """Half-width of the shared CI-bar axis: every interval and threshold fits."""
    extent = 0.0
    for v in verdicts:
        d = v.comparison.paired
        for x in (d.ci_low, d.ci_high, d.mean_diff, v.policy.margin, v.policy.min_improvement):
            if x is not None:
                extent = max(extent, abs(x))
    return extent * 1.1 or 1.0


def ci_bar(v: CandidateVerdict, half: float, width: int = BAR_WIDTH) -> str:
    """``---:----|---[==o==]--``: ``|`` is 0, ``:`` the -margin (and +min_improvement),
    ``[...]`` the confidence interval, ``o`` the mean difference."""
    cells = ["-"] * width

    def at(x: float) -> int:
        return max(0, min(width - 1, round((x + half) / (2 * half) * (width - 1))))

    cells[at(0.0)] = "|"
    cells[at(-v.policy.margin)] = ":"
    if v.policy.min_improvement is not None:
        cells[at(v.policy.min_improvement)] = ":"
    d = v.comparison.paired
    if d.ci_low is not None and d.ci_high is not None:
        low, high = at(d.ci_low), at(d.ci_high)
        for i in range(low, high + 1):
            cells[i] = "="
        cells[low], cells[high] = "[", "]"
    if d.mean_diff is not None:
        cells[at(d.mean_diff)] = "o"
    return "".join(cells)


def bar_legend(result: GateResult, half: float) -> str:
    level = f"{result.group.level * 100:g}%"
    return (
        f"axis {-half:+.2f} .. {half:+.2f}; | = 0, : = -margin (and +required improvement), "
        f"[==o==] = {level} CI and mean difference"
    )


# --- plain text ---------------------------------------------------------------------------------


def to_text(result: GateResult) -> str:
    g = result.group
    lines = [f"Assay gate: run group {g.group_id}: {result.decision}", headline(result), ""]
    level = f"{g.level * 100:g}%"
    header = ["model", "n", "mean", "delta", f"{level} CI", "W/T/L", "failures", "verdict"]
    rows = [
        [
            f"{g.baseline.model} (baseline)", str(g.baseline.scored), number(g.baseline.mean_score),
            "", "", "", f"{_baseline_failed(result)}/{g.baseline.rows}", "",
        ]
    ]  # fmt: skip
    for v in result.verdicts:
        d = v.comparison.paired
        rows.append(
            [v.model, str(d.n_pairs), number(d.mean_candidate), signed(d.mean_diff),
             interval(v), wtl(v), failures(v), v.decision]
        )  # fmt: skip
    lines.extend(_plain_table(header, rows))
    half = axis(result.verdicts)
    if result.verdicts:
        lines += ["", bar_legend(result, half)]
        name_width = max(len(v.model) for v in result.verdicts)
        lines += [f"{v.model:<{name_width}}  {ci_bar(v, half)}" for v in result.verdicts]
    for v in result.verdicts:
        lines += ["", f"{v.model}: {v.decision}"]
        shown = v.reasons if v.decision != "PASS" else [c.message for c in v.checks]
        lines += [f"  - {reason}" for reason in shown]
        lines += [f"    {line}" for line in evidence(v)]
    for warning in result.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines) + "\n"


def evidence(v: CandidateVerdict) -> list[str]:
    """The statistics behind a verdict, one line each: the test, the power, the judge noise."""
    c = v.comparison
    d = c.paired
    lines = []
    if c.pairwise is not None:
        s = c.pairwise
        lines.append(
            f"pairwise: win rate {format_win_rate(s)} ({s.flipped}/{s.rows} rows flipped with "
            f"the order, counted as ties); mean = win rate, delta = win rate - 0.5, Wilson CI"
        )
    if d.test != "none" and d.p_value is not None:
        effect = f", effect size d_z {signed(d.effect_size)}" if d.effect_size is not None else ""
        lines.append(f"{d.test} test p = {d.p_value:.3g}{effect}")
    if c.mde is not None:
        lines.append(f"smallest difference these {d.n_pairs} rows detect (80% power): {c.mde:.2f}")
    if c.noise is not None and c.noise.outputs:
        n = c.noise
        share = (
            f"; noise could explain {n.noise_share:.0%} of the difference"
            if (n.noise_share is not None)
            else ""
        )
        lines.append(
            f"judge noise (K={n.k}): mean spread {number(n.mean_spread)}, "
            f"{n.disagreement_rate or 0:.0%} of outputs disagree by >= 1 point{share}"
        )
    return lines


def _plain_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]  # fmt: skip


# --- Markdown -----------------------------------------------------------------------------------


def _md(text: str) -> str:
    """Escape what would break a table cell or turn into markup."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text.replace('`', '')}`"


def to_markdown(result: GateResult) -> str:
    g = result.group
    level = f"{g.level * 100:g}%"
    out = [
        f"## {_ICONS[result.decision]} Assay gate: run group {g.group_id}: **{result.decision}**",
        "",
        _md(headline(result)),
        "",
        f"| model | n | mean | Δ vs {_md(g.baseline.model)} ({level} CI) | win / tie / loss "
        "| failures | verdict |",
        "|---|---:|---:|---|---|---:|---|",
        f"| {_md(g.baseline.model)} (baseline) | {g.baseline.scored} | "
        f"{number(g.baseline.mean_score)} | | | {_baseline_failed(result)}/{g.baseline.rows} | |",
    ]
    for v in result.verdicts:
        d = v.comparison.paired
        out.append(
            f"| {_md(v.model)} | {d.n_pairs} | {number(d.mean_candidate)} | "
            f"{signed(d.mean_diff)} {interval(v)} | {d.wins} / {d.ties} / {d.losses} | "
            f"{failures(v)} | {_ICONS[v.decision]} {v.decision} |"
        )
    if result.verdicts:
        half = axis(result.verdicts)
        width = max(len(v.model) for v in result.verdicts)
        out += ["", f"<sub>{_md(bar_legend(result, half))}</sub>", "", "```text"]
        out += [
            f"{v.model:<{width}}  {ci_bar(v, half)}  {signed(v.comparison.paired.mean_diff)}"
            for v in result.verdicts
        ]
        out.append("```")
    for v in result.verdicts:
        out += ["", f"### {_ICONS[v.decision]} {_md(v.model)}: {v.decision}", ""]
        out += [f"- {_md(reason)}" for reason in v.reasons]
        out += [f"- <sub>{_md(line)}</sub>" for line in evidence(v)]
    out += _regressions_md(result)
    out += _slices_md(result)
    if result.warnings:
        out += ["", *[f"> ⚠️ {_md(w)}" for w in result.warnings]]
    return "\n".join(out) + "\n"


def _baseline_failed(result: GateResult) -> int:
    b = result.group.baseline
    return b.generation_failed + b.judge_failed + b.judge_unparseable


def _regressions_md(result: GateResult) -> list[str]:
    rows = []
    for v in result.verdicts:
        group_id = v.comparison.arm.group_id
        for r in v.comparison.top_regressions[:MARKDOWN_REGRESSIONS]:
            rows.append(
                f"| {_md(v.model)} | {r.row} | {r.baseline_score:.1f} | {r.candidate_score:.1f} "
                f"| {r.diff:+.1f} | {_code(f'assay run row {group_id} {r.row}')} |"
            )
    if not rows:
        return []
    return [
        "",
        "### Top regressions",
        "",
        "| model | row | baseline | candidate | Δ | inspect |",
        "|---|---:|---:|---:|---:|---|",
        *rows,
    ]


def _slices_md(result: GateResult) -> list[str]:
    """Regressing slices always; every slice of a key the user or the policy asked for."""
    level = f"{result.group.level * 100:g}%"
    rows = []
    for v in result.verdicts:
        asked = set(v.policy.protected_slices)
        for s in v.comparison.slices:
            if not (s.regresses or s.key in asked):
                continue
            d = s.comparison
            ci = (
                f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]"
                if d.ci_low is not None and d.ci_high is not None
                else "-"
            )
            adjusted = f"{s.p_adjusted:.3g}" if s.p_adjusted is not None else "-"
            flag = "❌ regresses" if s.regresses else ""
            rows.append(
                f"| {_md(v.model)} | {_md(s.key)}={_md(s.value)} | {d.n_pairs} | "
                f"{signed(d.mean_diff)} {ci} | {adjusted} | {flag} |"
            )
    if not rows:
        return []
    return [
        "",
        "### Slices",
        "",
        f"| model | slice | n | Δ ({level} CI) | adjusted p | |",
        "|---|---|---:|---|---:|---|",
        *rows,
    ]


# --- JUnit --------------------------------------------------------------------------------------


def to_junit(result: GateResult) -> str:
    """One testsuite, one testcase per candidate: failure for FAIL, skipped for INCONCLUSIVE."""
    g = result.group
    failed = sum(v.decision == "FAIL" for v in result.verdicts)
    skipped = sum(v.decision == "INCONCLUSIVE" for v in result.verdicts)
    root = ET.Element(
        "testsuites", name="assay gate", tests=str(len(result.verdicts)), failures=str(failed)
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"assay gate: run group {g.group_id}",
        tests=str(len(result.verdicts)),
        failures=str(failed),
        errors="0",
        skipped=str(skipped),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("group_id", g.group_id), ("baseline_group_id", g.baseline_group_id),
        ("eval", g.eval or ""), ("dataset", g.dataset), ("baseline", g.baseline.model),
        ("rubric", f"{g.rubric} v{g.rubric_version}"), ("judge", g.judge),
        ("policy", result.policy_source), ("decision", result.decision),
    ):  # fmt: skip
        ET.SubElement(properties, "property", name=name, value=str(value))
    for v in result.verdicts:
        case = ET.SubElement(
            suite, "testcase", classname=f"assay.gate.group{g.group_id}", name=v.model
        )
        d = v.comparison.paired
        summary = (
            f"{v.model}: {v.decision}; n={d.n_pairs}, mean {number(d.mean_candidate)} vs "
            f"{number(d.mean_baseline)}, delta {signed(d.mean_diff)} {interval(v)}, "
            f"W/T/L {wtl(v)}, failures {failures(v)}"
        )
        if v.decision == "FAIL":
            element = ET.SubElement(case, "failure", message=v.reasons[0], type="FAIL")
            element.text = "\n".join(v.reasons)
        elif v.decision == "INCONCLUSIVE":
            ET.SubElement(case, "skipped", message="INCONCLUSIVE: " + "; ".join(v.reasons))
        ET.SubElement(case, "system-out").text = summary
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
