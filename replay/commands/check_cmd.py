"""`pagereplay check`: gate CURRENT against a baseline; exit 1 when a metric regressed."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from replay.ci.gate import REGRESSED, SKIPPED, GateResult, evaluate
from replay.ci.inputs import classify, resolve_inputs
from replay.ci.junit import write_junit
from replay.ci.markdown import render_markdown
from replay.ci.metrics import report_metrics
from replay.ci.text import describe_side, fmt_change, fmt_value, headline, verdict_text
from replay.ci.thresholds import load_thresholds

_STYLE = {REGRESSED: "bold red", SKIPPED: "dim"}


def run_check(current: str, baseline: str, sets: list[str] | None,
              baseline_sets: list[str] | None, thresholds: Path | None, junit: Path | None,
              markdown: Path | None, outdir: Path | None, machine: str | None, plotlyjs: str,
              out: Console, err: Console) -> int:
    """Read or compute both reports, gate every metric, write the outputs; 0 pass, 1 regressed."""
    limits = load_thresholds(thresholds)
    cur_in = classify(current, sets, "--set")
    base_in = classify(baseline, baseline_sets, "--baseline-set")
    base_report, cur_report = resolve_inputs(cur_in, base_in, machine)
    result = evaluate(report_metrics(base_report), report_metrics(cur_report), limits)
    written = _write_reports(outdir, plotlyjs, cur_report if cur_in.is_trace else None,
                             base_report if base_in.is_trace else None)
    if junit is not None:
        written.append(write_junit(result, junit))
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(render_markdown(result))
        written.append(markdown)
    print_result(result, out)
    if written:
        out.print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    return 1 if result.regressions else 0


def print_result(result: GateResult, out: Console) -> None:
    """Which sides were read, a table of verdicts, and the headline (120 columns wide when
    the output is not a terminal, so CI logs keep every number whole)."""
    if not out.is_terminal:
        out = Console(file=out.file, width=max(out.width, 120))
    out.print(f"baseline: {describe_side(result.baseline)}", highlight=False)
    out.print(f"current:  {describe_side(result.current)}", highlight=False)
    table = Table("metric", "baseline", "current", "change", "worse if", "verdict",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.columns[0].no_wrap = True
    for v in result.verdicts:
        table.add_row(v.metric, fmt_value(v.baseline), fmt_value(v.current), fmt_change(v),
                      v.threshold.short(), verdict_text(v), style=_STYLE.get(v.status))
    out.print(table)
    color = "red" if result.regressions else "green"
    out.print(f"[bold {color}]{headline(result)}[/]", highlight=False)


def _write_reports(outdir: Path | None, plotlyjs: str, current: dict | None,
                   baseline: dict | None) -> list[Path]:
    """The reports computed from traces, as `compare` writes them, under OUTDIR/current and
    OUTDIR/baseline."""
    from replay.commands.report_cmd import write_outputs

    if outdir is None:
        return []
    paths: list[Path] = []
    for name, d in (("current", current), ("baseline", baseline)):
        if d is not None:
            paths += write_outputs(d, outdir / name, "comparison.json", plotlyjs)[:1]
    return paths
