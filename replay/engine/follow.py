"""Following a trace's buddy-level events through the state (the reconstruct hot loop).

Each traced event is applied where the kernel applied it: `mm_page_alloc_zone_locked` takes a
block off a free list (splitting as expand() does) onto a pcp list or to its caller,
`mm_page_pcpu_drain` and direct frees return blocks with merging, `mm_page_alloc_extfrag` moves
blocks and pageblock ownership, and pcp contents follow refills, pcp allocations and frees.
Before each take, the model predicts the block __rmqueue_smallest() would take (agreement).
"""

from __future__ import annotations

import numpy as np

from replay.engine.buddy import (
    MIGRATE_HIGHATOMIC,
    MIGRATE_MOVABLE,
    __free_one_page,
    add_to_free_list,
    change_pageblock_range,
    del_page_from_free_list,
    find_free_block,
    find_pcp_block,
    free_one_page,
    free_one_page_capc,
    move_freepages_block,
    move_freepages_pageblock,
    move_to_free_list_tail,
    pcp_add,
    pcp_allowed_order,
    pcp_del,
    split_around,
    take_free_block,
)
from replay.engine.compaction import (
    CC_ACTIVE,
    CC_CAPTURE,
    CC_IN_ROUND,
    CC_MIGRATETYPE,
    CC_PID,
    K_RUNS,
    TARGET_INFERRED,
    __isolate_free_page,
    move_freelist_head,
    revert_inferred_target,
)
from replay.engine.follow_compaction import (
    K_CAPTURED_PAGES,
    K_CAPTURES,
    K_COMPACTION_FREE,
    K_RELEASED,
    acts_without_a_run,
    capture_order_of,
    compaction_event,
    source_freed,
    task_event,
    task_run,
)
from replay.engine.jit import njit
from replay.engine.policy import (
    ALLOC_HIGHATOMIC,
    ALLOC_WMARK_LOW,
    __zone_watermark_ok,
    can_steal_fallback,
    gfp_zone,
    reserve_highatomic_pageblock,
    wmark_of,
)
from replay.engine.profile import (
    CFG_COMPACTION,
    CFG_EXTFRAG_TAKES,
    CFG_LIST_IS_PAGEBLOCK,
    CFG_SPLIT_LARGE_FREE,
)
from replay.engine.slowpath import gfp_to_alloc_flags
from replay.engine.state import (
    CFG_LOSSY,
    CFG_PAGEBLOCK_ORDER,
    MAX_ORDER,
    NIL,
    PG_ALLOC,
    PG_BUDDY,
    PG_NONE,
    PG_PCP,
    ZP_RESERVED_HA,
)
from replay.trace.schema import (
    EV_ALLOC,
    EV_EXTFRAG,
    EV_FIRST_COMPACTION,
    EV_FREE,
    EV_FREE_BATCHED,
    EV_PCPU_DRAIN,
    EV_ZONE_LOCKED,
)

__GFP_COMP = 0x40000

# Free dispositions, decided before the loop from what happens next to the same pfn.
D_NONE, D_PCP, D_DEFER, D_DIRECT_LOOKAHEAD, D_DIRECT_IRQ = 0, 1, 2, 3, 4
D_DIRECT_ORDER = 5  # not a pcp order: __free_pages_ok
D_DIRECT_UNEXPLAINED = 6  # looks direct, but in task context: the pcp trylock cannot have failed
# 6.12 (extfrag_only_takes): a claim below pageblock_order is traced as its zone_locked, then
# the extfrag. The zone_locked is marked to apply the claim (__move_freepages_block) first.
D_CLAIM_FIRST, D_CLAIMED = 7, 8

COUNTER_NAMES: tuple[str, ...] = (
    "takes",  # 0 zone_locked applied
    "drains",  # 1 pcpu_drain applied
    "direct_frees",  # 2 non-pcp orders freed to buddy
    "pcp_frees",  # 3
    "trylock_direct_frees",  # 4 pcp-order frees that went straight to buddy (lookahead)
    "softirq_direct_frees",  # 5 ... told by the irq-info rule
    "late_direct_frees",  # 6 found only when the block was taken again
    "initial_pcp_pages",  # 7 alloc/drain of a page that sat on a pcp list at the start
    "list_type_corrections",  # 8 a snapshot block's list type learnt from the kernel's choice
    "pageblock_corrections",  # 9
    "steals",  # 10
    "pageblock_retypes",  # 11
    "take_of_non_free_block",  # 12 inconsistency
    "drain_of_free_page",  # 13 inconsistency
    "alloc_of_free_page",  # 14 inconsistency
    "free_of_free_page",  # 15 inconsistency
    "steal_of_non_free_block",  # 16 inconsistency
    "pfn_outside_zones",  # 17 inconsistency
    "pcp_alloc_not_on_pcp",  # 18 informational: pcp-order alloc taken straight from buddy
    "unexplained_direct_free",  # 19 inconsistency: a task-context free that skipped the pcp
    "lost_event_resyncs",  # 20 lossy traces: a model head the kernel skipped, taken as lost
    "inferred_takes_reverted",  # 21 pages of an inferred fast-search take the kernel still had
    "inferred_targets_confirmed",  # 22 inferred targets later freed (their migrated data)
    "inferred_from_later_free",  # 23 a page free in the model, freed again: taken untraced
    "inferred_list_rotations",  # 24 a compaction fast search's untraced move_freelist_head
    "inferred_fast_takes",  # 25 pages of a block the kernel skipped: taken by a fast search
    "extfrag_takes",  # 26 6.12: claims of whole blocks and steals, traced by extfrag alone
    "highatomic_reserves",  # 27 pageblocks reserve_highatomic_pageblock() made HIGHATOMIC
)
N_COUNTERS = len(COUNTER_NAMES)
INCONSISTENCIES = (12, 13, 14, 15, 16, 17, 19)
C_TAKES, C_DRAINS, C_DIRECT, C_PCPFREE, C_TRYLOCK, C_SOFTIRQ, C_LATE, C_INITPCP = range(8)
C_LISTFIX, C_PBFIX, C_STEALS, C_RETYPE = 8, 9, 10, 11
C_BADTAKE, C_BADDRAIN, C_BADALLOC, C_DOUBLEFREE, C_BADSTEAL, C_OUTSIDE, C_PCPMISS = range(12, 19)
C_UNEXPLAINED = 19
C_RESYNC = 20
C_REVERTED, C_CONFIRMED, C_INFERRED_FREE, C_ROTATED, C_INFERRED_TAKE = 21, 22, 23, 24, 25
C_EXTFRAG_TAKES = 26
C_HIGHATOMIC = 27


@njit(cache=True, _nrt=False)
def zone_of(st, pfn):
    if pfn < 0 or pfn >= st.pg_zone.shape[0]:
        return -1
    return st.pg_zone[pfn]


@njit(cache=True, _nrt=False)
def fix_list_type(st, z, head, mt, counters):
    """The kernel took `head` from the `mt` list: if the model had it elsewhere, move it there
    and move a cold block of the same order the other way, so per-type counts stay right.
    Where a free block's list is always its pageblock's type (6.12), the take proves the
    pageblock's type instead: fix_pageblock_type."""
    old = st.pg_mt[head]
    if old == mt:
        return
    if st.config[CFG_LIST_IS_PAGEBLOCK] != 0:
        fix_pageblock_type(st, z, head, mt, counters)
        return
    order = st.pg_order[head]
    counters[C_LISTFIX] += 1
    # a cold (snapshot-typed) block on the mt list that may be the one really on `old`
    swap = st.fl_head[z, order, mt]
    while swap != NIL and st.pg_warm[swap] != 0:
        swap = st.pg_next[swap]
    # moved between lists at the head; NR_FREE_PAGES is untouched by either call
    del_page_from_free_list(st, z, head)
    if swap != NIL:
        del_page_from_free_list(st, z, swap)
        add_to_free_list(st, z, swap, order, old, False)
    add_to_free_list(st, z, head, order, mt, False)


@njit(cache=True, _nrt=False)
def fix_pageblock_type(st, z, pfn, mt, counters):
    """The kernel shows pfn's pageblock has type mt (a take from list mt, or a drain's type,
    where list type = pageblock type): re-type the model's pageblock, moving its free blocks."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    old = st.pb_mt[pfn >> pbo]
    if old != mt or find_free_block(st, pfn) >= 0:
        counters[C_PBFIX] += move_freepages_pageblock(st, z, pfn, mt)
    if old != mt and (old == MIGRATE_HIGHATOMIC or mt == MIGRATE_HIGHATOMIC):
        # a reserve (or unreserve_highatomic_pageblock()) the trace showed only now
        delta = (1 << pbo) if mt == MIGRATE_HIGHATOMIC else -(1 << pbo)
        st.zone_param[z, ZP_RESERVED_HA] = max(st.zone_param[z, ZP_RESERVED_HA] + delta, 0)


@njit(cache=True, _nrt=False)
def extfrag_take(st, z, pfn, order, ford, start_mt, fmt, cpu, counters):
    """A 6.12 extfrag with no zone_locked: a claim of a block of pageblock_order or more
    (try_to_steal_block: the block is re-typed start_mt, expand() puts the rest on start_mt's
    lists) or a steal (__rmqueue_steal: the smallest fallback block, the rest stays on its
    pageblock's list). pfn is the page handed out; it joins the pcp refill it is part of."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    counters[C_EXTFRAG_TAKES] += 1
    head = find_free_block(st, pfn)
    if head < 0 or st.pg_order[head] != ford:
        counters[C_BADSTEAL] += 1
        if head < 0:
            return
    if ford >= pbo and head == pfn:
        counters[C_STEALS] += 1
        take_free_block(st, z, head)
        counters[C_RETYPE] += change_pageblock_range(st, head, ford, start_mt)
        split_around(st, z, head, ford, pfn, order, start_mt)
        st.nr_free_pages[z] += (1 << ford) - (1 << order)
    else:
        counters[C_STEALS] += 1
        take(st, z, pfn, order, fmt, counters)
    if pcp_allowed_order(order, pbo) and start_mt < MIGRATE_HIGHATOMIC:
        pcp_add(st, cpu, z, pfn, order, start_mt, True)
    else:
        st.pg_state[pfn] = PG_ALLOC
        st.pg_order[pfn] = order
        st.pg_mt[pfn] = start_mt


@njit(cache=True, _nrt=False)
def free_pcp_pages_in(st, lo, hi, counters):
    """Pages of [lo, hi) that the model thinks are on pcp lists went to buddy directly."""
    p = lo
    while p < hi:
        h = find_pcp_block(st, p)
        if h >= 0:
            z = st.pg_zone[h]
            order = st.pg_order[h]
            pcp_del(st, z, h)
            __free_one_page(st, z, h, order, st.pb_mt[h >> st.config[CFG_PAGEBLOCK_ORDER]],
                            False)
            counters[C_LATE] += 1
            p = h + (1 << order)
        else:
            p += 1


@njit(cache=True, _nrt=False)
def rmqueue_smallest_head(st, z, order, mt):
    """The block __rmqueue_smallest() would take: the head of the first non-empty list of
    type mt at order or above."""
    for o in range(order, MAX_ORDER):
        h = st.fl_head[z, o, mt]
        if h != NIL:
            return h
    return -1


@njit(cache=True, _nrt=False)
def pages_taken_for(ev, cpu, order, disp, i):
    """The pages of the buddy takes (a pcp refill, or the block itself) that served the
    allocation at i: its CPU's zone_locked (and extfrag-only) events of its order just before
    it. rmqueue() took them after get_page_from_freelist()'s watermark check."""
    pages = 0
    j = i - 1
    while j >= 0:
        if cpu[j] == cpu[i]:
            if not (ev[j] == EV_ZONE_LOCKED or ev[j] == EV_EXTFRAG) or order[j] != order[i]:
                break
            if ev[j] == EV_ZONE_LOCKED or disp[j] != D_CLAIMED:
                pages += 1 << order[j]
        j -= 1
    return pages


@njit(cache=True, _nrt=False)
def fast_path_failed(st, z, order, gfp, taken):
    """__alloc_pages()'s first get_page_from_freelist() (ALLOC_WMARK_LOW) failed in z, the
    zone the page came from (so in every zone before it in the zonelist): the page came from
    __alloc_pages_slowpath(). `taken`: the pages rmqueue() took for it after the check."""
    mark = wmark_of(st, z, ALLOC_WMARK_LOW)
    highest = gfp_zone(st, gfp)
    free = st.nr_free_pages[z] + taken
    if taken > 0:  # rmqueue() found its blocks: only the page count can have failed
        return not __zone_watermark_ok(st, z, 0, mark, highest, ALLOC_WMARK_LOW,
                                       free - (1 << order) + 1)
    return not __zone_watermark_ok(st, z, order, mark, highest, ALLOC_WMARK_LOW, free)


@njit(cache=True, _nrt=False)
def highatomic_alloc(st, z, p, o, gfp, taken, counters):
    """A traced high-order allocation: if the slow path served it with ALLOC_HIGHATOMIC (order
    > 0, __GFP_HIGH, no direct reclaim, no __GFP_NOMEMALLOC: gfp_to_alloc_flags()),
    get_page_from_freelist() then reserved its pageblock (reserve_highatomic_pageblock(), no
    event): the pageblock and its free blocks become HIGHATOMIC."""
    if o == 0 or gfp < 0 or not (gfp_to_alloc_flags(gfp, o) & ALLOC_HIGHATOMIC):
        return
    if fast_path_failed(st, z, o, gfp, taken) and reserve_highatomic_pageblock(st, z, p, o):
        counters[C_HIGHATOMIC] += 1


@njit(cache=True, _nrt=False)
def take(st, z, pfn, order, mt, counters):
    """A traced take of [pfn, pfn + 2^order) from the buddy lists (zone_locked); returns
    whether the block taken had been placed by the trace (warm)."""
    head = find_free_block(st, pfn)
    if head < 0 or head + (1 << st.pg_order[head]) < pfn + (1 << order):
        # part of the block sits on a pcp list in the model: freed straight to buddy after all
        free_pcp_pages_in(st, pfn, pfn + (1 << order), counters)
        head = find_free_block(st, pfn)
    if head < 0 and st.pg_target[pfn] >= TARGET_INFERRED:
        counters[C_REVERTED] += revert_inferred_target(st, pfn)
        head = find_free_block(st, pfn)
    if head < 0:
        counters[C_BADTAKE] += 1
        return 0
    warm = st.pg_warm[head]
    fix_list_type(st, z, head, mt, counters)
    high = take_free_block(st, z, head)
    if high < order:  # the model's block is smaller than the kernel's: take the rest too
        counters[C_BADTAKE] += 1
        p = head + (1 << high)
        while p < pfn + (1 << order):
            h2 = find_free_block(st, p)
            if h2 >= 0:
                o2 = take_free_block(st, st.pg_zone[h2], h2)
                p = h2 + (1 << o2)
            else:
                p += 1
        return warm
    split_around(st, z, head, high, pfn, order, mt)
    # expand() hands the rest back to NR_FREE_PAGES
    st.nr_free_pages[z] += (1 << high) - (1 << order)
    return warm


@njit(cache=True, _nrt=False)
def steal(st, z, pfn, alloc_order, fallback_order, start_mt, fallback_mt, chown, counters):
    """A traced mm_page_alloc_extfrag: steal_suitable_fallback() on the block at pfn."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    head = find_free_block(st, pfn)
    if head != pfn or st.pg_order[head] != fallback_order:
        counters[C_BADSTEAL] += 1
        return
    counters[C_STEALS] += 1
    fix_list_type(st, z, head, fallback_mt, counters)
    old = st.pb_mt[pfn >> pbo]
    if old == MIGRATE_HIGHATOMIC:
        move_to_free_list_tail(st, z, head, start_mt)
        return
    if fallback_order >= pbo:
        counters[C_RETYPE] += change_pageblock_range(st, pfn, fallback_order, start_mt)
        move_to_free_list_tail(st, z, head, start_mt)
        return
    moved = 0
    if can_steal_fallback(st, fallback_order, start_mt):  # a whole-pageblock steal
        moved, _, _ = move_freepages_block(st, z, pfn, start_mt)
    if moved == 0:
        move_to_free_list_tail(st, z, head, start_mt)
    if chown == 1:
        if st.pb_mt[pfn >> pbo] != start_mt:
            counters[C_RETYPE] += 1
        st.pb_mt[pfn >> pbo] = start_mt
    elif st.pb_mt[pfn >> pbo] == start_mt:
        st.pb_mt[pfn >> pbo] = fallback_mt
        counters[C_PBFIX] += 1


@njit(cache=True, _nrt=False)
def carve_out(st, pfn, order, counters):
    """A page the model has free is freed (or drained) again: after compaction, the untraced
    fast search took it as a target. Take [pfn, pfn + 2^order) off the free lists, allocated,
    before the free is applied. Returns False when the pages are not all free."""
    head = find_free_block(st, pfn)
    if head < 0:
        return False
    z = st.pg_zone[head]
    high = take_free_block(st, z, head)
    if high < order:
        add_to_free_list(st, z, head, high, st.pg_mt[head], False)
        st.nr_free_pages[z] += 1 << high
        return False
    split_around(st, z, head, high, pfn, order, st.pb_mt[pfn >> st.config[CFG_PAGEBLOCK_ORDER]])
    st.nr_free_pages[z] += (1 << high) - (1 << order)
    st.pg_state[pfn] = PG_ALLOC
    st.pg_order[pfn] = order
    counters[C_INFERRED_FREE] += 1 << order
    return True


@njit(cache=True, _nrt=False)
def infer_fast_search_move(st, z, h, p, m, counters):
    """After compaction, the kernel took p where the model predicted h: an untraced move of
    fast_isolate_freepages(). If p's block is on h's list, the kernel had rotated it to the head
    (move_freelist_head); if h sits on a smaller order's list, the kernel no longer had h: its
    fast search took it as a target (inferred; a later take of h reverts that)."""
    fb = find_free_block(st, p)
    if fb < 0:
        return
    if st.pg_order[fb] == st.pg_order[h] and st.pg_mt[fb] == st.pg_mt[h]:
        move_freelist_head(st, z, st.pg_order[fb], st.pg_mt[fb], fb)
        counters[C_ROTATED] += 1
    elif st.pg_order[h] < st.pg_order[fb] and st.pg_mt[h] == MIGRATE_MOVABLE:
        counters[C_INFERRED_TAKE] += __isolate_free_page(st, z, h, True)


@njit(cache=True, _nrt=False)
def any_active_run(cc):
    for k in range(K_RUNS):
        if cc[k, CC_ACTIVE] == 1:
            return True
    return False


@njit(cache=True, _nrt=False)
def claim_capture(cc, pid, pfn):
    """The task's mm_page_alloc of the block its compaction captured: True (and forget it)."""
    for k in range(K_RUNS):
        if cc[k, CC_PID] == pid and cc[k, CC_CAPTURE] == pfn:
            cc[k, CC_CAPTURE] = -1
            return True
    return False


@njit(cache=True, _nrt=False)
def free_to_buddy(st, cc, r, z, p, o, m, kc):
    """A block returned to the buddy lists (drain or direct free); the compacting task's own
    frees (r >= 0) may be captured by its direct compaction."""
    cap = capture_order_of(cc, r, z)
    if cap < 0:
        __free_one_page(st, z, p, o, m, False)
        return False
    movable_ok = st.config[CFG_COMPACTION] != 0 and cc[r, CC_MIGRATETYPE] == MIGRATE_MOVABLE
    head, captured = free_one_page_capc(st, z, p, o, m, False, cap, movable_ok)
    if captured:
        cc[r, CC_CAPTURE] = head
        kc[K_CAPTURES] += 1
        kc[K_CAPTURED_PAGES] += 1 << cap
    return captured


def _follow_events(full: bool):
    def follow_events(st, ev, pfn, order, mt, cpu, refill, ford, fmt, chown, disp, i0, i1,  # noqa: PLR0912
                      counters, pred, pred_warm, taken_warm, fallback_flag, pid, irq, gfp, cidx,
                      cev, cc, zc, kc, heads, nh, base, carry):
        """Apply events [i0, i1); DONE, or (fast tier) the row where compaction starts. For
        each zone_locked at index i, pred[i] is the pfn the model predicted (-1: none) and
        pred_warm[i] whether that list position came from the trace. Compaction events drive
        the cc/zc tables (follow_compaction.py). The arrays may hold a chunk of the trace:
        `base` is the trace index of its row 0 (compaction's stamps are trace indices), and
        carry[0] whether a fallback is in progress (kept from call to call)."""
        pbo = st.config[CFG_PAGEBLOCK_ORDER]
        in_fallback = carry[0] != 0
        active = any_active_run(cc)
        compacted = kc[0] > 0  # a compaction run was seen: untraced fast-search takes possible
        captures = False
        for k in range(K_RUNS):
            if cc[k, CC_CAPTURE] >= 0:
                captures = True
        if not full and (active or compacted or captures):
            return i0
        for i in range(i0, i1):
            e = ev[i]
            if e >= EV_FIRST_COMPACTION:
                if cidx[i] >= 0:
                    if not full:
                        if acts_without_a_run(e):
                            carry[0] = 1 if in_fallback else 0
                            return i
                        continue
                    compaction_event(st, cc, zc, e, cev[cidx[i]], pid[i], gfp[i], order[i],
                                     base + i, heads, nh, kc)
                    active = any_active_run(cc)
                    compacted = compacted or active
                continue
            p = pfn[i]
            if p < 0:
                continue  # a failed allocation
            z = zone_of(st, p)
            if z < 0:
                counters[C_OUTSIDE] += 1
                continue
            o = order[i]
            r = -1  # the compacting task's run this event belongs to
            task_context = (irq[i] & 0x30) == 0
            if full:
                if active:
                    r = task_run(cc, pid[i])
                if r >= 0 and not ((e == EV_FREE or e == EV_FREE_BATCHED) and task_context):
                    task_event(cc, zc, st, r, task_context, kc)
            if e == EV_ZONE_LOCKED:
                m = mt[i]
                if disp[i] == D_CLAIM_FIRST:  # 6.12 __rmqueue_claim: the pageblock moves first
                    counters[C_STEALS] += 1
                    counters[C_RETYPE] += move_freepages_pageblock(st, z, p, m)
                    in_fallback = True
                h = rmqueue_smallest_head(st, z, o, m)
                pred[i] = h
                if h >= 0:
                    pred_warm[i] = st.pg_warm[h]
                    if st.config[CFG_LOSSY] != 0 and h != p:
                        fb = find_free_block(st, p)
                        if fb >= 0 and fb != h:
                            # the ring buffer lost events and the kernel took another block the
                            # model also has free: the skipped head was most likely taken by a lost
                            # event. If it was free after all, a later take of it resynchronises.
                            take_free_block(st, st.pg_zone[h], h)
                            counters[C_RESYNC] += 1
                    elif full:
                        if compacted and h != p:
                            infer_fast_search_move(st, z, h, p, m, counters)
                fallback_flag[i] = in_fallback
                in_fallback = False
                taken_warm[i] = take(st, z, p, o, m, counters)
                counters[C_TAKES] += 1
                if refill[i] == 1:
                    pcp_add(st, cpu[i], z, p, o, m, True)
                else:
                    st.pg_state[p] = PG_ALLOC
                    st.pg_order[p] = o
                    st.pg_mt[p] = m
            elif e == EV_ALLOC:
                s = st.pg_state[p]
                captured = False
                if full:
                    captured = captures and claim_capture(cc, pid[i], p)
                if captured:
                    s = PG_ALLOC  # the block its direct compaction captured
                elif s == PG_PCP:
                    pcp_del(st, z, p)
                elif s == PG_BUDDY or (s == PG_NONE and find_free_block(st, p) >= 0):
                    counters[C_BADALLOC] += 1
                    take(st, z, p, o, mt[i], counters)
                elif s == PG_NONE:
                    counters[C_INITPCP] += 1
                elif s == PG_ALLOC and pcp_allowed_order(o, pbo):
                    counters[C_PCPMISS] += 1
                st.pg_state[p] = PG_ALLOC
                st.pg_order[p] = o
                st.pg_mt[p] = mt[i]
                st.pg_comp[p] = o + 1 if (o > 0 and (gfp[i] & __GFP_COMP) != 0) else 0
                if o > 0 and not captured:
                    highatomic_alloc(st, z, p, o, gfp[i], pages_taken_for(ev, cpu, order, disp, i),
                                     counters)
            elif e == EV_FREE or e == EV_FREE_BATCHED:
                d = disp[i]
                if d == D_DEFER or d == D_NONE:
                    continue
                if (r >= 0 and st.config[CFG_COMPACTION] != 0 and st.pg_target[p] != 0
                        and cc[r, CC_IN_ROUND] == 1):
                    kc[K_COMPACTION_FREE] += 1  # 6.12 compaction_free(): the target stays isolated
                    continue
                if full:
                    if r >= 0 and task_context:
                        source_freed(st, cc, zc, r, p, o, kc)
                        task_event(cc, zc, st, r, task_context, kc)
                s = st.pg_state[p]
                if s == PG_BUDDY or (s == PG_NONE and find_free_block(st, p) >= 0):
                    carved = False
                    if full:
                        carved = compacted and carve_out(st, p, o, counters)
                    if not carved:
                        counters[C_DOUBLEFREE] += 1
                        continue
                    s = PG_ALLOC
                if s == PG_PCP:
                    pcp_del(st, z, p)  # freed twice without a drain: keep the later placement
                st.pg_comp[p] = 0
                if st.pg_target[p] != 0:
                    if st.pg_target[p] >= TARGET_INFERRED:
                        counters[C_CONFIRMED] += 1
                    if r >= 0:
                        kc[K_RELEASED] += 1 << o  # release_freepages(): unused targets
                    for q in range(p, p + (1 << o)):  # 6.12 releases them at their order
                        st.pg_target[q] = 0
                        st.pg_state[q] = PG_NONE
                pbmt = st.pb_mt[p >> pbo]
                if d == D_PCP:
                    pcp_add(st, cpu[i], z, p, o, pbmt, False)
                    counters[C_PCPFREE] += 1
                else:
                    if d == D_DIRECT_LOOKAHEAD:
                        counters[C_TRYLOCK] += 1
                    elif d == D_DIRECT_UNEXPLAINED:
                        counters[C_UNEXPLAINED] += 1
                    elif d == D_DIRECT_IRQ:
                        counters[C_SOFTIRQ] += 1
                    else:
                        counters[C_DIRECT] += 1
                    st.pg_state[p] = PG_NONE
                    if o > pbo and st.config[CFG_SPLIT_LARGE_FREE] != 0:
                        free_one_page(st, z, p, o)  # 6.12 split_large_buddy: pageblock pieces
                    elif full:
                        captures = free_to_buddy(st, cc, r, z, p, o, pbmt, kc) or captures
                    else:
                        __free_one_page(st, z, p, o, pbmt, False)
            elif e == EV_PCPU_DRAIN:
                s = st.pg_state[p]
                if s == PG_PCP:
                    pcp_del(st, z, p)
                elif s == PG_BUDDY or (s == PG_NONE and find_free_block(st, p) >= 0):
                    carved = False
                    if full:
                        carved = compacted and carve_out(st, p, o, counters)
                    if not carved:
                        counters[C_BADDRAIN] += 1
                        continue
                else:
                    counters[C_INITPCP] += 1
                st.pg_state[p] = PG_NONE
                if st.config[CFG_LIST_IS_PAGEBLOCK] != 0 and st.pb_mt[p >> pbo] != mt[i]:
                    fix_pageblock_type(st, z, p, mt[i], counters)  # the drain's type is the block's
                if full:
                    captures = free_to_buddy(st, cc, r, z, p, o, mt[i], kc) or captures
                else:
                    __free_one_page(st, z, p, o, mt[i], False)
                counters[C_DRAINS] += 1
            elif e == EV_EXTFRAG:
                if st.config[CFG_EXTFRAG_TAKES] == 0:
                    steal(st, z, p, o, ford[i], mt[i], fmt[i], chown[i], counters)
                elif disp[i] != D_CLAIMED:
                    extfrag_take(st, z, p, o, ford[i], mt[i], fmt[i], cpu[i], counters)
                in_fallback = True
        carry[0] = 1 if in_fallback else 0
        return DONE

    # its own name, so each tier has its own entry in numba's cache
    follow_events.__qualname__ = "follow_events" if full else "follow_events_fast"
    return njit(nogil=True, cache=True, _nrt=False)(follow_events)  # no allocation inside


DONE = -1  # follow_events reached i1
# follow_events_fast: the trace before compaction first acts (no run, no capture, no untraced
# fast search yet); its compaction code is not compiled until a trace needs it
follow_events = _follow_events(True)
follow_events_fast = _follow_events(False)


class FollowLoop:
    """follow_events_fast until the trace first shows compaction at work, follow_events from
    there on (the same arguments)."""

    def __init__(self) -> None:
        self.full = False

    def __call__(self, st, ev, pfn, order, mt, cpu, refill, ford, fmt, chown, disp,
                 i0: int, i1: int, *rest) -> None:
        if not self.full:
            i0 = follow_events_fast(st, ev, pfn, order, mt, cpu, refill, ford, fmt, chown,
                                    disp, i0, i1, *rest)
            if i0 == DONE:
                return
            self.full = True
        follow_events(st, ev, pfn, order, mt, cpu, refill, ford, fmt, chown, disp, i0, i1,
                      *rest)


def free_batched_orders(ev: np.ndarray, pfn: np.ndarray, order: np.ndarray,
                        cpu: np.ndarray) -> int:
    """6.12's mm_page_free_batched prints order=0 for every folio (free_unref_folios); its
    real order is that of the mm_page_free of the same pfn just before it on the CPU. Fixes
    `order` in place; returns the events changed."""
    idx = np.flatnonzero(((ev == EV_FREE) | (ev == EV_FREE_BATCHED)) & (pfn >= 0))
    if not len(idx):
        return 0
    key = np.lexsort((idx, pfn[idx], cpu[idx]))
    srt = idx[key]
    prev_same = np.zeros(len(srt), bool)
    prev_same[1:] = (pfn[srt[1:]] == pfn[srt[:-1]]) & (cpu[srt[1:]] == cpu[srt[:-1]])
    batched = (ev[srt] == EV_FREE_BATCHED) & prev_same
    prev = np.roll(srt, 1)
    sel = batched & (ev[prev] == EV_FREE)
    dst, src = srt[sel], prev[sel]
    changed = int(np.count_nonzero(order[dst] != order[src]))
    order[dst] = order[src]
    return changed


def plan_claims(ev: np.ndarray, pfn: np.ndarray, cpu: np.ndarray, ford: np.ndarray,
                chown: np.ndarray, disp: np.ndarray, pageblock_order: int) -> int:
    """6.12 (extfrag_only_takes): a claim below pageblock_order is traced as the zone_locked
    of the block __rmqueue_smallest took after __move_freepages_block, then the extfrag of
    the same pfn. Marks that zone_locked D_CLAIM_FIRST and the extfrag D_CLAIMED; returns the
    claims paired."""
    paired = 0
    for j in np.flatnonzero((ev == EV_EXTFRAG) & (pfn >= 0) & (ford < pageblock_order)
                            & (chown == 1)):
        for i in range(j - 1, max(j - 256, -1), -1):
            if cpu[i] == cpu[j] and ev[i] == EV_ZONE_LOCKED:
                if pfn[i] == pfn[j]:
                    disp[i], disp[j] = D_CLAIM_FIRST, D_CLAIMED
                    paired += 1
                break
    return paired


def plan_free_dispositions(ev: np.ndarray, pfn: np.ndarray, order: np.ndarray,
                           irq_flags: np.ndarray, preempt: np.ndarray,
                           pageblock_order: int, pfn_zone: np.ndarray | None = None,
                           cpu: np.ndarray | None = None) -> np.ndarray:
    """How each traced free reached the buddy allocator, decided from what happens next.

    - mm_page_free followed by mm_page_free_batched of the same page: free_unref_page_list()
      lists the page in its second loop, at the batched event (D_DEFER now).
    - a pcp-order free whose page is next taken by zone_locked (no drain between) went straight
      to buddy (pcp trylock failed: D_DIRECT_LOOKAHEAD);
    - with no later event, a free in hard/softirq context with preempt depth >= 3 did too
      (D_DIRECT_IRQ); otherwise it went to the pcp list (D_PCP).
    - non-pcp orders go straight to buddy (D_DIRECT_ORDER).
    - a lookahead-direct free in task context is D_DIRECT_UNEXPLAINED (an inconsistency).
    - pcp locks are per zone: with `pfn_zone` (each pfn's zone) and `cpu`, an interrupt's free
      is direct only if the context it interrupted on that CPU was working on the same zone
      (on i386 a softirq frees a lowmem page while its task frees HighMem pages).
    """
    n = len(ev)
    disp = np.zeros(n, np.int8)
    valid = pfn >= 0
    idx = np.flatnonzero(valid & (ev != EV_EXTFRAG))
    keys = pfn[idx]
    srt = idx[np.lexsort((idx, keys))]
    nxt = np.full(n, -1, np.int64)
    same = pfn[srt[1:]] == pfn[srt[:-1]]
    nxt[srt[:-1][same]] = srt[1:][same]
    is_free = (ev == EV_FREE) | (ev == EV_FREE_BATCHED)
    pcp_order = (order <= 3) | (order == pageblock_order)
    nev = np.where(nxt >= 0, ev[np.maximum(nxt, 0)], -1)
    disp[is_free & valid] = D_DIRECT_LOOKAHEAD  # placeholder, refined below
    disp[is_free & valid & ~pcp_order] = D_DIRECT_ORDER
    pf = is_free & valid & pcp_order
    disp[pf] = D_PCP
    disp[pf & (ev == EV_FREE) & (nev == EV_FREE_BATCHED)] = D_DEFER
    disp[pf & (disp != D_DEFER) & (nev == EV_ZONE_LOCKED)] = D_DIRECT_LOOKAHEAD
    # the pcp trylock only fails under an interrupt that preempted its holder: a "direct"
    # free in task context means an event is missing from the trace (a dropped drain)
    task_context = ((irq_flags & 0x80) != 0) & ((irq_flags & 0x30) == 0)
    disp[(disp == D_DIRECT_LOOKAHEAD) & task_context] = D_DIRECT_UNEXPLAINED
    irq_direct = ((irq_flags & 0x30) != 0) & (preempt >= 3)
    disp[pf & (disp == D_PCP) & (nxt < 0) & irq_direct] = D_DIRECT_IRQ
    if pfn_zone is not None and cpu is not None:
        _other_zone_irq_frees(disp, pfn, irq_flags, cpu, pfn_zone)
    return disp


def _other_zone_irq_frees(disp: np.ndarray, pfn: np.ndarray, irq_flags: np.ndarray,
                          cpu: np.ndarray, pfn_zone: np.ndarray) -> None:
    """An interrupt's free can only fail the pcp trylock of the zone whose pcp lock the
    interrupted context holds: the zone of the previous event of that context on the CPU."""
    cand = np.flatnonzero(disp == D_DIRECT_IRQ)
    n_pfn = len(pfn_zone)
    for i in cand:
        ctx = irq_flags[i] & 0x30
        j = i - 1
        while j >= 0 and j > i - 4096:
            if cpu[j] == cpu[i] and (irq_flags[j] & 0x30) != ctx and 0 <= pfn[j] < n_pfn:
                break
            j -= 1
        if j < 0 or j <= i - 4096 or pfn[i] >= n_pfn:
            continue
        if pfn_zone[pfn[j]] != pfn_zone[pfn[i]]:
            disp[i] = D_PCP
