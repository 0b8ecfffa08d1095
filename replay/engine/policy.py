"""Linux 6.1's allocation policy on the model: the kernel's decisions, compiled.

get_page_from_freelist (zonelist walk, watermarks, ALLOC_NOFRAGMENT) -> rmqueue (pcp or buddy)
-> __rmqueue -> __rmqueue_smallest / __rmqueue_fallback -> steal_suitable_fallback; and the
free side: free_unref_page_commit -> free_pcppages_bulk -> __free_one_page. Events are emitted
where the kernel emits its tracepoints, in the ingest schema, so observed and simulated runs
are measured by the same code. Departures from the kernel are listed in docs/model.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba.experimental import structref

from replay.engine.buddy import (
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    __free_one_page,
    _unlink,
    change_pageblock_range,
    del_page_from_free_list,
    expand,
    free_one_page,
    move_freepages,
    move_freepages_block,
    move_to_free_list_tail,
    order_to_pindex,
    pcp_add,
    pcp_allowed_order,
)
from replay.engine.jit import njit
from replay.engine.profile import (
    CFG_BELOW_HIGH,
    CFG_BOOST_WAKE_KSWAPD,
    CFG_FALLBACK_RULE,
    CFG_FREE_HIGH,
    CFG_HIGHATOMIC_LIMIT,
    CFG_HIGHATOMIC_WMARK,
    CFG_LIST_IS_PAGEBLOCK,
    CFG_PCP_FREE,
    CFG_PCP_REFILL,
    CFG_WMARK_FAST_KEY,
    FALLBACK_CLAIM_STEAL,
)
from replay.engine.state import (
    CFG_BOOST_FACTOR,
    CFG_FALLBACK_POLICY,
    CFG_MOBILITY,
    CFG_PAGEBLOCK_ORDER,
    MAX_ORDER,
    NIL,
    NR_PCP_LISTS,
    NR_ZONE_TYPES,
    PCPF_FREE_HIGH_BATCH,
    PCPF_PREV_FREE_HIGH_ORDER,
    PG_ALLOC,
    PG_BUDDY,
    PG_NONE,
    PG_PCP,
    ZONE_BELOW_HIGH,
    ZONE_BOOSTED_WATERMARK,
    ZONE_RECLAIM_ACTIVE,
    ZP_BOOST,
    ZP_END,
    ZP_FLAGS,
    ZP_HIGH,
    ZP_LOW,
    ZP_MANAGED,
    ZP_MIN,
    ZP_RESERVED_HA,
    ZP_START,
)
from replay.engine.structs import ArraysRef, ArrayStruct, register_struct
from replay.trace.schema import (
    EV_EXTFRAG,
    EV_FREE,
    EV_PCPU_DRAIN,
    EV_ZONE_LOCKED,
)

MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE = 0, 2
MIGRATE_PCPTYPES = 3
PCP_BATCH_SCALE_MAX = 5
RMQUEUE_NORMAL, RMQUEUE_CMA, RMQUEUE_CLAIM, RMQUEUE_STEAL = range(4)  # enum rmqueue_mode (6.12)

# alloc_flags (mm/internal.h, 6.1.116+)
ALLOC_WMARK_MIN, ALLOC_WMARK_LOW, ALLOC_WMARK_HIGH = 0, 1, 2
ALLOC_NO_WATERMARKS = 0x04
ALLOC_OOM = 0x08
ALLOC_NON_BLOCK = 0x10
ALLOC_MIN_RESERVE = 0x20
ALLOC_HIGHATOMIC = 0x200
ALLOC_KSWAPD = 0x800
ALLOC_NOFRAGMENT = 0x100
ALLOC_WMARK_MASK = 0x03
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM

__GFP_DMA, __GFP_HIGHMEM, __GFP_DMA32, __GFP_MOVABLE = 0x1, 0x2, 0x4, 0x8
__GFP_HIGH, __GFP_ATOMIC, __GFP_DIRECT_RECLAIM, __GFP_KSWAPD_RECLAIM = 0x20, 0x200, 0x400, 0x800
__GFP_NOMEMALLOC = 0x80000

ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE = 0, 1, 2, 3

FALLBACK_LINUX, FALLBACK_NO_WHOLE_BLOCK, FALLBACK_NONE = 0, 1, 2
FALLBACK_POLICIES = {"linux-6.1": FALLBACK_LINUX, "no-whole-block-steal": FALLBACK_NO_WHOLE_BLOCK,
                     "no-fallback-below-pageblock": FALLBACK_NONE}

# fallbacks[] (mm/page_alloc.c): the order in which other types' lists are tried.
FALLBACKS = np.array([[2, 1], [2, 0], [0, 1], [-1, -1], [-1, -1]], np.int64)

SIM_COUNTER_NAMES: tuple[str, ...] = (
    "allocs", "alloc_failures", "pcp_hits", "pcp_refills", "pcp_refill_blocks", "buddy_allocs",
    "fallbacks", "fragmenting_fallbacks", "ownership_changes", "pcp_drains",
    "pcp_drained_pages", "frees", "pcp_frees", "direct_frees", "nofragment_retries",
    "min_watermark_allocs", "no_watermark_allocs", "remote_node_allocs", "double_frees",
    "free_of_unknown_page", "watermark_boosts", "highatomic_reserves", "lower_zone_allocs",
)
(S_ALLOCS, S_FAIL, S_PCPHIT, S_REFILLS, S_REFILL_BLOCKS, S_BUDDY, S_FALLBACKS, S_FRAG,
 S_CHOWN, S_DRAINS, S_DRAINED, S_FREES, S_PCPFREES, S_DIRECTFREES, S_NOFRAG_RETRY, S_MINWM,
 S_NOWM, S_REMOTE, S_DOUBLEFREE, S_UNKNOWNFREE, S_BOOSTS, S_HIGHATOMIC,
 S_LOWERZONE) = range(23)


class _EmitterFields(NamedTuple):
    """Preallocated columns of simulated events (the ingest schema's engine columns)."""

    ev: np.ndarray
    pfn: np.ndarray
    order: np.ndarray
    mt: np.ndarray
    cpu: np.ndarray
    refill: np.ndarray
    ford: np.ndarray
    fmt: np.ndarray
    chown: np.ndarray
    req: np.ndarray  # the index of the traced request that caused the event
    n: np.ndarray  # int64[2]: [events written, overflowed]


class _EmitterProxy(structref.StructRefProxy):
    pass


@register_struct(_EmitterFields, _EmitterProxy)
class EmitterRef(ArraysRef):
    """Emitter as compiled code takes it (replay/engine/structs.py)."""


@njit(cache=True)
def _new_emitter_ref(*arrays):  # noqa: ANN002, ANN201
    return _EmitterProxy(*arrays)


class Emitter(ArrayStruct, _EmitterFields):
    """The emitted events' columns; compiled code gets it as one pointer."""

    _new_ref = staticmethod(_new_emitter_ref)


def new_emitter(capacity: int) -> Emitter:
    """Room for `capacity` events. Left uninitialised: emit() writes every field of the rows
    it uses, so pages past the last event are never touched (a sweep point stays light)."""
    mk = lambda: np.empty(capacity, np.int64)  # noqa: E731
    return Emitter(mk(), mk(), mk(), mk(), mk(), mk(), mk(), mk(), mk(), mk(),
                   np.zeros(2, np.int64))


@njit(cache=True, _nrt=False)
def emit(out, ev, pfn, order, mt, cpu, refill, ford, fmt, chown, req):
    i = out.n[0]
    if i >= out.ev.shape[0]:
        out.n[1] = 1
        return
    out.ev[i] = ev
    out.pfn[i] = pfn
    out.order[i] = order
    out.mt[i] = mt
    out.cpu[i] = cpu
    out.refill[i] = refill
    out.ford[i] = ford
    out.fmt[i] = fmt
    out.chown[i] = chown
    out.req[i] = req
    out.n[0] = i + 1


# ---- allocation ------------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def __rmqueue_smallest(st, z, order, mt, out, cpu, req):
    """Find a page of the appropriate size in the preferred list; split it with expand()."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    for o in range(order, MAX_ORDER):
        page = st.fl_head[z, o, mt]
        if page == NIL:
            continue
        del_page_from_free_list(st, z, page)  # NR_FREE_PAGES: the caller's job
        expand(st, z, page, order, o, mt)
        refill = 1 if (pcp_allowed_order(order, pbo) and mt < MIGRATE_PCPTYPES) else 0
        emit(out, EV_ZONE_LOCKED, page, order, mt, cpu, refill, -1, -1, -1, req)
        return page
    return -1


@njit(cache=True, _nrt=False)
def can_steal_fallback(st, order, start_mt):
    """can_steal_fallback(): take the whole pageblock when the block is large or the request
    is not movable. `order` is the fallback block's order, not the request's."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    if st.config[CFG_FALLBACK_POLICY] == FALLBACK_NO_WHOLE_BLOCK:
        return order >= pbo
    if order >= pbo:
        return True
    if (order >= pbo // 2 or start_mt == MIGRATE_RECLAIMABLE or start_mt == MIGRATE_UNMOVABLE
            or st.config[CFG_MOBILITY] == 0):
        return True
    return False


@njit(cache=True, _nrt=False)
def find_suitable_fallback(st, z, order, start_mt):
    """find_suitable_fallback(): the first fallback type with a free block at this order;
    returns (fallback type or -1, can_steal)."""
    total = 0
    for m in range(5):
        total += st.fl_len[z, order, m]
    if total == 0:
        return -1, False
    for i in range(2):
        fmt = FALLBACKS[start_mt, i]
        if fmt < 0:
            return -1, False
        if st.fl_head[z, order, fmt] == NIL:
            continue
        return fmt, can_steal_fallback(st, order, start_mt)
    return -1, False


@njit(cache=True, _nrt=False)
def boost_watermark(st, z):
    """boost_watermark(): a fragmenting steal raises the zone's watermarks for a while."""
    factor = st.config[CFG_BOOST_FACTOR]
    pb = 1 << st.config[CFG_PAGEBLOCK_ORDER]
    if factor == 0 or pb * 4 > st.zone_param[z, ZP_MANAGED]:
        return False
    max_boost = st.zone_param[z, ZP_HIGH] * factor // 10000
    if max_boost == 0:
        return False
    max_boost = max(pb, max_boost)
    st.zone_param[z, ZP_BOOST] = min(st.zone_param[z, ZP_BOOST] + pb, max_boost)
    return True


@njit(cache=True, _nrt=False)
def count_movable_pages(st, start, end):
    """move_freepages_block()'s movable_pages: allocated pages that are LRU or movable (the
    model's record of the requested type, or kpageflags' LRU bit for older pages)."""
    n = 0
    p = start
    while p < end:
        s = st.pg_state[p]
        if s == PG_ALLOC:
            if st.pg_mt[p] == MIGRATE_MOVABLE:
                n += 1 << st.pg_order[p]
            p += 1 << st.pg_order[p]
            continue
        if s == PG_BUDDY or s == PG_PCP:  # free and pcp blocks count as neither
            p += 1 << st.pg_order[p]
            continue
        if s == PG_NONE and st.pg_mt[p] == MIGRATE_MOVABLE:
            n += 1
        p += 1
    return n


@njit(cache=True, _nrt=False)
def steal_suitable_fallback(st, z, page, alloc_flags, start_mt, whole_block, current_order):
    """steal_suitable_fallback(): move this block, or every free block of its pageblock, to
    start_mt's lists; re-type the pageblock when at least half of it is free or alike."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    old = st.pb_mt[page >> pbo]
    if old == MIGRATE_HIGHATOMIC:
        move_to_free_list_tail(st, z, page, start_mt)
        return
    if current_order >= pbo:
        change_pageblock_range(st, page, current_order, start_mt)
        move_to_free_list_tail(st, z, page, start_mt)
        return
    if boost_watermark(st, z) and (alloc_flags & ALLOC_KSWAPD):
        st.zone_param[z, ZP_FLAGS] |= ZONE_BOOSTED_WATERMARK
    if not whole_block:
        move_to_free_list_tail(st, z, page, start_mt)
        return
    free_pages, start, end = move_freepages_block(st, z, page, start_mt)
    if free_pages == 0:  # the pageblock crosses the zone's end
        move_to_free_list_tail(st, z, page, start_mt)
        return
    movable = count_movable_pages(st, start, end)
    if start_mt == MIGRATE_MOVABLE:
        alike = movable
    elif old == MIGRATE_MOVABLE:
        alike = (1 << pbo) - free_pages - movable
    else:
        alike = 0
    if free_pages + alike >= (1 << (pbo - 1)) or st.config[CFG_MOBILITY] == 0:
        st.pb_mt[page >> pbo] = start_mt


@njit(cache=True, _nrt=False)
def __rmqueue_fallback(st, z, order, start_mt, alloc_flags, out, cpu, req, counters):
    """__rmqueue_fallback(): steal the largest suitable block of another type (or, for movable
    requests that cannot steal, the smallest), emitting mm_page_alloc_extfrag."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    min_order = order
    if (alloc_flags & ALLOC_NOFRAGMENT) and order < pbo:
        min_order = pbo
    if st.config[CFG_FALLBACK_POLICY] == FALLBACK_NONE and order < pbo:
        min_order = pbo
    found = -1
    fmt = -1
    can_steal = False
    for current in range(MAX_ORDER - 1, min_order - 1, -1):
        fmt, can_steal = find_suitable_fallback(st, z, current, start_mt)
        if fmt == -1:
            continue
        if (not can_steal) and start_mt == MIGRATE_MOVABLE and current > order:
            # find_smallest: a movable request that cannot steal takes the smallest block
            for c2 in range(order, MAX_ORDER):
                fmt, can_steal = find_suitable_fallback(st, z, c2, start_mt)
                if fmt != -1:
                    found = c2
                    break
        else:
            found = current
        break
    if found < 0 or fmt < 0:
        return False
    page = st.fl_head[z, found, fmt]
    steal_suitable_fallback(st, z, page, alloc_flags, start_mt, can_steal, found)
    chown = 1 if st.pb_mt[page >> pbo] == start_mt else 0
    frag = 1 if found < pbo else 0
    emit(out, EV_EXTFRAG, page, order, start_mt, cpu, -1, found, fmt, chown, req)
    counters[S_FALLBACKS] += 1
    counters[S_FRAG] += frag
    counters[S_CHOWN] += chown
    return True


@njit(cache=True, _nrt=False)
def prep_move_freepages_block(st, z, page):
    """prep_move_freepages_block() (6.12 page_alloc.c:1722): (False, ...) unless the whole
    pageblock lies in the zone; else (True, start, free pages, movable pages)."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    start = (page >> pbo) << pbo
    end = start + (1 << pbo)
    if start < st.zone_param[z, ZP_START] or end > st.zone_param[z, ZP_END]:
        return False, start, 0, 0
    free = 0
    p = start
    while p < end:
        if st.pg_state[p] == PG_BUDDY:
            free += 1 << st.pg_order[p]
            p += 1 << st.pg_order[p]
        else:
            p += 1
    return True, start, free, count_movable_pages(st, start, end)


@njit(cache=True, _nrt=False)
def try_to_steal_block(st, z, page, current_order, order, start_mt, alloc_flags, out, cpu,
                       req):
    """try_to_steal_block() (6.12 page_alloc.c:1955): a block of pageblock_order or more is
    claimed whole (re-typed, split with the rest on start_mt's lists, no zone_locked); a
    smaller one's pageblock is claimed iff free + alike pages reach half of it, then
    __rmqueue_smallest takes from it. Nothing moves when the claim fails."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    block_type = st.pb_mt[page >> pbo]
    if block_type == MIGRATE_HIGHATOMIC:
        return -1
    if current_order >= pbo:
        del_page_from_free_list(st, z, page)
        change_pageblock_range(st, page, current_order, start_mt)
        expand(st, z, page, order, current_order, start_mt)
        return page
    if boost_watermark(st, z) and (alloc_flags & ALLOC_KSWAPD):
        st.zone_param[z, ZP_FLAGS] |= ZONE_BOOSTED_WATERMARK
    ok, start, free_pages, movable = prep_move_freepages_block(st, z, page)
    if not ok:
        return -1
    if start_mt == MIGRATE_MOVABLE:
        alike = movable
    elif block_type == MIGRATE_MOVABLE:
        alike = (1 << pbo) - free_pages - movable
    else:
        alike = 0
    if free_pages + alike >= (1 << (pbo - 1)) or st.config[CFG_MOBILITY] == 0:
        move_freepages(st, z, start, start + (1 << pbo), start_mt)  # __move_freepages_block
        st.pb_mt[page >> pbo] = start_mt
        return __rmqueue_smallest(st, z, order, start_mt, out, cpu, req)
    return -1


@njit(cache=True, _nrt=False)
def emit_extfrag(st, page, order, current_order, start_mt, fmt, out, cpu, req, counters):
    """trace_mm_page_alloc_extfrag(): change_ownership and fragmenting as the event computes
    them (the page's pageblock type now; the fallback block below pageblock_order)."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    chown = 1 if st.pb_mt[page >> pbo] == start_mt else 0
    emit(out, EV_EXTFRAG, page, order, start_mt, cpu, -1, current_order, fmt, chown, req)
    counters[S_FALLBACKS] += 1
    counters[S_FRAG] += 1 if current_order < pbo else 0
    counters[S_CHOWN] += chown


@njit(cache=True, _nrt=False)
def __rmqueue_claim(st, z, order, start_mt, alloc_flags, out, cpu, req, counters):
    """__rmqueue_claim() (6.12 page_alloc.c:2217): from the largest order down, try to claim
    the pageblock of the first fallback type's head block; the first order where no claim
    is allowed (a movable request below order 4) ends the search."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    min_order = order
    if order < pbo and ((alloc_flags & ALLOC_NOFRAGMENT)
                        or st.config[CFG_FALLBACK_POLICY] == FALLBACK_NONE):
        min_order = pbo
    for current in range(MAX_ORDER - 1, min_order - 1, -1):
        fmt, can_steal = find_suitable_fallback(st, z, current, start_mt)
        if fmt == -1:
            continue
        if not can_steal:
            break
        page = try_to_steal_block(st, z, st.fl_head[z, current, fmt], current, order, start_mt,
                                  alloc_flags, out, cpu, req)
        if page >= 0:
            emit_extfrag(st, page, order, current, start_mt, fmt, out, cpu, req, counters)
            return page
    return -1


@njit(cache=True, _nrt=False)
def __rmqueue_steal(st, z, order, start_mt, out, cpu, req, counters):
    """__rmqueue_steal() (6.12 page_alloc.c:2269): the smallest fallback block, split with
    its rest left on its own pageblock's lists; the pageblock keeps its type."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    for current in range(order, MAX_ORDER):
        if current < pbo and st.config[CFG_FALLBACK_POLICY] == FALLBACK_NONE:
            continue
        fmt, _ = find_suitable_fallback(st, z, current, start_mt)
        if fmt == -1:
            continue
        page = st.fl_head[z, current, fmt]
        del_page_from_free_list(st, z, page)  # page_del_and_expand()
        expand(st, z, page, order, current, fmt)
        emit_extfrag(st, page, order, current, start_mt, fmt, out, cpu, req, counters)
        return page
    return -1


@njit(cache=True, _nrt=False)
def __rmqueue(st, z, order, mt, alloc_flags, mode, out, cpu, req, counters):
    """__rmqueue(): the preferred list, else a fallback type. 6.1: __rmqueue_fallback steals
    and the search restarts. 6.12: claim, else steal, from where `mode` says the previous
    block of this refill was found (returns the page and the new mode)."""
    if st.config[CFG_FALLBACK_RULE] == FALLBACK_CLAIM_STEAL:
        if mode == RMQUEUE_NORMAL:
            page = __rmqueue_smallest(st, z, order, mt, out, cpu, req)
            if page >= 0:
                return page, mode
        if mode <= RMQUEUE_CLAIM:
            page = __rmqueue_claim(st, z, order, mt, alloc_flags, out, cpu, req, counters)
            if page >= 0:
                return page, RMQUEUE_NORMAL
        if not (alloc_flags & ALLOC_NOFRAGMENT):
            page = __rmqueue_steal(st, z, order, mt, out, cpu, req, counters)
            if page >= 0:
                return page, RMQUEUE_STEAL
        return -1, mode
    while True:
        page = __rmqueue_smallest(st, z, order, mt, out, cpu, req)
        if page >= 0:
            return page, mode
        if not __rmqueue_fallback(st, z, order, mt, alloc_flags, out, cpu, req, counters):
            return -1, mode


@njit(cache=True, _nrt=False)
def rmqueue_bulk(st, z, order, count, mt, alloc_flags, cpu, out, req, counters):
    """rmqueue_bulk(): `count` blocks onto the pcp list's tail, in the order they came off
    (one rmqueue_mode for the whole refill)."""
    got = 0
    mode = RMQUEUE_NORMAL
    for _ in range(count):
        page, mode = __rmqueue(st, z, order, mt, alloc_flags, mode, out, cpu, req, counters)
        if page < 0:
            break
        st.nr_free_pages[z] -= 1 << order
        pcp_add(st, cpu, z, page, order, mt, True)
        got += 1
    return got


@njit(cache=True, _nrt=False)
def pcp_high_clamped(st, cpu, z):
    """pcp->high = clamp(pcp->high, high_min, high_max), as 6.12 reads it."""
    high = min(max(st.pcp_high[cpu, z], st.pcp_high_min[cpu, z]), st.pcp_high_max[cpu, z])
    st.pcp_high[cpu, z] = high
    return high


@njit(cache=True, _nrt=False)
def nr_pcp_alloc(st, cpu, z, order):
    """nr_pcp_alloc() (6.12 page_alloc.c:3021): batch << alloc_factor pages for order 0
    (alloc_factor grows on each refill with no free between), capped by high - count - batch;
    pcp->high grows by the refill unless the zone is below its high watermark."""
    base = st.pcp_batch[cpu, z]
    high = pcp_high_clamped(st, cpu, z)
    if high < base:
        return 1
    batch = base if order else base << st.pcp_alloc_factor[cpu, z]
    if (st.pcp_high_min[cpu, z] != st.pcp_high_max[cpu, z]
            and not (st.zone_param[z, ZP_FLAGS] & ZONE_BELOW_HIGH)):
        high = min(high + batch, st.pcp_high_max[cpu, z])
        st.pcp_high[cpu, z] = high
    if order == 0:
        max_nr = max(high - st.pcp_count[cpu, z] - base, base)
        if batch <= max_nr and st.pcp_alloc_factor[cpu, z] < PCP_BATCH_SCALE_MAX:
            st.pcp_alloc_factor[cpu, z] += 1
        batch = min(batch, max_nr)
    if batch > 1:
        batch = max(batch >> order, 2)
    return batch


@njit(cache=True, _nrt=False)
def rmqueue_pcplist(st, z, order, mt, alloc_flags, cpu, out, req, counters):
    """rmqueue_pcplist(): the head of this CPU's list, refilled if empty (6.1: batch >> order
    blocks; 6.12: nr_pcp_alloc's). Each allocation halves free_factor (6.1) / free_count."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    st.pcp_free_factor[cpu, z] >>= 1
    st.pcp_free_count[cpu, z] >>= 1
    lmt = mt if mt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE
    pidx = order_to_pindex(lmt, order, pbo)
    if st.pcp_head[cpu, z, pidx] == NIL:
        if st.config[CFG_PCP_REFILL] != 0:
            batch = nr_pcp_alloc(st, cpu, z, order)
        else:
            batch = st.pcp_batch[cpu, z]
            if batch > 1:
                batch = max(batch >> order, 2)
        got = rmqueue_bulk(st, z, order, batch, mt, alloc_flags, cpu, out, req, counters)
        counters[S_REFILLS] += 1
        counters[S_REFILL_BLOCKS] += got
        if got == 0:
            return -1
    else:
        counters[S_PCPHIT] += 1
    page = st.pcp_head[cpu, z, pidx]
    _unlink(st.pcp_head, st.pcp_tail, (int(cpu), int(z), int(pidx)), st, page)
    st.pcp_count[cpu, z] -= 1 << order
    st.pg_cpu[page] = -1
    return page


@njit(cache=True, _nrt=False)
def rmqueue_buddy(st, z, order, alloc_flags, mt, cpu, out, req, counters):
    """rmqueue_buddy(): the HIGHATOMIC reserve first for ALLOC_HIGHATOMIC, then __rmqueue."""
    page = -1
    if alloc_flags & ALLOC_HIGHATOMIC:
        page = __rmqueue_smallest(st, z, order, MIGRATE_HIGHATOMIC, out, cpu, req)
    if page < 0:
        page, _ = __rmqueue(st, z, order, mt, alloc_flags, RMQUEUE_NORMAL, out, cpu, req,
                            counters)
        if page < 0 and (alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK)):
            page = __rmqueue_smallest(st, z, order, MIGRATE_HIGHATOMIC, out, cpu, req)
    if page >= 0:
        st.nr_free_pages[z] -= 1 << order
        counters[S_BUDDY] += 1
    return page


@njit(cache=True, _nrt=False)
def rmqueue(st, z, order, alloc_flags, mt, cpu, out, req, counters):
    """rmqueue(): pcp for pcp orders, else (or on pcp failure) the buddy lists."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    page = -1
    if pcp_allowed_order(order, pbo):
        page = rmqueue_pcplist(st, z, order, mt, alloc_flags, cpu, out, req, counters)
    if page < 0:
        page = rmqueue_buddy(st, z, order, alloc_flags, mt, cpu, out, req, counters)
    # ZONE_BOOSTED_WATERMARK: kswapd is woken (6.12: by an ALLOC_KSWAPD allocation only); the
    # model lets the boost lapse at once
    if (st.zone_param[z, ZP_FLAGS] & ZONE_BOOSTED_WATERMARK) and (
            st.config[CFG_BOOST_WAKE_KSWAPD] == 0 or (alloc_flags & ALLOC_KSWAPD)):
        st.zone_param[z, ZP_FLAGS] &= ~ZONE_BOOSTED_WATERMARK
        st.zone_param[z, ZP_BOOST] = 0
    return page


@njit(cache=True, _nrt=False)
def zone_watermark_ok(st, z, order, mark, highest_zoneidx, alloc_flags):
    """zone_watermark_ok(): __zone_watermark_ok() with the zone's NR_FREE_PAGES."""
    return __zone_watermark_ok(st, z, order, mark, highest_zoneidx, alloc_flags,
                               st.nr_free_pages[z])


@njit(cache=True, _nrt=False)
def __zone_watermark_ok(st, z, order, mark, highest_zoneidx, alloc_flags, free_pages):
    """__zone_watermark_ok(): enough free pages above the mark and the lowmem reserve, and for
    order > 0 a free block big enough on a list this request may use."""
    free = free_pages - ((1 << order) - 1)
    if not (alloc_flags & ALLOC_RESERVES):
        if st.config[CFG_HIGHATOMIC_WMARK] != 0:
            free -= nr_free_highatomic(st, z)
        else:
            free -= st.zone_param[z, ZP_RESERVED_HA]
    mn = mark
    if alloc_flags & ALLOC_MIN_RESERVE:
        mn -= mn // 2
        if alloc_flags & ALLOC_NON_BLOCK:  # GFP_ATOMIC: more than __GFP_HIGH alone
            mn -= mn // 4
    if alloc_flags & ALLOC_OOM:
        mn -= mn // 2
    if free <= mn + st.lowmem_reserve[z, highest_zoneidx]:
        return False
    if order == 0:
        return True
    for o in range(order, MAX_ORDER):
        for m in range(MIGRATE_PCPTYPES):
            if st.fl_head[z, o, m] != NIL:
                return True
        if (alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM)) and st.fl_head[z, o, 3] != NIL:
            return True
    return False


@njit(cache=True, _nrt=False)
def nr_free_highatomic(st, z):
    """zone->nr_free_highatomic (6.12): pages free on the HIGHATOMIC lists."""
    n = 0
    for o in range(MAX_ORDER):
        n += st.fl_len[z, o, MIGRATE_HIGHATOMIC] << o
    return n


@njit(cache=True, _nrt=False)
def zone_watermark_fast(st, z, order, mark, highest, alloc_flags, gfp):
    """zone_watermark_fast(): __zone_watermark_ok, else for order 0 at the min mark a
    recheck without the boost for __GFP_ATOMIC (6.1) / ALLOC_MIN_RESERVE (6.12) requests."""
    if zone_watermark_ok(st, z, order, mark, highest, alloc_flags):
        return True
    if st.config[CFG_WMARK_FAST_KEY] != 0:
        keyed = (alloc_flags & ALLOC_MIN_RESERVE) != 0
    else:
        keyed = (gfp & __GFP_ATOMIC) != 0
    return (order == 0 and keyed and st.zone_param[z, ZP_BOOST] > 0
            and (alloc_flags & ALLOC_WMARK_MASK) == ALLOC_WMARK_MIN
            and zone_watermark_ok(st, z, order, st.zone_param[z, ZP_MIN], highest, alloc_flags))


@njit(cache=True, _nrt=False)
def wmark_of(st, z, alloc_flags):
    w = alloc_flags & ALLOC_WMARK_MASK
    base = st.zone_param[z, ZP_MIN] if w == ALLOC_WMARK_MIN else (
        st.zone_param[z, ZP_LOW] if w == ALLOC_WMARK_LOW else st.zone_param[z, ZP_HIGH])
    return base + st.zone_param[z, ZP_BOOST]


@njit(cache=True, _nrt=False)
def zone_above_high(st, z, order, highest, alloc_flags, gfp):
    """6.12 get_page_from_freelist (page_alloc.c:3499-3508): unless ZONE_BELOW_HIGH is set,
    a zone above its high watermark is used at once; one below it gets the flag (which
    shrinks pcp->high on frees) and the usual check. Always False under 6.1's rules."""
    if st.config[CFG_BELOW_HIGH] == 0 or (st.zone_param[z, ZP_FLAGS] & ZONE_BELOW_HIGH):
        return False
    mark = st.zone_param[z, ZP_HIGH] + st.zone_param[z, ZP_BOOST]
    if zone_watermark_fast(st, z, order, mark, highest, alloc_flags, gfp):
        return True
    st.zone_param[z, ZP_FLAGS] |= ZONE_BELOW_HIGH
    return False


@njit(cache=True, _nrt=False)
def node_has_dma32(st, node):
    """alloc_flags_nofragment(): on NUMA, Normal gets NOFRAGMENT only if its node has DMA32
    (on one node, DMA32 is assumed)."""
    multi_node = False
    for z in range(st.zone_type.shape[0]):
        if st.zone_node[z] != 0:
            multi_node = True
        if st.zone_node[z] == node and st.zone_type[z] == ZONE_DMA32:
            return True
    return not multi_node


@njit(cache=True, _nrt=False)
def gfp_zone(st, gfp):
    """gfp_zone(): the highest zone type the request may use (GFP_ZONE_TABLE of the arch)."""
    return st.gfpzone[gfp & 0xF]


@njit(cache=True, _nrt=False)
def get_page_from_freelist(st, zonelist, nz, order, alloc_flags, highest, mt, cpu, out, req,
                           counters, no_watermarks, gfp):
    """get_page_from_freelist(): the zonelist from the preferred zone down; a remote node while
    ALLOC_NOFRAGMENT drops the flag and restarts the scan."""
    local_node = st.zone_node[zonelist[0]] if nz > 0 else 0
    while True:
        restart = False
        for k in range(nz):
            z = zonelist[k]
            if (alloc_flags & ALLOC_NOFRAGMENT) and st.zone_node[z] != local_node and k > 0:
                alloc_flags &= ~ALLOC_NOFRAGMENT
                restart = True
                break
            if not no_watermarks and not zone_above_high(st, z, order, highest, alloc_flags, gfp):
                mark = wmark_of(st, z, alloc_flags)
                if not zone_watermark_fast(st, z, order, mark, highest, alloc_flags, gfp):
                    continue
            page = rmqueue(st, z, order, alloc_flags, mt, cpu, out, req, counters)
            if page >= 0:
                if st.zone_node[z] != local_node:
                    counters[S_REMOTE] += 1
                if k > 0 and st.zone_node[z] == local_node:
                    counters[S_LOWERZONE] += 1
                if alloc_flags & ALLOC_HIGHATOMIC and reserve_highatomic_pageblock(st, z, page,
                                                                                  order):
                    counters[S_HIGHATOMIC] += 1
                return page, z
        if restart:
            continue
        if alloc_flags & ALLOC_NOFRAGMENT:
            alloc_flags &= ~ALLOC_NOFRAGMENT
            counters[S_NOFRAG_RETRY] += 1
            continue
        return -1, -1


@njit(cache=True, _nrt=False)
def reserve_highatomic_pageblock(st, z, page, order):
    """reserve_highatomic_pageblock(): up to ~1% of the zone becomes the HIGHATOMIC reserve
    (6.1: managed/100 + a pageblock; 6.12: managed/100 aligned to pageblocks, none in a zone
    under 100 pageblocks, whole-zone pageblocks only, a THP's pageblocks all at once).
    Returns whether a pageblock was reserved."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    reserved = st.zone_param[z, ZP_RESERVED_HA]
    pb = 1 << pbo
    if st.config[CFG_HIGHATOMIC_LIMIT] != 0:
        one_pct = st.zone_param[z, ZP_MANAGED] // 100
        if one_pct < pb or reserved >= (one_pct + pb - 1) // pb * pb:
            return False
        old = st.pb_mt[page >> pbo]
        if old >= MIGRATE_PCPTYPES:
            return False
        if order >= pbo:
            change_pageblock_range(st, page, order, MIGRATE_HIGHATOMIC)
            st.zone_param[z, ZP_RESERVED_HA] += 1 << order
        else:
            ok, start, _, _ = prep_move_freepages_block(st, z, page)
            if not ok:
                return False
            move_freepages(st, z, start, start + pb, MIGRATE_HIGHATOMIC)
            st.pb_mt[page >> pbo] = MIGRATE_HIGHATOMIC
            st.zone_param[z, ZP_RESERVED_HA] += pb
        return True
    max_managed = st.zone_param[z, ZP_MANAGED] // 100 + pb
    if reserved >= max_managed:
        return False
    old = st.pb_mt[page >> pbo]
    if old < MIGRATE_PCPTYPES:
        st.zone_param[z, ZP_RESERVED_HA] += 1 << pbo
        st.pb_mt[page >> pbo] = MIGRATE_HIGHATOMIC
        start = (page >> pbo) << pbo
        p = start
        while p < start + (1 << pbo):
            if st.pg_state[p] == 1:
                o = st.pg_order[p]
                move_to_free_list_tail(st, z, p, MIGRATE_HIGHATOMIC)
                p += 1 << o
            else:
                p += 1
        return True
    return False


def build_zonelists(zone_node: np.ndarray, zone_type: np.ndarray, nodes: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """zonelists[node, highest_zoneidx]: the node's zones from the highest allowed type down,
    then the other nodes' zones in node order (build_zonelists(), without NUMA distances)."""
    nzones = len(zone_node)
    lists = np.full((nodes, NR_ZONE_TYPES, max(nzones, 1)), -1, np.int64)
    lens = np.zeros((nodes, NR_ZONE_TYPES), np.int64)
    for node in range(nodes):
        for highest in range(NR_ZONE_TYPES):
            k = 0
            for other in [node] + [n for n in range(nodes) if n != node]:
                for t in range(highest, -1, -1):
                    for z in range(nzones):
                        if zone_node[z] == other and zone_type[z] == t:
                            lists[node, highest, k] = z
                            k += 1
            lens[node, highest] = k
    return lists, lens


# ---- free --------------------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def nr_pcp_free(st, cpu, z, high, batch, free_high):
    """nr_pcp_free(): how many pages to drain. 6.1: batch << free_factor (doubling on repeated
    frees), everything when free_high. 6.12: free_count (the consecutive freed pages), at most
    batch << 5 when free_high. Both clamped to [batch, high - batch]."""
    if st.config[CFG_PCP_FREE] != 0:
        if free_high:
            return min(st.pcp_count[cpu, z], batch << PCP_BATCH_SCALE_MAX)
        if high < batch:
            return 1
        return min(max(st.pcp_free_count[cpu, z], batch), high - batch)  # clamp_t()
    if free_high:
        return st.pcp_count[cpu, z]
    if high < batch:
        return 1
    min_nr = batch
    max_nr = high - batch
    n = batch << st.pcp_free_factor[cpu, z]
    if n < max_nr and st.pcp_free_factor[cpu, z] < PCP_BATCH_SCALE_MAX:
        st.pcp_free_factor[cpu, z] += 1
    return min(max(n, min_nr), max_nr)  # clamp()


@njit(cache=True, _nrt=False)
def nr_pcp_high(st, cpu, z, batch, free_high):
    """nr_pcp_high(): the count at which a free drains. 6.1: the static high (0 when
    free_high; batch << 2 under reclaim). 6.12 (page_alloc.c:2628): also tunes pcp->high:
    down by batch << 5 on free_high, by the free run while ZONE_BELOW_HIGH (then draining
    whatever exceeds high_min), up to hold the free run when it overflows."""
    if st.config[CFG_PCP_FREE] == 0:
        high = st.pcp_high[cpu, z]
        if high == 0 or free_high:
            return 0
        if st.zone_param[z, ZP_FLAGS] & ZONE_RECLAIM_ACTIVE:
            return min(batch << 2, high)
        return high
    high_min = st.pcp_high_min[cpu, z]
    high_max = st.pcp_high_max[cpu, z]
    high = pcp_high_clamped(st, cpu, z)
    if high == 0:
        return 0
    if free_high:
        st.pcp_high[cpu, z] = max(high - (batch << PCP_BATCH_SCALE_MAX), high_min)
        return 0
    flags = st.zone_param[z, ZP_FLAGS]
    if flags & ZONE_RECLAIM_ACTIVE:
        st.pcp_high[cpu, z] = max(high - max(st.pcp_free_count[cpu, z], batch), high_min)
        return min(batch << 2, st.pcp_high[cpu, z])
    if high_min == high_max:
        return high
    if flags & ZONE_BELOW_HIGH:
        st.pcp_high[cpu, z] = max(high - max(st.pcp_free_count[cpu, z], batch), high_min)
        return max(st.pcp_count[cpu, z], high_min)
    if st.pcp_count[cpu, z] >= high:
        need_high = st.pcp_free_count[cpu, z] + batch
        if st.pcp_high[cpu, z] < need_high:
            st.pcp_high[cpu, z] = min(max(need_high, high_min), high_max)
    return high


@njit(cache=True, _nrt=False)
def free_pcppages_bulk(st, z, count, cpu, pindex, out, req, counters):
    """free_pcppages_bulk(): round-robin over the lists from the freed page's, each drained
    from its tail (oldest first) into __free_one_page, on the list of the type cached at free
    time (6.1) or the pageblock's type now (6.12)."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    reread = st.config[CFG_LIST_IS_PAGEBLOCK] != 0
    count = min(st.pcp_count[cpu, z], count)
    pindex = pindex - 1
    min_p = 0
    max_p = NR_PCP_LISTS - 1
    drained_any = False
    while count > 0:
        while True:
            pindex += 1
            if pindex > max_p:
                pindex = min_p
            if st.pcp_head[cpu, z, pindex] != NIL:
                break
            if pindex == max_p:
                max_p -= 1
            if pindex == min_p:
                min_p += 1
            if min_p > max_p:
                if drained_any:
                    counters[S_DRAINS] += 1
                return
        order = pindex // 3 if pindex < 12 else pbo
        while True:
            page = st.pcp_tail[cpu, z, pindex]
            mt = st.pb_mt[page >> pbo] if reread else st.pg_mt[page]
            _unlink(st.pcp_head, st.pcp_tail, (int(cpu), int(z), int(pindex)), st, page)
            st.pg_state[page] = PG_NONE
            st.pg_cpu[page] = -1
            count -= 1 << order
            st.pcp_count[cpu, z] -= 1 << order
            __free_one_page(st, z, page, order, mt, False)
            emit(out, EV_PCPU_DRAIN, page, order, mt, cpu, -1, -1, -1, -1, req)
            counters[S_DRAINED] += 1 << order
            drained_any = True
            if count <= 0 or st.pcp_head[cpu, z, pindex] == NIL:
                break
    if drained_any:
        counters[S_DRAINS] += 1


@njit(cache=True, _nrt=False)
def drain_pages_zone(st, cpu, z, out, req, counters):
    """drain_pages_zone(): everything on this CPU's pcp lists of the zone goes back."""
    if st.pcp_count[cpu, z] > 0:
        free_pcppages_bulk(st, z, st.pcp_count[cpu, z], cpu, 0, out, req, counters)


@njit(cache=True, _nrt=False)
def drain_all_pages(st, zone, out, req, counters):
    """drain_all_pages(): every CPU's pcp lists of the zone (-1: of every zone)."""
    for cpu in range(st.pcp_count.shape[0]):
        for z in range(st.pcp_count.shape[1]):
            if zone < 0 or z == zone:
                drain_pages_zone(st, cpu, z, out, req, counters)


@njit(cache=True, _nrt=False)
def free_unref_page_commit(st, z, page, order, mt, cpu, out, req, counters):
    """free_unref_page_commit(): onto this CPU's list head; drain when the list reaches high.
    6.1 (L3469): free_high when free_factor > 0 and order 1-3. 6.12 (page_alloc.c:2676):
    alloc_factor halves, free_high needs two consecutive order 1-3 frees and a free run of a
    batch, free_count grows with each free; a drain that leaves the zone above its high
    watermark clears ZONE_BELOW_HIGH."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    lmt = mt if mt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE
    tuned = st.config[CFG_FREE_HIGH] != 0
    if tuned:
        st.pcp_alloc_factor[cpu, z] >>= 1
    pcp_add(st, cpu, z, page, order, mt, False)
    counters[S_PCPFREES] += 1
    batch = st.pcp_batch[cpu, z]
    if tuned:
        flags = st.pcp_flags[cpu, z]
        free_high = False
        if 1 <= order <= 3:
            free_high = (st.pcp_free_count[cpu, z] >= batch
                         and (flags & PCPF_PREV_FREE_HIGH_ORDER) != 0
                         and ((flags & PCPF_FREE_HIGH_BATCH) == 0
                              or st.pcp_count[cpu, z] >= batch))
            st.pcp_flags[cpu, z] = flags | PCPF_PREV_FREE_HIGH_ORDER
        else:
            st.pcp_flags[cpu, z] = flags & ~PCPF_PREV_FREE_HIGH_ORDER
        if st.pcp_free_count[cpu, z] < (batch << PCP_BATCH_SCALE_MAX):
            st.pcp_free_count[cpu, z] += 1 << order
    else:
        free_high = st.pcp_free_factor[cpu, z] > 0 and 1 <= order <= 3
    high = nr_pcp_high(st, cpu, z, batch, free_high)
    if st.pcp_count[cpu, z] >= high:
        pindex = order_to_pindex(lmt, order, pbo)
        n = nr_pcp_free(st, cpu, z, high, batch, free_high)
        free_pcppages_bulk(st, z, n, cpu, pindex, out, req, counters)
        if ((st.zone_param[z, ZP_FLAGS] & ZONE_BELOW_HIGH)
                and zone_watermark_ok(st, z, 0, st.zone_param[z, ZP_HIGH]
                                      + st.zone_param[z, ZP_BOOST], ZONE_MOVABLE, 0)):
            st.zone_param[z, ZP_FLAGS] &= ~ZONE_BELOW_HIGH


@njit(cache=True, _nrt=False)
def free_unref_page(st, z, page, order, cpu, direct, out, req, counters):
    """free_unref_page(): onto this CPU's pcp list (free_unref_page_commit), or straight to
    the buddy lists for an isolated pageblock or a failed pcp trylock (`direct`)."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    mt = st.pb_mt[page >> pbo]
    if mt == MIGRATE_ISOLATE or direct:
        free_one_page(st, z, page, order)
        counters[S_DIRECTFREES] += 1
        return
    free_unref_page_commit(st, z, page, order, mt, cpu, out, req, counters)


@njit(cache=True, _nrt=False)
def decay_pcp_high(st, z, cpu, out, req, counters):
    """decay_pcp_high() (6.12 page_alloc.c:2412), from vmstat_update about once a second:
    pcp->high falls by an eighth (not below high_min, nor below count - batch << 5) and what
    the pcp holds above it is drained in batch-sized chunks from pindex 0."""
    high_min = st.pcp_high_min[cpu, z]
    batch = st.pcp_batch[cpu, z]
    high = st.pcp_high[cpu, z]
    if high > high_min:
        high = max(st.pcp_count[cpu, z] - (batch << PCP_BATCH_SCALE_MAX), high - (high >> 3),
                   high_min)
        st.pcp_high[cpu, z] = high
    to_drain = st.pcp_count[cpu, z] - high
    while to_drain > 0:
        n = min(to_drain, batch)
        free_pcppages_bulk(st, z, n, cpu, 0, out, req, counters)
        to_drain -= n


@njit(cache=True, _nrt=False)
def vmstat_update(st, cpu, out, req, counters):
    """vmstat_update() -> refresh_cpu_vm_stats(true): decay_pcp_high for every zone's pcp
    of the CPU (6.12; nothing under 6.1's rules)."""
    if st.config[CFG_PCP_FREE] == 0:
        return
    for z in range(st.pcp_count.shape[1]):
        decay_pcp_high(st, z, cpu, out, req, counters)


@njit(cache=True, _nrt=False)
def free_the_page(st, z, page, order, cpu, direct, out, req, counters):
    """free_the_page() / 6.12 free_unref_page(): pcp orders to free_unref_page, others
    straight to the buddy lists (free_one_page, split into pageblocks under 6.12)."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    emit(out, EV_FREE, page, order, -1, cpu, -1, -1, -1, -1, req)
    if pcp_allowed_order(order, pbo):
        free_unref_page(st, z, page, order, cpu, direct, out, req, counters)
    else:
        free_one_page(st, z, page, order)
        counters[S_DIRECTFREES] += 1
