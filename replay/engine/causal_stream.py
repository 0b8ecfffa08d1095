"""causal_order (causal.py) on a stream: the same permutation, made batch by batch.

The events arrive in trace order. A contradiction (a take, then another CPU's drain of the same
page within the clock skew) is found with per-page state carried between batches: the kind of
each page's last event and its pending take. Moving the drain's run before the refill run can
only touch events from the start of that refill run on, so events before every CPU's trailing
run of takes, every pending take's run and every unapplied contradiction are final: they are
handed out in causal order, the rest waits for the next batch. Contradictions are applied as
causal_order applies them (by page, then index), component by component: ranges that do not
overlap do not interact, so the result equals the whole-trace permutation exactly, provided
timestamps do not run backwards (every reader merges the CPUs by time; a trace whose clock does
go back is counted in `clock_steps_back` and may differ by the events within the skew).
"""

from __future__ import annotations

import numpy as np

from replay.engine.causal import SKEW_NS
from replay.engine.jit import njit
from replay.trace.schema import EV_EXTFRAG, EV_FIRST_COMPACTION, EV_PCPU_DRAIN, EV_ZONE_LOCKED

_NONE = -1


@njit(nogil=True, cache=True, _nrt=False)
def scan_contradictions(ev, slot, cpu, ts, r0, j0, j1, last_kind, pend, pend_ts, pend_cpu,
                        cand, ncand, run_start, pairs, npairs, skew_ns, steps_back, last_ts):
    """Scan buffer rows [j0, j1) (buffer row j is trace row r0 + j) for contradictions.

    last_kind[slot]: kind of the page's last valid event (-1 none); pend[slot]: the page's
    pending take (trace row, -1 none), pend_ts/pend_cpu its time and CPU; cand: pending takes
    in creation order (cand[0]: count, then rows from cand[1]); run_start[cpu]: trace row where
    the CPU's trailing run of takes begins (-1: not in one); pairs: (take, drain, page slot,
    run start) rows found, npairs[0] their count. Returns False when `pairs` or `cand` is
    full (the caller grows them and calls again from the row in npairs[1])."""
    for j in range(j0, j1):
        r = r0 + j
        e = ev[j]
        c = cpu[j]
        t = ts[j]
        if t < last_ts[0]:
            steps_back[0] += 1
        last_ts[0] = t
        if c >= 0 and c < run_start.shape[0]:
            if e == EV_ZONE_LOCKED:
                if run_start[c] < 0:
                    run_start[c] = r
            else:
                run_start[c] = _NONE
        p = slot[j]
        if p < 0 or e >= EV_FIRST_COMPACTION or e == EV_EXTFRAG:
            continue
        i = pend[p]
        if i >= 0:
            if t - pend_ts[p] > skew_ns:
                pend[p] = _NONE
            elif e == EV_PCPU_DRAIN:
                if c != pend_cpu[p]:
                    k = npairs[0]
                    if k >= pairs.shape[0]:
                        npairs[1] = j
                        return False
                    pairs[k, 0] = i
                    pairs[k, 1] = r
                    pairs[k, 2] = p
                    pairs[k, 3] = -1
                    npairs[0] = k + 1
                pend[p] = _NONE
            elif e == EV_ZONE_LOCKED:
                pend[p] = _NONE
        if e == EV_ZONE_LOCKED and last_kind[p] >= 0 and last_kind[p] != EV_PCPU_DRAIN:
            n = ncand[0]
            if n >= cand.shape[0]:
                npairs[1] = j
                return False
            pend[p] = r
            pend_ts[p] = t
            pend_cpu[p] = c
            cand[n, 0] = r
            cand[n, 1] = p
            cand[n, 2] = run_start[c] if c >= 0 and c < run_start.shape[0] else r
            ncand[0] = n + 1
        last_kind[p] = e
    npairs[1] = j1
    return True


@njit(nogil=True, cache=True, _nrt=False)
def run_bounds(ev, cpu, r0, n, i, j, at_eof):
    """(s, j_end) of a contradiction (take at trace row i, drain at row j), as
    causal._move_before_runs finds them: s the first take of i's run on its CPU, j_end the last
    drain of j's run on its CPU; j_end = -1 when the buffer ends inside the drain run (more
    events needed). Buffer row k is trace row r0 + k; n rows are buffered."""
    a = cpu[i - r0]
    c = cpu[j - r0]
    s = i
    q = i - 1
    while q >= r0:
        if cpu[q - r0] == a:
            if ev[q - r0] != EV_ZONE_LOCKED:
                break
            s = q
        q -= 1
    q = j + 1
    while q < r0 + n:
        if cpu[q - r0] == c:
            if ev[q - r0] != EV_PCPU_DRAIN:
                return s, j
            j = q
        q += 1
    if at_eof:
        return s, j
    return s, -1


@njit(nogil=True, cache=True, _nrt=False)
def move_before_run(key, cpu, r0, s, j, c):
    """causal._move_before_runs for one contradiction: CPU c's events in (s, j] get keys just
    below key[s], in their own order."""
    base = key[s - r0] - 0.5
    span = j - s + 1
    for m in range(s + 1, j + 1):
        if cpu[m - r0] == c:
            moved = base + 0.4 * (m - s) / span
            if moved < key[m - r0]:
                key[m - r0] = moved


class CausalStream:
    """The causal order of a trace fed batch by batch (see the module docstring).

    `push(ev, slot, cpu, ts)` appends the next events (slot: the page's dense index, -1 for
    none); it returns the trace rows now final, in causal order (`finish()` returns the rest).
    `moved` counts the events whose place changed, as EventArrays.reordered does."""

    def __init__(self, n_slots: int, n_cpus: int = 64, skew_ns: int = SKEW_NS) -> None:
        self.skew_ns = skew_ns
        self.last_kind = np.full(n_slots, -1, np.int8)
        self.pend = np.full(n_slots, -1, np.int64)
        self.pend_ts = np.zeros(n_slots, np.int64)
        self.pend_cpu = np.zeros(n_slots, np.int64)
        self.run_start = np.full(max(n_cpus, 1), -1, np.int64)
        self.cand = np.zeros((1024, 3), np.int64)
        self.ncand = np.zeros(1, np.int64)
        self.cand_head = 0
        self.pairs = np.zeros((256, 4), np.int64)
        self.npairs = np.zeros(2, np.int64)
        self.steps_back = np.zeros(1, np.int64)
        self.last_ts = np.full(1, np.iinfo(np.int64).min, np.int64)
        self.r0 = 0  # trace row of buffer row 0
        self.ev = np.zeros(0, np.int64)
        self.cpu = np.zeros(0, np.int64)
        self.key = np.zeros(0, np.float64)
        self.moved = 0
        self.last_identity = True  # the last rows handed out are in trace order

    def grow_slots(self, n_slots: int) -> None:
        old = len(self.last_kind)
        if n_slots <= old:
            return
        self.last_kind = np.concatenate([self.last_kind, np.full(n_slots - old, -1, np.int8)])
        self.pend = np.concatenate([self.pend, np.full(n_slots - old, -1, np.int64)])
        self.pend_ts = np.concatenate([self.pend_ts, np.zeros(n_slots - old, np.int64)])
        self.pend_cpu = np.concatenate([self.pend_cpu, np.zeros(n_slots - old, np.int64)])

    def _grow_cpus(self, cpu: np.ndarray) -> None:
        top = int(cpu.max()) + 1 if len(cpu) else 0
        if top > len(self.run_start):
            self.run_start = np.concatenate([self.run_start,
                                             np.full(top - len(self.run_start), -1, np.int64)])

    def push(self, ev: np.ndarray, slot: np.ndarray, cpu: np.ndarray,
             ts: np.ndarray) -> np.ndarray:
        """Add the next events; the trace rows now final, in causal order."""
        self._grow_cpus(cpu)
        n0 = len(self.ev)
        self.ev = np.concatenate([self.ev, ev])
        self.cpu = np.concatenate([self.cpu, cpu])
        self.key = np.concatenate([self.key, np.arange(self.r0 + n0, self.r0 + n0 + len(ev),
                                                       dtype=np.float64)])
        j = 0
        while not scan_contradictions(ev, slot, cpu, ts, self.r0 + n0, j, len(ev),
                                      self.last_kind, self.pend, self.pend_ts, self.pend_cpu,
                                      self.cand, self.ncand, self.run_start, self.pairs,
                                      self.npairs, self.skew_ns, self.steps_back, self.last_ts):
            j = int(self.npairs[1])
            self._compact_cand()
            if self.npairs[0] >= len(self.pairs):
                self.pairs = np.concatenate([self.pairs, np.zeros_like(self.pairs)])
            if self.ncand[0] >= len(self.cand):
                self.cand = np.concatenate([self.cand, np.zeros_like(self.cand)])
        return self._flush(False)

    def finish(self) -> np.ndarray:
        """The remaining trace rows, in causal order."""
        return self._flush(True)

    @property
    def clock_steps_back(self) -> int:
        return int(self.steps_back[0])

    def _compact_cand(self) -> None:
        """Drop resolved or expired pending takes from the front of the list."""
        n = int(self.ncand[0])
        h = self.cand_head
        now = int(self.last_ts[0])
        while h < n:
            r, p = int(self.cand[h, 0]), int(self.cand[h, 1])
            if self.pend[p] == r and now - int(self.pend_ts[p]) <= self.skew_ns:
                break
            h += 1
        if h:
            self.cand[: n - h] = self.cand[h:n]
            self.ncand[0] = n - h
        self.cand_head = 0

    def _pending_floor(self) -> int:
        """The earliest run start of a take that may still be contradicted."""
        self._compact_cand()
        n = int(self.ncand[0])
        if not n:
            return 1 << 62
        live = self.cand[:n]
        still = (self.pend[live[:, 1]] == live[:, 0]) & \
            (int(self.last_ts[0]) - self.pend_ts[live[:, 1]] <= self.skew_ns)
        return int(live[still, 2].min()) if still.any() else 1 << 62

    def _flush(self, at_eof: bool) -> np.ndarray:
        end = self.r0 + len(self.ev)
        floor = end
        if not at_eof:
            runs = self.run_start[self.run_start >= 0]
            if len(runs):
                floor = min(floor, int(runs.min()))
            floor = min(floor, self._pending_floor())
        k = int(self.npairs[0])
        pairs = self.pairs[:k]
        bounds = np.zeros((k, 2), np.int64)
        for m in range(k):
            s, je = run_bounds(self.ev, self.cpu, self.r0, len(self.ev), int(pairs[m, 0]),
                               int(pairs[m, 1]), at_eof)
            bounds[m] = (s, je)
        ready = bounds[:, 1] >= 0
        if (~ready).any():
            floor = min(floor, int(bounds[~ready, 0].min()))
        # components of overlapping ranges; one that reaches the floor waits whole
        idx = np.flatnonzero(ready)
        apply = np.zeros(k, bool)
        if len(idx):
            idx = idx[np.argsort(bounds[idx, 0], kind="stable")]
            comps: list[list[int]] = []
            hi = -1
            for m in idx:
                if comps and bounds[m, 0] <= hi:
                    comps[-1].append(int(m))
                    hi = max(hi, int(bounds[m, 1]))
                else:
                    comps.append([int(m)])
                    hi = int(bounds[m, 1])
            changed = True
            while changed:
                changed = False
                for comp in comps:
                    lo = int(bounds[comp, 0].min())
                    top = int(bounds[comp, 1].max())
                    if lo < floor <= top:
                        floor = lo
                        changed = True
            for comp in comps:
                if int(bounds[comp, 1].max()) < floor:
                    # causal_order applies contradictions in (page, take) order
                    for m in sorted(comp, key=lambda q: (int(pairs[q, 2]), int(pairs[q, 0]))):
                        move_before_run(self.key, self.cpu, self.r0, int(bounds[m, 0]),
                                        int(bounds[m, 1]), int(self.cpu[pairs[m, 1] - self.r0]))
                        apply[m] = True
        if apply.any():
            self.pairs[: k - int(apply.sum())] = pairs[~apply]
            self.npairs[0] = k - int(apply.sum())
        cut = max(floor - self.r0, 0)
        keys = self.key[:cut]
        rows = np.arange(self.r0, self.r0 + cut, dtype=np.int64)
        self.last_identity = True
        if cut and np.any(keys != rows):
            order = np.argsort(keys, kind="stable")
            self.moved += int(np.count_nonzero(order != np.arange(cut)))
            rows = rows[order]
            self.last_identity = False
        self.ev = self.ev[cut:]
        self.cpu = self.cpu[cut:]
        self.key = self.key[cut:]
        self.r0 += cut
        return rows
