"""Benchmark: read_tracedat() events/s against `trace-cmd report` on the same trace.dat.

Usage: python benchmarks/tracedat.py [TRACE_DAT_OR_BUNDLE_DIR] [--repeat N]

Default input: the largest /work/shared/traces/*/trace.dat.gz. The Python process is pinned to
one CPU. read_tracedat is timed on the gzip file and on the decompressed file (best of N after
one warm-up run that also compiles/loads the numba kernels); `trace-cmd report -i FILE >
/dev/null` is timed on the decompressed file (best of N) and its rate is output lines per second.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys  # noqa: E402
import tempfile
import time
from pathlib import Path

# benchmarks/replay.py is named like the package: keep this folder off the import path
sys.path[:] = [p for p in sys.path
               if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from replay.trace.tracedat import read_tracedat  # noqa: E402

SHARED = Path("/work/shared/traces")


def largest_bundle_dat() -> Path:
    """The biggest trace.dat.gz under /work/shared/traces."""
    candidates = sorted(SHARED.glob("*/trace.dat.gz"), key=lambda p: p.stat().st_size)
    if not candidates:
        raise SystemExit(f"no trace.dat.gz under {SHARED}")
    return candidates[-1]


def best_of(repeat: int, fn) -> float:
    """Smallest wall time of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def time_tracecmd(path: Path, repeat: int) -> tuple[float, int] | None:
    """Best wall time of `trace-cmd report -i path > /dev/null`, and its output line count."""
    if not shutil.which("trace-cmd"):
        return None
    cmd = ["trace-cmd", "report", "-i", str(path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    lines = out.count("\n")
    with open(os.devnull, "w") as null:
        seconds = best_of(repeat, lambda: subprocess.run(cmd, check=True, stdout=null,
                                                         stderr=subprocess.DEVNULL))
    return seconds, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    source = args.source or largest_bundle_dat()
    if source.is_dir():
        source = source / "trace.dat.gz"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory() as tmp:
        raw = source.read_bytes()
        plain = Path(tmp) / "trace.dat"
        plain.write_bytes(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        warm = read_tracedat(source)
        events, records = warm.stats.events, warm.stats.lines
        print(f"input: {source} ({source.stat().st_size / 1e6:.1f} MB, trace.dat "
              f"{plain.stat().st_size / 1e6:.1f} MB); {records} records, {events} events, "
              f"{warm.stats.cpus} CPUs, error={warm.stats.error}")
        rows = []
        for label, path in ((source.name, source), ("trace.dat (decompressed)", plain)):
            seconds = best_of(args.repeat, lambda p=path: read_tracedat(p))
            rows.append((f"read_tracedat({label})", seconds, events / seconds))
        tc = time_tracecmd(plain, args.repeat)
        if tc is not None:
            seconds, lines = tc
            rows.append((f"trace-cmd report > /dev/null ({lines} lines)", seconds,
                         lines / seconds))
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'seconds':>8}  {'per second':>12}")
    for label, seconds, rate in rows:
        print(f"{label:{width}}  {seconds:8.3f}  {rate / 1e6:10.2f} M")
    if tc is not None:
        print(f"speed-up over trace-cmd report: {rows[1][2] / rows[-1][2]:.1f}x "
              f"(decompressed file), {rows[0][2] / rows[-1][2]:.1f}x (from {source.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
