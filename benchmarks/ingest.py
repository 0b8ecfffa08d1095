"""Ingest speed and memory: a whole `pagereplay ingest` CLI run writing Parquet, on a big
uncompressed text trace made by concatenating real ones, beside `trace-cmd report` on the same
capture's trace.dat, measured in the same run.

    python benchmarks/ingest.py [--copies N] [--bundle NAME]

Prints lines/s, MB/s, peak RSS of the CLI process, and the ratio to trace-cmd report.
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SHARED, tracecmd_rate  # noqa: E402


def run_cli(args: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KB) of the child, and its output."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    p = subprocess.run([sys.executable, "-m", "replay", *args], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if p.returncode not in (0,):
        print(p.stderr, file=sys.stderr)
    return dt, max(rss, before), p.stdout + p.stderr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=8, help="copies of the bundle's trace")
    ap.add_argument("--bundle", default="mixed-press")
    ap.add_argument("--tracedat-bundle", default="pt-a")
    args = ap.parse_args()
    src = SHARED / args.bundle / "trace.txt.gz"
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        big = Path(tmp) / "big.txt"
        text = gzip.decompress(src.read_bytes())
        with open(big, "wb") as f:
            for _ in range(args.copies):
                f.write(text)
        lines = text.count(b"\n") * args.copies
        size = big.stat().st_size
        # warm the page cache and the numba cache
        run_cli(["ingest", str(SHARED / "mixed-small"), "-o", str(Path(tmp) / "w.parquet")])
        dt, rss, out = run_cli(["ingest", str(big), "-o", str(Path(tmp) / "big.parquet")])
        pq_size = (Path(tmp) / "big.parquet").stat().st_size
        print(f"input: {args.bundle} x {args.copies} = {size / 1e9:.2f} GB, {lines:,} lines")
        print(f"pagereplay ingest (whole CLI run, Parquet written): {dt:.2f} s, "
              f"{lines / dt / 1e6:.2f} M lines/s, {size / dt / 1e6:.0f} MB/s, "
              f"peak RSS {rss / 1024:.0f} MB, Parquet {pq_size / 1e6:.0f} MB")
        tc = tracecmd_rate(SHARED / args.tracedat_bundle)
        if tc:
            print(f"trace-cmd report on {args.tracedat_bundle}/trace.dat: {tc[0] / 1e6:.2f} M "
                  f"lines/s -> ingest is {lines / dt / tc[0]:.1f}x trace-cmd report")
        print(f"(load average: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
