"""`pagereplay ingest`: a trace into Parquet, with honest accounting."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rich.console import Console

from replay.trace.ingest import ingest_to_parquet, side_table_path
from replay.trace.result import TraceStats


def default_output(source: str) -> Path:
    if source == "-":
        return Path("stdin.parquet")
    p = Path(source)
    name = p.name if p.is_dir() else p.name.split(".")[0]
    return Path(f"{name}.parquet")


def stats_dict(stats: TraceStats) -> dict:
    return stats.as_dict()


def print_bad(stats: TraceStats, err: Console) -> None:
    if stats.bad_total:
        reasons = ", ".join(f"{n} {r}" for r, n in stats.bad_lines.items())
        err.print(f"skipped {stats.bad_total} bad lines ({reasons}); first ones:", highlight=False,
                  markup=False)
        for line, reason, text in stats.bad_samples[:5]:
            err.print(f"  {stats.source}:{line}: {reason}: {text[:100]}", highlight=False,
                      markup=False)


def warn_damaged(stats: TraceStats, err: Console) -> None:
    """Replaying commands go on with what was read; say what was skipped or cut short."""
    print_bad(stats, err)
    if stats.error:
        err.print(f"warning: {stats.source}: {stats.error}; replaying the {stats.events} events "
                  "read before it", highlight=False, markup=False)


def warn_profile(choice, err: Console) -> None:
    """Say which kernel rules a replay follows when that is a guess or a what-if."""
    for w in choice.warnings:
        err.print(f"warning: {w}", highlight=False, markup=False)
    if choice.what_if:
        err.print(f"note: the trace is from {choice.release or choice.trace.kernel} "
                  f"({choice.trace.name}); the model follows {choice.model.name}'s rules",
                  highlight=False, markup=False)


def run_ingest(source: str, output: Path | None, fmt: str, strict: bool, as_json: bool,
               threads: int, out: Console, err: Console) -> int:
    if fmt not in ("auto", "ftrace", "trace-cmd"):
        from replay.errors import InputError

        raise InputError(f"--format must be auto, ftrace or trace-cmd, not {fmt!r}")
    output = output or default_output(source)
    t0 = time.perf_counter()
    progress = _progress(source, err) if not as_json else None
    if progress:
        with progress[0]:
            stats = ingest_to_parquet(source, output, strict=strict, fmt=fmt, threads=threads,
                                      progress=progress[1])
    else:
        stats = ingest_to_parquet(source, output, strict=strict, fmt=fmt, threads=threads)
    dt = time.perf_counter() - t0
    if as_json:
        d = stats_dict(stats)
        d.update(output=str(output), seconds=round(dt, 3))
        out.print_json(json.dumps(d))
    else:
        rate = stats.lines / dt / 1e6 if dt > 0 else 0
        kinds = ", ".join(f"{k} {v}" for k, v in stats.events_by_kind.items())
        out.print(f"{stats.source}: {stats.lines} lines ({stats.layout}), {stats.events} events "
                  f"({kinds}), {stats.markers} markers, {stats.lost_events} lost events "
                  f"in {dt:.2f}s ({rate:.2f} M lines/s)", highlight=False)
        out.print(f"wrote {output} (+ {side_table_path(output, 'markers').name}, "
                  f"{side_table_path(output, 'lost').name})", highlight=False)
        print_bad(stats, err)
    if stats.error:
        err.print(f"error: {stats.source}: {stats.error}; wrote the {stats.events} events read "
                  "before it", highlight=False)
        return 2
    if stats.events == 0 and stats.markers == 0:
        err.print(f"error: {stats.source}: no page-allocator events found", highlight=False)
        return 2
    return 0


def _progress(source: str, err: Console):
    """A rich progress bar for long inputs on a terminal (bytes of decompressed text)."""
    if not err.is_terminal or source == "-":
        return None
    try:
        size = os.path.getsize(source) if not os.path.isdir(source) else None
    except OSError:
        size = None
    if not size or size < 64 << 20:
        return None
    from rich.progress import BarColumn, Progress, TransferSpeedColumn

    prog = Progress("[progress.description]{task.description}", BarColumn(),
                    TransferSpeedColumn(), console=err, transient=True)
    task = prog.add_task("ingest", total=None)
    return prog, lambda n: prog.advance(task, n)
