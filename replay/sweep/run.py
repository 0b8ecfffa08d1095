"""Run a sweep on a Dask client: the task graph, progress, and the rows that come back.

Per trace: one ingest task (into the shared Parquet cache), one observe task and one task per
settings point, the last two waiting on the ingest. Bigger traces go first, so the longest
tasks do not start last. A task that fails leaves its point's row marked failed with the error,
and the sweep goes on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from replay.sweep.grid import Point
from replay.sweep.tasks import ingest_task, observe_task, point_task


@dataclass
class TraceJob:
    """One sweep source: its name in the results and its size (for the order of work)."""

    name: str
    source: str
    size: int


@dataclass
class SweepResult:
    """Every point's row plus per-trace observed metrics and the sweep's wall time."""

    rows: list[dict]
    observed: dict[str, dict]
    points: list[Point]
    seconds: float
    workers: int
    failed: list[dict] = field(default_factory=list)


def trace_jobs(sources: list[str]) -> list[TraceJob]:
    """Sources with unique names (bundle or file name; a suffix when two share one)."""
    from replay.sweep.cache import trace_file

    jobs: list[TraceJob] = []
    seen: dict[str, int] = {}
    for src in sources:
        trace, bundle = trace_file(src)
        name = (bundle or trace).name.split(".")[0] or "trace"
        seen[name] = seen.get(name, 0) + 1
        jobs.append(TraceJob(name if seen[name] == 1 else f"{name}-{seen[name]}", str(src),
                             trace.stat().st_size))
    return jobs


def run_on(client, jobs: list[TraceJob], points: list[Point], cache_dir: Path,
           machine: str | None = None, ingest_threads: int = 1,
           advance: Callable[[str], None] | None = None,
           orders: tuple[int, ...] = ()) -> SweepResult:
    """Submit the whole sweep to `client`, wait for every task, and gather the rows; `orders`
    are reference orders measured besides 9 (`sweep --order`)."""
    from distributed import as_completed

    t0 = time.perf_counter()
    tag = uuid.uuid4().hex[:8]  # keys unique to this sweep, should a client run several
    meta: dict = {}  # future key -> ("observe", job) or ("point", job, point)
    futures = []
    home = trace_homes(client, jobs)
    for rank, job in enumerate(sorted(jobs, key=lambda j: -j.size)):
        prio = len(jobs) - rank
        # soft affinity: a trace's tasks prefer one worker, which then loads the trace and
        # builds its initial state once; idle workers may still steal them
        where = ({"workers": [home[job.name]], "allow_other_workers": True}
                 if job.name in home else {})
        ing = client.submit(ingest_task, job.source, str(cache_dir), ingest_threads,
                            key=f"ingest-{tag}-{job.name}-{rank}", priority=prio + 1, pure=False,
                            **where)
        obs = client.submit(observe_task, job.source, ing, machine, tuple(orders),
                            priority=prio,
                            key=f"observe-{tag}-{job.name}-{rank}", pure=False, **where)
        meta[obs.key] = ("observe", job, None)
        futures.append(obs)
        for p in points:
            f = client.submit(point_task, job.source, ing, machine, list(p.items),
                              tuple(orders),
                              priority=prio, key=f"point-{tag}-{job.name}-{rank}-{p.index}",
                              pure=False, **where)
            meta[f.key] = ("point", job, p)
            futures.append(f)
    observed: dict[str, dict] = {}
    done: dict[tuple[str, int], dict] = {}
    for fut in as_completed(futures):
        kind, job, point = meta[fut.key]
        try:
            res = fut.result()
        except Exception as exc:  # noqa: BLE001 - recorded in the row; the sweep goes on
            res = {"error": f"{type(exc).__name__}: {exc}"}
        error = res.get("error")
        if kind == "observe":
            observed[job.name] = res
        else:
            done[(job.name, point.index)] = res
        if advance is not None:
            advance(f"{job.name} {point.label if point else 'observed'}"
                    + (" FAILED" if error else ""))
    rows = [make_row(job, p, done[(job.name, p.index)], observed.get(job.name, {}))
            for job in jobs for p in points]
    workers = len(client.scheduler_info().get("workers", {}))
    failed = [r for r in rows if r["status"] != "ok"]
    return SweepResult(rows, observed, points, time.perf_counter() - t0, workers, failed)


def trace_homes(client, jobs: list[TraceJob]) -> dict[str, str]:
    """A worker per trace, balancing trace sizes greedily (largest first)."""
    try:
        addrs = sorted(client.scheduler_info().get("workers", {}))
    except Exception:  # noqa: BLE001 - no affinity is still a correct sweep
        return {}
    if len(addrs) < 2:
        return {}
    load = dict.fromkeys(addrs, 0)
    home = {}
    for job in sorted(jobs, key=lambda j: -j.size):
        addr = min(load, key=load.__getitem__)
        home[job.name] = addr
        load[addr] += job.size
    return home


def make_row(job: TraceJob, point: Point, res: dict, obs: dict) -> dict:
    """One table row: trace, settings (a column per knob), status, and both sides' metrics."""
    row: dict = {"trace": job.name, "source": job.source, "point": point.index,
                 "settings": point.label}
    for knob, value in point.values:
        row[knob] = value
    error = res.get("error")
    row.update(status="failed" if error else "ok", error=error,
               seconds=res.get("seconds"), worker=res.get("worker"),
               events=obs.get("events"), observe_seconds=obs.get("seconds"),
               observe_error=obs.get("error"))
    obs_metrics = dict(obs.get("metrics") or {})
    agreement = obs_metrics.pop("agreement_rate", None)
    row["agreement_rate"] = agreement
    for k, v in obs_metrics.items():
        row[f"observed.{k}"] = v
    for k, v in (res.get("metrics") or {}).items():
        row[f"simulated.{k}"] = v
    return row
