"""The explain pass's per-event loop (numba): live blocks, pageblock types, steals, pollution.

State is flat arrays sized by pfns, pageblocks, CPUs and the map's resolution, never by events:
what grows with the trace leaves the loop as records in two bounded buffers (steals and
pollution intervals) that the caller drains between calls (replay.metrics.explain).

Rules (docs/metrics.md §6):
* a *live block* is an mm_page_alloc's block, at its head pfn, until an mm_page_free or
  mm_page_free_batched of that pfn (or a pcpu_drain of it: the trace shows it free), as the
  engine's PG_ALLOC heads;
* a live block *pollutes* while its requested migratetype differs from its head's pageblock
  type (replay/engine/sampling.py mixed_pageblocks); a pageblock is *mixed* while it holds one;
* mm_page_alloc_extfrag re-types pageblocks as steal_suitable_fallback() did
  (replay/engine/follow.py steal): HighAtomic pageblocks never; a fallback block of order >=
  pageblock_order re-types its whole range; otherwise change_ownership=1 means the pageblock
  now has the requested type;
* a steal's requester is the next mm_page_alloc of the same pid on the same CPU (the extfrag
  fires inside that allocation or inside the pcp refill it caused).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba.experimental import structref

from replay.engine.jit import njit
from replay.engine.structs import ArraysRef, ArrayStruct, register_struct
from replay.trace.schema import EV_ALLOC, EV_EXTFRAG, EV_FREE, EV_FREE_BATCHED, EV_PCPU_DRAIN

MIGRATE_TYPES = 5
MIGRATE_HIGHATOMIC = 3
PENDING = 8  # unresolved steals kept per CPU

# conf[]: fixed for a run
C_PBO, C_MOBILITY, C_NO_WHOLE, C_BUCKETS, C_TB0, C_TB1, C_W0, C_W1 = range(8)
# scal[]: running scalars
(S_BUCKET, S_NSTEAL, S_NINT, S_LAST_TS, S_WIN_G0, S_WIN_G1, S_LOST_FREES, S_CORRECTIONS,
 S_EXTFRAG, S_OUTSIDE) = range(10)

# steal records (int64 columns)
STEAL_FIELDS = (
    "index", "ts_ns", "cpu", "pid", "pfn", "alloc_order", "fallback_order", "alloc_mt",
    "fallback_mt", "change_ownership", "old_type", "new_type", "whole_block",
    "pageblocks_retyped", "held_unmovable", "held_movable", "held_reclaimable",
    "held_highatomic", "held_isolate", "held_blocks", "mixed_after", "key", "alloc_index",
    "comm",
)
(F_INDEX, F_TS, F_CPU, F_PID, F_PFN, F_AORD, F_FORD, F_AMT, F_FMT, F_CHOWN, F_OLD, F_NEW,
 F_WHOLE, F_RETYPED, F_HELD0) = range(15)
F_HELD_BLOCKS, F_MIXED_AFTER, F_KEY, F_ALLOC_INDEX, F_COMM = 19, 20, 21, 22, 23
N_STEAL_FIELDS = len(STEAL_FIELDS)

# pollution interval records: a live block's stretch in a pageblock of another type
INTERVAL_FIELDS = (
    "pfn", "key", "order", "mt", "pageblock_type", "t_start", "t_end", "e_start", "e_end",
    "cause", "end", "alloc_ts",
)
(I_PFN, I_KEY, I_ORDER, I_MT, I_PBMT, I_T0, I_T1, I_E0, I_E1, I_CAUSE, I_END,
 I_ALLOC_TS) = range(12)
N_INTERVAL_FIELDS = len(INTERVAL_FIELDS)
CAUSE_ALLOCATED, CAUSE_RETYPED = 0, 1  # placed in a foreign pageblock / its pageblock re-typed
END_FREED, END_RETYPED, END_LIVE, END_REALLOC, END_DRAINED = 0, 1, 2, 3, 4
END_NAMES = ("freed", "pageblock re-typed to its type", "live at the end", "allocated again",
             "drained without a traced free")
CAUSE_NAMES = ("allocated into a pageblock of another type",
               "its pageblock was re-typed by a steal")


class _ExplainArraysFields(NamedTuple):
    """Everything the loop keeps between calls."""

    conf: np.ndarray  # int64[8]
    scal: np.ndarray  # int64[10]
    # per pfn (a live block at its head)
    live_key: np.ndarray  # int32, -1: no live block headed here
    live_order: np.ndarray  # int8
    live_mt: np.ndarray  # int8
    live_t0: np.ndarray  # int64 alloc ts
    poll_t0: np.ndarray  # int64, -1: not polluting
    poll_e0: np.ndarray  # int64 event index where the stretch began
    poll_cause: np.ndarray  # int8
    # per pageblock
    pb_mt: np.ndarray  # int8
    pb_live: np.ndarray  # int64 [PB, MIGRATE_TYPES] live pages by requested type (at the head)
    pb_poll_heads: np.ndarray  # int64
    pb_poll_pages: np.ndarray  # int64
    pb_mixed_t0: np.ndarray  # int64, -1: not mixed
    pb_mixed_ns: np.ndarray  # int64 mixed time inside the window
    pb_max_poll_pages: np.ndarray  # int64, inside the window
    # the map: [buckets, PB]
    grid_type: np.ndarray  # int8
    grid_mixed: np.ndarray  # int32 max polluting pages in the bucket
    # per CPU: steals waiting for their mm_page_alloc
    pend: np.ndarray  # int64 [CPUS, PENDING, N_STEAL_FIELDS]
    pend_n: np.ndarray  # int64 [CPUS]
    # per culprit key, inside the window
    key_allocs: np.ndarray  # int64
    key_pages: np.ndarray  # int64
    # output buffers
    out_steal: np.ndarray  # int64 [cap, N_STEAL_FIELDS]
    out_int: np.ndarray  # int64 [cap, N_INTERVAL_FIELDS]


class _ExplainArraysProxy(structref.StructRefProxy):
    pass


@register_struct(_ExplainArraysFields, _ExplainArraysProxy)
class ExplainArraysRef(ArraysRef):
    """ExplainArrays as compiled code takes it (replay/engine/structs.py)."""


@njit(cache=True)
def _new_explain_arrays_ref(*arrays):  # noqa: ANN002, ANN201
    return _ExplainArraysProxy(*arrays)


class ExplainArrays(ArrayStruct, _ExplainArraysFields):
    """Everything the loop keeps between calls; compiled code gets it as one pointer."""

    _new_ref = staticmethod(_new_explain_arrays_ref)


def new_arrays(pb_mt: np.ndarray, npfn: int, pbo: int, cpus: int, buckets: int,
               t_range: tuple[int, int], window: tuple[int, int], mobility: bool,
               no_whole_block: bool, keys: int = 1024, cap: int = 1 << 14) -> ExplainArrays:
    """Fresh state: no live block, the pageblock types given."""
    npb = len(pb_mt)
    conf = np.array([pbo, int(mobility), int(no_whole_block), buckets, t_range[0], t_range[1],
                     window[0], window[1]], np.int64)
    scal = np.zeros(10, np.int64)
    scal[S_BUCKET] = -1
    scal[S_WIN_G0] = -1
    scal[S_WIN_G1] = -1
    return ExplainArrays(
        conf, scal,
        np.full(npfn, -1, np.int32), np.zeros(npfn, np.int8), np.zeros(npfn, np.int8),
        np.zeros(npfn, np.int64), np.full(npfn, -1, np.int64), np.zeros(npfn, np.int64),
        np.zeros(npfn, np.int8),
        pb_mt.astype(np.int8).copy(), np.zeros((npb, MIGRATE_TYPES), np.int64),
        np.zeros(npb, np.int64), np.zeros(npb, np.int64), np.full(npb, -1, np.int64),
        np.zeros(npb, np.int64), np.zeros(npb, np.int64),
        np.zeros((buckets, npb), np.int8), np.zeros((buckets, npb), np.int32),
        np.zeros((max(cpus, 1), PENDING, N_STEAL_FIELDS), np.int64),
        np.zeros(max(cpus, 1), np.int64),
        np.zeros(keys, np.int64), np.zeros(keys, np.int64),
        np.zeros((cap, N_STEAL_FIELDS), np.int64), np.zeros((cap, N_INTERVAL_FIELDS), np.int64),
    )


@njit(cache=True, _nrt=False)
def overlap(a0, a1, b0, b1):
    """Length of [a0, a1] inside [b0, b1] (0 when apart)."""
    lo = a0 if a0 > b0 else b0
    hi = a1 if a1 < b1 else b1
    return hi - lo if hi > lo else 0


@njit(cache=True, _nrt=False)
def note_poll_pages(A, pb):
    b = A.scal[S_BUCKET]
    v = A.pb_poll_pages[pb]
    if 0 <= b < A.conf[C_BUCKETS] and v > A.grid_mixed[b, pb]:
        A.grid_mixed[b, pb] = min(v, 2147483647)


@njit(cache=True, _nrt=False)
def start_poll(A, p, t, g, cause):
    pbo = A.conf[C_PBO]
    pb = p >> pbo
    A.poll_t0[p] = t
    A.poll_e0[p] = g
    A.poll_cause[p] = cause
    if A.pb_poll_heads[pb] == 0:
        A.pb_mixed_t0[pb] = t
    A.pb_poll_heads[pb] += 1
    A.pb_poll_pages[pb] += 1 << A.live_order[p]
    if A.conf[C_W0] <= t <= A.conf[C_W1] and A.pb_poll_pages[pb] > A.pb_max_poll_pages[pb]:
        A.pb_max_poll_pages[pb] = A.pb_poll_pages[pb]
    note_poll_pages(A, pb)


@njit(cache=True, _nrt=False)
def stop_poll(A, p, t, g, end):
    pbo = A.conf[C_PBO]
    pb = p >> pbo
    k = A.scal[S_NINT]
    r = A.out_int[k]
    r[I_PFN] = p
    r[I_KEY] = A.live_key[p]
    r[I_ORDER] = A.live_order[p]
    r[I_MT] = A.live_mt[p]
    r[I_PBMT] = A.pb_mt[pb]
    r[I_T0] = A.poll_t0[p]
    r[I_T1] = t
    r[I_E0] = A.poll_e0[p]
    r[I_E1] = g
    r[I_CAUSE] = A.poll_cause[p]
    r[I_END] = end
    r[I_ALLOC_TS] = A.live_t0[p]
    A.scal[S_NINT] = k + 1
    A.poll_t0[p] = -1
    A.pb_poll_heads[pb] -= 1
    A.pb_poll_pages[pb] -= 1 << A.live_order[p]
    if A.pb_poll_heads[pb] == 0:
        A.pb_mixed_ns[pb] += overlap(A.pb_mixed_t0[pb], t, A.conf[C_W0], A.conf[C_W1])
        A.pb_mixed_t0[pb] = -1


@njit(cache=True, _nrt=False)
def end_live(A, p, t, g, end):
    """The live block headed at p ends (freed, allocated again, or drained)."""
    if A.poll_t0[p] >= 0:
        stop_poll(A, p, t, g, end)
    pb = p >> A.conf[C_PBO]
    A.pb_live[pb, A.live_mt[p]] -= 1 << A.live_order[p]
    A.live_key[p] = -1


@njit(cache=True, _nrt=False)
def set_pageblock_type(A, pb, mt, t, g):
    """Re-type pageblock pb; its live blocks start or stop polluting. Returns 1 if it changed."""
    if A.pb_mt[pb] == mt:
        return 0
    A.pb_mt[pb] = mt
    pbo = A.conf[C_PBO]
    lo = pb << pbo
    hi = min(lo + (1 << pbo), A.live_key.shape[0])
    for q in range(lo, hi):
        if A.live_key[q] < 0:
            continue
        was = A.poll_t0[q] >= 0
        now = A.live_mt[q] != mt
        if was and not now:
            stop_poll(A, q, t, g, END_RETYPED)
        elif now and not was:
            start_poll(A, q, t, g, CAUSE_RETYPED)
    return 1


@njit(cache=True, _nrt=False)
def can_steal_fallback(A, fallback_order, start_mt):
    """6.1's can_steal_fallback() (mm/page_alloc.c L2725): a whole-pageblock steal?"""
    pbo = A.conf[C_PBO]
    if fallback_order >= pbo:
        return 1
    if A.conf[C_NO_WHOLE] != 0:
        return 0
    if (fallback_order >= pbo // 2 or start_mt == 0 or start_mt == 2
            or A.conf[C_MOBILITY] == 0):
        return 1
    return 0


@njit(cache=True, _nrt=False)
def flush_pending(A, c, slot):
    """Write pending steal `slot` of CPU c to the output and close the gap."""
    k = A.scal[S_NSTEAL]
    for f in range(N_STEAL_FIELDS):
        A.out_steal[k, f] = A.pend[c, slot, f]
    A.scal[S_NSTEAL] = k + 1
    n = A.pend_n[c]
    for s in range(slot, n - 1):
        for f in range(N_STEAL_FIELDS):
            A.pend[c, s, f] = A.pend[c, s + 1, f]
    A.pend_n[c] = n - 1


@njit(cache=True, _nrt=False)
def steal(A, g, t, c, pid, p, aord, ford, amt, fmt, chown, comm):
    """mm_page_alloc_extfrag: re-type as the kernel did and queue the steal for its requester."""
    pbo = A.conf[C_PBO]
    npb = A.pb_mt.shape[0]
    pb = p >> pbo
    if pb >= npb:
        A.scal[S_OUTSIDE] += 1
        return
    if A.pend_n[c] >= PENDING:
        flush_pending(A, c, 0)  # its mm_page_alloc never came: requester unknown
    s = A.pend_n[c]
    r = A.pend[c, s]
    r[F_INDEX] = g
    r[F_TS] = t
    r[F_CPU] = c
    r[F_PID] = pid
    r[F_PFN] = p
    r[F_AORD] = aord
    r[F_FORD] = ford
    r[F_AMT] = amt
    r[F_FMT] = fmt
    r[F_CHOWN] = chown
    old = A.pb_mt[pb]
    r[F_OLD] = old
    last = pb
    if ford > pbo:
        last = min((p + (1 << ford) - 1) >> pbo, npb - 1)
    for m in range(MIGRATE_TYPES):
        r[F_HELD0 + m] = 0
    for q in range(pb, last + 1):
        for m in range(MIGRATE_TYPES):
            r[F_HELD0 + m] += A.pb_live[q, m]
    r[F_HELD_BLOCKS] = 0
    r[F_WHOLE] = can_steal_fallback(A, ford, amt)
    retyped = 0
    if old == MIGRATE_HIGHATOMIC:
        pass
    elif ford >= pbo:
        for q in range(pb, last + 1):
            retyped += set_pageblock_type(A, q, amt, t, g)
    elif chown == 1:
        retyped += set_pageblock_type(A, pb, amt, t, g)
    elif old == amt:  # the kernel says the pageblock did not become the requested type
        set_pageblock_type(A, pb, fmt, t, g)
        A.scal[S_CORRECTIONS] += 1
    r[F_NEW] = A.pb_mt[pb]
    r[F_RETYPED] = retyped
    r[F_MIXED_AFTER] = 1 if A.pb_poll_heads[pb] > 0 else 0
    r[F_KEY] = -1
    r[F_ALLOC_INDEX] = -1
    r[F_COMM] = comm
    A.pend_n[c] = s + 1
    A.scal[S_EXTFRAG] += 1


@njit(cache=True, _nrt=False)
def advance_buckets(A, t):
    """Close the map's buckets before time t (each records the pageblock types at its end)."""
    nb = A.conf[C_BUCKETS]
    t0 = A.conf[C_TB0]
    span = A.conf[C_TB1] - t0 + 1
    if t < t0:
        return
    b = (t - t0) * nb // span
    if b > nb:
        b = nb
    while A.scal[S_BUCKET] < b:
        cur = A.scal[S_BUCKET]
        if cur >= 0:
            for q in range(A.pb_mt.shape[0]):
                A.grid_type[cur, q] = A.pb_mt[q]
        cur += 1
        A.scal[S_BUCKET] = cur
        if cur < nb:
            for q in range(A.pb_poll_pages.shape[0]):
                A.grid_mixed[cur, q] = min(A.pb_poll_pages[q], 2147483647)


@njit(nogil=True, cache=True, _nrt=False)
def explain_events(A, ev, ts, pfn, order, mt, cpu, pid, ford, fmt, chown, key, comm, i0, i1,
                   base):
    """Events [i0, i1) of a chunk whose row 0 is event `base` (key: the culprit key of
    mm_page_alloc rows; comm: the comm id of extfrag rows). Returns the row it stopped at:
    i1, or earlier when an output buffer needs draining first."""
    pbo = A.conf[C_PBO]
    npfn = A.live_key.shape[0]
    room = 2 * (1 << (pbo if pbo > 10 else 10)) + 16
    w0 = A.conf[C_W0]
    w1 = A.conf[C_W1]
    for i in range(i0, i1):
        if (A.scal[S_NINT] + room > A.out_int.shape[0]
                or A.scal[S_NSTEAL] + PENDING + 2 > A.out_steal.shape[0]):
            return i
        e = ev[i]
        t = ts[i]
        g = base + i
        advance_buckets(A, t)
        A.scal[S_LAST_TS] = t
        if w0 <= t <= w1:
            if A.scal[S_WIN_G0] < 0:
                A.scal[S_WIN_G0] = g
            A.scal[S_WIN_G1] = g
        p = pfn[i]
        if e == EV_ALLOC:
            c = cpu[i]
            if c < A.pend_n.shape[0]:
                s = 0
                while s < A.pend_n[c]:
                    if A.pend[c, s, F_PID] == pid[i]:
                        A.pend[c, s, F_KEY] = key[i]
                        A.pend[c, s, F_ALLOC_INDEX] = g
                        flush_pending(A, c, s)
                    else:
                        s += 1
            if w0 <= t <= w1 and key[i] >= 0:
                A.key_allocs[key[i]] += 1
                if p >= 0:
                    A.key_pages[key[i]] += 1 << order[i]
            if p < 0 or p >= npfn:
                continue
            if A.live_key[p] >= 0:
                end_live(A, p, t, g, END_REALLOC)
            m = mt[i]
            if m < 0 or m >= MIGRATE_TYPES:
                m = 0
            A.live_key[p] = key[i]
            A.live_order[p] = order[i]
            A.live_mt[p] = m
            A.live_t0[p] = t
            pb = p >> pbo
            A.pb_live[pb, m] += 1 << order[i]
            if m != A.pb_mt[pb]:
                start_poll(A, p, t, g, CAUSE_ALLOCATED)
        elif e == EV_FREE or e == EV_FREE_BATCHED:
            if 0 <= p < npfn and A.live_key[p] >= 0:
                end_live(A, p, t, g, END_FREED)
        elif e == EV_PCPU_DRAIN:
            if 0 <= p < npfn and A.live_key[p] >= 0:
                end_live(A, p, t, g, END_DRAINED)
                A.scal[S_LOST_FREES] += 1
        elif e == EV_EXTFRAG:
            c = cpu[i]
            if p >= 0 and c < A.pend_n.shape[0]:
                steal(A, g, t, c, pid[i], p, order[i], ford[i], mt[i], fmt[i], chown[i], comm[i])
            else:
                A.scal[S_OUTSIDE] += 1
    return i1
