"""The plan pass: the trace's batches in, the engine-order spool out, and what the replay must
know about the whole trace before it starts.

Batches arrive in trace order. Each is put in causal order (engine/causal_stream.py) as far as
it is final, its 6.12 free_batched orders are fixed and its claims paired (as prepare_start
does over the whole trace), and it is appended to the spool. On the way the pass finds the
marker positions, where the replay starts (the start.buddyinfo marker), the first event of
every page after it (seed_initial_pcp), the vmstat_update runs, each CPU's first refills
(_seed_alloc_factor), pid -> comm (explain), and hands the rows, in trace order, to an observer
(the observed side's metrics). State kept is per page, per CPU or per marker, never per event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from replay.engine.causal_stream import CausalStream
from replay.engine.events import CE_TASK
from replay.engine.follow import D_CLAIM_FIRST, D_CLAIMED
from replay.engine.slow_state import (
    ZoneArrays,
    kswapd_node,
    merge_kswapd_runs,
    new_carry,
    reclaim_evidence,
)
from replay.engine.streamplan import (
    CLAIM_LOOKBACK,
    assign_in_order,
    claims_batch,
    compact_memory_batch,
    first_events_batch,
    first_refills_batch,
    free_batched_orders_batch,
    rehash,
    vmstat_runs_batch,
)
from replay.metrics.caller_counts import ChainBook
from replay.stream.columns import (
    ColumnBatch,
    CommTable,
    batch_columns,
    column_batch_columns,
)
from replay.stream.slots import PfnSlots
from replay.stream.spool import Spool
from replay.trace.schema import EV_ALLOC

START_MARK = "start.buddyinfo begin"
_CPU_SPAN = 1 << 16


@dataclass
class Plan:
    """What the plan pass learnt (indices are engine-order event indices)."""

    n: int = 0
    marks: dict[str, int] = field(default_factory=dict)
    i_start: int = 0
    cpus: int = 1
    ts_first: int = 0
    ts_last: int = 0
    ts_min: int | None = None
    ts_max: int | None = None
    ts_start: int = 0
    reordered: int = 0
    clock_steps_back: int = 0
    seeds: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.int64))
    vmstat_runs: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    kswapd_runs: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    compact_memory: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    first_refills: list[tuple[int, int, int, int]] = field(default_factory=list)
    pid_comm: dict[int, str] = field(default_factory=dict)
    comms: list[str] = field(default_factory=list)
    has_stack: bool = False
    n_cev: int = 0
    chains: ChainBook = field(default_factory=ChainBook)  # the call chains and gfp texts


class _FromStart:
    """The look-ups that start at the replay's start index."""

    def __init__(self, n_slots: int, n_zones: int) -> None:
        self.seen = np.zeros(n_slots, np.uint8)
        self.seeds: list[np.ndarray] = []
        self.vm_seen = np.zeros(64, np.uint8)
        self.vm_broken = np.zeros(64, np.uint8)
        self.vm: list[np.ndarray] = []
        self.ks: list[np.ndarray] = []  # reclaim runs of each piece (reclaim_evidence)
        self.drain_carry = new_carry()  # a drain run still open at the end of a piece
        self.frees = np.zeros(64, np.int64)
        self.state = np.zeros((64, max(n_zones, 1)), np.int8)
        self.nrun = np.zeros((64, max(n_zones, 1)), np.int64)
        self.frees_at = np.zeros((64, max(n_zones, 1)), np.int64)
        self.active = np.zeros(64, np.int64)
        self.cm_last = np.full(1 << 15, -1, np.int64)
        self.cm_open = np.zeros(1 << 15, np.uint8)
        self.cm: list[np.ndarray] = []

    def grow_pids(self, top: int) -> None:
        if top > len(self.cm_last):
            size = max(top, 2 * len(self.cm_last))
            self.cm_last = np.concatenate([self.cm_last,
                                           np.full(size - len(self.cm_last), -1, np.int64)])
            self.cm_open = np.concatenate([self.cm_open,
                                           np.zeros(size - len(self.cm_open), np.uint8)])

    def grow(self, n_slots: int, n_cpus: int) -> None:
        if n_slots > len(self.seen):
            self.seen = np.concatenate([self.seen, np.zeros(n_slots - len(self.seen), np.uint8)])
        if n_cpus > len(self.vm_seen):
            k = n_cpus - len(self.vm_seen)
            pad = lambda a: np.concatenate([a, np.zeros((k,) + a.shape[1:], a.dtype)])  # noqa
            self.vm_seen, self.vm_broken = pad(self.vm_seen), pad(self.vm_broken)
            self.frees, self.active = pad(self.frees), pad(self.active)
            self.state, self.nrun, self.frees_at = pad(self.state), pad(self.nrun), \
                pad(self.frees_at)

    def run(self, c: dict[str, np.ndarray], slot: np.ndarray, kworker: np.ndarray, j0: int,
            g: int, pfn_zone: np.ndarray, seeds: bool, ks_node: np.ndarray,
            zones: ZoneArrays | None) -> None:
        n = len(c["ev"])
        out = np.zeros(n, np.int64)
        if seeds:
            k = first_events_batch(c["ev"], slot, j0, self.seen, out)
            rows = out[:k]
            self.seeds.append(np.stack([rows + g, c["pfn"][rows], c["order"][rows],
                                        c["mt"][rows], c["cpu"][rows]], axis=1))
            first_refills_batch(c["ev"], c["pfn"], c["cpu"], c["refill"], c["order"], pfn_zone,
                                j0, self.frees, self.state, self.nrun, self.frees_at,
                                self.active)
        k = vmstat_runs_batch(c["ev"], c["cpu"], kworker, j0, self.vm_seen, self.vm_broken, out)
        rows = out[:k]
        self.vm.append(np.stack([rows + g, c["ts"][rows], c["cpu"][rows]], axis=1))
        if zones is not None:
            s = slice(j0, None)
            self.ks.append(reclaim_evidence(ks_node[s], c["ev"][s], c["cpu"][s], c["pfn"][s],
                                            c["order"][s], c["ts"][s], zones,
                                            self.drain_carry, False))
        self.grow_pids(int(c["pid"].max()) + 1)
        k = compact_memory_batch(c["ev"], c["pid"], c["task"], j0, self.cm_last, self.cm_open,
                                 out)
        self.cm.append(out[:k] + g)

    def close(self, zones: ZoneArrays | None) -> None:
        """The trace has ended: a drain run still open is judged too."""
        if zones is not None:
            empty = np.zeros(0, np.int64)
            self.ks.append(reclaim_evidence(empty, empty, empty, empty, empty, empty, zones,
                                            self.drain_carry, True))

    def refills(self) -> list[tuple[int, int, int, int]]:
        cs, zs = np.nonzero(self.state != 0)
        return [(int(c), int(z), int(self.nrun[c, z]), int(self.frees_at[c, z]))
                for c, z in zip(cs, zs, strict=True)]


def _concat(parts: list[tuple[dict, np.ndarray, np.ndarray]]
            ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Pieces as one (their compaction rows concatenated, cidx rebased)."""
    if len(parts) == 1:
        return parts[0]
    cols, slots, cevs = [], [], []
    off = 0
    for c, sl, cev in parts:
        c = dict(c)
        c["cidx"] = np.where(c["cidx"] >= 0, c["cidx"] + off, -1)
        off += len(cev)
        cols.append(c)
        slots.append(sl)
        cevs.append(cev)
    return ({k: np.concatenate([c[k] for c in cols]) for k in cols[0]}, np.concatenate(slots),
            np.concatenate(cevs))


def _stack(parts: list[np.ndarray], width: int) -> np.ndarray:
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts) if parts else np.zeros((0, width), np.int64)


class Planner:
    """Runs the plan pass (see the module docstring)."""

    def __init__(self, spool: Spool, n_pages: int, pfn_zone: np.ndarray, n_zones: int,
                 pageblock_order: int, *, free_batched_any_order: bool = False,
                 extfrag_only_takes: bool = False, use_start_marker: bool = True,
                 markers: list | None = None,
                 observer: Callable[[dict, np.ndarray, int, int], None] | None = None,
                 on_compaction: Callable[[pa.Table, np.ndarray], None] | None = None,
                 zones: ZoneArrays | None = None) -> None:
        self.spool = spool
        self.zones = zones  # the traced machine's zones, for the reclaim evidence
        self.slots = PfnSlots(n_pages)
        self.pfn_zone = np.asarray(pfn_zone, np.int64)
        self.pbo = pageblock_order
        self.fix_batched = free_batched_any_order
        self.pair_claims = extfrag_only_takes
        self.use_start = use_start_marker
        self.markers = markers if markers is not None else []  # (seq, text), growing
        self.observer = observer  # (rows in trace order, their slots, first row, start index)
        self.on_compaction = on_compaction  # (compaction rows as read, their trace rows)
        self.comms = CommTable()
        self.causal = CausalStream(self.slots.size)
        self.plan = Plan()
        self._pieces: list[tuple[dict, np.ndarray, np.ndarray]] = []  # pushed, not emitted
        self._buf_r0 = 0  # trace row of the first unemitted row
        self._runmax = np.iinfo(np.int64).min
        self._next_marker = 0
        self._i_start: int | None = None if use_start_marker else 0
        self._start = _FromStart(self.slots.size, n_zones)
        self._from0 = _FromStart(self.slots.size, n_zones) if use_start_marker else None
        self._fb_keys = np.full(1 << 12, -1, np.int64)
        self._fb_vals = np.zeros(1 << 12, np.int64)
        self._fb_used = np.zeros(1, np.int64)
        self._claim_tail: dict[str, np.ndarray] | None = None
        self._kworker = np.zeros(0, bool)
        self._pid_comm = np.full(1 << 16, -1, np.int64)  # comm code by pid
        self.n_rows_seen = 0

    # -- input -----------------------------------------------------------------------------

    def push(self, batch: pa.RecordBatch | pa.Table | ColumnBatch) -> None:
        if isinstance(batch, ColumnBatch):
            cols, cev = column_batch_columns(batch, self.comms)
            comp = batch.compaction
        else:
            cols, cev = batch_columns(batch, self.comms)
            comp = None
            if len(cols["stack"]) and cols["stack"].max() >= 0:
                self.plan.chains.learn(batch, cols["stack"], cols["gfp"])
        n = len(cols["ev"])
        if not n:
            return
        if self.on_compaction is not None and len(cev):
            rows = np.flatnonzero(cols["cidx"] >= 0)
            if comp is None:
                t = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
                comp = t.take(pa.array(rows))
            self.on_compaction(pa.Table.from_batches([comp]) if isinstance(
                comp, pa.RecordBatch) else comp, rows + self.n_rows_seen)
        cols["row"] = np.arange(self.n_rows_seen, self.n_rows_seen + n, dtype=np.int64)
        self.n_rows_seen += n
        slot = self.slots.slots(cols["pfn"])
        self.causal.grow_slots(self.slots.size)
        self._pieces.append((cols, slot, cev))
        rows = self.causal.push(cols["ev"], slot, cols["cpu"], cols["ts"])
        self._emit(rows)

    def finish(self) -> Plan:
        self._emit(self.causal.finish())
        self.spool.close_writer()
        p = self.plan
        p.n = self.spool.n
        p.n_cev = self.spool.n_cev
        for k in range(self._next_marker, len(self.markers)):
            self._mark(self.markers[k][1], p.n)
        p.reordered = self.causal.moved
        p.clock_steps_back = self.causal.clock_steps_back
        found = self._i_start is not None
        src = self._start if found else self._from0
        p.i_start = self._i_start if found else 0
        p.vmstat_runs = _stack(src.vm if src is not None else [], 3)
        if src is not None:
            src.close(self.zones)
        p.kswapd_runs = merge_kswapd_runs(src.ks if src is not None else [])
        cm = [a for a in (src.cm if src is not None else []) if len(a)]
        p.compact_memory = np.concatenate(cm) if cm else np.zeros(0, np.int64)
        if found and p.i_start > 0:
            p.seeds = _stack(self._start.seeds, 5)
            p.first_refills = self._start.refills()
        if p.i_start > 0:
            p.ts_start = int(self.spool.ts_at([p.i_start])[0]) if p.i_start < p.n else p.ts_last
        else:
            p.ts_start = p.ts_first
        p.comms = list(self.comms.names)
        known = np.flatnonzero(self._pid_comm >= 0)
        p.pid_comm = {int(pid): self.comms.names[c]
                      for pid, c in zip(known, self._pid_comm[known], strict=True)}
        return p

    # -- the rows now final ----------------------------------------------------------------

    def _emit(self, rows: np.ndarray) -> None:
        """Rows [a, b) of the trace are final: `rows` is their causal order."""
        if not len(rows):
            return
        a = self._buf_r0
        b = a + len(rows)
        parts = self._take(b - a)  # (cols, slot, cev) slices covering [a, b), in trace order
        if self.causal.last_identity:
            for cols, slot, cev in parts:
                self._engine_piece(cols, slot, cev)
            return
        cols, slot, cev = _concat(parts)
        local = rows - a
        self._engine_piece({k: v[local] for k, v in cols.items()}, slot[local], cev,
                           seq=(cols, slot))

    def _take(self, n: int) -> list[tuple[dict, np.ndarray, np.ndarray]]:
        """The first n unemitted rows, as slices of the pieces pushed (no copies)."""
        out = []
        while n:
            cols, slot, cev = self._pieces[0]
            k = len(slot)
            if k <= n:
                out.append(self._pieces.pop(0))
                n -= k
                continue
            out.append(({c: v[:n] for c, v in cols.items()}, slot[:n], cev))
            self._pieces[0] = ({c: v[n:] for c, v in cols.items()}, slot[n:], cev)
            n = 0
        self._buf_r0 += sum(len(p[1]) for p in out)
        return out

    def _engine_piece(self, cols: dict[str, np.ndarray], slot: np.ndarray, cev: np.ndarray,
                      seq: tuple[dict, np.ndarray] | None = None) -> None:
        """Plan, spool and observe rows in engine order (`cols`); `seq` the same rows in trace
        order when the two differ."""
        g = self.spool.n
        eng = dict(cols)
        ci = eng["cidx"]
        has = ci >= 0
        chunk_cev = np.zeros((0, 17), np.int64)
        task = np.full(len(slot), -1, np.int64)
        if has.any():
            chunk_cev = cev[ci[has]]
            eng["cidx"] = np.where(has, np.cumsum(has) - 1 + self.spool.n_cev, -1)
            task[has] = chunk_cev[:, CE_TASK]
        eng["task"] = task
        self._engine_chunk(eng, slot, g)
        self.spool.append(eng, chunk_cev)
        if self.observer is not None:
            rows, rslot = seq if seq is not None else (cols, slot)
            self.observer(rows, rslot, int(rows["row"][0]),
                          self._i_start if self._i_start is not None else -1)

    def _engine_chunk(self, c: dict[str, np.ndarray], slot: np.ndarray, g: int) -> None:
        p = self.plan
        n = len(c["ev"])
        if g == 0:
            p.ts_first = int(c["ts"][0])
        p.ts_last = int(c["ts"][-1])
        lo, hi = int(c["ts"].min()), int(c["ts"].max())
        p.ts_min = lo if p.ts_min is None else min(p.ts_min, lo)
        p.ts_max = hi if p.ts_max is None else max(p.ts_max, hi)
        p.cpus = max(p.cpus, int(c["cpu"].max()) + 1)
        p.has_stack = p.has_stack or bool((c["stack"] >= 0).any())
        self._markers_in(c["seq"], g)
        if self.fix_batched:
            self._free_batched(c, slot)
        if self.pair_claims:
            self._claims(c, g)
        else:
            c["claim"] = np.zeros(n, np.int8)
        kw = self.comms.starting_with("kworker/")
        kworker = np.zeros(n, bool)
        ks_node = np.full(n, -1, np.int64)
        if len(kw):
            cm = c["comm"]
            kworker = (cm >= 0) & kw[np.maximum(cm, 0)]
            node_of = np.array([kswapd_node(name) for name in self.comms.names], np.int64)
            ks_node = np.where(cm >= 0, node_of[np.maximum(cm, 0)], -1)
        cpus = int(c["cpu"].max()) + 1
        for fs in (self._start, self._from0):
            if fs is not None:
                fs.grow(self.slots.size, cpus)
        if self._from0 is not None and self._i_start is None:
            self._from0.run(c, slot, kworker, 0, g, self.pfn_zone, False, ks_node, self.zones)
        if self._i_start is not None and self._i_start < g + n:
            j0 = max(self._i_start - g, 0)
            self._start.run(c, slot, kworker, j0, g, self.pfn_zone, self._i_start > 0, ks_node,
                            self.zones)
            if self._from0 is not None:
                self._from0 = None  # the start was found: the fallback is not needed
        self._learn_comms(c)

    def _markers_in(self, seq: np.ndarray, g: int) -> None:
        """Positions of markers whose seq the running maximum of seq reaches in this chunk."""
        runmax = np.maximum.accumulate(np.maximum(seq, self._runmax))
        self._runmax = int(runmax[-1])
        while self._next_marker < len(self.markers):
            mseq, text = self.markers[self._next_marker]
            if mseq > self._runmax:
                break
            self._mark(text, g + int(np.searchsorted(runmax, mseq)))
            self._next_marker += 1

    def _mark(self, text: str, index: int) -> None:
        text = (text or "").strip()
        if not text.startswith("kcapture: "):
            return
        key = text[len("kcapture: "):]
        if key in self.plan.marks:
            return
        self.plan.marks[key] = index
        if key == START_MARK and self.use_start and self._i_start is None:
            self._i_start = index

    def _free_batched(self, c: dict[str, np.ndarray], slot: np.ndarray) -> None:
        c["order"] = c["order"].copy()  # the trace's own orders stay as read (observer)
        j = 0
        n = len(c["ev"])
        while True:
            j = free_batched_orders_batch(c["ev"], slot, c["order"], c["cpu"], j, self._fb_keys,
                                          self._fb_vals, self._fb_used, _CPU_SPAN)
            if j >= n:
                return
            keys = np.full(2 * len(self._fb_keys), -1, np.int64)
            vals = np.zeros(len(keys), np.int64)
            rehash(self._fb_keys, self._fb_vals, keys, vals)
            self._fb_keys, self._fb_vals = keys, vals

    def _claims(self, c: dict[str, np.ndarray], g: int) -> None:
        n = len(c["ev"])
        names = ("ev", "pfn", "cpu", "ford", "chown")
        tail = self._claim_tail
        t = len(tail["ev"]) if tail is not None else 0
        cat = {k: np.concatenate([tail[k], c[k]]) if tail is not None else c[k] for k in names}
        out = np.zeros((max(int(np.count_nonzero(c["ev"] == 5)), 1), 2), np.int64)
        k = claims_batch(cat["ev"], cat["pfn"], cat["cpu"], cat["ford"], cat["chown"], self.pbo,
                         t, g - t, out)
        claim = np.zeros(n, np.int8)
        for i, j in out[:k]:
            claim[j - t] = D_CLAIMED
            if i >= t:
                claim[i - t] = D_CLAIM_FIRST
            else:  # in the chunk before, already in the spool
                self.spool.write_at("claim", g - t + int(i), np.array([D_CLAIM_FIRST], np.int8))
        c["claim"] = claim
        keep = CLAIM_LOOKBACK - 1
        self._claim_tail = {k: v[-keep:] for k, v in cat.items()}

    def _learn_comms(self, c: dict[str, np.ndarray]) -> None:
        """pid -> the comm of its last mm_page_alloc (ExplainState.pid_comm)."""
        sel = (c["ev"] == EV_ALLOC) & (c["comm"] >= 0) & (c["pid"] >= 0)
        if not sel.any():
            return
        pid = c["pid"][sel]
        top = int(pid.max()) + 1
        if top > len(self._pid_comm):
            grown = np.full(max(top, 2 * len(self._pid_comm)), -1, np.int64)
            grown[: len(self._pid_comm)] = self._pid_comm
            self._pid_comm = grown
        assign_in_order(self._pid_comm, pid, c["comm"][sel])
