"""The report dict (build.py, docs/report-schema.md) as one self-contained HTML dashboard.

One file, plotly figures drawn by plotly.js (inlined by default, so it opens offline; "cdn" for
a small file that needs the network). A zone selector at the top switches every per-zone figure
at once; the page starts on the busiest zone (the one whose free memory moved most), or on the
zone named in the address's fragment (`dashboard.html#zone=0/Normal`).

The page reports on itself for headless checks: a hidden `#dash-status` element gets
`data-state="done"` once every figure has been drawn, with `data-figures` (figures asked for),
`data-drawn` (figures with a rendered `.main-svg`) and `data-errors` (window errors, rejected
promises and console.error messages, one per line).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs, get_plotlyjs_version
from plotly.subplots import make_subplots
from plotly.utils import PlotlyJSONEncoder

from replay.report.markdown import (
    MIGRATETYPES,
    PROCESS_COLUMNS,
    fmt_num,
    fmt_pct,
    fmt_signed,
    is_compare,
    order_type_matrix,
    process_cell,
)

SIDES = ("observed", "simulated")
TYPE_COLOURS = {"Unmovable": "#d62728", "Movable": "#1f77b4", "Reclaimable": "#ff7f0e",
                "HighAtomic": "#9467bd", "Isolate": "#7f7f7f"}
PAIR_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
                "#2ca02c", "#1f77b4", "#7f7f7f")
ZONE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
HEATMAP_SCALE = "Viridis"
MAX_FALLBACK_POINTS = 5000  # per side, evenly taken
MAX_PROCESS_ROWS = 100
TEMPLATE = "plotly_white"  # every figure's template, applied by the page (template_json)
FONT = dict(family="DejaVu Sans, Helvetica, Arial, sans-serif", size=12)
CONFIG = {"displaylogo": False, "responsive": True,
          "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
HEADER_CARDS: tuple[tuple[str, str, str], ...] = (
    ("allocs", "allocations", "requests"),
    ("fallbacks", "fallbacks", "events"),
    ("fallback_rate_per_1000", "fallback rate", "per 1,000 allocations"),
    ("fragmenting_fallbacks", "fragmenting fallbacks", "events"),
    ("ownership_changes", "pageblock ownership changes", "events"),
    ("pcp_refill_blocks", "pcp refill", "blocks"),
    ("pcp_drained_pages", "pcp drained", "pages"),
)


@dataclass
class Panel:
    """One figure on the page (or a note where its data is absent)."""

    key: str
    title: str
    fig: go.Figure | None
    note: str = ""
    per_zone: bool = False


# ---------------------------------------------------------------------------------------------
# data helpers


def sides_of(d: Mapping, section: str) -> list[tuple[str, Any]]:
    """[(side, value)] for the sides present under d[section] (observed first)."""
    sec = d.get(section) or {}
    return [(side, sec[side]) for side in SIDES if sec.get(side)]


def zones_of(d: Mapping) -> list[str]:
    """Every zone key the dict knows, machine order first."""
    zones = list((d.get("machine") or {}).get("zones") or [])
    for _, ts in sides_of(d, "timeseries"):
        zones += [z for z in ts.get("zones", {}) if z not in zones]
    for side in SIDES:
        zones += [z for z in (d.get(side) or {}).get("end_free_blocks", {}) if z not in zones]
    return zones


def busiest_zone(d: Mapping) -> str | None:
    """The zone whose observed free memory moved most over the trace (else the largest)."""
    zones = zones_of(d)
    if not zones:
        return None
    ts = (d.get("timeseries") or {}).get("observed") or {}
    moved = {z: float(np.abs(np.diff(np.asarray(v.get("free_pages") or [0], float))).sum())
             for z, v in (ts.get("zones") or {}).items()}
    if moved and max(moved.values()) > 0:
        return max(moved, key=moved.get)
    end = (d.get("observed") or {}).get("end_free_pages") or {}
    return max(end, key=end.get) if end else zones[0]


def pageblock_orders(d: Mapping) -> dict[str, int]:
    """The pageblock order each side ran with (a what-if may change the simulated one)."""
    pbo = int((d.get("machine") or {}).get("pageblock_order") or 9)
    sim = (d.get("settings") or {}).get("pageblock_order")
    return {"observed": pbo, "simulated": int(sim) if sim is not None else pbo}


def time_label(d: Mapping) -> str:
    """The x-axis title for trace time."""
    return "trace time (s, ftrace clock)"


def _line_key(d: Mapping) -> str:
    """' Solid: observed; dashed: simulated.' when the dict has both sides."""
    return " Solid: observed; dashed: simulated." if is_compare(d) else ""


def _dash(side: str) -> str:
    return "solid" if side == "observed" else "dash"


def _side_title(side: str, d: Mapping) -> str:
    return side if side == "observed" else f"simulated{_settings_suffix(d)}"


def _settings_suffix(d: Mapping) -> str:
    s = d.get("settings") or {}
    return " (" + ", ".join(f"{k}={v}" for k, v in s.items()) + ")" if s else ""


def _layout(fig: go.Figure, height: int, **kw: Any) -> go.Figure:
    base: dict[str, Any] = dict(height=height, font=FONT,
                                margin=dict(l=70, r=30, t=80, b=60),
                                legend=dict(orientation="h", yref="container", yanchor="top",
                                            y=1.0, x=0))
    fig.update_layout(**(base | kw))
    return fig


# ---------------------------------------------------------------------------------------------
# figures


def _log_ticks(zmax: float) -> tuple[list[float], list[str]]:
    """Colour-bar ticks at the powers of ten up to 10^zmax, for a log10 colour value."""
    names = {0: "1", 1: "10", 2: "100", 3: "1k", 4: "10k", 5: "100k", 6: "1M", 7: "10M"}
    vals = list(range(0, max(1, int(math.floor(zmax))) + 1))
    return [float(v) for v in vals], [names.get(v, f"1e{v}") for v in vals]


def fig_free_heatmap(d: Mapping, visible_zone: str | None) -> Panel:
    """Free memory per order over time, observed | simulated, one pair of heatmaps per zone."""
    sides = sides_of(d, "timeseries")
    title = "Free memory by order over time"
    if not sides:
        return Panel("free", title, None, "No samples over time in this report.", True)
    fig = make_subplots(rows=1, cols=len(sides), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[_side_title(s, d) for s, _ in sides])
    zmax = 1.0
    for col, (side, ts) in enumerate(sides, start=1):
        t = ts.get("t_s") or []
        for zone, zv in (ts.get("zones") or {}).items():
            blocks = np.asarray(zv.get("free_blocks") or [], np.int64)
            if blocks.ndim != 2 or not blocks.size:
                continue
            pages = blocks << np.arange(blocks.shape[1])
            z = np.where(pages > 0, np.log10(np.maximum(pages, 1)), np.nan).T
            zmax = max(zmax, float(np.nanmax(z)) if np.isfinite(z).any() else 0.0)
            fig.add_trace(go.Heatmap(
                x=t, y=list(range(blocks.shape[1])), z=np.round(z, 3), customdata=blocks.T,
                text=pages.T, coloraxis="coloraxis", meta=zone, name=f"{zone} {side}",
                visible=zone == visible_zone,
                hovertemplate=(f"{zone} {side}<br>t %{{x:.3f}} s<br>order %{{y}}<br>"
                               "%{customdata:,} free blocks = %{text:,} pages<extra></extra>")),
                row=1, col=col)
    vals, text = _log_ticks(zmax)
    fig.update_layout(coloraxis=dict(
        colorscale=HEATMAP_SCALE, cmin=0, cmax=zmax,
        colorbar=dict(title=dict(text="free pages<br>(log scale)"), tickvals=vals,
                      ticktext=text)))
    fig.update_xaxes(title_text=time_label(d))
    fig.update_yaxes(title_text="order (block = 2^order pages)", dtick=1, row=1, col=1)
    fig.update_layout(plot_bgcolor="#f4f4f4")
    note = ("Colour: free pages held in blocks of each order (blocks × 2^order), log scale; "
            "grey: no free block of that order.")
    return Panel("free", title, _layout(fig, 400, margin=dict(l=70, r=30, t=40, b=60)), note,
                 True)


def fig_unusable(d: Mapping) -> Panel:
    """The unusable free index at pageblock_order over time, every zone, both sides."""
    sides = sides_of(d, "timeseries")
    pbo = pageblock_orders(d)
    title = f"Unusable free index at order {pbo['observed']} (pageblock) over time"
    if not sides:
        return Panel("unusable", title, None, "No samples over time in this report.")
    fig = go.Figure()
    colours = dict(zip(zones_of(d), ZONE_COLOURS * 4, strict=False))
    top = 0.0
    for side, ts in sides:
        for zone, zv in (ts.get("zones") or {}).items():
            y = np.asarray(zv.get("unusable_index_pb") or [], float) / 1000
            top = max(top, float(y.max()) if y.size else 0.0)
            label = f"{zone} {side}" + (f" (order {pbo[side]})" if pbo[side] != pbo["observed"]
                                        else "")
            fig.add_trace(go.Scatter(
                x=ts.get("t_s") or [], y=y, mode="lines", name=label,
                line=dict(color=colours.get(zone), dash=_dash(side), width=2),
                hovertemplate=f"{label}<br>t %{{x:.3f}} s<br>unusable %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(title_text=time_label(d))
    fig.update_yaxes(title_text="unusable index (fraction of free memory, 0–1)",
                     range=[0, min(1.02, top * 1.15 + 0.02)])
    return Panel("unusable", title, _layout(fig, 380), "Share of each zone's free memory that a "
                 "pageblock-sized allocation could not use (0: all usable, 1: none)."
                 + _line_key(d))


def fig_compaction(d: Mapping, zone: str | None) -> Panel:
    """Compaction over time: free pages isolated and pages migrated, direct-compaction stalls,
    beside the unusable index it changes (observed)."""
    comp = d.get("compaction") or {}
    rates = comp.get("rates") or {}
    title = "Compaction over time"
    if not (comp.get("trace") or {}).get("runs") or not rates.get("t_s"):
        note = comp.get("verdict") or "No compaction in this trace."
        return Panel("compaction", title, None, note)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["pages per window: free pages isolated, pages migrated",
                                        "direct compaction attempts (stalls) per window",
                                        "unusable free index at the pageblock order"])
    t = rates["t_s"]
    for key, label, colour in (("free_isolated", "free pages isolated", "#2ca02c"),
                               ("migrated", "pages migrated", "#9467bd")):
        fig.add_trace(go.Bar(x=t, y=rates.get(key) or [], name=label, marker_color=colour,
                             hovertemplate=f"{label}<br>until %{{x:.3f}} s: %{{y}}"
                                           "<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=t, y=rates.get("stalls") or [], name="stalls",
                         marker_color="#d62728", hovertemplate="stalls until %{x:.3f} s: "
                         "%{y}<extra></extra>"), row=2, col=1)
    ts = (d.get("timeseries") or {}).get("observed") or {}
    for zname, zv in (ts.get("zones") or {}).items():
        fig.add_trace(go.Scatter(x=ts.get("t_s") or [],
                                 y=np.asarray(zv.get("unusable_index_pb") or [], float) / 1000,
                                 mode="lines", name=f"unusable {zname}",
                                 line=dict(width=2 if zname == zone else 1)), row=3, col=1)
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text=time_label(d), row=3, col=1)
    tr = comp.get("trace") or {}
    note = (f"{tr.get('runs', 0):,} runs; {tr.get('free_isolated', 0):,} free pages isolated by "
            f"the traced free scanner; {tr.get('migrated', 0):,} pages migrated.")
    if comp.get("untraced_isolated_pages"):
        note += (f" The untraced fast search took {comp['untraced_isolated_pages']:,} more "
                 "(vmstat compact_isolated residual).")
    return Panel("compaction", title, _layout(fig, 620), note)


def _pair_name(e: Mapping) -> str:
    return f"{e.get('alloc_mt')} from {e.get('fallback_mt')}"


def _thin(events: Sequence[Mapping], limit: int) -> list[Mapping]:
    if len(events) <= limit:
        return list(events)
    idx = np.linspace(0, len(events) - 1, limit).astype(int)
    return [events[i] for i in idx]


def fig_fallbacks(d: Mapping) -> Panel:
    """Every fallback event on a time line: colour = migratetype pair, x = fragmenting."""
    sides = [(s, ev) for s, ev in ((s, (d.get("fallback_events") or {}).get(s)) for s in SIDES)
             if ev is not None and (s == "observed" or is_compare(d))]
    title = "Fallback events over time"
    if not sides:
        return Panel("fallbacks", title, None, "No fallback events in this report.")
    pairs = sorted({_pair_name(e) for _, ev in sides for e in ev})
    colours = dict(zip(pairs, PAIR_COLOURS * 8, strict=False))
    fig = make_subplots(rows=len(sides), cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=[f"{_side_title(s, d)}: {len(ev):,} events"
                                        for s, ev in sides])
    shown: set[str] = set()
    for row, (side, events) in enumerate(sides, start=1):
        for pair in pairs:
            for frag in (False, True):
                sel = _thin([e for e in events if _pair_name(e) == pair
                             and bool(e.get("fragmenting")) == frag], MAX_FALLBACK_POINTS)
                if not sel:
                    continue
                name = pair + (", fragmenting" if frag else "")
                fig.add_trace(go.Scatter(
                    x=[e.get("t_s") for e in sel], y=[e.get("fallback_order") for e in sel],
                    mode="markers", name=name, legendgroup=name, showlegend=name not in shown,
                    marker=dict(color=colours[pair], size=9 if frag else 7,
                                symbol="x" if frag else "circle", opacity=0.8,
                                line=dict(width=0)),
                    customdata=[[("yes" if e.get("change_ownership") else "no")] for e in sel],
                    hovertemplate=(f"{side}: {name}<br>t %{{x:.4f}} s<br>took an order-%{{y}} "
                                   "block<br>pageblock changed owner: %{customdata[0]}"
                                   "<extra></extra>")), row=row, col=1)
                shown.add(name)
    trace = d.get("trace") or {}
    if trace.get("start_s") is not None and trace.get("end_s") is not None:
        fig.update_xaxes(range=[trace["start_s"], trace["end_s"]])
    fig.update_xaxes(title_text=time_label(d), row=len(sides), col=1)
    fig.update_yaxes(title_text="fallback order", range=[-0.5, 10.5], dtick=2)
    if not pairs:
        fig.add_annotation(text="no fallback events", showarrow=False, xref="paper",
                           yref="paper", x=0.5, y=0.5)
    return Panel("fallbacks", title, _layout(fig, 200 + 170 * len(sides)),
                 "One mark per mm_page_alloc_extfrag event: the order of the block taken from "
                 "another migratetype's free list. Colour: requested type from fallen-back "
                 "type; ×: fragmenting (the block is smaller than a pageblock).")


def fig_pageblocks(d: Mapping, visible_zone: str | None) -> Panel:
    """Pageblock owners over time as stacked areas, observed | simulated, per zone."""
    sides = sides_of(d, "timeseries")
    title = "Pageblock ownership over time"
    if not sides:
        return Panel("pageblocks", title, None, "No samples over time in this report.", True)
    fig = make_subplots(rows=1, cols=len(sides), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[_side_title(s, d) for s, _ in sides])
    for zone in zones_of(d):
        per_side = [(side, (ts.get("zones") or {}).get(zone) or {}) for side, ts in sides]
        used = [t for t in MIGRATETYPES if any(any(zv.get("pageblocks", {}).get(t) or [0])
                                               for _, zv in per_side)]
        for col, (side, zv) in enumerate(per_side, start=1):
            t = (d["timeseries"][side] or {}).get("t_s") or []
            for name in used:
                fig.add_trace(go.Scatter(
                    x=t, y=zv.get("pageblocks", {}).get(name) or [], name=name,
                    stackgroup=f"{side}-{zone}", mode="lines", meta=zone,
                    legendgroup=name, showlegend=col == 1, visible=zone == visible_zone,
                    line=dict(width=0.5, color=TYPE_COLOURS.get(name)),
                    hovertemplate=f"{zone} {side}<br>{name}: %{{y:,}} pageblocks<extra></extra>"),
                    row=1, col=col)
            if zv.get("mixed_pageblocks") is not None:
                fig.add_trace(go.Scatter(
                    x=t, y=zv["mixed_pageblocks"], name="mixed (holding another type's pages)",
                    mode="lines", meta=zone, legendgroup="mixed", showlegend=col == 1,
                    visible=zone == visible_zone, line=dict(color="black", dash="dot", width=2),
                    hovertemplate=f"{zone} {side}<br>mixed: %{{y:,}} pageblocks<extra></extra>"),
                    row=1, col=col)
    fig.update_xaxes(title_text=time_label(d))
    fig.update_yaxes(title_text="pageblocks (count)", row=1, col=1)
    return Panel("pageblocks", title, _layout(fig, 400), "Pageblocks by owner migratetype, "
                 "stacked; dotted: pageblocks holding pages of a type other than their owner's.",
                 True)


def _rates(counts: Sequence[float], edges: Sequence[float], t0: float | None) -> list:
    """Counts per window as per-second rates; window i ends at edges[i] and starts at the
    previous edge (the first at t0)."""
    out, prev = [], t0
    for n, t in zip(counts, edges, strict=False):
        width = t - prev if prev is not None else None
        out.append(n / width if width and width > 0 else None)
        prev = t
    return out


def fig_pcp(d: Mapping) -> Panel:
    """pcp refill and drain rates over time, and pages sitting on pcp lists."""
    rates = sides_of(d, "pcp_rates")
    series = sides_of(d, "timeseries")
    title = "Per-CPU page lists: refills and drains"
    if not rates and not series:
        return Panel("pcp", title, None, "No pcp rates over time in this report.")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["refill: blocks moved from the buddy lists to pcp "
                                        "lists", "drain: pages returned to the buddy lists",
                                        "pages on pcp lists (all zones)"])
    colour = {"observed": "#1f77b4", "simulated": "#ff7f0e"}
    ts_first = {side: (ts.get("t_s") or [None])[0] for side, ts in series}
    for side, pr in rates:
        t = pr.get("t_s") or []
        t0 = ts_first.get(side) or ts_first.get("observed")
        for row, key, unit in ((1, "refill_blocks", "blocks/s"), (2, "drained_pages", "pages/s")):
            fig.add_trace(go.Scatter(
                x=t, y=_rates(pr.get(key) or [], t, t0), mode="lines", line_shape="vh",
                name=side, legendgroup=side, showlegend=row == 1,
                line=dict(color=colour[side], dash=_dash(side), width=1.5),
                hovertemplate=f"{side}<br>t %{{x:.3f}} s<br>%{{y:,.0f}} {unit}<extra></extra>"),
                row=row, col=1)
    for side, ts in series:
        zones = list((ts.get("zones") or {}).values())
        pcp = np.sum([np.asarray(z.get("pcp_pages") or [], float) for z in zones], axis=0) \
            if zones else []
        fig.add_trace(go.Scatter(
            x=ts.get("t_s") or [], y=pcp, mode="lines", name=side, legendgroup=side,
            showlegend=not rates, line=dict(color=colour[side], dash=_dash(side), width=1.5),
            hovertemplate=f"{side}<br>t %{{x:.3f}} s<br>%{{y:,.0f}} pages<extra></extra>"),
            row=3, col=1)
    fig.update_yaxes(title_text="blocks/s", row=1, col=1)
    fig.update_yaxes(title_text="pages/s", row=2, col=1)
    fig.update_yaxes(title_text="pages", row=3, col=1)
    fig.update_xaxes(title_text=time_label(d), row=3, col=1)
    return Panel("pcp", title, _layout(fig, 620), "Rates per sampling window (events in the "
                 "window ÷ its length)." + _line_key(d))


def fig_end_buddyinfo(d: Mapping, visible_zone: str | None) -> Panel:
    """Free blocks per order at the end of the trace (/proc/buddyinfo), both sides, per zone."""
    sides = [(s, d[s].get("end_free_blocks") or {}) for s in SIDES if d.get(s)]
    title = "Free blocks per order at the end of the trace"
    if not any(fb for _, fb in sides):
        return Panel("buddyinfo", title, None, "No end-of-trace free lists in this report.",
                     True)
    fig = go.Figure()
    colour = {"observed": "#1f77b4", "simulated": "#ff7f0e"}
    for zone in zones_of(d):
        for side, fb in sides:
            if zone not in fb:
                continue
            fig.add_trace(go.Bar(
                x=list(range(len(fb[zone]))), y=fb[zone], name=side, meta=zone,
                marker_color=colour[side], visible=zone == visible_zone,
                hovertemplate=f"{zone} {side}<br>order %{{x}}: %{{y:,}} blocks<extra></extra>"))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="order (block = 2^order pages)", dtick=1)
    fig.update_yaxes(title_text="free blocks (count, log scale)", type="log", dtick=1)
    return Panel("buddyinfo", title, _layout(fig, 360), "What /proc/buddyinfo shows: "
                 "observed is the kernel's own end snapshot where the bundle has one.", True)


def fig_matrix(d: Mapping) -> Panel:
    """Allocation requests by order x migratetype (perf kmem page's matrix), as a heatmap."""
    ps = d.get("page_summary") or {}
    orders, types, counts = order_type_matrix(ps.get("by_order_migratetype") or {})
    title = "Allocation requests by order and migratetype"
    if not orders:
        return Panel("matrix", title, None, "No page summary in this report.")
    c = np.asarray(counts, float)
    z = np.where(c > 0, np.log10(np.maximum(c, 1)), np.nan)
    zmax = max(1.0, float(np.nanmax(z)) if np.isfinite(z).any() else 1.0)
    vals, ticks = _log_ticks(zmax)
    fig = go.Figure(go.Heatmap(
        x=types, y=[f"order {o}" for o in orders], z=np.round(z, 3), text=c.astype(int),
        texttemplate="%{text:,}", colorscale="Blues", zmin=0, zmax=zmax,
        colorbar=dict(title=dict(text="requests<br>(log scale)"), tickvals=vals, ticktext=ticks),
        hovertemplate="%{y}, %{x}: %{text:,} requests<extra></extra>"))
    fig.update_xaxes(title_text="migratetype (Linux 6.1 names)", side="bottom")
    fig.update_yaxes(title_text="order (block = 2^order pages)", autorange="reversed")
    fig.update_layout(plot_bgcolor="#f4f4f4")
    return Panel("matrix", title, _layout(fig, 120 + 40 * len(orders),
                                          margin=dict(l=90, r=30, t=20, b=60)),
                 "mm_page_alloc requests (perf kmem page's order × migratetype table).")


def fig_processes(d: Mapping) -> Panel:
    """The per-process table, busiest first (plotly Table)."""
    procs = d.get("per_process") or []
    title = "Processes by allocations"
    if not procs:
        return Panel("processes", title, None, "No per-process table in this report.")
    ranked = sorted(procs, key=lambda r: -(r.get("allocs") or 0))[:MAX_PROCESS_ROWS]
    cols = [(k, label) for k, label in PROCESS_COLUMNS if any(k in r for r in ranked)]
    values = [[html.escape(process_cell(r, k)) for r in ranked] for k, _ in cols]
    fig = go.Figure(go.Table(
        columnwidth=[2.2, 1] + [1.3] * (len(cols) - 2),
        header=dict(values=[f"<b>{html.escape(label)}</b>" for _, label in cols],
                    fill_color="#e8eef7", align="center", font=dict(size=11)),
        cells=dict(values=values, align=["left"] + ["right"] * (len(cols) - 1),
                   fill_color="white", font=dict(size=11), height=22)))
    shown = f"top {len(ranked)} of {len(procs)}" if len(procs) > len(ranked) else \
        f"all {len(procs)}"
    height = 80 + 22 * min(len(ranked), 24) + 40
    note = "Counts are events unless marked pages." + (
        " Scroll the table for more rows." if len(ranked) > 24 else "")
    return Panel("processes", f"{title} ({shown})", _layout(fig, height, margin=dict(
        l=10, r=10, t=30, b=10)), note)


MAX_MIXED_MARKS = 20000


def explain_sides(d: Mapping) -> list[tuple[str, Mapping]]:
    ex = d.get("explain") or {}
    return [(s, ex[s]) for s in SIDES if ex.get(s) and (ex[s].get("map") or {}).get("t_s")]


def fig_pbmap(d: Mapping) -> Panel:
    """Pageblock map: type per pageblock (y, by pfn) and time (x); mixed pageblocks marked.
    Clicking a cell lists that pageblock's culprits below the figure."""
    sides = explain_sides(d)
    title = "Pageblock map: who polluted which pageblocks"
    if not sides:
        return Panel("pbmap", title, None, "No explain tables in this report.")
    fig = make_subplots(rows=1, cols=len(sides), horizontal_spacing=0.06,
                        subplot_titles=[_side_title(s, d) for s, _ in sides])
    n = len(MIGRATETYPES)
    scale = []
    for i, name in enumerate(MIGRATETYPES):
        scale += [[i / n, TYPE_COLOURS[name]], [(i + 1) / n, TYPE_COLOURS[name]]]
    for col, (side, ex) in enumerate(sides, start=1):
        m = ex["map"]
        # one digit per bucket; a numpy array goes to plotly.js as packed binary (no lists)
        z = (np.frombuffer("".join(m["type_rows"]).encode(), np.uint8).astype(np.int8)
             - ord("0")).reshape(len(m["type_rows"]), -1)
        y = np.asarray(m["pfn"], np.int64)
        fig.add_trace(go.Heatmap(
            x=np.asarray(m["t_s"]), y=y, z=z, zmin=-0.5, zmax=n - 0.5, colorscale=scale, meta=side,
            showscale=col == 1,
            colorbar=dict(tickvals=list(range(n)), ticktext=list(MIGRATETYPES), len=0.8,
                          title="pageblock type"),
            hovertemplate="pageblock at pfn %{y:#x}<br>t %{x:.3f} s<extra>" + side
            + "</extra>"), row=1, col=col)
        marks = (m.get("mixed") or [])[:MAX_MIXED_MARKS]
        if marks:
            fig.add_trace(go.Scatter(
                x=[m["t_s"][c] for _, c, _ in marks], y=[y[r] for r, _, _ in marks],
                mode="markers", name="mixed", legendgroup="mixed", showlegend=col == 1,
                marker=dict(symbol="x-thin", size=6, line=dict(width=1.5, color="black")),
                customdata=[[r, v] for r, _, v in marks], meta=side,
                hovertemplate="mixed: %{customdata[1]} polluting pages<extra></extra>"),
                row=1, col=col)
        fig.update_yaxes(tickformat="#x", title_text="pageblock (first pfn)" if col == 1
                         else None, row=1, col=col)
    fig.update_xaxes(title_text=time_label(d))
    height = 200 + min(700, 2 * max(len(ex["map"]["type_rows"]) for _, ex in sides))
    return Panel("pbmap", title, _layout(fig, height), "Colour: the pageblock's migratetype "
                 "at the end of each time bucket; x: a pageblock holding blocks of another "
                 "type (mixed). Click a cell for that pageblock's culprits.")


def fig_culprits(d: Mapping, top: int = 12) -> Panel:
    """The top culprits: steals, pollution page-seconds and pinned pageblocks per side."""
    sides = [(s, ex) for s, ex in ((s, (d.get("explain") or {}).get(s)) for s in SIDES) if ex]
    title = "Top culprits"
    if not sides:
        return Panel("culprits", title, None, "No explain tables in this report.")
    labels: list[str] = []
    for _, ex in sides:
        labels += [r["label"] for r in ex["blame"]["rows"][:top] if r["label"] not in labels]
    labels = labels[:top]
    if not labels:
        return Panel("culprits", title, None, "No steal, pollution or pinned pageblock.")
    metrics = (("steals", "steals (events)"), ("pollution_page_s", "pollution (page-s)"),
               ("pinned_pageblocks_end", "pinned pageblocks at the end"))
    fig = make_subplots(rows=1, cols=len(metrics), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[t for _, t in metrics])
    short = [lab if len(lab) <= 60 else lab[:57] + "..." for lab in labels]
    for side, ex in sides:
        rows = {r["label"]: r for r in ex["blame"]["rows"]}
        for col, (key, _) in enumerate(metrics, start=1):
            fig.add_trace(go.Bar(
                y=short, x=[(rows.get(lab) or {}).get(key, 0) for lab in labels],
                orientation="h", name=side, legendgroup=side, showlegend=col == 1,
                marker_color="#1f77b4" if side == "observed" else "#ff7f0e",
                hovertext=labels, hovertemplate="%{hovertext}<br>%{x:,}<extra>" + side
                + "</extra>"), row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(barmode="group")
    return Panel("culprits", title, _layout(fig, 140 + 26 * len(labels) * len(sides),
                                            margin=dict(l=360)),
                 "Culprits are (comm, gfp, order) of the allocations; docs/metrics.md §6.")


PBMAP_SCRIPT = """<script>
(function () {
  var ex = %(explain)s;
  var el = document.getElementById('fig-pbmap');
  var box = document.getElementById('pbmap-culprits');
  if (!el || !box || !el.on) { return; }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) {
    return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]; }); }
  function list(title, items, unit) {
    if (!items || !items.length) { return ''; }
    return '<p><b>' + title + '</b></p><ul>' + items.map(function (c) {
      return '<li>' + esc(c.culprit) + (c[unit] !== undefined ? ' (' + esc(c[unit]) + ' ' +
        unit.replace(/_/g, ' ') + ')' : '') + (c.pfn !== undefined ? ' pfn 0x' +
        c.pfn.toString(16) : '') + '</li>'; }).join('') + '</ul>';
  }
  window.showCulprits = function (side, row) {
    var s = ex[side]; if (!s) { return; }
    var pb = s.pageblocks[row], info = s.culprits[String(pb)] || {};
    var html = '<h3>' + esc(side) + ': pageblock ' + pb + ' (pfn 0x' +
      s.pfn[row].toString(16) + ', ' + esc(s.zone[row]) + ')</h3>' +
      list('polluted it (page-seconds)', info.pollution, 'pollution_page_s') +
      list('make it mixed at the end', info.mixed_end, 'pages') +
      list('keep it from merging at the end', info.blockers, 'pages');
    if (!info.pollution && !info.mixed_end && !info.blockers) {
      html += '<p>No pollution, mixed blocks or trace-only blockers here.</p>';
    }
    box.innerHTML = html;
    box.setAttribute('data-pageblock', String(pb));
  };
  el.on('plotly_click', function (ev) {
    var p = ev.points && ev.points[0]; if (!p) { return; }
    var side = (p.data && p.data.meta) || 'observed';
    var row = Array.isArray(p.pointNumber) ? p.pointNumber[0]
      : (p.customdata ? p.customdata[0] : null);  // a heatmap cell, or a mixed mark on one
    if (row === null) { return; }
    window.showCulprits(side, row);
  });
  var m = /click=([0-9]+),([0-9]+)/.exec(window.location.hash);
  if (m) {
    el.emit('plotly_click', {points: [{pointNumber: [+m[1], +m[2]], data: el.data[0]}]});
  }
})();
</script>"""


def pbmap_script(d: Mapping) -> str:
    """The click handler's data: per side, the map's rows and each pageblock's culprits."""
    data = {}
    for side, ex in explain_sides(d):
        m = ex["map"]
        data[side] = {"pageblocks": m["pageblocks"], "pfn": m["pfn"], "zone": m["zone"],
                      "culprits": ex.get("culprits_by_pageblock") or {}}
    return PBMAP_SCRIPT % {"explain": _script_json(data)}


# ---------------------------------------------------------------------------------------------
# the page


def header_html(d: Mapping) -> str:
    """Title, verdict banner, key-number cards and per-zone fidelity badges."""
    trace = d.get("trace") or {}
    kind = "compare" if is_compare(d) else "report"
    src = html.escape(str(trace.get("source") or ""))
    sub = []
    if trace.get("kernel_release"):
        sub.append(f"kernel {html.escape(str(trace['kernel_release']))}")
    if trace.get("events") is not None:
        sub.append(f"{fmt_num(trace['events'])} events")
    if trace.get("start_s") is not None and trace.get("end_s") is not None:
        sub.append(f"{trace['start_s']:.3f}–{trace['end_s']:.3f} s "
                   f"({trace['end_s'] - trace['start_s']:.3f} s)")
    if trace.get("lost_events"):
        sub.append(f"<b>{fmt_num(trace['lost_events'])} lost events</b>")
    if is_compare(d):
        sub.append("settings: " + html.escape(_settings_suffix(d).strip(" ()") or
                                               "the kernel's own"))
    return (f'<header><h1>pagereplay {kind} <span class="src">{src}</span></h1>'
            f'<p class="sub">{" · ".join(sub)}</p>{kernel_html(d)}{verdict_html(d)}'
            f'{cards_html(d)}{fidelity_html(d)}</header>')


def kernel_html(d: Mapping) -> str:
    """The kernel rules each side followed, and any warning about them."""
    kp = d.get("kernel_profile") or {}
    if not kp:
        return ""
    obs, sim = kp.get("observed") or {}, kp.get("simulated") or {}
    parts = []
    if obs:
        parts.append(f"observed: {html.escape(str(obs.get('name')))}")
    if sim:
        parts.append(f"simulated: {html.escape(str(sim.get('name')))}"
                     + (" <b>(upgrade what-if)</b>" if kp.get("what_if") else ""))
    out = f'<p class="sub">kernel rules — {" · ".join(parts)}</p>' if parts else ""
    for w in kp.get("warnings") or []:
        out += f'<p class="sub"><b>warning:</b> {html.escape(str(w))}</p>'
    return out


def verdict_html(d: Mapping) -> str:
    """The verdict line, coloured by whether the reconstruction matched /proc."""
    rec = d.get("reconstruct") or {}
    if rec.get("checked"):
        cls = "ok" if rec.get("exact") else "bad"
    else:
        cls = "warn"
    text = html.escape(str(d.get("verdict") or "no verdict"))
    return f'<p class="verdict {cls}" id="verdict">{text}</p>'


def cards_html(d: Mapping) -> str:
    """One card per headline number: observed, and simulated with the gap when comparing."""
    obs, sim = d.get("observed") or {}, d.get("simulated") or {}
    gaps = d.get("gaps") or {}
    out = []
    for key, label, unit in HEADER_CARDS:
        if key not in obs:
            continue
        body = f'<div class="v">{fmt_num(obs[key])}</div>'
        if sim:
            g = gaps.get(key) or {}
            rel = fmt_pct(g.get("relative"), signed=True) if g.get("relative") is not None \
                else ""
            body += (f'<div class="s">simulated {fmt_num(sim.get(key))} '
                     f'({fmt_signed(g.get("diff"))}{", " + rel if rel else ""})</div>')
        out.append(f'<div class="card"><div class="k">{html.escape(label)} '
                   f'<span class="u">({html.escape(unit)})</span></div>{body}</div>')
    ag = d.get("agreement") or {}
    if ag.get("decisions"):
        out.append(f'<div class="card"><div class="k">block choices agreeing with the kernel '
                   f'<span class="u">(%)</span></div><div class="v">'
                   f'{fmt_pct(ag.get("rate"), 3)}</div><div class="s">'
                   f'{fmt_num(ag.get("exact"))} of {fmt_num(ag["decisions"])}</div></div>')
    return f'<div class="cards">{"".join(out)}</div>' if out else ""


def fidelity_html(d: Mapping) -> str:
    """Per-zone badges: did the replayed end state equal the kernel's /proc/buddyinfo?"""
    rec = d.get("reconstruct") or {}
    if not rec.get("checked"):
        return ""
    badges = []
    for zone, l1 in (rec.get("l1_by_zone") or {}).items():
        ok = l1 == 0
        badges.append(f'<span class="badge {"ok" if ok else "bad"}">{html.escape(zone)}: '
                      f'{"exact" if ok else f"L1 {fmt_num(l1)} blocks"}</span>')
    bad = sum((rec.get("inconsistencies") or {}).values())
    badges.append(f'<span class="badge {"ok" if not bad else "bad"}">{fmt_num(bad)} '
                  f'inconsistent events</span>')
    return ('<p class="fidelity">replayed end state vs /proc/buddyinfo: '
            + " ".join(badges) + "</p>")


def zone_selector_html(d: Mapping, selected: str | None) -> str:
    """The zone drop-down that drives every per-zone figure."""
    zones = zones_of(d)
    if not zones:
        return ""
    opts = "".join(f'<option value="{html.escape(z)}"{" selected" if z == selected else ""}>'
                   f"{html.escape(z)}</option>" for z in zones)
    return (f'<nav class="zonesel"><label for="zone">zone for the per-zone figures: </label>'
            f'<select id="zone">{opts}</select></nav>')


def fig_callers(d: Mapping) -> Panel | None:
    """perf kmem --page --caller's table (plotly Table), when the trace has call chains."""
    c = d.get("callers")
    if not c or not c.get("rows"):
        return None
    rows = c["rows"]
    cols = [("total_alloc_kb", "total alloc (KiB)"), ("hits", "hits"), ("order", "order"),
            ("migratetype", "migratetype"), ("gfp_text", "GFP flags"), ("callsite", "call site")]
    values = [[html.escape(fmt_num(r[k]) if k in ("total_alloc_kb", "hits") else str(r[k]))
               for r in rows] for k, _ in cols]
    fig = go.Figure(go.Table(
        columnwidth=[1.2, 1, 0.7, 1.2, 4, 2.4],
        header=dict(values=[f"<b>{html.escape(label)}</b>" for _, label in cols],
                    fill_color="#e8eef7", align="center", font=dict(size=11)),
        cells=dict(values=values, align=["right", "right", "right", "left", "left", "left"],
                   fill_color="white", font=dict(size=11), height=22)))
    named = ("named by the tracer (ftrace's stacktrace, trace-cmd -T)" if c.get("named_by_trace")
             else f"named with {html.escape(str(c['symbols']))}" if c.get("symbols") else
             "unnamed (no --symbols: the chain's first address, an allocator frame)")
    note = (f"{c['stacks']} distinct kernel call chains; call sites {named}. The first frame "
            "outside the tracepoint and the page allocator (perf kmem may name the "
            "tracepoint's own frame); 6.1's migratetype names.")
    return Panel("callers", f"Allocations by call site ({len(rows)} of {c['total_rows']})",
                 _layout(fig, 80 + 22 * min(len(rows), 24) + 40,
                         margin=dict(l=10, r=10, t=30, b=10)), note)


def fig_slow_path(d: Mapping) -> Panel | None:
    """compare: the model's slow-path counters beside the kernel's vmstat deltas (log scale);
    None when neither side reclaimed nor compacted."""
    rows = [r for r in ((d.get("slow_path") or {}).get("vmstat") or [])
            if r.get("kernel") or r.get("model")]
    if not rows:
        return None
    names = [r["counter"] for r in rows][::-1]
    fig = go.Figure()
    for side, colour in (("kernel", "#1f77b4"), ("model", "#ff7f0e")):
        vals = [max(r[side], 0) for r in rows][::-1]
        fig.add_trace(go.Bar(y=names, x=[v if v > 0 else None for v in vals], orientation="h",
                             name="kernel (vmstat start→end)" if side == "kernel" else "model",
                             marker_color=colour, customdata=vals,
                             hovertemplate="%{y}: %{customdata:,}<extra>" + side + "</extra>"))
    fig.update_layout(barmode="group")
    fig.update_xaxes(type="log", title_text="count (log scale)")
    fails = (d.get("slow_path") or {}).get("failures") or []
    note = ("The kernel's counters are the bundle's /proc/vmstat deltas over the capture; the "
            "model's count the same events over the same stretch (docs/metrics.md §8).")
    if fails:
        note += (f" The model failed {sum(f['failures'] for f in fails):,} allocations, most "
                 f"often order {fails[0]['order']} {fails[0]['gfp']}.")
    return Panel("slowpath", "Slow path: the kernel and the model",
                 _layout(fig, 80 + 44 * len(rows)), note)


@contextmanager
def _no_default_template():
    """Figures built without plotly.py's default template: each figure would carry (and copy,
    and validate) its own copy; the page applies TEMPLATE to every figure instead."""
    before = pio.templates.default
    pio.templates.default = None
    try:
        yield
    finally:
        pio.templates.default = before


@lru_cache(maxsize=1)
def template_json() -> str:
    """The page's one plotly template (plotly_white) as JSON."""
    return json.dumps(pio.templates[TEMPLATE].to_plotly_json(), cls=PlotlyJSONEncoder,
                      separators=(",", ":"))


def panels(d: Mapping) -> list[Panel]:
    """Every figure, in page order."""
    with _no_default_template():
        return _panels(d)


def _panels(d: Mapping) -> list[Panel]:
    zone = busiest_zone(d)
    figures = [fig_free_heatmap(d, zone), fig_unusable(d), fig_compaction(d, zone),
               fig_fallbacks(d), fig_pageblocks(d, zone), fig_pbmap(d), fig_culprits(d),
               fig_pcp(d), fig_end_buddyinfo(d, zone), fig_matrix(d), fig_processes(d),
               fig_callers(d), fig_slow_path(d)]
    return [f for f in figures if f is not None]


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return (value if isinstance(value, str) else json.dumps(value)) \
        .replace("</", "<\\/").replace("<!--", "<\\!--")


def panel_html(p: Panel) -> str:
    """A panel's section: heading, note, and the figure's div (or the note alone)."""
    zone = ' <span class="zonename"></span>' if p.per_zone and p.fig is not None else ""
    body = f'<div id="fig-{p.key}" class="fig"></div>' if p.fig is not None else \
        '<p class="empty">(not drawn)</p>'
    if p.key == "pbmap" and p.fig is not None:
        body += '<div id="pbmap-culprits" class="culprits">Click a pageblock.</div>'
    note = f'<p class="note">{html.escape(p.note)}</p>' if p.note else ""
    return f'<section id="panel-{p.key}"><h2>{html.escape(p.title)}{zone}</h2>{note}{body}' \
           f"</section>"


ERROR_TRAP = """<script>
window.__dashErrors = [];
window.addEventListener('error', function (e) {
  window.__dashErrors.push('error: ' + (e.message || (e.target && e.target.src) || e));
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__dashErrors.push('unhandled rejection: ' + (e.reason && (e.reason.stack || e.reason)));
});
(function () {
  var orig = console.error;
  console.error = function () {
    window.__dashErrors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return orig.apply(console, arguments);
  };
})();
</script>"""

DRAW_SCRIPT = """<script>
(function () {
  var figs = %(figs)s, config = %(config)s, template = %(template)s;
  var status = document.getElementById('dash-status');
  function finish() {
    var drawn = 0;
    Object.keys(figs).forEach(function (id) {
      var el = document.getElementById(id);
      if (el && el.classList.contains('js-plotly-plot') && el.querySelector('.main-svg')) {
        drawn++;
      }
    });
    status.setAttribute('data-drawn', String(drawn));
    status.setAttribute('data-errors', window.__dashErrors.join('\\n'));
    status.setAttribute('data-state', 'done');
  }
  function afterLoad() {
    if (document.readyState === 'complete') { setTimeout(finish, 0); return; }
    window.addEventListener('load', function () { setTimeout(finish, 0); });
  }
  function showZone(zone) {
    Object.keys(figs).forEach(function (id) {
      var el = document.getElementById(id);
      if (!el || !el.data || !el.dataset.perZone) { return; }
      var vis = el.data.map(function (t) { return t.meta === undefined || t.meta === zone; });
      Plotly.restyle(el, {visible: vis});
    });
    zoneLabels(zone);
  }
  function zoneLabels(zone) {
    document.querySelectorAll('.zonename').forEach(function (s) {
      s.textContent = '(zone ' + zone + ')';
    });
  }
  try {
    if (typeof Plotly === 'undefined') { throw new Error('plotly.js did not load'); }
    var jobs = Object.keys(figs).map(function (id) {
      var el = document.getElementById(id), f = figs[id];
      if (f.perZone) { el.dataset.perZone = '1'; }
      f.layout.template = f.layout.template || template;
      return Plotly.newPlot(el, f.data, f.layout, config);
    });
    var sel = document.getElementById('zone');
    if (sel) {
      sel.addEventListener('change', function () { showZone(sel.value); });
      var m = /zone=([^&]+)/.exec(window.location.hash);
      var wanted = m ? decodeURIComponent(m[1]) : null;
      if (wanted && Array.prototype.some.call(sel.options, function (o) {
        return o.value === wanted; })) {
        sel.value = wanted;
        jobs = [Promise.all(jobs).then(function () { showZone(wanted); })];
      } else {
        zoneLabels(sel.value);
      }
    }
    Promise.all(jobs).then(afterLoad, function (err) {
      window.__dashErrors.push('newPlot: ' + err); afterLoad();
    });
  } catch (err) {
    window.__dashErrors.push('draw: ' + (err.stack || err)); finish();
  }
})();
</script>"""

STYLE = """<style>
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1500px; padding: 0 18px 40px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 18px 0 4px; } h1 .src { font-weight: normal; color: #555; }
h2 { font-size: 17px; margin: 26px 0 2px; border-top: 1px solid #ddd; padding-top: 14px; }
.sub { color: #555; margin: 0 0 10px; } .note { color: #666; font-size: 13px; margin: 2px 0; }
.verdict { font-weight: bold; padding: 10px 14px; border-radius: 6px; margin: 8px 0; }
.verdict.ok { background: #e6f4ea; border-left: 6px solid #1e8e3e; }
.verdict.warn { background: #fef7e0; border-left: 6px solid #f9ab00; }
.verdict.bad { background: #fce8e6; border-left: 6px solid #d93025; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 170px; }
.card .k { font-size: 12px; color: #555; } .card .u { color: #888; }
.card .v { font-size: 22px; font-weight: bold; } .card .s { font-size: 12px; color: #444; }
.badge { display: inline-block; border-radius: 10px; padding: 2px 9px; margin: 2px;
         font-size: 13px; } .badge.ok { background: #e6f4ea; } .badge.bad { background: #fce8e6; }
.fidelity { margin: 6px 0; font-size: 13px; }
.zonesel { position: sticky; top: 0; background: #fff; padding: 8px 0; z-index: 10;
           border-bottom: 1px solid #eee; font-size: 14px; }
.culprits { font-size: 13px; border: 1px solid #eee; padding: 4px 12px; }
.empty { color: #999; font-style: italic; } .zonename { color: #555; font-weight: normal; }
</style>"""


def plotlyjs_tag(plotlyjs: str) -> str:
    """The <script> that brings plotly.js: "inline" (offline, ~4.7 MB) or "cdn"."""
    if plotlyjs == "inline":
        return f'<script type="text/javascript">{get_plotlyjs()}</script>'
    if plotlyjs == "cdn":
        return (f'<script src="https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js" '
                'charset="utf-8"></script>')
    raise ValueError(f"plotlyjs must be 'inline' or 'cdn', not {plotlyjs!r}")


def figures_json(ps: Sequence[Panel]) -> str:
    """Every drawn figure as {div id: {data, layout, perZone}} JSON."""
    parts = []
    for p in ps:
        if p.fig is None:
            continue
        fig_json = p.fig.to_json(validate=False, pretty=False)
        parts.append(f'"fig-{p.key}": {{"perZone": {json.dumps(p.per_zone)}, '
                     f'{fig_json.strip()[1:-1]}}}')
    return "{" + ", ".join(parts) + "}"


def render_dashboard(d: Mapping, plotlyjs: str = "inline") -> str:
    """The whole dashboard page as HTML text."""
    js_tag = plotlyjs_tag(plotlyjs)
    ps = panels(d)
    n_figs = sum(p.fig is not None for p in ps)
    title = html.escape(f"pagereplay {(d.get('trace') or {}).get('source', '')}")
    draw = DRAW_SCRIPT % {"figs": _script_json(figures_json(ps)),
                          "config": json.dumps(CONFIG),
                          "template": _script_json(template_json())}
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>", STYLE, ERROR_TRAP, js_tag, "</head><body>",
        header_html(d), zone_selector_html(d, busiest_zone(d)),
        *(panel_html(p) for p in ps),
        f'<div id="dash-status" hidden data-state="drawing" data-figures="{n_figs}" '
        'data-drawn="0" data-errors=""></div>',
        draw, pbmap_script(d) if explain_sides(d) else "", "</body></html>", ""])


def write_dashboard(d: dict, path: str | Path, plotlyjs: str = "inline") -> Path:
    """Write the dashboard for report dict `d` to `path` (one HTML file); returns the path.

    plotlyjs: "inline" puts plotly.js in the file (works offline, about 5 MB in all); "cdn"
    loads it from the plotly CDN (a file of a few hundred KB that needs the network).
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_dashboard(d, plotlyjs), encoding="utf-8")
    return out
