"""Following compaction through a trace (reconstruct): the traced free scanner, and the moves
the trace cannot show, inferred by running the kernel's own code on the exact free lists.

Per compacting task, a `cc` row (compaction.py) follows its run from mm_compaction_begin to
mm_compaction_end (docs/kernel-6.1-compaction.md A11):
* mm_compaction_isolate_freepages: the free scanner's visit of the range at its stride (32 for
  an async call's first block, doubled after each empty block, 1 after a block that isolated
  anything), taking the free blocks whose head it visits; another stride is tried when the
  traced nr_taken / nr_scanned say so. Taken blocks become allocated order-0 targets.
* the migration rounds: isolate_migratepages opens a round of nr_taken sources; each source the
  task frees consumes a target; when the task's target list runs empty, isolate_freepages() runs
  again, and for runs with an order it starts with the untraced fast_isolate_freepages(), run on
  the model's MOVABLE lists (fast_isolate_around's scan is traced). fast_find_migrateblock()'s
  untraced list rotations are replayed where the migrate scanner's jump shows it ran.
* direct compaction captures: a free by the compacting task (or an interrupt on its CPU) that
  merges to the requested order is taken for it, with no event (the task's mm_page_alloc
  follows with no zone_locked).
"""

from __future__ import annotations

from replay.engine.buddy import MIGRATE_MOVABLE, find_free_block
from replay.engine.compaction import (
    CC_ACTIVE,
    CC_AROUND,
    CC_ATTEMPTS,
    CC_CAPTURE,
    CC_DIRECT,
    CC_END_RESETS,
    CC_END_SUCCESS,
    CC_FAST_FAIL,
    CC_FREE_PFN,
    CC_IGNORE_SKIP,
    CC_IN_CALL,
    CC_IN_ROUND,
    CC_LAST_USE,
    CC_MIGRATE_PFN,
    CC_MIGRATETYPE,
    CC_MODE,
    CC_NEED_ISOLATE,
    CC_NEXT_ORDER,
    CC_NR_FREEPAGES,
    CC_NR_MIGRATEPAGES,
    CC_ORDER,
    CC_PID,
    CC_ROUND_HI,
    CC_ROUND_LO,
    CC_SEARCH_ORDER,
    CC_STRIDE,
    CC_TRY_ORDER,
    CC_TRY_PRIO,
    CC_WHOLE_ZONE,
    CC_ZONE,
    COMPACT_CLUSTER_MAX,
    K_RUNS,
    MODE_ASYNC,
    MODE_SYNC,
    MODE_SYNC_LIGHT,
    PAGE_ALLOC_COSTLY_ORDER,
    TARGET_INFERRED,
    ZC_BLOCKSKIP_FLUSH,
    ZC_CACHED_FREE_PFN,
    ZC_CONSIDERED,
    ZC_DEFER_SHIFT,
    ZC_INIT_FREE_PFN,
    ZC_ORDER_FAILED,
    __isolate_free_page,
    fast_find_migrateblock_rotate,
    fast_isolate_freepages,
    pageblock_end_pfn,
    pageblock_start_pfn,
    reset_isolation_free_pfn,
    revert_inferred_target,
    visit_freepages_block,
)
from replay.engine.events import (
    CE_CONSIDER,
    CE_END,
    CE_FAILED,
    CE_FREE_PFN,
    CE_LIMIT,
    CE_MIGRATE_PFN,
    CE_MIGRATED,
    CE_NODE,
    CE_ORDER_FAILED,
    CE_PRIORITY,
    CE_SCANNED,
    CE_START,
    CE_STATUS,
    CE_SYNC,
    CE_TAKEN,
    CE_TASK,
    CE_ZONE_TYPE,
    TASK_KCOMPACTD,
    TASK_KSWAPD,
    TASK_OTHER,
)
from replay.engine.jit import njit
from replay.engine.profile import CFG_COMPACTION
from replay.engine.state import PG_ALLOC, PG_BUDDY, ZP_END, ZP_START
from replay.trace.schema import (
    EV_COMPACT_BEGIN,
    EV_COMPACT_DEFERRED,
    EV_COMPACT_END,
    EV_COMPACT_SUITABLE,
    EV_DEFER_COMPACTION,
    EV_DEFER_RESET,
    EV_FAST_ISOLATE_FREE,
    EV_ISOLATE_FREE,
    EV_ISOLATE_MIGRATE,
    EV_MIGRATEPAGES,
    EV_TRY_TO_COMPACT,
)

STATUS_COMPLETE, STATUS_PARTIAL_SKIPPED, STATUS_SUCCESS = 5, 6, 8  # enum compact_result

# compaction counters: indices into the follow counters array (follow.py COUNTER_NAMES)
(K_RUNS_SEEN, K_FREE_EVENTS, K_FREE_PAGES, K_FREE_MISMATCH, K_FAST_CALLS, K_FAST_PAGES,
 K_CAPTURES, K_CAPTURED_PAGES, K_RELEASED, K_MIGRATED, K_ROTATIONS, K_RESETS,
 K_STRIDE_FIXES, K_RELEASE_UNKNOWN, K_FAST_COLD, K_RECONCILED, K_FAST_CORRECTED,
 K_COMPACTION_FREE) = range(18)
N_KCOUNTERS = 18
KCOUNTER_NAMES: tuple[str, ...] = (
    "runs",  # mm_compaction_begin .. end followed
    "free_scanner_events",  # mm_compaction_isolate_freepages applied
    "free_scanner_pages",  # pages those events isolated (their nr_taken)
    "free_scanner_events_not_reproduced",  # inconsistency: nr_taken/nr_scanned not matched
    "fast_search_calls",  # untraced fast_isolate_freepages() runs (order > 0 compaction)
    "fast_search_pages",  # pages they took (inferred)
    "captures",  # direct compaction captured a block freed by the task
    "captured_pages",
    "targets_released",  # targets freed back by release_freepages()
    "migrated_pages",  # sum of mm_compaction_migratepages nr_migrated
    "migrate_scanner_list_rotations",  # fast_find_migrateblock() walks replayed
    "skip_hint_resets",  # __reset_isolation_suitable() (compact_init_free_pfn)
    "stride_corrections",  # a free-scanner event matched at another stride
    "release_of_unknown_target",  # diagnostic
    "fast_search_cold_picks",  # inferred from a list position the trace never set
    "reconciled_by_scan_pages",  # net pages a stride-1 scan showed taken (less those free)
    "fast_search_corrected",  # 6.12: a traced fast search took another size than the model's
    "compaction_free_events",  # 6.12: mm_page_free of a target that stayed isolated
)
assert len(KCOUNTER_NAMES) == N_KCOUNTERS


@njit(cache=True, _nrt=False)
def task_run(cc, pid):
    """The row of the task's open compaction run, or -1."""
    for k in range(K_RUNS):
        if cc[k, CC_PID] == pid and cc[k, CC_ACTIVE] == 1:
            return k
    return -1


@njit(cache=True, _nrt=False)
def task_row(cc, pid, stamp):
    """The task's row (a free or the least recently used closed one for a new task)."""
    best = -1
    for k in range(K_RUNS):
        if cc[k, CC_PID] == pid:
            cc[k, CC_LAST_USE] = stamp
            return k
    for k in range(K_RUNS):
        if cc[k, CC_ACTIVE] == 0 and (best < 0 or cc[k, CC_LAST_USE] < cc[best, CC_LAST_USE]):
            best = k
    if best < 0:
        best = 0
    for f in range(cc.shape[1]):
        cc[best, f] = -1
    cc[best, CC_PID] = pid
    cc[best, CC_ACTIVE] = 0
    cc[best, CC_LAST_USE] = stamp
    return best


@njit(cache=True, _nrt=False)
def isolate_freepages_call(st, cc, zc, r, kc):
    """A new isolate_freepages() call (the task's target list ran empty): the fast search
    first for runs with an order; fast_isolate_around's scan, when it runs, is the next traced
    event at the chosen pageblock."""
    cc[r, CC_NEED_ISOLATE] = 0
    cc[r, CC_IN_CALL] = 1
    cc[r, CC_STRIDE] = COMPACT_CLUSTER_MAX if cc[r, CC_MODE] == MODE_ASYNC else 1
    cc[r, CC_AROUND] = -1
    if cc[r, CC_ORDER] <= 0:
        return
    kc[K_FAST_CALLS] += 1
    before = cc[r, CC_NR_FREEPAGES]
    page, around = fast_isolate_freepages(st, cc, zc, r)
    if page >= 0:
        kc[K_FAST_PAGES] += cc[r, CC_NR_FREEPAGES] - before
        if st.pg_warm[page] == 0:
            kc[K_FAST_COLD] += 1  # a block whose list position the trace never set
    if around >= 0 and cc[r, CC_NR_FREEPAGES] < cc[r, CC_NR_MIGRATEPAGES] and not (
            cc[r, CC_DIRECT] == 1 and cc[r, CC_MODE] == MODE_ASYNC):
        z = cc[r, CC_ZONE]
        cc[r, CC_AROUND] = max(pageblock_start_pfn(st, around), st.zone_param[z, ZP_START])


@njit(cache=True, _nrt=False)
def fast_isolate_freepages_event(st, cc, zc, r, min_pfn, free_pfn, nr_taken, kc):
    """6.12's traced mm_compaction_fast_isolate_freepages (range = min_pfn ~ cc->free_pfn,
    nr_taken = pages of the one block taken): the start of an isolate_freepages() call. The
    model's fast search runs on its lists; when it took another size than the kernel's, its
    take is undone and the kernel's size is taken from the MOVABLE list's tail, at or above
    min_pfn."""
    z = cc[r, CC_ZONE]
    cc[r, CC_NEED_ISOLATE] = 0
    cc[r, CC_IN_CALL] = 1
    cc[r, CC_STRIDE] = COMPACT_CLUSTER_MAX if cc[r, CC_MODE] == MODE_ASYNC else 1
    cc[r, CC_AROUND] = -1
    cc[r, CC_FREE_PFN] = free_pfn
    kc[K_FAST_CALLS] += 1
    before = cc[r, CC_NR_FREEPAGES]
    page, around = fast_isolate_freepages(st, cc, zc, r)
    got = cc[r, CC_NR_FREEPAGES] - before
    if got != nr_taken:
        kc[K_FAST_CORRECTED] += 1
        if page >= 0:
            revert_inferred_target(st, page)
            cc[r, CC_NR_FREEPAGES] = before
            page = -1
        if nr_taken > 0:
            order = 0
            while (1 << order) < nr_taken:
                order += 1
            p = st.fl_tail[z, order, MIGRATE_MOVABLE]
            while p >= 0 and p < min_pfn:
                p = st.pg_prev[p]
            if p < 0:
                p = st.fl_tail[z, order, MIGRATE_MOVABLE]
            if p >= 0:
                cc[r, CC_NR_FREEPAGES] += __isolate_free_page(st, z, p, True)
                page = p
                around = p
    if page >= 0:
        kc[K_FAST_PAGES] += cc[r, CC_NR_FREEPAGES] - before
    if around >= 0 and cc[r, CC_NR_FREEPAGES] < cc[r, CC_NR_MIGRATEPAGES] and not (
            cc[r, CC_DIRECT] == 1 and cc[r, CC_MODE] == MODE_ASYNC):
        cc[r, CC_AROUND] = max(pageblock_start_pfn(st, around), st.zone_param[z, ZP_START])


@njit(cache=True, _nrt=False)
def resolve_pending(st, cc, zc, r, kc):
    if cc[r, CC_NEED_ISOLATE] == 1:
        isolate_freepages_call(st, cc, zc, r, kc)


@njit(cache=True, _nrt=False)
def _try_strides(st, start, end, blk_end, stride, want_taken, want_scanned, heads, nh):
    """The stride whose visit reproduces the event (the run's own first, then 1..32):
    returns (stride, matched both counts)."""
    sc, tk, stop, n = visit_freepages_block(st, start, end, blk_end, stride, heads, nh)
    if tk == want_taken and sc == want_scanned and stop == end:
        return stride, True
    s = 1
    while s <= COMPACT_CLUSTER_MAX:
        if s != stride:
            sc, tk, stop, n = visit_freepages_block(st, start, end, blk_end, s, heads, nh)
            if tk == want_taken and sc == want_scanned and stop == end:
                return s, True
        s <<= 1
    s = stride
    sc, tk, stop, n = visit_freepages_block(st, start, end, blk_end, s, heads, nh)
    if tk == want_taken:
        return s, False
    s = 1
    while s <= COMPACT_CLUSTER_MAX:
        sc, tk, stop, n = visit_freepages_block(st, start, end, blk_end, s, heads, nh)
        if tk == want_taken:
            return s, False
        s <<= 1
    return -1, False


@njit(cache=True, _nrt=False)
def reconcile_scanned_range(st, z, start, end, blk_end, stride, nr_taken, heads, nh, kc):
    """The scanner's visit shows the kernel's free set there (every head, at stride 1): blocks
    the model inferred as fast-search targets in the range were free after all (reverted);
    free blocks the model has beyond what the kernel found were taken by an untraced fast
    search (inferred, largest first). Returns whether anything changed."""
    changed = False
    for p in range(start, end):
        if st.pg_target[p] >= TARGET_INFERRED and st.pg_state[p] == PG_ALLOC:
            kc[K_RECONCILED] -= revert_inferred_target(st, p)
            changed = True
    if stride != 1 or end != blk_end:
        return changed
    sc, tk, stop, n = visit_freepages_block(st, start, end, blk_end, 1, heads, nh)
    extra = tk - nr_taken
    if extra <= 0 or n > heads.shape[0]:
        return changed
    for o in range(10, -1, -1):  # drop blocks of the model's extra pages, largest first
        for k in range(n):
            h = heads[k]
            if extra >= (1 << o) and st.pg_state[h] == PG_BUDDY and st.pg_order[h] == o:
                extra -= __isolate_free_page(st, z, h, True)
                kc[K_RECONCILED] += 1 << o
                changed = True
    return changed


@njit(cache=True, _nrt=False)
def isolate_freepages_event(st, cc, zc, r, start, end, nr_scanned, nr_taken, heads, nh, kc):
    """A traced mm_compaction_isolate_freepages: take what the free scanner took."""
    z = st.pg_zone[start] if 0 <= start < st.pg_zone.shape[0] else -1
    if z < 0:
        kc[K_FREE_MISMATCH] += 1
        return
    blk_end = min(pageblock_end_pfn(st, start), st.zone_param[z, ZP_END])
    around = r >= 0 and cc[r, CC_AROUND] >= 0 and start == cc[r, CC_AROUND]
    if r < 0 or around:
        stride = 1
    else:
        if cc[r, CC_IN_CALL] != 1:
            cc[r, CC_IN_CALL] = 1
            cc[r, CC_STRIDE] = COMPACT_CLUSTER_MAX if cc[r, CC_MODE] == MODE_ASYNC else 1
        stride = cc[r, CC_STRIDE]
    kc[K_FREE_EVENTS] += 1
    used, exact = _try_strides(st, start, end, blk_end, stride, nr_taken, nr_scanned, heads, nh)
    if not exact and reconcile_scanned_range(st, z, start, end, blk_end, stride, nr_taken,
                                             heads, nh, kc):
        used, exact = _try_strides(st, start, end, blk_end, stride, nr_taken, nr_scanned,
                                   heads, nh)
    if used < 0:
        # the model's free set disagrees: take free heads of the range in pfn order
        kc[K_FREE_MISMATCH] += 1
        got = 0
        p = start
        while p < end and got < nr_taken:
            if st.pg_state[p] == PG_BUDDY and got + (1 << st.pg_order[p]) <= nr_taken:
                got += __isolate_free_page(st, z, p, False)
            p += 1
        kc[K_FREE_PAGES] += got
    else:
        if used != stride:
            kc[K_STRIDE_FIXES] += 1
        visit_freepages_block(st, start, end, blk_end, used, heads, nh)
        n = nh[0]
        got = 0
        for k in range(min(n, heads.shape[0])):
            got += __isolate_free_page(st, z, heads[k], False)
        kc[K_FREE_PAGES] += got
        if not exact:
            kc[K_FREE_MISMATCH] += 1
    if r < 0:
        return
    cc[r, CC_NR_FREEPAGES] += nr_taken
    if around:
        cc[r, CC_AROUND] = -1
        return
    block_start = pageblock_start_pfn(st, start)
    enough = cc[r, CC_NR_FREEPAGES] >= cc[r, CC_NR_MIGRATEPAGES]
    if enough and end >= blk_end:
        cc[r, CC_FREE_PFN] = block_start - (blk_end - block_start)
    elif enough or end < blk_end:
        cc[r, CC_FREE_PFN] = end
    else:
        cc[r, CC_FREE_PFN] = block_start - (blk_end - block_start)
    cc[r, CC_STRIDE] = 1 if nr_taken else min(COMPACT_CLUSTER_MAX, 2 * stride)


@njit(cache=True, _nrt=False)
def isolate_migratepages_event(st, cc, r, start, end, nr_taken, kc):
    """A traced mm_compaction_isolate_migratepages: the rotations of fast_find_migrateblock()
    (when it ran), the migrate scanner's position, and a new round of sources."""
    z = cc[r, CC_ZONE]
    mpfn = cc[r, CC_MIGRATE_PFN]
    zone_start = st.zone_param[z, ZP_START]
    if (cc[r, CC_ORDER] > PAGE_ALLOC_COSTLY_ORDER and cc[r, CC_IGNORE_SKIP] != 1
            and (mpfn == zone_start or mpfn == pageblock_start_pfn(st, mpfn))
            and not (cc[r, CC_DIRECT] == 1 and cc[r, CC_MIGRATETYPE] != MIGRATE_MOVABLE)):
        distance = (cc[r, CC_FREE_PFN] - mpfn) >> 1
        if mpfn != zone_start:
            distance >>= 2
        high_pfn = pageblock_start_pfn(st, mpfn + distance)
        # the scanner's pageblock, even where it did not move: fast_find_migrateblock() may
        # find a free page in migrate_pfn's own pageblock (its skip bit is clear, as the scan
        # of it shows), and then rotates that list, not the one where the limit ran out
        found = pageblock_start_pfn(st, start)
        got = fast_find_migrateblock_rotate(st, cc, r, found, high_pfn)
        kc[K_ROTATIONS] += 1
        if got >= 0:
            cc[r, CC_FAST_FAIL] = 0
        else:
            cc[r, CC_FAST_FAIL] += 1
    cc[r, CC_MIGRATE_PFN] = end
    cc[r, CC_NR_MIGRATEPAGES] = nr_taken
    cc[r, CC_ATTEMPTS] = nr_taken
    cc[r, CC_ROUND_LO] = start
    cc[r, CC_ROUND_HI] = end
    cc[r, CC_IN_CALL] = 0
    cc[r, CC_IN_ROUND] = 1 if nr_taken > 0 else 0
    if nr_taken > 0 and cc[r, CC_NR_FREEPAGES] <= 0:
        cc[r, CC_NR_FREEPAGES] = 0
        if st.config[CFG_COMPACTION] == 0:  # 6.12 traces each fast search itself
            cc[r, CC_NEED_ISOLATE] = 1


@njit(cache=True, _nrt=False)
def begin_run(st, cc, zc, r, zone_start, migrate_pfn, free_pfn, sync, task, kc):
    """mm_compaction_begin: a compact_control for the run."""
    z = st.pg_zone[zone_start] if 0 <= zone_start < st.pg_zone.shape[0] else -1
    if z < 0:
        return
    order = cc[r, CC_NEXT_ORDER]
    direct = cc[r, CC_TRY_ORDER] >= 0 and task == TASK_OTHER
    cc[r, CC_ACTIVE] = 1
    cc[r, CC_ZONE] = z
    cc[r, CC_ORDER] = order
    cc[r, CC_DIRECT] = 1 if direct else 0
    if sync == 0:
        cc[r, CC_MODE] = MODE_ASYNC
    elif order < 0 and task != TASK_KCOMPACTD:
        cc[r, CC_MODE] = MODE_SYNC  # compact_memory
    else:
        cc[r, CC_MODE] = MODE_SYNC_LIGHT
    prio0 = direct and cc[r, CC_TRY_PRIO] == 0
    cc[r, CC_IGNORE_SKIP] = 1 if (prio0 or order < 0) else 0
    cc[r, CC_WHOLE_ZONE] = 1 if (prio0 or order < 0) else 0
    cc[r, CC_MIGRATE_PFN] = migrate_pfn
    cc[r, CC_FREE_PFN] = free_pfn
    cc[r, CC_SEARCH_ORDER] = order
    cc[r, CC_FAST_FAIL] = 0
    cc[r, CC_NR_FREEPAGES] = 0
    cc[r, CC_NR_MIGRATEPAGES] = 0
    cc[r, CC_ATTEMPTS] = 0
    cc[r, CC_IN_CALL] = 0
    cc[r, CC_CAPTURE] = -1
    cc[r, CC_NEED_ISOLATE] = 0
    cc[r, CC_AROUND] = -1
    cc[r, CC_ROUND_LO] = -1
    cc[r, CC_ROUND_HI] = -1
    cc[r, CC_IN_ROUND] = 0
    if cc[r, CC_WHOLE_ZONE] != 1:
        zc[z, ZC_CACHED_FREE_PFN] = free_pfn
    # compaction_restarting(): skip hints reset after a long deferral
    if (zc[z, ZC_DEFER_SHIFT] == 6 and zc[z, ZC_CONSIDERED] >= 64
            and order >= zc[z, ZC_ORDER_FAILED]):
        reset_isolation_suitable(st, zc, z, kc)
    kc[K_RUNS_SEEN] += 1


@njit(cache=True, _nrt=False)
def reset_isolation_suitable(st, zc, z, kc):
    """__reset_isolation_suitable(): only after a direct compaction's scanners met."""
    if zc[z, ZC_BLOCKSKIP_FLUSH] != 1:
        return
    zc[z, ZC_BLOCKSKIP_FLUSH] = 0
    free = reset_isolation_free_pfn(st, z)
    if free >= 0:
        zc[z, ZC_INIT_FREE_PFN] = free
        zc[z, ZC_CACHED_FREE_PFN] = free
    kc[K_RESETS] += 1


@njit(cache=True, _nrt=False)
def acts_without_a_run(e):
    """The compaction events compaction_event() applies while no run is active (the others
    only touch a task's active run); follow_events_fast stops at the first of them."""
    return (e == EV_COMPACT_SUITABLE or e == EV_TRY_TO_COMPACT or e == EV_COMPACT_DEFERRED
            or e == EV_DEFER_COMPACTION or e == EV_DEFER_RESET or e == EV_COMPACT_BEGIN
            or e == EV_ISOLATE_FREE)


@njit(cache=True, _nrt=False)
def compaction_event(st, cc, zc, e, row, pid, gfp, order, stamp, heads, nh, kc):
    """Apply one traced compaction event (row: its CE_* fields)."""
    if e == EV_COMPACT_SUITABLE:
        if row[CE_TASK] == TASK_KSWAPD:
            # kswapd_try_to_sleep(): reset_isolation_suitable(), then wakeup_kcompactd()
            for z in range(zc.shape[0]):
                reset_isolation_suitable(st, zc, z, kc)
        r = task_row(cc, pid, stamp)
        if cc[r, CC_ACTIVE] != 1:
            cc[r, CC_NEXT_ORDER] = order
        return
    if e == EV_TRY_TO_COMPACT:
        r = task_row(cc, pid, stamp)
        cc[r, CC_END_RESETS] = -1
        cc[r, CC_TRY_ORDER] = order
        cc[r, CC_TRY_PRIO] = row[CE_PRIORITY]
        cc[r, CC_MIGRATETYPE] = (gfp & 0x18) >> 3 if gfp >= 0 else MIGRATE_MOVABLE
        return
    if e == EV_COMPACT_DEFERRED or e == EV_DEFER_COMPACTION or e == EV_DEFER_RESET:
        z = zone_of_event(st, row)
        defer_event(zc, z, row[CE_CONSIDER], row[CE_LIMIT], row[CE_ORDER_FAILED])
        if e == EV_DEFER_RESET and z >= 0:
            direct_compact_defer_reset(cc, zc, pid, z)
        return
    if e == EV_COMPACT_BEGIN:
        r = task_row(cc, pid, stamp)
        begin_run(st, cc, zc, r, row[CE_START], row[CE_MIGRATE_PFN], row[CE_FREE_PFN],
                  row[CE_SYNC], row[CE_TASK], kc)
        return
    if e == EV_FAST_ISOLATE_FREE:
        r = task_run(cc, pid)
        if r >= 0:
            fast_isolate_freepages_event(st, cc, zc, r, row[CE_START], row[CE_END],
                                         row[CE_TAKEN], kc)
        return
    if e == EV_ISOLATE_FREE:
        r = task_run(cc, pid)
        if r >= 0:
            resolve_pending(st, cc, zc, r, kc)
        isolate_freepages_event(st, cc, zc, r, row[CE_START], row[CE_END], row[CE_SCANNED],
                                row[CE_TAKEN], heads, nh, kc)
        return
    r = task_run(cc, pid)
    if r < 0:
        return
    if e == EV_ISOLATE_MIGRATE:
        resolve_pending(st, cc, zc, r, kc)
        isolate_migratepages_event(st, cc, r, row[CE_START], row[CE_END], row[CE_TAKEN], kc)
    elif e == EV_MIGRATEPAGES:
        if cc[r, CC_NEED_ISOLATE] == 1 and row[CE_FAILED] > 0:
            isolate_freepages_call(st, cc, zc, r, kc)  # a failing source's target
        cc[r, CC_NEED_ISOLATE] = 0
        cc[r, CC_ATTEMPTS] = 0
        cc[r, CC_IN_CALL] = 0
        cc[r, CC_IN_ROUND] = 0
        kc[K_MIGRATED] += max(row[CE_MIGRATED], 0)
    elif e == EV_COMPACT_END:
        z = cc[r, CC_ZONE]
        status = row[CE_STATUS]
        if cc[r, CC_DIRECT] == 1 and (status == STATUS_COMPLETE
                                      or status == STATUS_PARTIAL_SKIPPED):
            zc[z, ZC_BLOCKSKIP_FLUSH] = 1  # __compact_finished(): the scanners met
        if cc[r, CC_DIRECT] == 1:
            cc[r, CC_END_SUCCESS] = 1 if status == STATUS_SUCCESS else 0
            cc[r, CC_END_RESETS] = 0
        cc[r, CC_ACTIVE] = 0
        cc[r, CC_TRY_ORDER] = -1
        cc[r, CC_NEXT_ORDER] = -1
        cc[r, CC_NEED_ISOLATE] = 0


@njit(cache=True, _nrt=False)
def direct_compact_defer_reset(cc, zc, pid, z):
    """A task's mm_compaction_defer_reset after its direct compaction. try_to_compact_pages()
    traces one when the run ended COMPACT_SUCCESS (compaction.c:2605); the next one is
    __alloc_pages_direct_compact()'s after the allocation succeeded in zone z, which also
    clears compact_blockskip_flush (page_alloc.c:4592): kswapd's next sleep then resets no
    skip hints (nor compact_init_free_pfn)."""
    for k in range(K_RUNS):
        if cc[k, CC_PID] == pid:
            if cc[k, CC_ACTIVE] == 1 or cc[k, CC_DIRECT] != 1 or cc[k, CC_END_RESETS] < 0:
                return
            cc[k, CC_END_RESETS] += 1
            if cc[k, CC_END_RESETS] > cc[k, CC_END_SUCCESS]:
                zc[z, ZC_BLOCKSKIP_FLUSH] = 0
                cc[k, CC_END_RESETS] = -1
            return


@njit(cache=True, _nrt=False)
def zone_of_event(st, row):
    """The engine's zone index of an event's printed node and zone name, or -1."""
    for z in range(st.zone_type.shape[0]):
        if st.zone_type[z] == row[CE_ZONE_TYPE] and st.zone_node[z] == max(row[CE_NODE], 0):
            return z
    return -1


@njit(cache=True, _nrt=False)
def defer_event(zc, z, considered, limit, order_failed):
    """The zone's deferral state as a defer event prints it."""
    if z < 0:
        return
    zc[z, ZC_CONSIDERED] = considered
    shift = 0
    while limit > 1:
        limit >>= 1
        shift += 1
    zc[z, ZC_DEFER_SHIFT] = shift
    zc[z, ZC_ORDER_FAILED] = order_failed


@njit(cache=True, _nrt=False)
def task_event(cc, zc, st, r, task_context, kc):
    """Any non-compaction event of a compacting task: a new isolate_freepages() call starts
    with the next traced free-scanner event."""
    if task_context:
        cc[r, CC_IN_CALL] = 0


@njit(cache=True, _nrt=False)
def source_freed(st, cc, zc, r, pfn, order, kc):
    """A page freed by the compacting task: a migrated source consumes a target (the target
    list running empty starts a new isolate_freepages() call for the next source)."""
    if order != 0 or not (cc[r, CC_ROUND_LO] <= pfn < cc[r, CC_ROUND_HI]):
        if order == 0 and st.pg_target[pfn] == 0 and cc[r, CC_NR_FREEPAGES] > 0:
            kc[K_RELEASE_UNKNOWN] += 1  # looks like a release of a target the model lacks
        return
    if cc[r, CC_ATTEMPTS] <= 0:
        return
    resolve_pending(st, cc, zc, r, kc)
    if cc[r, CC_NR_FREEPAGES] > 0:
        cc[r, CC_NR_FREEPAGES] -= 1
    cc[r, CC_ATTEMPTS] -= 1
    if st.config[CFG_COMPACTION] != 0:
        cc[r, CC_NR_MIGRATEPAGES] -= 1  # 6.12: compaction_alloc() counts it down
    elif cc[r, CC_ATTEMPTS] > 0 and cc[r, CC_NR_FREEPAGES] == 0:
        cc[r, CC_NEED_ISOLATE] = 1


@njit(cache=True, _nrt=False)
def capture_order_of(cc, r, z):
    """The order a direct compaction run would capture in zone z, or -1."""
    if r < 0 or cc[r, CC_DIRECT] != 1 or cc[r, CC_ZONE] != z or cc[r, CC_CAPTURE] >= 0:
        return -1
    return cc[r, CC_ORDER]


@njit(cache=True, _nrt=False)
def is_free(st, pfn):
    return find_free_block(st, pfn) >= 0
