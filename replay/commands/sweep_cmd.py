"""`pagereplay sweep`: every trace under every settings point on Dask; table, summary, dashboard."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from replay.errors import SettingsError
from replay.sweep.cache import default_cache_dir
from replay.sweep.cluster import open_client, threads_per_worker
from replay.sweep.grid import knobs, parse_grid
from replay.sweep.run import SweepResult, run_on, trace_jobs
from replay.sweep.tasks import warm_up


def run_sweep(sources: list[str], grid: list[str] | None, outdir: Path | None, workers: int,
              scheduler: str | None, cache: Path | None, machine: str | None, out: Console,
              err: Console, orders: list[int] | None = None) -> int:
    """Validate, warm numba, run on the cluster, write the outputs; 0 all ok, 1 some failed."""
    if workers < 1:
        raise SettingsError("--workers must be at least 1")
    for o in orders or []:
        if not 0 <= o <= 10:
            raise SettingsError(f"--order {o}: must be between 0 and 10")
    points = parse_grid(grid)
    jobs = trace_jobs(sources)
    cache_dir = cache or default_cache_dir()
    outdir = outdir or Path("sweep")
    _warm(jobs, cache_dir, err)
    total = len(jobs) * (len(points) + 1)
    err.print(f"{len(jobs)} traces x {len(points)} settings = {len(jobs) * len(points)} points"
              + (f" on {scheduler}" if scheduler else f" on {workers} local workers"),
              highlight=False)
    with open_client(workers, scheduler) as client, _progress(err) as bar:
        task = bar.add_task("sweep", total=total)
        result = run_on(client, jobs, points, cache_dir, machine,
                        threads_per_worker(workers) if not scheduler else 2,
                        lambda what: bar.update(task, advance=1, description=what[:40]),
                        tuple(orders or ()))
    paths = write_results(result, outdir)
    _print_result(result, out)
    out.print("wrote " + ", ".join(str(p) for p in paths), highlight=False)
    return 1 if result.failed else 0


def _warm(jobs: list, cache_dir: Path, err: Console) -> None:
    """Warm numba's cache on the smallest trace; a trace that cannot be read here fails its own
    points later, so a failure is only a note."""
    with err.status("warming the numba cache (first time: a minute or two)"):
        try:
            warm_up(min(jobs, key=lambda j: j.size).source, cache_dir)
        except Exception as exc:  # noqa: BLE001 - the sweep records the real failures
            err.print(f"note: numba warm-up skipped ({type(exc).__name__}: {exc})",
                      highlight=False, markup=False)


def write_results(result: SweepResult, outdir: Path) -> list[Path]:
    """sweep.parquet, sweep.md and sweep.html in outdir."""
    from replay.sweep.dashboard import write_dashboard
    from replay.sweep.summary import render_summary
    from replay.sweep.table import to_frame, write_table

    ks = knobs(result.points)
    df = to_frame(result.rows, ks)
    outdir.mkdir(parents=True, exist_ok=True)
    md = outdir / "sweep.md"
    md.write_text(render_summary(df, ks, result.seconds, result.workers))
    return [write_table(df, outdir / "sweep.parquet"), md,
            write_dashboard(df, ks, outdir / "sweep.html")]


def _progress(err: Console) -> Progress:
    return Progress(TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False)


def _print_result(result: SweepResult, out: Console) -> None:
    from replay.sweep.effects import headline, main_effects, metrics_of
    from replay.sweep.table import to_frame

    n, bad = len(result.rows), len(result.failed)
    color = "red" if bad else "green"
    out.print(f"[bold {color}]{n - bad} of {n} points ok[/] in {result.seconds:.1f} s on "
              f"{result.workers} workers", highlight=False)
    for r in result.failed[:10]:
        out.print(f"  failed: {r['trace']} [{r['settings']}]: {r['error']}", highlight=False,
                  markup=False)
    ks = knobs(result.points)
    df = to_frame(result.rows, ks)
    best = headline(main_effects(df, ks))
    if best is not None:
        out.print(f"knob that moved fragmentation most: {best.knob} (by the "
                  f"{dict(metrics_of(df))[best.metric]}: {best.mean_effect:.4g})",
                  highlight=False)
