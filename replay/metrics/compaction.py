"""Compaction as the trace shows it, and as the kernel's own counters count it.

`compaction_summary` and `compaction_over_time` read the compaction events (events/compaction/)
of an events frame: runs and who started them, pages the free and migrate scanners isolated,
pages migrated, direct-compaction stalls. `vmstat_deltas` reads the same quantities from the
bundle's start and end /proc/vmstat (mm/vmstat.c names), so a trace that missed compaction
is told apart from one where none ran (docs/metrics.md).
"""

from __future__ import annotations

import polars as pl

from replay.metrics.fallbacks import Frame, all_windows, as_lazy, is_event, window_start

ISOLATE_FREE = "mm_compaction_isolate_freepages"
FAST_ISOLATE_FREE = "mm_compaction_fast_isolate_freepages"
ISOLATE_MIGRATE = "mm_compaction_isolate_migratepages"
MIGRATEPAGES = "mm_compaction_migratepages"
BEGIN = "mm_compaction_begin"
END = "mm_compaction_end"
TRY_TO_COMPACT = "mm_compaction_try_to_compact_pages"
KCOMPACTD_WAKE = "mm_compaction_kcompactd_wake"

# vmstat counters of compaction, migration, THP faults and reclaim (mm/vmstat.c vmstat_text)
VMSTAT_COUNTERS = (
    "compact_stall", "compact_fail", "compact_success", "compact_isolated",
    "compact_migrate_scanned", "compact_free_scanned", "compact_daemon_wake",
    "compact_daemon_migrate_scanned", "compact_daemon_free_scanned", "pgmigrate_success",
    "pgmigrate_fail", "thp_fault_alloc", "thp_fault_fallback", "pgsteal_kswapd",
    "pgsteal_direct", "pgscan_kswapd", "pgscan_direct", "allocstall_dma32", "allocstall_normal",
    "allocstall_movable", "allocstall_dma", "pswpout", "oom_kill",
)


def _sum(name: str, column: str) -> pl.Expr:
    return pl.when(is_event(name)).then(pl.col(column)).otherwise(0).sum()


def compaction_summary(frame: Frame) -> dict[str, int]:
    """Totals of the trace's compaction events (0 everywhere when none were recorded)."""
    lf = as_lazy(frame)
    comm = pl.col("comm").cast(pl.Utf8).fill_null("")
    row = lf.select(
        events=pl.col("event").cast(pl.Utf8).str.starts_with("mm_compaction_").sum(),
        runs=is_event(BEGIN).sum(),
        kcompactd_runs=(is_event(BEGIN) & comm.str.starts_with("kcompactd")).sum(),
        direct_compactions=is_event(TRY_TO_COMPACT).sum(),
        kcompactd_wakes=is_event(KCOMPACTD_WAKE).sum(),
        free_isolated=_sum(ISOLATE_FREE, "nr_taken") + _sum(FAST_ISOLATE_FREE, "nr_taken"),
        free_scanned=_sum(ISOLATE_FREE, "nr_scanned") + _sum(FAST_ISOLATE_FREE, "nr_scanned"),
        migrate_isolated=_sum(ISOLATE_MIGRATE, "nr_taken"),
        migrate_scanned=_sum(ISOLATE_MIGRATE, "nr_scanned"),
        migrated=_sum(MIGRATEPAGES, "nr_migrated"),
        migrate_failed=_sum(MIGRATEPAGES, "nr_failed"),
        runs_success=(is_event(END) & (pl.col("status").cast(pl.Utf8) == "success")).sum(),
    ).collect().row(0, named=True)
    return {k: int(v or 0) for k, v in row.items()}


def compaction_over_time(frame: Frame, window_ns: int) -> pl.DataFrame:
    """Per time window: free pages isolated, pages migrated, direct compaction stalls
    (try_to_compact_pages calls) and runs begun."""
    lf = as_lazy(frame).filter(pl.col("event").cast(pl.Utf8).str.starts_with("mm_compaction_"))
    per = (lf.with_columns(window_start(window_ns))
           .group_by("window_ns")
           .agg(free_isolated=_sum(ISOLATE_FREE, "nr_taken") + _sum(FAST_ISOLATE_FREE,
                                                                     "nr_taken"),
                migrated=_sum(MIGRATEPAGES, "nr_migrated"),
                stalls=is_event(TRY_TO_COMPACT).sum(),
                runs=is_event(BEGIN).sum()))
    return (all_windows(as_lazy(frame), window_ns).join(per, on="window_ns", how="left")
            .fill_null(0).sort("window_ns").collect())


def vmstat_deltas(start: dict[str, int] | None, end: dict[str, int] | None) -> dict[str, int]:
    """end - start of the compaction, migration, THP and reclaim counters both snapshots have
    (allocstall_* summed as `allocstall`)."""
    if not start or not end:
        return {}
    out = {k: int(end[k]) - int(start[k]) for k in VMSTAT_COUNTERS if k in start and k in end}
    stalls = [v for k, v in out.items() if k.startswith("allocstall_")]
    if stalls:
        out["allocstall"] = sum(stalls)
    return out


def missing_compaction(summary: dict[str, int], deltas: dict[str, int]) -> str | None:
    """A sentence naming compaction the vmstat counters saw but the trace cannot show."""
    isolated = deltas.get("compact_isolated", 0)
    scanned = deltas.get("compact_free_scanned", 0)
    if summary.get("events", 0) > 0 and summary.get("runs", 0) > 0:
        return None
    if isolated <= 0 and scanned <= 0:
        return None
    return (f"compaction isolated {isolated:,} pages (free scanner scanned {scanned:,}) that "
            "this trace cannot show: record events/compaction beside the kmem events")


def compaction_section(frame: Frame, vmstat_start: dict[str, int] | None,
                       vmstat_end: dict[str, int] | None, engine: dict[str, int] | None = None,
                       counters: dict[str, int] | None = None) -> dict:
    """The report's compaction block: what the trace shows, what the kernel counted, what the
    replay inferred, and a named verdict when the trace missed compaction.

    `engine` and `counters` are a reconstruction's compaction counters and follow counters.
    The untraced fast-search pages the kernel isolated are Δcompact_isolated minus both
    scanners' traced nr_taken (6.1: fast_isolate_freepages has no event); the replay's
    inference of them is set beside that residual.
    """
    summary = compaction_summary(frame)
    deltas = vmstat_deltas(vmstat_start, vmstat_end)
    out: dict = {"trace": summary, "vmstat": deltas}
    if "compact_isolated" in deltas and summary["events"]:
        out["untraced_isolated_pages"] = (deltas["compact_isolated"] - summary["free_isolated"]
                                          - summary["migrate_isolated"])
    if engine is not None:
        c = counters or {}
        inferred = (engine.get("fast_search_pages", 0) + c.get("inferred_fast_takes", 0)
                    + c.get("inferred_from_later_free", 0)
                    + engine.get("reconciled_by_scan_pages", 0)
                    - c.get("inferred_takes_reverted", 0))
        out["replay"] = {
            "free_scanner_pages": engine.get("free_scanner_pages", 0),
            "inferred_untraced_pages": inferred,
            "captured_pages": engine.get("captured_pages", 0),
            "captures": engine.get("captures", 0),
            "targets_released": engine.get("targets_released", 0),
            "migrated_pages": engine.get("migrated_pages", 0),
            "free_scanner_events_not_reproduced":
                engine.get("free_scanner_events_not_reproduced", 0),
            "inferred": {k: c.get(k, 0) for k in (
                "inferred_fast_takes", "inferred_from_later_free", "inferred_takes_reverted",
                "inferred_targets_confirmed", "inferred_list_rotations")}
            | {"fast_search_pages": engine.get("fast_search_pages", 0),
               "reconciled_by_scan_pages": engine.get("reconciled_by_scan_pages", 0)},
        }
        if "untraced_isolated_pages" in out:
            out["replay"]["inferred_minus_vmstat_residual"] = (
                inferred - out["untraced_isolated_pages"])
    missing = missing_compaction(summary, deltas)
    if missing:
        out["verdict"] = missing
    return out
