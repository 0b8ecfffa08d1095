"""Replay speed: reconstruct, simulate and the teacher-forced agreement run, in events/s on one
core, beside `trace-cmd report`'s lines/s on the same capture.

    python benchmarks/replay.py [BUNDLE]     (default: the largest shared bundle)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# this file is named like the package: keep its own folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import bundles, tracecmd_rate  # noqa: E402
from replay.engine.events import event_arrays  # noqa: E402
from replay.engine.reconstruct import Follower, bundle_machine, prepare_start  # noqa: E402
from replay.engine.simulate import Settings, run_simulation  # noqa: E402
from replay.engine.state import copy_state  # noqa: E402
from replay.pipeline import load  # noqa: E402


def best_of(n: int, fn) -> float:
    return min(fn() for _ in range(n))


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else max(
        bundles(False), key=lambda p: (p / "trace.txt.gz").stat().st_size)
    run = load(target)
    e = event_arrays(run.data)
    m = bundle_machine(run.bundle, None)
    start = prepare_start(e, run.data, run.bundle, m)
    n = len(e) - start.i_start
    st0 = copy_state(start.state)
    nbytes = sum(a.nbytes for a in st0)

    def follow() -> float:
        f = Follower(copy_state(st0), e, start.disp)
        t = time.perf_counter()
        f.run(start.i_start, len(e))
        return time.perf_counter() - t

    def simulate() -> float:
        st = copy_state(st0)
        t = time.perf_counter()
        run_simulation(st, m, Settings(), e, start.i_start, start.disp)
        return time.perf_counter() - t

    follow()
    simulate()
    t_follow = best_of(5, follow)
    t_sim = best_of(5, simulate)
    pages = m.total_pfns
    print(f"bundle {target.name}: {n:,} trace events, {pages:,} pfns modelled, "
          f"state {nbytes / pages:.1f} bytes/page")
    print(f"reconstruct (teacher-forced, with agreement): {n / t_follow / 1e6:6.2f} M events/s "
          f"({t_follow:.3f} s)")
    print(f"simulate (the model decides):                 {n / t_sim / 1e6:6.2f} M events/s "
          f"({t_sim:.3f} s)")
    tc = tracecmd_rate(target)
    if tc is None:
        dat_bundles = [b for b in bundles() if (b / "trace.dat.gz").exists()]
        if dat_bundles:
            other = max(dat_bundles, key=lambda p: (p / "trace.dat.gz").stat().st_size)
            tc = tracecmd_rate(other)
            if tc:
                print(f"trace-cmd report on {other.name}'s trace.dat: {tc[0] / 1e6:.2f} M lines/s "
                      "(this bundle has no trace.dat)")
    else:
        print(f"trace-cmd report on the same capture:         {tc[0] / 1e6:6.2f} M lines/s")
    if tc:
        print(f"ratio to trace-cmd report: reconstruct {n / t_follow / tc[0]:.1f}x, "
              f"simulate {n / t_sim / tc[0]:.1f}x")


if __name__ == "__main__":
    main()
