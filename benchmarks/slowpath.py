"""The model's slow path against the kernel on the loaded captures (issue #11's goals):
failed allocations, fallbacks, pcp refill blocks and drained pages against the trace; compaction
stalls and successes against the bundle's vmstat deltas; and simulate's speed.

    python benchmarks/slowpath.py [BUNDLE ...]   (default: the shared loaded bundles and the
                                                  held-out captures when present)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SHARED  # noqa: E402
from replay.commands.simulate_cmd import model_counts, traced_counts  # noqa: E402
from replay.engine.simulate import simulate  # noqa: E402
from replay.metrics.compaction import vmstat_deltas  # noqa: E402
from replay.pipeline import load  # noqa: E402

DEFAULT = [SHARED / n for n in ("swap-thp", "k612-swap", "compact-frag")] + [
    Path("/work/captures/bundles") / n for n in ("ho-swap-thp", "ho-k612-swap",
                                                 "ho-compact-frag")]


def within(model: int, trace: int, floor: int, frac: float) -> str:
    return "ok" if abs(model - trace) <= max(floor, frac * trace) else "MISS"


def main() -> None:
    paths = [Path(a) for a in sys.argv[1:]] or [p for p in DEFAULT if p.exists()]
    print("| bundle | events | s | failures t/m | fallbacks t/m | refill blocks | drained pages "
          "| compact_stall k/m | compact_success k/m | pgmigrate_success k/m | allocstall k/m |")
    print("|---|---:|---:|---|---|---|---|---|---|---|---|")
    for b in paths:
        run = load(b)
        t0 = time.perf_counter()
        sim = simulate(run.data, run.bundle)
        dt = time.perf_counter() - t0
        obs = traced_counts(run.data.events.slice(sim.i_start))
        mod = model_counts(sim.counters, sim.events)
        k = vmstat_deltas(run.bundle.start.vmstat, run.bundle.end.vmstat)
        c = sim.counters
        n = run.data.events.num_rows - sim.i_start

        def pct(key, mod=mod, obs=obs):
            return f"{(mod[key] - obs[key]) / obs[key] * 100:+.1f}%" if obs[key] else "-"

        f = (obs["alloc_failures"], mod["alloc_failures"])
        fb = (obs["fallbacks"], mod["fallbacks"])
        st = (k.get("compact_stall", 0), c["compact_stall"])
        su = (k.get("compact_success", 0), c["compact_success"])
        print(f"| {b.name} | {n:,} | {dt:.1f} | {f[0]}/{f[1]} {within(f[1], f[0], 5, .25)} "
              f"| {fb[0]}/{fb[1]} {within(fb[1], fb[0], 3, .25)} | {pct('pcp_refill_blocks')} "
              f"| {pct('pcp_drained_pages')} | {st[0]}/{st[1]} {within(st[1], st[0], 3, .5)} "
              f"| {su[0]}/{su[1]} {within(su[1], su[0], 3, .5)} "
              f"| {k.get('pgmigrate_success', 0)}/{c['pgmigrate_success']} "
              f"| {k.get('allocstall', 0)}/{c['allocstall']} |", flush=True)


if __name__ == "__main__":
    main()
