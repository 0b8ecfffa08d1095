"""`pagereplay reconstruct`: follow the trace from its start snapshot; check against /proc."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from replay.commands.ingest_cmd import warn_damaged, warn_profile
from replay.engine.reconstruct import ReconstructResult
from replay.metrics.compaction import compaction_section
from replay.stream.runs import StreamJob


def print_compaction(comp: dict, out: Console) -> None:
    """What compaction did, as the trace and the replay saw it (nothing when none ran)."""
    t = comp.get("trace") or {}
    if not t.get("runs"):
        return
    rep = comp.get("replay") or {}
    line = (f"compaction: {t['runs']} runs ({t['direct_compactions']} direct attempts), free "
            f"scanner isolated {t['free_isolated']:,} pages (traced), migrated "
            f"{t['migrated']:,}")
    if rep:
        line += (f"; untraced fast search inferred {rep['inferred_untraced_pages']:,} pages"
                 + (f" (vmstat residual {comp['untraced_isolated_pages']:,})"
                    if "untraced_isolated_pages" in comp else "")
                 + f"; {rep['captures']} captures, {rep['targets_released']:,} targets released")
    out.print(line, highlight=False)


def print_result(r: ReconstructResult, source: str, seconds: float, out: Console,
                 why: str | None = None) -> None:
    n = len(r.events)
    bad = sum(r.inconsistencies.values())
    if r.end is None:
        out.print(f"{source}: no end snapshot, nothing to check against; started from "
                  f"{r.info.get('initial')}; {bad} inconsistent events (expected when the start "
                  f"state is a guess); {n:,} events in {seconds:.2f}s", highlight=False)
    else:
        verdict = "[bold green]EXACT[/]" if r.exact else "[bold red]NOT EXACT[/]"
        reason = f" ({escape(why)})" if why and not r.exact else ""
        out.print(f"{source}: {verdict} against /proc/buddyinfo{reason}; {bad} inconsistent "
                  f"events; {n:,} events in {seconds:.2f}s", highlight=False)
    t = Table(show_header=True, header_style="bold")
    t.add_column("check")
    t.add_column("zone")
    t.add_column("exact")
    t.add_column("L1 (blocks)", justify="right")
    for chk in (r.start, r.end, r.end_pagetypeinfo, r.end_pageblocks):
        if chk is None:
            continue
        for key in chk.exact_by_zone:
            t.add_row(chk.name, key, "yes" if chk.exact_by_zone[key] else "NO",
                      str(chk.l1_by_zone[key]))
    out.print(t)
    if bad:
        out.print("inconsistencies: " + ", ".join(f"{k} {v}" for k, v in
                                                   r.inconsistencies.items() if v))
    if r.profile is not None:
        out.print(f"kernel rules: {r.profile.model.name} ({r.profile.model.source}; "
                  f"release {r.profile.release or 'unknown'})", highlight=False)
    a = r.agreement
    out.print(f"agreement: {a.exact:,}/{a.decisions:,} takes as __rmqueue_smallest predicts "
              f"({100 * a.rate:.3f}%; {100 * a.determined_rate:.3f}% of the {a.determined:,} "
              "whose list order the trace determined)", highlight=False)
    c = r.counters
    out.print(f"pcp frees {c['pcp_frees']:,}, drains {c['drains']:,}, trylock direct frees "
              f"{c['trylock_direct_frees'] + c['softirq_direct_frees'] + c['late_direct_frees']},"
              f" steals {c['steals']}, list-type corrections {c['list_type_corrections']}",
              highlight=False)


def run_reconstruct(source: str, json_out: Path | None, machine: str | None, out: Console,
                    err: Console, kernel: str | None = None, progress=None) -> int:
    t0 = time.perf_counter()
    with StreamJob(source, machine, kernel, follow="requested", per_process=False,
                   progress=progress) as job:
        warn_damaged(job.trace.stats, err)
        r = job.observe(samples=False).recon
        warn_profile(r.profile, err)
        dt = time.perf_counter() - t0
        d = r.as_dict()
        d["source"] = source
        d["seconds"] = round(dt, 3)
        b = job.trace.bundle
        comp = compaction_section(job.obs_side.compaction_frame(),
                                  b.start.vmstat if b else None, b.end.vmstat if b else None,
                                  r.compaction, r.counters)
    d["compaction"] = comp
    d["verdict"] = ("exact" if r.exact else "not exact") + (f": {comp['verdict']}"
                                                            if comp.get("verdict") else "")
    if json_out is not None:
        if str(json_out) == "-":
            out.print_json(json.dumps(d))
            return 0 if r.exact or r.end is None else 1
        json_out.write_text(json.dumps(d, indent=2))
    print_result(r, source, dt, out, comp.get("verdict"))
    print_compaction(comp, out)
    if r.end is None:
        err.print("note: no end snapshot in this source, so nothing to check against")
        return 0
    return 0 if r.exact and not sum(r.inconsistencies.values()) else 1
