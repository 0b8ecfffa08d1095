"""The shared pipeline behind simulate, compare, report and sweep: load, observe, simulate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from replay.engine.machine import Machine, machine_from_description
from replay.engine.profile import KERNELS, ProfileChoice, trace_profiles
from replay.engine.reconstruct import ReconstructResult, reconstruct
from replay.engine.sampling import Sampler, sample_points
from replay.engine.simulate import Settings, SimulateResult, simulate
from replay.errors import SettingsError
from replay.trace.result import TraceData


@dataclass
class Loaded:
    source: str
    data: TraceData
    bundle: object | None
    machine: Machine | None
    kernel: str | None = None  # --kernel: the model's rules (and the trace's, without a release)

    def profiles(self) -> ProfileChoice:
        """Which kernel rules the trace (observed side) and the model follow."""
        return trace_profiles(self.data, self.bundle, self.kernel, self.machine)


def load(source: str | Path, machine_desc: str | None = None,
         kernel: str | None = None) -> Loaded:
    """Read a trace (a file, a bundle directory, or an ingested .parquet) and its bundle.
    `kernel` ('6.1' or '6.12', --kernel) chooses the model's kernel rules."""
    if kernel is not None and kernel not in KERNELS:
        raise SettingsError(f"--kernel {kernel}: choose one of {', '.join(KERNELS)}")
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
    return Loaded(src, data, bundle, machine, kernel)


def observe(run: Loaded, every_events: int | None = None, every_ms: float | None = None,
            samples: bool = True, follow: str = "trace") -> tuple[ReconstructResult, object]:
    """Reconstruct the observed state, sampled over time. `follow`: 'trace' follows the
    trace's own kernel (compare's observed side), 'requested' the --kernel rules (report)."""
    from replay.engine.events import event_arrays
    from replay.engine.reconstruct import bundle_machine

    choice = run.profiles()
    kernel = choice.trace.kernel if follow == "trace" else choice.model.kernel
    machine = bundle_machine(run.bundle, run.machine, kernel)
    e = event_arrays(run.data)
    sampler = Sampler(machine, e) if samples else None
    points = _points(run, e, every_events, every_ms) if samples else None
    r = reconstruct(run.data, run.bundle, run.machine, sampler, points,
                    kernel if (run.kernel or follow != "trace") else None)
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
    if run.kernel is not None and (settings is None or settings.get("kernel") is None):
        settings = Settings({**(settings.values if settings else {}), "kernel": run.kernel})
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
