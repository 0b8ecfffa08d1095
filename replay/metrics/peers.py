"""The peer tools' tables, computed right: trace-pagealloc-postprocess.pl and `perf kmem --page`.

`per_process` is the perl script's per-process table (Documentation/trace/postprocess/
trace-pagealloc-postprocess.pl), `page_summary` and `live_pages` are `perf kmem --page stat`'s
SUMMARY and `--live` view, `caller_table` its `--caller` table (tools/perf/builtin-kmem.c).
docs/metrics.md lists what each original gets wrong on 6.1 and what is done differently here.
"""

from __future__ import annotations

import polars as pl

from replay.metrics.callsites import callsites
from replay.metrics.fallbacks import (
    ALLOC,
    EXTFRAG,
    PCPU_DRAIN,
    ZONE_LOCKED,
    Frame,
    as_lazy,
    is_event,
    is_fragmenting,
    is_moderate,
    is_ownership_change,
    is_severe,
    pages,
    run_starts,
)
from replay.trace.schema import EV_FREE, EV_FREE_BATCHED, EVENT_NAMES, MIGRATETYPE_NAMES
from replay.trace.symbols import Symbols

FREE = EVENT_NAMES[EV_FREE]
FREE_BATCHED = EVENT_NAMES[EV_FREE_BATCHED]
PAGE_KB = 4  # x86_64 base page, KiB
MAX_ORDER = 11

PER_PROCESS_COLUMNS = (
    "allocs", "allocs_under_lock", "freed_direct", "freed_batched", "pcpu_pages_drained",
    "pcpu_drains", "pcpu_refills", "fallbacks", "fragmenting", "migratetype_changed", "severe",
    "moderate",
)


# ---------------------------------------------------------------------------------------------
# trace-pagealloc-postprocess.pl


def by_pfn(stream: pl.LazyFrame, *columns: str) -> pl.LazyFrame:
    """`stream` sorted by pfn then seq, with `_prev_<column>` for each of `columns`: its value
    on the previous event of the same pfn (null for a pfn's first event)."""
    same = pl.col("pfn").eq_missing(pl.col("pfn").shift(1)).fill_null(False)
    prev = [pl.when(same).then(pl.col(c).shift(1)).alias(f"_prev_{c}") for c in columns]
    return stream.sort("pfn", "seq").with_columns(same.alias("_prev_same_pfn"), *prev)


def batched_free_seqs(lf: pl.LazyFrame) -> pl.LazyFrame:
    """seq of every mm_page_free that is the first report of a batched free.

    `free_unref_page_list()` emits mm_page_free for each page of the list in its first loop and
    mm_page_free_batched for the same page in its second. So a free_batched pairs with the
    event just before it on its pfn (among allocs and frees) when that is an mm_page_free of
    the same pid; a batched free whose mm_page_free was lost pairs with nothing.
    """
    kinds = [ALLOC, FREE, FREE_BATCHED]
    stream = lf.filter(pl.col("event").is_in(kinds) & pl.col("pfn").is_not_null())
    stream = by_pfn(stream, "event", "pid", "seq")
    paired = (
        is_event(FREE_BATCHED)
        & (pl.col("_prev_event") == FREE)
        & (pl.col("_prev_pid") == pl.col("pid"))
    )
    return stream.filter(paired.fill_null(False)).select(pl.col("_prev_seq").alias("seq"))


def _process_rows(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Every event with flags: the first report of a batched free, the start of a run."""
    batched = batched_free_seqs(lf).with_columns(pl.lit(True).alias("_batched"))
    starts = run_starts(lf, ["comm", "pid"])
    return (
        lf.join(batched, on="seq", how="left")
        .join(starts, on="seq", how="left")
        .with_columns(pl.col("_batched").fill_null(False))
    )


def _process_aggs() -> list[pl.Expr]:
    direct = is_event(FREE) & ~pl.col("_batched")
    exprs = {
        "allocs": is_event(ALLOC).sum(),
        "allocs_under_lock": is_event(ZONE_LOCKED).sum(),
        "freed_direct": direct.sum(),
        "freed_batched": is_event(FREE_BATCHED).sum(),
        "pcpu_pages_drained": pages().filter(is_event(PCPU_DRAIN)).sum(),
        "pcpu_drains": (pl.col("run") == "drain").sum(),
        "pcpu_refills": (pl.col("run") == "refill").sum(),
        "fallbacks": is_event(EXTFRAG).sum(),
        "fragmenting": is_fragmenting().sum(),
        "migratetype_changed": is_ownership_change().sum(),
        "severe": is_severe().sum(),
        "moderate": is_moderate().sum(),
    }
    return [expr.fill_null(0).cast(pl.Int64).alias(name) for name, expr in exprs.items()]


def per_process(frame: Frame, ignore_pid: bool = False) -> pl.DataFrame:
    """The perl script's per-process table: columns comm, pid, then PER_PROCESS_COLUMNS.

    A process is what the perl script's key "comm-pid" names: a (comm, pid) pair, so a task
    that execs shows once per name, and comm is null where the trace printed `<...>` (the
    script would have keyed those "-PID" and reported them as NO_PROCESS_NAME). With
    `ignore_pid` (the script's --ignore-pid) rows are summed per comm and pid is null.

    * allocs: mm_page_alloc (failed ones too); allocs_under_lock: every zone_locked.
    * freed_direct: mm_page_free minus the first reports of batched frees (see
      `batched_free_seqs`); freed_batched: mm_page_free_batched. Each batched page counts once.
    * pcpu_pages_drained: 2^order summed over mm_page_pcpu_drain (the script counts events).
    * pcpu_drains and pcpu_refills: runs, as in the script, in the stream of the process's
      own events in seq order (on any CPU), where any other event of the process ends a run.
      Three changes: a refill is a zone_locked with percpu_refill=1 (the script took every
      zone_locked); an mm_page_alloc_extfrag neither ends nor starts a run (the kernel emits
      it inside a refill); a refill run also ends where order or migratetype changes (one
      `rmqueue_bulk()` call takes one order from one list). See replay.metrics.fallbacks.
    * fallbacks (extfrag), fragmenting (fragmenting=1), migratetype_changed
      (change_ownership=1), severe / moderate (fragmenting with fallback_order <= 3 / > 3).

    Sorted by allocs descending, then pid and comm.
    """
    keys = ["comm"] if ignore_pid else ["comm", "pid"]
    table = _process_rows(as_lazy(frame)).group_by(keys).agg(_process_aggs())
    if ignore_pid:
        table = table.with_columns(pl.lit(None, pl.Int32).alias("pid"))
    return (
        table.select("comm", "pid", *PER_PROCESS_COLUMNS)
        .sort(["allocs", "pid", "comm"], descending=[True, False, False], nulls_last=True)
        .collect()
    )


# ---------------------------------------------------------------------------------------------
# perf kmem --page


def in_time(lf: pl.LazyFrame, time: tuple[float | None, float | None] | None) -> pl.LazyFrame:
    """Events inside `perf kmem --time start,end` (seconds; both ends inclusive, None = open)."""
    if time is None:
        return lf
    start, end = time
    if start is not None:
        lf = lf.filter(pl.col("ts_ns") >= round(start * 1e9))
    if end is not None:
        lf = lf.filter(pl.col("ts_ns") <= round(end * 1e9))
    return lf


def _failed() -> pl.Expr:
    return pl.col("failed") | pl.col("pfn").is_null()


def perf_page_stream(lf: pl.LazyFrame) -> pl.LazyFrame:
    """perf's live-tree walk as columns: successful allocs and mm_page_free by pfn, then seq.

    perf keys its live tree on pfn alone. An alloc inserts the pfn, or, if it is already live,
    only counts a hit on the existing node (keeping that node's order, migratetype and gfp).
    A free removes the pfn if it is live ("alloc+freed") and otherwise counts as
    "free-only/nomatch"; its order is never compared. So a free matches exactly when the
    previous event on its pfn is an alloc. Adds `matched` (frees) and `node`: a number shared by
    a node-creating alloc, its hits and the frees after it up to the next node on that pfn.
    """
    stream = by_pfn(lf.filter((is_event(ALLOC) & ~_failed()) | is_event(FREE)), "event")
    prev_alloc = (pl.col("_prev_event") == ALLOC).fill_null(False)
    node_start = (is_event(ALLOC) & ~prev_alloc) | ~pl.col("_prev_same_pfn")
    return stream.with_columns(
        (is_event(FREE) & prev_alloc).alias("matched"),
        node_start.cum_sum().alias("node"),
    )


def _kb(selector: pl.Expr) -> pl.Expr:
    return (pages().filter(selector).sum() * PAGE_KB).cast(pl.Int64)


def page_summary(frame: Frame, time: tuple[float | None, float | None] | None = None) -> dict:
    """`perf kmem --page stat`'s SUMMARY (page allocator), with 6.1's migratetype labels.

    Returns {alloc_requests, alloc_kb, free_requests, free_kb, alloc_and_freed,
    alloc_and_freed_kb, alloc_only, alloc_only_kb, free_only, free_only_kb, alloc_failures,
    alloc_failures_kb, by_order_migratetype}. Counts are events; KB are 4 KiB * 2^order.

    * alloc_requests: every mm_page_alloc, failed ones too (as perf); alloc_kb: successful ones
      only (perf adds the failures' size: perf's KB = alloc_kb + alloc_failures_kb).
    * free_requests / free_kb: mm_page_free only (perf ignores mm_page_free_batched).
    * alloc_and_freed: frees that found their pfn live (`perf_page_stream`), KB from the free's
      order, as perf; free_only: the frees that did not.
    * alloc_only: successful allocs - alloc_and_freed, alloc_only_kb = alloc_kb -
      alloc_and_freed_kb (perf prints alloc_only + alloc_failures, because it subtracts from
      all requests). Two allocs of a live pfn count as two here and one matched free.
    * by_order_migratetype: {order: {name: successful allocs}} for orders 0..10 and 6.1's five
      types (perf labels type 1 "Reclaimable" and 2 "Movable", the pre-4.x order).

    `time=(start_s, end_s)` keeps events with start <= ts <= end, like `perf kmem --time`;
    frees of pages allocated before the window are then free-only, as in perf.
    """
    lf = in_time(as_lazy(frame), time)
    alloc, ok, free = is_event(ALLOC), is_event(ALLOC) & ~_failed(), is_event(FREE)
    totals = lf.select(
        alloc.sum().alias("alloc_requests"), _kb(ok).alias("alloc_kb"),
        free.sum().alias("free_requests"), _kb(free).alias("free_kb"),
        (alloc & _failed()).sum().alias("alloc_failures"), _kb(alloc & _failed()).alias(
            "alloc_failures_kb"),
        ok.sum().alias("_ok"),
    ).collect().row(0, named=True)
    matched = perf_page_stream(lf).select(
        pl.col("matched").sum().alias("n"), _kb(pl.col("matched")).alias("kb")
    ).collect().row(0, named=True)
    t = {key: int(value or 0) for key, value in totals.items()}
    n, kb = int(matched["n"] or 0), int(matched["kb"] or 0)
    return {
        "alloc_requests": t["alloc_requests"], "alloc_kb": t["alloc_kb"],
        "free_requests": t["free_requests"], "free_kb": t["free_kb"],
        "alloc_and_freed": n, "alloc_and_freed_kb": kb,
        "alloc_only": t["_ok"] - n, "alloc_only_kb": t["alloc_kb"] - kb,
        "free_only": t["free_requests"] - n, "free_only_kb": t["free_kb"] - kb,
        "alloc_failures": t["alloc_failures"], "alloc_failures_kb": t["alloc_failures_kb"],
        "by_order_migratetype": _order_migratetype(lf.filter(ok)),
    }


def _order_migratetype(allocs: pl.LazyFrame) -> dict[int, dict[str, int]]:
    """{order: {6.1 type name: count}} over orders 0..10 and the five types, zeros included."""
    matrix = {o: dict.fromkeys(MIGRATETYPE_NAMES, 0) for o in range(MAX_ORDER)}
    counts = allocs.group_by("order", "migratetype").len().collect()
    for order, migratetype, count in counts.iter_rows():
        if 0 <= migratetype < len(MIGRATETYPE_NAMES):
            matrix[order][MIGRATETYPE_NAMES[migratetype]] = count
    return matrix


def live_pages(frame: Frame, time: tuple[float | None, float | None] | None = None
               ) -> pl.DataFrame:
    """Pages still allocated at the end (of the window): `perf kmem --page --live`'s rows.

    Columns pfn, order, migratetype, gfp_text, comm, pid, ts_ns, hits, sorted by pfn. A pfn is
    live when its last event is a successful mm_page_alloc. As in perf's live tree, the row
    describes the alloc that created the node (the first alloc since the pfn's last free) and
    `hits` counts every alloc since then; frees of other pfns inside a live block do not end
    it (perf compares pfns only). A node ends with an alloc exactly when it holds no free, and
    then its rows are all allocs (see `perf_page_stream`).
    """
    columns = ["pfn", "order", "migratetype", "gfp_text", "comm", "pid", "ts_ns"]
    return (
        perf_page_stream(in_time(as_lazy(frame), time))
        .group_by("node")
        .agg(
            pl.col(columns).first(),
            pl.len().cast(pl.Int64).alias("hits"),
            (pl.col("event").last() == ALLOC).alias("_live"),
        )
        .filter(pl.col("_live"))
        .select(*columns, "hits")
        .sort("pfn")
        .collect()
    )


# ---------------------------------------------------------------------------------------------
# perf kmem --page --caller

CALLER_COLUMNS = ("total_alloc_kb", "hits", "order", "migratetype", "gfp_flags", "gfp_text",
                  "callsite", "callsite_addr")


def caller_table(frame: Frame, symbols: Symbols | None = None,
                 time: tuple[float | None, float | None] | None = None) -> pl.DataFrame:
    """`perf kmem --page --caller stat`'s table, done right: one row per (callsite, order,
    migratetype, gfp mask) of the successful mm_page_alloc events with a call chain.

    Columns CALLER_COLUMNS: total_alloc_kb (4 KiB * 2^order summed), hits (allocations),
    order, migratetype (6.1's names: perf prints migrate_type_str[], the pre-4.4 order, so its
    RECLAIM is Movable and its MOVABLE Reclaimable), gfp_flags (the mask) and gfp_text (the
    kernel's flag names, not perf's abbreviations), callsite (the caller's function, see
    `callsites`; perf names the first frame outside `^_?_?(alloc|get_free|get_zeroed)_pages?`,
    which on 6.1 is the
    tracepoint's own __traceiter_mm_page_alloc, and keys rows on that exact address) and
    callsite_addr (the first such address seen). Sorted by total_alloc_kb then hits,
    descending, as perf's default `-s bytes,hit`. Empty when the events have no call chains.
    """
    lf = in_time(as_lazy(frame), time).filter(is_event(ALLOC) & ~_failed()
                                              & pl.col("stack_id").is_not_null())
    groups = lf.group_by("stack_id", "order", "migratetype", "gfp_flags").agg(
        pages().sum().alias("pages"), pl.len().cast(pl.Int64).alias("hits"),
        pl.col("gfp_text").cast(pl.Utf8).first())
    return caller_rows(groups, callsites(lf, symbols))


def caller_rows(groups: pl.LazyFrame, sites: pl.DataFrame) -> pl.DataFrame:
    """caller_table from its allocations counted per (stack_id, order, migratetype,
    gfp_flags) (`pages`, `hits`, `gfp_text`) and the stacks' call sites (`callsites`)."""
    names = pl.Series(MIGRATETYPE_NAMES)
    return (
        groups.join(sites.lazy(), on="stack_id", how="left")
        .group_by("callsite", "order", "migratetype", "gfp_flags")
        .agg(
            (pl.col("pages").sum() * PAGE_KB).cast(pl.Int64).alias("total_alloc_kb"),
            pl.col("hits").sum().cast(pl.Int64),
            pl.col("gfp_text").drop_nulls().first(),
            pl.col("callsite_addr").min(),
        )
        .with_columns(pl.col("migratetype").map_elements(
            lambda m: names[m] if 0 <= m < len(names) else str(m), return_dtype=pl.Utf8))
        .sort(["total_alloc_kb", "hits", "callsite", "order", "migratetype", "gfp_flags"],
              descending=[True, True, False, False, False, False], nulls_last=True)
        .select(*CALLER_COLUMNS)
        .collect()
    )
