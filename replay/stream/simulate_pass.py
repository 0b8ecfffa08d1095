"""Simulate over the spool: the model's decisions for the trace's requests, chunk by chunk.

The same steps as engine/simulate.py's simulate() (machines, start state, seeds, slow-path
state, the vmstat schedule), then SimulationRun fed one chunk at a time. The events the model
emits are handed to `sinks` as they are made (each gets the Emitter of one piece, its request
indices being trace indices, the chunk it came from and the number of events emitted before
it) and are not kept.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from replay import _warmup
from replay.engine.policy import Emitter
from replay.engine.simulate import (
    Settings,
    SimulateResult,
    SimulationRun,
    VmstatEvidence,
    cpu_mapping,
    recorded_vm_settings,
    seed_pcp_pages,
    seed_pcp_tuning,
    simulation_machines,
    slow_state,
    transform_state,
)
from replay.stream.chunks import CHUNK_ROWS, Chunk, ChunkReader
from replay.stream.observe import start_state
from replay.stream.spool import SpoolEvents

Sink = Callable[[Emitter, Chunk, int], None]


def vmstat_evidence(trace, i_start: int, decay: bool) -> VmstatEvidence:
    plan = trace.plan
    if i_start >= plan.n:
        return VmstatEvidence(0, 0, np.zeros(0, np.int64), np.zeros(0, np.int64), True)
    runs = plan.vmstat_runs if decay else np.zeros((0, 3), np.int64)
    return VmstatEvidence(plan.ts_start, plan.ts_last, runs[:, 1], runs[:, 2])


def simulate_stream(trace, settings: Settings | None = None, points=None,
                    sampler_factory=None, sinks: tuple[Sink, ...] = (),
                    chunk_rows: int = CHUNK_ROWS, progress=None) -> SimulateResult:
    """simulate() of a streamed trace (replay.stream.trace.StreamedTrace); the result's
    `events` and `emitted` are None (the sinks saw them)."""
    settings = settings or Settings()
    plan = trace.plan
    bundle = trace.bundle
    choice, base, sim_machine, init_machine = simulation_machines(trace, bundle, settings,
                                                                  trace.machine_desc)
    start = start_state(trace, init_machine, choice.trace, cpus=sim_machine.cpus)
    st = transform_state(start.state, base, sim_machine)
    cpu_map = cpu_mapping(sim_machine, plan.cpus)[0]
    i_start = start.i_start
    if i_start > 0:  # a snapshot start: its pcp lists are learnt from the trace
        seed_pcp_pages(st, plan.seeds, cpu_map)
        zoneinfo = bundle.start.zoneinfo if bundle is not None else None
        seed_pcp_tuning(st, None, i_start, cpu_map, sim_machine, zoneinfo, choice.trace,
                        refills=plan.first_refills)
    sampler = sampler_factory(sim_machine, SpoolEvents(trace.spool)) if sampler_factory \
        else None
    vm = vmstat_evidence(trace, i_start, bool(choice.trace.vmstat_decay))
    recorded = recorded_vm_settings(bundle)
    sp = slow_state(st, sim_machine, recorded, bundle)._replace(kswapd_runs=plan.kswapd_runs)
    defrag = settings.get("thp_defrag")
    rewrite = defrag is not None and defrag != recorded["thp_defrag"]
    cm = plan.compact_memory if plan.i_start == i_start else np.zeros(0, np.int64)
    run = SimulationRun(st, sim_machine, settings, i_start, plan.cpus, vm, sp, cm)
    run.before_slow_tier = _warmup.wait_full  # the helper may be compiling the slow path
    pts = [int(p) for p in points] if points is not None else [plan.n]
    if sampler is not None:
        sampler(st, i_start)
    last = max(pts + [i_start])
    reader = ChunkReader(trace.spool, i_start, chunk_rows)
    i, emitted = i_start, 0
    try:
        while i < last:
            c = reader.get(i)
            j1 = min(last, c.c1)
            gfp = c.e.gfp
            if rewrite:
                from replay.engine.thp import thp_defrag_gfp

                gfp = thp_defrag_gfp(c.e.gfp, c.e.order, recorded["thp_defrag"], str(defrag))
            out = run.feed(c.e, c.c0, c.disp, gfp, j1, pts, sampler, (j1 - i) * 3)
            for sink in sinks:
                sink(out, c, emitted)
            emitted += int(out.n[0])
            if progress is not None:
                progress(j1 - i)
            i = j1
    finally:
        reader.close()
    return SimulateResult(sim_machine, settings, st, run.result(), None, None, emitted,
                          sampler.samples if sampler else None, i_start, choice, sp, recorded,
                          SpoolEvents(trace.spool).ts)
