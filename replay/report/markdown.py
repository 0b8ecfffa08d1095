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


COMPACTION_ROWS = (
    ("runs", "compaction runs (mm_compaction_begin)", None),
    ("direct_compactions", "direct compaction attempts (try_to_compact_pages)", "compact_stall"),
    ("kcompactd_wakes", "kcompactd wakes", "compact_daemon_wake"),
    ("free_isolated", "free pages isolated by the traced free scanner", None),
    ("migrate_isolated", "pages isolated by the migrate scanner", None),
    ("migrated", "pages migrated", "pgmigrate_success"),
    ("free_scanned", "pages the free scanner scanned", "compact_free_scanned"),
    ("migrate_scanned", "pages the migrate scanner scanned", "compact_migrate_scanned"),
)


def section_compaction(d: Mapping) -> str:
    """Compaction in the trace, the kernel's vmstat counters, and what the replay inferred."""
    comp = d.get("compaction") or {}
    t, vm = comp.get("trace") or {}, comp.get("vmstat") or {}
    if not t.get("runs") and not comp.get("verdict") and not vm.get("compact_isolated"):
        return ""
    lines = ["### Compaction"]
    if comp.get("verdict"):
        lines.append(f"**{comp['verdict']}.**")
    rows = [[label, fmt_num(t.get(key)), fmt_num(vm.get(v)) if v and v in vm else "–"]
            for key, label, v in COMPACTION_ROWS]
    if "compact_isolated" in vm:
        rows.append(["pages isolated, both scanners (compact_isolated)",
                     fmt_num(t.get("free_isolated", 0) + t.get("migrate_isolated", 0)),
                     fmt_num(vm["compact_isolated"])])
    lines.append(table(["", "trace", "vmstat delta"], rows, ["l", "r", "r"]))
    rep = comp.get("replay")
    if rep and (t.get("runs") or rep.get("captures")):
        inferred = rep.get("inferred") or {}
        traced = fmt_num(rep.get("free_scanner_pages"))
        text = (f"The replay followed the traced free scanner ({traced} pages) and inferred "
                f"{fmt_num(rep.get('inferred_untraced_pages'))} pages taken "
                f"by the untraced fast search (vmstat's residual: "
                f"{fmt_num(comp.get('untraced_isolated_pages'))}); "
                f"{fmt_num(rep.get('captures'))} captures ({fmt_num(rep.get('captured_pages'))} "
                f"pages), {fmt_num(rep.get('targets_released'))} unused targets released. "
                "Inferred from later events: "
                + ", ".join(f"{k.replace('_', ' ')} {fmt_num(v)}" for k, v in inferred.items())
                + ".")
        lines.append(text)
    return "\n\n".join(lines)


def section_slow_path(d: Mapping) -> str:
    """The model's slow path against the kernel's vmstat deltas (compare only)."""
    slow = d.get("slow_path") or {}
    rows = [[r["counter"], fmt_num(r["kernel"]), fmt_num(r["model"]),
             f"{r['gap_pct']:+.1f}%" if r.get("gap_pct") is not None else "–"]
            for r in slow.get("vmstat", []) if r["kernel"] or r["model"]]
    if not rows and not slow.get("failures"):
        return ""
    lines = ["### Slow path: the kernel's vmstat and the model"]
    rec = slow.get("recorded_sysctls") or {}
    if rec:
        lines.append(f"Traced machine: THP defrag `{rec.get('thp_defrag')}`, "
                     f"compaction_proactiveness {rec.get('compaction_proactiveness')}, "
                     f"extfrag_threshold {rec.get('extfrag_threshold')} "
                     f"(from {rec.get('source')}).")
    if rows:
        lines.append(table(["counter", "kernel (start→end)", "model", "gap"], rows,
                           ["l", "r", "r", "r"]))
    fails = slow.get("failures") or []
    if fails:
        lines.append(table(["order", "gfp", "model failures", "first s", "last s"],
                           [[str(r["order"]), f"`{r['gfp']}`", fmt_num(r["failures"]),
                             f"{r['first_s']:.3f}", f"{r['last_s']:.3f}"] for r in fails[:10]],
                           ["r", "l", "r", "r", "r"]))
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
    if c.get("named_by_trace"):
        note = (f"From {c['stacks']} distinct kernel call chains, with the frames' names the "
                "tracer printed (ftrace's stacktrace, trace-cmd -T): the call site is the first "
                "frame outside the tracepoint and the page allocator's entry points. "
                "Migratetypes use 6.1's names (perf kmem swaps Movable and Reclaimable).")
    elif c.get("symbols"):
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


def section_kernel(d: Mapping) -> str:
    """Which kernel's rules each side followed, warnings first; a what-if lists the rules
    that differ between the two sides."""
    kp = d.get("kernel_profile") or {}
    if not kp:
        return ""
    lines = ["### Kernel rules"]
    for w in kp.get("warnings") or []:
        lines.append(f"> **Warning:** {cell(w)}")
    obs, sim = kp.get("observed") or {}, kp.get("simulated") or {}
    rows = [("release", kp.get("release") or "unknown"),
            ("chosen from", kp.get("detected_from") or "–")]
    if obs:
        rows.append(("observed side", f"{obs.get('name')} ({obs.get('source')})"))
    if sim:
        what_if = " — upgrade what-if" if kp.get("what_if") else ""
        rows.append(("simulated side", f"{sim.get('name')} ({sim.get('source')}){what_if}"))
    lines.append(table(["", "value"], rows, ["l", "l"]))
    if obs and sim and kp.get("what_if"):
        diff = [[k, obs["rules"][k], sim["rules"][k]]
                for k in obs.get("rules", {}) if obs["rules"][k] != sim["rules"].get(k)]
        lines.append(table(["rule", f"observed ({obs.get('name')})",
                            f"simulated ({sim.get('name')})"], diff, ["l", "l", "l"]))
    return "\n\n".join(lines)


TOP_CULPRITS = 10


def _explain_totals(side: str, ex: Mapping) -> str:
    t = ex.get("totals") or {}
    pinned = t.get("pinned_pageblocks_end")
    return (f"**{side}:** {fmt_num(t.get('steals'))} steals (of "
            f"{fmt_num(t.get('extfrag_events'))} mm_page_alloc_extfrag events, "
            f"{fmt_num(t.get('steals_requester_traced'))} with their requesting allocation), "
            f"{fmt_num(t.get('mixed_pageblocks_end'))} mixed pageblocks at the end "
            f"({fmt_num(t.get('mixed_pageblocks_end_attributed'))} attributed to live blocks), "
            f"{fmt_num(t.get('pollution_page_s'), 3)} page-seconds of pollution"
            + (f", {fmt_num(pinned)} pageblocks kept from merging by trace allocations only"
               if pinned is not None else "")
            + f"; pageblocks of {ex.get('pageblock_kib', '?')} KiB.")


def section_explain(d: Mapping, top: int = TOP_CULPRITS) -> str:
    """Who stole and polluted pageblocks (docs/metrics.md §6), observed and simulated."""
    ex_all = d.get("explain") or {}
    sides = [(k, ex_all[k]) for k in ("observed", "simulated") if ex_all.get(k)]
    if not sides:
        return ""
    lines = ["### Who fragmented memory", "A *steal* is a fallback (mm_page_alloc_extfrag) "
             "charged to the allocation it served; a block *pollutes* while its migratetype "
             "differs from its pageblock's (a *mixed* pageblock); *pinned* pageblocks are "
             "kept from merging to pageblock_order only by blocks allocated during the trace "
             "(docs/metrics.md §6)."]
    lines += [_explain_totals(s, ex) for s, ex in sides]
    metrics = (("steals", "steals"), ("mixed_pageblocks_end", "mixed@end"),
               ("pollution_page_s", "pollution page-s"), ("pinned_pageblocks_end",
                                                          "pinned@end"))
    labels: list[str] = []
    by_side: dict[str, dict] = {}
    for s, ex in sides:
        rows = (ex.get("blame") or {}).get("rows") or []
        by_side[s] = {r["label"]: r for r in rows}
        labels += [r["label"] for r in rows[:top] if r["label"] not in labels]
    headers = ["culprit (comm gfp order)", "type"]
    for _, name in metrics:
        headers += [f"{name} ({s})" for s, _ in sides]
    body = []
    for label in labels[: top * len(sides)]:
        any_row = next(by_side[s][label] for s, _ in sides if label in by_side[s])
        row = [label, any_row.get("migratetype") or ""]
        for key, _ in metrics:
            for s, _ in sides:
                r = by_side[s].get(label)
                row.append(fmt_num(r[key], 3 if key == "pollution_page_s" else 0)
                           if r else "–")
        body.append(row)
    if body:
        lines.append(table(headers, body, ["l", "l"]))
    obs = dict(sides).get("observed") or {}
    mixed = (obs.get("mixed_end") or {}).get("pageblocks") or []
    if mixed:
        lines.append(table(["mixed pageblock (observed)", "zone", "type", "polluting pages",
                            "live blocks that make it mixed"],
                           [[r["pageblock"], r["zone"], r["type"], r["polluting_pages"],
                             "; ".join(f"{b['culprit']} pfn {b['pfn']:#x}"
                                       for b in r["polluters"][:3])] for r in mixed[:top]],
                           ["r", "l", "l", "r", "l"]))
    pinned = (obs.get("merge_blockers") or {}).get("pageblocks") or []
    if pinned:
        lines.append(table(["nearest to merging (observed)", "zone", "type", "free", "pcp",
                            "blocker pages", "blocks to free"],
                           [[r["pageblock"], r["zone"], r["type"], r["free_pages"],
                             r["pcp_pages"], r["blocker_pages"],
                             "; ".join(f"{b['culprit']} pfn {b['pfn']:#x}"
                                       for b in r["blockers"][:3])] for r in pinned[:5]],
                           ["r", "l", "l", "r", "r", "r", "l"]))
    return "\n\n".join(lines)


SECTIONS = (section_title, section_kernel, section_key_numbers, section_reconstruct,
            section_agreement, section_compaction, section_slow_path, section_zones,
            section_fallbacks,
            section_explain, section_pcp,
            section_processes, section_page_summary, section_callers, section_settings,
            section_trace)


def render_markdown(d: dict) -> str:
    """The whole report as GitHub-flavoured Markdown (verdict first)."""
    parts = [s(d) for s in SECTIONS]
    footer = f"<sub>pagereplay report schema {d.get('schema_version', '?')}, " \
             f"kind {d.get('kind', '?')}</sub>"
    return "\n\n".join(p for p in parts if p) + "\n\n" + footer + "\n"
