"""The trace's cross-CPU order, repaired where it contradicts what the pages went through.

Each CPU's events are in the order that CPU emitted them, but the order *between* CPUs comes
from per-CPU clocks that can disagree by a microsecond or so (seen under QEMU/TCG, where a
loaded guest shows hundreds of events stamped with the same microsecond). The zone lock makes
a pcp refill and a pcp drain run on another CPU strictly one after the other, so when a refill
takes a page that the trace drains on another CPU only afterwards, within that clock skew, the
drain (and everything its CPU did before it, back to the refill's start) really happened first.
`causal_order` returns the permutation that moves those events there; each CPU's own order is
kept. Traces without such contradictions are left as they are.
"""

from __future__ import annotations

import numpy as np

from replay.engine.jit import njit
from replay.trace.schema import (
    EV_EXTFRAG,
    EV_FIRST_COMPACTION,
    EV_PCPU_DRAIN,
    EV_ZONE_LOCKED,
)

SKEW_NS = 2_000  # cross-CPU clock disagreement tolerated


def causal_order(ev: np.ndarray, pfn: np.ndarray, cpu: np.ndarray, ts: np.ndarray,
                 skew_ns: int = SKEW_NS) -> np.ndarray | None:
    """A permutation of event indices (None when the trace order is already consistent)."""
    n = len(ev)
    if n == 0:
        return None
    valid = (pfn >= 0) & (ev < EV_FIRST_COMPACTION) & (ev != EV_EXTFRAG)
    idx = np.flatnonzero(valid)
    srt = idx[np.lexsort((idx, pfn[idx]))]  # each page's events in trace order
    takes, drains = _contradictions(srt, ev, pfn, cpu, ts, skew_ns)
    if not len(takes):
        return None
    key = np.arange(n, dtype=np.float64)
    _move_before_runs(key, ev, cpu, takes, drains)
    return np.argsort(key, kind="stable")


@njit(cache=True)
def _contradictions(srt, ev, pfn, cpu, ts, skew_ns):
    """(take, drain) pairs where a take finds a page that was allocated or on a pcp list, and
    another CPU drains that page back to the buddy lists only later in the trace, within the
    clock skew: the drain (with its run) happened first."""
    n = srt.shape[0]
    takes = np.empty(n, np.int64)
    drains = np.empty(n, np.int64)
    k = 0
    for a in range(1, n):
        i = srt[a]
        if ev[i] != EV_ZONE_LOCKED or pfn[srt[a - 1]] != pfn[i]:
            continue
        before = ev[srt[a - 1]]
        if before == EV_PCPU_DRAIN:
            continue  # the page was on a free list: nothing to repair
        b = a + 1
        while b < n and pfn[srt[b]] == pfn[i] and ts[srt[b]] - ts[i] <= skew_ns:
            j = srt[b]
            if ev[j] == EV_PCPU_DRAIN:
                if cpu[j] != cpu[i]:
                    takes[k] = i
                    drains[k] = j
                    k += 1
                break
            if ev[j] == EV_ZONE_LOCKED:
                break
            b += 1
    return takes[:k], drains[:k]


@njit(cache=True)
def _move_before_runs(key, ev, cpu, takes, drains):
    """For each contradiction, the draining CPU's events from the refill run's start up to the
    end of the drain's run get keys just below the run's start (their own order kept)."""
    n = ev.shape[0]
    for k in range(takes.shape[0]):
        i = takes[k]
        j = drains[k]
        a = cpu[i]
        c = cpu[j]
        s = i  # the first take of i's refill run on its CPU
        q = i - 1
        while q >= 0:
            if cpu[q] == a:
                if ev[q] != EV_ZONE_LOCKED:
                    break
                s = q
            q -= 1
        q = j + 1  # to the end of the drain run (the zone lock was held for all of it)
        while q < n:
            if cpu[q] == c:
                if ev[q] != EV_PCPU_DRAIN:
                    break
                j = q
            q += 1
        base = key[s] - 0.5
        span = j - s + 1
        for m in range(s + 1, min(j + 1, n)):
            if cpu[m] == c:
                moved = base + 0.4 * (m - s) / span
                if moved < key[m]:
                    key[m] = moved
