"""__alloc_pages() and its slow path for the model (mm/page_alloc.c, 6.1:
__alloc_pages_slowpath, page_alloc.c:5097-5404).

The fast path at the low watermark; then, in the kernel's order and with its flags: wake
kswapd, retry at the min watermark, early async compaction for costly and non-movable high
orders, the retry loop (reserves, direct reclaim, direct compaction at rising priority,
should_reclaim_retry, should_compact_retry) and at last the OOM killer. The model cannot kill:
an allocation that fails every step is a failure (counted, logged with its event, order and
gfp); `__GFP_NOFAIL` ones are served ignoring the watermarks (counted).
"""

from __future__ import annotations

from replay.engine.compact_model import (
    COMPACT_COMPLETE,
    COMPACT_CONTENDED,
    COMPACT_CONTINUE,
    COMPACT_DEFERRED,
    COMPACT_PARTIAL_SKIPPED,
    COMPACT_PRIO_ASYNC,
    COMPACT_PRIO_SYNC_FULL,
    COMPACT_PRIO_SYNC_LIGHT,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    compaction_defer_reset,
    compaction_suitable,
    try_to_compact_pages,
)
from replay.engine.compaction import ZC_BLOCKSKIP_FLUSH
from replay.engine.jit import njit
from replay.engine.policy import (
    __GFP_DIRECT_RECLAIM,
    __GFP_HIGH,
    __GFP_KSWAPD_RECLAIM,
    __GFP_NOMEMALLOC,
    ALLOC_HIGHATOMIC,
    ALLOC_KSWAPD,
    ALLOC_MIN_RESERVE,
    ALLOC_NO_WATERMARKS,
    ALLOC_NOFRAGMENT,
    ALLOC_NON_BLOCK,
    ALLOC_WMARK_LOW,
    ALLOC_WMARK_MIN,
    S_MINWM,
    S_NOWM,
    ZONE_NORMAL,
    __zone_watermark_ok,
    drain_all_pages,
    get_page_from_freelist,
    gfp_zone,
    node_has_dma32,
)
from replay.engine.profile import CFG_COMPACTION
from replay.engine.slow_state import (
    VM_ALLOCSTALL,
    VM_COMPACT_FAIL,
    VM_COMPACT_STALL,
    VM_COMPACT_SUCCESS,
    VM_DRAIN_ALL,
    VM_OOM_KILL,
)
from replay.engine.state import ZP_MIN
from replay.engine.vmscan import MAX_RECLAIM_RETRIES, try_to_free_pages, wakeup_kswapd

__GFP_IO = 0x40
__GFP_ATOMIC = 0x200
__GFP_RETRY_MAYFAIL = 0x4000
__GFP_NOFAIL = 0x8000
__GFP_NORETRY = 0x10000
__GFP_MEMALLOC = 0x20000
__GFP_THISNODE = 0x200000
PAGE_ALLOC_COSTLY_ORDER = 3
MAX_COMPACT_RETRIES = 16
MIGRATE_MOVABLE = 1
SLOWPATH_LOOPS = 64  # the model's bound on the retry loop (the kernel's is the retry counters)


@njit(cache=True, _nrt=False)
def gfp_to_alloc_flags(gfp, order):
    """gfp_to_alloc_flags() (6.1.116+): the min watermark, __GFP_HIGH's reserve, kswapd; an
    allocation that cannot reclaim may dip further (ALLOC_NON_BLOCK) and a high-order atomic
    one into the HIGHATOMIC reserve."""
    alloc_flags = ALLOC_WMARK_MIN
    if gfp & __GFP_HIGH:
        alloc_flags |= ALLOC_MIN_RESERVE
    if gfp & __GFP_KSWAPD_RECLAIM:
        alloc_flags |= ALLOC_KSWAPD
    if not (gfp & __GFP_DIRECT_RECLAIM) and not (gfp & __GFP_NOMEMALLOC):
        alloc_flags |= ALLOC_NON_BLOCK
        if order > 0 and (alloc_flags & ALLOC_MIN_RESERVE):
            alloc_flags |= ALLOC_HIGHATOMIC
    return alloc_flags


@njit(cache=True, _nrt=False)
def wake_all_kswapds(st, sp, order, gfp, zonelist, nz, highest, cpu, out, req, counters):
    """wake_all_kswapds(): wakeup_kswapd() once per node of the zonelist."""
    last_node = -1
    for k in range(nz):
        z = zonelist[k]
        node = st.zone_node[z]
        if node != last_node:
            wakeup_kswapd(st, sp, z, gfp, order, highest, cpu, out, req, counters)
            last_node = node


@njit(cache=True, _nrt=False)
def __alloc_pages_direct_compact(st, sp, gfp, order, alloc_flags, zonelist, nz, highest, prio,
                                 mt, cpu, out, req, counters, prev_result):
    """__alloc_pages_direct_compact(): compact, then take the captured block or retry the
    freelists. Returns (page, zone, compact_result)."""
    if order == 0:
        return -1, -1, prev_result
    rc, page = try_to_compact_pages(st, sp, gfp, order, alloc_flags, zonelist, nz, highest,
                                    prio, mt, cpu, out, req, counters)
    if rc == COMPACT_SKIPPED:
        return -1, -1, rc
    sp.vm[VM_COMPACT_STALL] += 1
    z = -1
    if page >= 0:
        z = st.pg_zone[page]
    else:
        page, z = get_page_from_freelist(st, zonelist, nz, order, alloc_flags, highest, mt, cpu,
                                         out, req, counters, False, gfp)
    if page >= 0:
        sp.zc[z, ZC_BLOCKSKIP_FLUSH] = 0
        compaction_defer_reset(sp, z, order, True)
        sp.vm[VM_COMPACT_SUCCESS] += 1
        return page, z, rc
    sp.vm[VM_COMPACT_FAIL] += 1
    return -1, -1, rc


@njit(cache=True, _nrt=False)
def __alloc_pages_direct_reclaim(st, sp, gfp, order, alloc_flags, zonelist, nz, highest, mt,
                                 cpu, out, req, counters):
    """__alloc_pages_direct_reclaim(): reclaim, retry; once more after draining every pcp
    list. Returns (page, zone, progress)."""
    sp.vm[VM_ALLOCSTALL] += 1
    progress = try_to_free_pages(st, sp, zonelist, nz, order, highest, cpu, out, req, counters)
    if progress == 0:
        return -1, -1, 0
    page, z = get_page_from_freelist(st, zonelist, nz, order, alloc_flags, highest, mt, cpu,
                                     out, req, counters, False, gfp)
    if page < 0:
        sp.vm[VM_DRAIN_ALL] += 1
        drain_all_pages(st, -1, out, req, counters)
        page, z = get_page_from_freelist(st, zonelist, nz, order, alloc_flags, highest, mt,
                                         cpu, out, req, counters, False, gfp)
    return page, z, progress


@njit(cache=True, _nrt=False)
def should_reclaim_retry(st, sp, order, zonelist, nz, highest, alloc_flags, progress, loops):
    """should_reclaim_retry(): while some zone would meet the min watermark with all of its
    reclaimable (LRU) pages freed, up to MAX_RECLAIM_RETRIES loops without progress."""
    if progress and order <= PAGE_ALLOC_COSTLY_ORDER:
        loops = 0
    else:
        loops += 1
    if loops > MAX_RECLAIM_RETRIES:
        return False, loops
    for k in range(nz):
        z = zonelist[k]
        available = sp.zone_lru[z] + st.nr_free_pages[z]
        if __zone_watermark_ok(st, z, order, st.zone_param[z, ZP_MIN], highest, alloc_flags,
                               available):
            return True, loops
    return False, loops


@njit(cache=True, _nrt=False)
def compaction_zonelist_suitable(st, sp, order, alloc_flags, zonelist, nz, highest):
    for k in range(nz):
        if compaction_suitable(st, sp, zonelist[k], order, alloc_flags,
                               highest) == COMPACT_CONTINUE:
            return True
    return False


@njit(cache=True, _nrt=False)
def should_compact_retry(st, sp, order, alloc_flags, result, prio, retries, zonelist, nz,
                         highest):
    """should_compact_retry(): returns (retry, priority, retries). 6.1: failed (complete) or
    withdrawn (deferred, contended, partial) results raise the priority, a success retries up
    to MAX_COMPACT_RETRIES (a quarter for costly orders); 6.12 (page_alloc.c:3809): anything
    but skipped or success raises the priority."""
    if order == 0:
        return False, prio, retries
    if result == COMPACT_SUCCESS:
        retries += 1
    raise_prio = False
    if result == COMPACT_SKIPPED:  # compaction_needs_reclaim()
        return compaction_zonelist_suitable(st, sp, order, alloc_flags, zonelist, nz,
                                            highest), prio, retries
    if st.config[CFG_COMPACTION] != 0:
        raise_prio = result != COMPACT_SUCCESS
    else:
        raise_prio = (result == COMPACT_COMPLETE or result == COMPACT_DEFERRED
                      or result == COMPACT_CONTENDED or result == COMPACT_PARTIAL_SKIPPED)
    if not raise_prio:
        max_retries = MAX_COMPACT_RETRIES
        if order > PAGE_ALLOC_COSTLY_ORDER:
            max_retries //= 4
        if retries <= max_retries:
            return True, prio, retries
    min_priority = COMPACT_PRIO_SYNC_LIGHT if order > PAGE_ALLOC_COSTLY_ORDER else \
        COMPACT_PRIO_SYNC_FULL
    if prio > min_priority:
        return True, prio - 1, 0
    return False, prio, retries


@njit(cache=True, _nrt=False)
def __alloc_pages_slowpath(st, sp, gfp, order, mt, cpu, zonelist, nz, highest, out, req,  # noqa: PLR0912
                           counters):
    """__alloc_pages_slowpath(): returns (page, zone); (-1, -1) is a failure."""
    can_direct_reclaim = (gfp & __GFP_DIRECT_RECLAIM) != 0
    can_compact = (gfp & __GFP_IO) != 0
    costly = order > PAGE_ALLOC_COSTLY_ORDER
    if (gfp & (__GFP_ATOMIC | __GFP_DIRECT_RECLAIM)) == (__GFP_ATOMIC | __GFP_DIRECT_RECLAIM):
        gfp &= ~__GFP_ATOMIC
    compact_result = COMPACT_SKIPPED
    prio = COMPACT_PRIO_SYNC_LIGHT  # DEF_COMPACT_PRIORITY
    retries = 0
    loops = 0
    alloc_flags = gfp_to_alloc_flags(gfp, order)
    if alloc_flags & ALLOC_KSWAPD:
        wake_all_kswapds(st, sp, order, gfp, zonelist, nz, highest, cpu, out, req, counters)
    page, z = get_page_from_freelist(st, zonelist, nz, order, alloc_flags, highest, mt, cpu,
                                     out, req, counters, False, gfp)
    if page >= 0:
        counters[S_MINWM] += 1
        return page, z
    if can_direct_reclaim and can_compact and (costly or (order > 0 and mt != MIGRATE_MOVABLE)):
        page, z, compact_result = __alloc_pages_direct_compact(
            st, sp, gfp, order, alloc_flags, zonelist, nz, highest, COMPACT_PRIO_ASYNC, mt,
            cpu, out, req, counters, compact_result)
        if page >= 0:
            return page, z
        if costly and (gfp & __GFP_NORETRY):
            if compact_result == COMPACT_SKIPPED or compact_result == COMPACT_DEFERRED:
                return -1, -1
            if gfp & __GFP_THISNODE:
                return -1, -1
            prio = COMPACT_PRIO_ASYNC
    for _ in range(SLOWPATH_LOOPS):
        if alloc_flags & ALLOC_KSWAPD:
            wake_all_kswapds(st, sp, order, gfp, zonelist, nz, highest, cpu, out, req, counters)
        no_wmark = (gfp & __GFP_MEMALLOC) != 0 and not (gfp & __GFP_NOMEMALLOC)
        if no_wmark:
            alloc_flags = ALLOC_NO_WATERMARKS | (alloc_flags & ALLOC_KSWAPD)
        page, z = get_page_from_freelist(st, zonelist, nz, order, alloc_flags, highest, mt, cpu,
                                         out, req, counters, no_wmark, gfp)
        if page >= 0:
            if no_wmark:
                counters[S_NOWM] += 1
            return page, z
        if not can_direct_reclaim:
            return -1, -1
        page, z, progress = __alloc_pages_direct_reclaim(st, sp, gfp, order, alloc_flags,
                                                         zonelist, nz, highest, mt, cpu, out,
                                                         req, counters)
        if page >= 0:
            return page, z
        if can_compact:
            page, z, compact_result = __alloc_pages_direct_compact(
                st, sp, gfp, order, alloc_flags, zonelist, nz, highest, prio, mt, cpu, out,
                req, counters, compact_result)
            if page >= 0:
                return page, z
        if gfp & __GFP_NORETRY:
            return -1, -1
        if costly and (not can_compact or not (gfp & __GFP_RETRY_MAYFAIL)):
            return -1, -1
        again, loops = should_reclaim_retry(st, sp, order, zonelist, nz, highest, alloc_flags,
                                            progress > 0, loops)
        if again:
            continue
        if progress > 0 and can_compact:
            again, prio, retries = should_compact_retry(st, sp, order, alloc_flags,
                                                        compact_result, prio, retries,
                                                        zonelist, nz, highest)
            if again:
                continue
        # __alloc_pages_may_oom(): the kernel would kill a task here; the model cannot
        if (order <= PAGE_ALLOC_COSTLY_ORDER and not (gfp & (__GFP_RETRY_MAYFAIL | __GFP_THISNODE))
                and highest >= ZONE_NORMAL):
            sp.vm[VM_OOM_KILL] += 1
        break
    if gfp & __GFP_NOFAIL:
        page, z = get_page_from_freelist(st, zonelist, nz, order, alloc_flags | ALLOC_MIN_RESERVE,
                                         highest, mt, cpu, out, req, counters, True, gfp)
        if page >= 0:
            counters[S_NOWM] += 1
            return page, z
    return -1, -1


# __alloc_pages_fastpath's answer when the fast path found nothing: the slow path is next
NEED_SLOWPATH = -2


@njit(cache=True, _nrt=False)
def __alloc_pages(st, sp, gfp, order, mt, cpu, node, out, req, counters, zonelists, zl_len):
    """__alloc_pages(): the fast path at the low watermark, then __alloc_pages_slowpath()."""
    page, z = __alloc_pages_fastpath(st, gfp, order, mt, cpu, node, out, req, counters,
                                     zonelists, zl_len)
    if page != NEED_SLOWPATH:
        return page, z
    return __alloc_pages_from_slowpath(st, sp, gfp, order, mt, cpu, node, out, req, counters,
                                       zonelists, zl_len)


@njit(cache=True, _nrt=False)
def __alloc_pages_fastpath(st, gfp, order, mt, cpu, node, out, req, counters, zonelists,
                           zl_len):
    """__alloc_pages() up to its first get_page_from_freelist() (ALLOC_NOFRAGMENT when the
    preferred zone is Normal): the page, or NEED_SLOWPATH."""
    highest = gfp_zone(st, gfp)
    zonelist = zonelists[node, highest]
    nz = zl_len[node, highest]
    if nz == 0:
        return -1, -1
    alloc_flags = ALLOC_WMARK_LOW
    if gfp & __GFP_KSWAPD_RECLAIM:
        alloc_flags |= ALLOC_KSWAPD
    if st.zone_type[zonelist[0]] == ZONE_NORMAL and node_has_dma32(st, st.zone_node[zonelist[0]]):
        alloc_flags |= ALLOC_NOFRAGMENT  # alloc_flags_nofragment()
    page, z = get_page_from_freelist(st, zonelist, nz, order, alloc_flags, highest, mt, cpu,
                                     out, req, counters, False, gfp)
    if page >= 0:
        return page, z
    return NEED_SLOWPATH, -1


@njit(cache=True, _nrt=False)
def __alloc_pages_from_slowpath(st, sp, gfp, order, mt, cpu, node, out, req, counters,
                                zonelists, zl_len):
    """The rest of __alloc_pages() once its fast path has failed: __alloc_pages_slowpath()."""
    highest = gfp_zone(st, gfp)
    return __alloc_pages_slowpath(st, sp, gfp, order, mt, cpu, zonelists[node, highest],
                                  zl_len[node, highest], highest, out, req, counters)
