"""`pagereplay info`: a human summary of a trace (and the same as JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from replay.commands.ingest_cmd import print_bad, stats_dict
from replay.trace.sources import resolve


def trace_summary(source: str, strict: bool = False,
                  symbols: Path | None = None) -> tuple[dict, object]:
    """The summary of a trace, read batch by batch (memory bounded whatever its length); the
    second value is the source it was read from."""
    from replay.stream.source import open_events

    events, _ = open_events(source, strict=strict, prefer_binary=False)
    t0 = t1 = None
    cpus: set[int] = set()
    pids: set[int] = set()
    failed = 0
    chains = _Chains()
    for batch in events.batches():
        if not batch.num_rows:
            continue
        chains.feed(batch)
        lo, hi = pc.min(batch["ts_ns"]).as_py(), pc.max(batch["ts_ns"]).as_py()
        t0 = lo if t0 is None else min(t0, lo)
        t1 = hi if t1 is None else max(t1, hi)
        cpus.update(pc.unique(batch["cpu"]).to_pylist())
        pids.update(pc.unique(batch["pid"]).to_pylist())
        failed += pc.sum(batch["failed"]).as_py() or 0
    d = stats_dict(events.stats)
    if t0 is not None:
        d["first_ts_s"] = t0 / 1e9
        d["last_ts_s"] = t1 / 1e9
        d["duration_s"] = (t1 - t0) / 1e9
        d["cpus_seen"] = sorted(cpus)
        d["pids"] = len(pids)
        d["failed_allocs"] = failed
    d["markers_list"] = [
        {"ts_s": m["ts_ns"] / 1e9, "cpu": m["cpu"], "text": m["text"]}
        for m in events.markers().to_pylist()
    ]
    d["zones"] = _zones(source)
    d["callchains"] = chains.summary(source, symbols, events.stats.kernel_reloc) \
        if chains.counts.events else None
    return d, events


TOP_CALLSITES = 10


class _Chains:
    """perf.data -g, ftrace's stacktrace, trace-cmd -T: the call chains and the allocations
    with one, gathered batch by batch (caller_counts.py)."""

    def __init__(self) -> None:
        from replay.metrics.caller_counts import CallerCounts, ChainBook
        from replay.stream.columns import CommTable

        self.book, self.counts, self.comms = ChainBook(), CallerCounts(), CommTable()

    def feed(self, batch: pa.RecordBatch) -> None:
        if "stack_id" not in batch.schema.names or \
                batch["stack_id"].null_count == batch.num_rows:
            return
        from replay.stream.columns import batch_columns

        cols, _ = batch_columns(batch, self.comms)
        self.book.learn(batch, cols["stack"], cols["gfp"])
        self.counts.feed(cols)

    def summary(self, source: str, symbols: Path | None, kernel_reloc) -> dict:
        """Events with a kernel call chain, distinct chains, and the top call sites by
        allocated KiB (named by the tracer, or by the symbols; raw addresses without
        either)."""
        from replay.metrics.caller_counts import caller_table_from
        from replay.pipeline import symbols_for

        path, bundle = resolve(source)
        syms = symbols_for(symbols, bundle or (path.parent if path else None), True,
                           kernel_reloc)
        table = caller_table_from(self.counts, self.book, syms)
        top = (table.group_by("callsite")
               .agg(pl.col("total_alloc_kb").sum(), pl.col("hits").sum())
               .sort(["total_alloc_kb", "callsite"], descending=[True, False])
               .head(TOP_CALLSITES))
        return {"events": self.counts.events, "stacks": self.counts.stacks,
                "symbols": syms.source if syms else None,
                "named_by_trace": self.book.named_by_trace, "top_callsites": top.to_dicts()}


def _zones(source: str) -> list[dict]:
    _, bundle = resolve(source)
    if bundle is None:
        return []
    try:
        from replay.trace.snapshots import open_bundle
    except ImportError:
        return []
    b = open_bundle(bundle)
    snap = b.start or b.end
    if snap is None or snap.zoneinfo is None:
        return []
    return [
        {"zone": f"{z.node}/{z.name}", "start_pfn": z.start_pfn, "spanned": z.spanned,
         "managed": z.managed, "min": z.min, "low": z.low, "high": z.high}
        for z in snap.zoneinfo if z.managed
    ]


def run_info(source: str, as_json: bool, strict: bool, out: Console, err: Console,
             symbols: Path | None = None) -> int:
    d, _ = trace_summary(source, strict, symbols)
    if as_json:
        out.print_json(json.dumps(d, default=str))
        return 2 if d["error"] or not (d["events"] or d["markers"]) else 0
    t = Table(title=f"{d['source']}", show_header=False, title_justify="left")
    t.add_row("layout", f"{d['layout']} ({d['compression']})")
    t.add_row("lines", f"{d['lines']:,}")
    for k, v in sorted(d["events_by_kind"].items()):
        t.add_row(f"  {k}", f"{v:,}")
    if "duration_s" in d:
        t.add_row("time", f"{d['first_ts_s']:.6f} .. {d['last_ts_s']:.6f} s "
                          f"({d['duration_s']:.3f} s)")
        t.add_row("CPUs", f"{d['cpus'] or len(d['cpus_seen'])} (seen: {d['cpus_seen']})")
        t.add_row("failed allocations", str(d["failed_allocs"]))
    for z in d["zones"]:
        t.add_row(f"zone {z['zone']}", f"pfn {z['start_pfn']:#x} +{z['spanned']}, "
                  f"managed {z['managed']}, wmark {z['min']}/{z['low']}/{z['high']}")
    t.add_row("markers", str(d["markers"]))
    t.add_row("lost events", f"{d['lost_events']:,}" + (f" by CPU {d['lost_by_cpu']}"
                                                        if d["lost_by_cpu"] else ""))
    if d["other_events"]:
        t.add_row("other events", ", ".join(f"{k} {v}" for k, v in d["other_events"].items()))
    t.add_row("bad lines", str(sum(d["bad_lines"].values())))
    if d["kernel_release"]:
        t.add_row("kernel", d["kernel_release"])
    if d["callchains"]:
        c = d["callchains"]
        named = (" (frames named by the tracer)" if c.get("named_by_trace") else
                 f" (symbols: {c['symbols']})" if c["symbols"] else
                 " (no --symbols: raw addresses)")
        t.add_row("call chains", f"{c['events']:,} events, {c['stacks']:,} distinct stacks"
                  + named)
        for row in c["top_callsites"]:
            t.add_row(f"  {row['callsite']}", f"{row['total_alloc_kb']:,} KiB in "
                                              f"{row['hits']:,} allocations")
    out.print(t)
    print_bad(_Stats(d), err)
    if d["error"]:
        err.print(f"error: {d['error']}", highlight=False)
        return 2
    if not d["events"] and not d["markers"]:
        err.print(f"error: {d['source']}: no page-allocator events found", highlight=False)
        return 2
    return 0


class _Stats:
    def __init__(self, d: dict) -> None:
        self.source = d["source"]
        self.bad_lines = d["bad_lines"]
        self.bad_total = sum(d["bad_lines"].values())
        self.bad_samples = [(s["line"], s["reason"], s["text"]) for s in d["bad_samples"]]
