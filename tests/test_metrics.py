"""replay.metrics: kernel indices by hand, peer tables against zcat|grep|gawk counts, edge cases.

Expected numbers on the bundled traces were computed from trace.txt.gz with the shell command
in the comment next to them (T=traces/<bundle>/trace.txt.gz), independently of the parser.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from replay.metrics import (
    extfrag_for_order,
    fallback_summary,
    fallbacks_over_time,
    fill_contig_page_info,
    fragmentation_index,
    fragmentation_index_all,
    free_pageblocks,
    free_pages,
    largest_free_order,
    live_pages,
    page_summary,
    pcp_over_time,
    pcp_summary,
    per_process,
    render_debugfs,
    unusable_free_index,
    unusable_index_all,
    zone_indices,
)
from replay.trace.ingest import read_trace
from replay.trace.schema import EVENTS_SCHEMA
from replay.trace.snapshots import open_bundle

BUNDLES = ("mixed-small", "frag-a", "numa-frag")


@pytest.fixture(scope="module")
def events(traces) -> dict[str, pa.Table]:
    return {name: read_trace(traces / name).events for name in BUNDLES}


# ---------------------------------------------------------------------------------------------
# Fragmentation indices

# frag-a end.buddyinfo, "Node 0, zone DMA32": blocks per order 0..10.
FRAG_A_DMA32 = [394, 256, 240, 180, 110, 52, 15, 15, 3, 1, 28]
# Pages per order (n_k * 2^k): 394 512 960 1440 1760 1664 960 1920 768 512 28672 -> 39562.
# Pages in blocks below order o, cumulated: o=1 394, 2 906, 3 1866, 4 3306, 5 5066, 6 6730,
# 7 7690, 8 9610, 9 10378, 10 10890; unusable(o) = that * 1000 // 39562, e.g.
# o=1: 394000 // 39562 = 9; o=4: 3306000 // 39562 = 83; o=10: 10890000 // 39562 = 275.
FRAG_A_DMA32_UNUSABLE = [0, 9, 22, 47, 83, 128, 170, 194, 242, 262, 275]


def test_fill_contig_page_info_by_hand(traces):
    counts = open_bundle(traces / "frag-a").end.buddyinfo[(0, "DMA32")]
    assert counts == FRAG_A_DMA32
    # total = 394+256+240+180+110+52+15+15+3+1+28 = 1294 blocks, 39562 pages;
    # suitable at 3 = 180 + 110*2 + 52*4 + 15*8 + 15*16 + 3*32 + 1*64 + 28*128 = 4712;
    # suitable at 9 = 1 + 28*2 = 57.
    assert fill_contig_page_info(counts, 3) == (1294, 39562, 4712)
    assert fill_contig_page_info(counts, 9) == (1294, 39562, 57)
    assert free_pages(counts) == 39562


def test_indices_of_a_real_zone_by_hand():
    assert unusable_index_all(FRAG_A_DMA32).tolist() == FRAG_A_DMA32_UNUSABLE
    assert [unusable_free_index(FRAG_A_DMA32, o) for o in range(11)] == FRAG_A_DMA32_UNUSABLE
    # Order-10 blocks are free, so every order would succeed: -1000 throughout.
    assert fragmentation_index_all(FRAG_A_DMA32).tolist() == [-1000] * 11
    assert extfrag_for_order(FRAG_A_DMA32, 9) == 26  # 10378 * 100 // 39562
    assert largest_free_order(FRAG_A_DMA32) == 10
    assert free_pageblocks(FRAG_A_DMA32) == 57  # 1 order-9 + 28 order-10 blocks * 2


def test_fragmentation_index_by_hand_without_large_blocks():
    # The same zone with its order-9 and order-10 blocks taken: 1265 blocks, 10378 pages.
    counts = FRAG_A_DMA32[:9] + [0, 0]
    # order 9: 1000 - (1000 + 10378000 // 512) // 1265 = 1000 - 21269 // 1265 = 1000 - 16
    assert fragmentation_index(counts, 9) == 984
    # order 10: 1000 - (1000 + 10378000 // 1024) // 1265 = 1000 - 11134 // 1265 = 992
    assert fragmentation_index(counts, 10) == 992
    assert fragmentation_index(counts, 8) == -1000  # three order-8 blocks
    assert fragmentation_index_all(counts).tolist()[8:] == [-1000, 984, 992]
    assert largest_free_order(counts) == 8
    assert free_pageblocks(counts) == 0


def test_fragmentation_index_below_zero_prints_like_the_kernel():
    # One order-3 block: at order 4, 1000 - (1000 + 8000 // 16) // 1 = -500, which the kernel's
    # "%2d.%03d" with C division prints as " 0.-500".
    one_block = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert fragmentation_index(one_block, 4) == -500
    line = render_debugfs({(0, "DMA"): one_block}, "extfrag_index")
    assert line == ("Node 0, zone      DMA -1.000 -1.000 -1.000 -1.000  0.-500  0.-250  0.-125 "
                    " 0.-62  0.-31  0.-15  0.-07 \n")


def test_no_free_memory():
    empty = [0] * 11
    assert fill_contig_page_info(empty, 0) == (0, 0, 0)
    assert unusable_index_all(empty).tolist() == [1000] * 11
    assert fragmentation_index_all(empty).tolist() == [0] * 11
    assert extfrag_for_order(empty, 9) == 0
    assert largest_free_order(empty) == -1
    assert free_pageblocks(empty) == 0
    text = render_debugfs({"0/DMA": empty}, "unusable_index")
    assert text == "Node 0, zone      DMA " + "1.000 " * 11 + "\n"


def test_all_free_at_max_order():
    counts = [0] * 10 + [5]
    assert unusable_index_all(counts).tolist() == [0] * 11
    assert fragmentation_index_all(counts).tolist() == [-1000] * 11
    assert extfrag_for_order(counts, 10) == 0
    assert largest_free_order(counts) == 10
    assert free_pageblocks(counts) == 10
    assert free_pages(counts) == 5120


def test_indices_broadcast_over_leading_axes():
    stack = np.array([[FRAG_A_DMA32, [0] * 11], [[0] * 10 + [5], FRAG_A_DMA32[:9] + [0, 0]]])
    assert unusable_index_all(stack).shape == (2, 2, 11)
    assert fragmentation_index_all(stack)[1, 1, 9:].tolist() == [984, 992]
    assert largest_free_order(stack).tolist() == [[10, -1], [10, 8]]
    assert unusable_free_index(stack, 1).tolist() == [[9, 1000], [0, 37]]  # 394000 // 10378
    with pytest.raises(ValueError):
        unusable_index_all([1, 2, 3])
    with pytest.raises(ValueError):
        fragmentation_index(FRAG_A_DMA32, 11)


def test_debugfs_text_of_a_real_snapshot(traces):
    buddyinfo = open_bundle(traces / "mixed-small").end.buddyinfo
    # DMA: [0 0 0 0 0 1 1 1 0 1 3] = 3808 pages; order 6: 32000 // 3808 = 8,
    # order 10: (32+64+128+512) * 1000 // 3808 = 193.
    assert render_debugfs(buddyinfo, "unusable_index") == (
        "Node 0, zone      DMA 0.000 0.000 0.000 0.000 0.000 0.000 0.008 0.025 0.058 0.058 0.193 \n"
        "Node 0, zone    DMA32 0.000 0.000 0.001 0.003 0.005 0.008 0.013 0.018 0.023 0.026 0.055 \n"
    )
    assert render_debugfs(buddyinfo, "extfrag_index").count("-1.000 ") == 22


def test_zone_indices(traces):
    zones = zone_indices(open_bundle(traces / "frag-a").end.buddyinfo)
    assert list(zones) == ["0/DMA", "0/DMA32"]
    assert zones["0/DMA32"] == {
        "unusable_index": FRAG_A_DMA32_UNUSABLE,
        "fragmentation_index": [-1000] * 11,
        "largest_free_order": 10,
        "free_pageblocks": 57,
        "free_pages": 39562,
    }
    # DMA: 32 + 64 + 128 + 512 + 3 * 1024 = 3808 pages; 1 + 3 * 2 = 7 pageblocks.
    assert zones["0/DMA"]["free_pages"] == 3808
    assert zones["0/DMA"]["free_pageblocks"] == 7
    assert zone_indices({"1/Normal": [0] * 11})["1/Normal"]["largest_free_order"] == -1


# ---------------------------------------------------------------------------------------------
# Bundled traces against zcat | grep | gawk

# zcat $T | grep -c ' mm_page_alloc: '                                   -> allocs
# zcat $T | grep ' mm_page_alloc_extfrag: ' | grep -c 'fragmenting=1'     -> fragmenting
# zcat $T | grep ' mm_page_alloc_extfrag: ' | grep -c 'change_ownership=1' -> ownership
# by_pair: zcat $T | grep ' mm_page_alloc_extfrag: ' | gawk '{match($0,
#   /alloc_migratetype=([0-9]+) fallback_migratetype=([0-9]+)/, a); c[a[1] "->" a[2]]++}
#   END {for (k in c) print k, c[k]}'
FALLBACKS = {
    "mixed-small": (32130, 2, 0, 2, {"Unmovable": {"Movable": 2}}),
    "frag-a": (109448, 11, 0, 11, {"Unmovable": {"Movable": 10}, "Reclaimable": {"Movable": 1}}),
    "numa-frag": (117445, 11, 0, 11,
                  {"Unmovable": {"Movable": 10}, "Reclaimable": {"Movable": 1}}),
}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_fallback_summary_matches_grep(events, bundle):
    allocs, fallbacks, fragmenting, ownership, pairs = FALLBACKS[bundle]
    summary = fallback_summary(events[bundle])
    assert summary["allocs"] == allocs
    assert summary["fallbacks"] == fallbacks
    assert summary["fragmenting"] == fragmenting
    assert summary["ownership_changes"] == ownership
    assert summary["severe"] == summary["moderate"] == 0
    assert summary["fallback_rate_per_1000"] == pytest.approx(fallbacks * 1000 / allocs)
    assert summary["by_pair"] == pairs


# The top process. For EV in the six events:
#   zcat $T | grep ' memwork-125 ' | grep -c " $EV: "
# freed_direct = mm_page_free - mm_page_free_batched here (every batched page has its
#   mm_page_free just before on its pfn); pages drained:
#   zcat $T | grep ' memwork-125 ' | grep ' mm_page_pcpu_drain: ' |
#     gawk '{match($0, /order=([0-9]+)/, o); s += 2^o[1]} END {print s}'
# runs (refills, drains), extfrag skipped, a refill run keyed by order/migratetype:
#   zcat $T | grep ' memwork-125 ' | gawk '!/extfrag/ {match($0, /: (mm_[a-z_]+): /, e);
#     match($0, / order=([0-9]+) migratetype=([0-9]+)/, o);
#     t = (e[1] == "mm_page_alloc_zone_locked" && /percpu_refill=1/) ? "r" o[1] "/" o[2] :
#         (e[1] == "mm_page_pcpu_drain" ? "d" : "x");
#     if (t != p) {if (t == "d") d++; else if (t != "x") r++} p = t} END {print r, d}'
TOP_PROCESS = {
    "mixed-small": {"comm": "memwork", "pid": 126, "allocs": 10623, "allocs_under_lock": 11735,
                    "freed_direct": 9842 - 8773, "freed_batched": 8773,
                    "pcpu_pages_drained": 16062, "pcpu_drains": 50, "pcpu_refills": 409,
                    "fallbacks": 2, "fragmenting": 0, "migratetype_changed": 2, "severe": 0,
                    "moderate": 0},
    "frag-a": {"comm": "memwork", "pid": 125, "allocs": 108730, "allocs_under_lock": 105226,
               "freed_direct": 63475 - 58195, "freed_batched": 58195,
               "pcpu_pages_drained": 61090, "pcpu_drains": 235, "pcpu_refills": 3542,
               "fallbacks": 11, "fragmenting": 0, "migratetype_changed": 11, "severe": 0,
               "moderate": 0},
    "numa-frag": {"comm": "memwork", "pid": 149, "allocs": 116209, "allocs_under_lock": 103707,
                  "freed_direct": 56902 - 51500, "freed_batched": 51500,
                  "pcpu_pages_drained": 58530, "pcpu_drains": 139, "pcpu_refills": 3504,
                  "fallbacks": 11, "fragmenting": 0, "migratetype_changed": 11, "severe": 0,
                  "moderate": 0},
}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_per_process_top_row_matches_grep(events, bundle):
    table = per_process(events[bundle])
    assert table.row(0, named=True) == TOP_PROCESS[bundle]
    assert table["allocs"].to_list() == sorted(table["allocs"].to_list(), reverse=True)
    # Every row together: zcat $T | grep -c ' mm_page_alloc: ', and so on.
    assert table["allocs"].sum() == FALLBACKS[bundle][0]
    assert table["freed_direct"].sum() + table["freed_batched"].sum() == {
        "mixed-small": 31304, "frag-a": 64745, "numa-frag": 58170}[bundle]  # mm_page_free


def test_per_process_ignore_pid(events):
    table = per_process(events["frag-a"], ignore_pid=True)
    cat = table.filter(pl.col("comm") == "cat").row(0, named=True)
    by_pid = per_process(events["frag-a"]).filter(pl.col("comm") == "cat")
    assert cat["pid"] is None
    assert cat["allocs"] == by_pid["allocs"].sum()
    assert cat["pcpu_refills"] == by_pid["pcpu_refills"].sum()


# alloc_requests: zcat $T | grep -c ' mm_page_alloc: '; failures: ... | grep -c 'page=0{16} '
# alloc_kb / free_kb: zcat $T | grep ' mm_page_alloc: ' | gawk '{match($0, /order=([0-9]+)/, o);
#   s += 4 * 2^o[1]} END {print s}' (and ' mm_page_free: ')
# perf's live tree (alloc_and_freed, its KB, free_only, live pfns):
#   zcat $T | gawk '/ mm_page_alloc: / && !/page=0{16} / {match($0, /pfn=(0x[0-9a-f]+)/, p);
#     l[p[1]] = 1} / mm_page_free: / {match($0, /pfn=(0x[0-9a-f]+) order=([0-9]+)/, p);
#     if (p[1] in l) {m++; k += 4 * 2^p[2]; delete l[p[1]]} else n++}
#     END {print m, k, n, length(l)}'
PAGE_SUMMARY = {
    "mixed-small": dict(alloc_requests=32130, alloc_kb=130744, free_requests=31304,
                        free_kb=125408, alloc_and_freed=31248, alloc_and_freed_kb=125180,
                        alloc_only=882, alloc_only_kb=130744 - 125180, free_only=56,
                        free_only_kb=125408 - 125180, alloc_failures=0, alloc_failures_kb=0),
    "frag-a": dict(alloc_requests=109448, alloc_kb=452840, free_requests=64745, free_kb=259220,
                   alloc_and_freed=64729, alloc_and_freed_kb=259152, alloc_only=44719,
                   alloc_only_kb=452840 - 259152, free_only=16, free_only_kb=259220 - 259152,
                   alloc_failures=0, alloc_failures_kb=0),
    "numa-frag": dict(alloc_requests=117445, alloc_kb=583536, free_requests=58170,
                      free_kb=331040, alloc_and_freed=58149, alloc_and_freed_kb=330952,
                      alloc_only=59296, alloc_only_kb=583536 - 330952, free_only=21,
                      free_only_kb=331040 - 330952, alloc_failures=0, alloc_failures_kb=0),
}
LIVE = {"mixed-small": 882, "frag-a": 44719, "numa-frag": 59296}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_page_summary_matches_gawk(events, bundle):
    summary = page_summary(events[bundle])
    matrix = summary.pop("by_order_migratetype")
    assert summary == PAGE_SUMMARY[bundle]
    assert sum(sum(row.values()) for row in matrix.values()) == summary["alloc_requests"]
    assert live_pages(events[bundle]).height == LIVE[bundle]


def test_page_summary_order_migratetype_labels(events):
    # zcat $T | grep ' mm_page_alloc: ' | gawk '{match($0, /order=([0-9]+) migratetype=([0-9]+)/,
    #   a); c[a[1] "/" a[2]]++} END {for (k in c) print k, c[k]}'   (numa-frag)
    matrix = page_summary(events["numa-frag"])["by_order_migratetype"]
    assert matrix[0] == {"Unmovable": 6746, "Movable": 108180, "Reclaimable": 1166,
                         "HighAtomic": 0, "Isolate": 0}
    assert matrix[9]["Movable"] == 48  # THP (migratetype=1), which perf calls "Reclaimable"
    assert sorted(matrix) == list(range(11))


def test_page_summary_time_window(events):
    # zcat $T | gawk 'match($0, / ([0-9]+\.[0-9]+): mm_page_/, t) && t[1] >= 3.0 && t[1] <= 4.0'
    #   | (the live-tree gawk above, counting allocs and frees too)     (frag-a)
    summary = page_summary(events["frag-a"], time=(3.0, 4.0))
    assert (summary["alloc_requests"], summary["free_requests"]) == (32408, 18942)
    assert (summary["alloc_and_freed"], summary["free_only"]) == (13113, 5829)
    assert live_pages(events["frag-a"], time=(3.0, 4.0)).height == 19295
    assert page_summary(events["frag-a"], time=(None, None)) == page_summary(events["frag-a"])


# refill_blocks: zcat $T | grep -c 'percpu_refill=1'
# drained_blocks: zcat $T | grep -c ' mm_page_pcpu_drain: '; pages and per-CPU runs:
#   zcat $T | gawk 'match($0, /-([0-9]+) +\[([0-9]+)\] .*: (mm_page_[a-z_]+): (.*)$/, m) &&
#     m[3] != "mm_page_alloc_extfrag" {match(m[4], /(^| )order=([0-9]+)/, o);
#     match(m[4], / migratetype=([0-9]+)/, t); k = "x"
#     if (m[3] == "mm_page_alloc_zone_locked" && m[4] ~ /percpu_refill=1/) {
#       k = "r" o[2] "/" t[1]; rb++; rp += 2^o[2]}
#     if (m[3] == "mm_page_pcpu_drain") {k = "d"; db++; dp += 2^o[2]}
#     if (k != "x" && (k != p[m[2]] || m[1] != q[m[2]])) {if (k == "d") dr++; else rr++}
#     p[m[2]] = k; q[m[2]] = m[1]} END {print rb, rp, rr, db, dp, dr}'
PCP = {
    "mixed-small": dict(refill_blocks=33093, refill_pages=33963, refill_runs=1099,
                        drained_blocks=32421, drained_pages=32855, drain_runs=194),
    "frag-a": dict(refill_blocks=106007, refill_pages=110072, refill_runs=3569,
                   drained_blocks=61533, drained_pages=61925, drain_runs=238),
    "numa-frag": dict(refill_blocks=104869, refill_pages=122139, refill_runs=3542,
                      drained_blocks=45660, drained_pages=59110, drain_runs=142),
}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_pcp_summary_matches_gawk(events, bundle):
    assert pcp_summary(events[bundle]) == PCP[bundle]


def test_over_time_adds_up(events):
    frame = events["frag-a"]
    windows = pcp_over_time(frame, 250_000_000)
    totals = {c: windows[c].sum() for c in PCP["frag-a"]}
    assert totals == PCP["frag-a"]
    assert windows["window_start_ns"].diff().drop_nulls().unique().to_list() == [250_000_000]
    steals = fallbacks_over_time(frame, 1_000_000_000)
    assert steals["fallbacks"].sum() == 11
    assert set(steals["alloc_mt"]) == {"Unmovable", "Reclaimable"}


# ---------------------------------------------------------------------------------------------
# Synthetic frames: the rules the bundles do not exercise

ALLOC, FREE, BATCHED = "mm_page_alloc", "mm_page_free", "mm_page_free_batched"
LOCKED, DRAIN, EXTFRAG = "mm_page_alloc_zone_locked", "mm_page_pcpu_drain", "mm_page_alloc_extfrag"


def frame(*rows: tuple) -> pl.DataFrame:
    """Events from (event, pid, cpu, pfn, order, extra fields) tuples, seq and ts in row order."""
    records = []
    for seq, (event, pid, cpu, pfn, order, *extra) in enumerate(rows):
        record = dict(seq=seq, ts_ns=1000 * seq, cpu=cpu, pid=pid, comm=f"p{pid}", irq_flags=0,
                      event=event, pfn=pfn, failed=event == ALLOC and pfn is None, order=order)
        record.update(extra[0] if extra else {})
        records.append(record)
    return pl.from_arrow(pa.Table.from_pylist(records, schema=EVENTS_SCHEMA))


def refill(pid, cpu, pfn, order=0, mt=1, flag=1):
    return (LOCKED, pid, cpu, pfn, order, {"migratetype": mt, "percpu_refill": flag})


def steal(pid, fallback_order, fragmenting, change):
    return (EXTFRAG, pid, 0, 0x400, 0, {"migratetype": 0, "fallback_migratetype": 1,
                                         "fallback_order": fallback_order, "pageblock_order": 9,
                                         "fragmenting": fragmenting, "change_ownership": change})


def test_runs_follow_the_kernel_calls():
    df = frame(
        refill(1, 0, 10), steal(1, 2, 1, 0), refill(1, 0, 11),  # one refill, a steal inside
        refill(1, 0, 12, order=1),  # order changes: a new rmqueue_bulk
        refill(1, 0, 14, flag=0),  # direct buddy allocation: not a refill, ends the run
        refill(1, 0, 15),
        refill(2, 1, 20), refill(3, 1, 21),  # CPU 1: another pid, another run
        (DRAIN, 1, 0, 30, 0), (DRAIN, 1, 0, 32, 1),  # one drain of two orders: 3 pages
        (ALLOC, 1, 0, 15, 0, {"migratetype": 1}),
        (DRAIN, 1, 0, 34, 0),
    )
    assert pcp_summary(df) == dict(refill_blocks=6, refill_pages=7, refill_runs=5,
                                   drained_blocks=3, drained_pages=4, drain_runs=2)
    row = per_process(df).filter(pl.col("pid") == 1).row(0, named=True)
    assert (row["allocs_under_lock"], row["pcpu_refills"], row["pcpu_drains"]) == (5, 3, 2)
    assert row["pcpu_pages_drained"] == 4


def test_fallback_severity():
    df = frame(steal(1, 2, 1, 0), steal(1, 3, 1, 1), steal(1, 5, 1, 0), steal(2, 10, 0, 1),
               (ALLOC, 1, 0, 1, 0, {"migratetype": 0}))
    summary = fallback_summary(df)
    assert {k: summary[k] for k in ("allocs", "fallbacks", "fragmenting", "ownership_changes",
                                    "severe", "moderate")} == dict(
        allocs=1, fallbacks=4, fragmenting=3, ownership_changes=2, severe=2, moderate=1)
    assert summary["fallback_rate_per_1000"] == 4000.0
    assert summary["by_pair"] == {"Unmovable": {"Movable": 4}}
    row = per_process(df).filter(pl.col("pid") == 1).row(0, named=True)
    assert (row["fragmenting"], row["severe"], row["moderate"]) == (3, 2, 1)


def test_batched_frees_count_once():
    df = frame(
        (FREE, 1, 0, 5, 0), (FREE, 1, 0, 6, 0), (BATCHED, 1, 0, 5, 0), (BATCHED, 1, 0, 6, 0),
        (FREE, 1, 0, 7, 1),  # a direct free
        (BATCHED, 1, 0, 8, 0),  # its mm_page_free was lost
        (FREE, 2, 0, 9, 0), (BATCHED, 1, 0, 9, 0),  # another pid's free: not a pair
    )
    row = per_process(df).filter(pl.col("pid") == 1).row(0, named=True)
    assert (row["freed_direct"], row["freed_batched"]) == (1, 4)
    assert per_process(df).filter(pl.col("pid") == 2)["freed_direct"].item() == 1


def test_perf_live_tree_semantics():
    df = frame(
        (ALLOC, 1, 0, 100, 2, {"migratetype": 1}),
        (FREE, 1, 0, 101, 0),  # a piece of the order-2 block: nomatch
        (FREE, 1, 0, 100, 0),  # matches pfn 100 whatever the order: 4 KiB
        (FREE, 1, 0, 100, 0),  # nothing live at 100 any more: nomatch
        (ALLOC, 1, 0, 200, 0, {"migratetype": 2}),
        (ALLOC, 2, 0, 200, 1, {"migratetype": 0}),  # a hit on the live node of pfn 200
        (ALLOC, 1, 0, None, 3, {"migratetype": 0}),  # failed
        (ALLOC, 1, 0, 300, 0, {"migratetype": 0}),
        (FREE, 1, 0, 300, 0),
    )
    summary = page_summary(df)
    assert summary["alloc_requests"] == 5 and summary["alloc_failures"] == 1
    assert summary["alloc_failures_kb"] == 32
    assert summary["alloc_kb"] == 16 + 4 + 8 + 4
    assert (summary["free_requests"], summary["free_kb"]) == (4, 16)
    assert (summary["alloc_and_freed"], summary["alloc_and_freed_kb"]) == (2, 8)
    assert (summary["alloc_only"], summary["alloc_only_kb"]) == (2, 24)
    assert (summary["free_only"], summary["free_only_kb"]) == (2, 8)
    assert summary["by_order_migratetype"][2]["Movable"] == 1
    assert summary["by_order_migratetype"][0]["Reclaimable"] == 1
    live = live_pages(df)
    assert live.select("pfn", "order", "migratetype", "pid", "hits").rows() == [(200, 0, 2, 1, 2)]
    # A window that starts after the alloc of pfn 100: both of its frees are free-only.
    late = page_summary(df, time=(1.5e-6, None))
    assert (late["alloc_requests"], late["free_only"]) == (4, 2)


def test_empty_frame():
    empty = frame()
    assert fallback_summary(empty)["fallback_rate_per_1000"] == 0.0
    assert pcp_summary(empty)["refill_runs"] == 0
    assert page_summary(empty)["alloc_requests"] == 0
    assert per_process(empty).height == 0
    assert live_pages(empty).height == 0
    assert pcp_over_time(empty, 1000).height == 0
