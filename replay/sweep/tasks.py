"""What runs on a Dask worker: ingest a trace, observe it, simulate one settings point.

Each returns a small dict (numbers only), so nothing big crosses the network. A worker keeps
the last traces it loaded, so the points of one trace that land on the same worker read its
Parquet once.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from pathlib import Path

from replay.errors import PageReplayError
from replay.pipeline import Loaded

_LOADED: OrderedDict[tuple, Loaded] = OrderedDict()
_STARTS: dict = {}  # the last trace's initial state, shared by its settings points
KEEP_LOADED = 2


def loaded(source: str, events: str, machine: str | None) -> Loaded:
    """The trace from the worker's memo, or read from its ingested copy."""
    from replay.sweep.cache import load_ingested

    key = (source, events, machine)
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    run = load_ingested(source, Path(events), machine)
    _LOADED[key] = run
    while len(_LOADED) > KEEP_LOADED:
        _LOADED.popitem(last=False)
    return run


def worker_name() -> str:
    """The Dask worker's address, or 'local' outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def ingest_task(source: str, cache_dir: str, threads: int = 2) -> str:
    """Ingest a source into the cache (once); returns the events.parquet path."""
    from replay.sweep.cache import ensure_ingested

    return str(ensure_ingested(source, Path(cache_dir), threads))


def _input_errors(task):
    """A PageReplayError (bad settings for this point, unusable input) comes back as
    {"error": ...} instead of a Dask task error, so the worker's log keeps to real faults."""

    @functools.wraps(task)
    def run(*args, **kwargs) -> dict:
        try:
            return task(*args, **kwargs)
        except PageReplayError as exc:
            return {"error": f"{type(exc).__name__}: {exc}", "worker": worker_name()}

    return run


@_input_errors
def observe_task(source: str, events: str, machine: str | None,
                 orders: tuple[int, ...] = ()) -> dict:
    """The observed side of a trace (once per trace, whatever the settings): its metrics, as
    `report` computes them, and the model's agreement with the kernel."""
    from replay.ci.metrics import REFERENCE_ORDERS, report_metrics
    from replay.pipeline import observe
    from replay.report.build import build

    t0 = time.perf_counter()
    run = loaded(source, events, machine)
    recon, samples = observe(run)
    d = build(run, recon, samples, None, {}, None, "report")
    m = report_metrics(d, "observed", (*REFERENCE_ORDERS, *orders))
    return {"metrics": m.values, "events": run.data.events.num_rows,
            "pageblock_order": d["machine"]["pageblock_order"],
            "seconds": time.perf_counter() - t0, "worker": worker_name()}


@_input_errors
def point_task(source: str, events: str, machine: str | None, items: list[str],
               orders: tuple[int, ...] = ()) -> dict:
    """Simulate one settings point; the simulated side's metrics as `compare` computes them."""
    from replay.ci.metrics import REFERENCE_ORDERS, side_scalars
    from replay.engine.events import marker_positions
    from replay.engine.simulate import Settings
    from replay.pipeline import simulate_run
    from replay.report.build import events_frame, frame_side, samples_free_blocks, side_metrics

    t0 = time.perf_counter()
    run = loaded(source, events, machine)
    seq = run.data.events.column("seq").to_numpy()
    end_idx = marker_positions(run.data, seq).get("end.buddyinfo begin")
    # a sweep point needs the state only where the end snapshot was read (and at the end)
    sim = simulate_run(run, Settings.parse(items),
                       sample_at=[end_idx] if end_idx is not None else [],
                       start_cache=_STARTS)
    pbo = sim.machine.pageblock_order
    free = samples_free_blocks(sim.samples, end_idx) if sim.samples else {}
    side = side_metrics(frame_side(events_frame(sim.events), False, False), free, sim.samples,
                        end_idx, pbo)
    return {"metrics": side_scalars(side, pbo, (*REFERENCE_ORDERS, *orders)),
            "seconds": time.perf_counter() - t0,
            "worker": worker_name()}


def warm_up(source: str, cache_dir: Path, prefix_events: int = 20000) -> float:
    """Compile (or load) the numba kernels in this process on a prefix of one trace, so worker
    processes started afterwards load them from numba's on-disk cache instead of compiling
    each; returns the seconds it took."""
    from replay.pipeline import observe, simulate_run
    from replay.sweep.cache import ensure_ingested, load_ingested
    from replay.trace.result import TraceData

    t0 = time.perf_counter()
    run = load_ingested(source, ensure_ingested(source, cache_dir), None)
    d = run.data
    short = Loaded(run.source, TraceData(d.events.slice(0, prefix_events), d.markers, d.lost,
                                         d.stats), run.bundle, run.machine)
    observe(short, samples=False)
    simulate_run(short, None, samples=False)
    return time.perf_counter() - t0
