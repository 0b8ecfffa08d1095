"""Compile the simulation engine in a second process while this one compiles the rest.

On a first run (a cold numba cache), a command that replays both ways (compare, report, check)
compiles two engines: reconstruct's and simulate's. numba compiles one function at a time per
process, so they would take turns on one core. `start()` launches `python -m replay._warmup`,
which simulates a tiny generated trace through the same path as `pagereplay simulate` and so
compiles and caches simulate's engine on the other core; `wait()`, called by the simulating
thread before it first enters the engine, blocks until that process is done, after which the
compiled code loads from the cache. A warm cache, an unwritable one or a failed helper cost
nothing but the check: the caller then compiles what it needs itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_proc: subprocess.Popen | None = None

# the engine entry whose cached code says simulate's engine is compiled
_MARK = ("replay_engine", "simulate.simulate_requests-*.nbi")


def _cache_folder() -> Path | None:
    folder = os.environ.get("NUMBA_CACHE_DIR")
    return Path(folder) if folder else None


def is_warm() -> bool:
    """True when simulate's engine is in the compiled cache (or there is no cache to fill)."""
    folder = _cache_folder()
    if folder is None or os.environ.get("PAGEREPLAY_NO_WARMUP"):
        return True
    sub, pattern = _MARK
    return any((folder / sub).glob(pattern))


def start() -> None:
    """Compile simulate's engine in a helper process, unless it is cached or already under way."""
    global _proc
    with _lock:
        if _proc is not None or is_warm():
            return
        env = dict(os.environ, PAGEREPLAY_NO_WARMUP="1")
        try:
            _proc = subprocess.Popen([sys.executable, "-m", "replay._warmup"], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        except OSError:
            _proc = None


def wait() -> None:
    """Block until the helper (if any) has compiled and cached simulate's engine."""
    global _proc
    with _lock:
        proc, _proc = _proc, None
    if proc is not None:
        proc.wait()


TINY_TRACE = "".join(
    f"            warm-1       [000] .....     1.{i:06d}: {line}\n" for i, line in enumerate((
        "mm_page_alloc_zone_locked: page=0000000000000000 pfn=0x2000 order=0 migratetype=1 "
        "percpu_refill=1",
        "mm_page_alloc: page=0000000000000000 pfn=0x2000 order=0 migratetype=1 "
        "gfp_flags=GFP_HIGHUSER_MOVABLE",
        "mm_page_alloc: page=0000000000000000 pfn=0x3000 order=2 migratetype=0 "
        "gfp_flags=GFP_KERNEL",
        "mm_page_free: page=0000000000000000 pfn=0x2000 order=0",
        "mm_page_free: page=0000000000000000 pfn=0x3000 order=2",
        "mm_page_pcpu_drain: page=0000000000000000 pfn=0x2000 order=0 migratetype=1",
    ), start=1))


def main() -> int:
    """Simulate a tiny trace on a small machine: every function simulate's loop calls gets
    compiled and cached, with the argument types a real run uses."""
    from replay.cli import app

    with tempfile.TemporaryDirectory(prefix="pagereplay-warmup-") as tmp:
        trace = Path(tmp) / "trace.txt"
        trace.write_text("# tracer: nop\n#\n" + TINY_TRACE)
        try:
            app(["simulate", str(trace), "--machine", "mem=64M,cpus=1", "-o",
                 str(Path(tmp) / "out")], standalone_mode=False)
        except SystemExit as exc:
            return int(exc.code or 0)
        except Exception:  # noqa: BLE001 - a helper: the caller compiles for itself
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
