"""The report dict (build.py, docs/report-schema.md) as GitHub-flavoured Markdown.

Written to read well in a pull-request comment: the verdict first, then the headline numbers
(observed beside simulated, with the gap, when the dict is a comparison), then the detail. Every
section is optional: a key missing from the dict (no end snapshot, no simulation) drops or
shortens its section instead of failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PAGE_KIB = 4  # x86_64 base page
MIGRATETYPES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")  # 6.1 enum order
TOP_PROCESSES = 15

# Headline numbers: (key in observed/simulated, label, unit).
KEY_METRICS: tuple[tuple[str, str, str], ...] = (
    ("allocs", "allocations", "requests"),
    ("fallbacks", "fallbacks (mm_page_alloc_extfrag)", "events"),
    ("fallback_rate_per_1000", "fallback rate", "per 1,000 allocations"),
    ("fragmenting_fallbacks", "fragmenting fallbacks", "events"),
    ("ownership_changes", "pageblock ownership changes", "events"),
    ("severe_fallbacks", "severe fallbacks (fragmenting, order ≤ 3)", "events"),
    ("moderate_fallbacks", "moderate fallbacks (fragmenting, order > 3)", "events"),
    ("pcp_refill_blocks", "pcp refill", "blocks"),
    ("pcp_drained_pages", "pcp drained", "pages"),
)
PCP_METRICS: tuple[tuple[str, str, str], ...] = (
    ("pcp_refill_blocks", "blocks moved to pcp lists (refill)", "blocks"),
    ("pcp_refills", "refill batches", "batches"),
    ("pcp_drained_pages", "pages drained back to the buddy lists", "pages"),
    ("pcp_drains", "drain batches", "batches"),
)

PROCESS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("comm", "comm"),
    ("pid", "pid"),
    ("allocs", "allocs"),
    ("allocs_under_lock", "allocs under zone lock"),
    ("freed_direct", "freed direct"),
    ("freed_batched", "freed batched"),
    ("pcpu_pages_drained", "pcp drained (pages)"),
    ("pcpu_drains", "pcp drains"),
    ("pcpu_refills", "pcp refills"),
    ("fallbacks", "fallbacks"),
    ("fragmenting", "fragmenting"),
    ("migratetype_changed", "pageblock type changed"),
    ("severe", "severe"),
    ("moderate", "moderate"),
)


# ---------------------------------------------------------------------------------------------
# formatting


def fmt_num(value: Any, decimals: int = 2) -> str:
    """An int with thousands separators, a float with `decimals`, '–' for None/missing."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:,.{decimals}f}"
    return str(value)


def fmt_signed(value: Any, decimals: int = 2) -> str:
    """A difference with its sign ('+3', '−0.02'); '–' for None."""
    if value is None:
        return "–"
    if isinstance(value, float) and round(value, decimals) == 0:
        value = 0.0
    text = fmt_num(value, decimals)
    if isinstance(value, int | float) and value > 0:
        return "+" + text
    return text


def fmt_pct(fraction: float | None, decimals: int = 1, signed: bool = False) -> str:
    """A fraction as a percentage ('18.2%', '+18.2%' when signed)."""
    if fraction is None:
        return "–"
    pct = round(100 * fraction, decimals) + 0.0  # no "-0.0%"
    text = f"{pct:.{decimals}f}%"
    return "+" + text if signed and pct > 0 else text


def fmt_thousandths(value: Any) -> str:
    """A kernel index in thousandths as the kernel prints it: 55 -> '0.055', -1000 -> '-1.000'."""
    if value is None:
        return "–"
    return f"{int(value) / 1000:.3f}"


def cell(value: Any) -> str:
    """Text safe inside a GFM table cell: pipes, angle brackets and newlines escaped."""
    text = str(value)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("\n", " "))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
          align: Sequence[str] | None = None) -> str:
    """A GFM table; `align` per column is 'l' or 'r' (default: first left, rest right)."""
    rows = list(rows)
    align = list(align or ["l"])[: len(headers)]
    align += ["r"] * (len(headers) - len(align))
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def order_sort_key(key: Any) -> tuple[int, str]:
    """Sort orders given as ints or strings numerically."""
    try:
        return int(key), ""
    except (TypeError, ValueError):
        return 1 << 30, str(key)


def type_columns(names: Iterable[str]) -> list[str]:
    """Migratetype names in the kernel's enum order, unknown names after them."""
    seen = set(names)
    return [t for t in MIGRATETYPES if t in seen] + sorted(seen - set(MIGRATETYPES))


def block_kib(order: int) -> str:
    """The size of a 2^order block in KiB or MiB."""
    kib = PAGE_KIB << order
    return f"{kib // 1024} MiB" if kib >= 1024 else f"{kib} KiB"


def free_pages(counts: Sequence[int]) -> int:
    """Free base pages from free blocks per order."""
    return sum(int(n) << o for o, n in enumerate(counts))


def is_compare(d: Mapping) -> bool:
    """True when the dict carries a simulated side."""
    return bool(d.get("simulated"))


# ---------------------------------------------------------------------------------------------
# sections


def section_title(d: Mapping) -> str:
    """The heading and the bold verdict line."""
    trace = d.get("trace") or {}
    what = "pagereplay compare" if is_compare(d) else "pagereplay report"
    src = trace.get("source")
    lines = [f"## {what}" + (f": `{src}`" if src else "")]
    verdict = d.get("verdict")
    if verdict:
        lines.append(f"**{cell(verdict)}**")
    return "\n\n".join(lines)


def section_trace(d: Mapping) -> str:
    """What was replayed: kernel, events, time span, damage."""
    trace, machine = d.get("trace") or {}, d.get("machine") or {}
    if not trace and not machine:
        return ""
    start, end = trace.get("start_s"), trace.get("end_s")
    span = f"{start:.6f} → {end:.6f} ({end - start:.3f} s)" if start is not None \
        and end is not None else "–"
    rows = [
        ("kernel", trace.get("kernel_release") or "–"),
        ("input layout", trace.get("layout") or "–"),
        ("events", fmt_num(trace.get("events"))),
        ("lines read", fmt_num(trace.get("lines"))),
        ("bad lines", fmt_num(trace.get("bad_lines"))),
        ("lost events", fmt_num(trace.get("lost_events"))),
        ("trace time (s)", span),
        ("CPUs in the trace", fmt_num(trace.get("cpus"))),
        ("zones", ", ".join(machine.get("zones") or []) or "–"),
        ("NUMA nodes", fmt_num(machine.get("nodes"))),
        ("pageblock order", fmt_num(machine.get("pageblock_order"))),
    ]
    if d.get("time_window_s"):
        lo, hi = d["time_window_s"]
        rows.append(("time window (s)", f"{lo} → {hi}"))
    if trace.get("replayed_from_event"):
        rows.append(("replayed from event", fmt_num(trace["replayed_from_event"])))
    by_kind = trace.get("events_by_kind") or {}
    if by_kind:
        rows.append(("events by kind", ", ".join(f"{k} {fmt_num(v)}"
                                                 for k, v in by_kind.items())))
    return "### Trace\n\n" + table(["", "value"], rows, ["l", "l"])


def _metric_rows(d: Mapping, metrics: Sequence[tuple[str, str, str]]) -> list[list[str]]:
    obs, sim = d.get("observed") or {}, d.get("simulated") or {}
    gaps = d.get("gaps") or {}
    rows = []
    for key, label, unit in metrics:
        if key not in obs and key not in sim:
            continue
        row = [label, unit, fmt_num(obs.get(key))]
        if sim:
            g = gaps.get(key) or {}
            o, s = obs.get(key), sim.get(key)
            diff = g.get("diff", s - o if o is not None and s is not None else None)
            rel = g.get("relative", (s - o) / o if o and s is not None else None)
            row += [fmt_num(s), fmt_signed(diff), fmt_pct(rel, signed=True)]
        rows.append(row)
    return rows


def _metric_headers(d: Mapping) -> list[str]:
    if is_compare(d):
        return ["metric", "unit", "observed", "simulated", "gap (sim − obs)", "gap (relative)"]
    return ["metric", "unit", "observed"]


def _zone_total(side: Mapping, key: str) -> int | None:
    values = side.get(key)
    if not isinstance(values, Mapping) or not values:
        return None
    return int(sum(values.values()))


def section_key_numbers(d: Mapping) -> str:
    """Headline numbers, observed beside simulated with gaps when comparing."""
    rows = _metric_rows(d, KEY_METRICS)
    obs, sim = d.get("observed") or {}, d.get("simulated") or {}
    for key, label, unit in (("end_free_pages", "free at end (all zones)", "pages"),
                             ("end_free_pageblocks", "free pageblocks at end", "pageblocks"),
                             ("end_mixed_pageblocks", "mixed pageblocks at end", "pageblocks")):
        o, s = _zone_total(obs, key), _zone_total(sim, key)
        if o is None and s is None:
            continue
        row = [label, unit, fmt_num(o)]
        if sim:
            diff = s - o if o is not None and s is not None else None
            rel = diff / o if diff is not None and o else None
            row += [fmt_num(s), fmt_signed(diff), fmt_pct(rel, signed=True)]
        rows.append(row)
    if not rows:
        return ""
    out = "### Key numbers\n\n" + table(_metric_headers(d), rows, ["l", "l", "r", "r", "r", "r"])
    l1 = (d.get("gaps") or {}).get("end_free_blocks_l1")
    if l1:
        out += "\n\nEnd-of-trace free lists, simulated vs observed (L1 distance over orders, " \
               "blocks): " + ", ".join(f"{cell(z)} **{fmt_num(v)}**" for z, v in l1.items())
    return out


def section_reconstruct(d: Mapping) -> str:
    """How exactly the replay reproduced the kernel's /proc/buddyinfo, per zone."""
    rec = d.get("reconstruct")
    if not rec:
        return ""
    lines = ["### Reconstruction fidelity"]
    if not rec.get("checked"):
        lines.append("No end snapshot in the bundle: the reconstruction could not be checked.")
    else:
        expected, got = rec.get("expected") or {}, rec.get("reconstructed") or {}
        l1 = rec.get("l1_by_zone") or {}
        rows = []
        for zone in sorted(set(l1) | set(expected) | set(got)):
            dist = l1.get(zone)
            rows.append([zone, "✅ exact" if dist == 0 else "❌ differs", fmt_num(dist),
                         fmt_num(free_pages(expected[zone])) if zone in expected else "–",
                         fmt_num(free_pages(got[zone])) if zone in got else "–"])
        lines.append(table(["zone", "end buddyinfo", "L1 distance (blocks)",
                            "kernel free (pages)", "replay free (pages)"], rows,
                           ["l", "l", "r", "r", "r"]))
    checks = [("start snapshot", rec.get("start_exact")),
              ("end pagetypeinfo", rec.get("end_pagetypeinfo_exact")),
              ("end pageblock owners (kpageflags)", rec.get("end_pageblocks_exact"))]
    done = [f"{name} {'exact' if ok else 'NOT exact'}" for name, ok in checks if ok is not None]
    if done:
        lines.append("Other checks: " + "; ".join(done) + ".")
    inc = rec.get("inconsistencies") or {}
    if inc:
        bad = {k: v for k, v in inc.items() if v}
        if bad:
            lines.append(table(["inconsistency", "events"],
                               [[k, fmt_num(v)] for k, v in bad.items()]))
        else:
            lines.append(f"Inconsistent events: none (of {len(inc)} kinds checked).")
    return "\n\n".join(lines)


def _agreement_rows(group: str, by: Mapping) -> list[list[str]]:
    rows = []
    for key in sorted(by, key=order_sort_key):
        v = by[key] or {}
        n, ok = v.get("decisions", 0), v.get("exact", 0)
        rows.append([group, key, fmt_num(n), fmt_num(ok), fmt_pct(ok / n if n else None, 3)])
    return rows


def section_agreement(d: Mapping) -> str:
    """How often the model's choice of block is the kernel's."""
    ag = d.get("agreement")
    if not ag:
        return ""
    lines = ["### Agreement with the kernel's block choices",
             f"The model picked the block the kernel took in **{fmt_num(ag.get('exact'))} of "
             f"{fmt_num(ag.get('decisions'))}** decisions ({fmt_pct(ag.get('rate'), 3)})."]
    if ag.get("determined") is not None:
        lines[-1] += (f" Where the free lists determine the choice: "
                      f"{fmt_num(ag.get('determined_exact'))} of {fmt_num(ag['determined'])} "
                      f"({fmt_pct(ag.get('determined_rate'), 3)}).")
    rows = (_agreement_rows("order", ag.get("by_order") or {})
            + _agreement_rows("migratetype", ag.get("by_migratetype") or {})
            + _agreement_rows("fallback", ag.get("by_fallback") or {}))
    if rows:
        lines.append(table(["by", "value", "decisions", "exact", "rate"], rows,
                           ["l", "l", "r", "r", "r"]))
    return "\n\n".join(lines)


def _zone_summary_rows(zone: str, sides: list[tuple[str, Mapping]]) -> list[list[str]]:
    rows = []
    for key, label in (("end_free_pages", "free (pages)"),
                       ("end_free_pageblocks", "free pageblocks"),
                       ("end_largest_free_order", "largest free order"),
                       ("end_mixed_pageblocks", "mixed pageblocks")):
        values = [(side.get(key) or {}).get(zone) for _, side in sides]
        if any(v is not None for v in values):
            rows.append([label] + [fmt_num(v) for v in values])
    by_type = [(s.get("end_pageblocks_by_type") or {}).get(zone) or {} for _, s in sides]
    for name in type_columns({t for bt in by_type for t, n in bt.items() if n}):
        rows.append([f"{name} pageblocks"] + [fmt_num(bt.get(name, 0)) for bt in by_type])
    return rows


def _zone_order_rows(zone: str, sides: list[tuple[str, Mapping]]) -> tuple[int, list[list[str]]]:
    series = (("end_free_blocks", "free blocks", fmt_num),
              ("end_unusable_index", "unusable index (0–1)", fmt_thousandths),
              ("end_fragmentation_index", "fragmentation index (−1…1)", fmt_thousandths))
    rows, n_orders = [], 0
    for key, label, fmt in series:
        for side_name, side in sides:
            values = (side.get(key) or {}).get(zone)
            if values is None:
                continue
            n_orders = max(n_orders, len(values))
            suffix = f", {side_name}" if len(sides) > 1 else ""
            rows.append([label + suffix] + [fmt(v) for v in values])
    return n_orders, rows


def section_zones(d: Mapping) -> str:
    """End-of-trace buddyinfo, unusable and fragmentation index per order, per zone."""
    sides = [(name, d[name]) for name in ("observed", "simulated") if d.get(name)]
    zones = sorted({z for _, s in sides for z in (s.get("end_free_blocks") or {})})
    if not zones:
        return ""
    lines = ["### End-of-trace fragmentation per zone",
             "Unusable index: share of free memory unusable for a block of that order. "
             "Fragmentation index: near 0 a failure there would be for lack of memory, near 1 "
             "for fragmentation; −1.000: a block of that order is free. As in "
             "/sys/kernel/debug/extfrag."]
    side_names = [name for name, _ in sides]
    for zone in zones:
        lines.append(f"#### Zone {cell(zone)}")
        summary = _zone_summary_rows(zone, sides)
        if summary:
            lines.append(table(["at end of trace"] + side_names, summary))
        n_orders, rows = _zone_order_rows(zone, sides)
        if rows:
            headers = ["order →"] + [str(o) for o in range(n_orders)]
            size_row = ["block size"] + [block_kib(o) for o in range(n_orders)]
            lines.append(table(headers, [size_row] + rows))
    return "\n\n".join(lines)


def section_fallbacks(d: Mapping) -> str:
    """Fallback events by (requested type, type fallen back to)."""
    sides = [(name, (d.get(name) or {}).get("fallbacks_by_pair") or {})
             for name in ("observed", "simulated") if d.get(name)]
    pairs = sorted({(a, f) for _, by in sides for a, inner in by.items() for f in inner})
    if not sides:
        return ""
    lines = ["### Fallbacks by migratetype"]
    if not pairs:
        lines.append("No fallback events.")
        return "\n\n".join(lines)
    rows = [[a, f] + [fmt_num((by.get(a) or {}).get(f, 0)) for _, by in sides]
            for a, f in pairs]
    lines.append(table(["requested type", "fell back to"] + [f"{n} (events)" for n, _ in sides],
                       rows, ["l", "l"] + ["r"] * len(sides)))
    return "\n\n".join(lines)


def _ratio(side: Mapping, num: str, den: str) -> float | None:
    n, m = side.get(num), side.get(den)
    return n / m if n is not None and m else None


def section_pcp(d: Mapping) -> str:
    """Per-CPU list refills and drains, with their average batch sizes."""
    rows = _metric_rows(d, PCP_METRICS)
    if not rows:
        return ""
    sides = [d.get("observed") or {}] + ([d["simulated"]] if is_compare(d) else [])
    for num, den, label, unit in (("pcp_refill_blocks", "pcp_refills", "blocks per refill",
                                   "blocks/batch"),
                                  ("pcp_drained_pages", "pcp_drains", "pages per drain",
                                   "pages/batch")):
        values = [_ratio(side, num, den) for side in sides]
        if any(v is not None for v in values):
            row = [label, unit] + [fmt_num(v, 1) for v in values]
            if len(values) == 2:
                o, s = values
                diff = s - o if o is not None and s is not None else None
                row += [fmt_signed(diff, 1), fmt_pct(diff / o if diff is not None and o
                                                     else None, signed=True)]
            rows.append(row)
    return "### Per-CPU page lists\n\n" + table(_metric_headers(d), rows,
                                                 ["l", "l", "r", "r", "r", "r"])


def process_cell(row: Mapping, key: str) -> str:
    """One per-process value as text: comm as the trace printed it, pid bare, counts with
    separators."""
    value = row.get(key)
    if key == "comm":
        return "<...>" if value is None else str(value)  # <...>: pid not in saved_cmdlines
    if key == "pid":
        return "–" if value is None else str(value)
    return fmt_num(value)


def section_processes(d: Mapping, top: int = TOP_PROCESSES) -> str:
    """The busiest processes by allocations (perf kmem-style counts)."""
    procs = d.get("per_process")
    if not procs:
        return ""
    ranked = sorted(procs, key=lambda r: -(r.get("allocs") or 0))[:top]
    cols = [(k, label) for k, label in PROCESS_COLUMNS if any(k in r for r in ranked)]
    rows = [[process_cell(r, k) for k, _ in cols] for r in ranked]
    title = (f"### Top {len(ranked)} of {len(procs)} processes by allocations"
             if len(procs) > len(ranked) else f"### All {len(procs)} processes by allocations")
    note = "Counts are events unless marked pages."
    return "\n\n".join([title, note, table([label for _, label in cols], rows,
                                           ["l"] + ["r"] * (len(cols) - 1))])


def _page_summary_lines(ps: Mapping) -> list[str]:
    rows = [
        ("allocation requests", ps.get("alloc_requests"), ps.get("alloc_kb")),
        ("free requests", ps.get("free_requests"), ps.get("free_kb")),
        ("alloc+freed requests", ps.get("alloc_and_freed"), ps.get("alloc_and_freed_kb")),
        ("alloc-only requests", ps.get("alloc_only"), ps.get("alloc_only_kb")),
        ("free-only requests", ps.get("free_only"), ps.get("free_only_kb")),
        ("allocation failures", ps.get("alloc_failures"), ps.get("alloc_failures_kb")),
    ]
    return [table(["total", "requests", "size (KiB)"],
                  [[name, fmt_num(n), fmt_num(kb)] for name, n, kb in rows
                   if n is not None or kb is not None])]


def order_type_matrix(by: Mapping) -> tuple[list[str], list[str], list[list[int]]]:
    """(orders, migratetypes, counts[order][type]) from {order: {type: n}}, without the
    all-zero orders above the highest order requested."""
    orders = sorted((str(o) for o in by), key=order_sort_key)
    types = type_columns({t for inner in by.values() for t in (inner or {})})
    lookup = {str(o): inner or {} for o, inner in by.items()}
    counts = [[int(lookup[o].get(t) or 0) for t in types] for o in orders]
    while counts and not any(counts[-1]):
        orders, counts = orders[:-1], counts[:-1]
    return orders, types, counts


def section_page_summary(d: Mapping) -> str:
    """perf kmem page's summary and its order x migratetype matrix, with 6.1's type names."""
    ps = d.get("page_summary")
    if not ps:
        return ""
    lines = ["### Page allocation summary (perf kmem page)"] + _page_summary_lines(ps)
    if d.get("live_pages") is not None:
        lines.append(f"Pages still allocated at the end of the trace (live): "
                     f"{fmt_num(d['live_pages'])}.")
    orders, types, counts = order_type_matrix(ps.get("by_order_migratetype") or {})
    if orders:
        rows = []
        for o, row in zip(orders, counts, strict=True):
            size = block_kib(int(o)) if o.lstrip("-").isdigit() and int(o) >= 0 else "–"
            rows.append([o, size] + [fmt_num(n) for n in row] + [fmt_num(sum(row))])
        totals = [sum(c[i] for c in counts) for i in range(len(types))]
        rows.append(["all", ""] + [fmt_num(n) for n in totals] + [fmt_num(sum(totals))])
        lines.append("Allocation requests by order and migratetype, with Linux 6.1's names "
                     "(perf kmem page labels its columns in the pre-4.4 enum order, so it shows "
                     "Movable as Reclaimable and back):")
        lines.append(table(["order", "block size"] + [f"{t} (requests)" for t in types]
                           + ["total (requests)"], rows, ["l", "r"] + ["r"] * (len(types) + 1)))
    return "\n\n".join(lines)


CALLER_ROWS = 20


def section_callers(d: Mapping, top: int = CALLER_ROWS) -> str:
    """Allocations by call site (perf kmem --page --caller), when the trace has call chains."""
    c = d.get("callers")
    if not c or not c.get("rows"):
        return ""
    rows = c["rows"][:top]
    title = f"### Allocations by call site ({len(rows)} of {c['total_rows']} rows)"
    if c.get("symbols"):
        note = (f"From {c['stacks']} distinct kernel call chains, named with `{c['symbols']}`: "
                "the call site is the first frame outside the tracepoint and the page "
                "allocator's entry points (perf kmem may name the tracepoint's own frame). "
                "Migratetypes use 6.1's names (perf kmem swaps Movable and Reclaimable).")
    else:
        note = (f"From {c['stacks']} distinct kernel call chains, without symbols: the call site "
                "is the chain's first address, an allocator frame (as perf kmem without "
                "kallsyms). Give `--symbols System.map` (or kallsyms) to name the callers.")
    body = [[fmt_num(r["total_alloc_kb"]), fmt_num(r["hits"]), str(r["order"]),
             str(r["migratetype"]), f"`{r['gfp_text']}`", f"`{r['callsite']}`"] for r in rows]
    return "\n\n".join([title, note, table(
        ["total alloc (KiB)", "hits", "order", "migratetype", "GFP flags", "call site"], body,
        ["r", "r", "r", "l", "l", "l"])])


def section_settings(d: Mapping) -> str:
    """The what-if settings the simulation ran under."""
    if not is_compare(d) and not d.get("settings"):
        return ""
    settings = d.get("settings") or {}
    if not settings:
        return "### Settings\n\nThe kernel's own (no `--set`)."
    return "### Settings\n\n" + table(["setting", "value"],
                                      [[k, fmt_num(v)] for k, v in settings.items()], ["l", "l"])


SECTIONS = (section_title, section_key_numbers, section_reconstruct, section_agreement,
            section_zones, section_fallbacks, section_pcp, section_processes,
            section_page_summary, section_callers, section_settings, section_trace)


def render_markdown(d: dict) -> str:
    """The whole report as GitHub-flavoured Markdown (verdict first)."""
    parts = [s(d) for s in SECTIONS]
    footer = f"<sub>pagereplay report schema {d.get('schema_version', '?')}, " \
             f"kind {d.get('kind', '?')}</sub>"
    return "\n\n".join(p for p in parts if p) + "\n\n" + footer + "\n"
