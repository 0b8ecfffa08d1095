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
from replay.trace.symbols import Symbols


@dataclass
class Loaded:
    source: str
    data: TraceData
    bundle: object | None
    machine: Machine | None
    kernel: str | None = None  # --kernel: the model's rules (and the trace's, without a release)
    symbols: Symbols | None = None  # kernel symbols for call chains (perf.data -g)

    def profiles(self) -> ProfileChoice:
        """Which kernel rules the trace (observed side) and the model follow."""
        return trace_profiles(self.data, self.bundle, self.kernel, self.machine)


SYMBOL_FILES = ("kallsyms", "kallsyms.gz", "System.map", "System.map.gz")


def load(source: str | Path, machine_desc: str | None = None,
         kernel: str | None = None, symbols: str | Path | None = None) -> Loaded:
    """Read a trace (a file, a bundle directory, or an ingested .parquet) and its bundle.
    `kernel` ('6.1' or '6.12', --kernel) chooses the model's kernel rules.

    `symbols` is a System.map or kallsyms for call chains; without it a bundle's own
    `kallsyms[.gz]` or `System.map[.gz]` is used when present. Either is relocated to where
    the recording kernel was (perf's kernel map; KASLR)."""
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
    near = getattr(bundle, "path", None) or (Path(src).parent if Path(src).is_file() else None)
    return Loaded(src, data, bundle, machine, kernel, load_symbols(symbols, near, data))


def load_symbols(path: str | Path | None, near: Path | None,
                 data: TraceData) -> Symbols | None:
    """The symbols to name call chains with: `path`, else a kallsyms or System.map in `near`
    (the bundle, or the trace file's folder) when the trace has call chains; relocated to
    where the recording kernel was (KASLR)."""
    has_stack = data.events.column("stack_id").null_count < len(data.events)
    return symbols_for(path, near, has_stack, data.stats.kernel_reloc)


def symbols_for(path: str | Path | None, near: Path | None, has_stack: bool,
                kernel_reloc) -> Symbols | None:
    """load_symbols given whether the trace has call chains and its kernel relocation."""
    from replay.trace.symbols import Symbols

    if path is None and near is not None and has_stack:
        found = [Path(near) / n for n in SYMBOL_FILES if (Path(near) / n).exists()]
        path = found[0] if found else None
    if path is None:
        return None
    return Symbols.load(path).relocate(kernel_reloc)


def reconstruct_source(source: str | Path, machine_desc: str | None = None) -> ReconstructResult:
    """Read a trace (file or bundle) and reconstruct it."""
    run = load(source, machine_desc)
    return reconstruct(run.data, run.bundle, run.machine)


def observe(run: Loaded, every_events: int | None = None, every_ms: float | None = None,
            samples: bool = True, follow: str = "trace",
            capture=None) -> tuple[ReconstructResult, object]:
    """Reconstruct the observed state, sampled over time. `follow`: 'trace' follows the
    trace's own kernel (compare's observed side), 'requested' the --kernel rules (report);
    `capture` (an explain StateCapture) also sees the start state and the state at its end
    point."""
    from replay.engine.events import event_arrays
    from replay.engine.reconstruct import bundle_machine

    choice = run.profiles()
    kernel = choice.trace.kernel if follow == "trace" else choice.model.kernel
    machine = bundle_machine(run.bundle, run.machine, kernel)
    e = event_arrays(run.data)
    sampler = Sampler(machine, e) if samples else None
    points = _points(run, e, every_events, every_ms) if samples else None
    call, all_points = _with_capture(sampler, points, capture)
    r = reconstruct(run.data, run.bundle, run.machine, call, all_points,
                    kernel if (run.kernel or follow != "trace") else None)
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
    if run.kernel is not None and (settings is None or settings.get("kernel") is None):
        settings = Settings({**(settings.values if settings else {}), "kernel": run.kernel})
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


def explain_end_index(run: Loaded, window: tuple[float, float] | None = None) -> int:
    """Where explain's end tables are read: the end.buddyinfo marker (where the report reads
    the end state), the end of a --time window, or the last event."""
    import numpy as np

    from replay.engine.events import event_arrays, marker_positions

    e = event_arrays(run.data)
    if window is not None and np.isfinite(window[1]):
        return int(np.searchsorted(e.ts, int(round(window[1] * 1e9))))
    return marker_positions(run.data, e.seq).get("end.buddyinfo begin", len(e))


def explain_capture(run: Loaded, window: tuple[float, float] | None = None):
    """A StateCapture for observe/simulate_run, at explain's end point."""
    from replay.engine.reconstruct import bundle_machine
    from replay.metrics.explain import StateCapture

    machine = bundle_machine(run.bundle, run.machine)
    return StateCapture(explain_end_index(run, window), machine.pageblock_order)


def explain_observed(run: Loaded, recon: ReconstructResult, capture,
                     window: tuple[float, float] | None = None, symbols=None):
    """The explain tables of the observed trace; returns (tables, ExplainState)."""
    from replay.metrics.explain import explain_events

    m = recon.machine
    return explain_events(_engine_order(run), capture, [z.key for z in m.zones],
                          m.pageblock_order, start_index=capture.start_index,
                          end_index=capture.at, window_s=window,
                          mobility_grouping=m.mobility_grouping, symbols=symbols)


def _engine_order(run: Loaded):
    """The events table in the order the engine replayed it (causal_order may have moved a few
    events across CPUs), so explain's indices and the capture's agree."""
    import numpy as np
    import pyarrow as pa

    from replay.engine.events import event_arrays

    e = event_arrays(run.data)
    table = run.data.events
    if not e.reordered:
        return table
    seq = table["seq"].to_numpy()
    order = np.argsort(seq, kind="stable")
    return table.take(pa.array(order[np.searchsorted(seq[order], e.seq)]))


def explain_simulated(run: Loaded, sim: SimulateResult, capture,
                      window: tuple[float, float] | None = None,
                      comm_by_pid: dict[int, str] | None = None, symbols=None) -> dict:
    """The explain tables of a simulation (its emitted events, the same code as observed);
    tasks are named from the trace (simulated events carry the request's pid, not its comm)."""
    import numpy as np

    from replay.metrics.explain import explain_events, pid_comms

    m = sim.machine
    req = sim.emitted.req[: sim.n_emitted]
    end = int(np.searchsorted(req, capture.at)) if capture.at is not None else None
    tables, _ = explain_events(
        sim.events, capture, [z.key for z in m.zones], m.pageblock_order, start_index=0,
        end_index=end, window_s=window, mobility_grouping=m.mobility_grouping,
        no_whole_block_steal=sim.settings.get("fallback_policy") == "no-whole-block-steal",
        comm_by_pid=comm_by_pid if comm_by_pid is not None else pid_comms(run.data.events),
        symbols=symbols)
    return tables
