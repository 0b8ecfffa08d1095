"""Compaction on the model's pages (mm/compaction.c and mm/page_alloc.c, 6.1).

The free scanner (`isolate_freepages_block`, with its stride and compound skipping), the
untraced fast searches (`fast_isolate_freepages` and the free-list rotations of
`fast_find_migrateblock`), `__isolate_free_page`, the skip-hint reset that sets
`compact_init_free_pfn`, and `compaction_capture`. Isolated targets become allocated order-0
pages (split_map_pages): they are on no free or pcp list, and come back through traced frees.

A compaction run's `compact_control` is one row of the `cc` table (CC_* columns); a zone's
compaction fields one row of `zc` (ZC_*). Reconstruct drives these functions from the trace's
compaction events (follow_compaction.py). docs/kernel-6.1-compaction.md is the specification.
"""

from __future__ import annotations

import numpy as np

from replay.engine.buddy import (
    MIGRATE_HIGHATOMIC,
    MIGRATE_MOVABLE,
    __free_one_page,
    move_freepages_pageblock,
    take_free_block,
)
from replay.engine.jit import njit
from replay.engine.policy import zone_watermark_ok
from replay.engine.profile import CFG_COMPACTION
from replay.engine.state import (
    CFG_PAGEBLOCK_ORDER,
    NIL,
    PG_ALLOC,
    PG_BUDDY,
    ZP_END,
    ZP_MIN,
    ZP_START,
)

COMPACT_CLUSTER_MAX = 32
PAGE_ALLOC_COSTLY_ORDER = 3
MODE_ASYNC, MODE_SYNC_LIGHT, MODE_SYNC = 0, 1, 2
K_RUNS = 16  # concurrent compaction runs tracked (one per compacting task)
# pg_target values: a target the trace showed isolated, or one inferred (2 + the order of the
# block the untraced fast search took, so the whole block can be found again)
TARGET_TRACED = 1
TARGET_INFERRED = 2

# compact_control fields (one row per task that compacts; CC_PID -1: a free row)
(CC_PID, CC_ACTIVE, CC_ZONE, CC_ORDER, CC_MODE, CC_DIRECT, CC_IGNORE_SKIP, CC_FREE_PFN,
 CC_MIGRATE_PFN, CC_SEARCH_ORDER, CC_FAST_FAIL, CC_NR_FREEPAGES, CC_NR_MIGRATEPAGES, CC_STRIDE,
 CC_IN_CALL, CC_CAPTURE, CC_ROUND_LO, CC_ROUND_HI, CC_ATTEMPTS, CC_NEXT_ORDER, CC_TRY_ORDER,
 CC_TRY_PRIO, CC_AROUND, CC_NEED_ISOLATE, CC_MIGRATETYPE, CC_LAST_USE, CC_IGNORE_BLOCK,
 CC_WHOLE_ZONE, CC_IN_ROUND, CC_END_SUCCESS, CC_END_RESETS) = range(31)
N_CC = 31
# zone compaction fields
(ZC_INIT_FREE_PFN, ZC_CACHED_FREE_PFN, ZC_BLOCKSKIP_FLUSH, ZC_CONSIDERED, ZC_DEFER_SHIFT,
 ZC_ORDER_FAILED) = range(6)
N_ZC = 6


def new_compaction_tables(nzones: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty cc and zc tables: no run open, every zone as after boot (no skip-hint reset yet,
    so compact_init_free_pfn is 0 and every fast search is a fresh, deep one)."""
    cc = np.full((K_RUNS, N_CC), -1, np.int64)
    cc[:, CC_ACTIVE] = 0
    zc = np.zeros((max(nzones, 1), N_ZC), np.int64)
    zc[:, ZC_CACHED_FREE_PFN] = -1
    zc[:, ZC_ORDER_FAILED] = 11
    return cc, zc


@njit(cache=True, _nrt=False)
def pageblock_start_pfn(st, pfn):
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    return (pfn >> pbo) << pbo


@njit(cache=True, _nrt=False)
def pageblock_end_pfn(st, pfn):
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    return ((pfn >> pbo) + 1) << pbo


# ---- taking free pages ------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def isolate_watermark_ok(st, z, order):
    """__isolate_free_page()'s check: the unboosted min mark plus the block, order 0, classzone
    0 (so no lowmem reserve), the highatomic reserve not usable."""
    return zone_watermark_ok(st, z, 0, st.zone_param[z, ZP_MIN] + (1 << order), 0, 0)


@njit(cache=True, _nrt=False)
def __isolate_free_page(st, z, head, inferred):
    """__isolate_free_page(): take a free block for compaction (no tracepoint). A block of at
    least half a pageblock re-types the mergeable pageblocks it covers to MOVABLE. The pages
    become allocated order-0 targets (split_map_pages), marked as inferred when no event
    showed the take. Returns the pages taken."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    order = take_free_block(st, z, head)
    if order >= pbo - 1:
        b = head
        while b < head + (1 << order) - 1:
            if st.pb_mt[b >> pbo] < MIGRATE_HIGHATOMIC:
                if st.config[CFG_COMPACTION] != 0:  # 6.12: move_freepages_block() too
                    move_freepages_pageblock(st, z, b, MIGRATE_MOVABLE)
                st.pb_mt[b >> pbo] = MIGRATE_MOVABLE
            b += 1 << pbo
    mark = TARGET_INFERRED + order if inferred else TARGET_TRACED
    for p in range(head, head + (1 << order)):
        st.pg_state[p] = PG_ALLOC
        st.pg_order[p] = 0
        st.pg_mt[p] = MIGRATE_MOVABLE
        st.pg_target[p] = mark
        st.pg_comp[p] = 0
    return 1 << order


@njit(cache=True, _nrt=False)
def revert_inferred_target(st, pfn):
    """Later evidence shows the kernel still had this page free: the inferred fast-search take
    of its block did not happen. The block's pages still marked inferred go back to the buddy
    lists. Returns the pages returned."""
    order = st.pg_target[pfn] - TARGET_INFERRED
    if order < 0:
        return 0
    head = (pfn >> order) << order
    z = st.pg_zone[head]
    back = 0
    for p in range(head, head + (1 << order)):
        if st.pg_target[p] >= TARGET_INFERRED and st.pg_state[p] == PG_ALLOC:
            st.pg_target[p] = 0
            st.pg_state[p] = 0
            __free_one_page(st, z, p, 0, st.pb_mt[p >> st.config[CFG_PAGEBLOCK_ORDER]], False)
            back += 1
    return back


@njit(cache=True, _nrt=False)
def visit_freepages_block(st, start, end, blk_end, stride, heads, scratch_n):
    """isolate_freepages_block()'s walk over [start, blk_end) at `stride`, stopping where the
    traced event stopped (`end`): returns (nr_scanned, pages taken, where it stopped). Free
    block heads it takes go to heads[:scratch_n[0]] (nothing is changed: the caller applies
    them). Only heads it visits are taken; a compound head skips its tail; a taken block that
    ends at `end` inside the pageblock is the "enough pages" break; a free head at `end` is the
    watermark break (not taken)."""
    p = start
    scanned = 0
    taken = 0
    n = 0
    whole_compound = st.config[CFG_COMPACTION] != 0  # 6.12 counts a compound page whole
    while p < blk_end:
        scanned += 1
        comp = st.pg_comp[p]
        if comp > 0:
            if not whole_compound:
                p += (1 << (comp - 1)) - 1
            elif p + (1 << (comp - 1)) <= blk_end:
                p += (1 << (comp - 1)) - 1
                scanned += (1 << (comp - 1)) - 1
        elif st.pg_state[p] == PG_BUDDY:
            if p == end and end < blk_end:  # __isolate_free_page() failed its watermark
                return scanned, taken, p, n
            o = st.pg_order[p]
            if n < heads.shape[0]:
                heads[n] = p
            n += 1
            taken += 1 << o
            scanned += (1 << o) - 1
            if p + (1 << o) == end and end < blk_end:  # enough pages isolated
                scratch_n[0] = n
                return scanned, taken, end, n
            p += (1 << o) - 1
        p += stride
    scratch_n[0] = n
    if p > blk_end:
        p = blk_end
    return scanned, taken, p, n


# ---- free-list rotations of the fast searches ------------------------------------------------

@njit(cache=True, _nrt=False)
def move_freelist_head(st, z, order, mt, page):
    """move_freelist_head(): the entries before `page` move, in order, to the tail, so `page`
    becomes the head. Nothing moves only when `page` is already the head: the guard tests for
    the first entry (6.1 `list_is_last(freelist, &freepage->lru)`, compaction.c:1323; 6.12
    `list_is_first(&freepage->buddy_list, freelist)`), so the last entry moves too."""
    head = st.fl_head[z, order, mt]
    tail = st.fl_tail[z, order, mt]
    if page == head:
        return
    before = st.pg_prev[page]
    st.pg_next[before] = NIL
    st.pg_prev[page] = NIL
    st.pg_next[tail] = head
    st.pg_prev[head] = tail
    st.fl_head[z, order, mt] = page
    st.fl_tail[z, order, mt] = before


@njit(cache=True, _nrt=False)
def move_freelist_tail(st, z, order, mt, page):
    """move_freelist_tail(): the entries up to and including `page` move, in order, to the
    tail. Nothing moves only when `page` is already the tail: the guard tests for the last
    entry (6.1 `list_is_first(freelist, &freepage->lru)`, compaction.c:1340; 6.12
    `list_is_last(&freepage->buddy_list, freelist)`), so the first entry moves too."""
    head = st.fl_head[z, order, mt]
    tail = st.fl_tail[z, order, mt]
    if page == tail:
        return
    after = st.pg_next[page]
    st.pg_prev[after] = NIL
    st.pg_next[page] = NIL
    st.pg_next[tail] = head
    st.pg_prev[head] = tail
    st.fl_head[z, order, mt] = after
    st.fl_tail[z, order, mt] = page


@njit(cache=True, _nrt=False)
def freelist_scan_limit(cc, r):
    """freelist_scan_limit(): (COMPACT_CLUSTER_MAX >> fast_search_fail) + 1."""
    fail = min(cc[r, CC_FAST_FAIL], 63)
    return (COMPACT_CLUSTER_MAX >> fail) + 1


@njit(cache=True, _nrt=False)
def next_search_order(cc, r, order):
    """next_search_order(): round-robin over the orders below cc->order; -1 when it wrapped."""
    order -= 1
    if order < 0:
        order = cc[r, CC_ORDER] - 1
    if order == cc[r, CC_SEARCH_ORDER]:
        cc[r, CC_SEARCH_ORDER] -= 1
        if cc[r, CC_SEARCH_ORDER] < 0:
            cc[r, CC_SEARCH_ORDER] = cc[r, CC_ORDER] - 1
        return -1
    return order


@njit(cache=True, _nrt=False)
def fast_isolate_freepages(st, cc, zc, r):
    """fast_isolate_freepages(): walk the MOVABLE free lists of the orders below cc->order from
    the tail for a block in the top quarter of the scan space (else the highest in the top
    half), rotate the list, take that one block. Returns (pfn taken or -1, pfn to isolate
    around or -1). Updates cc->free_pfn, search_order, fast_search_fail and the zone's cached
    free pfn as the kernel does."""
    z = cc[r, CC_ZONE]
    corder = cc[r, CC_ORDER]
    if corder <= 0:
        return -1, -1
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    zone_start = st.zone_param[z, ZP_START]
    limit = max(1, freelist_scan_limit(cc, r) >> 1)
    scan_start = False
    if cc[r, CC_FREE_PFN] >= zc[z, ZC_INIT_FREE_PFN]:
        limit = (1 << pbo) >> 1
        scan_start = True
    free_pfn = cc[r, CC_FREE_PFN]
    distance = free_pfn - cc[r, CC_MIGRATE_PFN]
    low_pfn = pageblock_start_pfn(st, free_pfn - (distance >> 2))
    min_pfn = pageblock_start_pfn(st, free_pfn - (distance >> 1))
    if min_pfn > low_pfn:
        low_pfn = min_pfn
    cc[r, CC_SEARCH_ORDER] = min(corder - 1, cc[r, CC_SEARCH_ORDER])
    highest = 0
    page = -1
    page_order = -1
    order = cc[r, CC_SEARCH_ORDER]
    while page < 0 and order >= 0:
        order_scanned = 0
        total = 0
        for m in range(st.fl_len.shape[2]):
            total += st.fl_len[z, order, m]
        if total > 0:
            high_pfn = 0
            freepage = st.fl_tail[z, order, MIGRATE_MOVABLE]
            last = NIL
            while freepage != NIL:
                order_scanned += 1
                last = freepage
                pfn = freepage
                if pfn >= highest:
                    highest = max(pageblock_start_pfn(st, pfn), zone_start)
                if pfn >= low_pfn:
                    cc[r, CC_FAST_FAIL] = 0
                    cc[r, CC_SEARCH_ORDER] = order
                    page = freepage
                    break
                if pfn >= min_pfn and pfn > high_pfn:
                    high_pfn = pfn
                    limit >>= 1
                if order_scanned >= limit:
                    break
                freepage = st.pg_prev[freepage]
            if page < 0 and high_pfn:
                page = high_pfn
                last = high_pfn
            if last != NIL:
                move_freelist_head(st, z, order, MIGRATE_MOVABLE, last)
            if page >= 0:
                if isolate_watermark_ok(st, z, order):
                    __isolate_free_page(st, z, page, True)
                    page_order = order
                else:
                    order = cc[r, CC_SEARCH_ORDER] + 1
                    page = -1
            if order_scanned >= limit:
                limit = max(1, limit >> 1)
        if page >= 0:
            break
        order = next_search_order(cc, r, order)
    around = -1
    if page < 0:
        cc[r, CC_FAST_FAIL] += 1
        if scan_start:
            if highest >= min_pfn:
                around = highest
                cc[r, CC_FREE_PFN] = highest
            elif cc[r, CC_DIRECT] == 1 and min_pfn >= zone_start:
                around = min_pfn
                cc[r, CC_FREE_PFN] = min_pfn
    else:
        cc[r, CC_NR_FREEPAGES] += 1 << page_order
        around = page
    if highest and highest >= zc[z, ZC_CACHED_FREE_PFN]:
        zc[z, ZC_CACHED_FREE_PFN] = highest - (1 << pbo)
    return page, around


@njit(cache=True, _nrt=False)
def fast_find_migrateblock_rotate(st, cc, r, found_block_start, high_pfn):
    """fast_find_migrateblock()'s rotations of the MOVABLE lists (orders cc->order-1 down to
    3, walked from the head). `found_block_start` is the pageblock the trace shows the migrate
    scanner scanning next (-1: unknown); an entry in it below high_pfn is the one found (its
    skip bit is clear, since the scanner scans it). Entries below high_pfn that the kernel
    passed were skip-marked. Returns the pfn of the found entry, or -1."""
    z = cc[r, CC_ZONE]
    limit = freelist_scan_limit(cc, r)
    nr_scanned = 0
    order = cc[r, CC_ORDER] - 1
    while order >= PAGE_ALLOC_COSTLY_ORDER and nr_scanned < limit:
        total = 0
        for m in range(st.fl_len.shape[2]):
            total += st.fl_len[z, order, m]
        if total > 0:
            freepage = st.fl_head[z, order, MIGRATE_MOVABLE]
            while freepage != NIL:
                nxt = st.pg_next[freepage]
                if nr_scanned >= limit:
                    nr_scanned += 1
                    move_freelist_tail(st, z, order, MIGRATE_MOVABLE, freepage)
                    break
                nr_scanned += 1
                if (freepage < high_pfn and found_block_start >= 0
                        and pageblock_start_pfn(st, freepage) == found_block_start):
                    move_freelist_tail(st, z, order, MIGRATE_MOVABLE, freepage)
                    return freepage
                freepage = nxt
        order -= 1
    return -1


# ---- the skip-hint reset ---------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def reset_isolation_free_pfn(st, z):
    """__reset_isolation_suitable()'s new compact_init_free_pfn: walking down from the zone's
    last pfn a pageblock at a time (until the migrate side's walk up meets it), the first
    MOVABLE pageblock with a free block head among every 8th page. -1 if none."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    zone_start = st.zone_param[z, ZP_START]
    zone_end = st.zone_param[z, ZP_END]
    migrate_pfn = zone_start
    free_pfn = zone_end - 1
    while migrate_pfn < free_pfn:
        if st.pb_mt[free_pfn >> pbo] == MIGRATE_MOVABLE:
            p = max(pageblock_start_pfn(st, free_pfn), zone_start)
            last = min(pageblock_end_pfn(st, p) - 1, zone_end - 1)
            while p <= last:
                if st.pg_state[p] == PG_BUDDY:
                    return free_pfn
                p += 1 << PAGE_ALLOC_COSTLY_ORDER
        migrate_pfn += 1 << pbo
        free_pfn -= 1 << pbo
    return -1


# ---- capture ---------------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def compaction_capture_ok(st, order, migratetype, capture_order):
    """compaction_capture(): a merging block of the compacting task's order is taken for it,
    unless it goes to an ISOLATE list, or to a MOVABLE one below pageblock_order."""
    if capture_order < 0 or order != capture_order:
        return False
    if migratetype == 4:  # MIGRATE_ISOLATE (no CMA on these kernels)
        return False
    if order < st.config[CFG_PAGEBLOCK_ORDER] and migratetype == MIGRATE_MOVABLE:
        return False
    return True
