"""Compaction run by the model itself (mm/compaction.c, 6.1): direct compaction, kcompactd and
proactive compaction on the model's own pages.

Reconstruct follows the kernel's compaction through its events (follow_compaction.py); here the
model decides: `compaction_suitable` (watermarks and the fragmentation index against
extfrag_threshold), deferral, `compact_zone` with the migrate scanner walking up from the zone
start and the free scanner down from its end (pageblock skip bits, the cached pfns, async and
sync-light modes), `compaction_alloc` from the isolated targets (the untraced fast search of
compaction.py first), migration of LRU pages (a migrated page keeps living at its target: the
slow-path state's maps send the trace's later free there), the capture of a freed block for the
allocating task, kcompactd and proactive compaction. Departures (docs/model.md): no
fast_find_migrateblock (the migrate scanner is linear), migration never fails (no pinned,
dirty or writeback pages in the model), compound pages are never migrated.
"""

from __future__ import annotations

from replay.engine.buddy import MIGRATE_MOVABLE
from replay.engine.compaction import (
    CC_DIRECT,
    CC_FAST_FAIL,
    CC_FREE_PFN,
    CC_IGNORE_BLOCK,
    CC_IGNORE_SKIP,
    CC_MIGRATE_PFN,
    CC_MIGRATETYPE,
    CC_MODE,
    CC_NR_FREEPAGES,
    CC_NR_MIGRATEPAGES,
    CC_ORDER,
    CC_SEARCH_ORDER,
    CC_WHOLE_ZONE,
    CC_ZONE,
    COMPACT_CLUSTER_MAX,
    MODE_ASYNC,
    MODE_SYNC,
    MODE_SYNC_LIGHT,
    N_CC,
    PAGE_ALLOC_COSTLY_ORDER,
    TARGET_INFERRED,
    ZC_BLOCKSKIP_FLUSH,
    ZC_CACHED_FREE_PFN,
    ZC_CONSIDERED,
    ZC_DEFER_SHIFT,
    ZC_INIT_FREE_PFN,
    ZC_ORDER_FAILED,
    __isolate_free_page,
    fast_isolate_freepages,
    freelist_scan_limit,
    isolate_watermark_ok,
    move_freelist_tail,
    reset_isolation_free_pfn,
)
from replay.engine.jit import njit
from replay.engine.lru import lru_add
from replay.engine.policy import (
    __zone_watermark_ok,
    can_steal_fallback,
    drain_all_pages,
    drain_pages_zone,
    find_suitable_fallback,
    free_the_page,
    wmark_of,
    zone_watermark_ok,
)
from replay.engine.profile import CFG_COMPACTION
from replay.engine.slow_state import (
    ND_KCOMPACTD_CLASSZONE,
    ND_KCOMPACTD_ORDER,
    ND_KSWAPD_ACTIVE,
    ND_PRESENT,
    ND_PROACTIVE_NEXT_NS,
    RUN_FREE_END,
    RUN_FREE_START,
    RUN_KIND,
    RUN_MIGRATE_END,
    RUN_MIGRATE_START,
    RUN_MIGRATED,
    RUN_MODE,
    RUN_ORDER,
    RUN_REQ,
    RUN_RESULT,
    RUN_ZONE,
    SC_COMPACTION,
    SC_EXTFRAG_THRESHOLD,
    SC_FREE_HEAD,
    SC_NFREE,
    SC_NMIGRATE,
    SC_NRUNS,
    SC_PROACTIVENESS,
    VM_CAPTURES,
    VM_COMPACT_DAEMON_FREE_SCANNED,
    VM_COMPACT_DAEMON_MIGRATE_SCANNED,
    VM_COMPACT_DAEMON_WAKE,
    VM_COMPACT_DEFERRED,
    VM_COMPACT_FREE_SCANNED,
    VM_COMPACT_ISOLATED,
    VM_COMPACT_MIGRATE_SCANNED,
    VM_COMPACT_RUNS,
    VM_PGMIGRATE_SUCCESS,
    VM_PROACTIVE_RUNS,
    ZC_CACHED_MIGRATE_ASYNC,
    ZC_CACHED_MIGRATE_SYNC,
    ZC_INIT_MIGRATE_PFN,
    ZC_PRESENT,
)
from replay.engine.state import (
    CFG_CAPC_MOVABLE,
    CFG_CAPC_ORDER,
    CFG_CAPC_PAGE,
    CFG_CAPC_ZONE,
    CFG_MAX_ORDER,
    CFG_PAGEBLOCK_ORDER,
    NIL,
    PG_ALLOC,
    PG_BUDDY,
    ZP_END,
    ZP_LOW,
    ZP_MANAGED,
    ZP_MIN,
    ZP_START,
)

# enum compact_result (include/linux/compaction.h), in its order
(COMPACT_NOT_SUITABLE_ZONE, COMPACT_SKIPPED, COMPACT_DEFERRED, COMPACT_NO_SUITABLE_PAGE,
 COMPACT_CONTINUE, COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED, COMPACT_CONTENDED,
 COMPACT_SUCCESS) = range(9)
COMPACT_PRIO_SYNC_FULL, COMPACT_PRIO_SYNC_LIGHT, COMPACT_PRIO_ASYNC = 0, 1, 2
COMPACT_MAX_DEFER_SHIFT = 6
COMPACTION_HPAGE_ORDER = 9
HPAGE_FRAG_CHECK_INTERVAL_NS = 500_000_000
ISOLATE_NONE, ISOLATE_SUCCESS = 1, 2

# the model's compact_control columns beyond compaction.py's CC_*
CCM_PROACTIVE, CCM_RESCAN, CCM_HIGHEST, CCM_ALLOC_FLAGS, CCM_MIGRATE_SCANNED, \
    CCM_FREE_SCANNED, CCM_FAST_START = range(N_CC, N_CC + 7)
N_CCM = N_CC + 7
FAST_START_DONE = -2  # cc->fast_start_pfn == ULONG_MAX


# ---- fragmentation (mm/vmstat.c) -------------------------------------------------------------

@njit(cache=True, _nrt=False)
def fragmentation_index(st, z, order):
    """fragmentation_index(): -1000 when a free block of the order exists, else how far the
    failure is due to fragmentation (towards 1000) rather than lack of memory (towards 0)."""
    free_pages = 0
    blocks_total = 0
    suitable = 0
    for o in range(st.config[CFG_MAX_ORDER]):
        n = 0
        for m in range(st.fl_len.shape[2]):
            n += st.fl_len[z, o, m]
        blocks_total += n
        free_pages += n << o
        if o >= order:
            suitable += n << (o - order)
    if blocks_total == 0:
        return 0
    if suitable:
        return -1000
    requested = 1 << order
    return 1000 - (1000 + free_pages * 1000 // requested) // blocks_total


@njit(cache=True, _nrt=False)
def fragmentation_score_zone(st, z):
    """extfrag_for_order(zone, COMPACTION_HPAGE_ORDER): the percent of free memory not in
    blocks of a huge page or more."""
    order = min(COMPACTION_HPAGE_ORDER, st.config[CFG_MAX_ORDER] - 1)
    free_pages = 0
    suitable = 0
    for o in range(st.config[CFG_MAX_ORDER]):
        n = 0
        for m in range(st.fl_len.shape[2]):
            n += st.fl_len[z, o, m]
        free_pages += n << o
        if o >= order:
            suitable += n << (o - order)
    if free_pages == 0:
        return 0
    return (free_pages - (suitable << order)) * 100 // free_pages


@njit(cache=True, _nrt=False)
def fragmentation_score_node(st, sp, node):
    """fragmentation_score_node(): each zone's score weighted by its share of the node."""
    score = 0
    for z in range(st.zone_node.shape[0]):
        if st.zone_node[z] == node and sp.zc[z, ZC_PRESENT] > 0:
            score += (sp.zc[z, ZC_PRESENT] * fragmentation_score_zone(st, z)
                      // (sp.node[node, ND_PRESENT] + 1))
    return score


@njit(cache=True, _nrt=False)
def fragmentation_score_wmark(sp, low):
    """fragmentation_score_wmark(): 100 - proactiveness (at least 5); high is low + 10."""
    wmark_low = max(100 - sp.cfg[SC_PROACTIVENESS], 5)
    return wmark_low if low else min(wmark_low + 10, 100)


# ---- deferral (compaction.c:146-213) ---------------------------------------------------------

@njit(cache=True, _nrt=False)
def defer_compaction(sp, z, order):
    sp.zc[z, ZC_CONSIDERED] = 0
    sp.zc[z, ZC_DEFER_SHIFT] = min(sp.zc[z, ZC_DEFER_SHIFT] + 1, COMPACT_MAX_DEFER_SHIFT)
    if order < sp.zc[z, ZC_ORDER_FAILED]:
        sp.zc[z, ZC_ORDER_FAILED] = order


@njit(cache=True, _nrt=False)
def compaction_deferred(sp, z, order):
    limit = 1 << sp.zc[z, ZC_DEFER_SHIFT]
    if order < sp.zc[z, ZC_ORDER_FAILED]:
        return False
    sp.zc[z, ZC_CONSIDERED] += 1
    if sp.zc[z, ZC_CONSIDERED] >= limit:
        sp.zc[z, ZC_CONSIDERED] = limit
        return False
    sp.vm[VM_COMPACT_DEFERRED] += 1
    return True


@njit(cache=True, _nrt=False)
def compaction_defer_reset(sp, z, order, alloc_success):
    if alloc_success:
        sp.zc[z, ZC_CONSIDERED] = 0
        sp.zc[z, ZC_DEFER_SHIFT] = 0
    if order >= sp.zc[z, ZC_ORDER_FAILED]:
        sp.zc[z, ZC_ORDER_FAILED] = order + 1


@njit(cache=True, _nrt=False)
def compaction_restarting(sp, z, order):
    if order < sp.zc[z, ZC_ORDER_FAILED]:
        return False
    return (sp.zc[z, ZC_DEFER_SHIFT] == COMPACT_MAX_DEFER_SHIFT
            and sp.zc[z, ZC_CONSIDERED] >= (1 << sp.zc[z, ZC_DEFER_SHIFT]))


# ---- suitability (compaction.c:2169-2255) ----------------------------------------------------

@njit(cache=True, _nrt=False)
def compaction_suitable(st, sp, z, order, alloc_flags, highest):
    """compaction_suitable(): SUCCESS when the allocation would already succeed, SKIPPED when
    the zone lacks the order-0 pages compaction needs (compact_gap), or a costly order whose
    failure is not due to fragmentation (index at or below extfrag_threshold)."""
    if order == -1:
        return COMPACT_CONTINUE
    if zone_watermark_ok(st, z, order, wmark_of(st, z, alloc_flags), highest, alloc_flags):
        return COMPACT_SUCCESS
    mark = st.zone_param[z, ZP_LOW] if order > PAGE_ALLOC_COSTLY_ORDER else st.zone_param[z,
                                                                                         ZP_MIN]
    mark += 2 << order  # compact_gap()
    if not __zone_watermark_ok(st, z, 0, mark, highest, 0, st.nr_free_pages[z]):
        return COMPACT_SKIPPED
    if order > PAGE_ALLOC_COSTLY_ORDER:
        fragindex = fragmentation_index(st, z, order)
        if 0 <= fragindex <= sp.cfg[SC_EXTFRAG_THRESHOLD]:
            return COMPACT_SKIPPED  # COMPACT_NOT_SUITABLE_ZONE, returned as skipped
    return COMPACT_CONTINUE


# ---- skip bits and cached pfns ---------------------------------------------------------------

@njit(cache=True, _nrt=False)
def __reset_isolation_suitable(st, sp, z):
    """__reset_isolation_suitable(): clear the zone's skip bits, restart both scanners at the
    zone ends (compact_init_free_pfn as compaction.py's reset finds it)."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    start = st.zone_param[z, ZP_START]
    end = st.zone_param[z, ZP_END]
    for pb in range(start >> pbo, ((end - 1) >> pbo) + 1):
        sp.pb_skip[pb] = 0
    sp.zc[z, ZC_BLOCKSKIP_FLUSH] = 0
    sp.zc[z, ZC_CACHED_MIGRATE_ASYNC] = start
    sp.zc[z, ZC_CACHED_MIGRATE_SYNC] = start
    sp.zc[z, ZC_INIT_MIGRATE_PFN] = start
    sp.zc[z, ZC_CACHED_FREE_PFN] = ((end - 1) >> pbo) << pbo
    init_free = reset_isolation_free_pfn(st, z)
    sp.zc[z, ZC_INIT_FREE_PFN] = init_free if init_free >= 0 else sp.zc[z, ZC_CACHED_FREE_PFN]


@njit(cache=True, _nrt=False)
def reset_isolation_suitable(st, sp, node):
    """reset_isolation_suitable(): for the node's zones a direct compaction left flagged."""
    for z in range(st.zone_node.shape[0]):
        if st.zone_node[z] == node and sp.zc[z, ZC_BLOCKSKIP_FLUSH]:
            __reset_isolation_suitable(st, sp, z)


@njit(cache=True, _nrt=False)
def isolation_suitable(st, sp, cc, pfn):
    if cc[0, CC_IGNORE_SKIP] == 1:
        return True
    return sp.pb_skip[pfn >> st.config[CFG_PAGEBLOCK_ORDER]] == 0


@njit(cache=True, _nrt=False)
def update_cached_migrate(st, sp, cc, pfn):
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    if cc[0, CC_IGNORE_SKIP] == 1:  # no_set_skip_hint is not modelled: ignore_skip_hint runs
        return                      # are compact_memory's and proactive ones
    z = cc[0, CC_ZONE]
    pfn = ((pfn + (1 << pbo) - 1) >> pbo) << pbo
    if pfn > sp.zc[z, ZC_CACHED_MIGRATE_ASYNC]:
        sp.zc[z, ZC_CACHED_MIGRATE_ASYNC] = pfn
    if cc[0, CC_MODE] != MODE_ASYNC and pfn > sp.zc[z, ZC_CACHED_MIGRATE_SYNC]:
        sp.zc[z, ZC_CACHED_MIGRATE_SYNC] = pfn


@njit(cache=True, _nrt=False)
def update_pageblock_skip(st, sp, cc, pfn):
    sp.pb_skip[pfn >> st.config[CFG_PAGEBLOCK_ORDER]] = 1
    z = cc[0, CC_ZONE]
    if pfn < sp.zc[z, ZC_CACHED_FREE_PFN]:
        sp.zc[z, ZC_CACHED_FREE_PFN] = pfn


# ---- the free scanner: targets ---------------------------------------------------------------

@njit(cache=True, _nrt=False)
def add_freepages(st, sp, cc, head, order):
    """The pages of a taken block onto cc->freepages, ascending (split_map_pages). Counted in
    compact_isolated, as isolate_freepages_block() and fast_isolate_freepages() count them."""
    sp.vm[VM_COMPACT_ISOLATED] += 1 << order
    n = sp.cfg[SC_NFREE]
    for p in range(head, head + (1 << order)):
        if n < sp.freepages.shape[0]:
            sp.freepages[n] = p
            n += 1
        st.pg_target[p] = 1
    sp.cfg[SC_NFREE] = n


@njit(cache=True, _nrt=False)
def isolate_freepages_block(st, sp, cc, start, end, stride):
    """isolate_freepages_block() (not strict): the free blocks whose head the walk visits at
    `stride`, until enough pages are isolated; returns where it stopped."""
    z = cc[0, CC_ZONE]
    p = start
    scanned = 0
    room = sp.freepages.shape[0] - 1024
    while p < end:
        scanned += 1
        comp = st.pg_comp[p]
        if comp > 0 and st.pg_state[p] == PG_ALLOC:
            p += (1 << (comp - 1)) - 1
        elif st.pg_state[p] == PG_BUDDY:
            o = st.pg_order[p]
            if sp.cfg[SC_NFREE] > room or not isolate_watermark_ok(st, z, o):
                break
            __isolate_free_page(st, z, p, False)
            add_freepages(st, sp, cc, p, o)
            cc[0, CC_NR_FREEPAGES] += 1 << o
            scanned += (1 << o) - 1
            if cc[0, CC_NR_MIGRATEPAGES] <= cc[0, CC_NR_FREEPAGES]:
                p += 1 << o
                break
            p += (1 << o) - 1
        p += stride
    if p > end:
        p = end
    cc[0, CCM_FREE_SCANNED] += scanned
    return p


@njit(cache=True, _nrt=False)
def suitable_migration_target(st, cc, pfn):
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    if st.pg_state[pfn] == PG_BUDDY and st.pg_order[pfn] >= pbo:
        return False
    if cc[0, CC_IGNORE_BLOCK] == 1:
        return True
    return st.pb_mt[pfn >> pbo] == MIGRATE_MOVABLE


@njit(cache=True, _nrt=False)
def fast_isolate_around(st, sp, cc, pfn):
    """fast_isolate_around(): the rest of the fast search's pageblock, at stride 1."""
    if cc[0, CC_NR_FREEPAGES] >= cc[0, CC_NR_MIGRATEPAGES]:
        return
    if cc[0, CC_DIRECT] == 1 and cc[0, CC_MODE] == MODE_ASYNC:
        return
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    z = cc[0, CC_ZONE]
    start = max((pfn >> pbo) << pbo, st.zone_param[z, ZP_START])
    end = min(((pfn >> pbo) + 1) << pbo, st.zone_param[z, ZP_END])
    if isolate_freepages_block(st, sp, cc, start, end, 1) == end:
        sp.pb_skip[start >> pbo] = 1


@njit(cache=True, _nrt=False)
def isolate_freepages(st, sp, cc):
    """isolate_freepages(): the fast free-list search, else the linear scanner walking down
    pageblock by pageblock from cc->free_pfn to the migrate scanner's block."""
    sp.cfg[SC_NFREE] = 0
    sp.cfg[SC_FREE_HEAD] = 0
    page, around = fast_isolate_freepages(st, cc, sp.zc, 0)
    if page >= 0:
        add_freepages(st, sp, cc, page, st.pg_target[page] - TARGET_INFERRED)
    if around >= 0:
        fast_isolate_around(st, sp, cc, around)
    if cc[0, CC_NR_FREEPAGES] > 0:
        return
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    z = cc[0, CC_ZONE]
    zone_end = st.zone_param[z, ZP_END]
    isolate_start = cc[0, CC_FREE_PFN]
    block_start = (isolate_start >> pbo) << pbo
    block_end = min(block_start + (1 << pbo), zone_end)
    low_pfn = ((cc[0, CC_MIGRATE_PFN] >> pbo) + 1) << pbo
    stride = COMPACT_CLUSTER_MAX if cc[0, CC_MODE] == MODE_ASYNC else 1
    while block_start >= low_pfn:
        if (block_start >= st.zone_param[z, ZP_START] and st.pg_zone[block_start] == z
                and suitable_migration_target(st, cc, block_start)
                and isolation_suitable(st, sp, cc, block_start)):
            before = cc[0, CC_NR_FREEPAGES]
            isolate_start = isolate_freepages_block(st, sp, cc, isolate_start, block_end, stride)
            if isolate_start == block_end and cc[0, CC_IGNORE_SKIP] != 1:
                update_pageblock_skip(st, sp, cc, block_start)
            if cc[0, CC_NR_FREEPAGES] >= cc[0, CC_NR_MIGRATEPAGES]:
                if isolate_start >= block_end:
                    isolate_start = block_start - (1 << pbo)
                break
            if isolate_start < block_end:
                break
            stride = 1 if cc[0, CC_NR_FREEPAGES] > before else min(COMPACT_CLUSTER_MAX,
                                                                   stride << 1)
        block_end = block_start
        block_start -= 1 << pbo
        isolate_start = block_start
    cc[0, CC_FREE_PFN] = isolate_start


@njit(cache=True, _nrt=False)
def compaction_alloc(st, sp, cc):
    """compaction_alloc(): the next isolated target, isolating more when the list is empty."""
    if sp.cfg[SC_FREE_HEAD] >= sp.cfg[SC_NFREE]:
        isolate_freepages(st, sp, cc)
        if sp.cfg[SC_FREE_HEAD] >= sp.cfg[SC_NFREE]:
            return -1
    page = sp.freepages[sp.cfg[SC_FREE_HEAD]]
    sp.cfg[SC_FREE_HEAD] += 1
    cc[0, CC_NR_FREEPAGES] -= 1
    return page


@njit(cache=True, _nrt=False)
def release_freepages(st, sp, cpu, out, req, counters):
    """release_freepages(): unused targets back through __free_page (mm_page_free each);
    returns the highest pfn released (-1: none)."""
    high = -1
    for k in range(sp.cfg[SC_FREE_HEAD], sp.cfg[SC_NFREE]):
        p = sp.freepages[k]
        st.pg_target[p] = 0
        free_the_page(st, st.pg_zone[p], p, 0, cpu, False, out, req, counters)
        high = max(high, p)
    sp.cfg[SC_NFREE] = 0
    sp.cfg[SC_FREE_HEAD] = 0
    return high


# ---- the migrate scanner and migration -------------------------------------------------------

@njit(cache=True, _nrt=False)
def suitable_migration_source(st, cc, pfn):
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    comp = st.pg_comp[pfn]
    if comp > 0 and comp - 1 >= pbo:  # pageblock_skip_persistent(): a huge page
        return False
    if cc[0, CC_MODE] != MODE_ASYNC or cc[0, CC_DIRECT] != 1:
        return True
    block_mt = st.pb_mt[pfn >> pbo]
    if cc[0, CC_MIGRATETYPE] == MIGRATE_MOVABLE:
        return block_mt == MIGRATE_MOVABLE
    return block_mt == cc[0, CC_MIGRATETYPE]


@njit(cache=True, _nrt=False)
def putback_movable_pages(sp):
    for k in range(sp.cfg[SC_NMIGRATE]):
        sp.pg_lru[sp.migratepages[k]] = 1
    sp.cfg[SC_NMIGRATE] = 0


@njit(cache=True, _nrt=False)
def isolate_migratepages_block(st, sp, cc, low_pfn, end_pfn):
    """isolate_migratepages_block(): LRU pages onto cc->migratepages (up to
    COMPACT_CLUSTER_MAX unless rescanning); a block found skip-marked at its first pfn is
    abandoned (6.1: also the one fast_find_migrateblock just marked); async direct compaction
    gives up an order-aligned block at its first page it cannot isolate (skip_on_failure)."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    order = cc[0, CC_ORDER]
    skip_on_failure = cc[0, CC_DIRECT] == 1 and cc[0, CC_MODE] == MODE_ASYNC and order > 0
    next_skip = (((low_pfn >> order) + 1) << order) if skip_on_failure else 0
    nr_scanned = 0
    nr_isolated = 0
    valid = False
    skip_updated = False
    aborted = False
    p = low_pfn
    cc[0, CC_MIGRATE_PFN] = low_pfn
    while p < end_pfn:
        if skip_on_failure and p >= next_skip:
            if nr_isolated:
                break
            next_skip = ((p >> order) + 1) << order
        nr_scanned += 1
        aligned = (p & ((1 << pbo) - 1)) == 0
        if not valid and aligned:
            if not isolation_suitable(st, sp, cc, p):
                p = end_pfn
                aborted = True
                break
            valid = True
        s = st.pg_state[p]
        if s == PG_BUDDY:
            p += 1 << st.pg_order[p]
            continue
        last = p
        comp = st.pg_comp[p]
        if comp > 0 and s == PG_ALLOC:
            last = p + (1 << (comp - 1)) - 1
        elif s == PG_ALLOC and st.pg_order[p] > 0:
            last = p + (1 << st.pg_order[p]) - 1
        elif sp.pg_lru[p] == 1 and st.pg_target[p] == 0:
            if not skip_updated and cc[0, CC_IGNORE_SKIP] != 1:
                skip_updated = True
                if aligned:  # test_and_set_skip()
                    if sp.pb_skip[p >> pbo]:
                        aborted = True
                        break
                    sp.pb_skip[p >> pbo] = 1
            sp.pg_lru[p] = 2  # isolated: off the LRU while it migrates
            sp.migratepages[sp.cfg[SC_NMIGRATE]] = p
            sp.cfg[SC_NMIGRATE] += 1
            nr_isolated += 1
            p += 1
            if sp.cfg[SC_NMIGRATE] >= COMPACT_CLUSTER_MAX and (
                    cc[0, CCM_RESCAN] == 0 or sp.cfg[SC_NMIGRATE] >= sp.migratepages.shape[0]):
                break
            continue
        # isolate_fail
        if not skip_on_failure:
            p = last + 1
            continue
        if nr_isolated:
            putback_movable_pages(sp)
            nr_isolated = 0
        if last < next_skip:
            p = next_skip
            next_skip += 1 << order
        else:
            p = last + 1
    if p > end_pfn:
        p = end_pfn
    if p == end_pfn and (nr_isolated == 0 or cc[0, CCM_RESCAN] == 1):
        if valid and not skip_updated and not aborted and cc[0, CC_IGNORE_SKIP] != 1:
            sp.pb_skip[(end_pfn - 1) >> pbo] = 1
        update_cached_migrate(st, sp, cc, p)
    cc[0, CCM_MIGRATE_SCANNED] += nr_scanned
    sp.vm[VM_COMPACT_ISOLATED] += nr_isolated
    cc[0, CC_MIGRATE_PFN] = p
    cc[0, CC_NR_MIGRATEPAGES] = sp.cfg[SC_NMIGRATE]


@njit(cache=True, _nrt=False)
def fast_find_migrateblock(st, sp, cc):
    """fast_find_migrateblock(): for a costly order (direct compaction for a movable request,
    or kcompactd), a MOVABLE free block low in the zone (first half of the scan space at the
    zone start, first eighth later) points at a pageblock worth emptying: the search moves the
    entry to its list's tail and skip-marks that block. When nothing is found the scan goes
    back to the lowest block an earlier search found (reinit_migrate_pfn)."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    z = cc[0, CC_ZONE]
    zone_start = st.zone_param[z, ZP_START]
    pfn = cc[0, CC_MIGRATE_PFN]
    if cc[0, CC_IGNORE_SKIP] == 1:
        return pfn
    if pfn != zone_start and pfn != ((pfn >> pbo) << pbo):
        return pfn
    if cc[0, CC_ORDER] <= PAGE_ALLOC_COSTLY_ORDER:
        return pfn
    if cc[0, CC_DIRECT] == 1 and cc[0, CC_MIGRATETYPE] != MIGRATE_MOVABLE:
        return pfn
    limit = freelist_scan_limit(cc, 0)
    distance = (cc[0, CC_FREE_PFN] - cc[0, CC_MIGRATE_PFN]) >> 1
    if cc[0, CC_MIGRATE_PFN] != zone_start:
        distance >>= 2
    high_pfn = ((cc[0, CC_MIGRATE_PFN] + distance) >> pbo) << pbo
    nr_scanned = 0
    found = False
    order = cc[0, CC_ORDER] - 1
    while order >= PAGE_ALLOC_COSTLY_ORDER and not found and nr_scanned < limit:
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
                if freepage < high_pfn:
                    if sp.pb_skip[freepage >> pbo]:
                        freepage = nxt
                        continue
                    move_freelist_tail(st, z, order, MIGRATE_MOVABLE, freepage)
                    if cc[0, CCM_FAST_START] != FAST_START_DONE:  # update_fast_start_pfn()
                        if cc[0, CCM_FAST_START] == 0 or freepage < cc[0, CCM_FAST_START]:
                            cc[0, CCM_FAST_START] = freepage
                    pfn = max((freepage >> pbo) << pbo, zone_start)
                    cc[0, CC_FAST_FAIL] = 0
                    found = True
                    sp.pb_skip[freepage >> pbo] = 1
                    break
                freepage = nxt
        order -= 1
    cc[0, CCM_MIGRATE_SCANNED] += nr_scanned
    if not found:
        cc[0, CC_FAST_FAIL] += 1
        fs = cc[0, CCM_FAST_START]
        if fs != 0 and fs != FAST_START_DONE:  # reinit_migrate_pfn()
            cc[0, CC_MIGRATE_PFN] = fs
            cc[0, CCM_FAST_START] = FAST_START_DONE
        pfn = cc[0, CC_MIGRATE_PFN]
    return pfn


@njit(cache=True, _nrt=False)
def isolate_migratepages(st, sp, cc):
    """isolate_migratepages(): from the block fast_find_migrateblock() picks, or linearly,
    the next suitable pageblock below the free scanner."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    z = cc[0, CC_ZONE]
    low_pfn = fast_find_migrateblock(st, sp, cc)
    block_start = max((low_pfn >> pbo) << pbo, st.zone_param[z, ZP_START])
    fast_found = low_pfn != cc[0, CC_MIGRATE_PFN] and cc[0, CC_FAST_FAIL] == 0
    block_end = ((low_pfn >> pbo) + 1) << pbo
    while block_end <= cc[0, CC_FREE_PFN]:
        aligned = (low_pfn & ((1 << pbo) - 1)) == 0
        if aligned and not fast_found and not isolation_suitable(st, sp, cc, block_start):
            pass
        elif not suitable_migration_source(st, cc, block_start):
            update_cached_migrate(st, sp, cc, block_end)
        else:
            isolate_migratepages_block(st, sp, cc, low_pfn, block_end)
            break
        fast_found = False
        low_pfn = block_end
        cc[0, CC_MIGRATE_PFN] = low_pfn
        block_start = block_end
        block_end += 1 << pbo
    return ISOLATE_SUCCESS if sp.cfg[SC_NMIGRATE] > 0 else ISOLATE_NONE


@njit(cache=True, _nrt=False)
def migrate_page(st, sp, src, dst, cpu, out, req, counters):
    """One successful migration: the data (and the trace page it stands for) moves to dst,
    which becomes the LRU page; src is freed (put_page -> mm_page_free)."""
    st.pg_mt[dst] = st.pg_mt[src] if st.pg_state[src] == PG_ALLOC else MIGRATE_MOVABLE
    st.pg_target[dst] = 0
    z = st.pg_zone[src]
    sp.pg_lru[src] = 0
    sp.zone_lru[z] -= 1
    lru_add(st, sp, dst)
    t = sp.rev_map[src]
    if t < 0:
        t = src
    sp.pfn_map[t] = dst
    sp.rev_map[dst] = t
    sp.rev_map[src] = -1
    free_the_page(st, z, src, 0, cpu, False, out, req, counters)
    sp.vm[VM_PGMIGRATE_SUCCESS] += 1


@njit(cache=True, _nrt=False)
def migrate_pages(st, sp, cc, cpu, out, req, counters):
    """migrate_pages() with compaction_alloc(): returns False when targets ran out (-ENOMEM;
    the sources left are put back)."""
    n = sp.cfg[SC_NMIGRATE]
    for k in range(n):
        dst = compaction_alloc(st, sp, cc)
        if dst < 0:
            for j in range(k, n):
                sp.pg_lru[sp.migratepages[j]] = 1
            sp.cfg[SC_NMIGRATE] = 0
            cc[0, CC_NR_MIGRATEPAGES] = 0
            return False
        migrate_page(st, sp, sp.migratepages[k], dst, cpu, out, req, counters)
    sp.cfg[SC_NMIGRATE] = 0
    cc[0, CC_NR_MIGRATEPAGES] = 0
    return True


# ---- compact_zone ----------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def __compact_finished(st, sp, cc):
    """__compact_finished(): the scanners met, the proactive score is low enough, or a block
    of the order is free on a list the request may take (or steal whole)."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    z = cc[0, CC_ZONE]
    if (cc[0, CC_FREE_PFN] >> pbo) <= (cc[0, CC_MIGRATE_PFN] >> pbo):
        start = st.zone_param[z, ZP_START]
        sp.zc[z, ZC_CACHED_MIGRATE_ASYNC] = start
        sp.zc[z, ZC_CACHED_MIGRATE_SYNC] = start
        sp.zc[z, ZC_CACHED_FREE_PFN] = ((st.zone_param[z, ZP_END] - 1) >> pbo) << pbo
        if cc[0, CC_DIRECT] == 1:
            sp.zc[z, ZC_BLOCKSKIP_FLUSH] = 1
        return COMPACT_COMPLETE if cc[0, CC_WHOLE_ZONE] == 1 else COMPACT_PARTIAL_SKIPPED
    if cc[0, CCM_PROACTIVE] == 1:
        if sp.node[st.zone_node[z], ND_KSWAPD_ACTIVE]:
            return COMPACT_PARTIAL_SKIPPED
        if fragmentation_score_zone(st, z) > fragmentation_score_wmark(sp, True):
            return COMPACT_CONTINUE
        return COMPACT_SUCCESS
    order = cc[0, CC_ORDER]
    if order == -1:
        return COMPACT_CONTINUE
    if cc[0, CC_MIGRATE_PFN] & ((1 << pbo) - 1):
        return COMPACT_CONTINUE
    mt = cc[0, CC_MIGRATETYPE]
    for o in range(order, st.config[CFG_MAX_ORDER]):
        if st.fl_len[z, o, mt] > 0:
            return COMPACT_SUCCESS
        fmt, can_steal = find_suitable_fallback(st, z, o, mt)
        if fmt >= 0 and can_steal_fallback(st, o, mt):
            if mt == MIGRATE_MOVABLE:
                return COMPACT_SUCCESS
            if cc[0, CC_MODE] == MODE_ASYNC or (cc[0, CC_MIGRATE_PFN] & ((1 << pbo) - 1)) == 0:
                return COMPACT_SUCCESS
            return COMPACT_CONTINUE
    return COMPACT_CONTINUE  # COMPACT_NO_SUITABLE_PAGE


@njit(cache=True, _nrt=False)
def compact_zone(st, sp, cc, capture, cpu, out, req, counters):  # noqa: PLR0912, PLR0915
    """compact_zone(): migrate LRU pages from the zone's low end into free pages taken from its
    high end until __compact_finished(); drain this CPU's pcp lists whenever the migrate
    scanner leaves an order-aligned block it migrated from (so freed pages merge, and can be
    captured); release unused targets."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    z = cc[0, CC_ZONE]
    order = cc[0, CC_ORDER]
    cc[0, CC_NR_MIGRATEPAGES] = 0
    cc[0, CC_NR_FREEPAGES] = 0
    cc[0, CCM_MIGRATE_SCANNED] = 0
    cc[0, CCM_FREE_SCANNED] = 0
    sp.cfg[SC_NFREE] = 0
    sp.cfg[SC_FREE_HEAD] = 0
    sp.cfg[SC_NMIGRATE] = 0
    ret = compaction_suitable(st, sp, z, order, cc[0, CCM_ALLOC_FLAGS], cc[0, CCM_HIGHEST])
    if ret == COMPACT_SUCCESS or ret == COMPACT_SKIPPED:
        return ret
    if compaction_restarting(sp, z, order):
        __reset_isolation_suitable(st, sp, z)
    start_pfn = st.zone_param[z, ZP_START]
    end_pfn = st.zone_param[z, ZP_END]
    sync = cc[0, CC_MODE] != MODE_ASYNC
    if cc[0, CC_WHOLE_ZONE] == 1:
        cc[0, CC_MIGRATE_PFN] = start_pfn
        cc[0, CC_FREE_PFN] = ((end_pfn - 1) >> pbo) << pbo
    else:
        cc[0, CC_MIGRATE_PFN] = sp.zc[z, ZC_CACHED_MIGRATE_SYNC if sync
                                      else ZC_CACHED_MIGRATE_ASYNC]
        cc[0, CC_FREE_PFN] = sp.zc[z, ZC_CACHED_FREE_PFN]
        if cc[0, CC_FREE_PFN] < start_pfn or cc[0, CC_FREE_PFN] >= end_pfn:
            cc[0, CC_FREE_PFN] = ((end_pfn - 1) >> pbo) << pbo
            sp.zc[z, ZC_CACHED_FREE_PFN] = cc[0, CC_FREE_PFN]
        if cc[0, CC_MIGRATE_PFN] < start_pfn or cc[0, CC_MIGRATE_PFN] >= end_pfn:
            cc[0, CC_MIGRATE_PFN] = start_pfn
            sp.zc[z, ZC_CACHED_MIGRATE_ASYNC] = start_pfn
            sp.zc[z, ZC_CACHED_MIGRATE_SYNC] = start_pfn
        if cc[0, CC_MIGRATE_PFN] <= sp.zc[z, ZC_INIT_MIGRATE_PFN]:
            cc[0, CC_WHOLE_ZONE] = 1
    if capture:
        st.config[CFG_CAPC_ORDER] = order + 1
        st.config[CFG_CAPC_ZONE] = z
        st.config[CFG_CAPC_PAGE] = 0
        st.config[CFG_CAPC_MOVABLE] = int(st.config[CFG_COMPACTION] != 0
                                          and cc[0, CC_MIGRATETYPE] == MIGRATE_MOVABLE)
    sp.vm[VM_COMPACT_RUNS] += 1
    migrated_before = sp.vm[VM_PGMIGRATE_SUCCESS]
    migrate_start = cc[0, CC_MIGRATE_PFN]
    free_start = cc[0, CC_FREE_PFN]
    last_migrated = 0
    update_cached = (not sync
                     and sp.zc[z, ZC_CACHED_MIGRATE_ASYNC] == sp.zc[z, ZC_CACHED_MIGRATE_SYNC])
    guard = 4 * ((end_pfn - start_pfn) >> pbo) + 64
    while guard > 0:
        guard -= 1
        ret = __compact_finished(st, sp, cc)
        if ret != COMPACT_CONTINUE:
            break
        iteration_start = cc[0, CC_MIGRATE_PFN]
        cc[0, CCM_RESCAN] = int((last_migrated >> pbo) == (iteration_start >> pbo))
        if isolate_migratepages(st, sp, cc) == ISOLATE_NONE:
            if update_cached:
                sp.zc[z, ZC_CACHED_MIGRATE_SYNC] = sp.zc[z, ZC_CACHED_MIGRATE_ASYNC]
        else:
            update_cached = False
            last_migrated = iteration_start
            if not migrate_pages(st, sp, cc, cpu, out, req, counters):
                if (cc[0, CC_FREE_PFN] >> pbo) > (cc[0, CC_MIGRATE_PFN] >> pbo):
                    ret = COMPACT_CONTENDED
                    break
                if cc[0, CC_DIRECT] == 1 and cc[0, CC_MODE] == MODE_ASYNC and order > 0:
                    cc[0, CC_MIGRATE_PFN] = (((cc[0, CC_MIGRATE_PFN] - 1) >> order) + 1) << order
                    last_migrated = 0
        if order > 0 and last_migrated:
            if last_migrated < ((cc[0, CC_MIGRATE_PFN] >> order) << order):
                drain_pages_zone(st, cpu, z, out, req, counters)  # lru_add_drain_cpu_zone()
                last_migrated = 0
        if capture and st.config[CFG_CAPC_PAGE] > 0:
            ret = COMPACT_SUCCESS
            break
    high = release_freepages(st, sp, cpu, out, req, counters)
    if high >= 0:
        high = (high >> pbo) << pbo
        if high > sp.zc[z, ZC_CACHED_FREE_PFN]:
            sp.zc[z, ZC_CACHED_FREE_PFN] = high
    sp.vm[VM_COMPACT_MIGRATE_SCANNED] += cc[0, CCM_MIGRATE_SCANNED]
    sp.vm[VM_COMPACT_FREE_SCANNED] += cc[0, CCM_FREE_SCANNED]
    if capture:
        st.config[CFG_CAPC_ORDER] = 0
        if st.config[CFG_CAPC_PAGE] > 0:
            ret = COMPACT_SUCCESS
    sp.results[ret] += 1
    n = sp.cfg[SC_NRUNS]
    if n < sp.run_log.shape[0]:
        row = sp.run_log[n]
        row[RUN_REQ] = req
        row[RUN_ZONE] = z
        row[RUN_ORDER] = order
        row[RUN_MODE] = cc[0, CC_MODE]
        row[RUN_KIND] = 2 if cc[0, CCM_PROACTIVE] == 1 else (
            3 if cc[0, CC_MODE] == MODE_SYNC else cc[0, CC_DIRECT])
        row[RUN_MIGRATE_START] = migrate_start
        row[RUN_FREE_START] = free_start
        row[RUN_MIGRATE_END] = cc[0, CC_MIGRATE_PFN]
        row[RUN_FREE_END] = cc[0, CC_FREE_PFN]
        row[RUN_MIGRATED] = sp.vm[VM_PGMIGRATE_SUCCESS] - migrated_before
        row[RUN_RESULT] = ret
    sp.cfg[SC_NRUNS] = n + 1
    return ret


@njit(cache=True, _nrt=False)
def setup_cc(cc, z, order, mode, direct, mt, alloc_flags, highest, full):
    """A fresh compact_control (compact_zone_order, kcompactd_do_work, proactive_compact_node)."""
    for k in range(cc.shape[1]):
        cc[0, k] = 0
    cc[0, CC_ZONE] = z
    cc[0, CC_ORDER] = order
    cc[0, CC_SEARCH_ORDER] = order
    cc[0, CC_MODE] = mode
    cc[0, CC_DIRECT] = direct
    cc[0, CC_MIGRATETYPE] = mt
    cc[0, CCM_ALLOC_FLAGS] = alloc_flags
    cc[0, CCM_HIGHEST] = highest
    cc[0, CC_WHOLE_ZONE] = full
    cc[0, CC_IGNORE_SKIP] = full
    cc[0, CC_IGNORE_BLOCK] = full if direct == 1 else 0
    cc[0, CC_FAST_FAIL] = 0


# ---- direct compaction -----------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def compact_zone_order(st, sp, z, order, prio, mt, alloc_flags, highest, cpu, out, req,
                       counters):
    """compact_zone_order(): one zone for a direct compaction, with capture. Returns
    (status, captured page or -1)."""
    mode = MODE_ASYNC if prio == COMPACT_PRIO_ASYNC else MODE_SYNC_LIGHT
    setup_cc(sp.cc, z, order, mode, 1, mt, alloc_flags, highest,
             int(prio == COMPACT_PRIO_SYNC_FULL))
    ret = compact_zone(st, sp, sp.cc, True, cpu, out, req, counters)
    page = st.config[CFG_CAPC_PAGE] - 1
    st.config[CFG_CAPC_PAGE] = 0
    if page >= 0:
        sp.vm[VM_CAPTURES] += 1
        return COMPACT_SUCCESS, page
    return ret, -1


@njit(cache=True, _nrt=False)
def try_to_compact_pages(st, sp, gfp, order, alloc_flags, zonelist, nz, highest, prio, mt,
                         cpu, out, req, counters):
    """try_to_compact_pages(): each zone of the zonelist unless deferred, until one succeeds;
    returns (the best result in enum order, captured page or -1)."""
    if sp.cfg[SC_COMPACTION] == 0 or not (gfp & 0x40):  # gfp_compaction_allowed(): __GFP_IO
        return COMPACT_SKIPPED, -1
    rc = COMPACT_SKIPPED
    page = -1
    for k in range(nz):
        z = zonelist[k]
        if st.zone_param[z, ZP_MANAGED] <= 0:
            continue
        if prio > COMPACT_PRIO_SYNC_FULL and compaction_deferred(sp, z, order):
            rc = max(rc, COMPACT_DEFERRED)
            continue
        status, page = compact_zone_order(st, sp, z, order, prio, mt, alloc_flags, highest,
                                          cpu, out, req, counters)
        rc = max(rc, status)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(sp, z, order, False)
            break
        if prio != COMPACT_PRIO_ASYNC and (status == COMPACT_COMPLETE
                                           or status == COMPACT_PARTIAL_SKIPPED):
            defer_compaction(sp, z, order)
    return rc, page


# ---- kcompactd and proactive compaction ------------------------------------------------------

@njit(cache=True, _nrt=False)
def node_zones_up_to(st, node, classzone, z):
    return st.zone_node[z] == node and st.zone_type[z] <= classzone and st.zone_param[
        z, ZP_MANAGED] > 0


@njit(cache=True, _nrt=False)
def kcompactd_node_suitable(st, sp, node):
    order = sp.node[node, ND_KCOMPACTD_ORDER]
    classzone = sp.node[node, ND_KCOMPACTD_CLASSZONE]
    for z in range(st.zone_node.shape[0]):
        if node_zones_up_to(st, node, classzone, z):
            if compaction_suitable(st, sp, z, order, 0, classzone) == COMPACT_CONTINUE:
                return True
    return False


@njit(cache=True, _nrt=False)
def kcompactd_do_work(st, sp, node, cpu, out, req, counters):
    """kcompactd_do_work(): sync-light compaction of each suitable, undeferred zone for the
    highest order asked for (as GFP_KERNEL, so for an UNMOVABLE block)."""
    sp.vm[VM_COMPACT_DAEMON_WAKE] += 1
    order = sp.node[node, ND_KCOMPACTD_ORDER]
    classzone = sp.node[node, ND_KCOMPACTD_CLASSZONE]
    for z in range(st.zone_node.shape[0]):
        if not node_zones_up_to(st, node, classzone, z):
            continue
        if compaction_deferred(sp, z, order):
            continue
        if compaction_suitable(st, sp, z, order, 0, classzone) != COMPACT_CONTINUE:
            continue
        setup_cc(sp.cc, z, order, MODE_SYNC_LIGHT, 0, 0, 0, classzone, 0)
        status = compact_zone(st, sp, sp.cc, False, cpu, out, req, counters)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(sp, z, order, False)
        elif status == COMPACT_PARTIAL_SKIPPED or status == COMPACT_COMPLETE:
            drain_all_pages(st, z, out, req, counters)
            defer_compaction(sp, z, order)
        sp.vm[VM_COMPACT_DAEMON_MIGRATE_SCANNED] += sp.cc[0, CCM_MIGRATE_SCANNED]
        sp.vm[VM_COMPACT_DAEMON_FREE_SCANNED] += sp.cc[0, CCM_FREE_SCANNED]
    if sp.node[node, ND_KCOMPACTD_ORDER] <= order:
        sp.node[node, ND_KCOMPACTD_ORDER] = 0
    if sp.node[node, ND_KCOMPACTD_CLASSZONE] >= classzone:
        sp.node[node, ND_KCOMPACTD_CLASSZONE] = -1


@njit(cache=True, _nrt=False)
def wakeup_kcompactd(st, sp, node, order, classzone, cpu, out, req, counters):
    """wakeup_kcompactd(): raise the node's order and lower its classzone; kcompactd runs at
    once (the model has no scheduler) when some zone is suitable."""
    if order == 0 or sp.cfg[SC_COMPACTION] == 0:
        return
    if sp.node[node, ND_KCOMPACTD_ORDER] < order:
        sp.node[node, ND_KCOMPACTD_ORDER] = order
    if sp.node[node, ND_KCOMPACTD_CLASSZONE] < 0 or sp.node[node,
                                                            ND_KCOMPACTD_CLASSZONE] > classzone:
        sp.node[node, ND_KCOMPACTD_CLASSZONE] = classzone
    if not kcompactd_node_suitable(st, sp, node):
        return
    kcompactd_do_work(st, sp, node, cpu, out, req, counters)


@njit(cache=True, _nrt=False)
def proactive_compact_node(st, sp, node, cpu, out, req, counters):
    """proactive_compact_node(): every zone of the node, order -1, until its score is low."""
    sp.vm[VM_PROACTIVE_RUNS] += 1
    for z in range(st.zone_node.shape[0]):
        if st.zone_node[z] != node or st.zone_param[z, ZP_MANAGED] <= 0:
            continue
        setup_cc(sp.cc, z, -1, MODE_SYNC_LIGHT, 0, 0, 0, st.zone_type[z], 1)
        sp.cc[0, CCM_PROACTIVE] = 1
        compact_zone(st, sp, sp.cc, False, cpu, out, req, counters)


@njit(cache=True, _nrt=False)
def compact_nodes(st, sp, cpu, out, req, counters):
    """compact_nodes() (a write to /proc/sys/vm/compact_memory): every populated zone of every
    node, whole, synchronously, ignoring the skip hints, for no particular order."""
    if sp.cfg[SC_COMPACTION] == 0:
        return
    for z in range(st.zone_node.shape[0]):
        if st.zone_param[z, ZP_MANAGED] <= 0:
            continue
        setup_cc(sp.cc, z, -1, MODE_SYNC, 0, 0, 0, st.zone_type[z], 1)
        compact_zone(st, sp, sp.cc, False, cpu, out, req, counters)


@njit(cache=True, _nrt=False)
def kcompactd_timer(st, sp, now_ns, cpu, out, req, counters):
    """kcompactd's timeout (HPAGE_FRAG_CHECK_INTERVAL_MSEC, 32 times longer after a run that
    did not lower the score): proactive compaction when the node's fragmentation score is
    above the high mark and kswapd sleeps."""
    node = proactive_compaction_due(st, sp, now_ns)
    while node >= 0:
        prev = fragmentation_score_node(st, sp, node)
        proactive_compact_node(st, sp, node, cpu, out, req, counters)
        nxt = HPAGE_FRAG_CHECK_INTERVAL_NS
        if fragmentation_score_node(st, sp, node) >= prev:
            nxt = HPAGE_FRAG_CHECK_INTERVAL_NS << COMPACT_MAX_DEFER_SHIFT
        sp.node[node, ND_PROACTIVE_NEXT_NS] = now_ns + nxt
        node = proactive_compaction_due(st, sp, now_ns)


@njit(cache=True, _nrt=False)
def proactive_compaction_due(st, sp, now_ns):
    """kcompactd_timer's test without its work: the first node whose timeout has come and
    whose score is above the high mark while kswapd sleeps (-1: none); the nodes before it
    whose timeout came with nothing to do are rescheduled, as kcompactd_timer does."""
    if sp.cfg[SC_PROACTIVENESS] <= 0 or sp.cfg[SC_COMPACTION] == 0:
        return -1
    for node in range(sp.node.shape[0]):
        if now_ns < sp.node[node, ND_PROACTIVE_NEXT_NS]:
            continue
        if (sp.node[node, ND_KSWAPD_ACTIVE] == 0
                and fragmentation_score_node(st, sp, node) > fragmentation_score_wmark(sp,
                                                                                       False)):
            return node
        sp.node[node, ND_PROACTIVE_NEXT_NS] = now_ns + HPAGE_FRAG_CHECK_INTERVAL_NS
    return -1
