"""`pagereplay simulate`: the model makes the decisions; compare its counts with the trace's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from replay.commands.ingest_cmd import warn_damaged, warn_profile
from replay.engine.simulate import Settings
from replay.errors import SettingsError
from replay.metrics.slowpath import slow_path_section
from replay.stream.runs import StreamJob, both


def traced_counts(events) -> dict[str, int]:
    """The trace's own buddy-level counts, to set beside the model's."""
    df = pl.from_arrow(events.select(["event", "order", "percpu_refill", "fragmenting",
                                      "change_ownership", "failed"]))
    ev = pl.col("event").cast(pl.Utf8)
    row = df.select(
        allocs=(ev == "mm_page_alloc").sum(),
        alloc_failures=((ev == "mm_page_alloc") & pl.col("failed")).sum(),
        pcp_refill_blocks=((ev == "mm_page_alloc_zone_locked")
                           & (pl.col("percpu_refill") == 1)).sum(),
        buddy_allocs=((ev == "mm_page_alloc_zone_locked") & (pl.col("percpu_refill") == 0)).sum(),
        pcp_drain_events=(ev == "mm_page_pcpu_drain").sum(),
        pcp_drained_pages=pl.when(ev == "mm_page_pcpu_drain")
        .then(pl.lit(2, pl.Int64).pow(pl.col("order").cast(pl.Int64))).otherwise(0).sum(),
        fallbacks=(ev == "mm_page_alloc_extfrag").sum(),
        fragmenting_fallbacks=((ev == "mm_page_alloc_extfrag")
                               & (pl.col("fragmenting") == 1)).sum(),
        ownership_changes=((ev == "mm_page_alloc_extfrag")
                           & (pl.col("change_ownership") == 1)).sum(),
    ).row(0, named=True)
    return {k: int(v or 0) for k, v in row.items()}


def model_counts(c: dict[str, int], events) -> dict[str, int]:
    """The model's side of the table: its counters, with the traced_counts of its events (a
    table, or a dict of them already counted)."""
    t = events if isinstance(events, dict) else traced_counts(events)
    return {
        "allocs": c["allocs"], "alloc_failures": c["alloc_failures"],
        "pcp_refill_blocks": t["pcp_refill_blocks"], "buddy_allocs": t["buddy_allocs"],
        "pcp_drain_events": t["pcp_drain_events"], "pcp_drained_pages": c["pcp_drained_pages"],
        "fallbacks": c["fallbacks"], "fragmenting_fallbacks": c["fragmenting_fallbacks"],
        "ownership_changes": c["ownership_changes"],
    }


class ParquetSink:
    """The simulated events written to Parquet as they are made (simulate -o)."""

    def __init__(self, path: Path, pageblock_order: int) -> None:
        import pyarrow.parquet as pq

        from replay.trace.ingest import PARQUET_OPTIONS
        from replay.trace.schema import EVENTS_SCHEMA

        self.pbo = pageblock_order
        self.writer = pq.ParquetWriter(path, EVENTS_SCHEMA, **PARQUET_OPTIONS)  # as ingest's

    def __call__(self, out, e, seq0: int) -> None:
        from replay.engine.simulate import emitted_table

        self.writer.write_table(emitted_table(out, e, self.pbo, seq0))

    def close(self) -> None:
        self.writer.close()


def print_slow_path(slow: dict, out: Console) -> None:
    """The model's slow path against the kernel's vmstat deltas, and its failures."""
    rows = [r for r in slow.get("vmstat", []) if r["kernel"] or r["model"]]
    if rows:
        t = Table(title="slow path: kernel (vmstat start->end) vs model", header_style="bold")
        for col in ("counter", "kernel", "model", "gap"):
            t.add_column(col, justify="right" if col != "counter" else "left")
        for r in rows:
            gap = f"{r['gap_pct']:+.1f}%" if r["gap_pct"] is not None else "-"
            t.add_row(r["counter"], f"{r['kernel']:,}", f"{r['model']:,}", gap)
        out.print(t)
    fails = slow.get("failures") or []
    if fails:
        t = Table(title="the model's failed allocations", header_style="bold")
        for col in ("order", "gfp", "failures", "first s", "last s"):
            t.add_column(col, justify="left" if col == "gfp" else "right")
        for r in fails[:10]:
            t.add_row(str(r["order"]), r["gfp"], f"{r['failures']:,}", f"{r['first_s']:.3f}",
                      f"{r['last_s']:.3f}")
        out.print(t)


def run_simulate(source: str, sets: list[str] | None, outdir: Path | None, agreement: bool,
                 machine: str | None, out: Console, err: Console,
                 kernel: str | None = None, progress=None) -> int:
    settings = Settings.parse(sets)
    if kernel is not None and settings.get("kernel") not in (None, kernel):
        raise SettingsError(f"--kernel {kernel} and --set kernel={settings.get('kernel')}: "
                            "give one")
    t0 = time.perf_counter()
    writer = None
    with StreamJob(source, machine, kernel or settings.get("kernel"), per_process=False,
                   progress=progress) as job:
        warn_damaged(job.trace.stats, err)
        t1 = time.perf_counter()
        if outdir is not None:
            from replay.engine.simulate import simulation_machines

            outdir.mkdir(parents=True, exist_ok=True)
            sim_machine = simulation_machines(job.trace, job.trace.bundle, settings,
                                              job.trace.machine_desc)[2]
            writer = ParquetSink(outdir / "simulated.parquet", sim_machine.pageblock_order)
        try:
            if agreement:
                r, simd = both(job, settings, False, False, writer=writer)
            else:
                r, simd = None, job.simulate(settings, False, writer=writer)
        finally:
            if writer is not None:
                writer.close()
        sim = simd.sim
        t2 = time.perf_counter()
        n = job.trace.plan.n - sim.i_start
        # observed counts only over the replayed part of the trace (after the start snapshot)
        obs = job.obs_side.metrics.traced_counts()
        bundle = job.trace.bundle
        slow = slow_path_section(sim, bundle.start.vmstat if bundle else None,
                                 bundle.end.vmstat if bundle else None)
    warn_profile(sim.profile, err)
    mod = model_counts(sim.counters, simd.side.traced_counts())
    t = Table(title=f"{source}: simulated vs traced", header_style="bold")
    for col in ("metric", "trace", "model", "gap"):
        t.add_column(col, justify="right" if col != "metric" else "left")
    for k in obs:
        gap = (mod[k] - obs[k]) / obs[k] * 100 if obs[k] else 0.0
        t.add_row(k, f"{obs[k]:,}", f"{mod[k]:,}", f"{gap:+.1f}%" if obs[k] else "-")
    out.print(t)
    what = "simulated (and followed)" if agreement else "simulated"
    out.print(f"settings: {settings.as_dict() or 'the kernel’s'}; {n:,} trace events {what} in "
              f"{t2 - t1:.2f}s ({n / max(t2 - t1, 1e-9) / 1e6:.2f} M events/s; reading and "
              f"planning {t1 - t0:.2f}s)", highlight=False)
    out.print(f"kernel rules: trace {sim.profile.trace.name}, model {sim.profile.model.name}"
              + (" (what-if)" if sim.profile.what_if else ""), highlight=False)
    print_slow_path(slow, out)
    result = {"source": source, "settings": settings.as_dict(), "trace": obs, "model": mod,
              "model_counters": sim.counters, "slow_path": slow, "seconds": round(t2 - t1, 3),
              "kernel_profile": sim.profile.as_dict()}
    if r is not None:
        a = r.recon.agreement
        result["agreement"] = a.as_dict()
        out.print(f"agreement: {a.exact:,}/{a.decisions:,} = {100 * a.rate:.3f}% "
                  f"(determined by the trace: {100 * a.determined_rate:.3f}% of "
                  f"{a.determined:,})", highlight=False)
        at = Table(show_header=True, header_style="bold")
        at.add_column("by")
        at.add_column("decisions", justify="right")
        at.add_column("exact", justify="right")
        for group, rows in (("order", a.by_order), ("migratetype", a.by_migratetype),
                            ("", a.by_fallback)):
            for k, (d, x) in rows.items():
                at.add_row(f"{group} {k}".strip(), f"{d:,}", f"{100 * x / d:.3f}%" if d else "-")
        out.print(at)
    if outdir is not None:
        (outdir / "simulate.json").write_text(json.dumps(result, indent=2))
        out.print(f"wrote {outdir / 'simulated.parquet'} and {outdir / 'simulate.json'}")
    return 0
