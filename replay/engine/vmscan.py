"""Reclaim and kswapd for the model (mm/vmscan.c, 6.1).

The trace's own frees stand in for what reclaim freed in the kernel: kswapd's and direct
reclaim's frees are traced, and the model applies them like any other. What the model adds:
- kswapd's state: woken by `wakeup_kswapd` (the slow path's `wake_all_kswapds`), balancing the
  node until some zone is above its high watermark (`pgdat_balanced`); while it runs, its zones
  are `ZONE_RECLAIM_ACTIVE` (the pcp lists drain at 4 batches, nr_pcp_high). Going back to
  sleep it resets the skip bits a direct compaction asked to flush and wakes kcompactd.
  balance_pgdat() checks the balance between reclaim passes (kswapd_shrink_node() reclaims up to
  the zones' high marks at a time), and the passes here are the traced kswapd's: while the trace
  shows kswapd reclaiming (its frees less than KSWAPD_PAUSE_NS apart) the model's kswapd stays
  awake, and it checks the balance where that reclaim pauses (`kswapd_reclaim_runs`).
- reclaim of its own where the model runs shorter than the kernel did (`try_to_free_pages`,
  in the slow path's direct reclaim): the oldest LRU pages are freed, and the trace's later
  free of such a page is recognised (`pfn_map` = MAP_RECLAIMED), counted and skipped.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from replay.engine.compact_model import (
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    compaction_suitable,
    reset_isolation_suitable,
    wakeup_kcompactd,
)
from replay.engine.lru import lru_del, lru_oldest
from replay.engine.policy import free_the_page, zone_watermark_ok
from replay.engine.slow_state import (
    KS_CLASSZONE,
    KS_FREED,
    KS_ORDER,
    KS_SLEEP,
    KS_WAKE,
    MAP_RECLAIMED,
    ND_KSWAPD_ACTIVE,
    ND_KSWAPD_CLASSZONE,
    ND_KSWAPD_FAILURES,
    ND_KSWAPD_FREED,
    ND_KSWAPD_LOG,
    ND_KSWAPD_ORDER,
    ND_KSWAPD_RUN,
    SC_KS_NLOG,
    SC_KSWAPD_ANY,
    SC_NOW_NS,
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
# the traced kswapd frees its reclaim in batches 1-3 ms apart; a pause this long is the end of
# a balance_pgdat() pass (its IO throttling and the HZ/10 nap of kswapd_try_to_sleep() are
# longer)
KSWAPD_PAUSE_NS = 20_000_000
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
        row = sp.node[node, ND_KSWAPD_LOG]
        if row >= 0:
            sp.ks_log[row, KS_ORDER] = sp.node[node, ND_KSWAPD_ORDER]
            sp.ks_log[row, KS_CLASSZONE] = sp.node[node, ND_KSWAPD_CLASSZONE]
        return
    if sp.node[node, ND_KSWAPD_FAILURES] >= MAX_RECLAIM_RETRIES or (
            pgdat_balanced(st, node, order, classzone)
            and not pgdat_watermark_boosted(st, node, classzone)):
        if not (gfp & __GFP_DIRECT_RECLAIM):
            wakeup_kcompactd(st, sp, node, order, classzone, cpu, out, req, counters)
        return
    sp.node[node, ND_KSWAPD_ACTIVE] = 1
    sp.node[node, ND_KSWAPD_ORDER] = order
    sp.node[node, ND_KSWAPD_CLASSZONE] = classzone
    sp.node[node, ND_KSWAPD_FREED] = 0
    sp.cfg[SC_KSWAPD_ANY] += 1
    sp.vm[VM_KSWAPD_WAKES] += 1
    sp.vm[VM_PAGEOUTRUN] += 1
    set_reclaim_active(st, node, classzone, True)
    n = sp.cfg[SC_KS_NLOG]
    sp.node[node, ND_KSWAPD_LOG] = -1
    if n < sp.ks_log.shape[0]:
        sp.ks_log[n, KS_WAKE] = req
        sp.ks_log[n, KS_SLEEP] = -1
        sp.ks_log[n, KS_ORDER] = order
        sp.ks_log[n, KS_CLASSZONE] = classzone
        sp.ks_log[n, KS_FREED] = 0
        sp.node[node, ND_KSWAPD_LOG] = n
    sp.cfg[SC_KS_NLOG] = n + 1


@njit(cache=True, _nrt=False)
def kswapd_freed(st, sp, z, pages):
    """A traced free while kswapd balances the node: reclaim progress (sc->nr_reclaimed)."""
    node = st.zone_node[z]
    if sp.node[node, ND_KSWAPD_ACTIVE]:
        sp.node[node, ND_KSWAPD_FREED] += pages


@njit(cache=True, _nrt=False)
def kswapd_reclaiming(sp, node, now):
    """The traced kswapd of the node is in the middle of a reclaim run at `now` (its next free
    comes within KSWAPD_PAUSE_NS): balance_pgdat() is inside a reclaim pass."""
    runs = sp.ks_runs
    k = sp.node[node, ND_KSWAPD_RUN]
    while k < runs.shape[0] and runs[k, 2] == node and runs[k, 1] <= now:
        k += 1
    sp.node[node, ND_KSWAPD_RUN] = k
    return k < runs.shape[0] and runs[k, 2] == node and runs[k, 0] - KSWAPD_PAUSE_NS <= now


@njit(cache=True, _nrt=False)
def kswapd_balance_check(st, sp, cpu, out, req, counters):
    """The end of balance_pgdat(): once a node is balanced (at order 0 when kswapd has
    reclaimed compact_gap(order) pages, kswapd_shrink_node) between two reclaim passes, clear
    ZONE_RECLAIM_ACTIVE and go to sleep (kswapd_try_to_sleep: reset_isolation_suitable,
    wakeup_kcompactd)."""
    for node in range(sp.node.shape[0]):
        if not sp.node[node, ND_KSWAPD_ACTIVE]:
            continue
        if kswapd_reclaiming(sp, node, sp.cfg[SC_NOW_NS]):
            continue
        order = sp.node[node, ND_KSWAPD_ORDER]
        classzone = sp.node[node, ND_KSWAPD_CLASSZONE]
        reclaim_order = order
        if order > 0 and sp.node[node, ND_KSWAPD_FREED] >= (2 << order):
            reclaim_order = 0
        if not pgdat_balanced(st, node, reclaim_order, classzone):
            continue
        set_reclaim_active(st, node, classzone, False)
        sp.node[node, ND_KSWAPD_ACTIVE] = 0
        sp.node[node, ND_KSWAPD_ORDER] = 0
        sp.node[node, ND_KSWAPD_CLASSZONE] = -1
        sp.cfg[SC_KSWAPD_ANY] -= 1
        row = sp.node[node, ND_KSWAPD_LOG]
        if row >= 0:
            sp.ks_log[row, KS_SLEEP] = req
            sp.ks_log[row, KS_FREED] = sp.node[node, ND_KSWAPD_FREED]
            sp.node[node, ND_KSWAPD_LOG] = -1
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


def kswapd_reclaim_runs(data, e, i_start: int, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The traced kswapds' reclaim runs: per node (kswapdN), the first and last of its frees
    that follow each other within KSWAPD_PAUSE_NS, as rows (first ns, last ns, node) sorted by
    node then time; and each node's first row (the cursor kswapd_reclaiming() starts from)."""
    from replay.trace.schema import EV_FREE, EV_FREE_BATCHED

    idx = np.flatnonzero(np.isin(e.ev[i_start:], (EV_FREE, EV_FREE_BATCHED))) + i_start
    empty = np.zeros((0, 3), np.int64), np.zeros(max(nodes, 1), np.int64)
    if not len(idx) or "comm" not in data.events.column_names:
        return empty
    comm = data.events.column("comm").take(idx).to_pylist()
    node_of = np.full(len(idx), -1, np.int64)
    for k, c in enumerate(comm):
        if c is not None and c.startswith("kswapd"):
            tail = c[6:].split(":")[0]
            node_of[k] = int(tail) if tail.isdigit() else 0
    rows = []
    for node in range(max(nodes, 1)):
        t = np.sort(e.ts[idx[node_of == node]].astype(np.int64))
        if not len(t):
            continue
        cut = np.flatnonzero(np.diff(t) >= KSWAPD_PAUSE_NS)
        first = np.concatenate([t[:1], t[cut + 1]])
        last = np.concatenate([t[cut], t[-1:]])
        rows.append(np.stack([first, last, np.full(len(first), node)], axis=1))
    if not rows:
        return empty
    runs = np.concatenate(rows).astype(np.int64)
    start = np.zeros(max(nodes, 1), np.int64)
    for node in range(max(nodes, 1)):
        start[node] = np.searchsorted(runs[:, 2], node)
    return runs, start
