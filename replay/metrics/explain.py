"""Explain fragmentation: who stole pageblocks, who polluted them, for how long, who pins them.

`ExplainState` is a streaming accumulator over the events table (observed or simulated, the
same code): `update(chunk)` with consecutive rows (an Arrow table or record batch in the events
schema), then `finish(occupancy)` for the tables (replay.metrics.explain_tables). Its memory is
proportional to pfns, pageblocks, CPUs, culprit keys and the report's resolution (time buckets,
top-N rows), never to the number of events. The per-event loop is a numba kernel
(replay.metrics.explain_kernel); docs/metrics.md §6 defines every number.

A *culprit key* is (comm, gfp_flags, order, migratetype) of an mm_page_alloc, plus its call
chain's id (`stack_id`) where the trace has call chains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from replay.metrics import explain_kernel as K
from replay.metrics.idmap import IdMap
from replay.trace.schema import EV_ALLOC, EV_EXTFRAG

if TYPE_CHECKING:
    from replay.metrics.callsites import Chain

DEFAULT_BUCKETS = 160
TOP_INTERVALS = 50
MAX_STEAL_ROWS = 5000


@dataclass
class Occupancy:
    """What the allocator's state held per pageblock at the end point (from the engine's state
    there): free pages on the buddy lists and pages on per-CPU lists."""

    free_pages: np.ndarray  # int64 [PB]
    pcp_pages: np.ndarray  # int64 [PB]
    in_zone_pages: np.ndarray  # int64 [PB] pages of the pageblock inside a zone
    pb_mt: np.ndarray | None = None  # the engine's pageblock types there


def pages_per_pageblock(heads: np.ndarray, orders: np.ndarray, pbo: int, npb: int) -> np.ndarray:
    """Pages per pageblock of blocks [head, head + 2^order) (a block may span pageblocks)."""
    out = np.zeros(npb, np.int64)
    heads = heads.astype(np.int64)
    orders = orders.astype(np.int64)
    small = orders <= pbo
    if small.any():
        pb = heads[small] >> pbo
        ok = pb < npb
        out += np.bincount(pb[ok], weights=(1 << orders[small][ok]),
                           minlength=npb).astype(np.int64)[:npb]
    for h, o in zip(heads[~small], orders[~small], strict=True):
        lo, hi = h >> pbo, min((h + (1 << o)) >> pbo, npb)
        out[lo:hi] += 1 << pbo
    return out


def occupancy(st, pbo: int) -> Occupancy:
    """Free and pcp pages per pageblock of an engine State."""
    from replay.engine.state import PG_BUDDY, PG_PCP

    npfn = st.pg_state.shape[0]
    npb = (npfn >> pbo) + 1
    free_h = np.flatnonzero(st.pg_state == PG_BUDDY)
    pcp_h = np.flatnonzero(st.pg_state == PG_PCP)
    in_zone = np.bincount(np.flatnonzero(st.pg_zone >= 0) >> pbo, minlength=npb)[:npb]
    return Occupancy(pages_per_pageblock(free_h, st.pg_order[free_h], pbo, npb),
                     pages_per_pageblock(pcp_h, st.pg_order[pcp_h], pbo, npb),
                     in_zone.astype(np.int64), st.pb_mt.copy())


class StateCapture:
    """A sampler for reconstruct/simulate: the pageblock types where the replay starts (its
    first call) and the occupancy at event index `at` (the end point)."""

    def __init__(self, at: int | None, pbo: int) -> None:
        self.at = at
        self.pbo = pbo
        self.start_index: int | None = None
        self.start_pb_mt: np.ndarray | None = None
        self.pg_zone: np.ndarray | None = None
        self.end: Occupancy | None = None

    def __call__(self, st, index: int) -> None:
        if self.start_pb_mt is None:
            self.start_index = int(index)
            self.start_pb_mt = st.pb_mt.copy()
            self.pg_zone = st.pg_zone
        if self.at is not None and index == self.at and self.end is None:
            self.end = occupancy(st, self.pbo)


class WithCapture:
    """The report's sampler at its own points, plus a StateCapture (which needs the start and
    its end point only)."""

    def __init__(self, sampler, points, capture: StateCapture) -> None:
        self.sampler = sampler
        self.points = set(int(p) for p in points) if points is not None else None
        self.capture = capture
        self.first = True

    def __call__(self, st, index: int) -> None:
        if self.sampler is not None and (self.first or self.points is None
                                         or int(index) in self.points):
            self.sampler(st, index)
        self.first = False
        self.capture(st, index)

    @property
    def samples(self):
        return self.sampler.samples if self.sampler is not None else None


@dataclass
class CulpritKeys:
    """Culprit keys and their fields, in the order they were first seen."""

    index: dict[tuple, int] = field(default_factory=dict)
    rows: list[tuple] = field(default_factory=list)  # (comm, gfp, order, mt, stack_id)
    comms: list[str | None] = field(default_factory=list)
    comm_index: dict[str | None, int] = field(default_factory=dict)
    chains: dict[int, Chain] = field(default_factory=dict)  # stack_id -> its call chain
    idmap: IdMap = field(default_factory=IdMap)  # (packed key, stack id) -> row index

    def comm_id(self, name: str | None) -> int:
        if name not in self.comm_index:
            self.comm_index[name] = len(self.comms)
            self.comms.append(name)
        return self.comm_index[name]

    def ids(self, comm: np.ndarray, gfp: np.ndarray, order: np.ndarray, mt: np.ndarray,
            stack: np.ndarray) -> np.ndarray:
        """Global key ids for rows of (comm id, gfp, order, mt, stack id), numbered in order
        of first appearance."""
        if not len(comm):
            return np.zeros(0, np.int64)
        packed = ((comm + 1) << 40) | ((gfp & 0xFFFFFFFF) << 8) | ((order & 0xF) << 4) \
            | (mt & 0xF)
        ids, new = self.idmap.ids(packed, stack)
        for p, s in new.tolist():
            row = ((p >> 40) - 1, (p >> 8) & 0xFFFFFFFF, (p >> 4) & 0xF, p & 0xF, s)
            self.index[row] = len(self.rows)
            self.rows.append(row)
        return ids


def _np(col, fill: int = -1) -> np.ndarray:
    if col.null_count:
        col = pc.fill_null(col, fill)
    return col.to_numpy(zero_copy_only=False).astype(np.int64)


def _dict_codes(col, keys: CulpritKeys) -> np.ndarray:
    """A dictionary (or string) column as global comm ids; null -> -1."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = []
    for ch in chunks:
        if isinstance(ch, pa.DictionaryArray):
            remap = np.array([keys.comm_id(s) for s in ch.dictionary.to_pylist()] or [0],
                             np.int64)
            idx = ch.indices
            codes = remap[_np(idx, 0)] if len(ch.dictionary) else np.full(len(ch), -1,
                                                                          np.int64)
            if idx.null_count:
                codes[np.asarray(idx.is_null())] = -1
            parts.append(codes)
        else:
            parts.append(np.array([keys.comm_id(s) if s is not None else -1
                                   for s in ch.to_pylist()], np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


class ExplainState:
    """The streaming accumulator (see the module docstring)."""

    def __init__(self, pb_mt: np.ndarray, pg_zone: np.ndarray, zones: list[str],
                 pageblock_order: int, *, start_index: int = 0, end_index: int | None = None,
                 time_range_ns: tuple[int, int] = (0, 0),
                 window_ns: tuple[int, int] | None = None, cpus: int = 1,
                 mobility_grouping: bool = True, no_whole_block_steal: bool = False,
                 buckets: int = DEFAULT_BUCKETS, comm_by_pid: dict[int, str] | None = None,
                 ) -> None:
        self.pbo = pageblock_order
        self.zones = zones
        self.pg_zone = pg_zone
        self.start_index = start_index
        self.end_index = end_index
        self.window = window_ns
        w = window_ns or (-(1 << 62), 1 << 62)
        t0, t1 = time_range_ns
        if window_ns is not None:
            t0, t1 = max(t0, w[0]), min(t1, w[1])
        self.t_range = (t0, max(t1, t0))
        self.keys = CulpritKeys()
        self.comm_by_pid = comm_by_pid or {}
        self.pid_comm: dict[int, str] = {}  # learnt here: pid -> its last comm
        self.A = K.new_arrays(pb_mt, len(pg_zone), pageblock_order, cpus, buckets,
                              self.t_range, w, mobility_grouping, no_whole_block_steal)
        self.next_index = 0
        self.steal_rows: list[np.ndarray] = []
        self.steal_by_key: dict[int, np.ndarray] = {}
        self.steals_total = 0
        self.pollution = pl.DataFrame()  # per (pageblock, key), aggregated
        self.top_intervals = np.zeros((0, K.N_INTERVAL_FIELDS), np.int64)
        self.end_snapshot: dict | None = None
        self.events_seen = 0
        self.symbols = None  # replay.trace.symbols.Symbols, to name call chains

    # -- input -------------------------------------------------------------------------------

    def update(self, chunk: pa.Table | pa.RecordBatch) -> None:
        """Consume the next rows of the events table (consecutive, in trace order)."""
        n = chunk.num_rows
        base = self.next_index
        self.next_index += n
        lo = max(0, self.start_index - base)
        if lo >= n:
            return
        self._consume(self._columns(chunk), n, base, lo)

    def update_arrays(self, cols: dict[str, np.ndarray], comm_names: list[str],
                      chains: dict[int, Chain] | None = None) -> None:
        """update() for rows given as int64 columns (replay.stream.columns: ev, ts, pfn,
        order, mt, cpu, pid, ford, fmt, chown, gfp, comm as codes into `comm_names`, -1 for
        none, and stack where the trace has call chains, `chains` naming them)."""
        n = len(cols["ev"])
        base = self.next_index
        self.next_index += n
        lo = max(0, self.start_index - base)
        if lo >= n:
            return
        self._consume(self._array_columns(cols, comm_names, chains), n, base, lo)

    def _comm_ids(self, codes: np.ndarray, comm_names: list[str]) -> np.ndarray:
        remap = getattr(self, "_remap", np.zeros(0, np.int64))
        if len(remap) < len(comm_names):
            extra = [self.keys.comm_id(name) for name in comm_names[len(remap):]]
            remap = self._remap = np.concatenate([remap, np.asarray(extra, np.int64)])
        return np.where(codes >= 0, remap[np.maximum(codes, 0)] if len(remap) else -1, -1)

    def _array_columns(self, c: dict[str, np.ndarray], comm_names: list[str],
                       chains: dict[int, Chain] | None) -> dict[str, np.ndarray]:
        ev = c["ev"]
        cols = {name: c[name] for name in ("ev", "ts", "pfn", "order", "mt", "cpu", "pid",
                                           "ford", "fmt", "chown")}
        key = np.full(len(ev), -1, np.int64)
        comm_col = np.full(len(ev), -1, np.int64)
        steals = np.flatnonzero(ev == EV_EXTFRAG)
        if len(steals):
            comm_col[steals] = self._comm_ids(c["comm"][steals], comm_names)
        cols["comm"] = comm_col
        alloc = np.flatnonzero(ev == EV_ALLOC)
        if len(alloc):
            comm = self._comm_ids(c["comm"][alloc], comm_names)
            pid = c["pid"][alloc]
            self._learn_comms(comm, pid)
            comm = self._fill_comms(comm, pid)
            stack = c["stack"][alloc] if "stack" in c else np.full(len(alloc), -1, np.int64)
            if chains and (stack >= 0).any():
                for sid in np.unique(stack[stack >= 0]).tolist():
                    if sid not in self.keys.chains and sid in chains:
                        self.keys.chains[sid] = chains[sid]
            key[alloc] = self.keys.ids(comm, c["gfp"][alloc], c["order"][alloc],
                                       c["mt"][alloc], stack)
        cols["key"] = key
        return cols

    def _consume(self, cols: dict[str, np.ndarray], n: int, base: int, lo: int) -> None:
        self.events_seen += n - lo
        cut = n
        if self.end_index is not None and base + lo <= self.end_index < base + n:
            cut = self.end_index - base
        self._run(cols, lo, cut, base)
        if self.end_snapshot is None and (cut < n or (self.end_index is not None
                                                      and base + n == self.end_index)):
            self._snapshot_end()
        if cut < n:
            self._run(cols, cut, n, base)

    def _columns(self, chunk) -> dict[str, np.ndarray]:
        from replay.engine.events import event_codes

        t = chunk if isinstance(chunk, pa.Table) else pa.Table.from_batches([chunk])
        ev = event_codes(t)
        pfn = _np(t["pfn"].cast(pa.int64()))
        pfn[np.asarray(t["failed"].combine_chunks().to_numpy(zero_copy_only=False))] = -1
        cols = {"ev": ev, "ts": _np(t["ts_ns"]), "pfn": pfn, "order": _np(t["order"]),
                "mt": _np(t["migratetype"]), "cpu": _np(t["cpu"]), "pid": _np(t["pid"]),
                "ford": _np(t["fallback_order"]), "fmt": _np(t["fallback_migratetype"]),
                "chown": _np(t["change_ownership"])}
        key = np.full(len(ev), -1, np.int64)
        comm_col = np.full(len(ev), -1, np.int64)
        steals = np.flatnonzero(ev == EV_EXTFRAG)
        if len(steals):
            comm_col[steals] = _dict_codes(t.take(pa.array(steals))["comm"], self.keys)
        cols["comm"] = comm_col
        alloc = np.flatnonzero(ev == EV_ALLOC)
        if len(alloc):
            sub = t.take(pa.array(alloc))
            comm = _dict_codes(sub["comm"], self.keys)
            pid = cols["pid"][alloc]
            self._learn_comms(comm, pid)
            comm = self._fill_comms(comm, pid)
            stack = _np(sub["stack_id"]) if "stack_id" in sub.column_names \
                else np.full(len(alloc), -1, np.int64)
            if (stack >= 0).any():
                self._learn_chains(sub, stack)
            gfp = _np(sub["gfp_flags"])
            key[alloc] = self.keys.ids(comm, gfp, cols["order"][alloc], cols["mt"][alloc],
                                       stack)
        cols["key"] = key
        return cols

    def _learn_comms(self, comm: np.ndarray, pid: np.ndarray) -> None:
        ok = comm >= 0
        if ok.any():
            u, last = np.unique(pid[ok][::-1], return_index=True)  # each pid's last comm
            names = self.keys.comms
            for p, c in zip(u.tolist(), comm[ok][::-1][last].tolist(), strict=True):
                self.pid_comm[p] = names[c]

    def _fill_comms(self, comm: np.ndarray, pid: np.ndarray) -> np.ndarray:
        """Rows without a comm (simulated events, `<...>`) take their pid's, where known."""
        miss = np.flatnonzero(comm < 0)
        if len(miss) and self.comm_by_pid:
            u, inverse = np.unique(pid[miss], return_inverse=True)
            names = [self.comm_by_pid.get(int(p)) for p in u.tolist()]
            ids = np.array([self.keys.comm_id(n) if n is not None else -1 for n in names],
                           np.int64)
            comm[miss] = ids[inverse.ravel()]
        return comm

    def _learn_chains(self, sub, stack: np.ndarray) -> None:
        def column(name: str, row: int) -> list | None:
            return sub[name][row].as_py() if name in sub.column_names else None

        new = [s for s in np.unique(stack[stack >= 0]) if int(s) not in self.keys.chains]
        for s in new:
            row = int(np.flatnonzero(stack == s)[0])
            self.keys.chains[int(s)] = (column("callchain", row), column("callchain_syms", row))

    # -- the loop ----------------------------------------------------------------------------

    def _grow_keys(self) -> None:
        need = len(self.keys.rows)
        if need > len(self.A.key_allocs):
            size = max(need, 2 * len(self.A.key_allocs))
            grow = lambda a: np.concatenate([a, np.zeros(size - len(a), a.dtype)])  # noqa: E731
            self.A = self.A._replace(key_allocs=grow(self.A.key_allocs),
                                     key_pages=grow(self.A.key_pages))

    def _run(self, c: dict[str, np.ndarray], i0: int, i1: int, base: int) -> None:
        self._grow_keys()
        i = i0
        while i < i1:
            i = K.explain_events(self.A, c["ev"], c["ts"], c["pfn"], c["order"], c["mt"],
                                 c["cpu"], c["pid"], c["ford"], c["fmt"], c["chown"], c["key"],
                                 c["comm"], i, i1, base)
            self._drain()

    def _drain(self) -> None:
        """Move the kernel's output buffers into the bounded aggregates."""
        s = self.A.scal
        if s[K.S_NSTEAL]:
            self._take_steals(self.A.out_steal[: s[K.S_NSTEAL]].copy())
            s[K.S_NSTEAL] = 0
        if s[K.S_NINT]:
            self._take_intervals(self.A.out_int[: s[K.S_NINT]].copy())
            s[K.S_NINT] = 0

    def _in_window(self, ts: np.ndarray) -> np.ndarray:
        if self.window is None:
            return np.ones(len(ts), bool)
        return (ts >= self.window[0]) & (ts <= self.window[1])

    def _take_steals(self, rows: np.ndarray) -> None:
        rows = rows[self._in_window(rows[:, K.F_TS])]
        self.steals_total += len(rows)
        kept = sum(len(r) for r in self.steal_rows)
        if kept < MAX_STEAL_ROWS:
            self.steal_rows.append(rows[: MAX_STEAL_ROWS - kept])
        for r in rows:  # steals are rare next to events: a row each is cheap
            acc = self.steal_by_key.setdefault(int(r[K.F_KEY]), np.zeros(4, np.int64))
            acc += (1, r[K.F_WHOLE], r[K.F_RETYPED], r[K.F_MIXED_AFTER])

    def _take_intervals(self, rows: np.ndarray) -> None:
        w0, w1 = self.window or (-(1 << 62), 1 << 62)
        t0 = np.maximum(rows[:, K.I_T0], w0)
        t1 = np.minimum(rows[:, K.I_T1], w1)
        dur = np.maximum(t1 - t0, 0)
        keep = (dur > 0) | ((rows[:, K.I_T1] >= w0) & (rows[:, K.I_T0] <= w1))
        rows, dur = rows[keep], dur[keep]
        if not len(rows):
            return
        e0, e1 = rows[:, K.I_E0], rows[:, K.I_E1]
        g0, g1 = self.A.scal[K.S_WIN_G0], self.A.scal[K.S_WIN_G1]
        if self.window is not None and g0 >= 0:
            e0 = np.maximum(e0, g0)
            e1 = np.where(rows[:, K.I_T1] > w1, np.minimum(e1, g1 + 1), e1)
        pages = 1 << rows[:, K.I_ORDER]
        frame = pl.DataFrame({
            "pageblock": rows[:, K.I_PFN] >> self.pbo, "key": rows[:, K.I_KEY],
            "page_ns": (pages * dur).astype(np.float64),
            "page_events": pages * np.maximum(e1 - e0, 0), "stretches": np.ones(len(rows),
                                                                              np.int64),
            "pages": pages})
        agg = frame.group_by("pageblock", "key").agg(pl.col("page_ns", "page_events",
                                                            "stretches", "pages").sum())
        self.pollution = agg if self.pollution.is_empty() else (
            pl.concat([self.pollution, agg]).group_by("pageblock", "key")
            .agg(pl.col("page_ns", "page_events", "stretches", "pages").sum()))
        score = pages * dur
        both = np.concatenate([self.top_intervals, rows])
        both_score = np.concatenate([self._score(self.top_intervals), score])
        order = np.argsort(-both_score, kind="stable")[:TOP_INTERVALS]
        self.top_intervals = both[order]

    def _score(self, rows: np.ndarray) -> np.ndarray:
        w0, w1 = self.window or (-(1 << 62), 1 << 62)
        dur = np.maximum(np.minimum(rows[:, K.I_T1], w1) - np.maximum(rows[:, K.I_T0], w0), 0)
        return (1 << rows[:, K.I_ORDER]) * dur

    # -- the end -----------------------------------------------------------------------------

    def _live_heads(self) -> dict[str, np.ndarray]:
        A = self.A
        heads = np.flatnonzero(A.live_key >= 0)
        return {"pfn": heads, "key": A.live_key[heads].astype(np.int64),
                "order": A.live_order[heads].astype(np.int64),
                "mt": A.live_mt[heads].astype(np.int64), "alloc_ts": A.live_t0[heads],
                "poll_t0": A.poll_t0[heads], "cause": A.poll_cause[heads].astype(np.int64)}

    def _snapshot_end(self) -> None:
        """The live blocks and pageblock types at the end point (the end snapshot's marker)."""
        self._drain()
        live = self._live_heads()
        self.end_snapshot = {"live": live, "pb_mt": self.A.pb_mt.copy(),
                             "ts_ns": int(self.A.scal[K.S_LAST_TS]),
                             "index": self.next_index if self.end_index is None
                             else self.end_index}

    def finish(self, end: Occupancy | None = None) -> dict:
        """Close every open stretch at the last event and build the tables."""
        from replay.metrics.explain_tables import build_tables

        if self.end_snapshot is None:
            self._snapshot_end()
        A = self.A
        last = int(A.scal[K.S_LAST_TS])
        K.advance_buckets(A, self.t_range[1] + 1)
        self._close_open(last)
        for c in range(A.pend_n.shape[0]):  # steals whose allocation never came
            while A.pend_n[c]:
                K.flush_pending(A, c, 0)
        self._drain()
        return build_tables(self, end)

    def _close_open(self, last: int) -> None:
        A = self.A
        heads = np.flatnonzero(A.poll_t0 >= 0)
        if len(heads):
            rows = np.zeros((len(heads), K.N_INTERVAL_FIELDS), np.int64)
            rows[:, K.I_PFN] = heads
            rows[:, K.I_KEY] = A.live_key[heads]
            rows[:, K.I_ORDER] = A.live_order[heads]
            rows[:, K.I_MT] = A.live_mt[heads]
            rows[:, K.I_PBMT] = A.pb_mt[heads >> self.pbo]
            rows[:, K.I_T0] = A.poll_t0[heads]
            rows[:, K.I_T1] = last
            rows[:, K.I_E0] = A.poll_e0[heads]
            rows[:, K.I_E1] = self.next_index
            rows[:, K.I_CAUSE] = A.poll_cause[heads]
            rows[:, K.I_END] = K.END_LIVE
            rows[:, K.I_ALLOC_TS] = A.live_t0[heads]
            self._take_intervals(rows)
        w0, w1 = self.window or (-(1 << 62), 1 << 62)
        mixed = np.flatnonzero(A.pb_mixed_t0 >= 0)
        for pb in mixed:
            lo, hi = max(A.pb_mixed_t0[pb], w0), min(last, w1)
            A.pb_mixed_ns[pb] += max(hi - lo, 0)


def pid_comms(events: pa.Table) -> dict[int, str]:
    """pid -> the comm of its last mm_page_alloc (to name simulated events' tasks)."""
    df = (pl.from_arrow(events.select(["pid", "comm", "event"]))
          .with_columns(pl.col("event").cast(pl.Utf8), pl.col("comm").cast(pl.Utf8))
          .filter((pl.col("event") == "mm_page_alloc") & pl.col("comm").is_not_null())
          .group_by("pid").agg(pl.col("comm").last()))
    return dict(zip(df["pid"].to_list(), df["comm"].to_list(), strict=True))


def explain_events(events: pa.Table, capture: StateCapture, zones: list[str],
                   pageblock_order: int, *, start_index: int, end_index: int | None,
                   window_s: tuple[float, float] | None = None, mobility_grouping: bool = True,
                   no_whole_block_steal: bool = False, comm_by_pid: dict[int, str] | None = None,
                   symbols=None, chunk_rows: int = 1 << 20,
                   buckets: int = DEFAULT_BUCKETS) -> tuple[dict, ExplainState]:
    """Run the explain pass over an events table in chunks of `chunk_rows` rows, from the
    state `capture` saw where the replay started; returns (tables, the finished state)."""
    n = events.num_rows
    ts = events["ts_ns"]
    lo = int(ts[min(start_index, n - 1)].as_py()) if n else 0
    hi = int(pc.max(ts).as_py()) if n else 0
    cpus = int(pc.max(events["cpu"]).as_py()) + 1 if n else 1
    state = new_explain_state(capture, zones, pageblock_order, (lo, hi), cpus,
                              start_index=start_index, end_index=end_index, window_s=window_s,
                              mobility_grouping=mobility_grouping,
                              no_whole_block_steal=no_whole_block_steal,
                              comm_by_pid=comm_by_pid, symbols=symbols, buckets=buckets)
    for off in range(0, n, chunk_rows):
        state.update(events.slice(off, chunk_rows))
    return state.finish(capture.end), state


def new_explain_state(capture: StateCapture, zones: list[str], pageblock_order: int,
                      time_range_ns: tuple[int, int], cpus: int, *, start_index: int,
                      end_index: int | None, window_s: tuple[float, float] | None = None,
                      mobility_grouping: bool = True, no_whole_block_steal: bool = False,
                      comm_by_pid: dict[int, str] | None = None, symbols=None,
                      buckets: int = DEFAULT_BUCKETS) -> ExplainState:
    """An ExplainState for events whose time range (the start index's timestamp, the last)
    and CPU count are known; feed it with update() or update_arrays()."""
    window = None
    if window_s is not None:
        w0 = int(round(window_s[0] * 1e9))
        w1 = int(round(window_s[1] * 1e9)) if np.isfinite(window_s[1]) else 1 << 62
        window = (w0, w1)
    state = ExplainState(capture.start_pb_mt, capture.pg_zone, zones, pageblock_order,
                         start_index=start_index, end_index=end_index,
                         time_range_ns=time_range_ns, window_ns=window, cpus=cpus,
                         mobility_grouping=mobility_grouping,
                         no_whole_block_steal=no_whole_block_steal, buckets=buckets,
                         comm_by_pid=comm_by_pid)
    state.symbols = symbols
    return state
