"""The replay's look-ups over the whole trace, made batch by batch with carried state.

Each kernel here gives, over consecutive batches, what its whole-trace counterpart gives over
the whole EventArrays: free_batched_orders and plan_claims (follow.py), seed_initial_pcp's
first events, vmstat_runs and _seed_alloc_factor's first refills (simulate.py), and the
look-ahead of plan_free_dispositions (`next_kinds`, walked backwards). Per-page state is
indexed by slot (replay.stream.slots). Rows are batch rows; what a caller keeps across batches
is in the arrays it passes.
"""

from __future__ import annotations

from replay.engine.events import TASK_OTHER
from replay.engine.follow import (
    D_DEFER,
    D_DIRECT_IRQ,
    D_DIRECT_LOOKAHEAD,
    D_DIRECT_ORDER,
    D_DIRECT_UNEXPLAINED,
    D_PCP,
)
from replay.engine.jit import njit
from replay.trace.schema import (
    EV_ALLOC,
    EV_COMPACT_BEGIN,
    EV_EXTFRAG,
    EV_FREE,
    EV_FREE_BATCHED,
    EV_PCPU_DRAIN,
    EV_TRY_TO_COMPACT,
    EV_ZONE_LOCKED,
)

CLAIM_LOOKBACK = 256  # plan_claims looks this many events back (exclusive)
IRQ_LOOKBACK = 4096  # _other_zone_irq_frees looks this many events back (exclusive)
_EMPTY = -1


@njit(cache=True, _nrt=False)
def _probe(keys, key):
    mask = keys.shape[0] - 1
    h = (key * 0x5BD1E995 + (key >> 29)) & mask
    while keys[h] != _EMPTY and keys[h] != key:
        h = (h + 1) & mask
    return h


@njit(cache=True, _nrt=False)
def rehash(keys, vals, new_keys, new_vals):
    """Move a full table into a larger one (sizes are powers of two)."""
    for h in range(keys.shape[0]):
        if keys[h] != _EMPTY:
            g = _probe(new_keys, keys[h])
            new_keys[g] = keys[h]
            new_vals[g] = vals[h]


@njit(nogil=True, cache=True, _nrt=False)
def free_batched_orders_batch(ev, slot, order, cpu, j0, keys, vals, used, cpu_span):
    """follow.free_batched_orders over batch rows [j0, n): a free_batched takes the order of
    the mm_page_free just before it on the same page and CPU. The table maps slot * cpu_span +
    cpu to the last free event there (order + 1 for mm_page_free, 0 for free_batched).
    Returns the row to resume from when the table must grow first, or n when done."""
    n = ev.shape[0]
    for j in range(j0, n):
        e = ev[j]
        if (e != EV_FREE and e != EV_FREE_BATCHED) or slot[j] < 0:
            continue
        if 2 * (used[0] + 1) > keys.shape[0]:
            return j
        key = slot[j] * cpu_span + cpu[j]
        h = _probe(keys, key)
        if keys[h] == _EMPTY:
            keys[h] = key
            used[0] += 1
        elif e == EV_FREE_BATCHED and vals[h] > 0:
            order[j] = vals[h] - 1
        vals[h] = order[j] + 1 if e == EV_FREE else 0
    return n


@njit(nogil=True, cache=True, _nrt=False)
def claims_batch(ev, pfn, cpu, ford, chown, pageblock_order, j0, g0, out):
    """follow.plan_claims over buffer rows [j0, n) (buffer row 0 is trace row g0; the rows
    before j0 are the look-back): (zone_locked row, extfrag row) pairs into `out`; returns
    their count."""
    n = ev.shape[0]
    k = 0
    for j in range(j0, n):
        if ev[j] != EV_EXTFRAG or pfn[j] < 0 or ford[j] >= pageblock_order or chown[j] != 1:
            continue
        lo = max(j - CLAIM_LOOKBACK, -1 - g0, -1)
        for i in range(j - 1, lo, -1):
            if cpu[i] == cpu[j] and ev[i] == EV_ZONE_LOCKED:
                if pfn[i] == pfn[j] and k < out.shape[0]:
                    out[k, 0] = i
                    out[k, 1] = j
                    k += 1
                break
    return k


@njit(nogil=True, cache=True, _nrt=False)
def first_events_batch(ev, slot, j0, seen, out):
    """seed_initial_pcp's first event per page (allocs, frees, takes and drains) over rows
    [j0, n): rows whose page is first seen here and that are an alloc or a drain, into
    `out`; returns their count."""
    k = 0
    for j in range(j0, ev.shape[0]):
        e = ev[j]
        p = slot[j]
        if p < 0 or not (e == EV_ALLOC or e == EV_FREE or e == EV_FREE_BATCHED
                         or e == EV_ZONE_LOCKED or e == EV_PCPU_DRAIN):
            continue
        if seen[p] != 0:
            continue
        seen[p] = 1
        if e == EV_ALLOC or e == EV_PCPU_DRAIN:
            out[k] = j
            k += 1
    return k


@njit(nogil=True, cache=True, _nrt=False)
def vmstat_runs_batch(ev, cpu, kworker, j0, seen, broken, out):
    """vmstat_runs over rows [j0, n): the first kworker pcpu_drain of each run on a CPU (no
    other event of that CPU between two of them) into `out`; returns their count."""
    k = 0
    for j in range(j0, ev.shape[0]):
        c = cpu[j]
        if c < 0 or c >= seen.shape[0]:
            continue
        if ev[j] == EV_PCPU_DRAIN:
            if kworker[j]:
                if seen[c] == 0 or broken[c] != 0:
                    out[k] = j
                    k += 1
                seen[c] = 1
                broken[c] = 0
        else:
            broken[c] = 1
    return k


@njit(nogil=True, cache=True, _nrt=False)
def first_refills_batch(ev, pfn, cpu, refill, order, pfn_zone, j0, frees, state, nrun,
                        frees_at, active):
    """_seed_alloc_factor's scan over rows [j0, n): per CPU the frees before its first order-0
    refill of each zone, and that refill run's length. state[c, z]: 0 unseen, 1 counting, 2
    done; nrun/frees_at the run length and frees; active[c]: runs being counted on CPU c."""
    nz = state.shape[1]
    for j in range(j0, ev.shape[0]):
        c = cpu[j]
        if c < 0 or c >= frees.shape[0]:
            continue
        e = ev[j]
        if active[c] > 0:
            if e == EV_ZONE_LOCKED and refill[j] == 1 and order[j] == 0:
                for z in range(nz):
                    if state[c, z] == 1:
                        nrun[c, z] += 1
            elif e != EV_EXTFRAG:
                for z in range(nz):
                    if state[c, z] == 1:
                        state[c, z] = 2
                active[c] = 0
        if e == EV_FREE or e == EV_FREE_BATCHED:
            if e == EV_FREE_BATCHED or (order[j] <= 3 and pfn[j] >= 0):
                frees[c] += 1
            continue
        if e != EV_ZONE_LOCKED or refill[j] != 1 or order[j] != 0 or pfn[j] < 0:
            continue
        z = pfn_zone[pfn[j]] if pfn[j] < pfn_zone.shape[0] else -1
        if z < 0 or state[c, z] != 0:
            continue
        state[c, z] = 1
        nrun[c, z] = 1
        frees_at[c, z] = frees[c]
        active[c] += 1


@njit(nogil=True, cache=True, _nrt=False)
def next_kinds_backward(ev, slot, nxt_kind, out):
    """Walking rows from the last to the first: out[j] = the kind of the next event of the
    same page (valid pfn, not extfrag) after row j, or -1; nxt_kind[slot] carries it across
    batches (fill it with -1 before the last batch)."""
    for j in range(ev.shape[0] - 1, -1, -1):
        p = slot[j]
        if p < 0 or ev[j] == EV_EXTFRAG:
            out[j] = -1
            continue
        out[j] = nxt_kind[p]
        nxt_kind[p] = ev[j]


@njit(nogil=True, cache=True, _nrt=False)
def dispositions_batch(ev, pfn, order, irq, preempt, cpu, nev, pfn_zone, pageblock_order,
                       j0, disp):
    """plan_free_dispositions for rows [j0, n), given nev (the next same-page event's kind,
    -1 none); rows before j0 are the _other_zone_irq_frees look-back."""
    n = ev.shape[0]
    npz = pfn_zone.shape[0]
    for j in range(j0, n):
        disp[j] = 0
        e = ev[j]
        if (e != EV_FREE and e != EV_FREE_BATCHED) or pfn[j] < 0:
            continue
        o = order[j]
        if not (o <= 3 or o == pageblock_order):
            disp[j] = D_DIRECT_ORDER
            continue
        d = D_PCP
        if e == EV_FREE and nev[j] == EV_FREE_BATCHED:
            d = D_DEFER
        elif nev[j] == EV_ZONE_LOCKED:
            d = D_DIRECT_LOOKAHEAD
            if (irq[j] & 0x80) != 0 and (irq[j] & 0x30) == 0:
                d = D_DIRECT_UNEXPLAINED
        elif nev[j] < 0 and (irq[j] & 0x30) != 0 and preempt[j] >= 3:
            d = D_DIRECT_IRQ
            ctx = irq[j] & 0x30
            i = j - 1
            found = -1
            while i >= 0 and i > j - IRQ_LOOKBACK:
                if cpu[i] == cpu[j] and (irq[i] & 0x30) != ctx and 0 <= pfn[i] < npz:
                    found = i
                    break
                i -= 1
            if found >= 0 and pfn[j] < npz and pfn_zone[pfn[found]] != pfn_zone[pfn[j]]:
                d = D_PCP
        disp[j] = d


@njit(nogil=True, cache=True, _nrt=False)
def evidence_backward(ev, pfn, mt, fmt, ford, takes, j_lo, pageblock_order, out):
    """initial.pageblock_evidence walked backwards over rows [j_lo, n): each evidence event
    overwrites its pageblocks' entry, so after the first row of the trace (walked last) each
    holds its first evidence. takes[j]: a zone_locked that shows its pageblock's type (6.12).
    The caller clears entries whose type is not a migratetype at the end."""
    npb = out.shape[0]
    for j in range(ev.shape[0] - 1, j_lo - 1, -1):
        p = pfn[j]
        e = ev[j]
        if p < 0 or not (e == EV_PCPU_DRAIN or e == EV_EXTFRAG or takes[j]):
            continue
        span = 1
        typ = mt[j]
        if e == EV_EXTFRAG:
            span = max(1, (1 << max(ford[j], 0)) >> pageblock_order)
            typ = fmt[j]
        base = p >> pageblock_order
        for off in range(span - 1, -1, -1):
            pb = base + off
            if pb < npb:
                out[pb] = typ


@njit(nogil=True, cache=True, _nrt=False)
def assign_in_order(dst, idx, vals):
    """dst[idx[j]] = vals[j] for j in order (the last of repeated indices wins)."""
    for j in range(idx.shape[0]):
        dst[idx[j]] = vals[j]


@njit(nogil=True, cache=True, _nrt=False)
def compact_memory_batch(ev, pid, task, j0, last, open_run, out):
    """simulate.compact_memory_writes over rows [j0, n): the first mm_compaction_begin of a run
    of them by a task that is neither kcompactd nor kswapd nor compacting for its own
    allocation, into `out`; returns the count. last[pid]: the code of the pid's last alloc or
    try_to_compact_pages; open_run[pid]: a run of begins is open."""
    k = 0
    for j in range(j0, ev.shape[0]):
        e = ev[j]
        p = pid[j]
        if p < 0 or p >= last.shape[0]:
            continue
        if e == EV_ALLOC or e == EV_TRY_TO_COMPACT:
            last[p] = e
            if e == EV_ALLOC:
                open_run[p] = 0
        elif e == EV_COMPACT_BEGIN:
            if task[j] != TASK_OTHER or last[p] == EV_TRY_TO_COMPACT:
                continue
            if open_run[p] == 0:
                out[k] = j
                k += 1
                open_run[p] = 1
    return k
