"""The events-frame metrics, accumulated batch by batch in trace order.

`EventMetrics.feed(cols)` takes consecutive rows (int64 columns as replay.stream.columns makes
them: nulls -1, a failed allocation's pfn -1, event codes, comm codes) and keeps per-page,
per-CPU and per-task state only; its results equal, number for number, the polars functions
over the same rows: fallback_summary and pcp_summary (fallbacks.py), per_process, page_summary
and live_pages' count (peers.py), simulate_cmd's traced_counts, and the fallback time line's
rows (report/build.py fallback_events). Per-page arrays are indexed by slot (the caller's pfn
slots, -1 for none) and grow with them.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numba import njit

from replay.metrics.idmap import IdMap
from replay.metrics.peers import PER_PROCESS_COLUMNS
from replay.trace.schema import (
    EV_ALLOC,
    EV_EXTFRAG,
    EV_FREE,
    EV_FREE_BATCHED,
    EV_PCPU_DRAIN,
    EV_ZONE_LOCKED,
    MIGRATETYPE_NAMES,
)

PAGE_KB = 4
MAX_ORDER = 11
SEVERE_MAX = 3
# per-process sums (PER_PROCESS_COLUMNS order)
(P_ALLOCS, P_UNDER_LOCK, P_FREED_DIRECT, P_FREED_BATCHED, P_DRAINED_PAGES, P_DRAINS, P_REFILLS,
 P_FALLBACKS, P_FRAGMENTING, P_CHOWN, P_SEVERE, P_MODERATE) = range(12)
# totals
(T_ALLOCS, T_FAILED, T_REFILL_BLOCKS, T_BUDDY_ALLOCS, T_DRAINS, T_DRAINED_PAGES, T_FALLBACKS,
 T_FRAGMENTING, T_CHOWN, T_SEVERE, T_MODERATE, T_REFILL_PAGES, T_REFILL_RUNS, T_DRAIN_RUNS,
 T_ALLOC_KB, T_FREES, T_FREE_KB, T_FAILED_KB, T_MATCHED, T_MATCHED_KB, T_FAILED_FLAG) = range(21)
N_TOTALS = 21


@njit(cache=True, _nrt=False)
def _token(e, refill, order, mt):
    """fallbacks.pcp_token: 0 other, 1 drain, 2 + 8 * order + migratetype a refill, -1 extfrag."""
    if e == EV_EXTFRAG:
        return -1
    if e == EV_ZONE_LOCKED and refill == 1:
        return 2 + 8 * max(order, 0) + max(mt, 0)
    if e == EV_PCPU_DRAIN:
        return 1
    return 0


@njit(nogil=True, cache=True, _nrt=False)
def metrics_batch(ev, slot, pid, cpu, key, order, mt, refill, ford, frag, chown, failed,  # noqa: PLR0912, PLR0915
                  tot, by_om, cpu_tok, cpu_pid, key_tok, psums, pf_kind, pf_pid, pf_key,
                  pk_kind, per_process):
    """One pass over a batch for every accumulator (see EventMetrics)."""
    for j in range(ev.shape[0]):
        e = ev[j]
        o = order[j]
        pages = 1 << max(o, 0)
        p = slot[j]
        k = key[j]
        if e == EV_ALLOC:
            tot[T_ALLOCS] += 1
            if failed[j] == 1:
                tot[T_FAILED_FLAG] += 1
            if failed[j] == 1 or p < 0:
                tot[T_FAILED] += 1
                tot[T_FAILED_KB] += pages * PAGE_KB
            else:
                tot[T_ALLOC_KB] += pages * PAGE_KB
                if 0 <= o < MAX_ORDER and 0 <= mt[j] < by_om.shape[1]:
                    by_om[o, mt[j]] += 1
        elif e == EV_ZONE_LOCKED:
            if refill[j] == 1:
                tot[T_REFILL_BLOCKS] += 1
                tot[T_REFILL_PAGES] += pages
            elif refill[j] == 0:
                tot[T_BUDDY_ALLOCS] += 1
        elif e == EV_PCPU_DRAIN:
            tot[T_DRAINS] += 1
            tot[T_DRAINED_PAGES] += pages
        elif e == EV_FREE:
            tot[T_FREES] += 1
            tot[T_FREE_KB] += pages * PAGE_KB
        elif e == EV_EXTFRAG:
            tot[T_FALLBACKS] += 1
            fr = frag[j] == 1
            if fr:
                tot[T_FRAGMENTING] += 1
                if ford[j] >= 0:
                    if ford[j] <= SEVERE_MAX:
                        tot[T_SEVERE] += 1
                    else:
                        tot[T_MODERATE] += 1
            if chown[j] == 1:
                tot[T_CHOWN] += 1
        tok = _token(e, refill[j], o, mt[j])
        # pcp_summary: runs per CPU, same pid
        c = cpu[j]
        if tok >= 0 and 0 <= c < cpu_tok.shape[0]:
            start = (cpu_tok[c] != tok or cpu_pid[c] != pid[j]) and tok != 0
            if start:
                if tok == 1:
                    tot[T_DRAIN_RUNS] += 1
                else:
                    tot[T_REFILL_RUNS] += 1
            cpu_tok[c] = tok
            cpu_pid[c] = pid[j]
        # page_summary: perf's live tree (successful allocs and mm_page_free by pfn)
        if p >= 0 and ((e == EV_ALLOC and failed[j] != 1) or e == EV_FREE):
            if e == EV_FREE and pk_kind[p] == EV_ALLOC:
                tot[T_MATCHED] += 1
                tot[T_MATCHED_KB] += pages * PAGE_KB
            pk_kind[p] = e
        if not per_process:
            continue
        # per_process
        if e == EV_ALLOC:
            psums[k, P_ALLOCS] += 1
        elif e == EV_ZONE_LOCKED:
            psums[k, P_UNDER_LOCK] += 1
        elif e == EV_FREE:
            psums[k, P_FREED_DIRECT] += 1
        elif e == EV_FREE_BATCHED:
            psums[k, P_FREED_BATCHED] += 1
        elif e == EV_PCPU_DRAIN:
            psums[k, P_DRAINED_PAGES] += pages
        elif e == EV_EXTFRAG:
            psums[k, P_FALLBACKS] += 1
            if frag[j] == 1:
                psums[k, P_FRAGMENTING] += 1
                if ford[j] >= 0:
                    if ford[j] <= SEVERE_MAX:
                        psums[k, P_SEVERE] += 1
                    else:
                        psums[k, P_MODERATE] += 1
            if chown[j] == 1:
                psums[k, P_CHOWN] += 1
        if tok >= 0:
            if key_tok[k] != tok and tok != 0:
                psums[k, P_DRAINS if tok == 1 else P_REFILLS] += 1
            key_tok[k] = tok
        if p >= 0 and (e == EV_ALLOC or e == EV_FREE or e == EV_FREE_BATCHED):
            if e == EV_FREE_BATCHED and pf_kind[p] == EV_FREE and pf_pid[p] == pid[j]:
                psums[pf_key[p], P_FREED_DIRECT] -= 1  # the first report of a batched free
            pf_kind[p] = e
            pf_pid[p] = pid[j]
            pf_key[p] = k


def _grow(a: np.ndarray, n: int, fill) -> np.ndarray:
    if n <= len(a):
        return a
    size = max(n, 2 * len(a))
    extra = np.full((size - len(a),) + a.shape[1:], fill, a.dtype)
    return np.concatenate([a, extra])


class EventMetrics:
    """The accumulators (see the module docstring). `per_process=False` skips the per-task
    table (the simulated side has no tasks of its own)."""

    def __init__(self, per_process: bool = True, fallback_rows: bool = True) -> None:
        self.per_process = per_process
        self.tot = np.zeros(N_TOTALS, np.int64)
        self.by_om = np.zeros((MAX_ORDER, len(MIGRATETYPE_NAMES)), np.int64)
        self.cpu_tok = np.full(64, -2, np.int64)
        self.cpu_pid = np.full(64, -2, np.int64)
        self.key_tok = np.full(256, -2, np.int64)
        self.psums = np.zeros((256, len(PER_PROCESS_COLUMNS)), np.int64)
        self.pf_kind = np.full(1 << 16, -1, np.int64)
        self.pf_pid = np.zeros(1 << 16, np.int64)
        self.pf_key = np.zeros(1 << 16, np.int64)
        self.pk_kind = np.full(1 << 16, -1, np.int64)
        self.keys = IdMap()
        self.key_rows: list[tuple[int, int]] = []  # (comm code, pid) of each key id
        self.fallback_rows = fallback_rows
        self._fb: list[np.ndarray] = []
        self._pairs = np.zeros((16, 16), np.int64)

    def _key_ids(self, comm: np.ndarray, pid: np.ndarray) -> np.ndarray:
        """(comm, pid) -> a dense key id (per_process' rows)."""
        if not self.per_process or not len(comm):
            return np.zeros(len(comm), np.int64)
        ids, new = self.keys.ids(comm, pid)
        self.key_rows.extend((int(c), int(p)) for c, p in new)
        return ids

    def feed(self, c: dict[str, np.ndarray], slot: np.ndarray) -> None:
        """Consecutive rows (trace order) and their pfn slots."""
        n = len(c["ev"])
        if not n:
            return
        key = self._key_ids(c["comm"], c["pid"])
        nk = len(self.key_rows)
        self.key_tok = _grow(self.key_tok, nk, -2)
        self.psums = _grow(self.psums, nk, 0)
        top = int(slot.max()) + 1
        if top > len(self.pf_kind):
            self.pf_kind = _grow(self.pf_kind, top, -1)
            self.pf_pid = _grow(self.pf_pid, top, 0)
            self.pf_key = _grow(self.pf_key, top, 0)
            self.pk_kind = _grow(self.pk_kind, top, -1)
        cpus = int(c["cpu"].max()) + 1
        self.cpu_tok = _grow(self.cpu_tok, cpus, -2)
        self.cpu_pid = _grow(self.cpu_pid, cpus, -2)
        failed = c.get("failed")
        if failed is None:
            failed = np.zeros(n, np.int64)
        metrics_batch(c["ev"], slot, c["pid"], c["cpu"], key, c["order"], c["mt"], c["refill"],
                      c["ford"], c["frag"], c["chown"], failed, self.tot, self.by_om,
                      self.cpu_tok, self.cpu_pid, self.key_tok, self.psums, self.pf_kind,
                      self.pf_pid, self.pf_key, self.pk_kind, self.per_process)
        ex = np.flatnonzero(c["ev"] == EV_EXTFRAG)
        if len(ex):
            mt, fmt = c["mt"][ex], c["fmt"][ex]
            ok = (mt >= 0) & (mt < 16) & (fmt >= 0) & (fmt < 16)
            np.add.at(self._pairs, (mt[ok], fmt[ok]), 1)
            if (~ok).any():  # a migratetype outside the table: keep the pair by name
                self._odd_pairs(mt[~ok], fmt[~ok])
            if self.fallback_rows:
                self._fb.append(np.stack([c["ts"][ex], mt, fmt, c["ford"][ex],
                                          c["frag"][ex], c["chown"][ex]], axis=1))

    def _odd_pairs(self, mt: np.ndarray, fmt: np.ndarray) -> None:
        odd = getattr(self, "_odd", {})
        for a, b in zip(mt.tolist(), fmt.tolist(), strict=True):
            odd[(a, b)] = odd.get((a, b), 0) + 1
        self._odd = odd

    # -- results ---------------------------------------------------------------------------

    def fallback_summary(self) -> dict:
        """fallbacks.fallback_summary's dict."""
        from replay.metrics.fallbacks import migratetype_name

        t = self.tot
        out = {"allocs": int(t[T_ALLOCS]), "fallbacks": int(t[T_FALLBACKS]),
               "fragmenting": int(t[T_FRAGMENTING]), "ownership_changes": int(t[T_CHOWN]),
               "severe": int(t[T_SEVERE]), "moderate": int(t[T_MODERATE])}
        allocs = out["allocs"]
        out["fallback_rate_per_1000"] = out["fallbacks"] * 1000 / allocs if allocs else 0.0
        pairs: dict[tuple[int, int], int] = {}
        for a, b in zip(*np.nonzero(self._pairs), strict=True):
            pairs[(int(a), int(b))] = int(self._pairs[a, b])
        for (a, b), v in getattr(self, "_odd", {}).items():
            pairs[(a, b)] = pairs.get((a, b), 0) + v
        by_pair: dict[str, dict[str, int]] = {}
        # polars sorts nulls (-1 here) first
        for (a, b) in sorted(pairs, key=lambda ab: (ab[0] >= 0, ab[0], ab[1] >= 0, ab[1])):
            by_pair.setdefault(migratetype_name(a if a >= 0 else None), {})[
                migratetype_name(b if b >= 0 else None)] = pairs[(a, b)]
        out["by_pair"] = by_pair
        return out

    def pcp_summary(self) -> dict[str, int]:
        """fallbacks.pcp_summary's dict."""
        t = self.tot
        return {"refill_blocks": int(t[T_REFILL_BLOCKS]), "refill_pages": int(t[T_REFILL_PAGES]),
                "refill_runs": int(t[T_REFILL_RUNS]), "drained_blocks": int(t[T_DRAINS]),
                "drained_pages": int(t[T_DRAINED_PAGES]), "drain_runs": int(t[T_DRAIN_RUNS])}

    def traced_counts(self) -> dict[str, int]:
        """simulate_cmd.traced_counts' dict."""
        t = self.tot
        return {"allocs": int(t[T_ALLOCS]), "alloc_failures": int(t[T_FAILED_FLAG]),
                "pcp_refill_blocks": int(t[T_REFILL_BLOCKS]),
                "buddy_allocs": int(t[T_BUDDY_ALLOCS]), "pcp_drain_events": int(t[T_DRAINS]),
                "pcp_drained_pages": int(t[T_DRAINED_PAGES]), "fallbacks": int(t[T_FALLBACKS]),
                "fragmenting_fallbacks": int(t[T_FRAGMENTING]),
                "ownership_changes": int(t[T_CHOWN])}

    def page_summary(self) -> dict:
        """peers.page_summary's dict."""
        t = self.tot
        n, kb = int(t[T_MATCHED]), int(t[T_MATCHED_KB])
        ok = int(t[T_ALLOCS] - t[T_FAILED])
        return {
            "alloc_requests": int(t[T_ALLOCS]), "alloc_kb": int(t[T_ALLOC_KB]),
            "free_requests": int(t[T_FREES]), "free_kb": int(t[T_FREE_KB]),
            "alloc_and_freed": n, "alloc_and_freed_kb": kb,
            "alloc_only": ok - n, "alloc_only_kb": int(t[T_ALLOC_KB]) - kb,
            "free_only": int(t[T_FREES]) - n, "free_only_kb": int(t[T_FREE_KB]) - kb,
            "alloc_failures": int(t[T_FAILED]), "alloc_failures_kb": int(t[T_FAILED_KB]),
            "by_order_migratetype": {o: {name: int(self.by_om[o, m])
                                         for m, name in enumerate(MIGRATETYPE_NAMES)}
                                     for o in range(MAX_ORDER)},
        }

    def live_pages(self) -> int:
        """The number of rows peers.live_pages gives."""
        return int(np.count_nonzero(self.pk_kind == EV_ALLOC))

    def per_process_frame(self, comm_names: list[str]) -> pl.DataFrame:
        """peers.per_process's table."""
        nk = len(self.key_rows)
        comm = [comm_names[c] if c >= 0 else None for c, _ in self.key_rows]
        pid = [p for _, p in self.key_rows]
        data = {"comm": pl.Series("comm", comm, pl.Utf8), "pid": pl.Series("pid", pid, pl.Int32)}
        for i, name in enumerate(PER_PROCESS_COLUMNS):
            data[name] = pl.Series(name, self.psums[:nk, i], pl.Int64)
        return pl.DataFrame(data).sort(["allocs", "pid", "comm"],
                                       descending=[True, False, False], nulls_last=True)

    def fallback_events(self, limit: int = 20000) -> list[dict]:
        """report.build.fallback_events' rows."""
        rows = np.concatenate(self._fb) if self._fb else np.zeros((0, 6), np.int64)
        if len(rows) > limit:
            rows = rows[:: len(rows) // limit + 1]
        names = dict(enumerate(MIGRATETYPE_NAMES))

        def opt(v):
            return None if v < 0 else int(v)

        return [{"t_s": int(ts) / 1e9, "alloc_mt": names.get(opt(a), str(opt(a))),
                 "fallback_mt": names.get(opt(b), str(opt(b))), "fallback_order": opt(fo),
                 "fragmenting": bool(fr) if fr >= 0 else False,
                 "change_ownership": bool(ch) if ch >= 0 else False}
                for ts, a, b, fo, fr, ch in rows.tolist()]
