"""The shared pipeline behind simulate, compare, report and sweep: load, observe, simulate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from replay.engine.machine import Machine, machine_from_description
from replay.engine.reconstruct import ReconstructResult, reconstruct
from replay.engine.sampling import Sampler, sample_points
from replay.engine.simulate import Settings, SimulateResult, simulate
from replay.trace.result import TraceData


@dataclass
class Loaded:
    source: str
    data: TraceData
    bundle: object | None
    machine: Machine | None


def load(source: str | Path, machine_desc: str | None = None) -> Loaded:
    """Read a trace (a file, a bundle directory, or an ingested .parquet) and its bundle."""
    from replay.trace.ingest import read_parquet, read_trace
    from replay.trace.snapshots import open_bundle
    from replay.trace.sources import resolve

    src = str(source)
    if src.endswith(".parquet") and Path(src).is_file():
        data, bundle = read_parquet(src), None
    else:
        trace_file, bundle_dir = resolve(src)
        if bundle_dir is None and trace_file is not None and _has_snapshots(trace_file.parent):
            bundle_dir = trace_file.parent  # e.g. bundle/trace.dat.gz: its snapshots are beside it
        bundle = open_bundle(bundle_dir) if bundle_dir is not None else None
        data = read_trace(src)
    machine = machine_from_description(machine_desc) if machine_desc else None
    return Loaded(src, data, bundle, machine)


def observe(run: Loaded, every_events: int | None = None, every_ms: float | None = None,
            samples: bool = True, capture=None) -> tuple[ReconstructResult, object]:
    """Reconstruct the observed state, sampled over time; `capture` (an explain
    StateCapture) also sees the start state and the state at its end point."""
    from replay.engine.events import event_arrays
    from replay.engine.reconstruct import bundle_machine

    machine = bundle_machine(run.bundle, run.machine)
    e = event_arrays(run.data)
    sampler = Sampler(machine, e) if samples else None
    points = _points(run, e, every_events, every_ms) if samples else None
    call, all_points = _with_capture(sampler, points, capture)
    r = reconstruct(run.data, run.bundle, run.machine, call, all_points)
    return r, sampler.samples if sampler else None


def _with_capture(sampler, points, capture):
    """The sampler to hand the engine, and its points, when an explain capture rides along."""
    import numpy as np

    if capture is None:
        return sampler, points
    from replay.metrics.explain import WithCapture

    extra = [capture.at] if capture.at is not None else []
    base = list(points) if points is not None else []
    return WithCapture(sampler, points, capture), np.unique(np.asarray(base + extra,
                                                                      np.int64))


def simulate_run(run: Loaded, settings: Settings | None = None, every_events: int | None = None,
                 every_ms: float | None = None, samples: bool = True,
                 sample_at: list[int] | None = None,
                 start_cache: dict | None = None, capture=None) -> SimulateResult:
    """Simulate the trace's requests under settings, sampled at the same points as observe
    (or only at the event indices in `sample_at`, e.g. the end marker for a sweep point);
    `capture` (an explain StateCapture, `at` a trace event index) rides along."""
    import numpy as np

    from replay.engine.events import event_arrays

    e = event_arrays(run.data)
    if sample_at is not None:
        points = np.unique(np.asarray(list(sample_at) + [len(e)], np.int64))
    else:
        points = _points(run, e, every_events, every_ms) if samples else None
    factory = Sampler if samples or sample_at is not None else None
    if capture is not None:
        own = points if factory is not None else None
        _, points = _with_capture(None, points, capture)
        points = np.unique(np.append(points, len(e)))  # run to the end whatever the points

        def factory(machine, ev, _inner=factory):  # noqa: F811 - the capture rides along
            from replay.metrics.explain import WithCapture

            capture.pbo = machine.pageblock_order
            return WithCapture(_inner(machine, ev) if _inner else None, own, capture)
    return simulate(run.data, run.bundle, settings, run.machine, points, factory, start_cache)


def _points(run: Loaded, e, every_events: int | None, every_ms: float | None):
    """Sample points, plus the end.buddyinfo marker so both sides are read where /proc was."""
    import numpy as np

    from replay.engine.events import marker_positions

    pts = sample_points(e, 0, every_events, every_ms)
    mark = marker_positions(run.data, e.seq).get("end.buddyinfo begin")
    if mark is not None:
        pts = np.unique(np.append(pts, mark))
    return pts


def _has_snapshots(directory: Path) -> bool:
    return any((directory / f"start.{name}").exists() for name in ("buddyinfo", "zoneinfo"))
