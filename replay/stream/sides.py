"""Each side's event metrics while a trace streams by: what build() reads of a side's frame.

ObservedSide sees the trace's rows in trace order (from the plan pass) from the replay's start
(report/build.py's events_frame: rows from the start index, inside the --time window) and its
pcp rates in the engine pass; SimulatedSide is a simulate_pass sink that sees the model's events
as they are made and writes them to a spool for the explain pass. Both give a SideEvents.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replay.engine.policy import Emitter
from replay.metrics.caller_counts import CallerCounts
from replay.metrics.incremental import EventMetrics
from replay.report.build import SideEvents
from replay.stream.chunks import Chunk
from replay.stream.slots import PfnSlots
from replay.stream.spool import Spool
from replay.trace.schema import (
    EV_ALLOC,
    EV_EXTFRAG,
    EV_PCPU_DRAIN,
    EV_ZONE_LOCKED,
    EVENTS_SCHEMA,
)


def window_ns(window: tuple[float, float] | None) -> tuple[int, int] | None:
    """events_frame's --time bounds in ns (both ends inclusive)."""
    if window is None:
        return None
    return int(round(window[0] * 1e9)), int(round(window[1] * 1e9))


def in_window(ts: np.ndarray, w: tuple[int, int] | None) -> np.ndarray | None:
    if w is None:
        return None
    return (ts >= w[0]) & (ts <= w[1])


def _take(cols: dict[str, np.ndarray], keep: np.ndarray | None) -> dict[str, np.ndarray]:
    if keep is None or keep.all():
        return cols
    return {k: v[keep] for k, v in cols.items()}


class Rates:
    """pcp_rates over fixed edges (the observed sample times), summed batch by batch."""

    def __init__(self, edges_s: list[float]) -> None:
        self.edges_s = list(edges_s)
        self.edges = (np.asarray(edges_s) * 1e9).astype(np.int64) if len(edges_s) >= 2 \
            else None
        n = max(len(edges_s) - 1, 0)
        self.refill = np.zeros(n, np.int64)
        self.drained = np.zeros(n, np.float64)

    def add(self, ev: np.ndarray, refill: np.ndarray, order: np.ndarray, ts: np.ndarray) -> None:
        if self.edges is None:
            return
        r = ts[(ev == EV_ZONE_LOCKED) & (refill == 1)]
        self.refill += np.histogram(r, bins=self.edges)[0]
        d = ev == EV_PCPU_DRAIN
        if d.any():
            pages = (1 << np.maximum(order[d], 0)).astype(np.int64)
            self.drained += np.histogram(ts[d], bins=self.edges, weights=pages)[0]

    def result(self, edges_s: list[float]) -> dict:
        if len(edges_s) < 2:
            return {"t_s": [], "refill_blocks": [], "drained_pages": []}
        if list(edges_s) != self.edges_s:
            raise RuntimeError("pcp rates were summed over other sample times")
        return {"t_s": np.round(self.edges[1:] / 1e9, 6).tolist(),
                "refill_blocks": self.refill.tolist(),
                "drained_pages": self.drained.astype(np.int64).tolist()}


class ObservedSide:
    """The observed side (see the module docstring). `per_process=False` for commands that
    print counts only."""

    def __init__(self, window: tuple[float, float] | None = None,
                 per_process: bool = True) -> None:
        self.w = window_ns(window)
        self.per_process = per_process
        self.from_zero: EventMetrics | None = EventMetrics(per_process)
        self.from_start: EventMetrics | None = None
        self.start: int | None = None
        self._comp: list[tuple[int, pa.Table]] = []
        self.callers_zero: CallerCounts | None = CallerCounts()  # as from_zero, from_start
        self.callers_start: CallerCounts | None = None
        self.rates: Rates | None = None

    # -- the plan pass ---------------------------------------------------------------------

    def on_compaction(self, table: pa.Table, rows: np.ndarray) -> None:
        """The compaction events as read (rare), kept for the compaction section."""
        self._comp.append((int(rows[0]), table.append_column("_row", pa.array(rows))))

    def observe(self, rows: dict[str, np.ndarray], slot: np.ndarray, row0: int,
                start: int) -> None:
        """Rows [row0, row0 + n) in trace order; `start` the replay's start index once known
        (-1 before)."""
        keep = in_window(rows["ts"], self.w)
        if start < 0:  # the start marker may still come: count from row 0 meanwhile
            taken = _take(rows, keep)
            self.from_zero.feed(taken, slot if keep is None else slot[keep])
            self.callers_zero.feed(taken)
            return
        if self.from_start is None:
            self.start = start
            self.from_start = EventMetrics(self.per_process)
            self.from_zero = None
            self.callers_start, self.callers_zero = CallerCounts(), None
        lo = max(start - row0, 0)
        if lo >= len(slot):
            return
        sel = keep.copy() if keep is not None else np.ones(len(slot), bool)
        sel[:lo] = False
        taken = _take(rows, sel)
        self.from_start.feed(taken, slot[sel])
        self.callers_start.feed(taken)

    def started(self, i_start: int) -> None:
        """The replay's start index, after the plan pass (0 when no start marker was found)."""
        if self.from_start is not None and self.start == i_start:
            return
        self.start = i_start
        self.from_start = self.from_zero
        self.from_zero = None
        self.callers_start, self.callers_zero = self.callers_zero, None

    @property
    def metrics(self) -> EventMetrics:
        return self.from_start if self.from_start is not None else self.from_zero

    @property
    def callers(self) -> CallerCounts:
        """The allocations with a call chain from the start, in the --time window."""
        return self.callers_start if self.callers_start is not None else self.callers_zero

    def compaction_frame(self):
        """The compaction events from the start, in the --time window (as events_frame)."""
        from replay.report.build import events_frame

        parts = [t for _, t in self._comp]
        if not parts:
            return events_frame(EVENTS_SCHEMA.empty_table())
        t = pa.concat_tables(parts).unify_dictionaries()
        keep = pc.greater_equal(t["_row"], self.start or 0)
        if self.w is not None:
            keep = pc.and_(keep, pc.and_(pc.greater_equal(t["ts_ns"], self.w[0]),
                                         pc.less_equal(t["ts_ns"], self.w[1])))
        return events_frame(t.filter(keep).drop_columns(["_row"]))

    # -- the engine pass -------------------------------------------------------------------

    def start_rates(self, edges_s: list[float]) -> None:
        self.rates = Rates(edges_s)

    def on_chunk(self, c: Chunk) -> None:
        """Engine-order chunks: the rows from the start (by trace row) in the window."""
        if self.rates is None:
            return
        e = c.e
        sel = c.extra["row"] >= (self.start or 0)
        w = in_window(e.ts, self.w)
        if w is not None:
            sel &= w
        self.rates.add(e.ev[sel], e.refill[sel], e.order[sel], e.ts[sel])

    def side(self, comm_names: list[str], callers=None) -> SideEvents:
        m = self.metrics
        rates = self.rates
        return SideEvents(m.fallback_summary(), m.pcp_summary(), m.page_summary(),
                          m.fallback_events(),
                          (lambda edges: rates.result(edges)) if rates else
                          (lambda edges: Rates([]).result(edges)),
                          m.per_process_frame(comm_names).to_dicts() if self.per_process
                          else None,
                          m.live_pages(), self.compaction_frame(), callers)


class SimulatedSide:
    """A simulate_pass sink: the model's events into the metrics, the pcp rates and a spool
    (for the explain pass), and optionally to a Parquet writer (simulate -o)."""

    def __init__(self, n_pages: int, pageblock_order: int,
                 window: tuple[float, float] | None = None, edges_s: list[float] | None = None,
                 spool_dir: str | None = None, keep_events: bool = True,
                 at: int | None = None, writer=None) -> None:
        self.pbo = pageblock_order
        self.w = window_ns(window)
        self.metrics = EventMetrics(per_process=False)
        self.slots = PfnSlots(n_pages)
        self.rates = Rates(edges_s or [])
        self.spool = Spool(spool_dir) if keep_events else None
        self.at = at
        self.end_index: int | None = None  # emitted events before the request at `at`
        self.writer = writer
        self.n = 0
        self.ts_first: int | None = None
        self.ts_max: int | None = None
        self.cpus = 1

    def __call__(self, out: Emitter, c: Chunk, seq0: int) -> None:
        n = int(out.n[0])
        if not n:
            return
        req = out.req[:n] - c.c0
        ev = out.ev[:n].astype(np.int64)
        pfn = out.pfn[:n].astype(np.int64)
        ford = out.ford[:n].astype(np.int64)
        cols = {
            "seq": np.arange(seq0 + 1, seq0 + n + 1, dtype=np.int64), "ev": ev,
            "ts": c.e.ts[req], "pid": c.e.pid[req], "cpu": out.cpu[:n].astype(np.int64),
            "pfn": np.where(pfn < 0, -1, pfn), "order": out.order[:n].astype(np.int64),
            "mt": out.mt[:n].astype(np.int64), "refill": out.refill[:n].astype(np.int64),
            "ford": ford, "fmt": out.fmt[:n].astype(np.int64),
            "chown": out.chown[:n].astype(np.int64),
            "frag": np.where(ev == EV_EXTFRAG, (ford < self.pbo).astype(np.int64), -1),
            "failed": ((ev == EV_ALLOC) & (pfn < 0)).astype(np.int64),
            "gfp": np.where(ev == EV_ALLOC, c.e.gfp[req], -1),
            "comm": np.full(n, -1, np.int64), "row": out.req[:n].astype(np.int64),
        }
        if self.ts_first is None:
            self.ts_first = int(cols["ts"][0])
        self.ts_max = max(self.ts_max if self.ts_max is not None else cols["ts"].max(),
                          int(cols["ts"].max()))
        self.cpus = max(self.cpus, int(cols["cpu"].max()) + 1)
        if self.at is not None and self.end_index is None:
            k = int(np.searchsorted(out.req[:n], self.at))
            if k < n:
                self.end_index = seq0 + k
        keep = in_window(cols["ts"], self.w)
        sel = _take(cols, keep)
        self.metrics.feed(sel, self.slots.slots(sel["pfn"]))
        self.rates.add(sel["ev"], sel["refill"], sel["order"], sel["ts"])
        if self.spool is not None:
            self.spool.append(cols)
        if self.writer is not None:
            self.writer(out._replace(req=req), c.e, seq0)
        self.n = seq0 + n

    def finish(self) -> None:
        if self.spool is not None:
            self.spool.close_writer()
        if self.at is not None and self.end_index is None:
            self.end_index = self.n

    def side(self) -> SideEvents:
        m = self.metrics
        rates = self.rates
        return SideEvents(m.fallback_summary(), m.pcp_summary(), m.page_summary(),
                          m.fallback_events(), lambda edges: rates.result(edges))

    def traced_counts(self) -> dict[str, int]:
        return self.metrics.traced_counts()

    def close(self) -> None:
        if self.spool is not None:
            self.spool.cleanup()
