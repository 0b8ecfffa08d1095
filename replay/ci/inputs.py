"""CURRENT and BASE for `check`: a report JSON read from disk, or a trace computed on the spot.

A path is read as a report when it is a .json file, or a directory holding comparison.json or
summary.json (a `compare`/`report` output directory); anything else is a trace source (a bundle
directory or a trace file) and is compared under its settings first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from replay.errors import InputError, SettingsError

REPORT_NAMES = ("comparison.json", "summary.json")


@dataclass
class Input:
    """One side of the gate: where it comes from and, for a trace, the settings to run."""

    path: str
    report_file: Path | None  # set when the input is an existing report
    sets: list[str] = field(default_factory=list)

    @property
    def is_trace(self) -> bool:
        return self.report_file is None


def classify(path: str, sets: list[str] | None, option: str) -> Input:
    """An Input for a path; --set style options only make sense for a trace."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file or directory")
    report = None
    if p.is_file() and p.suffix == ".json":
        report = p
    elif p.is_dir():
        report = next((p / n for n in REPORT_NAMES if (p / n).is_file()), None)
    if report is not None and sets:
        raise SettingsError(f"{option} applies to a trace or bundle, but {path} is a report "
                            "(its settings are already fixed)")
    return Input(path, report, list(sets or []))


def read_report(path: Path) -> dict:
    """A comparison.json / summary.json as a dict, or one clear InputError."""
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(d, dict) or not isinstance(d.get("observed"), dict):
        raise InputError(f"{path}: not a pagereplay report (no 'observed' section; expected the "
                         "comparison.json or summary.json of `pagereplay compare`/`report`)")
    return d


def compute_reports(source: str, settings_lists: list[list[str]],
                    machine: str | None = None) -> list[dict]:
    """`compare` reports for one trace under several settings: the trace is read and the
    observed side reconstructed once (beside the first simulation, on a second thread), then
    simulated once per settings list."""
    import time

    from replay import _warmup
    from replay.engine.simulate import Settings
    from replay.report.build import assemble
    from replay.stream.runs import StreamJob, both, facts, run_view

    parsed = [Settings.parse(s) for s in settings_lists]  # bad settings fail before the work
    _warmup.start()  # a cold cache: simulate's engine compiles on the other core meanwhile
    t0 = time.perf_counter()
    reports = []
    with StreamJob(source, machine) as job:
        tr = job.trace
        obs = None
        for k, settings in enumerate(parsed):
            t1 = time.perf_counter()
            if obs is None:
                obs, simd = both(job, settings, True, False)
                shared = time.perf_counter() - t0
            else:
                simd = job.simulate(settings, True)
            d = assemble(run_view(tr), obs.recon, obs.samples,
                         job.obs_side.side(tr.plan.comms), facts(tr), simd.sim,
                         simd.side.side(), settings.as_dict(), None, "compare")
            d["seconds"] = round(shared + (time.perf_counter() - t1 if k else 0.0), 3)
            reports.append(d)
    return reports


def resolve_inputs(current: Input, baseline: Input, machine: str | None = None
                   ) -> tuple[dict, dict]:
    """(baseline report, current report), computing traces (one shared reading when CURRENT and
    BASE are the same trace)."""
    same = current.is_trace and baseline.is_trace and \
        Path(current.path).resolve() == Path(baseline.path).resolve()
    if same:
        base, cur = compute_reports(current.path, [baseline.sets, current.sets], machine)
        return base, cur
    return _one(baseline, machine), _one(current, machine)


def _one(inp: Input, machine: str | None) -> dict:
    if inp.report_file is not None:
        return read_report(inp.report_file)
    return compute_reports(inp.path, [inp.sets], machine)[0]
