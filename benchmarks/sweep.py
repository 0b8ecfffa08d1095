"""Benchmark: a sweep of the shared bundles x 8 settings on 1 and on 2 Dask worker processes.

Usage: python benchmarks/sweep.py [--traces DIR] [--workers 1,2] [--grid KEY=V1,V2 ...]
                                  [--out DIR]

Default: every bundle under /work/shared/traces except anon-thp (its ring buffer overran), and
the grid mobility_grouping=on,off x min_free_kbytes=default,65536 x
percpu_pagelist_high_fraction=default,8 (8 settings). Each run starts its own LocalCluster
(start-up not timed) with a cold ingest cache of its own, so parsing is part of every run's
time; numba is warmed in this process first, so no run pays for compilation. Prints the wall
time per worker count, the speed-up, the machine's load average around each run (the machine
is shared), and which knob moved fragmentation most; writes the last run's
sweep.parquet/.md/.html to --out.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/replay.py is named like the package: keep this folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from replay.commands.sweep_cmd import write_results  # noqa: E402
from replay.sweep.cluster import open_client, threads_per_worker  # noqa: E402
from replay.sweep.effects import (  # noqa: E402
    FRAGMENTATION,
    headline,
    main_effects,
    top_per_metric,
)
from replay.sweep.grid import knobs, parse_grid  # noqa: E402
from replay.sweep.run import SweepResult, run_on, trace_jobs  # noqa: E402
from replay.sweep.table import to_frame  # noqa: E402
from replay.sweep.tasks import warm_up  # noqa: E402

SHARED = Path("/work/shared/traces")
SKIP = {"anon-thp"}  # lossy: the ring buffer overran
GRID = ["mobility_grouping=on,off", "min_free_kbytes=default,65536",
        "percpu_pagelist_high_fraction=default,8"]


def bundles(root: Path) -> list[str]:
    """Bundle directories under root (those with a trace file), minus the lossy ones."""
    found = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("trace.*")))
    return [str(p) for p in found if p.name not in SKIP]


def timed_run(sources: list[str], grid: list[str], workers: int, scratch: Path,
              threads: int | None = None) -> tuple[SweepResult, tuple[float, float], float]:
    """One sweep on a fresh LocalCluster with a cold cache; (result, load before/after,
    cluster start-up seconds)."""
    points = parse_grid(grid)
    jobs = trace_jobs(sources)
    warm_up(min(jobs, key=lambda j: j.size).source, scratch / "warm-cache")
    t0 = time.perf_counter()
    with open_client(workers, threads=threads) as client:
        client.wait_for_workers(workers)
        startup = time.perf_counter() - t0
        before = os.getloadavg()[0]
        result = run_on(client, jobs, points, scratch / f"cache-{workers}-{threads}", None,
                        threads or threads_per_worker(workers))
        after = os.getloadavg()[0]
    return result, (before, after), startup


def print_runs(runs: dict[int, tuple[SweepResult, tuple[float, float], float]]) -> None:
    print("task s: seconds spent in observe and point tasks, summed over workers (ingest not "
          "included); load: 1-minute load average of the whole (shared) machine")
    print(f"{'workers':>7} {'wall s':>8} {'points':>6} {'failed':>6} {'task s':>8} "
          f"{'points/min':>10} {'start-up s':>10} {'load before':>11} {'load after':>10}")
    for n, (r, (lb, la), start) in sorted(runs.items()):
        busy = sum(x["seconds"] or 0 for x in r.rows) + sum(
            o.get("seconds") or 0 for o in r.observed.values())
        print(f"{n:>7} {r.seconds:>8.1f} {len(r.rows):>6} {len(r.failed):>6} {busy:>8.1f} "
              f"{60 * len(r.rows) / r.seconds:>10.1f} {start:>10.1f} {lb:>11.2f} {la:>10.2f}")


def print_effects(result: SweepResult) -> None:
    ks = knobs(result.points)
    df = to_frame(result.rows, ks)
    effects = main_effects(df, ks)
    by = {(e.knob, e.metric): e.mean_effect for e in effects}
    print("\nmean main effect over traces (range of the metric's mean across the knob's values)")
    widths = [max(12, len(k) + 2) for k in ks]
    print(f"{'metric':<46}" + "".join(f"{k:>{w}}" for k, w in zip(ks, widths, strict=True))
          + "   moved most by")
    top = top_per_metric(effects)
    for metric, name in FRAGMENTATION:
        if any(e.metric == metric for e in effects):
            cells = "".join(f"{by.get((k, metric), 0):>{w}.3f}"
                            for k, w in zip(ks, widths, strict=True))
            print(f"{name:<46}{cells}   {top[metric].knob if metric in top else 'none'}")
    best = headline(effects)
    if best is not None:
        print(f"the knob that moved fragmentation most: {best.knob} (by the "
              f"{dict(FRAGMENTATION)[best.metric]}: {best.mean_effect:.3f} on average)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=SHARED)
    parser.add_argument("--workers", default="1,2", help="worker counts to time, e.g. 1,2")
    parser.add_argument("--grid", action="append", help="KEY=V1,V2 (default: 3 knobs x 2)")
    parser.add_argument("--out", type=Path, default=Path("sweep-benchmark"))
    parser.add_argument("--single-threaded-baseline", action="store_true",
                        help="also time 1 worker whose thread pools use one core")
    args = parser.parse_args()
    sources = bundles(args.traces)
    grid = args.grid or GRID
    counts = [int(x) for x in args.workers.split(",")]
    print(f"{len(sources)} bundles ({', '.join(Path(s).name for s in sources)}) x "
          f"{len(parse_grid(grid))} settings ({' x '.join(grid)}); {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    runs = {}
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        for n in counts:
            runs[n] = timed_run(sources, grid, n, Path(tmp))
            print(f"  {n} worker(s): {runs[n][0].seconds:.1f} s", file=sys.stderr)
    print_runs(runs)
    if 1 in runs and len(runs) > 1:
        for n in sorted(runs)[1:]:
            print(f"speed-up {n} workers vs 1: {runs[1][0].seconds / runs[n][0].seconds:.2f}x "
                  f"(the single worker's thread pools use all {os.cpu_count()} cores)")
        if args.single_threaded_baseline:
            with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
                one = timed_run(sources, grid, 1, Path(tmp), threads=1)
            print(f"  1 single-threaded worker: {one[0].seconds:.1f} s", file=sys.stderr)
            for n in sorted(runs)[1:]:
                print(f"speed-up {n} workers vs 1 single-threaded worker (process scaling "
                      f"alone): {one[0].seconds / runs[n][0].seconds:.2f}x")
    last = runs[max(runs)][0]
    print_effects(last)
    paths = write_results(last, args.out)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
