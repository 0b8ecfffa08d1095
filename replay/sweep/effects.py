"""Which knob moved fragmentation most: main effects of each knob on each metric.

A knob's main effect on a metric, for one trace, is the range (largest minus smallest) of the
metric's mean over the points at each of the knob's values (the other knobs averaged over);
across traces it is the mean of the per-trace effects. Knobs are ranked per metric; the headline
is the ranking on the first metric of the list (the unusable index at order 9 over all zones),
since metrics in different units do not add up.

Like with like: every metric here is taken at a fixed reference order (9, a 2 MiB THP, and
each order the user adds with `sweep --order N`), never at a point's own pageblock_order, so a
pageblock_order=7 point is not "better" by counting 512 KiB blocks against 2 MiB ones. Mixed
pageblocks are counted in the point's own pageblocks: they are not ranked against the
pageblock_order knob.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from replay.ci.metrics import REFERENCE_ORDERS

# Counted in the point's own pageblocks: not comparable across pageblock_order values.
PER_PAGEBLOCK = {"simulated.mixed_pageblocks.total"}
UNIT_KNOBS = {"pageblock_order"}


def block_size(order: int) -> str:
    kib = 4 << order
    return f"{kib // 1024} MiB" if kib >= 1024 else f"{kib} KiB"


def fragmentation_metrics(orders: tuple[int, ...] = REFERENCE_ORDERS) -> tuple[tuple[str, str],
                                                                            ...]:
    """Fragmentation metrics of the simulated side, (column, what it is), at the reference
    orders (9 first)."""
    out = []
    for o in sorted(set(orders), key=lambda o: (o != 9, o)):
        out += [(f"simulated.unusable_index_o{o}.all",
                 f"unusable index at order {o} ({block_size(o)}), all zones"),
                (f"simulated.unusable_index_o{o}.worst",
                 f"unusable index at order {o} ({block_size(o)}), worst zone"),
                (f"simulated.free_blocks_o{o}.total",
                 f"free {block_size(o)} blocks (order >= {o}, in order-{o} units)")]
    return (*out,
            ("simulated.mixed_pageblocks.total", "mixed pageblocks (the point's own "
             "pageblocks; not ranked against pageblock_order)"),
            ("simulated.fragmenting_per_1000", "fragmenting fallbacks per 1,000 allocations"),
            ("simulated.fallbacks_per_1000", "fallbacks per 1,000 allocations"))


FRAGMENTATION = fragmentation_metrics()


def orders_in(df: pl.DataFrame) -> tuple[int, ...]:
    """The reference orders a sweep table has metrics for (9 first)."""
    found = {int(m[1]) for c in df.columns
             if (m := re.fullmatch(r"simulated\.unusable_index_o(\d+)\.all", c))}
    return tuple(sorted(found | set(REFERENCE_ORDERS), key=lambda o: (o != 9, o)))


def metrics_of(df: pl.DataFrame) -> tuple[tuple[str, str], ...]:
    """The fragmentation metrics for this table's reference orders."""
    return fragmentation_metrics(orders_in(df))


@dataclass
class Effect:
    knob: str
    metric: str
    mean_effect: float  # mean over traces of the per-trace range of marginal means
    traces: int


def ok_rows(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("status") == "ok") if "status" in df.columns else df


def marginal_means(df: pl.DataFrame, knob: str, metric: str) -> pl.DataFrame:
    """Per trace and knob value (as text, in grid order): the metric's mean over the points."""
    return (ok_rows(df)
            .with_columns(pl.col(knob).cast(pl.Utf8).fill_null("default").alias("_value"))
            .group_by("trace", "_value", maintain_order=True)
            .agg(pl.col(metric).mean().alias("mean"))
            .rename({"_value": knob}))


def main_effects(df: pl.DataFrame, knobs: list[str]) -> list[Effect]:
    """Every (knob, fragmentation metric) main effect the table can give."""
    out = []
    for knob in knobs:
        if knob not in df.columns:
            continue
        for metric, _ in metrics_of(df):
            if metric not in df.columns or (knob in UNIT_KNOBS and metric in PER_PAGEBLOCK):
                continue
            mm = marginal_means(df, knob, metric).drop_nulls("mean")
            per_trace = (mm.group_by("trace")
                         .agg((pl.col("mean").max() - pl.col("mean").min()).alias("range"),
                              pl.len().alias("n"))
                         .filter(pl.col("n") > 1))
            if per_trace.height:
                out.append(Effect(knob, metric, float(per_trace["range"].mean()),
                                  per_trace.height))
    return out


def headline(effects: list[Effect]) -> Effect | None:
    """The knob that moved fragmentation most: the top knob on the first fragmentation metric
    that some knob moved (the unusable index at order 9 of all zones together, when the
    reports have it)."""
    top = top_per_metric(effects)
    orders = tuple(sorted({int(m[1]) for e in effects
                           if (m := re.search(r"_o(\d+)\.", e.metric))} | set(REFERENCE_ORDERS)))
    return next((top[m] for m, _ in fragmentation_metrics(orders) if m in top), None)


def top_per_metric(effects: list[Effect]) -> dict[str, Effect]:
    """The knob with the largest effect on each metric (metrics no knob moved are left out)."""
    out: dict[str, Effect] = {}
    for e in effects:
        if e.mean_effect <= 0:
            continue
        if e.metric not in out or e.mean_effect > out[e.metric].mean_effect:
            out[e.metric] = e
    return out
