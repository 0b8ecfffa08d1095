"""The sweep as an HTML dashboard: each fragmentation metric against each knob, a line per
trace (plotly, self-contained: plotly.js is inlined, so the file works offline).

A point on a line is the metric's mean over the other knobs' values (a main-effects plot); the
dotted line of the same colour is the trace's observed value, for reference. Every panel names
its knob on its x axis; unusable indices and free blocks are at fixed reference orders (9 and
`--order`), so the panels of `pageblock_order` compare like with like.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from replay.sweep.effects import block_size, marginal_means, metrics_of

# Short axis titles for the metrics.
SHORT = {
    "simulated.mixed_pageblocks.total": "mixed pageblocks (own size)",
    "simulated.fragmenting_per_1000": "fragmenting /1k allocs",
    "simulated.fallbacks_per_1000": "fallbacks /1k allocs",
    "seconds": "seconds per point",
}


def short(metric: str) -> str:
    """An axis title: the metric, its reference order and unit."""
    m = re.fullmatch(r"simulated\.(unusable_index|free_blocks)_o(\d+)\.(\w+)", metric)
    if m:
        o = int(m[2])
        if m[1] == "unusable_index":
            return f"unusable@o{o} ({block_size(o)}), {'all zones' if m[3] == 'all' else m[3]}"
        return f"free {block_size(o)} blocks"
    return SHORT.get(metric, metric)


def build_figure(df: pl.DataFrame, knobs: list[str]):
    """A grid of line charts: a row per metric, a column per knob, one colour per trace."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    metrics = [m for m in (*(m for m, _ in metrics_of(df)), "seconds") if m in df.columns]
    cols = knobs or ["settings"]
    rows = max(len(metrics), 1)
    fig = make_subplots(rows=rows, cols=len(cols), vertical_spacing=min(0.06, 0.4 / rows),
                        horizontal_spacing=min(0.06, 0.3 / len(cols)))
    traces = df["trace"].unique(maintain_order=True).to_list() if df.height else []
    colour = {t: qualitative.Plotly[i % len(qualitative.Plotly)] for i, t in enumerate(traces)}
    for r, metric in enumerate(metrics, start=1):
        for c, knob in enumerate(cols, start=1):
            _add_cell(fig, go, df, knob, metric, traces, colour, r, c)
            fig.update_xaxes(type="category", title_text=knob, title_standoff=2,
                             row=r, col=c)
        fig.update_yaxes(title_text=short(metric), row=r, col=1)
    fig.update_layout(height=260 * rows + 120, autosize=True,
                      title="pagereplay sweep: simulated fragmentation against each knob "
                      "(dotted: observed)",
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
                      margin={"t": 110})
    return fig


def _add_cell(fig, go, df, knob, metric, traces, colour, r, c) -> None:
    mm = marginal_means(df, knob, metric)
    observed = metric.replace("simulated.", "observed.", 1)
    ref = marginal_means(df, knob, observed) if observed != metric and observed in df.columns \
        else None
    for name in traces:
        part = mm.filter(pl.col("trace") == name)
        fig.add_trace(go.Scatter(
            x=part[knob].to_list(), y=part["mean"].to_list(), mode="lines+markers", name=name,
            legendgroup=name, showlegend=(r == 1 and c == 1), line={"color": colour[name]}),
            row=r, col=c)
        if ref is not None:
            o = ref.filter(pl.col("trace") == name)
            fig.add_trace(go.Scatter(
                x=o[knob].to_list(), y=o["mean"].to_list(), mode="lines",
                name=f"{name} (observed trace)", legendgroup=name, showlegend=False,
                line={"color": colour[name], "dash": "dot", "width": 1}, opacity=0.6),
                row=r, col=c)


def write_dashboard(df: pl.DataFrame, knobs: list[str], path: Path) -> Path:
    """Write the dashboard as one offline HTML file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    build_figure(df, knobs).write_html(path, include_plotlyjs=True, full_html=True)
    return path
