"""The scalar metrics of a report dict (comparison.json / summary.json), flat and named.

`check` gates on them and `sweep` tabulates them, so both read a report the same way. Per-zone
numbers get one name per zone (`unusable_index_pb.0/DMA32`) plus aggregates: `.worst` (the
highest zone) and `.all` (all zones' free blocks together) for the unusable index, `.total` for
pageblock and page counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Orders every report is also measured at, whatever its pageblock_order: what-if settings
# that change pageblock_order are compared like with like there (9: a 2 MiB THP).
REFERENCE_ORDERS = (9,)

# Headline counters copied from a side of the report under the same name.
COUNTERS = ("allocs", "fallbacks", "fragmenting_fallbacks", "ownership_changes",
            "severe_fallbacks", "moderate_fallbacks", "pcp_refill_blocks", "pcp_drained_pages")


@dataclass
class ReportMetrics:
    """One report's flat metrics, and which side of the report they were read from."""

    side: str  # "simulated" or "observed"
    values: dict[str, float] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    source: str = ""


def number(x: object) -> float | None:
    """x as a finite float, or None for anything else (absent, text, NaN)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def side_scalars(side: dict, pageblock_order: int,
                 ref_orders: tuple[int, ...] = REFERENCE_ORDERS) -> dict[str, float]:
    """The scalar metrics of one side (`observed` or `simulated`) of a report dict.

    `unusable_index_pb` and `free_pageblocks` are at the side's own pageblock_order;
    `unusable_index_o<N>` and `free_blocks_o<N>` at each fixed reference order N."""
    out: dict[str, float] = {}
    for key in COUNTERS:
        if (v := number(side.get(key))) is not None:
            out[key] = v
    allocs = out.get("allocs")
    if (v := number(side.get("fallback_rate_per_1000"))) is not None:
        out["fallbacks_per_1000"] = v
    if allocs and "fragmenting_fallbacks" in out:
        out["fragmenting_per_1000"] = out["fragmenting_fallbacks"] * 1000.0 / allocs
    elif allocs == 0:
        out["fragmenting_per_1000"] = 0.0
    unusable = {zone: _at(idx, pageblock_order)
                for zone, idx in _zones(side, "end_unusable_index").items()}
    out.update(_per_zone("unusable_index_pb", unusable, "worst", max))
    if (v := _unusable_all_zones(side, pageblock_order)) is not None:
        out["unusable_index_pb.all"] = v
    for o in sorted(set(ref_orders) | set(REFERENCE_ORDERS)):
        out.update(reference_order_scalars(side, o))
    for name, key in (("free_pageblocks", "end_free_pageblocks"),
                      ("mixed_pageblocks", "end_mixed_pageblocks"),
                      ("free_pages", "end_free_pages")):
        zones = {zone: number(v) for zone, v in _zones(side, key).items()}
        out.update(_per_zone(name, zones, "total", sum))
    return out


def reference_order_scalars(side: dict, order: int) -> dict[str, float]:
    """The unusable index at `order` (per zone, worst, all zones) and the free blocks of at
    least that order counted in order-`order` units, from the end free blocks."""
    from replay.metrics.fragmentation import MAX_ORDER, free_pageblocks, unusable_free_index

    if not 0 <= order < MAX_ORDER:
        return {}
    unusable, free = {}, {}
    for zone, c in _zones(side, "end_free_blocks").items():
        if isinstance(c, list) and len(c) == MAX_ORDER:
            unusable[zone] = float(unusable_free_index(c, order))
            free[zone] = float(free_pageblocks(c, order))
    out = _per_zone(f"unusable_index_o{order}", unusable, "worst", max)
    out.update(_per_zone(f"free_blocks_o{order}", free, "total", sum))
    if (v := _unusable_all_zones(side, order)) is not None:
        out[f"unusable_index_o{order}.all"] = v
    return out


def _unusable_all_zones(side: dict, pageblock_order: int) -> float | None:
    """The unusable index of all zones' free blocks together: the share of all free memory in
    blocks smaller than a pageblock (each zone weighted by its free pages)."""
    from replay.metrics.fragmentation import MAX_ORDER, unusable_free_index

    rows = [c for c in _zones(side, "end_free_blocks").values()
            if isinstance(c, list) and len(c) == MAX_ORDER]
    if not rows or not 0 <= pageblock_order < MAX_ORDER:
        return None
    try:
        total = [sum(int(r[k]) for r in rows) for k in range(MAX_ORDER)]
        return float(unusable_free_index(total, pageblock_order))
    except (TypeError, ValueError):
        return None


def _zones(side: dict, key: str) -> dict:
    value = side.get(key)
    return value if isinstance(value, dict) else {}


def _at(values: object, index: int) -> float | None:
    if isinstance(values, list) and 0 <= index < len(values):
        return number(values[index])
    return None


def _per_zone(name: str, zones: dict[str, float | None], agg_name: str, agg) -> dict:
    known = {z: v for z, v in zones.items() if v is not None}
    out = {f"{name}.{z}": v for z, v in known.items()}
    if known:
        out[f"{name}.{agg_name}"] = float(agg(known.values()))
    return out


def report_side(report: dict, prefer: str = "auto") -> str:
    """The side to read: `simulated` when the report has one (compare), else `observed`."""
    if prefer in ("simulated", "observed"):
        return prefer
    return "simulated" if isinstance(report.get("simulated"), dict) else "observed"


def pageblock_order_of(report: dict, side: str) -> int:
    """The pageblock order a side ran with (a what-if pageblock_order moves the simulated one)."""
    machine = report.get("machine") if isinstance(report.get("machine"), dict) else {}
    pbo = machine.get("pageblock_order", 9)
    settings = report.get("settings") if isinstance(report.get("settings"), dict) else {}
    if side == "simulated" and isinstance(settings.get("pageblock_order"), int):
        pbo = settings["pageblock_order"]
    return int(pbo) if isinstance(pbo, int) else 9


def agreement_rate(report: dict) -> float | None:
    """The model's agreement with the kernel's block choices (a property of the trace and the
    model, not of what-if settings), or None when the report has none."""
    ag = report.get("agreement")
    return number(ag.get("rate")) if isinstance(ag, dict) and ag.get("decisions") else None


def report_metrics(report: dict, prefer: str = "auto",
                   ref_orders: tuple[int, ...] = REFERENCE_ORDERS) -> ReportMetrics:
    """The flat metrics of a report dict, from its simulated side when present."""
    side = report_side(report, prefer)
    data = report.get(side)
    values = side_scalars(data, pageblock_order_of(report, side), ref_orders) \
        if isinstance(data, dict) else {}
    if (rate := agreement_rate(report)) is not None:
        values["agreement_rate"] = rate
    trace = report.get("trace") if isinstance(report.get("trace"), dict) else {}
    settings = report.get("settings") if isinstance(report.get("settings"), dict) else {}
    return ReportMetrics(side, values, settings if side == "simulated" else {},
                         str(trace.get("source", "")))
