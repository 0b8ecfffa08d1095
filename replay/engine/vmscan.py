"""Reclaim and kswapd for the model (mm/vmscan.c, 6.1).

The trace's own frees stand in for what reclaim freed in the kernel: kswapd's and direct
reclaim's frees are traced, and the model applies them like any other. What the model adds:
- kswapd's state: woken by `wakeup_kswapd` (the slow path's `wake_all_kswapds`), balancing the
  node until some zone is above its high watermark (`pgdat_balanced`); while it runs, its zones
  are `ZONE_RECLAIM_ACTIVE` (the pcp lists drain at 4 batches, nr_pcp_high). Going back to
  sleep it resets the skip bits a direct compaction asked to flush and wakes kcompactd.
- reclaim of its own where the model runs shorter than the kernel did (`try_to_free_pages`,
  in the slow path's direct reclaim): the oldest LRU pages are freed, and the trace's later
  free of such a page is recognised (`pfn_map` = MAP_RECLAIMED), counted and skipped.
"""

from __future__ import annotations

from replay.engine.compact_model import (
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    compaction_suitable,
    reset_isolation_suitable,
    wakeup_kcompactd,
)
from replay.engine.jit import njit
from replay.engine.lru import lru_del, lru_oldest
from replay.engine.policy import free_the_page, zone_watermark_ok
from replay.engine.slow_state import (
    MAP_RECLAIMED,
    ND_KSWAPD_ACTIVE,
    ND_KSWAPD_CLASSZONE,
    ND_KSWAPD_FAILURES,
    ND_KSWAPD_FREED,
    ND_KSWAPD_ORDER,
    SC_KSWAPD_ANY,
    SC_KSWAPD_RUN,
    SC_RECLAIM,
    VM_KSWAPD_WAKES,
    VM_PAGEOUTRUN,
    VM_PGSTEAL_DIRECT,
)
from replay.engine.state import (
    ZONE_RECLAIM_ACTIVE,
    ZP_BOOST,
    ZP_FLAGS,
    ZP_HIGH,
    ZP_MANAGED,
)

SWAP_CLUSTER_MAX = 32
MAX_RECLAIM_RETRIES = 16
__GFP_DIRECT_RECLAIM = 0x400


@njit(cache=True, _nrt=False)
def pgdat_balanced(st, node, order, classzone):
    """pgdat_balanced(): some managed zone up to classzone meets high + boost at the order."""
    for z in range(st.zone_node.shape[0]):
        if st.zone_node[z] != node or st.zone_type[z] > classzone:
            continue
        if st.zone_param[z, ZP_MANAGED] <= 0:
            continue
        mark = st.zone_param[z, ZP_HIGH] + st.zone_param[z, ZP_BOOST]
        if zone_watermark_ok(st, z, order, mark, classzone, 0):
            return True
    return False


@njit(cache=True, _nrt=False)
def pgdat_watermark_boosted(st, node, classzone):
    for z in range(st.zone_node.shape[0]):
        if (st.zone_node[z] == node and st.zone_type[z] <= classzone
                and st.zone_param[z, ZP_BOOST] > 0):
            return True
    return False


@njit(cache=True, _nrt=False)
def set_reclaim_active(st, node, classzone, on):
    """set_reclaim_active() / clear_reclaim_active() on the node's zones up to classzone."""
    for z in range(st.zone_node.shape[0]):
        if st.zone_node[z] == node and st.zone_type[z] <= classzone:
            if on:
                st.zone_param[z, ZP_FLAGS] |= ZONE_RECLAIM_ACTIVE
            else:
                st.zone_param[z, ZP_FLAGS] &= ~ZONE_RECLAIM_ACTIVE


@njit(cache=True, _nrt=False)
def wakeup_kswapd(st, sp, z, gfp, order, classzone, cpu, out, req, counters):
    """wakeup_kswapd(): raise the order and classzone kswapd balances for; a balanced,
    unboosted node wakes kcompactd instead (for requests that cannot reclaim directly)."""
    node = st.zone_node[z]
    if st.zone_param[z, ZP_MANAGED] <= 0:
        return
    if sp.node[node, ND_KSWAPD_ACTIVE]:
        sp.node[node, ND_KSWAPD_ORDER] = max(sp.node[node, ND_KSWAPD_ORDER], order)
        sp.node[node, ND_KSWAPD_CLASSZONE] = max(sp.node[node, ND_KSWAPD_CLASSZONE], classzone)
        return
    if sp.node[node, ND_KSWAPD_FAILURES] >= MAX_RECLAIM_RETRIES or (
            pgdat_balanced(st, node, order, classzone)
            and not pgdat_watermark_boosted(st, node, classzone)):
        if not (gfp & __GFP_DIRECT_RECLAIM):
            wakeup_kcompactd(st, sp, node, order, classzone, cpu, out, req, counters)
        return
    kswapd_wake(st, sp, node, order, classzone)


@njit(cache=True, _nrt=False)
def kswapd_wake(st, sp, node, order, classzone):
    """kswapd wakes into balance_pgdat() for order and classzone: set_reclaim_active()."""
    sp.node[node, ND_KSWAPD_ACTIVE] = 1
    sp.node[node, ND_KSWAPD_ORDER] = order
    sp.node[node, ND_KSWAPD_CLASSZONE] = classzone
    sp.node[node, ND_KSWAPD_FREED] = 0
    sp.cfg[SC_KSWAPD_ANY] += 1
    sp.vm[VM_KSWAPD_WAKES] += 1
    sp.vm[VM_PAGEOUTRUN] += 1
    set_reclaim_active(st, node, classzone, True)


@njit(cache=True, _nrt=False)
def kswapd_freed(st, sp, z, pages):
    """A traced free while kswapd balances the node: reclaim progress (sc->nr_reclaimed)."""
    node = st.zone_node[z]
    if sp.node[node, ND_KSWAPD_ACTIVE]:
        sp.node[node, ND_KSWAPD_FREED] += pages


@njit(cache=True, _nrt=False)
def kswapd_run_due(sp, now):
    """A traced kswapd run has begun by `now` (runs that ended before it are passed over)."""
    runs = sp.kswapd_runs
    k = sp.cfg[SC_KSWAPD_RUN]
    while k < runs.shape[0] and runs[k, 2] < now:
        k += 1
    sp.cfg[SC_KSWAPD_RUN] = k
    return k < runs.shape[0] and runs[k, 1] <= now


@njit(cache=True, _nrt=False)
def in_traced_kswapd_run(sp, node, now):
    """The trace shows the node's kswapd at work around `now` (a run spans it)."""
    runs = sp.kswapd_runs
    k = sp.cfg[SC_KSWAPD_RUN]
    while k < runs.shape[0] and runs[k, 1] <= now:
        if runs[k, 0] == node and runs[k, 2] >= now:
            return True
        k += 1
    return False


@njit(cache=True, _nrt=False)
def traced_kswapd(st, sp, now, cpu, out, req, counters):
    """kswapd's own events (its frees, drains, compaction checks) show it inside
    balance_pgdat(), which set_reclaim_active() on its node's zones: a model kswapd asleep
    then is woken, to balance the whole node (its highest zone); kswapd_balance_check lets
    it sleep only after the run, and at the run's end it sleeps (the trace shows no more of
    it: it went to sleep), to be woken again by the model's own allocations if they need it."""
    runs = sp.kswapd_runs
    k = sp.cfg[SC_KSWAPD_RUN]
    while k < runs.shape[0] and runs[k, 2] < now:
        node = runs[k, 0]
        sp.cfg[SC_KSWAPD_RUN] = k + 1
        if node < sp.node.shape[0] and sp.node[node, ND_KSWAPD_ACTIVE] and \
                not in_traced_kswapd_run(sp, node, now):
            kswapd_sleep(st, sp, node, cpu, out, req, counters)
        k += 1
    if not kswapd_run_due(sp, now):
        return
    runs = sp.kswapd_runs
    k = sp.cfg[SC_KSWAPD_RUN]
    while k < runs.shape[0] and runs[k, 1] <= now:
        node = runs[k, 0]
        if runs[k, 2] >= now and node < sp.node.shape[0] and not sp.node[node, ND_KSWAPD_ACTIVE]:
            classzone = -1
            for z in range(st.zone_node.shape[0]):
                if st.zone_node[z] == node and st.zone_param[z, ZP_MANAGED] > 0:
                    classzone = max(classzone, st.zone_type[z])
            if classzone >= 0:
                kswapd_wake(st, sp, node, 0, classzone)
        k += 1


@njit(cache=True, _nrt=False)
def kswapd_balance_check(st, sp, cpu, now, out, req, counters):
    """The end of balance_pgdat(): once a node is balanced (at order 0 when kswapd has
    reclaimed compact_gap(order) pages, kswapd_shrink_node) and the trace no longer shows its
    kswapd at work, clear ZONE_RECLAIM_ACTIVE and go to sleep (kswapd_try_to_sleep:
    reset_isolation_suitable, wakeup_kcompactd)."""
    for node in range(sp.node.shape[0]):
        if not sp.node[node, ND_KSWAPD_ACTIVE] or in_traced_kswapd_run(sp, node, now):
            continue
        order = sp.node[node, ND_KSWAPD_ORDER]
        classzone = sp.node[node, ND_KSWAPD_CLASSZONE]
        reclaim_order = order
        if order > 0 and sp.node[node, ND_KSWAPD_FREED] >= (2 << order):
            reclaim_order = 0
        if not pgdat_balanced(st, node, reclaim_order, classzone):
            continue
        kswapd_sleep(st, sp, node, cpu, out, req, counters)


@njit(cache=True, _nrt=False)
def kswapd_sleep(st, sp, node, cpu, out, req, counters):
    """kswapd leaves balance_pgdat() (clear_reclaim_active) and kswapd_try_to_sleep():
    reset_isolation_suitable, wakeup_kcompactd."""
    order = sp.node[node, ND_KSWAPD_ORDER]
    classzone = sp.node[node, ND_KSWAPD_CLASSZONE]
    set_reclaim_active(st, node, classzone, False)
    sp.node[node, ND_KSWAPD_ACTIVE] = 0
    sp.node[node, ND_KSWAPD_ORDER] = 0
    sp.node[node, ND_KSWAPD_CLASSZONE] = -1
    sp.cfg[SC_KSWAPD_ANY] -= 1
    reset_isolation_suitable(st, sp, node)
    wakeup_kcompactd(st, sp, node, order, classzone, cpu, out, req, counters)


@njit(cache=True, _nrt=False)
def reclaim_page(st, sp, pfn, cpu, out, req, counters):
    """shrink_folio_list() for one LRU page: it is freed (mm_page_free), and the trace page
    it stands for is marked reclaimed so that the trace's own later free is skipped."""
    lru_del(st, sp, pfn)
    t = sp.rev_map[pfn]
    if t < 0:
        t = pfn
    if t < sp.pfn_map.shape[0]:
        sp.pfn_map[t] = MAP_RECLAIMED
    sp.rev_map[pfn] = -1
    free_the_page(st, st.pg_zone[pfn], pfn, 0, cpu, False, out, req, counters)


@njit(cache=True, _nrt=False)
def compaction_ready(st, sp, z, order, classzone):
    """compaction_ready(): a costly request's zone has enough free memory for compaction to
    work, so reclaim leaves it alone."""
    suitable = compaction_suitable(st, sp, z, order, 0, classzone)
    if suitable == COMPACT_SUCCESS:
        return True
    if suitable == COMPACT_SKIPPED:
        return False
    mark = st.zone_param[z, ZP_HIGH] + (2 << order)
    return zone_watermark_ok(st, z, 0, mark, classzone, 0)


@njit(cache=True, _nrt=False)
def try_to_free_pages(st, sp, zonelist, nz, order, classzone, cpu, out, req, counters):
    """try_to_free_pages(): reclaim SWAP_CLUSTER_MAX of the oldest LRU pages of the zonelist's
    zones (none when every zone is ready for a costly order's compaction). Returns progress."""
    if sp.cfg[SC_RECLAIM] == 0:
        return 0
    if order > 3:
        ready = True
        for k in range(nz):
            if not compaction_ready(st, sp, zonelist[k], order, classzone):
                ready = False
                break
        if ready:
            return 1  # sc->compaction_ready: progress without reclaim
    reclaimed = 0
    while reclaimed < SWAP_CLUSTER_MAX:
        pfn = lru_oldest(st, sp, classzone)
        if pfn < 0:
            break
        reclaim_page(st, sp, pfn, cpu, out, req, counters)
        reclaimed += 1
    sp.vm[VM_PGSTEAL_DIRECT] += reclaimed
    return reclaimed
