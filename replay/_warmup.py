"""Compile the simulation engine in a second process while this one compiles the rest.

On a first run (a cold numba cache), a command that replays both ways (compare, report, check)
compiles two engines: reconstruct's and simulate's. numba compiles one function at a time per
process, so they would take turns on one core. `start()` launches `python -m replay._warmup`,
which passes one request through simulate's loop (SimulationRun, with the argument types a real
run has) and so compiles and caches simulate's fast tier on the other core, then goes on with
the whole loop (the slow path's tier, simulate_loop). `wait()`, called by the simulating thread
before it first enters the engine, blocks until the fast tier is cached; `wait_full()`, called
when a replay first needs the slow path, until the helper is done. The compiled code then
loads from the cache. A warm cache, an unwritable one or a failed helper cost nothing but the
check: the caller then compiles what it needs itself. A helper still compiling when the
command ends is stopped.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

_lock = threading.Lock()
_proc: subprocess.Popen | None = None

# the engine entry whose cached code says simulate's fast tier is compiled
_MARK = ("replay_engine", "simulate_loop.simulate_requests_fast-*.nbi")


def _cache_folder() -> Path | None:
    folder = os.environ.get("NUMBA_CACHE_DIR")
    return Path(folder) if folder else None


def is_warm() -> bool:
    """True when simulate's fast tier is in the compiled cache (or there is no cache to
    fill)."""
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
        else:
            atexit.register(_stop_unused)


def _stop_unused() -> None:
    """At exit, a helper nobody waited for (the command failed first) is stopped."""
    with _lock:
        proc = _proc
    if proc is not None and proc.poll() is None:
        proc.terminate()


def wait() -> None:
    """Block until simulate's fast tier is cached, or the helper (if any) has ended."""
    with _lock:
        proc = _proc
    while proc is not None and proc.poll() is None and not is_warm():
        time.sleep(0.05)


def wait_full() -> None:
    """Block until the helper (if any) has compiled and cached the whole loop."""
    global _proc
    with _lock:
        proc, _proc = _proc, None
    if proc is not None:
        proc.wait()


def main() -> int:
    """One request through simulate's loop on a small machine: the fast tier and every
    function it calls get compiled and cached, with the argument types a real run passes (the
    same constructors make them); then the whole loop, with the same types."""
    import numpy as np

    from replay.engine.events import EventArrays
    from replay.engine.machine import machine_from_description
    from replay.engine.simulate import Settings, SimulationRun, VmstatEvidence
    from replay.engine.simulate_loop import simulate_requests, simulate_requests_fast
    from replay.engine.state import new_state
    from replay.trace.schema import EV_ALLOC

    try:
        machine = machine_from_description("mem=64M,cpus=1")
        st = new_state(machine)
        empty = np.zeros(0, np.int64)
        run = SimulationRun(st, machine, Settings(), 0, 1, VmstatEvidence(0, 0, empty, empty))
        one = lambda v: np.array([v], np.int64)  # noqa: E731
        e = EventArrays(*(one(v) for v in (0, 0, EV_ALLOC, 0x2000, 0, 1, 0, -1, -1, -1, -1,
                                             0, 0, 0x100cca, 1)))
        run.feed(e, 0, np.ones(1, np.int8), e.gfp, 1)
        for sig in simulate_requests_fast.signatures:  # the slow path's tier, same types
            simulate_requests.compile(sig)
    except Exception:  # noqa: BLE001 - a helper: the caller compiles for itself
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
