"""Compaction: each rule of the free scanner, the fast search and capture on hand-built zones
(docs/kernel-6.1-compaction.md A4-A7), and traces/compact-frag end to end (ingest, exact
reconstruction, the kernel's own vmstat counters, the verdict for a trace that lacks them)."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import polars as pl
import pytest
from conftest import run_cli
from engine_helpers import (
    MOVABLE,
    PAGEBLOCK,
    UNMOVABLE,
    free_list,
    mark_allocated,
    one_zone_state,
    put_free,
)

from replay.engine.buddy import free_one_page_capc
from replay.engine.compaction import (
    CC_ACTIVE,
    CC_DIRECT,
    CC_FAST_FAIL,
    CC_FREE_PFN,
    CC_MIGRATE_PFN,
    CC_NR_FREEPAGES,
    CC_ORDER,
    CC_PID,
    CC_SEARCH_ORDER,
    CC_ZONE,
    TARGET_INFERRED,
    TARGET_TRACED,
    ZC_BLOCKSKIP_FLUSH,
    __isolate_free_page,
    fast_isolate_freepages,
    move_freelist_head,
    move_freelist_tail,
    new_compaction_tables,
    revert_inferred_target,
    visit_freepages_block,
)
from replay.engine.events import CE_STATUS, N_CE
from replay.engine.follow_compaction import compaction_event, direct_compact_defer_reset
from replay.engine.state import PG_ALLOC, PG_BUDDY
from replay.metrics.compaction import compaction_summary, vmstat_deltas
from replay.pipeline import load, reconstruct_source
from replay.trace.ingest import read_trace
from replay.trace.schema import EV_COMPACT_END

HEADS = np.zeros(4096, np.int64)
NH = np.zeros(1, np.int64)


def visit(st, start, end, stride, blk_end=None):
    blk_end = blk_end if blk_end is not None else (start // PAGEBLOCK + 1) * PAGEBLOCK
    scanned, taken, stop, n = visit_freepages_block(st, start, end, blk_end, stride, HEADS, NH)
    return int(scanned), int(taken), int(stop), [int(h) for h in HEADS[:n]]


# ---- isolate_freepages_block ----------------------------------------------------------------

def test_stride_1_takes_every_free_head_and_counts_taken_blocks_whole():
    st = one_zone_state()
    put_free(st, 1024, 3, MOVABLE)
    put_free(st, 1100, 2, MOVABLE)
    # a full pageblock at stride 1: 512 pfns visited, a taken block counted 2^order
    assert visit(st, 1024, 1536, 1) == (512, 12, 1536, [1024, 1100])


def test_a_large_stride_only_takes_blocks_whose_head_it_visits():
    st = one_zone_state()
    put_free(st, 1024 + 32, 5, MOVABLE)  # head on the 32-stride grid: taken
    put_free(st, 1024 + 72, 3, MOVABLE)  # head between grid points: stays free
    scanned, taken, stop, heads = visit(st, 1024, 1536, 32)
    assert heads == [1056] and taken == 32
    # 16 grid points, plus the taken block counted whole minus its head
    assert scanned == 16 + 31 and stop == 1536


def test_compound_heads_skip_their_tails():
    st = one_zone_state()
    st.pg_comp[1024] = 4 + 1  # an allocated order-4 compound page at the block start
    put_free(st, 1040, 4, MOVABLE)
    scanned, taken, stop, heads = visit(st, 1024, 1536, 1)
    assert heads == [1040]
    # the compound page counts once and its 15 tail pfns are jumped over
    assert scanned == 1 + (16 + (512 - 32)) and taken == 16


def test_enough_pages_break_ends_the_range_after_the_block():
    st = one_zone_state()
    put_free(st, 1024, 3, MOVABLE)
    put_free(st, 1100, 2, MOVABLE)
    # the traced range ends right after the first block: nr_migratepages were reached there
    assert visit(st, 1024, 1032, 1) == (8, 8, 1032, [1024])


def test_a_free_head_at_the_range_end_is_a_watermark_failure_not_taken():
    st = one_zone_state()
    put_free(st, 1024, 3, MOVABLE)
    put_free(st, 1100, 2, MOVABLE)
    scanned, taken, stop, heads = visit(st, 1024, 1100, 1)
    assert heads == [1024] and stop == 1100 and taken == 8


def test_isolate_free_page_makes_order0_targets_and_retypes_half_pageblocks():
    st = one_zone_state()
    st.pb_mt[2] = UNMOVABLE
    put_free(st, 1024, 8, UNMOVABLE)  # half of pageblock 2
    assert __isolate_free_page(st, 0, 1024, False) == 256
    assert st.pb_mt[2] == MOVABLE  # order >= pageblock_order - 1 re-types it
    assert (st.pg_state[1024:1280] == PG_ALLOC).all() and (st.pg_order[1024:1280] == 0).all()
    assert (st.pg_target[1024:1280] == TARGET_TRACED).all()
    assert st.nr_free_pages[0] == 0 and free_list(st, 8, UNMOVABLE) == []


def test_a_later_take_reverts_an_inferred_target_block():
    st = one_zone_state()
    put_free(st, 2048, 2, MOVABLE)
    __isolate_free_page(st, 0, 2048, True)
    assert (st.pg_target[2048:2052] == TARGET_INFERRED + 2).all()
    assert revert_inferred_target(st, 2049) == 4
    assert st.pg_state[2048] == PG_BUDDY and st.pg_order[2048] == 2
    assert st.nr_free_pages[0] == 4


# ---- the fast search's list rotations --------------------------------------------------------

def test_move_freelist_head_and_tail_rotate_as_the_kernel_does():
    st = one_zone_state()
    for p in (100, 200, 300, 400):
        put_free(st, p, 0, MOVABLE, tail=True)
    move_freelist_head(st, 0, 0, MOVABLE, 300)
    assert free_list(st, 0, MOVABLE) == [300, 400, 100, 200]
    move_freelist_tail(st, 0, 0, MOVABLE, 400)
    assert free_list(st, 0, MOVABLE) == [100, 200, 300, 400]
    move_freelist_head(st, 0, 0, MOVABLE, 100)  # already the head: nothing moves
    assert free_list(st, 0, MOVABLE) == [100, 200, 300, 400]
    move_freelist_tail(st, 0, 0, MOVABLE, 400)  # already the tail: nothing moves
    assert free_list(st, 0, MOVABLE) == [100, 200, 300, 400]


def test_move_freelist_head_and_tail_move_the_end_entries_too():
    """The guards skip only the no-op: 6.1's list_is_last(freelist, &freepage->lru) is true
    for the first entry, list_is_first(freelist, ...) for the last (compaction.c:1323, 1340),
    so the last entry is rotated to the head and the first one to the tail."""
    st = one_zone_state()
    for p in (100, 200, 300, 400):
        put_free(st, p, 0, MOVABLE, tail=True)
    move_freelist_head(st, 0, 0, MOVABLE, 400)
    assert free_list(st, 0, MOVABLE) == [400, 100, 200, 300]
    move_freelist_tail(st, 0, 0, MOVABLE, 400)
    assert free_list(st, 0, MOVABLE) == [100, 200, 300, 400]


def _cc_for(st, order, free_pfn, migrate_pfn, direct=1):
    cc, zc = new_compaction_tables(1)
    cc[0, CC_ZONE] = 0
    cc[0, CC_ORDER] = order
    cc[0, CC_SEARCH_ORDER] = order
    cc[0, CC_FREE_PFN] = free_pfn
    cc[0, CC_MIGRATE_PFN] = migrate_pfn
    cc[0, CC_FAST_FAIL] = 0
    cc[0, CC_NR_FREEPAGES] = 0
    cc[0, CC_DIRECT] = direct
    return cc, zc


def test_fast_isolate_freepages_takes_the_first_block_from_the_tail_in_the_top_quarter():
    st = one_zone_state(pages=8192)
    # order-3 MOVABLE list, head..tail: 4096 (low), 7168 (top quarter), 512 (low)
    for p in (4096, 7168, 512):
        put_free(st, p, 3, MOVABLE, tail=True)
    cc, zc = _cc_for(st, order=4, free_pfn=8192 - PAGEBLOCK, migrate_pfn=0)
    page, around = fast_isolate_freepages(st, cc, zc, 0)
    assert page == 7168 and around == 7168
    assert cc[0, CC_NR_FREEPAGES] == 8 and cc[0, CC_SEARCH_ORDER] == 3
    # the scanned tail entry moved so that the chosen entry became the head before the take
    assert free_list(st, 3, MOVABLE) == [512, 4096]
    assert (st.pg_target[7168:7176] == TARGET_INFERRED + 3).all()


def test_fast_isolate_freepages_falls_back_to_the_highest_block_in_the_top_half():
    st = one_zone_state(pages=8192)
    for p in (4200, 5000, 100):  # nothing in the top quarter; 5000 highest in the top half
        put_free(st, p, 1, MOVABLE, tail=True)
    cc, zc = _cc_for(st, order=2, free_pfn=8192 - PAGEBLOCK, migrate_pfn=0)
    page, _ = fast_isolate_freepages(st, cc, zc, 0)
    assert page == 5000 and cc[0, CC_NR_FREEPAGES] == 2


# ---- capture ---------------------------------------------------------------------------------

def test_a_free_merging_to_the_compaction_order_is_captured_without_listing():
    st = one_zone_state()
    put_free(st, 1024, 8, UNMOVABLE)
    mark_allocated(st, 1280, 1536, UNMOVABLE)
    st.pg_state[1280] = 0
    head, captured = free_one_page_capc(st, 0, 1280, 8, UNMOVABLE, False, 9, False)
    assert captured and head == 1024  # merged to order 9 and taken for the task
    assert free_list(st, 8, UNMOVABLE) == [] and free_list(st, 9, UNMOVABLE) == []
    assert st.nr_free_pages[0] == 0


def test_movable_blocks_below_pageblock_order_are_not_captured():
    st = one_zone_state()
    put_free(st, 1024, 2, MOVABLE)
    head, captured = free_one_page_capc(st, 0, 1028, 2, MOVABLE, False, 3, False)
    assert not captured and free_list(st, 3, MOVABLE) == [1024]


# ---- compact_blockskip_flush ------------------------------------------------------------------

def _end_direct_run(st, cc, zc, status):
    cc[0, CC_PID], cc[0, CC_ACTIVE], cc[0, CC_ZONE], cc[0, CC_DIRECT] = 7, 1, 0, 1
    row = np.zeros(N_CE, np.int64)
    row[CE_STATUS] = status
    compaction_event(st, cc, zc, EV_COMPACT_END, row, 7, -1, -1, 0, HEADS, NH,
                     np.zeros(32, np.int64))


def test_the_allocation_after_direct_compaction_clears_the_blockskip_flush():
    """__alloc_pages_direct_compact() clears compact_blockskip_flush when its allocation
    succeeds, traced as a defer_reset after try_to_compact_pages()'s own (which it emits only
    for a COMPACT_SUCCESS run): kswapd's next sleep then resets nothing."""
    st = one_zone_state()
    cc, zc = new_compaction_tables(1)
    _end_direct_run(st, cc, zc, 6)  # partial_skipped: the scanners met
    assert zc[0, ZC_BLOCKSKIP_FLUSH] == 1
    direct_compact_defer_reset(cc, zc, 7, 0)  # the page came from the free lists after all
    assert zc[0, ZC_BLOCKSKIP_FLUSH] == 0
    zc[0, ZC_BLOCKSKIP_FLUSH] = 1
    _end_direct_run(st, cc, zc, 8)  # success
    direct_compact_defer_reset(cc, zc, 7, 0)  # try_to_compact_pages(): not yet allocated
    assert zc[0, ZC_BLOCKSKIP_FLUSH] == 1
    direct_compact_defer_reset(cc, zc, 7, 0)  # the allocation succeeded
    assert zc[0, ZC_BLOCKSKIP_FLUSH] == 0
    direct_compact_defer_reset(cc, zc, 8, 0)  # another task's: nothing of this run


# ---- real captures ---------------------------------------------------------------------------

def test_compaction_events_are_ingested_as_rows_grep_can_count(traces):
    data = read_trace(traces / "compact-frag")
    kinds = data.stats.events_by_kind
    # zcat trace.txt.gz | grep -o ' mm_compaction_[a-z_]*: ' | sort | uniq -c
    assert {k: v for k, v in kinds.items() if k.startswith("mm_compaction_")} == {
        "mm_compaction_begin": 2, "mm_compaction_end": 2, "mm_compaction_finished": 79,
        "mm_compaction_isolate_freepages": 183, "mm_compaction_isolate_migratepages": 77,
        "mm_compaction_kcompactd_sleep": 12, "mm_compaction_migratepages": 24,
        "mm_compaction_suitable": 2}
    summary = compaction_summary(data.events)
    # grep isolate_freepages | sed 's/.*nr_taken=//' | awk '{s+=$1}': 6023 and 69659 scanned
    assert summary["free_isolated"] == 6023 and summary["free_scanned"] == 69659
    assert summary["runs"] == 2 and summary["migrated"] == 6023
    begin = pl.from_arrow(data.events).filter(pl.col("event") == "mm_compaction_begin").row(
        1, named=True)
    assert (begin["start_pfn"], begin["migrate_pfn"], begin["free_pfn"], begin["end_pfn"],
            begin["sync"]) == (0x1000, 0x1000, 0x27E00, 0x27FDD, 1)


def test_compact_frag_reconstructs_exactly_through_compact_memory(traces):
    r = reconstruct_source(traces / "compact-frag")
    assert r.exact and r.end_pagetypeinfo.exact and r.end_pageblocks.exact
    assert sum(r.inconsistencies.values()) == 0
    assert r.agreement.rate == 1.0
    # every free-scanner event reproduced: the pages it took are the traced nr_taken
    assert r.compaction["free_scanner_events"] == 183
    assert r.compaction["free_scanner_pages"] == 6023
    assert r.compaction["free_scanner_events_not_reproduced"] == 0
    assert r.compaction["migrated_pages"] == 6023


def test_traced_isolation_equals_the_kernels_vmstat_counters(traces):
    run = load(traces / "compact-frag")
    d = vmstat_deltas(run.bundle.start.vmstat, run.bundle.end.vmstat)
    s = compaction_summary(run.data.events)
    assert d["compact_isolated"] == s["free_isolated"] + s["migrate_isolated"] == 12073
    assert d["compact_free_scanned"] == s["free_scanned"]
    assert d["pgmigrate_success"] == s["migrated"]


@pytest.fixture(scope="module")
def no_compaction_bundle(tmp_path_factory, traces):
    """compact-frag with its compaction lines removed, as a trace recorded without them."""
    dest = tmp_path_factory.mktemp("nocomp") / "compact-frag"
    shutil.copytree(traces / "compact-frag", dest)
    with gzip.open(traces / "compact-frag" / "trace.txt.gz", "rt") as src:
        lines = [ln for ln in src if "mm_compaction_" not in ln]
    with gzip.open(dest / "trace.txt.gz", "wt", compresslevel=1) as out:
        out.writelines(lines)
    return dest


def test_a_trace_without_compaction_events_gets_a_named_verdict(no_compaction_bundle):
    res = run_cli("reconstruct", str(no_compaction_bundle))
    text = " ".join(res.stdout.decode().split())
    assert res.returncode == 1
    assert "compaction isolated 12,073 pages" in text
    assert "record events/compaction" in text
