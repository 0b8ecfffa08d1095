"""Migratetype fallbacks (mm_page_alloc_extfrag) and pcp refills and drains, from an events frame.

Every function takes an events frame in the schema of replay.trace.schema (observed or simulated:
a polars DataFrame or LazyFrame, or the Arrow table `read_trace` gives) and works on columns;
nothing loops over rows in Python.

Runs. The kernel refills a pcp list in one `rmqueue_bulk()` call (`batch` zone_locked events
with percpu_refill=1) and drains one in one `free_pcppages_bulk()` call (K pcpu_drain events),
both with the zone lock held and interrupts off, so each call's events are consecutive in its
CPU's ring buffer. `pcp_summary` recovers the calls as *runs*:

* the stream is one CPU's events in `seq` order, with mm_page_alloc_extfrag left out (a steal
  fires inside a refill: `__rmqueue_fallback()` runs between two `__rmqueue_smallest()` calls
  of the same `rmqueue_bulk()`, so it neither ends nor starts a run);
* a run is a maximal sequence of consecutive events of that stream that have the same pid and
  the same kind, where a refill's kind also includes its order and migratetype (one
  `rmqueue_bulk()` takes one order for one list) and a drain's does not (`free_pcppages_bulk()`
  returns every order and list in one call).

Two calls back to back with no other event between them on that CPU (possible for
`__alloc_pages_bulk()`, whose pcp fast path emits no mm_page_alloc) are counted as one run.
peers.per_process counts runs per process instead (see there).
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from replay.trace.schema import (
    EV_ALLOC,
    EV_EXTFRAG,
    EV_PCPU_DRAIN,
    EV_ZONE_LOCKED,
    EVENT_NAMES,
    MIGRATETYPE_NAMES,
)

Frame = pl.DataFrame | pl.LazyFrame | pa.Table

ALLOC = EVENT_NAMES[EV_ALLOC]
ZONE_LOCKED = EVENT_NAMES[EV_ZONE_LOCKED]
PCPU_DRAIN = EVENT_NAMES[EV_PCPU_DRAIN]
EXTFRAG = EVENT_NAMES[EV_EXTFRAG]
SEVERE_MAX_FALLBACK_ORDER = 3  # trace-pagealloc-postprocess.pl: fallback_order <= 3 is severe
_TEXT_COLUMNS = ("event", "comm", "gfp_text")


# ---------------------------------------------------------------------------------------------
# Frames and expressions shared by the metrics modules


def as_lazy(frame: Frame) -> pl.LazyFrame:
    """The events as a LazyFrame, with the dictionary columns (event, comm, gfp_text) as strings.

    Strings make observed and simulated frames compare and join alike, whatever their
    categorical encodings.
    """
    if isinstance(frame, pa.Table):
        frame = pl.from_arrow(frame)
    lf = frame.lazy()
    names = lf.collect_schema().names()
    return lf.with_columns(pl.col(c).cast(pl.String) for c in _TEXT_COLUMNS if c in names)


def is_event(name: str) -> pl.Expr:
    """True on rows of event `name` (after `as_lazy`)."""
    return pl.col("event") == name


def pages(order: str = "order") -> pl.Expr:
    """2^order as Int64 (base pages in a block of that order; a compaction event's order -1
    counts as 0, those rows are filtered out by the callers)."""
    return pl.lit(2, pl.Int64).pow(pl.col(order).cast(pl.Int64).clip(lower_bound=0))


def is_refill() -> pl.Expr:
    """A block taken from the buddy lists for a pcp list (zone_locked with percpu_refill=1)."""
    return is_event(ZONE_LOCKED) & (pl.col("percpu_refill") == 1)


def is_fragmenting() -> pl.Expr:
    """A steal of less than a pageblock (extfrag fragmenting=1)."""
    return is_event(EXTFRAG) & (pl.col("fragmenting") == 1)


def is_ownership_change() -> pl.Expr:
    """A steal after which the pageblock has the requested type (change_ownership=1)."""
    return is_event(EXTFRAG) & (pl.col("change_ownership") == 1)


def is_severe() -> pl.Expr:
    """A fragmenting steal of a small block (fallback_order <= 3), as the perl script rates it."""
    return is_fragmenting() & (pl.col("fallback_order") <= SEVERE_MAX_FALLBACK_ORDER)


def is_moderate() -> pl.Expr:
    """A fragmenting steal of a larger block (fallback_order > 3)."""
    return is_fragmenting() & (pl.col("fallback_order") > SEVERE_MAX_FALLBACK_ORDER)


def migratetype_name(value: int | None) -> str:
    """6.1's name for a migratetype number (replay.trace.schema.MIGRATETYPE_NAMES)."""
    if value is not None and 0 <= value < len(MIGRATETYPE_NAMES):
        return MIGRATETYPE_NAMES[value]
    return f"type{value}"


def migratetype_name_expr(column: str) -> pl.Expr:
    """A migratetype number column as its 6.1 name (unknown numbers as "type<N>")."""
    col = pl.col(column).cast(pl.Int64)
    known = pl.lit(list(MIGRATETYPE_NAMES)).list.get(col, null_on_oob=True)
    return pl.coalesce(known, pl.format("type{}", col))


def window_start(window_ns: int) -> pl.Expr:
    """The start of the `window_ns` window holding each row (absolute ts_ns, floored)."""
    if window_ns <= 0:
        raise ValueError(f"window_ns must be positive, got {window_ns}")
    return (pl.col("ts_ns") // window_ns * window_ns).alias("window_start_ns")


def all_windows(lf: pl.LazyFrame, window_ns: int) -> pl.LazyFrame:
    """Every window from the first event's to the last event's, one row each (none if empty)."""
    bounds = lf.select(pl.col("ts_ns").min().alias("lo"), pl.col("ts_ns").max().alias("hi"))
    lo, hi = bounds.collect().row(0)
    if lo is None:
        return pl.LazyFrame(schema={"window_start_ns": pl.Int64})
    first, last = lo // window_ns * window_ns, hi // window_ns * window_ns
    starts = pl.int_range(first, last + 1, window_ns, dtype=pl.Int64, eager=True)
    return pl.LazyFrame({"window_start_ns": starts})


# ---------------------------------------------------------------------------------------------
# Runs


_OTHER, _DRAIN, _REFILL = 0, 1, 2  # pcp_token values; a refill adds 8 * order + migratetype


def pcp_token() -> pl.Expr:
    """What makes two consecutive events the same run, as an integer: 0 for other events, 1 for
    a drain, 2 + 8 * order + migratetype for a refill, null for extfrag (left out of streams)."""
    order, migratetype = (pl.col(c).cast(pl.Int32).fill_null(0) for c in ("order", "migratetype"))
    refill = _REFILL + 8 * order + migratetype
    return (
        pl.when(is_refill()).then(refill)
        .when(is_event(PCPU_DRAIN)).then(pl.lit(_DRAIN, pl.Int32))
        .when(is_event(EXTFRAG)).then(pl.lit(None, pl.Int32))
        .otherwise(pl.lit(_OTHER, pl.Int32))
    )


def run_starts(lf: pl.LazyFrame, partition: list[str], same: tuple[str, ...] = ()) -> pl.LazyFrame:
    """The first event of each refill or drain run: columns seq, run ("refill" or "drain").

    Streams are `partition` groups in seq order without extfrag events; a run continues while
    the token (`pcp_token`) and every column of `same` equal the previous event's.
    """
    token = pl.col("_token")
    stream = lf.select("seq", *partition, *same, pcp_token().alias("_token"))
    stream = stream.filter(token.is_not_null()).sort("seq")
    changed = token.ne_missing(token.shift(1).over(partition))
    for column in same:
        changed = changed | pl.col(column).ne_missing(pl.col(column).shift(1).over(partition))
    kind = pl.when(token == _DRAIN).then(pl.lit("drain")).otherwise(pl.lit("refill"))
    return stream.filter(changed & (token != _OTHER)).select("seq", kind.alias("run"))


# ---------------------------------------------------------------------------------------------
# Summaries


def fallback_summary(frame: Frame) -> dict:
    """Allocations and fallback steals in a frame.

    Returns {allocs, fallbacks, fragmenting, ownership_changes, severe, moderate,
    fallback_rate_per_1000, by_pair}: allocs counts mm_page_alloc (failed ones too), fallbacks
    mm_page_alloc_extfrag; severe and moderate split the fragmenting ones at fallback_order 3;
    the rate is fallbacks per 1,000 allocs (0.0 without allocs); by_pair is
    {requested type name: {stolen-from type name: count}}.
    """
    lf = as_lazy(frame)
    row = lf.select(
        is_event(ALLOC).sum().alias("allocs"),
        is_event(EXTFRAG).sum().alias("fallbacks"),
        is_fragmenting().sum().alias("fragmenting"),
        is_ownership_change().sum().alias("ownership_changes"),
        is_severe().sum().alias("severe"),
        is_moderate().sum().alias("moderate"),
    ).collect().row(0, named=True)
    summary = {key: int(value) for key, value in row.items()}
    allocs = summary["allocs"]
    summary["fallback_rate_per_1000"] = summary["fallbacks"] * 1000 / allocs if allocs else 0.0
    summary["by_pair"] = _fallback_pairs(lf)
    return summary


def _fallback_pairs(lf: pl.LazyFrame) -> dict[str, dict[str, int]]:
    pairs = (
        lf.filter(is_event(EXTFRAG))
        .group_by("migratetype", "fallback_migratetype").len()
        .sort("migratetype", "fallback_migratetype")
        .collect()
    )
    out: dict[str, dict[str, int]] = {}
    for alloc_mt, fallback_mt, count in pairs.iter_rows():
        out.setdefault(migratetype_name(alloc_mt), {})[migratetype_name(fallback_mt)] = count
    return out


def _pcp_rows(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Refill and drain events with their pages and whether each starts a (per-CPU) run."""
    starts = run_starts(lf, ["cpu"], same=("pid",)).select("seq", pl.lit(True).alias("start"))
    kind = pl.when(is_refill()).then(pl.lit("refill")).otherwise(pl.lit("drain"))
    return (
        lf.filter(is_refill() | is_event(PCPU_DRAIN))
        .select("seq", "ts_ns", kind.alias("kind"), pages().alias("pages"))
        .join(starts, on="seq", how="left")
        .with_columns(pl.col("start").fill_null(False))
    )


def _pcp_aggs() -> list[pl.Expr]:
    refill, drain = pl.col("kind") == "refill", pl.col("kind") == "drain"
    return [
        refill.sum().cast(pl.Int64).alias("refill_blocks"),
        pl.col("pages").filter(refill).sum().cast(pl.Int64).alias("refill_pages"),
        (refill & pl.col("start")).sum().cast(pl.Int64).alias("refill_runs"),
        drain.sum().cast(pl.Int64).alias("drained_blocks"),
        pl.col("pages").filter(drain).sum().cast(pl.Int64).alias("drained_pages"),
        (drain & pl.col("start")).sum().cast(pl.Int64).alias("drain_runs"),
    ]


def pcp_summary(frame: Frame) -> dict[str, int]:
    """pcp traffic: {refill_blocks, refill_pages, refill_runs, drained_blocks, drained_pages,
    drain_runs}.

    refill_blocks counts zone_locked events with percpu_refill=1 (refill_pages their 2^order
    pages); drained_blocks counts mm_page_pcpu_drain (drained_pages sums 2^order); runs are the
    refill and drain calls, recovered per CPU as the module docstring defines.
    """
    row = _pcp_rows(as_lazy(frame)).select(_pcp_aggs()).collect().row(0, named=True)
    return {key: int(value or 0) for key, value in row.items()}


def pcp_over_time(frame: Frame, window_ns: int) -> pl.DataFrame:
    """`pcp_summary` per time window: window_start_ns plus its six columns, empty windows as 0.

    Windows are [k * window_ns, (k+1) * window_ns) on the absolute ts_ns axis, from the first
    event's window to the last's; a run is counted in the window where it starts.
    """
    lf = as_lazy(frame)
    per_window = _pcp_rows(lf).group_by(window_start(window_ns)).agg(_pcp_aggs())
    return (
        all_windows(lf, window_ns)
        .join(per_window, on="window_start_ns", how="left")
        .with_columns(pl.exclude("window_start_ns").fill_null(0))
        .sort("window_start_ns")
        .collect()
    )


def fallbacks_over_time(frame: Frame, window_ns: int) -> pl.DataFrame:
    """Fallback steals per window, long format, one row per (window, pair, fragmenting).

    Columns: window_start_ns, alloc_mt and fallback_mt (6.1 type names), fragmenting (bool),
    fallbacks (steals), ownership_changes (of those, change_ownership=1). Windows with no steal
    have no row; pivot on the pair for a wide table.
    """
    return (
        as_lazy(frame)
        .filter(is_event(EXTFRAG))
        .group_by(
            window_start(window_ns),
            migratetype_name_expr("migratetype").alias("alloc_mt"),
            migratetype_name_expr("fallback_migratetype").alias("fallback_mt"),
            (pl.col("fragmenting") == 1).alias("fragmenting"),
        )
        .agg(
            pl.len().cast(pl.Int64).alias("fallbacks"),
            (pl.col("change_ownership") == 1).sum().cast(pl.Int64).alias("ownership_changes"),
        )
        .sort("window_start_ns", "alloc_mt", "fallback_mt", "fragmenting")
        .collect()
    )
