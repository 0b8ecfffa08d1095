"""simulate's loop over the trace's requests, compiled in two tiers.

The slow path (compaction, kswapd, reclaim: compact_model, slowpath, vmscan) is most of the
engine's compiled code, and most traces never enter it in the model. `simulate_requests_fast`
is the loop without it: where the model would enter the slow path it stops and returns where
(`stop_at`), and the caller goes on from there with `simulate_requests`, the whole loop, which
numba compiles only then. Both are built from one source by `_simulate_requests(full)`: `full`
is a closure constant, so numba prunes the other tier's branches before typing them.

Where the fast tier stops:
- before an event, when a compact_memory write is due, kcompactd's proactive compaction would
  run (proactive_compaction_due) or kswapd is awake; the pre-event steps it already made
  (vmstat_update, timeouts with nothing to do) are not repeated by the whole loop;
- inside an allocation whose first get_page_from_freelist() failed: the whole loop then enters
  __alloc_pages_slowpath() for it (`slow_at`) and does not repeat the fast path, whose failed
  attempt has side effects (6.12's pcp high and alloc_factor, counters).
"""

from __future__ import annotations

from replay.engine.buddy import find_free_block
from replay.engine.compact_model import compact_nodes, kcompactd_timer, proactive_compaction_due
from replay.engine.follow import D_DEFER, D_DIRECT_IRQ, D_DIRECT_LOOKAHEAD, D_DIRECT_UNEXPLAINED
from replay.engine.jit import njit
from replay.engine.lru import lru_add, lru_del
from replay.engine.policy import (
    S_ALLOCS,
    S_DOUBLEFREE,
    S_FAIL,
    S_FREES,
    S_UNKNOWNFREE,
    emit,
    free_the_page,
    vmstat_update,
)
from replay.engine.slow_state import (
    MAP_FAILED,
    MAP_RECLAIMED,
    MAP_UNKNOWN,
    SC_KSWAPD_ANY,
    SC_NFAIL,
    SC_PROACTIVENESS,
    SC_RECLAIM,
    VM_FREES_FAILED,
    VM_FREES_RECLAIMED,
    VM_THP_ALLOC,
    VM_THP_DROPPED,
    VM_THP_FAILED,
)
from replay.engine.slowpath import (
    NEED_SLOWPATH,
    __alloc_pages,
    __alloc_pages_fastpath,
    __alloc_pages_from_slowpath,
)
from replay.engine.state import PG_ALLOC, PG_PCP
from replay.engine.thp import __GFP_COMP, __GFP_MOVABLE, GFP_TRANSHUGE_LIGHT, HPAGE_PMD_ORDER
from replay.engine.vmscan import (
    kswapd_balance_check,
    kswapd_freed,
    kswapd_run_due,
    traced_kswapd,
)
from replay.trace.schema import EV_ALLOC, EV_FREE, EV_FREE_BATCHED

DONE = -1  # the loop reached i1


def stop_at(code: int) -> tuple[int, bool]:
    """Where the fast tier stopped: (chunk row, True when inside its allocation's slow path)."""
    return code >> 1, bool(code & 1)


def _simulate_requests(full: bool):
    def simulate_requests(st, sp, ev, pfn, order, mt, cpu, gfp, disp, ts, i0, i1, cpu_map,  # noqa: PLR0912
                          cpu_node, mobility, out, counters, zonelists, zl_len, vm_t, vm_cpu,
                          vm_pos, cm_idx, cm_pos, slow_at):
        """Feed requests [i0, i1) through the policy; DONE, or (fast tier) where it stopped,
        as `row << 1 | in_slowpath`. sp.pfn_map: traced pfn -> model pfn (or a MAP_* reason
        there is none). gfp < 0 marks a request the what-if drops (a THP fault's second try
        its defrag mode would not make). vm_t/vm_cpu: the instants (trace clock) and CPUs of
        vmstat_update runs, in time order; vm_pos[0] the next one (6.12's decay_pcp_high;
        empty under 6.1's rules). cm_idx: the events where the trace shows a write to
        compact_memory (the model compacts every zone there); cm_pos[0] the next one.
        slow_at: the row whose allocation goes straight to the slow path (-1: none)."""
        nvm = vm_t.shape[0]
        ncm = cm_idx.shape[0]
        npfn = sp.pfn_map.shape[0]
        proactive = sp.cfg[SC_PROACTIVENESS] > 0
        traced_runs = sp.kswapd_runs.shape[0] > 0 and sp.cfg[SC_RECLAIM] != 0
        for i in range(i0, i1):
            e = ev[i]
            if i != slow_at:
                while vm_pos[0] < nvm and vm_t[vm_pos[0]] <= ts[i]:
                    vmstat_update(st, vm_cpu[vm_pos[0]], out, i, counters)
                    vm_pos[0] += 1
                if full:
                    if traced_runs:
                        traced_kswapd(st, sp, ts[i], cpu_map[cpu[i]], out, i, counters)
                    if proactive:
                        kcompactd_timer(st, sp, ts[i], cpu_map[cpu[i]], out, i, counters)
                    while cm_pos[0] < ncm and cm_idx[cm_pos[0]] <= i:
                        compact_nodes(st, sp, cpu_map[cpu[i]], out, i, counters)
                        cm_pos[0] += 1
                else:
                    if proactive and proactive_compaction_due(st, sp, ts[i]) >= 0:
                        return i << 1
                    if cm_pos[0] < ncm and cm_idx[cm_pos[0]] <= i:
                        return i << 1
                    if sp.cfg[SC_KSWAPD_ANY] > 0:
                        return i << 1
                    if traced_runs and kswapd_run_due(sp, ts[i]):
                        return i << 1
            if e == EV_ALLOC:
                p = pfn[i]
                o = order[i]
                c = cpu_map[cpu[i]]
                m = mt[i] if mobility else 0
                g = gfp[i]
                if g < 0:
                    sp.vm[VM_THP_DROPPED] += 1
                    forget_trace_page(sp, p, o, MAP_FAILED)
                    continue
                if full:
                    if i == slow_at:
                        page, z = __alloc_pages_from_slowpath(st, sp, g, o, m, c, cpu_node[c],
                                                              out, i, counters, zonelists,
                                                              zl_len)
                    else:
                        page, z = __alloc_pages(st, sp, g, o, m, c, cpu_node[c], out, i,
                                                counters, zonelists, zl_len)
                else:
                    page, z = __alloc_pages_fastpath(st, g, o, m, c, cpu_node[c], out, i,
                                                     counters, zonelists, zl_len)
                    if page == NEED_SLOWPATH:
                        return i << 1 | 1
                counters[S_ALLOCS] += 1
                thp = o == HPAGE_PMD_ORDER and (g & GFP_TRANSHUGE_LIGHT) == GFP_TRANSHUGE_LIGHT
                if page < 0:
                    counters[S_FAIL] += 1
                    if thp:
                        sp.vm[VM_THP_FAILED] += 1
                    log_failure(sp, i, o, g)
                    emit(out, EV_ALLOC, -1, o, m, c, -1, -1, -1, -1, i)
                    forget_trace_page(sp, p, o, MAP_FAILED)
                    continue
                if thp:
                    sp.vm[VM_THP_ALLOC] += 1
                st.pg_state[page] = PG_ALLOC
                st.pg_order[page] = o
                st.pg_mt[page] = m
                st.pg_comp[page] = o + 1 if (o > 0 and (g & __GFP_COMP) != 0) else 0
                emit(out, EV_ALLOC, page, o, m, c, -1, -1, -1, -1, i)
                if o == 0 and (g & __GFP_MOVABLE) != 0:
                    lru_add(st, sp, page)
                if p >= 0:
                    for k in range(1 << o):
                        if p + k < npfn:
                            sp.pfn_map[p + k] = page + k
                            sp.rev_map[page + k] = p + k
            elif e == EV_FREE or e == EV_FREE_BATCHED:
                d = disp[i]
                if d == D_DEFER or d == 0:
                    continue
                p = pfn[i]
                if p < 0 or p >= npfn:
                    continue
                o = order[i]
                q = sp.pfn_map[p]
                if q == MAP_FAILED or q == MAP_RECLAIMED:
                    sp.vm[VM_FREES_FAILED if q == MAP_FAILED else VM_FREES_RECLAIMED] += 1
                    forget_trace_page(sp, p, o, MAP_UNKNOWN)
                    continue
                if q < 0:
                    q = p
                    counters[S_UNKNOWNFREE] += 1
                if find_free_block(st, q) >= 0 or st.pg_state[q] == PG_PCP:
                    counters[S_DOUBLEFREE] += 1
                    continue
                z = st.pg_zone[q]
                if z < 0:
                    continue
                c = cpu_map[cpu[i]]
                direct = d == D_DIRECT_LOOKAHEAD or d == D_DIRECT_IRQ or d == D_DIRECT_UNEXPLAINED
                for k in range(1 << o):
                    if q + k < npfn:
                        lru_del(st, sp, q + k)
                        sp.rev_map[q + k] = -1
                st.pg_comp[q] = 0
                free_the_page(st, z, q, o, c, direct, out, i, counters)
                counters[S_FREES] += 1
                forget_trace_page(sp, p, o, MAP_UNKNOWN)
                if full:
                    if sp.cfg[SC_KSWAPD_ANY] > 0:
                        kswapd_freed(st, sp, z, 1 << o)
                        kswapd_balance_check(st, sp, c, ts[i], out, i, counters)
        return DONE

    # its own name, so each tier has its own entry in numba's cache
    simulate_requests.__qualname__ = "simulate_requests" if full else "simulate_requests_fast"
    return njit(nogil=True, cache=True, _nrt=False)(simulate_requests)


simulate_requests = _simulate_requests(True)
simulate_requests_fast = _simulate_requests(False)


@njit(cache=True, _nrt=False)
def forget_trace_page(sp, p, o, why):
    """The trace's block at p no longer maps to a model page (freed, or MAP_* why not)."""
    if p < 0:
        return
    for k in range(1 << o):
        if p + k < sp.pfn_map.shape[0]:
            sp.pfn_map[p + k] = why


@njit(cache=True, _nrt=False)
def log_failure(sp, i, o, g):
    n = sp.cfg[SC_NFAIL]
    if n < sp.fail_log.shape[0]:
        sp.fail_log[n, 0] = i
        sp.fail_log[n, 1] = o
        sp.fail_log[n, 2] = g
    sp.cfg[SC_NFAIL] = n + 1
