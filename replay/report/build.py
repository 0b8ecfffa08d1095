"""Assemble what `report` and `compare` write: one JSON-ready dict (docs/report-schema.md).

The same metric functions run on observed and simulated events and states, so every number has
its counterpart on the other side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from replay.engine.sampling import Samples
from replay.metrics.callsites import named_by_trace
from replay.metrics.compaction import compaction_section
from replay.metrics.fallbacks import fallback_summary, pcp_summary
from replay.metrics.fragmentation import (
    fragmentation_index_all,
    free_pageblocks,
    largest_free_order,
    unusable_index_all,
)
from replay.metrics.peers import caller_table, live_pages, page_summary, per_process
from replay.metrics.slowpath import slow_path_section
from replay.trace.schema import MIGRATETYPE_NAMES

if TYPE_CHECKING:
    from replay.metrics.caller_counts import CallerCounts, ChainBook
    from replay.trace.symbols import Symbols

SCHEMA_VERSION = 1


def events_frame(table, time_window: tuple[float, float] | None = None,
                 i_from: int = 0) -> pl.DataFrame:
    """Events as polars, from index i_from, optionally limited to [start, end] seconds."""
    df = pl.from_arrow(table.slice(i_from)) if i_from else pl.from_arrow(table)
    df = df.with_columns(pl.col("event").cast(pl.Utf8))
    if time_window is not None:
        lo, hi = (int(round(t * 1e9)) for t in time_window)
        df = df.filter((pl.col("ts_ns") >= lo) & (pl.col("ts_ns") <= hi))
    return df


def zone_metrics(free_blocks: dict[str, list[int]], pageblock_order: int) -> dict:
    """End-of-trace per-zone fragmentation numbers from free blocks per order."""
    out: dict = {"end_free_blocks": {}, "end_unusable_index": {},
                 "end_fragmentation_index": {}, "end_largest_free_order": {},
                 "end_free_pageblocks": {}, "end_free_pages": {}}
    for zone, counts in free_blocks.items():
        c = np.asarray(counts, np.int64)
        out["end_free_blocks"][zone] = c.tolist()
        out["end_unusable_index"][zone] = unusable_index_all(c).tolist()
        out["end_fragmentation_index"][zone] = fragmentation_index_all(c).tolist()
        out["end_largest_free_order"][zone] = int(largest_free_order(c))
        out["end_free_pageblocks"][zone] = int(free_pageblocks(c, pageblock_order))
        out["end_free_pages"][zone] = int((c << np.arange(len(c))).sum())
    return out


def side_metrics(side: SideEvents, free_blocks: dict[str, list[int]],
                 samples: Samples | None, end_index: int | None, pageblock_order: int) -> dict:
    """The observed or simulated side of comparison.json."""
    fb = side.fallback
    pcp = side.pcp
    d = {
        "allocs": fb["allocs"],
        "fallbacks": fb["fallbacks"],
        "fragmenting_fallbacks": fb["fragmenting"],
        "ownership_changes": fb["ownership_changes"],
        "severe_fallbacks": fb["severe"],
        "moderate_fallbacks": fb["moderate"],
        "fallback_rate_per_1000": fb["fallback_rate_per_1000"],
        "fallbacks_by_pair": fb["by_pair"],
        "pcp_refill_blocks": pcp["refill_blocks"],
        "pcp_refills": pcp["refill_runs"],
        "pcp_drained_pages": pcp["drained_pages"],
        "pcp_drains": pcp["drain_runs"],
    }
    d.update(zone_metrics(free_blocks, pageblock_order))
    if samples is not None and samples.index:
        k = _sample_at(samples, end_index)
        d["end_pageblocks_by_type"] = {
            zone: dict(zip(MIGRATETYPE_NAMES, samples.pageblocks[k][zi].tolist(), strict=False))
            for zi, zone in enumerate(samples.zones)}
        d["end_mixed_pageblocks"] = {zone: int(samples.mixed_pageblocks[k][zi])
                                     for zi, zone in enumerate(samples.zones)}
    return d


def _sample_at(samples: Samples, index: int | None) -> int:
    if index is None:
        return len(samples.index) - 1
    idx = np.asarray(samples.index)
    return int(np.clip(np.searchsorted(idx, index), 0, len(idx) - 1))


def samples_free_blocks(samples: Samples, index: int | None) -> dict[str, list[int]]:
    k = _sample_at(samples, index)
    return {zone: samples.free_blocks[k][zi].tolist() for zi, zone in enumerate(samples.zones)}


def timeseries(samples: Samples | None, pageblock_order: int,
               time_window: tuple[float, float] | None = None) -> dict:
    """Per zone over time: free blocks per order, unusable index at pageblock_order, pageblocks
    by owner type, mixed pageblocks, free pages (in the samples' order)."""
    if samples is None or not samples.index:
        return {}
    t = np.asarray(samples.ts_ns) / 1e9
    keep = np.ones(len(t), bool)
    if time_window is not None:
        keep = (t >= time_window[0]) & (t <= time_window[1])
    fb = np.stack(samples.free_blocks)[keep]  # [S, Z, O]
    pbs = np.stack(samples.pageblocks)[keep]  # [S, Z, T]
    mixed = np.stack(samples.mixed_pageblocks)[keep]
    pcp = np.stack(samples.pcp_pages)[keep]
    out = {"t_s": np.round(t[keep], 6).tolist(), "zones": {}}
    for zi, zone in enumerate(samples.zones):
        counts = fb[:, zi, :]
        out["zones"][zone] = {
            "free_blocks": counts.tolist(),
            "free_pages": (counts << np.arange(counts.shape[1])).sum(axis=1).tolist(),
            "unusable_index_pb": unusable_index_all(counts)[:, pageblock_order].tolist(),
            "pageblocks": {name: pbs[:, zi, k].tolist() for k, name in
                           enumerate(MIGRATETYPE_NAMES)},
            "mixed_pageblocks": mixed[:, zi].tolist(),
            "pcp_pages": pcp[:, zi].tolist(),
        }
    return out


def fallback_events(df: pl.DataFrame, limit: int = 20000) -> list[dict]:
    """Each mm_page_alloc_extfrag event for the time line (at most `limit`, evenly taken)."""
    ex = df.filter(pl.col("event") == "mm_page_alloc_extfrag")
    if ex.height > limit:
        ex = ex.gather_every(ex.height // limit + 1)
    names = dict(enumerate(MIGRATETYPE_NAMES))
    return [
        {"t_s": r["ts_ns"] / 1e9, "alloc_mt": names.get(r["migratetype"], str(r["migratetype"])),
         "fallback_mt": names.get(r["fallback_migratetype"], str(r["fallback_migratetype"])),
         "fallback_order": r["fallback_order"], "fragmenting": bool(r["fragmenting"]),
         "change_ownership": bool(r["change_ownership"])}
        for r in ex.select("ts_ns", "migratetype", "fallback_migratetype", "fallback_order",
                           "fragmenting", "change_ownership").iter_rows(named=True)
    ]


def pcp_rates(df: pl.DataFrame, edges_s: list[float]) -> dict:
    """pcp refill blocks and drained pages per window (between consecutive sample times)."""
    if len(edges_s) < 2:
        return {"t_s": [], "refill_blocks": [], "drained_pages": []}
    edges = (np.asarray(edges_s) * 1e9).astype(np.int64)
    refill = df.filter((pl.col("event") == "mm_page_alloc_zone_locked")
                       & (pl.col("percpu_refill") == 1))["ts_ns"].to_numpy()
    drains = df.filter(pl.col("event") == "mm_page_pcpu_drain")
    dts = drains["ts_ns"].to_numpy()
    dpages = (1 << drains["order"].fill_null(0).cast(pl.Int64).to_numpy()) if drains.height \
        else np.zeros(0, np.int64)
    r, _ = np.histogram(refill, bins=edges)
    d, _ = np.histogram(dts, bins=edges, weights=dpages)
    return {"t_s": np.round(edges[1:] / 1e9, 6).tolist(), "refill_blocks": r.tolist(),
            "drained_pages": d.astype(np.int64).tolist()}


def compaction_rates(df: pl.DataFrame, edges_s: list[float]) -> dict:
    """Compaction per window (between sample times): free pages the scanners isolated, pages
    migrated, direct-compaction stalls (try_to_compact_pages calls)."""
    if len(edges_s) < 2:
        return {"t_s": [], "free_isolated": [], "migrated": [], "stalls": []}
    edges = (np.asarray(edges_s) * 1e9).astype(np.int64)
    ev = pl.col("event")
    iso = df.filter(ev.is_in(["mm_compaction_isolate_freepages",
                              "mm_compaction_fast_isolate_freepages"]))
    mig = df.filter(ev == "mm_compaction_migratepages")
    stall = df.filter(ev == "mm_compaction_try_to_compact_pages")["ts_ns"].to_numpy()

    def hist(frame: pl.DataFrame, column: str) -> list[int]:
        if not frame.height:
            return [0] * (len(edges) - 1)
        h, _ = np.histogram(frame["ts_ns"].to_numpy(), bins=edges,
                            weights=frame[column].fill_null(0).to_numpy())
        return h.astype(np.int64).tolist()

    return {"t_s": np.round(edges[1:] / 1e9, 6).tolist(),
            "free_isolated": hist(iso, "nr_taken"), "migrated": hist(mig, "nr_migrated"),
            "stalls": np.histogram(stall, bins=edges)[0].tolist()}


def end_marker_index(run, e) -> int | None:
    """The event index of the end.buddyinfo marker (where the kernel's end state was read)."""
    from replay.engine.events import marker_positions

    return marker_positions(run.data, e.seq).get("end.buddyinfo begin")


def trace_section(run, recon_i_start: int, facts: TraceFacts) -> dict:
    st = run.data.stats
    return {
        "source": run.source,
        "kernel_release": st.kernel_release,
        "layout": st.layout,
        "lines": st.lines,
        "events": st.events,
        "events_by_kind": st.events_by_kind,
        "bad_lines": st.bad_total,
        "bad_lines_by_reason": st.bad_lines,
        "lost_events": st.lost_events,
        "markers": st.markers,
        "cpus": st.cpus,
        "start_s": float(facts.ts_min / 1e9) if facts.ts_min is not None else None,
        "end_s": float(facts.ts_max / 1e9) if facts.ts_max is not None else None,
        "replayed_from_event": recon_i_start,
    }


def verdict(d: dict) -> str:
    """One line a person reads first."""
    parts = []
    rec = d.get("reconstruct")
    if rec is not None:
        if rec.get("checked"):
            parts.append("reconstruction EXACT against /proc/buddyinfo" if rec["exact"] else
                         f"reconstruction NOT exact (L1 {sum(rec['l1_by_zone'].values())} blocks)")
            bad = sum(rec["inconsistencies"].values())
            parts.append(f"{bad} inconsistent events")
        else:
            parts.append("no end snapshot to check the reconstruction against")
    comp = d.get("compaction") or {}
    if comp.get("verdict"):
        parts.append(comp["verdict"])
    elif (comp.get("trace") or {}).get("runs"):
        t = comp["trace"]
        parts.append(f"compaction: {t['runs']:,} runs, {t['free_isolated']:,} free pages "
                     f"isolated by the traced free scanner, {t['migrated']:,} migrated")
    ag = d.get("agreement")
    if ag:
        parts.append(f"model agrees with the kernel on {100 * ag['rate']:.3f}% of "
                     f"{ag['decisions']:,} block choices")
    obs, sim = d.get("observed"), d.get("simulated")
    if obs:
        rate = obs["fallback_rate_per_1000"]
        parts.append(f"observed {rate:.2f} fallbacks per 1,000 allocations")
    if sim:
        parts.append(f"simulated {sim['fallback_rate_per_1000']:.2f}")
    slow = d.get("slow_path") or {}
    vm = {r["counter"]: r for r in slow.get("vmstat", [])}
    if vm.get("compact_stall", {}).get("kernel") or vm.get("compact_stall", {}).get("model"):
        st, sc = vm["compact_stall"], vm.get("compact_success", {"kernel": 0, "model": 0})
        parts.append(f"compaction stalls kernel {st['kernel']:,} (success {sc['kernel']:,}), "
                     f"model {st['model']:,} (success {sc['model']:,})")
    return "; ".join(parts)


def recon_section(recon) -> dict:
    if recon is None:
        return {}
    d = recon.as_dict()
    return {
        "checked": recon.end is not None,
        "exact": recon.exact,
        "l1_by_zone": d["l1_by_zone"],
        "inconsistencies": d["inconsistencies"],
        "expected": d["expected"],
        "reconstructed": d["reconstructed"],
        "start_exact": recon.start.exact if recon.start else None,
        "end_pagetypeinfo_exact": recon.end_pagetypeinfo.exact if recon.end_pagetypeinfo
        else None,
        "end_pageblocks_exact": recon.end_pageblocks.exact if recon.end_pageblocks else None,
        "counters": d["counters"],
    }


@dataclass
class SideEvents:
    """What the report reads of one side's events: from a polars frame (`frame_side`) or
    accumulated while a trace streams by (replay.stream); the same numbers either way."""

    fallback: dict  # fallback_summary
    pcp: dict  # pcp_summary
    page_summary: dict
    fallback_events: list[dict]
    pcp_rates: Callable[[list[float]], dict]  # per window between the given sample times
    per_process: list[dict] | None = None  # observed side only
    live_pages: int | None = None
    compaction_frame: object | None = None  # a frame holding the side's compaction events
    callers: Callable[[object], dict | None] | None = None  # symbols -> callers_section


def frame_side(df: pl.DataFrame, observed: bool = True, full: bool = True) -> SideEvents:
    """A side's SideEvents from its events frame (events_frame); `full=False` computes only
    what side_metrics reads (a sweep point)."""
    return SideEvents(
        fallback_summary(df), pcp_summary(df), page_summary(df) if full else {},
        fallback_events(df) if full else [],
        lambda edges: pcp_rates(df, edges),
        per_process(df).to_dicts() if observed else None,
        live_pages(df).height if observed else None,
        df if observed else None,
        (lambda symbols: callers_section(df, symbols)) if observed else None)


@dataclass
class TraceFacts:
    """What the report says of the trace beyond its events: first and last timestamps and
    the end.buddyinfo marker's event index."""

    ts_min: int | None
    ts_max: int | None
    end_index: int | None
    index_at_time: Callable[[int], int] | None = None  # searchsorted over the engine's ts


def build(run, recon, obs_samples: Samples | None, sim=None, settings: dict | None = None,
          time_window: tuple[float, float] | None = None, kind: str = "report",
          explain: dict | None = None) -> dict:
    """The whole report dict for `report` (sim None) or `compare`; `explain` holds the explain
    tables by side (replay.metrics.explain_tables), as explain.json has them."""
    i0 = recon.i_start
    obs = frame_side(events_frame(run.data.events, time_window, i0))
    sim_side = frame_side(events_frame(sim.events, time_window), False) if sim is not None \
        else None
    ev = run.data.events
    ts = ev["ts_ns"].to_numpy() if ev.num_rows else np.zeros(0)
    facts = TraceFacts(int(ts.min()) if len(ts) else None, int(ts.max()) if len(ts) else None,
                       end_marker_index(run, recon.events),
                       lambda t: int(np.searchsorted(recon.events.ts, t)))
    return assemble(run, recon, obs_samples, obs, facts, sim, sim_side, settings, time_window,
                    kind, explain)


def assemble(run, recon, obs_samples: Samples | None, obs: SideEvents, facts: TraceFacts,  # noqa: PLR0913
             sim=None, sim_side: SideEvents | None = None, settings: dict | None = None,
             time_window: tuple[float, float] | None = None, kind: str = "report",
             explain: dict | None = None) -> dict:
    """The report dict from each side's SideEvents (see build)."""
    pbo = recon.machine.pageblock_order
    i0 = recon.i_start
    end_idx = facts.end_index
    obs_free, end_source = _observed_end_free(run, recon, obs_samples, end_idx, time_window,
                                              facts.index_at_time)
    d: dict = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "trace": trace_section(run, i0, facts),
        "time_window_s": [None if not np.isfinite(t) else t for t in time_window]
        if time_window else None,
        "machine": {"zones": [z.key for z in recon.machine.zones], "cpus": recon.machine.cpus,
                    "pageblock_order": pbo, "nodes": recon.machine.nodes},
        "reconstruct": recon_section(recon),
        "agreement": {k: v for k, v in recon.agreement.as_dict().items()},
        "observed": side_metrics(obs, obs_free, obs_samples, end_idx, pbo),
        "settings": settings or {},
        "per_process": obs.per_process,
        "page_summary": _str_keys(obs.page_summary),
        "live_pages": obs.live_pages,
        "callers": obs.callers(getattr(run, "symbols", None)) if obs.callers else None,
        "timeseries": {"observed": timeseries(obs_samples, pbo, time_window)},
        "fallback_events": {"observed": obs.fallback_events},
    }
    d["observed"]["end_source"] = end_source
    edges = d["timeseries"]["observed"].get("t_s", [])
    d["pcp_rates"] = {"observed": obs.pcp_rates(edges)}
    snap_start = run.bundle.start.vmstat if run.bundle is not None else None
    snap_end = run.bundle.end.vmstat if run.bundle is not None and time_window is None \
        else None
    d["compaction"] = compaction_section(obs.compaction_frame, snap_start, snap_end,
                                         recon.compaction, recon.counters)
    d["compaction"]["rates"] = compaction_rates(obs.compaction_frame, edges)
    if sim is not None and sim_side is not None:
        sim_pbo = sim.machine.pageblock_order
        sim_free = samples_free_blocks(sim.samples, end_idx) if sim.samples else {}
        d["simulated"] = side_metrics(sim_side, sim_free, sim.samples, end_idx, sim_pbo)
        d["simulated"]["counters"] = sim.counters
        d["timeseries"]["simulated"] = timeseries(sim.samples, sim_pbo, time_window)
        d["fallback_events"]["simulated"] = sim_side.fallback_events
        d["pcp_rates"]["simulated"] = sim_side.pcp_rates(edges)
        d["page_summary_simulated"] = _str_keys(sim_side.page_summary)
        d["simulated"]["machine"] = {"pageblock_order": sim_pbo, "cpus": sim.machine.cpus,
                                     "max_order": sim.machine.max_order}
        d["gaps"] = gaps(d["observed"], d["simulated"])
        d["slow_path"] = slow_path_section(sim, snap_start, snap_end)
    d["kernel_profile"] = kernel_profile_section(recon, sim)
    if explain:
        d["explain"] = explain
    d["verdict"] = verdict(d)
    return d


MAX_CALLER_ROWS = 50


def callers_section(df: pl.DataFrame, symbols=None) -> dict | None:
    """perf kmem --page --caller's table (`caller_table`) when the events have call chains
    (perf.data recorded with -g, ftrace's stacktrace, trace-cmd -T): its first MAX_CALLER_ROWS
    rows, the symbol file used, and whether the tracer named the frames itself."""
    if "stack_id" not in df.columns or df["stack_id"].null_count() == df.height:
        return None
    return _callers(caller_table(df, symbols), symbols, named_by_trace(df),
                    int(df["stack_id"].n_unique() - (1 if df["stack_id"].null_count() else 0)))


def streamed_callers_section(counts: CallerCounts, book: ChainBook,
                             symbols: Symbols | None = None) -> dict | None:
    """callers_section of a streamed trace's events from the start in the window: from the
    allocations counted as they went by (caller_counts.CallerCounts) and the chains read."""
    from replay.metrics.caller_counts import caller_table_from

    if not counts.events:
        return None
    return _callers(caller_table_from(counts, book, symbols), symbols, book.named_by_trace,
                    counts.stacks)


def _callers(table: pl.DataFrame, symbols, named: bool, stacks: int) -> dict:
    return {"symbols": symbols.source if symbols is not None else None,
            "named_by_trace": named, "stacks": stacks,
            "total_rows": table.height, "rows": table.head(MAX_CALLER_ROWS).to_dicts()}


def kernel_profile_section(recon, sim=None) -> dict:
    """Which kernel rules each side followed (replay/engine/profile.py), the release they
    were chosen from, and any warning (a kernel with no profile of its own, a what-if)."""
    d: dict = {}
    rp = getattr(recon, "profile", None)
    if rp is not None:
        d.update(release=rp.release, detected_from=rp.detected_from,
                 observed=rp.model.as_dict(), warnings=list(rp.warnings))
    sp = getattr(sim, "profile", None) if sim is not None else None
    if sp is not None:
        d["simulated"] = sp.model.as_dict()
        d["what_if"] = sp.what_if
        d["warnings"] = list(dict.fromkeys(d.get("warnings", []) + list(sp.warnings)))
    return d


def _str_keys(ps: dict) -> dict:
    """JSON object keys are strings: make the order keys so before serialising."""
    out = dict(ps)
    if "by_order_migratetype" in out:
        out["by_order_migratetype"] = {str(k): v for k, v in out["by_order_migratetype"].items()}
    return out


def _observed_end_free(run, recon, samples, end_idx, time_window, index_at_time=None
                       ) -> tuple[dict[str, list[int]], str]:
    """The kernel's own end.buddyinfo where the bundle has one (and no time window cuts the
    trace short); else the reconstructed state."""
    if time_window is None and run.bundle is not None and run.bundle.end.buddyinfo:
        return {f"{n}/{z}": list(c) for (n, z), c in run.bundle.end.buddyinfo.items()
                if f"{n}/{z}" in {zz.key for zz in recon.machine.zones}}, "snapshot"
    if samples is not None and samples.index:
        idx = end_idx
        if time_window is not None:
            idx = index_at_time(int(time_window[1] * 1e9))
        return samples_free_blocks(samples, idx), "replay"
    from replay.engine.state import buddyinfo

    b = buddyinfo(recon.state)
    return {z.key: b[i].tolist() for i, z in enumerate(recon.machine.zones)}, "replay"


def gaps(obs: dict, sim: dict) -> dict:
    """Simulated minus observed, for the headline numbers (relative where meaningful)."""
    out = {}
    for k in ("allocs", "fallbacks", "fragmenting_fallbacks", "ownership_changes",
              "fallback_rate_per_1000", "pcp_refill_blocks", "pcp_drained_pages"):
        o, s = obs.get(k, 0), sim.get(k, 0)
        out[k] = {"observed": o, "simulated": s, "diff": s - o,
                  "relative": (s - o) / o if o else None}
    l1 = {}
    for zone, oc in obs.get("end_free_blocks", {}).items():
        sc = sim.get("end_free_blocks", {}).get(zone)
        if sc is not None:
            l1[zone] = int(np.abs(np.asarray(oc) - np.asarray(sc)).sum())
    out["end_free_blocks_l1"] = l1
    return out
