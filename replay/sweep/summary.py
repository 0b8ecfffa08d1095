"""The sweep as Markdown: what ran, which knob moved fragmentation most, every point."""

from __future__ import annotations

import polars as pl

from replay.ci.text import fmt_value
from replay.sweep.effects import (
    block_size,
    headline,
    main_effects,
    metrics_of,
    orders_in,
    top_per_metric,
)


def point_columns(orders: tuple[int, ...]) -> list[tuple[str, str]]:
    """Columns of the per-point table: (column, header); fixed reference orders first."""
    cols = [("simulated.fallbacks_per_1000", "fallbacks /1k"),
            ("simulated.fragmenting_per_1000", "fragmenting /1k")]
    for o in orders:
        cols += [(f"simulated.unusable_index_o{o}.all", f"unusable@o{o} all"),
                 (f"simulated.unusable_index_o{o}.worst", f"unusable@o{o} worst"),
                 (f"simulated.free_blocks_o{o}.total", f"free {block_size(o)} blocks")]
    return cols + [("simulated.mixed_pageblocks.total", "mixed pageblocks (own size)"),
                   ("agreement_rate", "agreement"), ("seconds", "seconds")]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]


def fragmentation_lines(df: pl.DataFrame, knobs: list[str]) -> list[str]:
    """The knobs' main effects on each fragmentation metric, and the overall winner."""
    effects = main_effects(df, knobs)
    if not any(e.mean_effect > 0 for e in effects):
        return ["No knob moved a fragmentation metric (or none has two values with results)."]
    names = dict(metrics_of(df))
    best = headline(effects)
    top = top_per_metric(effects)
    by = {(e.knob, e.metric): e.mean_effect for e in effects}
    metrics = [m for m, _ in metrics_of(df) if any(e.metric == m for e in effects)]
    rows = [[names[m], *(fmt_value(round(by.get((k, m), 0.0), 3)) for k in knobs),
             f"`{top[m].knob}`" if m in top else "none"] for m in metrics]
    lines = [f"**The knob that moved fragmentation most: `{best.knob}`** (by the "
             f"{names[best.metric]}: {fmt_value(round(best.mean_effect, 3))} on average over "
             f"{best.traces} traces).", "",
             "Mean over traces of each knob's main effect (the range of the metric's mean at "
             "each of the knob's values):", ""]
    return lines + _table(["metric", *(f"`{k}`" for k in knobs), "moved most by"], rows)


def reference_note(df: pl.DataFrame) -> list[str]:
    orders = ", ".join(f"{o} ({block_size(o)})" for o in orders_in(df))
    return [f"Unusable indices and free blocks are taken at fixed reference orders ({orders}), "
            "whatever a point's pageblock_order, so settings are compared like with like; "
            "mixed pageblocks are counted in each point's own pageblocks and not ranked "
            "against `pageblock_order`.", ""]


def _cell(value: float | None, column: str) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if column == "seconds" else fmt_value(value)


def render_summary(df: pl.DataFrame, knobs: list[str], seconds: float, workers: int) -> str:
    """The whole Markdown summary."""
    ok = df.filter(pl.col("status") == "ok") if df.height else df
    traces = df["trace"].n_unique() if df.height else 0
    lines = ["# pagereplay sweep", "",
             f"{df.height} points ({traces} traces x {df.height // max(traces, 1)} settings) "
             f"on {workers} Dask workers in {seconds:.1f} s; {ok.height} ok, "
             f"{df.height - ok.height} failed.", "", "## Fragmentation", ""]
    lines += reference_note(df) + fragmentation_lines(df, knobs)
    failed = df.filter(pl.col("status") != "ok") if df.height else df
    if failed.height:
        lines += ["", "## Failed points", ""]
        lines += _table(["trace", "settings", "error"],
                        [[r["trace"], r["settings"], str(r["error"])]
                         for r in failed.iter_rows(named=True)])
    lines += ["", "## Points", "", "Simulated side; `agreement` is the model's agreement with "
              "the kernel's block choices on the trace (the same for every setting).", ""]
    cols = [(c, h) for c, h in point_columns(orders_in(df)) if c in df.columns]
    rows = [[r["trace"], r["settings"], r["status"], *(_cell(r[c], c) for c, _ in cols)]
            for r in df.iter_rows(named=True)]
    lines += _table(["trace", "settings", "status", *(h for _, h in cols)], rows)
    return "\n".join(lines) + "\n"
