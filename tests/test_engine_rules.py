"""The engine against Linux 6.1's page-allocator rules, one kernel rule per test.

Each test builds a tiny hand-made machine (tests/engine_helpers.py), puts free blocks on the
lists, runs one engine function (named after its mm/page_alloc.c counterpart) and checks the
pfns, list positions, pageblock types and emitted events the kernel would produce.
References are to docs/kernel-6.1-page-allocator.md (the shared reference) sections.

Five departures these tests found (nr_pcp_free's clamp, movable_pages counting free blocks,
move_freepages_block at a zone's start, the NON_BLOCK watermark, zone_watermark_fast's boost
recheck) were fixed in the engine; their tests now guard the kernel's behaviour.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import (
    HIGHATOMIC,
    ISOLATE,
    MOVABLE,
    RECLAIMABLE,
    UNMOVABLE,
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_NORMAL,
    alloc_pages,
    counters,
    emitter,
    events,
    free_blocks,
    free_list,
    gfp_zone,
    machine,
    mark_allocated,
    one_zone_state,
    pcp_list,
    put_free,
    zone_spec,
    zonelist,
)

from replay.engine import buddy, policy
from replay.engine.follow import (
    D_DEFER,
    D_DIRECT_IRQ,
    D_DIRECT_LOOKAHEAD,
    D_NONE,
    D_PCP,
    plan_free_dispositions,
)
from replay.engine.state import (
    PG_ALLOC,
    PG_BUDDY,
    PG_PCP,
    ZONE_BOOSTED_WATERMARK,
    ZP_BOOST,
    ZP_FLAGS,
    ZP_RESERVED_HA,
    new_state,
)
from replay.trace.schema import (
    EV_ALLOC,
    EV_EXTFRAG,
    EV_FREE,
    EV_FREE_BATCHED,
    EV_PCPU_DRAIN,
    EV_ZONE_LOCKED,
    IRQF_HARDIRQ,
    IRQF_SOFTIRQ,
)

S = {name: i for i, name in enumerate(policy.SIM_COUNTER_NAMES)}
__GFP_DMA, __GFP_DMA32, __GFP_MOVABLE, __GFP_HIGHMEM = 0x1, 0x4, 0x8, 0x2
ALLOC_WMARK_LOW = policy.ALLOC_WMARK_LOW


def _ev(out, kind):
    return [e for e in events(out) if e["ev"] == kind]


# ---- __rmqueue_smallest / expand (section 2.4) -------------------------------------------------

@pytest.mark.parametrize("mt", [UNMOVABLE, MOVABLE, RECLAIMABLE])
def test_rmqueue_smallest_expand_gives_lowest_pfn_and_halves_on_requested_type(mt):
    """__rmqueue_smallest + expand(): an order-0 take from an order-3 block hands out the
    block's lowest pfn; the halves (12.., 10.., 9..) land on the requested type's lists at
    orders 2, 1, 0, whatever the pageblock's type (Movable here)."""
    st = one_zone_state()
    put_free(st, 8, 3, mt)
    out = emitter()
    page = policy.__rmqueue_smallest(st, 0, 0, mt, out, 0, 7)
    assert page == 8
    assert st.pg_state[8] != PG_BUDDY
    assert free_list(st, 3, mt) == []
    assert (free_list(st, 2, mt), free_list(st, 1, mt), free_list(st, 0, mt)) == \
        ([12], [10], [9])
    assert free_blocks(st) == {12: (2, mt), 10: (1, mt), 9: (0, mt)}
    (ev,) = events(out)
    assert (ev["ev"], ev["pfn"], ev["order"], ev["mt"], ev["refill"], ev["req"]) == \
        (EV_ZONE_LOCKED, 8, 0, mt, 1, 7)


def test_expand_puts_each_half_at_the_list_head():
    """expand(): add_to_free_list() (head), not the tail: the split halves are the next
    blocks handed out at their orders."""
    st = one_zone_state()
    for pfn, order in ((1024, 2), (1040, 1), (1050, 0)):
        put_free(st, pfn, order, MOVABLE)
    buddy.expand(st, 0, 16, 0, 3, MOVABLE)
    assert free_list(st, 2, MOVABLE) == [20, 1024]
    assert free_list(st, 1, MOVABLE) == [18, 1040]
    assert free_list(st, 0, MOVABLE) == [17, 1050]


def test_rmqueue_smallest_takes_head_of_smallest_order_and_ascending_pfns():
    """__rmqueue_smallest: the smallest order with a non-empty list of the type, its head;
    consecutive order-0 takes from one block then hand out ascending pfns."""
    st = one_zone_state()
    put_free(st, 64, 3, MOVABLE)
    put_free(st, 40, 1, MOVABLE, tail=True)
    put_free(st, 48, 1, MOVABLE, tail=True)  # list [40, 48]
    put_free(st, 32, 0, UNMOVABLE)  # another type's list is never looked at
    out = emitter()
    got = [policy.__rmqueue_smallest(st, 0, 0, MOVABLE, out, 0, 0) for _ in range(12)]
    assert got == [40, 41, 48, 49] + list(range(64, 72))
    assert policy.__rmqueue_smallest(st, 0, 0, MOVABLE, out, 0, 0) == -1
    assert free_list(st, 0, UNMOVABLE) == [32]


@pytest.mark.parametrize("order,mt,refill", [
    (0, MOVABLE, 1), (3, UNMOVABLE, 1), (9, RECLAIMABLE, 1),  # pcp orders, pcp types
    (4, MOVABLE, 0), (8, UNMOVABLE, 0), (10, MOVABLE, 0),  # not pcp orders
    (0, HIGHATOMIC, 0), (2, HIGHATOMIC, 0),  # HIGHATOMIC source
])
def test_zone_locked_percpu_refill_is_order_and_list_type(order, mt, refill):
    """trace_mm_page_alloc_zone_locked: percpu_refill = pcp_allowed_order(order) &&
    migratetype < MIGRATE_PCPTYPES (section 1.4), with the source list's type."""
    st = one_zone_state()
    put_free(st, 0, 10, mt)
    out = emitter()
    assert policy.__rmqueue_smallest(st, 0, order, mt, out, 0, 0) == 0
    (ev,) = events(out)
    assert (ev["order"], ev["mt"], ev["refill"]) == (order, mt, refill)


# ---- __free_one_page (section 3.4) --------------------------------------------------------------

def test_free_one_page_merges_with_free_buddy_whatever_its_list():
    """__free_one_page: the buddy (pfn ^ 1 << order) is PageBuddy of the same order: it is
    taken off its own list (here Unmovable) and the merged block goes on the freeing type's."""
    st = one_zone_state()
    put_free(st, 17, 0, UNMOVABLE)
    head = buddy.__free_one_page(st, 0, 16, 0, MOVABLE, False)
    assert head == 16
    assert free_blocks(st) == {16: (1, MOVABLE)}
    assert st.nr_free_pages[0] == 2


def test_free_one_page_merges_up_the_orders():
    st = one_zone_state()
    put_free(st, 17, 0, MOVABLE)
    put_free(st, 18, 1, UNMOVABLE)
    put_free(st, 20, 2, RECLAIMABLE)
    put_free(st, 24, 3, MOVABLE)
    put_free(st, 40, 3, MOVABLE)  # not a buddy of 16 at any order
    assert buddy.__free_one_page(st, 0, 16, 0, UNMOVABLE, False) == 16
    assert free_blocks(st) == {16: (4, UNMOVABLE), 40: (3, MOVABLE)}
    assert st.nr_free_pages[0] == 24


def test_free_one_page_stops_at_a_non_free_buddy():
    """No merge with an allocated buddy, a pcp page, or a free block of another order."""
    st = one_zone_state()
    mark_allocated(st, 17, 18, MOVABLE)  # 16's buddy allocated
    buddy.pcp_add(st, 0, 0, 33, 0, MOVABLE, False)  # 32's buddy on a pcp list
    put_free(st, 50, 0, MOVABLE)  # 48's order-1 buddy is 50, but free at order 0
    mark_allocated(st, 51, 52, MOVABLE)
    for pfn, order in ((16, 0), (32, 0), (48, 1)):
        buddy.__free_one_page(st, 0, pfn, order, MOVABLE, False)
    assert free_blocks(st) == {16: (0, MOVABLE), 32: (0, MOVABLE), 48: (1, MOVABLE),
                               50: (0, MOVABLE)}
    assert st.pg_state[33] == PG_PCP


def test_free_one_page_stops_at_max_order_minus_one():
    """while (order < MAX_ORDER - 1): a full cascade ends at order 10, next to a free
    order-10 buddy it may not merge with."""
    st = one_zone_state()
    for order in range(10):
        put_free(st, 1 << order, order, MOVABLE)  # 1 (o0), 2 (o1), ... 512 (o9)
    put_free(st, 1024, 10, MOVABLE)
    assert buddy.__free_one_page(st, 0, 0, 0, MOVABLE, False) == 0
    assert free_blocks(st) == {0: (10, MOVABLE), 1024: (10, MOVABLE)}
    assert st.nr_free_pages[0] == 2048


@pytest.mark.parametrize("low_pb,high_pb", [
    (HIGHATOMIC, MOVABLE), (MOVABLE, HIGHATOMIC), (ISOLATE, MOVABLE), (UNMOVABLE, ISOLATE),
])
def test_free_one_page_no_merge_across_pageblocks_of_unmergeable_types(low_pb, high_pb):
    """At order >= pageblock_order, buddies in pageblocks of different types do not merge if
    either type is not mergeable (HIGHATOMIC 3, ISOLATE 4)."""
    st = one_zone_state()
    st.pb_mt[0], st.pb_mt[1] = low_pb, high_pb
    put_free(st, 0, 9, low_pb)
    buddy.__free_one_page(st, 0, 512, 9, high_pb, False)
    assert free_blocks(st) == {0: (9, low_pb), 512: (9, high_pb)}


@pytest.mark.parametrize("low_pb,high_pb", [
    (UNMOVABLE, MOVABLE), (RECLAIMABLE, UNMOVABLE), (HIGHATOMIC, HIGHATOMIC),
])
def test_free_one_page_merges_across_pageblocks_of_mergeable_or_equal_types(low_pb, high_pb):
    st = one_zone_state()
    st.pb_mt[0], st.pb_mt[1] = low_pb, high_pb
    put_free(st, 0, 9, low_pb)
    buddy.__free_one_page(st, 0, 512, 9, high_pb, False)
    assert free_blocks(st) == {0: (10, high_pb)}


def test_free_one_page_isolate_is_not_counted_free():
    st = one_zone_state()
    st.pb_mt[0] = ISOLATE
    buddy.__free_one_page(st, 0, 0, 3, ISOLATE, False)
    assert st.nr_free_pages[0] == 0
    buddy.__free_one_page(st, 0, 512, 3, MOVABLE, False)
    assert st.nr_free_pages[0] == 8


# (existing blocks on the list, the pfn and order freed, its neighbours, expected list)
MERGE_LIKELY_CASES = {
    # order 0 at 16, buddy 17 allocated; 16's order-1 block's buddy 18 free at order 1 -> tail
    "order0_next_buddy_free_tail": (0, [100], 16, 0, [(18, 1)], [17], [100, 16]),
    "order0_next_buddy_allocated_head": (0, [100], 16, 0, [], [17, 18], [16, 100]),
    # 17 freed merges with 16 into order 1 at 16; its order-2 buddy 20 free -> tail
    "merged_order1_next_buddy_free_tail": (1, [200], 17, 0, [(16, 0), (20, 2)], [18],
                                           [200, 16]),
    "merged_order1_next_buddy_not_free_head": (1, [200], 17, 0, [(16, 0)], [18, 20],
                                               [16, 200]),
    # order 8 is the last order that can go to the tail (order < MAX_ORDER - 2)
    "order8_next_buddy_free_tail": (8, [2048], 0, 8, [(512, 9)], [256], [2048, 0]),
    # never the tail at order >= 9, even with the order-10 buddy free
    "order9_never_tail": (9, [4096], 0, 9, [(1024, 10)], [512], [0, 4096]),
}


@pytest.mark.parametrize("case", list(MERGE_LIKELY_CASES))
def test_buddy_merge_likely_decides_head_or_tail(case):
    """buddy_merge_likely(): the final block goes to the TAIL when the order+1 buddy of the
    merged block is a free order+1 block (order < 9 only), else to the HEAD."""
    order, existing, pfn, free_order, free_nb, alloc_nb, expect = MERGE_LIKELY_CASES[case]
    st = one_zone_state()
    for p in existing:
        put_free(st, p, order, MOVABLE)
        mark_allocated(st, p ^ (1 << order), (p ^ (1 << order)) + (1 << order), MOVABLE)
    for p, o in free_nb:
        put_free(st, p, o, MOVABLE)
    for p in alloc_nb:
        mark_allocated(st, p, p + (1 << max(order, free_order)), MOVABLE)
    buddy.__free_one_page(st, 0, pfn, free_order, MOVABLE, False)
    assert free_list(st, order, MOVABLE) == expect


def test_free_one_page_fpi_to_tail_forces_tail():
    st = one_zone_state()
    put_free(st, 100, 0, MOVABLE)
    buddy.__free_one_page(st, 0, 16, 0, MOVABLE, True)
    assert free_list(st, 0, MOVABLE) == [100, 16]


# ---- rmqueue_pcplist / rmqueue_bulk (section 2.3) -----------------------------------------------

@pytest.mark.parametrize("order,blocks", [(0, 63), (1, 31), (2, 15), (3, 7), (9, 2)])
def test_pcp_refill_batch_sizes_with_batch_63(order, blocks):
    """__rmqueue_pcplist: an empty list is refilled with max(batch >> order, 2) blocks (one
    zone_locked each, percpu_refill=1), appended at the tail in the order taken; the
    allocation takes the head."""
    st = one_zone_state(batch=63, high=1000)
    put_free(st, 0, 10, MOVABLE)
    out, cnt = emitter(), counters()
    page = policy.rmqueue_pcplist(st, 0, order, MOVABLE, ALLOC_WMARK_LOW, 0, out, 0, cnt)
    evs = events(out)
    assert len(evs) == blocks
    assert all(e["ev"] == EV_ZONE_LOCKED and e["refill"] == 1 and e["order"] == order
               and e["mt"] == MOVABLE for e in evs)
    taken = [e["pfn"] for e in evs]
    assert taken == [i << order for i in range(blocks)]  # expand() hands out ascending pfns
    assert page == taken[0]
    pindex = buddy.order_to_pindex(MOVABLE, order, 9)
    assert pindex == (3 * order + MOVABLE if order <= 3 else 13)
    assert pcp_list(st, pindex) == taken[1:]
    assert st.pcp_count[0, 0] == (blocks - 1) << order
    assert (cnt[S["pcp_refills"]], cnt[S["pcp_refill_blocks"]]) == (1, blocks)


def test_pcp_refill_thp_lists_split_by_movability():
    """order_to_pindex: THP (order 9) blocks go to list 12 (non-movable) or 13 (movable)."""
    st = one_zone_state(batch=63)
    put_free(st, 0, 10, UNMOVABLE)
    out, cnt = emitter(), counters()
    assert policy.rmqueue_pcplist(st, 0, 9, UNMOVABLE, ALLOC_WMARK_LOW, 0, out, 0, cnt) == 0
    assert pcp_list(st, 12) == [512] and pcp_list(st, 13) == []


@pytest.mark.parametrize("order", [0, 3])
def test_pcp_refill_batch_one_takes_one_block(order):
    """batch = pcp->batch; only if batch > 1 is it max(batch >> order, 2)."""
    st = one_zone_state(batch=1)
    put_free(st, 0, 10, MOVABLE)
    out, cnt = emitter(), counters()
    assert policy.rmqueue_pcplist(st, 0, order, MOVABLE, ALLOC_WMARK_LOW, 0, out, 0, cnt) == 0
    assert len(events(out)) == 1
    assert st.pcp_count[0, 0] == 0


def test_pcp_hit_takes_head_without_events_and_halves_free_factor():
    """rmqueue_pcplist: free_factor >>= 1 on every call; a non-empty list is not refilled."""
    st = one_zone_state(batch=63)
    put_free(st, 0, 10, MOVABLE)
    out, cnt = emitter(), counters()
    st.pcp_free_factor[0, 0] = 5
    assert policy.rmqueue_pcplist(st, 0, 0, MOVABLE, ALLOC_WMARK_LOW, 0, out, 0, cnt) == 0
    assert st.pcp_free_factor[0, 0] == 2
    n = len(events(out))
    assert policy.rmqueue_pcplist(st, 0, 0, MOVABLE, ALLOC_WMARK_LOW, 0, out, 0, cnt) == 1
    assert len(events(out)) == n
    assert st.pcp_free_factor[0, 0] == 1
    assert cnt[S["pcp_hits"]] == 1
    assert pcp_list(st, 1)[:2] == [2, 3]


def test_pcp_refill_stops_when_the_zone_runs_dry():
    st = one_zone_state(batch=63)
    put_free(st, 16, 3, MOVABLE)
    out, cnt = emitter(), counters()
    assert policy.rmqueue_pcplist(st, 0, 0, MOVABLE, ALLOC_WMARK_LOW, 0, out, 0, cnt) == 16
    assert [e["pfn"] for e in events(out)] == list(range(16, 24))
    assert pcp_list(st, 1) == list(range(17, 24))


@pytest.mark.parametrize("path", ["rmqueue_bulk", "rmqueue_buddy"])
def test_allocation_takes_its_pages_out_of_nr_free_pages_once(path):
    """rmqueue_bulk: NR_FREE_PAGES -= i << order; rmqueue_buddy: -= 1 << order
    (__rmqueue_smallest and expand() do not touch NR_FREE_PAGES). An earlier engine took the
    pages out twice (in __rmqueue_smallest and again in its callers)."""
    st = one_zone_state(batch=63)
    put_free(st, 0, 10, MOVABLE)
    out, cnt = emitter(), counters()
    if path == "rmqueue_bulk":
        policy.rmqueue_pcplist(st, 0, 0, MOVABLE, ALLOC_WMARK_LOW, 0, out, 0, cnt)
        assert st.nr_free_pages[0] == 1024 - 63
    else:
        assert policy.rmqueue_buddy(st, 0, 4, ALLOC_WMARK_LOW, MOVABLE, 0, out, 0, cnt) == 0
        assert st.nr_free_pages[0] == 1024 - 16


# ---- free_unref_page / nr_pcp_free / free_pcppages_bulk (sections 3.2, 3.3) --------------------

def _fill_pcp(st):
    """pcp lists as frees leave them (list_add at the head): returns the oldest-first pfns."""
    lists = {1: [10, 11, 12], 0: [20, 21], 4: [32, 34], 13: [512]}  # pindex -> freed in order
    for pindex, pfns in lists.items():
        order = pindex // 3 if pindex < 12 else 9
        mt = pindex % 3 if pindex < 12 else MOVABLE
        for p in pfns:
            buddy.pcp_add(st, 0, 0, p, order, mt, False)
    return lists


def test_free_pcppages_bulk_round_robin_from_the_freed_list_each_from_its_tail():
    """free_pcppages_bulk: start at the triggering page's list, drain that whole list from the
    tail (oldest first), then the next non-empty list round robin (wrapping to pindex 0)."""
    st = one_zone_state()
    _fill_pcp(st)
    out, cnt = emitter(), counters()
    policy.free_pcppages_bulk(st, 0, 10_000, 0, 1, out, 0, cnt)
    drains = _ev(out, EV_PCPU_DRAIN)
    assert [e["pfn"] for e in drains] == [10, 11, 12, 32, 34, 512, 20, 21]
    assert [e["order"] for e in drains] == [0, 0, 0, 1, 1, 9, 0, 0]
    assert [e["mt"] for e in drains] == [1, 1, 1, 1, 1, 1, 0, 0]
    assert st.pcp_count[0, 0] == 0
    assert cnt[S["pcp_drained_pages"]] == 3 + 4 + 512 + 2


@pytest.mark.parametrize("count,pindex,expect", [
    (3, 1, [10, 11, 12]),
    (4, 4, [32, 34]),
    (1, 4, [32]),  # count is in pages; one order-1 entry uses 2
    (5, 1, [10, 11, 12, 32]),  # a list is finished before the next is started
    (2, 0, [20, 21]),
    (4, 13, [512]),
    (3, 2, [32, 34]),  # empty start list: the next non-empty one
])
def test_free_pcppages_bulk_count_in_pages(count, pindex, expect):
    st = one_zone_state()
    _fill_pcp(st)
    out, cnt = emitter(), counters()
    policy.free_pcppages_bulk(st, 0, count, 0, pindex, out, 0, cnt)
    assert [e["pfn"] for e in _ev(out, EV_PCPU_DRAIN)] == expect


def test_drained_page_goes_to_its_cached_type_list_and_merges():
    """The drain frees with page->index (the type cached at free time), not the pageblock's
    current type; __free_one_page merges and the event reports the pre-merge pfn."""
    st = one_zone_state()
    _fill_pcp(st)  # 20, 21 cached Unmovable in a Movable pageblock
    out, cnt = emitter(), counters()
    policy.free_pcppages_bulk(st, 0, 2, 0, 0, out, 0, cnt)
    assert [e["pfn"] for e in _ev(out, EV_PCPU_DRAIN)] == [20, 21]
    assert free_blocks(st) == {20: (1, UNMOVABLE)}
    assert st.nr_free_pages[0] == 2


@pytest.mark.parametrize("high,batch,seq,final_ff", [
    (20, 4, [4, 8, 16, 16, 16], 2),  # clamp to high - batch; free_factor stops growing
    (1000, 2, [2, 4, 8, 16, 32, 64, 64, 64], 5),  # free_factor capped at PCP_BATCH_SCALE_MAX
    (252, 63, [63, 126, 189, 189], 2),  # the usual batch 63 with high 4 * batch
])
def test_nr_pcp_free_grows_with_free_factor_and_clamps(high, batch, seq, final_ff):
    """nr_pcp_free: batch << free_factor, free_factor++ while that is < high - batch (and
    < 5), result clamped to [batch, high - batch]."""
    st = one_zone_state()
    got = [int(policy.nr_pcp_free(st, 0, 0, high, batch, False)) for _ in seq]
    assert got == seq
    assert st.pcp_free_factor[0, 0] == final_ff


def test_nr_pcp_free_special_cases():
    st = one_zone_state()
    assert policy.nr_pcp_free(st, 0, 0, 0, 1, False) == 1  # high < batch (boot pageset)
    assert policy.nr_pcp_free(st, 0, 0, 3, 4, False) == 1
    assert st.pcp_free_factor[0, 0] == 0
    st.pcp_count[0, 0] = 37
    assert policy.nr_pcp_free(st, 0, 0, 0, 4, True) == 37  # free_high: the whole pcp


def test_nr_pcp_free_clamp_when_high_below_twice_batch():
    st = one_zone_state()
    assert policy.nr_pcp_free(st, 0, 0, 6, 4, False) == 2


def test_free_unref_page_drains_the_oldest_pages_when_count_reaches_high():
    """free_unref_page_commit: list_add at the head; when pcp->count >= high, drain
    nr_pcp_free() pages from this list's tail (the oldest frees)."""
    st = one_zone_state(high=20, batch=4)
    out, cnt = emitter(), counters()
    freed = []
    for p in range(0, 40, 2):  # 20 order-0 frees of non-buddy pages
        policy.free_unref_page(st, 0, p, 0, 0, False, out, 0, cnt)
        freed.append(p)
    assert [e["pfn"] for e in _ev(out, EV_PCPU_DRAIN)] == freed[:4]
    assert st.pcp_count[0, 0] == 16 and st.pcp_free_factor[0, 0] == 1
    for p in range(40, 48, 2):  # 4 more: count 20 again, now 8 drained
        policy.free_unref_page(st, 0, p, 0, 0, False, out, 0, cnt)
        freed.append(p)
    assert [e["pfn"] for e in _ev(out, EV_PCPU_DRAIN)] == freed[:12]
    assert pcp_list(st, MOVABLE) == freed[12:][::-1]
    assert st.pcp_count[0, 0] == 12


@pytest.mark.parametrize("order,ff,drains_all", [
    (1, 1, True), (3, 2, True),  # free_high: orders 1-3 with free_factor > 0
    (1, 0, False), (0, 1, False), (9, 1, False),
])
def test_free_high_drains_every_list(order, ff, drains_all):
    """free_high = free_factor && 1 <= order <= PAGE_ALLOC_COSTLY_ORDER: high becomes 0 and
    nr_pcp_free returns pcp->count, so every list of this pcp is flushed."""
    st = one_zone_state(high=1000, batch=4)
    for p in (100, 102, 104, 106, 108):
        buddy.pcp_add(st, 0, 0, p, 0, MOVABLE, False)
    st.pcp_free_factor[0, 0] = ff
    out, cnt = emitter(), counters()
    page = 1024 if order == 9 else 64
    policy.free_unref_page(st, 0, page, order, 0, False, out, 0, cnt)
    drained = [e["pfn"] for e in _ev(out, EV_PCPU_DRAIN)]
    if drains_all:
        assert sorted(drained) == [64, 100, 102, 104, 106, 108]
        assert st.pcp_count[0, 0] == 0
    else:
        assert drained == []
        assert st.pcp_count[0, 0] == 5 + (1 << order)


def test_free_unref_page_isolate_and_trylock_failure_go_to_buddy():
    st = one_zone_state(high=1000, batch=4)
    st.pb_mt[1] = ISOLATE
    out, cnt = emitter(), counters()
    policy.free_unref_page(st, 0, 512, 0, 0, False, out, 0, cnt)  # ISOLATE pageblock
    policy.free_unref_page(st, 0, 16, 0, 0, True, out, 0, cnt)  # pcp trylock failed
    assert free_blocks(st) == {512: (0, ISOLATE), 16: (0, MOVABLE)}
    assert st.pcp_count[0, 0] == 0


# ---- __rmqueue_fallback / steal_suitable_fallback (section 2.5) --------------------------------

def _fallback(st, order, start_mt, alloc_flags=0):
    out, cnt = emitter(), counters()
    ok = policy.__rmqueue_fallback(st, 0, order, start_mt, alloc_flags, out, 0, 0, cnt)
    return ok, events(out), cnt


@pytest.mark.parametrize("start_mt,first,second", [
    (UNMOVABLE, RECLAIMABLE, MOVABLE),
    (MOVABLE, RECLAIMABLE, UNMOVABLE),
    (RECLAIMABLE, UNMOVABLE, MOVABLE),
])
def test_fallback_type_order(start_mt, first, second):
    """fallbacks[]: the first type in the start type's row with a free block at the order."""
    st = one_zone_state()
    st.pb_mt[2], st.pb_mt[4] = first, second
    put_free(st, 1024, 9, first)
    put_free(st, 2048, 9, second)
    ok, (ev,), _ = _fallback(st, 0, start_mt)
    assert ok and (ev["pfn"], ev["fmt"], ev["ford"]) == (1024, first, 9)

    st = one_zone_state()
    st.pb_mt[4] = second
    put_free(st, 2048, 9, second)
    ok, (ev,), _ = _fallback(st, 0, start_mt)
    assert ok and (ev["pfn"], ev["fmt"]) == (2048, second)

    # the order is scanned from MAX_ORDER - 1 down first: a larger block of the second type
    # beats a smaller one of the first
    st = one_zone_state()
    st.pb_mt[2], st.pb_mt[4], st.pb_mt[5] = first, second, second
    put_free(st, 1024, 9, first)
    put_free(st, 2048, 10, second)
    ok, (ev,), _ = _fallback(st, 0, start_mt)
    assert ok and (ev["pfn"], ev["fmt"], ev["ford"]) == (2048, second, 10)


@pytest.mark.parametrize("start_mt", [UNMOVABLE, MOVABLE, RECLAIMABLE])
def test_fallback_never_from_highatomic_or_isolate(start_mt):
    st = one_zone_state()
    st.pb_mt[2], st.pb_mt[4] = HIGHATOMIC, ISOLATE
    put_free(st, 1024, 9, HIGHATOMIC)
    put_free(st, 2048, 9, ISOLATE)
    ok, evs, _ = _fallback(st, 0, start_mt)
    assert not ok and evs == []


@pytest.mark.parametrize("start_mt", [UNMOVABLE, RECLAIMABLE])
def test_fallback_takes_the_largest_block_for_unmovable_and_reclaimable(start_mt):
    """can_steal_fallback is always true for these: scan from order 10 down, take the first
    (largest) block, whole-block semantics even below order 4."""
    st = one_zone_state()
    put_free(st, 0, 2, MOVABLE)
    put_free(st, 512, 4, MOVABLE)
    put_free(st, 1024, 6, MOVABLE)
    put_free(st, 1600, 3, MOVABLE)
    ok, (ev,), _ = _fallback(st, 0, start_mt)
    assert ok and (ev["pfn"], ev["ford"], ev["fmt"], ev["mt"], ev["order"]) == \
        (1024, 6, MOVABLE, start_mt, 0)


def test_movable_fallback_below_order_4_takes_the_smallest_block_single():
    """!can_steal && start_mt == MOVABLE && current_order > order: rescan upwards from the
    request's order and take the smallest fallback block; only that block moves (tail of
    the Movable list) and its pageblock keeps its type."""
    st = one_zone_state()
    st.pb_mt[0:3] = UNMOVABLE
    put_free(st, 8, 1, UNMOVABLE)
    put_free(st, 520, 2, UNMOVABLE)
    put_free(st, 1024, 3, UNMOVABLE)
    put_free(st, 12, 2, UNMOVABLE)  # same pageblock as 8: stays (no whole-block move)
    ok, (ev,), cnt = _fallback(st, 0, MOVABLE)
    assert ok and (ev["pfn"], ev["ford"], ev["fmt"], ev["chown"]) == (8, 1, UNMOVABLE, 0)
    assert free_list(st, 1, MOVABLE) == [8]
    assert free_list(st, 2, UNMOVABLE) == [12, 520]
    assert free_list(st, 3, UNMOVABLE) == [1024]
    assert list(st.pb_mt[0:3]) == [UNMOVABLE] * 3
    assert cnt[S["fragmenting_fallbacks"]] == 1 and cnt[S["ownership_changes"]] == 0
    # __rmqueue then takes it from the Movable list: pfn 8, the half 9 stays Movable
    out, cnt = emitter(), counters()
    assert policy.__rmqueue(st, 0, 0, MOVABLE, 0, policy.RMQUEUE_NORMAL, out, 0, 0, cnt)[0] == 8
    assert free_list(st, 0, MOVABLE) == [9]


def test_movable_fallback_order_4_or_more_takes_the_largest_whole_block():
    st = one_zone_state()
    st.pb_mt[0:3] = UNMOVABLE
    put_free(st, 8, 1, UNMOVABLE)
    put_free(st, 512, 4, UNMOVABLE)
    put_free(st, 544, 2, UNMOVABLE)  # same pageblock: moved with it
    ok, (ev,), _ = _fallback(st, 0, MOVABLE)
    assert ok and (ev["pfn"], ev["ford"]) == (512, 4)
    assert free_list(st, 4, MOVABLE) == [512] and free_list(st, 2, MOVABLE) == [544]
    assert free_list(st, 1, UNMOVABLE) == [8]


def _pageblock1(st, free, pb_type, list_type):
    """Pageblock 1 (pfns 512-1023) of type pb_type with these free blocks on list_type."""
    st.pb_mt[1] = pb_type
    for pfn, order in free:
        put_free(st, pfn, order, list_type, tail=True)


MIXED_FREE = [(513, 0), (514, 1), (520, 3), (576, 6), (704, 6)]  # 139 pages
MIXED_ALLOC = [(512, 513), (516, 520), (528, 576), (640, 704), (768, 1024)]  # 373 pages


def test_whole_pageblock_steal_moves_every_free_block_to_the_tail():
    """move_freepages_block(): every free block of the pageblock, in ascending pfn order, is
    list_move_tail()ed to the start type's list of its order."""
    st = one_zone_state()
    st.pb_mt[3], st.pb_mt[4] = UNMOVABLE, UNMOVABLE
    put_free(st, 1536, 6, UNMOVABLE)
    put_free(st, 2048, 0, UNMOVABLE)
    _pageblock1(st, MIXED_FREE, MOVABLE, MOVABLE)
    for lo, hi in MIXED_ALLOC:
        mark_allocated(st, lo, hi, UNMOVABLE)
    ok, (ev,), _ = _fallback(st, 0, UNMOVABLE)
    assert ok and (ev["pfn"], ev["ford"]) == (576, 6)
    assert free_list(st, 6, UNMOVABLE) == [1536, 576, 704]
    assert free_list(st, 0, UNMOVABLE) == [2048, 513]
    assert free_list(st, 1, UNMOVABLE) == [514]
    assert free_list(st, 3, UNMOVABLE) == [520]
    assert all(free_list(st, o, MOVABLE) == [] for o in range(11))
    assert st.pb_mt[1] == UNMOVABLE and ev["chown"] == 1


# start type, pageblock type, free blocks (on the pageblock type's list), movable allocated
# ranges, other allocated ranges, re-typed?
THRESHOLD_CASES = {
    # Unmovable from Movable: alike = 512 - free - movable, so re-type iff movable <= 256
    "unmovable_from_movable_256_movable": (UNMOVABLE, MOVABLE, MIXED_FREE, [(768, 1024)],
                                           MIXED_ALLOC[:4], True),
    "unmovable_from_movable_257_movable": (UNMOVABLE, MOVABLE, MIXED_FREE,
                                           [(768, 1024), (512, 513)], MIXED_ALLOC[1:4], False),
    # Movable from Unmovable: alike = movable pages; 64 free + 192 movable = 256
    "movable_from_unmovable_256": (MOVABLE, UNMOVABLE, [(576, 6)], [(768, 960)],
                                   [(512, 576), (640, 768), (960, 1024)], True),
    "movable_from_unmovable_255": (MOVABLE, UNMOVABLE, [(576, 6)], [(768, 959)],
                                   [(512, 576), (640, 768), (959, 1024)], False),
    # Reclaimable from Unmovable: alike = 0, so only free pages count (movable pages do not)
    "reclaimable_from_unmovable_256_free": (
        RECLAIMABLE, UNMOVABLE,
        [(512, 7), (640, 6), (704, 5), (736, 4), (752, 3), (760, 2), (764, 1), (766, 0),
         (768, 0)], [(800, 1024)], [(767, 768), (769, 800)], True),
    "reclaimable_from_unmovable_255_free": (
        RECLAIMABLE, UNMOVABLE,
        [(512, 7), (640, 6), (704, 5), (736, 4), (752, 3), (760, 2), (764, 1), (766, 0)],
        [(800, 1024)], [(767, 800)], False),
}


@pytest.mark.parametrize("case", list(THRESHOLD_CASES))
def test_steal_retypes_pageblock_iff_free_plus_alike_reach_half(case):
    """steal_suitable_fallback: re-type iff free_pages + alike_pages >= 256
    (1 << (pageblock_order - 1)); the free blocks move to the start type's lists either way.
    The extfrag event's change_ownership is the pageblock type == alloc type after the steal;
    fragmenting (fallback_order < pageblock_order) is counted."""
    start, pb_type, free, movable, other, retype = THRESHOLD_CASES[case]
    st = one_zone_state()
    _pageblock1(st, free, pb_type, pb_type)
    for lo, hi in movable:
        mark_allocated(st, lo, hi, MOVABLE)
    for lo, hi in other:
        mark_allocated(st, lo, hi, UNMOVABLE)
    pages = sum(1 << o for _, o in free) + sum(hi - lo for lo, hi in movable + other)
    assert pages == 512, "the layout must cover the pageblock exactly"
    ok, (ev,), cnt = _fallback(st, 0, start)
    assert ok
    assert st.pb_mt[1] == (start if retype else pb_type)
    assert ev["chown"] == int(retype) and cnt[S["ownership_changes"]] == int(retype)
    assert ev["ford"] < 9 and cnt[S["fragmenting_fallbacks"]] == 1
    assert free_blocks(st) == {p: (o, start) for p, o in free}


@pytest.mark.parametrize("order", [9, 10])
def test_steal_of_pageblock_order_block_retypes_every_covered_pageblock(order):
    """current_order >= pageblock_order: change_pageblock_range() re-types all 2^(o-9)
    pageblocks, the block moves to the start type's list tail; no watermark boost."""
    st = new_state(machine(zone_spec(pages=8192, whigh=100)))
    st.pb_mt[0:2] = UNMOVABLE
    put_free(st, 0, 10, UNMOVABLE)
    put_free(st, 2048, order, MOVABLE)
    ok, (ev,), cnt = _fallback(st, 0, UNMOVABLE)
    assert ok and (ev["pfn"], ev["ford"], ev["chown"]) == (2048, order, 1)
    covered = 1 << (order - 9)
    assert list(st.pb_mt[4:4 + covered]) == [UNMOVABLE] * covered
    assert st.pb_mt[4 + covered] == MOVABLE
    assert free_list(st, order, UNMOVABLE)[-1] == 2048
    assert cnt[S["fragmenting_fallbacks"]] == 0
    assert st.zone_param[0, ZP_BOOST] == 0


def test_steal_from_highatomic_pageblock_moves_only_the_block():
    st = one_zone_state()
    st.pb_mt[1] = HIGHATOMIC
    put_free(st, 576, 6, MOVABLE)
    put_free(st, 640, 5, MOVABLE)
    ok, (ev,), _ = _fallback(st, 0, UNMOVABLE)
    assert ok and ev["pfn"] == 576 and ev["chown"] == 0
    assert st.pb_mt[1] == HIGHATOMIC
    assert free_blocks(st) == {576: (6, UNMOVABLE), 640: (5, MOVABLE)}


def test_fragmenting_steal_boosts_the_watermark():
    """boost_watermark(): boost = min(boost + 512, max(512, high * 15000 / 10000)); with
    ALLOC_KSWAPD, ZONE_BOOSTED_WATERMARK is set."""
    st = new_state(machine(zone_spec(pages=8192, whigh=100)))
    put_free(st, 576, 6, MOVABLE)
    put_free(st, 1600, 6, MOVABLE)
    _fallback(st, 0, UNMOVABLE, 0)
    assert st.zone_param[0, ZP_BOOST] == 512
    assert not st.zone_param[0, ZP_FLAGS] & ZONE_BOOSTED_WATERMARK
    _fallback(st, 0, UNMOVABLE, policy.ALLOC_KSWAPD)
    assert st.zone_param[0, ZP_BOOST] == 512  # capped at max(512, 150)
    assert st.zone_param[0, ZP_FLAGS] & ZONE_BOOSTED_WATERMARK


def test_steal_movable_pages_are_not_counted_inside_free_blocks():
    st = one_zone_state()
    st.pb_mt[1] = UNMOVABLE
    put_free(st, 576, 5, UNMOVABLE)
    mark_allocated(st, 608, 640, MOVABLE)  # a Movable request's block (after a fallback)
    st.pg_state[608] = 0  # freed as free_the_page does: __free_one_page with the pb type
    buddy.__free_one_page(st, 0, 608, 5, UNMOVABLE, False)
    assert free_blocks(st) == {576: (6, UNMOVABLE)}
    mark_allocated(st, 768, 959, MOVABLE)  # 191 movable pages
    for lo, hi in ((512, 576), (640, 768), (959, 1024)):
        mark_allocated(st, lo, hi, UNMOVABLE)
    ok, (ev,), _ = _fallback(st, 0, MOVABLE)
    assert ok and (ev["pfn"], ev["ford"]) == (576, 6)
    # 64 free + 191 movable = 255 < 256: the pageblock stays Unmovable
    assert st.pb_mt[1] == UNMOVABLE and ev["chown"] == 0


def test_whole_block_steal_in_a_zone_not_pageblock_aligned():
    """DMA starts at pfn 1: pageblock 0 is only partly in the zone."""
    st = new_state(machine(zone_spec(ZONE_DMA, 1, 4095)))
    put_free(st, 1, 0, MOVABLE)
    put_free(st, 2, 1, MOVABLE)
    put_free(st, 256, 8, MOVABLE)
    mark_allocated(st, 4, 256, UNMOVABLE)
    ok, (ev,), _ = _fallback(st, 0, UNMOVABLE)
    assert ok and (ev["pfn"], ev["ford"]) == (256, 8)
    # kernel: move_freepages(256..511) moves 256 free pages, alike = 512 - 256 >= 256
    assert st.pb_mt[0] == UNMOVABLE and ev["chown"] == 1
    assert free_blocks(st) == {1: (0, MOVABLE), 2: (1, MOVABLE), 256: (8, UNMOVABLE)}


# ---- get_page_from_freelist: ALLOC_NOFRAGMENT (section 2.1) ------------------------------------

def _dma32_normal(**normal_kw):
    """z0 = DMA32 (pfns 0-4095), z1 = Normal (4096-8191), watermarks 0, batch 1."""
    m = machine(zone_spec(ZONE_DMA32, 0, 4096), zone_spec(ZONE_NORMAL, 4096, 4096, **normal_kw))
    st = new_state(m)
    st.pb_mt[8:10] = UNMOVABLE
    return st


def test_nofragment_normal_request_uses_dma32_own_lists_before_fragmenting_normal():
    st = _dma32_normal()
    for p in (4096, 4112, 4128):
        put_free(st, p, 3, UNMOVABLE)
    put_free(st, 0, 10, MOVABLE)
    out, cnt = emitter(), counters()
    page, z = alloc_pages(st, __GFP_MOVABLE, 0, MOVABLE, out, cnt)
    assert (page, z) == (0, 0)
    assert _ev(out, EV_EXTFRAG) == []
    assert free_list(st, 3, UNMOVABLE, z=1) == [4128, 4112, 4096]
    assert cnt[S["nofragment_retries"]] == 0


def test_nofragment_dropped_when_every_zone_fails():
    """With nothing in DMA32, the second pass without ALLOC_NOFRAGMENT fragments Normal."""
    st = _dma32_normal()
    put_free(st, 4096, 3, UNMOVABLE)
    out, cnt = emitter(), counters()
    page, z = alloc_pages(st, __GFP_MOVABLE, 0, MOVABLE, out, cnt)
    assert (page, z) == (4096, 1)
    (ev,) = _ev(out, EV_EXTFRAG)
    assert (ev["pfn"], ev["ford"], ev["fmt"]) == (4096, 3, UNMOVABLE)
    assert cnt[S["nofragment_retries"]] == 1


def test_nofragment_still_allows_whole_pageblock_steals_in_normal():
    """ALLOC_NOFRAGMENT: min_order = pageblock_order, so an order-9 fallback in Normal is
    taken before DMA32 is tried."""
    st = _dma32_normal()
    put_free(st, 4608, 9, UNMOVABLE)
    put_free(st, 0, 10, MOVABLE)
    out, cnt = emitter(), counters()
    page, z = alloc_pages(st, __GFP_MOVABLE, 0, MOVABLE, out, cnt)
    assert (page, z) == (4608, 1)
    (ev,) = _ev(out, EV_EXTFRAG)
    assert (ev["pfn"], ev["ford"], ev["chown"]) == (4608, 9, 1)
    assert st.pb_mt[9] == MOVABLE
    assert free_list(st, 10, MOVABLE, z=0) == [0]


def test_no_nofragment_when_the_preferred_zone_is_dma32():
    st = _dma32_normal()
    st.pb_mt[0] = UNMOVABLE
    put_free(st, 16, 3, UNMOVABLE)
    put_free(st, 4096, 10, MOVABLE)
    out, cnt = emitter(), counters()
    page, z = alloc_pages(st, __GFP_DMA32 | __GFP_MOVABLE, 0, MOVABLE, out, cnt)
    assert (page, z) == (16, 0)
    (ev,) = _ev(out, EV_EXTFRAG)
    assert (ev["pfn"], ev["ford"]) == (16, 3)
    assert cnt[S["nofragment_retries"]] == 0


# ---- watermarks (section 2.2) --------------------------------------------------------------------

def test_zone_watermark_ok_order0_fails_at_mark_plus_lowmem_reserve():
    """free <= min + lowmem_reserve[highest_zoneidx] fails; one page more passes."""
    st = one_zone_state()
    st.lowmem_reserve[0, ZONE_NORMAL] = 50
    ok = policy.zone_watermark_ok
    st.nr_free_pages[0] = 150
    assert not ok(st, 0, 0, 100, ZONE_NORMAL, 0)
    assert ok(st, 0, 0, 100, ZONE_DMA32, 0)
    st.nr_free_pages[0] = 151
    assert ok(st, 0, 0, 100, ZONE_NORMAL, 0)
    st.nr_free_pages[0] = 100
    assert not ok(st, 0, 0, 100, ZONE_DMA32, 0)


def test_zone_watermark_ok_high_order_needs_a_suitable_block():
    """order > 0: free - (2^order - 1) above the mark, and a free block of order >= order on
    an Unmovable/Movable/Reclaimable list (HIGHATOMIC only with ALLOC_HIGHATOMIC/OOM)."""
    ok = policy.zone_watermark_ok
    st = one_zone_state()
    for p in range(0, 64, 8):
        put_free(st, p, 2, MOVABLE)  # plenty of pages, nothing of order 3
    st.nr_free_pages[0] = 1000
    assert not ok(st, 0, 3, 100, ZONE_DMA32, 0)
    put_free(st, 1024, 3, ISOLATE)
    put_free(st, 2048, 4, HIGHATOMIC)
    st.nr_free_pages[0] = 1000
    assert not ok(st, 0, 3, 100, ZONE_DMA32, 0)
    assert ok(st, 0, 3, 100, ZONE_DMA32, policy.ALLOC_HIGHATOMIC)
    assert ok(st, 0, 3, 100, ZONE_DMA32, policy.ALLOC_OOM)
    put_free(st, 4096, 5, RECLAIMABLE)
    st.nr_free_pages[0] = 107  # 107 - 7 = 100: at the mark
    assert not ok(st, 0, 3, 100, ZONE_DMA32, 0)
    st.nr_free_pages[0] = 108
    assert ok(st, 0, 3, 100, ZONE_DMA32, 0)


def test_zone_watermark_ok_reserves():
    """__zone_watermark_unusable_free subtracts nr_reserved_highatomic unless ALLOC_RESERVES;
    MIN_RESERVE halves min, MIN_RESERVE|NON_BLOCK takes a further quarter, OOM halves."""
    ok = policy.zone_watermark_ok
    st = one_zone_state()
    cases = [  # (flags, highest failing free)
        (0, 100),
        (policy.ALLOC_MIN_RESERVE, 50),
        (policy.ALLOC_MIN_RESERVE | policy.ALLOC_NON_BLOCK, 38),  # 50 - 50 // 4
        (policy.ALLOC_OOM, 50),
        (policy.ALLOC_MIN_RESERVE | policy.ALLOC_OOM, 25),
    ]
    for flags, fail_at in cases:
        st.nr_free_pages[0] = fail_at
        assert not ok(st, 0, 0, 100, ZONE_DMA32, flags), flags
        st.nr_free_pages[0] = fail_at + 1
        assert ok(st, 0, 0, 100, ZONE_DMA32, flags), flags
    st.zone_param[0, ZP_RESERVED_HA] = 512
    st.nr_free_pages[0] = 600
    assert not ok(st, 0, 0, 100, ZONE_DMA32, 0)
    assert ok(st, 0, 0, 100, ZONE_DMA32, policy.ALLOC_MIN_RESERVE)


def test_zone_watermark_ok_non_block_alone_gets_no_reserve():
    st = one_zone_state()
    st.nr_free_pages[0] = 100
    assert not policy.zone_watermark_ok(st, 0, 0, 100, ZONE_DMA32, policy.ALLOC_NON_BLOCK)


def test_alloc_falls_to_the_next_zone_below_the_watermark():
    """get_page_from_freelist: a zone failing zone_watermark_fast is skipped."""
    st = _dma32_normal(wmin=2000, wlow=2000, whigh=2000)
    put_free(st, 4096, 10, MOVABLE)
    put_free(st, 0, 10, MOVABLE)
    out, cnt = emitter(), counters()
    page, z = alloc_pages(st, __GFP_MOVABLE, 0, MOVABLE, out, cnt)
    assert (page, z) == (0, 0)
    assert free_list(st, 10, MOVABLE, z=1) == [4096]


GFP_ATOMIC = 0xA20  # __GFP_HIGH | __GFP_ATOMIC | __GFP_KSWAPD_RECLAIM


def test_zone_watermark_fast_ignores_boost_for_order0_min_reserve_at_min():
    st = new_state(machine(zone_spec(pages=8192, wmin=100, wlow=150, whigh=200, batch=1)))
    st.zone_param[0, ZP_BOOST] = 512
    put_free(st, 0, 7, MOVABLE)  # 128 free: under min + boost, over min / 2 - min / 8
    out, cnt = emitter(), counters()
    page, z = alloc_pages(st, GFP_ATOMIC, 0, UNMOVABLE, out, cnt)
    assert page >= 0
    assert cnt[S["min_watermark_allocs"]] == 1 and cnt[S["no_watermark_allocs"]] == 0


def test_highatomic_reserve_after_a_high_order_atomic_allocation():
    """reserve_highatomic_pageblock(): after an ALLOC_HIGHATOMIC success (slow path, order > 0,
    __GFP_HIGH, no direct reclaim) the page's pageblock becomes HIGHATOMIC, its free blocks
    move to the HIGHATOMIC lists and nr_reserved_highatomic grows by a pageblock, up to
    managed / 100 + pageblock_nr_pages."""
    st = new_state(machine(zone_spec(pages=8192, wmin=100, wlow=5000, whigh=6000, batch=1)))
    st.pb_mt[0:4] = UNMOVABLE
    for pfn in (0, 512, 1024, 1536):
        put_free(st, pfn, 9, UNMOVABLE, tail=True)
    out, cnt = emitter(), counters()
    page, z = alloc_pages(st, GFP_ATOMIC, 1, UNMOVABLE, out, cnt)  # fast path fails (low)
    assert (page, z) == (0, 0)
    assert st.pb_mt[0] == HIGHATOMIC and list(st.pb_mt[1:4]) == [UNMOVABLE] * 3
    assert st.zone_param[0, ZP_RESERVED_HA] == 512
    assert {p: ob for p, ob in free_blocks(st).items() if p < 512} == \
        {256: (8, HIGHATOMIC), 128: (7, HIGHATOMIC), 64: (6, HIGHATOMIC),
         32: (5, HIGHATOMIC), 16: (4, HIGHATOMIC), 8: (3, HIGHATOMIC), 4: (2, HIGHATOMIC),
         2: (1, HIGHATOMIC)}
    assert cnt[S["highatomic_reserves"]] == 1
    # 8192 / 100 + 512 = 593: a second pageblock still fits, a third does not
    for _ in range(2):
        alloc_pages(st, GFP_ATOMIC, 1, UNMOVABLE, out, cnt)
    assert st.zone_param[0, ZP_RESERVED_HA] == 1024
    assert list(st.pb_mt[0:4]) == [HIGHATOMIC, HIGHATOMIC, UNMOVABLE, UNMOVABLE]


# ---- gfp_zone and the zonelist (section 2.1) -------------------------------------------------

@pytest.mark.parametrize("gfp,zone", [
    (0, ZONE_NORMAL), (__GFP_MOVABLE, ZONE_NORMAL), (__GFP_HIGHMEM, ZONE_NORMAL),
    (__GFP_DMA, ZONE_DMA), (__GFP_DMA | __GFP_MOVABLE, ZONE_DMA),
    (__GFP_DMA32, ZONE_DMA32), (__GFP_DMA32 | __GFP_MOVABLE, ZONE_DMA32),
    (__GFP_HIGHMEM | __GFP_MOVABLE, 3), (0xcc0, ZONE_NORMAL), (0x100cca, 3),
])
def test_gfp_zone(gfp, zone):
    """gfp_zone() on x86_64 (GFP_ZONE_TABLE): DMA -> 0, DMA32 -> 1, none or HIGHMEM -> Normal,
    HIGHMEM|MOVABLE -> Movable."""
    assert gfp_zone(one_zone_state(), gfp) == zone


def _three_zones():
    """z0 = DMA (0-1023), z1 = DMA32 (1024-4095), z2 = Normal (4096-8191)."""
    return new_state(machine(zone_spec(ZONE_DMA, 0, 1024), zone_spec(ZONE_DMA32, 1024, 3072),
                             zone_spec(ZONE_NORMAL, 4096, 4096)))


def test_zonelist_highest_zone_first():
    st = _three_zones()
    assert zonelist(st, ZONE_DMA) == [0]
    assert zonelist(st, ZONE_DMA32) == [1, 0]
    assert zonelist(st, ZONE_NORMAL) == [2, 1, 0]


@pytest.mark.parametrize("gfp,free_zones,expect_zone", [
    (__GFP_DMA, (0, 1, 2), 0),
    (__GFP_DMA, (1, 2), -1),  # GFP_DMA may use DMA only
    (__GFP_DMA32, (0, 1, 2), 1),
    (__GFP_DMA32, (0, 2), 0),  # DMA32 then DMA, never Normal
    (__GFP_DMA32, (2,), -1),
    (0, (0, 1, 2), 2),
    (0, (0, 1), 1),  # Normal then DMA32
    (0, (0,), 0),  # then DMA
])
def test_alloc_zone_fallback_per_gfp_zone_modifier(gfp, free_zones, expect_zone):
    st = _three_zones()
    start = {0: 0, 1: 1024, 2: 4096}
    for z in free_zones:
        put_free(st, start[z], 10, MOVABLE)
    out, cnt = emitter(), counters()
    page, z = alloc_pages(st, gfp | __GFP_MOVABLE, 0, MOVABLE, out, cnt)
    assert z == expect_zone
    assert page == (start[z] if z >= 0 else -1)


# ---- plan_free_dispositions (reconstruct; section 8) --------------------------------------------

def _plan(rows, pageblock_order=9):
    """rows: (event, pfn, order[, irq_flags, preempt_depth])."""
    ev = np.array([r[0] for r in rows], np.int64)
    pfn = np.array([r[1] for r in rows], np.int64)
    order = np.array([r[2] for r in rows], np.int64)
    irq = np.array([r[3] if len(r) > 3 else 0 for r in rows], np.int64)
    pre = np.array([r[4] if len(r) > 4 else 1 for r in rows], np.int64)
    return [int(d) for d in plan_free_dispositions(ev, pfn, order, irq, pre, pageblock_order)]


def test_free_followed_by_free_batched_is_deferred():
    """free_unref_page_list: mm_page_free in the first loop, mm_page_free_batched when the
    page reaches the pcp list in the second: the free is applied at the batched event."""
    d = _plan([(EV_FREE, 10, 0), (EV_FREE, 11, 0), (EV_FREE_BATCHED, 10, 0),
               (EV_FREE_BATCHED, 11, 0)])
    assert d == [D_DEFER, D_DEFER, D_PCP, D_PCP]


def test_pcp_order_free_next_taken_by_zone_locked_is_direct():
    """The page's next event is a take from buddy: the pcp trylock failed and it went to
    buddy directly (free_one_page), whatever the irq context."""
    d = _plan([(EV_FREE, 20, 0), (EV_ALLOC, 21, 0), (EV_ZONE_LOCKED, 21, 0),
               (EV_ZONE_LOCKED, 20, 0)])
    assert d[0] == D_DIRECT_LOOKAHEAD
    d = _plan([(EV_FREE, 20, 0), (EV_FREE_BATCHED, 20, 0), (EV_ZONE_LOCKED, 20, 0)])
    assert d[:2] == [D_DEFER, D_DIRECT_LOOKAHEAD]
    d = _plan([(EV_FREE, 24, 3, IRQF_SOFTIRQ, 1), (EV_ZONE_LOCKED, 24, 3)])
    assert d[0] == D_DIRECT_LOOKAHEAD


def test_pcp_order_free_next_drained_or_reallocated_went_to_pcp():
    d = _plan([(EV_FREE, 30, 0, IRQF_SOFTIRQ, 3), (EV_PCPU_DRAIN, 30, 0)])
    assert d[0] == D_PCP  # lookahead decides before the irq rule
    d = _plan([(EV_FREE, 31, 0), (EV_ALLOC, 31, 0)])
    assert d[0] == D_PCP


@pytest.mark.parametrize("irq,preempt,expect", [
    (IRQF_SOFTIRQ, 3, D_DIRECT_IRQ),
    (IRQF_HARDIRQ, 4, D_DIRECT_IRQ),
    (IRQF_SOFTIRQ, 2, D_PCP),
    (0, 3, D_PCP),
])
def test_irq_free_without_later_event_uses_preempt_depth(irq, preempt, expect):
    """No later event: a pcp-order free in hard/softirq context with preempt depth >= 3
    went straight to buddy; otherwise to the pcp list."""
    d = _plan([(EV_FREE, 40, 0, irq, preempt), (EV_ZONE_LOCKED, 41, 0)])
    assert d[0] == expect


@pytest.mark.parametrize("order", [4, 5, 8, 10])
def test_non_pcp_order_frees_are_direct(order):
    """__free_pages_ok: orders 4-8 and 10 always go straight to buddy, even if a (bogus) drain
    of the pfn follows; follow_events frees any disposition but these three directly."""
    d = _plan([(EV_FREE, 1024, order), (EV_PCPU_DRAIN, 1024, order)])
    assert d[0] not in (D_NONE, D_PCP, D_DEFER)


@pytest.mark.parametrize("order", [0, 1, 3, 9])
def test_pcp_order_frees_go_to_pcp(order):
    d = _plan([(EV_FREE, 1024, order)])
    assert d[0] == D_PCP


def test_allocated_state_marks():
    """Sanity of the helpers the rules rely on: mark_allocated covers the range exactly."""
    st = one_zone_state()
    mark_allocated(st, 3, 17, MOVABLE)
    heads = [p for p in range(32) if st.pg_state[p] == PG_ALLOC]
    assert heads == [3, 4, 8, 16]
    assert [int(st.pg_order[p]) for p in heads] == [0, 2, 3, 0]
