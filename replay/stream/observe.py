"""Reconstruct over the spool: the kernel's real state, followed chunk by chunk.

The same steps as engine/reconstruct.py's reconstruct() (start state, follow, the /proc
checks, agreement), with a Follower that reads events a chunk at a time and adds each chunk's
agreement as it leaves it.
"""

from __future__ import annotations

import numpy as np

from replay.engine.compaction import new_compaction_tables
from replay.engine.follow import (
    COUNTER_NAMES,
    D_CLAIM_FIRST,
    D_DIRECT_IRQ,
    D_DIRECT_LOOKAHEAD,
    D_DIRECT_ORDER,
    D_DIRECT_UNEXPLAINED,
    N_COUNTERS,
    FollowLoop,
)
from replay.engine.follow_compaction import KCOUNTER_NAMES, N_KCOUNTERS
from replay.engine.initial import initial_state_boot, initial_state_from_snapshot
from replay.engine.machine import Machine
from replay.engine.profile import KernelProfile
from replay.engine.reconstruct import (
    AgreementCounts,
    ReconstructResult,
    SampledFollower,
    Start,
    follow_and_check,
)
from replay.engine.state import CFG_LOSSY
from replay.stream.chunks import CHUNK_ROWS, Chunk, ChunkReader
from replay.stream.plan import START_MARK

_DIRECT = (D_DIRECT_LOOKAHEAD, D_DIRECT_IRQ, D_DIRECT_ORDER, D_DIRECT_UNEXPLAINED)


def start_state(trace, machine: Machine, profile: KernelProfile,
                cpus: int | None = None) -> Start:
    """prepare_start for a streamed trace: the initial state at the start marker (or boot
    state), from the plan, the backward pass's evidence and the start window's events."""
    plan, spool, bundle = trace.plan, trace.spool, trace.bundle
    cpus = cpus or max(machine.cpus, plan.cpus)
    marks = dict(plan.marks)
    snap = bundle.start if bundle is not None else None
    kpf = snap.kpageflags() if snap is not None else None
    i_start = marks.get(START_MARK, 0)
    info: dict = {}
    if kpf is not None and START_MARK in marks:
        i_kpf_end = max(marks.get("start.kpageflags end", i_start), i_start)
        w = spool.read_many(("ev", "pfn", "order", "mt", "fmt", "ford"), i_start, i_kpf_end)
        disp = spool.read("disp", i_start, i_kpf_end)
        st, info = initial_state_from_snapshot(
            machine, kpf, snap.pagetypeinfo, w["ev"], w["pfn"], w["order"], w["mt"], w["fmt"],
            w["ford"], np.isin(disp, _DIRECT), 0, i_kpf_end - i_start, cpus,
            bool(profile.list_is_pageblock), disp == D_CLAIM_FIRST,
            evidence=trace.evidence)
        info["initial"] = "start snapshot"
    else:
        i_start = 0
        st = initial_state_boot(machine, cpus)
        info["initial"] = "boot (all memory free, every pageblock Movable)"
    return Start(st, i_start, np.zeros(0, np.int8), marks, info)


class StreamFollower(SampledFollower):
    """Follower's run() over a spool's chunks (global event indices)."""

    def __init__(self, st, reader: ChunkReader, sampler=None, points=None,
                 agreement_from: int = 0, on_chunk=None) -> None:
        self.st = st
        self.reader = reader
        self.sampler = sampler
        self.points = np.asarray(points if points is not None else [], np.int64)
        self.counters = np.zeros(N_COUNTERS, np.int64)
        self.cc, self.zc = new_compaction_tables(st.zone_param.shape[0])
        self.kc = np.zeros(N_KCOUNTERS, np.int64)
        self.heads = np.zeros(1 << 12, np.int64)
        self.nh = np.zeros(1, np.int64)
        self.carry = np.zeros(1, np.int64)
        self.follow_events = FollowLoop()  # the fast tier until compaction acts
        self.agreement = AgreementCounts()
        self.agreement_from = agreement_from
        self._chunk: Chunk | None = None
        self._per_event: tuple | None = None
        self.on_chunk = on_chunk  # sees each chunk as the follower enters it

    def _enter(self, i: int) -> Chunk:
        chunk = self.reader.get(i)
        if chunk is not self._chunk:
            self._fold()
            n = chunk.c1 - chunk.c0
            self._chunk = chunk
            self._per_event = (np.full(n, -2, np.int64), np.zeros(n, np.uint8),
                               np.zeros(n, np.uint8), np.zeros(n, np.bool_))
            if self.on_chunk is not None:
                self.on_chunk(chunk)
        return chunk

    def _fold(self) -> None:
        """Add the chunk just left to the agreement."""
        c = self._chunk
        if c is None:
            return
        pred, pred_warm, taken_warm, fallback = self._per_event
        self.agreement.add(c.e.ev, c.e.pfn, c.e.order, c.e.mt, pred, pred_warm, taken_warm,
                           fallback, self.agreement_from - c.c0)
        self._chunk = None

    def _run(self, i0: int, i1: int) -> None:
        while i0 < i1:
            c = self._enter(i0)
            j1 = min(i1, c.c1)
            e = c.e
            pred, pred_warm, taken_warm, fallback = self._per_event
            self.follow_events(self.st, e.ev, e.pfn, e.order, e.mt, e.cpu, e.refill, e.ford, e.fmt,
                               e.chown, c.disp, i0 - c.c0, j1 - c.c0, self.counters, pred,
                               pred_warm, taken_warm, fallback, e.pid, e.irq, e.gfp, e.cidx, e.cev,
                               self.cc, self.zc, self.kc, self.heads, self.nh, c.c0, self.carry)
            i0 = j1

    def finish(self):
        self._fold()
        self.reader.close()
        return self.agreement.result()


def reconstruct_stream(trace, machine: Machine, choice, sampler=None, points=None,
                       chunk_rows: int = CHUNK_ROWS, on_chunk=None,
                       extra: tuple[str, ...] = ()) -> ReconstructResult:
    """reconstruct() of a streamed trace (replay.stream.trace.StreamedTrace) under `choice`'s
    model rules on `machine` (bundle_machine's, as reconstruct() picks it). `on_chunk` sees
    every chunk from the start on, with the `extra` spool columns."""
    from replay.stream.spool import SpoolEvents

    start = start_state(trace, machine, choice.model)
    st, i_start, marks, info = start.state, start.i_start, start.marks, start.info
    if trace.stats.lost_events or trace.lost.num_rows:
        st.config[CFG_LOSSY] = 1
        info["lossy"] = "the trace lost events: free lists resynchronised on the kernel's choices"
    reader = ChunkReader(trace.spool, i_start, chunk_rows, extra)
    f = StreamFollower(st, reader, sampler, points, i_start, on_chunk)
    if sampler is not None:
        sampler(st, i_start)
    n = trace.plan.n
    checks = follow_and_check(f, machine, trace.bundle, marks, i_start, n)
    agreement = f.finish()
    counters = {name: int(f.counters[i]) for i, name in enumerate(COUNTER_NAMES)}
    compaction = {name: int(f.kc[i]) for i, name in enumerate(KCOUNTER_NAMES)}
    if trace.plan.reordered:
        info["reordered_events"] = trace.plan.reordered
    return ReconstructResult(machine, f.st, SpoolEvents(trace.spool, trace.plan.reordered),
                             counters, *checks[:4], agreement, i_start, info, checks[4],
                             compaction, choice)
