"""Fidelity over every shared bundle: ingest vs grep/awk, reconstruct exactness, agreement,
simulate-vs-trace gaps.   python benchmarks/fidelity.py [--no-grep] [BUNDLE ...]
(default: every shared bundle; name others, e.g. held-out captures, to measure them)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import bundles  # noqa: E402
from replay.commands.simulate_cmd import model_counts, traced_counts  # noqa: E402
from replay.engine.events import marker_positions  # noqa: E402
from replay.engine.reconstruct import reconstruct  # noqa: E402
from replay.engine.simulate import simulate  # noqa: E402
from replay.pipeline import load  # noqa: E402

AWK = r"""function hex(s,  i,n,d) {n=0; s=tolower(s); sub(/^0x/,"",s);
for(i=1;i<=length(s);i++){d=index("0123456789abcdef",substr(s,i,1))-1; n=n*16+d} return n}
{for(i=1;i<=NF;i++) if ($i ~ /^mm_page[a-z_]*:$/) {ev=substr($i,1,length($i)-1);
for(j=i+1;j<=NF;j++) if ($j ~ /^pfn=/) s[ev]+=hex(substr($j,5)); c[ev]++; break}}
END {for (e in c) printf "%s %d %.0f\n", e, c[e], s[e]}"""


def grep_counts(bundle: Path) -> dict[str, tuple[int, int]]:
    out = subprocess.run(f"zcat {bundle / 'trace.txt.gz'} | awk '{AWK}'", shell=True,
                         capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        ev, c, s = line.split()
        res[ev] = (int(c), int(s))
    return res


def ingest_counts(data) -> dict[str, tuple[int, int]]:
    import polars as pl

    df = (pl.from_arrow(data.events.select(["event", "pfn"]))
          .filter(pl.col("event").cast(pl.Utf8).str.starts_with("mm_page"))
          .group_by("event").agg(pl.len(), pl.col("pfn").sum()))
    return {r["event"]: (r["len"], r["pfn"] or 0) for r in df.iter_rows(named=True)}


def main() -> None:
    do_grep = "--no-grep" not in sys.argv
    paths = [Path(a) for a in sys.argv[1:] if not a.startswith("--")] or bundles()
    rows = []
    for b in paths:
        t0 = time.perf_counter()
        run = load(b)
        t_ingest = time.perf_counter() - t0
        ok_ingest = None
        if do_grep:
            ok_ingest = grep_counts(b) == ingest_counts(run.data)
        r = reconstruct(run.data, run.bundle)
        sim = simulate(run.data, run.bundle)
        i0 = marker_positions(run.data, r.events.seq).get("start.buddyinfo begin", 0)
        obs = traced_counts(run.data.events.slice(i0))
        mod = model_counts(sim.counters, sim.events)
        bad = sum(r.inconsistencies.values())
        rows.append((b.name, run.data.stats.lines, run.data.stats.lost_events, ok_ingest,
                     r.start.exact if r.start else None, r.exact, bad,
                     r.end_pagetypeinfo.exact if r.end_pagetypeinfo else None,
                     r.end_pageblocks.exact if r.end_pageblocks else None,
                     r.agreement.rate, r.agreement.determined_rate, obs, mod, t_ingest))
    print("| bundle | lines | lost | ingest = grep/awk | start exact | end exact | "
          "inconsistent | end pagetypeinfo | end pageblocks | agreement | determined |")
    print("|---|---:|---:|---|---|---|---:|---|---|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:,} | {r[2]:,} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {r[7]} | "
              f"{r[8]} | {100 * r[9]:.3f}% | {100 * r[10]:.3f}% |")
    print()
    keys = ["pcp_refill_blocks", "pcp_drained_pages", "fallbacks", "fragmenting_fallbacks",
            "ownership_changes"]
    print("| bundle | " + " | ".join(f"{k} trace/model" for k in keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for r in rows:
        obs, mod = r[11], r[12]
        cells = []
        for k in keys:
            gap = f" ({(mod[k] - obs[k]) / obs[k] * 100:+.1f}%)" if obs[k] else ""
            cells.append(f"{obs[k]:,}/{mod[k]:,}{gap}")
        print(f"| {r[0]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
