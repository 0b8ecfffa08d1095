"""Which knob moved fragmentation most: main effects of each knob on each metric.

A knob's main effect on a metric, for one trace, is the range (largest minus smallest) of the
metric's mean over the points at each of the knob's values (the other knobs averaged over);
across traces it is the mean of the per-trace effects. Knobs are ranked per metric; the headline
is the ranking on the first metric of FRAGMENTATION (the unusable index at pageblock_order over
all zones), since metrics in different units do not add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# Fragmentation metrics of the simulated side: (column, what it is).
FRAGMENTATION = (
    ("simulated.unusable_index_pb.all", "unusable index at pageblock_order, all zones"),
    ("simulated.unusable_index_pb.worst", "unusable index at pageblock_order, worst zone"),
    ("simulated.free_pageblocks.total", "free pageblocks"),
    ("simulated.mixed_pageblocks.total", "mixed pageblocks"),
    ("simulated.fragmenting_per_1000", "fragmenting fallbacks per 1,000 allocations"),
    ("simulated.fallbacks_per_1000", "fallbacks per 1,000 allocations"),
)


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
        for metric, _ in FRAGMENTATION:
            if metric not in df.columns:
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
    """The knob that moved fragmentation most: the top knob on the first metric of
    FRAGMENTATION that some knob moved (the unusable index at pageblock_order of all zones
    together, when the reports have it)."""
    top = top_per_metric(effects)
    return next((top[m] for m, _ in FRAGMENTATION if m in top), None)


def top_per_metric(effects: list[Effect]) -> dict[str, Effect]:
    """The knob with the largest effect on each metric (metrics no knob moved are left out)."""
    out: dict[str, Effect] = {}
    for e in effects:
        if e.mean_effect <= 0:
            continue
        if e.metric not in out or e.mean_effect > out[e.metric].mean_effect:
            out[e.metric] = e
    return out
