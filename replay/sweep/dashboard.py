"""The sweep as an HTML dashboard: each fragmentation metric against each knob, a line per
trace (plotly, self-contained: plotly.js is inlined, so the file works offline)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from replay.sweep.effects import FRAGMENTATION, marginal_means

EXTRA = (("seconds", "seconds per point"),)


def build_figure(df: pl.DataFrame, knobs: list[str]):
    """A grid of line charts: a row per metric, a column per knob (the metric's mean over the
    other knobs at each value), one colour per trace."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    metrics = [(m, t) for m, t in (*FRAGMENTATION, *EXTRA) if m in df.columns]
    cols = knobs or ["settings"]
    fig = make_subplots(rows=max(len(metrics), 1), cols=len(cols), shared_xaxes=False,
                        subplot_titles=[f"{t} vs {k}" for _, t in metrics for k in cols],
                        vertical_spacing=min(0.08, 0.5 / max(len(metrics), 1)))
    traces = df["trace"].unique(maintain_order=True).to_list() if df.height else []
    colour = {t: qualitative.Plotly[i % len(qualitative.Plotly)] for i, t in enumerate(traces)}
    for r, (metric, _) in enumerate(metrics, start=1):
        for c, knob in enumerate(cols, start=1):
            mm = marginal_means(df, knob, metric)
            for name in traces:
                part = mm.filter(pl.col("trace") == name)
                fig.add_trace(go.Scatter(
                    x=part[knob].to_list(), y=part["mean"].to_list(), mode="lines+markers",
                    name=name, legendgroup=name, showlegend=(r == 1 and c == 1),
                    line={"color": colour[name]}), row=r, col=c)
            fig.update_xaxes(type="category", title_text=knob, row=r, col=c)
    fig.update_layout(height=300 * max(len(metrics), 1), width=max(450 * len(cols), 900),
                      title="pagereplay sweep: simulated fragmentation against each knob",
                      legend_title_text="trace")
    return fig


def write_dashboard(df: pl.DataFrame, knobs: list[str], path: Path) -> Path:
    """Write the dashboard as one offline HTML file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    build_figure(df, knobs).write_html(path, include_plotlyjs=True, full_html=True)
    return path
