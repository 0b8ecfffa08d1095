"""A trace opened for streamed replay: read once into the spool, planned, ready to replay.

open_streamed() runs the two passes every replay needs (the plan pass while the source is
read, then the backward pass) and returns a StreamedTrace whose engine passes (observe.py,
simulate_pass.py) read the spool chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from replay.engine.machine import Machine, machine_from_description
from replay.engine.profile import KERNELS, KernelProfile, ProfileChoice, trace_profiles
from replay.engine.slow_state import ZoneArrays
from replay.errors import SettingsError
from replay.metrics.callsites import Chain
from replay.stream.lookahead import backward_pass
from replay.stream.plan import START_MARK, Plan, Planner
from replay.stream.slots import PfnSlots
from replay.stream.source import EventSource, open_events
from replay.stream.spool import Spool
from replay.trace.result import TraceStats


@dataclass
class StreamedTrace:
    source: str
    events: EventSource
    bundle: object | None
    machine_desc: Machine | None  # --machine
    kernel: str | None  # --kernel
    spool: Spool
    plan: Plan
    slots: PfnSlots
    evidence: np.ndarray | None
    machine: Machine  # the machine the plan was made for (bundle_machine's)
    reading: KernelProfile  # the rules the trace's events were read under

    @property
    def stats(self) -> TraceStats:
        return self.events.stats

    @property
    def markers(self) -> pa.Table:
        return self.events.markers()

    @property
    def lost(self) -> pa.Table:
        return self.events.lost()

    def profiles(self) -> ProfileChoice:
        return trace_profiles(self, self.bundle, self.kernel, self.machine_desc)

    def plan_chains(self) -> dict[int, Chain] | None:
        """stack_id -> call chain, where the trace has call chains."""
        return self.plan.chains.chains or None

    def close(self) -> None:
        self.spool.cleanup()
        self.events.close()


def plan_machine(stats_holder, bundle, machine: Machine | None, kernel: str | None,
                 follow: str) -> tuple[Machine, KernelProfile, ProfileChoice]:
    """The machine and the rules the trace is read under, as observe()/reconstruct() and
    simulate() choose them: the trace's own (follow='trace') or the requested kernel's."""
    from replay.engine.reconstruct import bundle_machine

    choice = trace_profiles(stats_holder, bundle, kernel, machine)
    k = choice.trace.kernel if follow == "trace" else choice.model.kernel
    arg = k if (kernel or follow != "trace") else None
    inner = trace_profiles(stats_holder, bundle, arg, machine)
    m = bundle_machine(bundle, machine, inner.model.kernel)
    if m.arch != inner.model.arch:
        m = replace(m, arch=inner.model.arch)
    return m, inner.model, inner


def open_streamed(source: str | Path, machine_desc: str | None = None,
                  kernel: str | None = None, *, follow: str = "trace",
                  observer: Callable | None = None, on_compaction: Callable | None = None,
                  spool_dir: str | None = None, progress=None,
                  prefer_binary: bool = True) -> StreamedTrace:
    """Read a trace into the spool and plan it (see the module docstring). `observer(rows,
    slots, first_row, start_index)` sees every batch of rows in trace order, as soon as final;
    `on_compaction(table, rows)` the compaction events as read."""
    from replay.trace.snapshots import open_bundle

    if kernel is not None and kernel not in KERNELS:
        raise SettingsError(f"--kernel {kernel}: choose one of {', '.join(KERNELS)}")
    events, bundle_dir = open_events(source, prefer_binary=prefer_binary)
    try:
        bundle = open_bundle(bundle_dir) if bundle_dir is not None else None
        mdesc = machine_from_description(machine_desc) if machine_desc else None
        holder = _StatsHolder(events.stats)
        machine, profile, _ = plan_machine(holder, bundle, mdesc, kernel, follow)
        kpf = bundle.start.kpageflags() if bundle is not None else None
        spool = Spool(spool_dir)
    except BaseException:
        events.close()
        raise
    try:
        planner = Planner(spool, machine.total_pfns, machine.zone_index_array(),
                          len(machine.zones), machine.pageblock_order,
                          free_batched_any_order=bool(profile.free_batched_any_order),
                          extfrag_only_takes=bool(profile.extfrag_only_takes),
                          use_start_marker=kpf is not None, markers=events.markers_log,
                          observer=observer, on_compaction=on_compaction,
                          zones=ZoneArrays.of(machine))
        for batch in events.column_batches():
            planner.push(batch)
            if progress is not None:
                progress.rows_read(batch.num_rows)
        if progress is not None:
            progress.done_reading()
        plan = planner.finish()
        from_start = plan.i_start if (kpf is not None and START_MARK in plan.marks) else None
        npb = (machine.total_pfns >> machine.pageblock_order) + 1
        evidence = backward_pass(spool, planner.slots, machine.zone_index_array(),
                                 machine.pageblock_order, npb, from_start,
                                 bool(profile.list_is_pageblock))
        plan_slots = planner.slots
    except BaseException:
        spool.cleanup()
        events.close()
        raise
    del planner
    release_freed_memory()  # the read's buffers: give them back before the replays grow
    return StreamedTrace(str(source), events, bundle, mdesc, kernel, spool, plan,
                         plan_slots, evidence, machine, profile)


def release_freed_memory() -> None:
    """Return freed heap memory to the system (glibc's malloc_trim): the reading pass frees
    hundreds of MB in pieces malloc would otherwise keep, and peak RSS counts them."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


@dataclass
class _StatsHolder:
    stats: TraceStats
