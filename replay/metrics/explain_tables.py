"""The explain pass's tables (JSON-ready): steals, blame per culprit, mixed pageblocks at the
end with the live blocks that make them mixed, pollution per pageblock over time, the blocks
that keep pageblocks from merging, and the pageblock map. docs/metrics.md §6 defines them."""

from __future__ import annotations

import numpy as np
import polars as pl

from replay.metrics import explain_kernel as K
from replay.metrics.callsites import callsite
from replay.trace.gfp import gfp_to_text
from replay.trace.schema import MIGRATETYPE_NAMES

TOP_BLAME = 50
TOP_PAGEBLOCKS = 50
TOP_BLOCKERS = 12
MAP_COLUMNS = 1024
SORT_KEYS = ("steals", "mixed_pageblocks_end", "pollution_page_s", "pinned_pageblocks_end",
             "pages")


def type_name(mt: int) -> str:
    return MIGRATETYPE_NAMES[mt] if 0 <= mt < len(MIGRATETYPE_NAMES) else str(mt)


def culprit_fields(state, key: int) -> dict:
    """A culprit key as the tables print it."""
    if key < 0 or key >= len(state.keys.rows):
        return {"comm": None, "gfp": None, "gfp_flags": None, "order": None,
                "migratetype": None, "callsite": None, "label": "(requester not traced)"}
    comm_id, gfp, order, mt, stack = state.keys.rows[key]
    comm = state.keys.comms[comm_id] if comm_id >= 0 else None
    gfp_text = gfp_to_text(gfp) if gfp != 0xFFFFFFFF else None
    chain, syms = state.keys.chains.get(stack, (None, None))
    site = callsite(chain, getattr(state, "symbols", None), syms) if stack >= 0 else None
    label = f"{comm or '<...>'} {gfp_text} order {order}" + (f" @ {site}" if site else "")
    return {"comm": comm, "gfp": gfp_text, "gfp_flags": gfp if gfp != 0xFFFFFFFF else None,
            "order": order, "migratetype": type_name(mt),
            "stack_id": stack if stack >= 0 else None, "callsite": site, "label": label}


def pageblock_zones(state) -> np.ndarray:
    """Zone index of each pageblock: that of its first pfn (as pagetypeinfo and
    sampling.mixed_pageblocks count), else of its last; -1 outside every zone."""
    pbo = state.pbo
    npb = len(state.A.pb_mt)
    npfn = len(state.pg_zone)
    first = np.minimum(np.arange(npb, dtype=np.int64) << pbo, npfn - 1)
    lastp = np.minimum(first + (1 << pbo) - 1, npfn - 1)
    z = state.pg_zone[first].astype(np.int64)
    return np.where(z >= 0, z, state.pg_zone[lastp].astype(np.int64))


def build_tables(state, end) -> dict:
    """Every table of explain.json (end: the engine's Occupancy at the end point, or None)."""
    zpb = pageblock_zones(state)
    snap = state.end_snapshot
    steals = steal_rows(state, zpb)
    mixed = mixed_end(state, snap, zpb)
    pinned = merge_blockers(state, snap, end, zpb) if end is not None else None
    pollution = pollution_tables(state, zpb)
    blame = blame_table(state, mixed, pinned)
    d = {
        "pageblock_order": state.pbo,
        "pageblock_kib": 4 << state.pbo,
        "time_window_s": [t / 1e9 for t in state.window] if state.window else None,
        "end": {"index": snap["index"], "t_s": snap["ts_ns"] / 1e9},
        "totals": totals(state, steals, mixed, pinned, end),
        "blame": blame,
        "steals": steals,
        "mixed_end": mixed,
        "pollution": pollution,
        "merge_blockers": pinned,
        "map": pageblock_map(state, zpb),
    }
    d["culprits_by_pageblock"] = culprits_by_pageblock(state, mixed, pinned)
    return d


def totals(state, steals: dict, mixed: dict, pinned: dict | None, end=None) -> dict:
    A = state.A
    differ = None
    if end is not None and end.pb_mt is not None:
        mine = state.end_snapshot["pb_mt"]
        n = min(len(mine), len(end.pb_mt))
        differ = int((mine[:n] != end.pb_mt[:n]).sum())
    return {
        "pageblock_types_differing_from_engine": differ,
        "events": state.events_seen,
        "extfrag_events": int(A.scal[K.S_EXTFRAG]),
        "steals": steals["total"],
        "steals_requester_traced": steals["requester_traced"],
        "mixed_pageblocks_end": sum(mixed["by_zone"].values()),
        "mixed_pageblocks_end_attributed": mixed["attributed"],
        "pinned_pageblocks_end": pinned["pinned"] if pinned else None,
        "pollution_page_s": round(float(state.pollution["page_ns"].sum()) / 1e9, 6)
        if not state.pollution.is_empty() else 0.0,
        "culprit_keys": len(state.keys.rows),
        "drained_without_free": int(A.scal[K.S_LOST_FREES]),
        "pageblock_corrections": int(A.scal[K.S_CORRECTIONS]),
        "outside_pageblocks": int(A.scal[K.S_OUTSIDE]),
    }


def steal_rows(state, zpb: np.ndarray) -> dict:
    rows = np.concatenate(state.steal_rows) if state.steal_rows else \
        np.zeros((0, K.N_STEAL_FIELDS), np.int64)
    out = []
    for r in rows:
        key = int(r[K.F_KEY])
        who = culprit_fields(state, key)
        pb = int(r[K.F_PFN]) >> state.pbo
        own = int(r[K.F_COMM])
        comm = who["comm"] or (state.keys.comms[own] if own >= 0 else None) \
            or state.comm_by_pid.get(int(r[K.F_PID]))
        out.append({
            "t_s": int(r[K.F_TS]) / 1e9, "index": int(r[K.F_INDEX]), "cpu": int(r[K.F_CPU]),
            "pid": int(r[K.F_PID]), "comm": comm, "gfp": who["gfp"],
            "order": int(r[K.F_AORD]), "callsite": who["callsite"], "key": key,
            "pfn": int(r[K.F_PFN]), "pageblock": pb, "zone": _zone(state, zpb, pb),
            "fallback_order": int(r[K.F_FORD]), "alloc_migratetype": type_name(r[K.F_AMT]),
            "fallback_migratetype": type_name(r[K.F_FMT]),
            "change_ownership": int(r[K.F_CHOWN]), "whole_block": bool(r[K.F_WHOLE]),
            "pageblock_type_before": type_name(r[K.F_OLD]),
            "pageblock_type_after": type_name(r[K.F_NEW]),
            "pageblocks_retyped": int(r[K.F_RETYPED]),
            "held_live_pages": {type_name(m): int(r[K.F_HELD0 + m])
                                for m in range(K.MIGRATE_TYPES) if r[K.F_HELD0 + m]},
            "free_block_pages": 1 << int(r[K.F_FORD]),
            "left_mixed": bool(r[K.F_MIXED_AFTER]),
        })
    return {"total": state.steals_total, "rows": out,
            "rows_dropped": state.steals_total - len(out),
            "requester_traced": sum(int(v[0]) for k, v in state.steal_by_key.items() if k >= 0)}


def _zone(state, zpb: np.ndarray, pb: int) -> str | None:
    z = int(zpb[pb]) if 0 <= pb < len(zpb) else -1
    return state.zones[z] if 0 <= z < len(state.zones) else None


def mixed_end(state, snap: dict, zpb: np.ndarray) -> dict:
    """Pageblocks mixed at the end point, each with the live blocks that make it mixed."""
    live = snap["live"]
    pb_mt = snap["pb_mt"]
    pbo = state.pbo
    poll = live["poll_t0"] >= 0
    heads = {k: v[poll] for k, v in live.items()}
    pbs = heads["pfn"] >> pbo
    by_zone = dict.fromkeys(state.zones, 0)
    rows = []
    t_end = snap["ts_ns"]
    for pb in np.unique(pbs):
        z = _zone(state, zpb, int(pb))
        if z is None:
            continue
        by_zone[z] += 1
        sel = np.flatnonzero(pbs == pb)
        polluters = [_block(state, heads, j, t_end) for j in sel]
        polluters.sort(key=lambda b: -b["pages"])
        rows.append({"pageblock": int(pb), "zone": z, "pfn": int(pb) << pbo,
                     "type": type_name(int(pb_mt[pb])),
                     "polluting_pages": sum(b["pages"] for b in polluters),
                     "polluting_blocks": len(polluters), "polluters": polluters[:TOP_BLOCKERS]})
    rows.sort(key=lambda r: (-r["polluting_pages"], r["pageblock"]))
    return {"by_zone": by_zone, "attributed": sum(1 for r in rows if r["polluters"]),
            "pageblocks": rows}


def _block(state, heads: dict, j: int, t_end: int) -> dict:
    key = int(heads["key"][j])
    who = culprit_fields(state, key)
    b = {"pfn": int(heads["pfn"][j]), "order": int(heads["order"][j]),
         "pages": 1 << int(heads["order"][j]), "migratetype": type_name(int(heads["mt"][j])),
         "key": key, "culprit": who["label"],
         "allocated_s": int(heads["alloc_ts"][j]) / 1e9,
         "live_s": round((t_end - int(heads["alloc_ts"][j])) / 1e9, 6)}
    if heads["poll_t0"][j] >= 0:
        b["polluting_s"] = round((t_end - int(heads["poll_t0"][j])) / 1e9, 6)
        b["cause"] = K.CAUSE_NAMES[int(heads["cause"][j])]
    return b


def merge_blockers(state, snap: dict, end, zpb: np.ndarray) -> dict:
    """Pageblocks not entirely free at the end, and those only trace allocations (and pcp
    pages) keep from merging to pageblock_order: freeing the named blocks would merge them."""
    from replay.metrics.explain import pages_per_pageblock

    pbo = state.pbo
    full = 1 << pbo
    live = snap["live"]
    npb = len(end.free_pages)
    trace = pages_per_pageblock(live["pfn"], live["order"], pbo, npb)
    other = np.maximum(end.in_zone_pages - end.free_pages - end.pcp_pages - trace, 0)
    in_zone = (zpb[:npb] >= 0) & (end.in_zone_pages == full)
    free = in_zone & (end.free_pages >= full)
    pinned = in_zone & ~free & (other == 0) & (trace > 0)
    pbs = np.flatnonzero(pinned)
    pbs = pbs[np.lexsort((pbs, trace[pbs]))]  # fewest blocker pages first
    heads_pb = live["pfn"] >> pbo
    rows = []
    per_key: dict[int, list[int]] = {}
    for pb in pbs:
        sel = np.flatnonzero(_covering(live, heads_pb, int(pb), pbo))
        for j in sel:
            per_key.setdefault(int(live["key"][j]), [0, 0])
            per_key[int(live["key"][j])][1] += 1 << int(live["order"][j])
        for k in {int(live["key"][j]) for j in sel}:
            per_key[k][0] += 1
        if len(rows) < TOP_PAGEBLOCKS:
            blocks = sorted((_block(state, live, j, snap["ts_ns"]) for j in sel),
                            key=lambda b: -b["pages"])
            rows.append({"pageblock": int(pb), "zone": _zone(state, zpb, int(pb)),
                         "pfn": int(pb) << pbo, "type": type_name(int(snap["pb_mt"][pb])),
                         "free_pages": int(end.free_pages[pb]),
                         "pcp_pages": int(end.pcp_pages[pb]), "blocker_pages": int(trace[pb]),
                         "blocker_blocks": len(sel), "blockers": blocks[:TOP_BLOCKERS]})
    by_zone = {z: {"pageblocks": int((zpb[:npb][in_zone] == zi).sum()),
                   "free": int((zpb[:npb][free] == zi).sum()),
                   "pinned_by_trace": int((zpb[:npb][pinned] == zi).sum()),
                   "with_other_pages": int((zpb[:npb][in_zone & ~free & ~pinned] == zi).sum())}
               for zi, z in enumerate(state.zones)}
    return {"pinned": len(pbs), "by_zone": by_zone, "pageblocks": rows, "by_key": per_key}


def _covering(live: dict, heads_pb: np.ndarray, pb: int, pbo: int) -> np.ndarray:
    """Live blocks overlapping pageblock pb (a block of order > pbo spans several)."""
    end_pb = (live["pfn"] + (1 << live["order"]) - 1) >> pbo
    return (heads_pb <= pb) & (end_pb >= pb)


def pollution_tables(state, zpb: np.ndarray) -> dict:
    A = state.A
    pol = state.pollution
    rows = []
    if not pol.is_empty():
        per_pb = (pol.group_by("pageblock")
                  .agg(pl.col("page_ns").sum(), pl.col("page_events").sum())
                  .sort(["page_ns", "pageblock"], descending=[True, False]))
        for r in per_pb.head(TOP_PAGEBLOCKS).iter_rows(named=True):
            pb = int(r["pageblock"])
            rows.append({"pageblock": pb, "zone": _zone(state, zpb, pb), "pfn": pb << state.pbo,
                         "mixed_s": round(int(A.pb_mixed_ns[pb]) / 1e9, 6),
                         "pollution_page_s": round(r["page_ns"] / 1e9, 6),
                         "pollution_page_events": int(r["page_events"]),
                         "max_polluting_pages": int(A.pb_max_poll_pages[pb]),
                         "culprits": _top_keys(state, pol.filter(pl.col("pageblock") == pb))})
    tops = []
    w0, w1 = state.window or (-(1 << 62), 1 << 62)
    for r in state.top_intervals:
        t0, t1 = max(int(r[K.I_T0]), w0), min(int(r[K.I_T1]), w1)
        who = culprit_fields(state, int(r[K.I_KEY]))
        tops.append({"pfn": int(r[K.I_PFN]), "pageblock": int(r[K.I_PFN]) >> state.pbo,
                     "order": int(r[K.I_ORDER]), "migratetype": type_name(int(r[K.I_MT])),
                     "pageblock_type": type_name(int(r[K.I_PBMT])), "culprit": who["label"],
                     "key": int(r[K.I_KEY]), "from_s": t0 / 1e9, "to_s": t1 / 1e9,
                     "polluting_s": round(max(t1 - t0, 0) / 1e9, 6),
                     "polluting_events": int(r[K.I_E1] - r[K.I_E0]),
                     "page_s": round((1 << int(r[K.I_ORDER])) * max(t1 - t0, 0) / 1e9, 6),
                     "cause": K.CAUSE_NAMES[int(r[K.I_CAUSE])],
                     "ended": K.END_NAMES[int(r[K.I_END])],
                     "live_s": round((int(r[K.I_T1]) - int(r[K.I_ALLOC_TS])) / 1e9, 6)})
    return {"pageblocks_polluted": int(pol["pageblock"].n_unique()) if not pol.is_empty()
            else 0, "by_pageblock": rows, "top_allocations": tops}


def _top_keys(state, frame: pl.DataFrame, n: int = 5) -> list[dict]:
    agg = (frame.group_by("key").agg(pl.col("page_ns").sum(), pl.col("stretches").sum())
           .sort(["page_ns", "key"], descending=[True, False]).head(n))
    return [{"key": int(r["key"]), "culprit": culprit_fields(state, int(r["key"]))["label"],
             "pollution_page_s": round(r["page_ns"] / 1e9, 6), "stretches": int(r["stretches"])}
            for r in agg.iter_rows(named=True)]


def blame_table(state, mixed: dict, pinned: dict | None) -> dict:
    """Per culprit key: steals, pageblocks left mixed, page-seconds of pollution, pins."""
    A = state.A
    nk = len(state.keys.rows)
    cols = {name: np.zeros(nk, np.int64) for name in (
        "steals", "whole_block_steals", "pageblocks_retyped", "steals_left_mixed",
        "pollution_stretches", "pollution_page_events", "mixed_pageblocks_end",
        "polluting_pages_end", "pinned_pageblocks_end", "pinned_pages_end")}
    page_s = np.zeros(nk)
    unknown = state.steal_by_key.get(-1, np.zeros(4, np.int64))
    for k, v in state.steal_by_key.items():
        if 0 <= k < nk:
            for name, x in zip(("steals", "whole_block_steals", "pageblocks_retyped",
                                "steals_left_mixed"), v, strict=True):
                cols[name][k] = x
    if not state.pollution.is_empty():
        per = state.pollution.group_by("key").agg(pl.col("page_ns", "page_events",
                                                         "stretches").sum())
        k = per["key"].to_numpy()
        page_s[k] = per["page_ns"].to_numpy() / 1e9
        cols["pollution_page_events"][k] = per["page_events"].to_numpy()
        cols["pollution_stretches"][k] = per["stretches"].to_numpy()
    for row in mixed["pageblocks"]:
        seen = set()
        for b in _all_polluters(state, row["pageblock"]):
            cols["polluting_pages_end"][b[0]] += b[1]
            seen.add(b[0])
        for k in seen:
            cols["mixed_pageblocks_end"][k] += 1
    if pinned:
        for k, (n, pages) in pinned.pop("by_key").items():
            if 0 <= k < nk:
                cols["pinned_pageblocks_end"][k] = n
                cols["pinned_pages_end"][k] = pages
    allocs = A.key_allocs[:nk]
    pages = A.key_pages[:nk]
    frame = pl.DataFrame({"key": np.arange(nk), "allocs": allocs, "pages": pages,
                          "pollution_page_s": page_s, **cols})
    blamed = frame.filter((pl.col("steals") > 0) | (pl.col("pollution_stretches") > 0)
                          | (pl.col("mixed_pageblocks_end") > 0)
                          | (pl.col("pinned_pageblocks_end") > 0))
    labels = [culprit_fields(state, int(k))["label"] for k in blamed["key"]]
    blamed = blamed.with_columns(pl.Series("label", labels, pl.Utf8))
    blamed = blamed.sort([*SORT_KEYS, "label"], descending=[True] * len(SORT_KEYS) + [False])
    rows = []
    for r in blamed.head(TOP_BLAME).iter_rows(named=True):
        who = culprit_fields(state, r["key"])
        r["pollution_page_s"] = round(r["pollution_page_s"], 6)
        rows.append({**{k: who[k] for k in ("comm", "gfp", "order", "migratetype", "callsite",
                                            "label")}, **r})
    return {"rows": rows, "culprits": blamed.height, "rows_dropped": max(blamed.height - TOP_BLAME,
                                                                         0),
            "unattributed_steals": int(unknown[0]), "sorted_by": list(SORT_KEYS)}


def _all_polluters(state, pb: int) -> list[tuple[int, int]]:
    live = state.end_snapshot["live"]
    sel = (live["poll_t0"] >= 0) & ((live["pfn"] >> state.pbo) == pb)
    return [(int(k), 1 << int(o)) for k, o in zip(live["key"][sel], live["order"][sel],
                                                   strict=True)]


def culprits_by_pageblock(state, mixed: dict, pinned: dict | None) -> dict:
    """For the map's click: per pageblock with anything to say, its culprits."""
    out: dict[str, dict] = {}
    pol = state.pollution
    if not pol.is_empty():
        for pb in pol["pageblock"].unique().to_list():
            out.setdefault(str(pb), {})["pollution"] = _top_keys(
                state, pol.filter(pl.col("pageblock") == pb))
    for row in mixed["pageblocks"]:
        out.setdefault(str(row["pageblock"]), {})["mixed_end"] = [
            {"culprit": b["culprit"], "pfn": b["pfn"], "pages": b["pages"]}
            for b in row["polluters"][:5]]
    for row in (pinned or {}).get("pageblocks", []):
        out.setdefault(str(row["pageblock"]), {})["blockers"] = [
            {"culprit": b["culprit"], "pfn": b["pfn"], "pages": b["pages"]}
            for b in row["blockers"][:5]]
    return out


def pageblock_map(state, zpb: np.ndarray) -> dict:
    """Pageblock type per time bucket and pageblock: `type_rows[i]` is pageblock i's type code
    (an index into `types`) per bucket as a string of digits; `mixed` lists [row, bucket,
    largest polluting pages] where the pageblock was mixed. More than MAP_COLUMNS pageblocks
    are shown in groups (the group's most common type, its largest polluting count)."""
    A = state.A
    pbs = np.flatnonzero(zpb >= 0)
    nb = A.grid_type.shape[0]
    t0, t1 = state.t_range
    edges = t0 + (np.arange(nb + 1) * (t1 - t0 + 1)) // nb
    types = A.grid_type[:, pbs].astype(np.int64)
    mixed = A.grid_mixed[:, pbs].astype(np.int64)
    group = max(1, -(-len(pbs) // MAP_COLUMNS))
    if group > 1:
        pad = (-len(pbs)) % group
        pbs_p = np.concatenate([pbs, np.full(pad, pbs[-1])])
        types = np.concatenate([types, np.repeat(types[:, -1:], pad, axis=1)], axis=1)
        mixed = np.concatenate([mixed, np.zeros((nb, pad), np.int64)], axis=1)
        t3 = types.reshape(nb, -1, group)
        counts = np.stack([(t3 == m).sum(axis=2) for m in range(K.MIGRATE_TYPES)], axis=2)
        types = counts.argmax(axis=2)
        mixed = mixed.reshape(nb, -1, group).max(axis=2)
        pbs = pbs_p[::group]
    rows, cols = np.nonzero(mixed.T)
    return {"t_s": [round(t / 1e9, 6) for t in edges[:-1]],
            "t_end_s": round(int(edges[-1]) / 1e9, 6), "group": group,
            "pageblocks": pbs.tolist(), "pfn": (pbs << state.pbo).tolist(),
            "zone": [_zone(state, zpb, int(pb)) for pb in pbs],
            "types": list(MIGRATETYPE_NAMES),
            "type_rows": ["".join(map(str, r)) for r in types.T.tolist()],
            "mixed": [[int(r), int(c), int(mixed[c, r])] for r, c in zip(rows, cols,
                                                                        strict=True)]}
