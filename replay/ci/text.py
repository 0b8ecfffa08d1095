"""Numbers and verdicts as short text, shared by the console, Markdown and JUnit outputs."""

from __future__ import annotations

from replay.ci.gate import IMPROVED, PASS, REGRESSED, SKIPPED, GateResult, Verdict
from replay.ci.metrics import ReportMetrics

LABELS = {PASS: "pass", IMPROVED: "improved", REGRESSED: "REGRESSED", SKIPPED: "skipped"}


def fmt_value(x: float | None) -> str:
    """A metric value: whole numbers without decimals, others with six significant digits."""
    if x is None:
        return "–"
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.6g}"


def fmt_change(v: Verdict) -> str:
    """'+12 (+31.6%)', or '–' when a side is missing."""
    if v.change is None:
        return "–"
    text = fmt_value(v.change)
    text = text if text.startswith("-") else "+" + text
    return text + (f" ({100 * v.relative:+.1f}%)" if v.relative is not None else "")


def verdict_text(v: Verdict) -> str:
    """The verdict with its note, e.g. 'skipped: absent from the baseline report'."""
    label = LABELS[v.status]
    return f"{label}: {v.note}" if v.status == SKIPPED and v.note else label


def describe_side(m: ReportMetrics) -> str:
    """'simulated side (mobility_grouping=False) of traces/frag-a'."""
    settings = ", ".join(f"{k}={val}" for k, val in m.settings.items())
    what = f"{m.side} side" + (f" ({settings})" if settings else
                               " (default settings)" if m.side == "simulated" else "")
    return what + (f" of {m.source}" if m.source else "")


def headline(result: GateResult) -> str:
    """'REGRESSED: 3 of 9 metrics got worse' or 'passed: 9 metrics within thresholds'."""
    judged = [v for v in result.verdicts if v.status != SKIPPED]
    skipped = len(result.verdicts) - len(judged)
    tail = f" ({skipped} skipped)" if skipped else ""
    if result.regressions:
        return (f"REGRESSED: {len(result.regressions)} of {len(judged)} metrics got worse "
                f"beyond their thresholds{tail}")
    return f"passed: {len(judged)} metrics within their thresholds{tail}"
