"""explain's goal checks and speed on the shared bundles.

    python benchmarks/explain.py [BUNDLE ...]      (default: pt-a, frag-a, mixed-press)

Per bundle: the steals against `grep -c mm_page_alloc_extfrag` of the raw text, every mixed
pageblock at the end attributed (and equal to the report's count), the top culprit against an
independent recount of the raw text (the next mm_page_alloc of the same pid on the same CPU),
and the wall time of `pagereplay explain` against `pagereplay report` (each run as a user would,
best of two, after a warm-up run that fills numba's cache).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_explain import recount_steals  # noqa: E402

from benchmarks.common import SHARED  # noqa: E402


def cli_seconds(*args: str, runs: int = 2) -> float:
    best = None
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "replay", *args, "-o", tmp],
                               capture_output=True, cwd=ROOT)
            dt = time.perf_counter() - t0
            if p.returncode != 0:
                raise SystemExit(p.stderr.decode()[-2000:])
        best = dt if best is None else min(best, dt)
    return best


def check(bundle: Path) -> None:
    import numpy as np

    from replay.pipeline import explain_capture, explain_observed, load, observe

    run = load(bundle)
    cap = explain_capture(run)
    recon, samples = observe(run, capture=cap)
    ex, _ = explain_observed(run, recon, cap)
    total, per_key = recount_steals(bundle / "trace.txt.gz")
    k = int(np.searchsorted(samples.index, cap.at))
    engine_mixed = {z: int(samples.mixed_pageblocks[k][i]) for i, z in enumerate(samples.zones)}
    t = ex["totals"]
    top = ex["blame"]["rows"][0] if ex["blame"]["rows"] else None
    most = max(per_key.values()) if per_key else 0
    leaders = {k for k, v in per_key.items() if v == most}
    got = Counter({(r["comm"], r["gfp"], r["order"]): r["steals"]
                   for r in ex["blame"]["rows"] if r["steals"]})
    print(f"{bundle.name}: {t['events']:,} events replayed")
    print(f"  steals {t['steals']} = extfrag events {t['extfrag_events']} "
          f"(grep -c: {total}) -> {'OK' if t['steals'] == total else 'MISMATCH'}")
    print(f"  per-culprit steals equal the raw recount: {got == per_key}")
    print(f"  mixed pageblocks at the end {ex['mixed_end']['by_zone']} (report: {engine_mixed}),"
          f" attributed {t['mixed_pageblocks_end_attributed']} of "
          f"{t['mixed_pageblocks_end']}")
    if top:
        key = (top["comm"], top["gfp"], top["order"])
        print(f"  top culprit: {top['label']} ({top['steals']} steals); raw recount's leaders "
              f"({most} steals): {sorted(leaders)} -> {'OK' if key in leaders else 'MISMATCH'}")
    print(f"  pollution {t['pollution_page_s']} page-s; pageblocks pinned only by trace "
          f"allocations: {t['pinned_pageblocks_end']}")


def main(argv: list[str]) -> None:
    names = argv or ["pt-a", "frag-a", "mixed-press"]
    for name in names:
        bundle = SHARED / name
        check(bundle)
        subprocess.run([sys.executable, "-m", "replay", "explain", str(bundle), "--json"],
                       capture_output=True, cwd=ROOT)  # warm numba and the ingest
        ex = cli_seconds("explain", str(bundle))
        rep = cli_seconds("report", str(bundle), "--plotlyjs", "cdn")
        print(f"  explain {ex:.2f} s vs report {rep:.2f} s ({ex / rep:.2f}x)")


if __name__ == "__main__":
    main(sys.argv[1:])
