"""The shared pipeline behind simulate, compare, report and sweep: load, observe, simulate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from replay.engine.machine import Machine, machine_from_description
from replay.engine.reconstruct import ReconstructResult, reconstruct
from replay.engine.sampling import Sampler, sample_points
from replay.engine.simulate import Settings, SimulateResult, simulate
from replay.trace.result import TraceData
from replay.trace.symbols import Symbols


@dataclass
class Loaded:
    source: str
    data: TraceData
    bundle: object | None
    machine: Machine | None
    symbols: Symbols | None = None  # kernel symbols for call chains (perf.data -g)


SYMBOL_FILES = ("kallsyms", "kallsyms.gz", "System.map", "System.map.gz")


def load(source: str | Path, machine_desc: str | None = None,
         symbols: str | Path | None = None) -> Loaded:
    """Read a trace (a file, a bundle directory, or an ingested .parquet) and its bundle.

    `symbols` is a System.map or kallsyms for call chains; without it a bundle's own
    `kallsyms[.gz]` or `System.map[.gz]` is used when present. Either is relocated to where
    the recording kernel was (perf's kernel map; KASLR)."""
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
    near = getattr(bundle, "path", None) or (Path(src).parent if Path(src).is_file() else None)
    return Loaded(src, data, bundle, machine, load_symbols(symbols, near, data))


def load_symbols(path: str | Path | None, near: Path | None,
                 data: TraceData) -> Symbols | None:
    """The symbols to name call chains with: `path`, else a kallsyms or System.map in `near`
    (the bundle, or the trace file's folder) when the trace has call chains; relocated to
    where the recording kernel was (KASLR)."""
    from replay.trace.symbols import Symbols

    if path is None and near is not None and data.events.column("stack_id").null_count < len(
            data.events):
        found = [Path(near) / n for n in SYMBOL_FILES if (Path(near) / n).exists()]
        path = found[0] if found else None
    if path is None:
        return None
    return Symbols.load(path).relocate(data.stats.kernel_reloc)


def observe(run: Loaded, every_events: int | None = None, every_ms: float | None = None,
            samples: bool = True) -> tuple[ReconstructResult, object]:
    """Reconstruct the observed state, sampled over time."""
    from replay.engine.events import event_arrays
    from replay.engine.reconstruct import bundle_machine

    machine = bundle_machine(run.bundle, run.machine)
    e = event_arrays(run.data)
    sampler = Sampler(machine, e) if samples else None
    points = _points(run, e, every_events, every_ms) if samples else None
    r = reconstruct(run.data, run.bundle, run.machine, sampler, points)
    return r, sampler.samples if sampler else None


def simulate_run(run: Loaded, settings: Settings | None = None, every_events: int | None = None,
                 every_ms: float | None = None, samples: bool = True,
                 sample_at: list[int] | None = None,
                 start_cache: dict | None = None) -> SimulateResult:
    """Simulate the trace's requests under settings, sampled at the same points as observe
    (or only at the event indices in `sample_at`, e.g. the end marker for a sweep point)."""
    import numpy as np

    from replay.engine.events import event_arrays

    e = event_arrays(run.data)
    if sample_at is not None:
        points = np.unique(np.asarray(list(sample_at) + [len(e)], np.int64))
    else:
        points = _points(run, e, every_events, every_ms) if samples else None
    return simulate(run.data, run.bundle, settings, run.machine, points,
                    Sampler if samples or sample_at is not None else None, start_cache)


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
