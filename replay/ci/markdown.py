"""The gate's result as Markdown for a pull-request comment."""

from __future__ import annotations

from replay.ci.gate import GateResult
from replay.ci.text import describe_side, fmt_change, fmt_value, headline, verdict_text

_ICON = {"pass": "✅", "improved": "✅", "regressed": "❌", "skipped": "⏭️"}


def render_markdown(result: GateResult, title: str = "pagereplay check") -> str:
    """A heading with the overall result, which sides were read, and one row per metric."""
    lines = [
        f"### {title}: {'❌ ' if result.regressions else '✅ '}{headline(result)}",
        "",
        f"- baseline: {describe_side(result.baseline)}",
        f"- current: {describe_side(result.current)}",
        "",
        "| metric | baseline | current | change | threshold | verdict |",
        "|---|---:|---:|---:|---|---|",
    ]
    for v in result.verdicts:
        cells = [f"`{v.metric}`", fmt_value(v.baseline), fmt_value(v.current), fmt_change(v),
                 v.threshold.describe(), f"{_ICON[v.status]} {verdict_text(v)}"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
