"""Shared helpers for the benchmarks (they may read ../shared; tests may not)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "traces"


def bundles(include_overrun: bool = True) -> list[Path]:
    out = sorted(p for p in SHARED.iterdir() if p.is_dir()) if SHARED.exists() else []
    if not include_overrun:
        out = [p for p in out if p.name != "anon-thp"]
    return out


def largest_with_tracedat() -> Path | None:
    cands = [p for p in bundles() if (p / "trace.dat.gz").exists()]
    return max(cands, key=lambda p: (p / "trace.dat.gz").stat().st_size) if cands else None


def tracecmd_rate(bundle: Path) -> tuple[float, int] | None:
    """trace-cmd report's lines/s on the bundle's trace.dat (decompressed first)."""
    if shutil.which("trace-cmd") is None or not (bundle / "trace.dat.gz").exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        dat = Path(tmp) / "trace.dat"
        dat.write_bytes(gzip.decompress((bundle / "trace.dat.gz").read_bytes()))
        best = None
        lines = 0
        for _ in range(2):
            t0 = time.perf_counter()
            p = subprocess.run(["trace-cmd", "report", "-i", str(dat)], capture_output=True)
            dt = time.perf_counter() - t0
            lines = p.stdout.count(b"\n")
            best = dt if best is None else min(best, dt)
        return lines / best, lines
