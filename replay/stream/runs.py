"""The streamed commands' work: observe, simulate and explain over one read of the trace.

Each function here gives what its in-memory counterpart in replay/pipeline.py gives (the same
sample points, captures, kernel rules and numbers), with memory bounded by the machine and the
report's resolution: the trace is read once into the spool (trace.py), the observed side's
metrics are summed on the way (sides.py), then the observed and simulated replays run over the
spool's chunks, on two threads when both are wanted, and the simulated events go to the
metrics and to a spool of their own for the explain pass.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from replay import _warmup
from replay.engine.reconstruct import ReconstructResult, bundle_machine
from replay.engine.sampling import Sampler, sample_points
from replay.engine.simulate import Settings, SimulateResult
from replay.errors import InputError
from replay.metrics.explain import StateCapture, WithCapture, new_explain_state
from replay.report.build import TraceFacts
from replay.stream.chunks import CHUNK_ROWS
from replay.stream.observe import reconstruct_stream
from replay.stream.sides import ObservedSide, SimulatedSide
from replay.stream.simulate_pass import simulate_stream
from replay.stream.spool import SpoolEvents
from replay.stream.trace import StreamedTrace, open_streamed, plan_machine
from replay.trace.result import TraceData

EXPLAIN_ROWS = 1 << 20  # explain_events' chunk: it learns keys from its first chunk's every row
_EXPLAIN_COLUMNS = ("ev", "ts", "pfn", "order", "mt", "cpu", "pid", "ford", "fmt", "chown",
                    "gfp")


@dataclass
class RunView:
    """What the report builders read of a run (pipeline.Loaded's fields they use)."""

    source: str
    data: TraceData
    bundle: object | None
    machine: object | None
    kernel: str | None = None
    symbols: object | None = None


def run_view(tr: StreamedTrace, symbols=None) -> RunView:
    from replay.trace.schema import EVENTS_SCHEMA

    data = TraceData(EVENTS_SCHEMA.empty_table(), tr.markers, tr.lost, tr.stats)
    return RunView(tr.source, data, tr.bundle, tr.machine_desc, tr.kernel, symbols)


def stream_points(tr: StreamedTrace, every_events: int | None,
                  every_ms: float | None) -> np.ndarray:
    """pipeline._points: sample points plus the end.buddyinfo marker."""
    n = tr.plan.n
    if every_ms and n:  # sample_points' time grid, searched in the spool's ts
        t0, t1 = (int(x) for x in tr.spool.ts_at([0, n - 1]))
        grid = np.arange(t0, t1, int(every_ms * 1e6))[1:]
        pts = tr.spool.searchsorted_ts(grid)
        if len(pts) > 400:
            pts = pts[np.linspace(0, len(pts) - 1, 400).astype(int)]
        pts = np.unique(np.append(pts, n)).astype(np.int64)
    else:
        pts = sample_points(SpoolEvents(tr.spool), 0, every_events, None)
    mark = tr.plan.marks.get("end.buddyinfo begin")
    if mark is not None:
        pts = np.unique(np.append(pts, mark))
    return pts


def explain_end(tr: StreamedTrace, window: tuple[float, float] | None) -> int:
    """pipeline.explain_end_index."""
    if window is not None and np.isfinite(window[1]):
        return int(tr.spool.searchsorted_ts(np.array([int(round(window[1] * 1e9))]))[0])
    return tr.plan.marks.get("end.buddyinfo begin", tr.plan.n)


def sample_edges(tr: StreamedTrace, i_start: int, points: np.ndarray,
                 window: tuple[float, float] | None) -> list[float]:
    """The observed timeseries' t_s (report/build.py timeseries) for samples at i_start and
    at `points` after it: the times pcp rates are counted between."""
    idx = [i_start] + [int(p) for p in points if p > i_start]
    n = tr.plan.n
    if not n:
        return []
    t = tr.spool.ts_at(np.minimum(np.asarray(idx, np.int64), n - 1)) / 1e9
    keep = np.ones(len(t), bool)
    if window is not None:
        keep = (t >= window[0]) & (t <= window[1])
    return np.round(t[keep], 6).tolist()


def facts(tr: StreamedTrace) -> TraceFacts:
    plan = tr.plan
    return TraceFacts(plan.ts_min, plan.ts_max, plan.marks.get("end.buddyinfo begin"),
                      lambda t: int(tr.spool.searchsorted_ts(np.array([t]))[0]))


@dataclass
class Observed:
    recon: ReconstructResult
    samples: object | None
    explain: dict | None = None
    explain_state: object | None = None


@dataclass
class Simulated:
    sim: SimulateResult
    side: SimulatedSide
    explain: dict | None = None


@dataclass
class StreamJob:
    """One trace, read once, replayed as a command needs (see the module docstring)."""

    source: str | Path
    machine: str | None = None
    kernel: str | None = None
    follow: str = "trace"
    window: tuple[float, float] | None = None
    every_events: int | None = None
    every_ms: float | None = None
    per_process: bool = True
    chunk_rows: int = CHUNK_ROWS
    spool_dir: str | None = None
    progress: object | None = None
    prefer_binary: bool = True
    trace: StreamedTrace | None = None
    obs_side: ObservedSide | None = None
    points: np.ndarray | None = None
    edges: list[float] = field(default_factory=list)

    def symbols(self, path: str | Path | None = None):
        """pipeline.load_symbols for this trace: `path`, else the bundle's kallsyms."""
        from replay.pipeline import symbols_for

        tr = self.trace
        near = getattr(tr.bundle, "path", None) or (Path(tr.source).parent
                                                    if Path(tr.source).is_file() else None)
        return symbols_for(path, near, tr.plan.has_stack, tr.stats.kernel_reloc)

    def _bar(self, name: str, total: int):
        return self.progress.replay(name, total) if self.progress is not None else None

    def open(self) -> StreamedTrace:
        self.obs_side = ObservedSide(self.window, self.per_process)
        self.trace = open_streamed(self.source, self.machine, self.kernel, follow=self.follow,
                                   observer=self.obs_side.observe,
                                   on_compaction=self.obs_side.on_compaction,
                                   spool_dir=self.spool_dir,
                                   progress=self.progress, prefer_binary=self.prefer_binary)
        empty = self.trace.stats.nothing_read()
        if empty:  # as ingest and info say it: exit 2, not an empty report
            self.close()
            raise InputError(empty)
        self.obs_side.started(self.trace.plan.i_start)
        return self.trace

    def close(self) -> None:
        if self.trace is not None:
            self.trace.close()

    def __enter__(self) -> StreamJob:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what the replays share ------------------------------------------------------------

    def capture(self) -> StateCapture:
        """pipeline.explain_capture."""
        tr = self.trace
        m = bundle_machine(tr.bundle, tr.machine_desc)
        return StateCapture(explain_end(tr, self.window), m.pageblock_order)

    def sample_points(self) -> np.ndarray:
        if self.points is None:
            self.points = stream_points(self.trace, self.every_events, self.every_ms)
            self.edges = sample_edges(self.trace, self.trace.plan.i_start, self.points,
                                      self.window)
        return self.points

    # -- observe ---------------------------------------------------------------------------

    def observe(self, samples: bool = True, capture: StateCapture | None = None,
                explain: bool = False, symbols=None) -> Observed:
        """pipeline.observe (and explain_observed when `explain`)."""
        tr = self.trace
        m, _, choice = plan_machine(tr, tr.bundle, tr.machine_desc, tr.kernel, self.follow)
        if choice.what_if:
            choice.warnings.append(f"reconstruct follows {choice.model.name}'s rules on a "
                                   f"trace from {choice.release} ({choice.trace.name})")
        sampler = Sampler(m, SpoolEvents(tr.spool)) if samples else None
        points = self.sample_points() if samples else None
        call, all_points = sampler, points
        if capture is not None:
            own = list(points) if points is not None else []
            extra = [capture.at] if capture.at is not None else []
            call = WithCapture(sampler, points, capture)
            all_points = np.unique(np.asarray(own + extra, np.int64))
        if samples and self.obs_side is not None:
            self.obs_side.start_rates(self.edges)
        state_box: list = []
        extra_cols = ("row", "comm") + (("stack",) if tr.plan.has_stack else ()) \
            if (samples or explain) else ()

        advance = self._bar("observed", tr.plan.n - tr.plan.i_start)

        def on_chunk(c) -> None:
            if advance is not None:
                advance(c.c1 - max(c.c0, tr.plan.i_start))
            if self.obs_side is not None and samples:
                self.obs_side.on_chunk(c)
            if explain and capture is not None:
                cols = {**c.e.__dict__, **c.extra}
                if not state_box:
                    k0 = c.c0 // EXPLAIN_ROWS * EXPLAIN_ROWS
                    state_box.append(self._explain_state(capture, m, symbols, k0))
                    if k0 < c.c0:  # explain_events' first chunk holds rows before the start
                        head = tr.spool.read_many(_EXPLAIN_COLUMNS + extra_cols, k0, c.c0)
                        cols = {k: np.concatenate([head[k], cols[k]]) for k in head}
                state_box[0].update_arrays(cols, tr.plan.comms, tr.plan_chains())

        recon = reconstruct_stream(tr, m, choice, call, all_points, self.chunk_rows,
                                   on_chunk, extra_cols)
        out = Observed(recon, sampler.samples if sampler else None)
        if explain and capture is not None:
            if not state_box:  # nothing after the start
                state_box.append(self._explain_state(capture, m, symbols, tr.plan.n))
            out.explain_state = state_box[0]
            out.explain = state_box[0].finish(capture.end)
        return out

    def _explain_state(self, capture: StateCapture, m, symbols, next_index: int):
        plan = self.trace.plan
        start = capture.start_index or 0
        lo = int(self.trace.spool.ts_at([min(start, plan.n - 1)])[0]) if plan.n else 0
        hi = plan.ts_max or 0
        state = new_explain_state(capture, [z.key for z in m.zones], m.pageblock_order,
                                  (lo, hi), plan.cpus, start_index=start,
                                  end_index=capture.at, window_s=self.window,
                                  mobility_grouping=m.mobility_grouping, symbols=symbols)
        state.next_index = next_index
        return state

    # -- simulate --------------------------------------------------------------------------

    def simulate(self, settings: Settings | None = None, samples: bool = True,
                 capture: StateCapture | None = None, explain: bool = False,
                 symbols=None, writer=None) -> Simulated:
        """pipeline.simulate_run (and explain_simulated when `explain`)."""
        tr = self.trace
        if tr.kernel is not None and (settings is None or settings.get("kernel") is None):
            settings = Settings({**(settings.values if settings else {}), "kernel": tr.kernel})
        settings = settings or Settings()
        n = tr.plan.n
        points = self.sample_points() if samples else None
        factory = Sampler if samples else None
        if capture is not None:
            own = points if factory is not None else None
            base = list(points) if points is not None else []
            extra = [capture.at] if capture.at is not None else []
            points = np.unique(np.append(np.asarray(base + extra, np.int64), n))

            def factory(machine, ev, _inner=factory):  # noqa: F811 - the capture rides along
                capture.pbo = machine.pageblock_order
                return WithCapture(_inner(machine, ev) if _inner else None, own, capture)
        from replay.engine.simulate import simulation_machines

        _, _, sim_machine, _ = simulation_machines(tr, tr.bundle, settings, tr.machine_desc)
        side = SimulatedSide(sim_machine.total_pfns, sim_machine.pageblock_order, self.window,
                             self.edges if samples else [], self.spool_dir, explain,
                             capture.at if capture is not None else None, writer)
        sim = simulate_stream(tr, settings, points, factory, (side,), self.chunk_rows,
                              self._bar("simulated", n - tr.plan.i_start))
        side.finish()
        out = Simulated(sim, side)
        if explain and capture is not None:
            out.explain = self._explain_simulated(out, capture, symbols)
        return out

    def _explain_simulated(self, s: Simulated, capture: StateCapture, symbols) -> dict:
        sim, side = s.sim, s.side
        m = sim.machine
        lo = side.ts_first if side.ts_first is not None else 0
        state = new_explain_state(
            capture, [z.key for z in m.zones], m.pageblock_order, (lo, side.ts_max or 0),
            side.cpus, start_index=0, end_index=side.end_index, window_s=self.window,
            mobility_grouping=m.mobility_grouping,
            no_whole_block_steal=sim.settings.get("fallback_policy") == "no-whole-block-steal",
            comm_by_pid=self.trace.plan.pid_comm, symbols=symbols)
        spool = side.spool
        names = ("ev", "ts", "pfn", "order", "mt", "cpu", "pid", "ford", "fmt", "chown",
                 "gfp", "comm")
        for a in range(0, spool.n, self.chunk_rows):
            state.update_arrays(spool.read_many(names, a, a + self.chunk_rows), [])
        tables = state.finish(capture.end)
        side.close()
        return tables


def both(job: StreamJob, settings: Settings, samples: bool, explain: bool, symbols=None,
         writer=None, threads: bool = True) -> tuple[Observed, Simulated]:
    """Observe and simulate over the same spool, on two threads (numba releases the GIL)."""
    _warmup.start()  # a cold cache: simulate's engine compiles in a helper process
    obs_capture = job.capture() if explain else None
    sim_capture = job.capture() if explain else None
    job.sample_points() if samples else None
    box: dict = {}

    def run_sim() -> None:
        try:
            _warmup.wait()
            box["sim"] = job.simulate(settings, samples, sim_capture, explain, symbols, writer)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    if threads:
        t = threading.Thread(target=run_sim, name="simulate", daemon=True)
        t.start()
        obs = job.observe(samples, obs_capture, explain, symbols)
        t.join()
    else:
        obs = job.observe(samples, obs_capture, explain, symbols)
        run_sim()
    if "error" in box:
        raise box["error"]
    return obs, box["sim"]


def report(job: StreamJob, settings: Settings, compare: bool, symbols=None,
           threads: bool = True) -> tuple[dict, object]:
    """report_cmd's dict (report/build.py build) of a streamed trace: the observed side, the
    simulated one when `compare`, the explain tables of each; and the kernel rules used (the
    model's when simulated)."""
    from replay.report.build import assemble, streamed_callers_section

    tr = job.trace
    if compare:
        obs, simd = both(job, settings, True, True, threads=threads)
    else:
        obs = job.observe(True, job.capture(), True)
        simd = None
    explain = {"observed": obs.explain}
    if simd is not None:
        explain["simulated"] = simd.explain
    view = run_view(tr, symbols)
    callers = None
    if tr.plan.has_stack and hasattr(tr.events, "data"):
        callers = _callers(tr, job.window)
    elif tr.plan.has_stack:  # text read block by block: the allocations counted on the way
        callers = partial(streamed_callers_section, job.obs_side.callers, tr.plan.chains)
    d = assemble(view, obs.recon, obs.samples,
                 job.obs_side.side(tr.plan.comms, callers), facts(tr),
                 simd.sim if simd else None, simd.side.side() if simd else None,
                 settings.as_dict(), job.window, "compare" if compare else "report", explain)
    return d, (simd.sim.profile if simd is not None else obs.recon.profile)


def _callers(tr: StreamedTrace, window):
    """callers_section over an in-memory source's table (perf.data, read whole)."""
    from replay.report.build import callers_section, events_frame

    df = events_frame(tr.events.data.events, window, tr.plan.i_start)
    return lambda symbols: callers_section(df, symbols)
