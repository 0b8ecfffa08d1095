"""`pagereplay report` and `pagereplay compare`: JSON, Markdown and an HTML dashboard."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

from replay.commands.ingest_cmd import warn_damaged, warn_profile
from replay.engine.simulate import Settings
from replay.errors import SettingsError


def parse_time(text: str | None) -> tuple[float, float] | None:
    """'START,END' in seconds as the trace prints them (either side may be empty)."""
    if not text:
        return None
    try:
        lo, hi = text.split(",", 1)
        start = float(lo) if lo.strip() else 0.0
        end = float(hi) if hi.strip() else float("inf")
    except ValueError:
        raise SettingsError(f"--time {text!r}: expected START,END in seconds") from None
    if end <= start:
        raise SettingsError(f"--time {text!r}: END must be after START")
    return start, end


def write_outputs(d: dict, outdir: Path, json_name: str, plotlyjs: str) -> list[Path]:
    from replay.report.dashboard import write_dashboard
    from replay.report.markdown import render_markdown

    outdir.mkdir(parents=True, exist_ok=True)
    paths = [outdir / json_name, outdir / "report.md", outdir / "dashboard.html"]
    paths[0].write_text(json.dumps(d, indent=1, default=_json_default))
    paths[1].write_text(render_markdown(d))
    write_dashboard(d, paths[2], plotlyjs=plotlyjs)
    return paths


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def run_report(source: str, outdir: Path | None, time_window: str | None,
               window_ms: float | None, window_events: int | None, plotlyjs: str,
               machine: str | None, sets: list[str] | None, compare: bool,
               out: Console, err: Console, kernel: str | None = None,
               symbols: Path | None = None, progress=None) -> int:
    from replay import _warmup
    from replay.stream.runs import StreamJob, report

    if window_ms is not None and window_ms <= 0:
        raise SettingsError(f"--window-ms {window_ms}: must be positive")
    if window_events is not None and window_events <= 0:
        raise SettingsError(f"--window-events {window_events}: must be positive")
    window = parse_time(time_window)
    settings = Settings.parse(sets) if compare else Settings()
    if kernel is not None and settings.get("kernel") not in (None, kernel):
        raise SettingsError(f"--kernel {kernel} and --set kernel={settings.get('kernel')}: "
                            "give one")
    if compare:
        _warmup.start()  # a cold cache: simulate's engine compiles on the other core meanwhile
    t0 = time.perf_counter()
    with StreamJob(source, machine, kernel or settings.get("kernel"),
                   follow="trace" if compare else "requested", window=window,
                   every_events=window_events, every_ms=window_ms, progress=progress) as job:
        warn_damaged(job.trace.stats, err)
        d, profile = report(job, settings, compare, job.symbols(symbols))
    warn_profile(profile, err)
    d["seconds"] = round(time.perf_counter() - t0, 3)
    outdir = outdir or Path("report-" + Path(source.rstrip("/")).name.split(".")[0])
    paths = write_outputs(d, outdir, "comparison.json" if compare else "summary.json", plotlyjs)
    color = "green" if (not d["reconstruct"].get("checked") or d["reconstruct"]["exact"]) \
        else "red"
    out.print(f"[bold {color}]{d['verdict']}[/]", highlight=False)
    if compare:
        g = d["gaps"]
        out.print("simulated vs observed: " + ", ".join(
            f"{k} {v['simulated']:,} vs {v['observed']:,}" for k, v in g.items()
            if isinstance(v, dict) and "simulated" in v and k != "fallback_rate_per_1000"),
            highlight=False)
    out.print("wrote " + ", ".join(str(p) for p in paths), highlight=False)
    return 0
