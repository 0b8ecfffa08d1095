"""`pagereplay explain`: who stole and polluted pageblocks, for how long, and what pins them."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from replay.commands.ingest_cmd import warn_damaged
from replay.commands.report_cmd import _json_default, parse_time
from replay.engine.simulate import Settings
from replay.stream.runs import StreamJob, both


def run_explain(source: str, time_window: str | None, outdir: Path | None, as_json: bool,
                symbols_file: Path | None, machine: str | None, sets: list[str] | None,
                top: int, out: Console, err: Console, progress=None) -> int:
    """Replay, explain, print the blame table (or JSON), write explain.json with -o."""
    window = parse_time(time_window)
    settings = Settings.parse(sets) if sets else None
    t0 = time.perf_counter()
    with StreamJob(source, machine, window=window, per_process=False,
                   progress=progress) as job:
        warn_damaged(job.trace.stats, err)
        symbols = job.symbols(symbols_file)  # relocated to the recording kernel (KASLR)
        if settings is not None:
            obs, sim = both(job, settings, False, True, symbols)
        else:
            obs, sim = job.observe(False, job.capture(), True, symbols), None
        d = {"source": source, "kind": "explain", "observed": obs.explain}
        if sim is not None:
            d["settings"] = settings.as_dict()
            d["simulated"] = sim.explain
    d["seconds"] = round(time.perf_counter() - t0, 3)
    text = json.dumps(d, indent=1, default=_json_default)
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "explain.json").write_text(text)
    if as_json:
        out.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        for side in ("observed", "simulated"):
            if side in d:
                print_explanation(d[side], side, top, out)
        if outdir is not None:
            out.print(f"wrote {outdir / 'explain.json'}", highlight=False)
    return 0


def blame_rich_table(ex: dict, title: str, top: int) -> Table:
    """The blame table as rich renders it."""
    t = Table(title=title, title_justify="left", show_lines=False, pad_edge=False)
    for name, justify in (("comm", "left"), ("gfp", "left"), ("order", "right"),
                          ("type", "left"), ("allocs", "right"), ("steals", "right"),
                          ("re-typed", "right"), ("mixed@end", "right"),
                          ("pollution page-s", "right"), ("pinned@end (pages)", "right")):
        t.add_column(name, justify=justify, overflow="fold")
    for r in ex["blame"]["rows"][:top]:
        comm = r["comm"] or "<...>"
        if r.get("callsite"):
            comm += f" @ {r['callsite']}"
        t.add_row(comm, r["gfp"] or "-", str(r["order"]), r["migratetype"],
                  f"{r['allocs']:,}", f"{r['steals']:,}", f"{r['pageblocks_retyped']:,}",
                  f"{r['mixed_pageblocks_end']:,}", f"{r['pollution_page_s']:,.3f}",
                  f"{r['pinned_pageblocks_end']:,} ({r['pinned_pages_end']:,})")
    return t


def print_explanation(ex: dict, side: str, top: int, out: Console) -> None:
    tot = ex["totals"]
    win = ex.get("time_window_s")
    where = f" in {win[0]:g}..{win[1]:g} s" if win else ""
    of = "in the whole replay" if win else "events"
    out.print(f"[bold]{side}[/]{where}: {tot['steals']:,} steals (of {tot['extfrag_events']:,} "
              f"mm_page_alloc_extfrag {of}), {tot['mixed_pageblocks_end']:,} mixed pageblocks "
              f"at the end ({tot['mixed_pageblocks_end_attributed']:,} attributed), "
              f"{tot['pollution_page_s']:,.3f} page-seconds of pollution, "
              f"{tot['pinned_pageblocks_end'] or 0:,} pageblocks pinned only by trace "
              f"allocations (pageblock = {ex['pageblock_kib']} KiB)", highlight=False)
    out.print(blame_rich_table(ex, f"blame ({side}; top {top} of "
                                   f"{ex['blame']['culprits']:,} culprits)", top))
    mixed = ex["mixed_end"]["pageblocks"]
    if mixed:
        t = Table(title="mixed pageblocks at the end and the live blocks that make them mixed",
                  title_justify="left")
        for c in ("pageblock", "zone", "type", "polluting pages", "polluters"):
            t.add_column(c, overflow="fold")
        for r in mixed[:top]:
            who = "; ".join(f"{b['culprit']} pfn {b['pfn']:#x} ({b['pages']} p, "
                            f"{b.get('polluting_s', 0):.2f} s)" for b in r["polluters"][:3])
            t.add_row(str(r["pageblock"]), r["zone"], r["type"], str(r["polluting_pages"]), who)
        out.print(t)
    pinned = (ex.get("merge_blockers") or {}).get("pageblocks", [])
    if pinned:
        t = Table(title="pageblocks nearest to merging: free these blocks (and drain the pcp "
                  "lists) and the pageblock merges", title_justify="left")
        for c in ("pageblock", "zone", "type", "free", "pcp", "blocker pages", "blockers"):
            t.add_column(c, overflow="fold")
        for r in pinned[: min(top, 10)]:
            who = "; ".join(f"{b['culprit']} pfn {b['pfn']:#x} ({b['pages']} p)"
                            for b in r["blockers"][:3])
            t.add_row(str(r["pageblock"]), r["zone"], r["type"], str(r["free_pages"]),
                      str(r["pcp_pages"]), str(r["blocker_pages"]), who)
        out.print(t)
