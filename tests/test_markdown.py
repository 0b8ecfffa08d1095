"""render_markdown: structure, numbers and labels of the PR-comment report."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from replay.report.markdown import (
    fmt_pct,
    fmt_signed,
    fmt_thousandths,
    order_type_matrix,
    render_markdown,
    table,
)

ROOT = Path(__file__).resolve().parent.parent
ZONE_FREE = [394, 256, 240, 180, 110, 52, 15, 15, 3, 1, 28]
ZONE_SIM = [375, 241, 230, 177, 118, 53, 11, 16, 4, 2, 28]


def _side(free: list[int], allocs: int, fallbacks: int, refill: int) -> dict:
    return {
        "allocs": allocs, "fallbacks": fallbacks, "fragmenting_fallbacks": 1,
        "ownership_changes": fallbacks - 1, "severe_fallbacks": 1, "moderate_fallbacks": 0,
        "fallback_rate_per_1000": 1000 * fallbacks / allocs,
        "fallbacks_by_pair": {"Unmovable": {"Movable": fallbacks - 1}, "Reclaimable":
                              {"Movable": 1}},
        "pcp_refill_blocks": refill, "pcp_refills": 100, "pcp_drained_pages": 5000,
        "pcp_drains": 20,
        "end_free_blocks": {"0/DMA32": free},
        "end_unusable_index": {"0/DMA32": [0, 9, 22, 47, 83, 128, 170, 194, 242, 262, 275]},
        "end_fragmentation_index": {"0/DMA32": [-1000] * 10 + [-500]},
        "end_largest_free_order": {"0/DMA32": 10},
        "end_free_pageblocks": {"0/DMA32": 57},
        "end_free_pages": {"0/DMA32": sum(n << o for o, n in enumerate(free))},
        "end_pageblocks_by_type": {"0/DMA32": {"Unmovable": 89, "Movable": 151,
                                               "Reclaimable": 8, "HighAtomic": 0,
                                               "Isolate": 0}},
        "end_mixed_pageblocks": {"0/DMA32": 2},
    }


def make_report(compare: bool = True) -> dict:
    """A hand-made report dict of build()'s shape (docs/report-schema.md)."""
    procs = [{"comm": f"proc{i}", "pid": 100 + i, "allocs": 1000 - i, "allocs_under_lock": i,
              "freed_direct": 0, "freed_batched": 0, "pcpu_pages_drained": 0, "pcpu_drains": 0,
              "pcpu_refills": 0, "fallbacks": 0, "fragmenting": 0, "migratetype_changed": 0,
              "severe": 0, "moderate": 0} for i in range(20)]
    procs.append(dict(procs[0], comm="<idle>", pid=0, allocs=5))
    procs.append(dict(procs[0], comm="a|b", pid=7, allocs=2000))
    d = {
        "schema_version": 1,
        "kind": "compare" if compare else "report",
        "trace": {"source": "traces/frag-a", "kernel_release": "6.1.0-56-amd64",
                  "layout": "ftrace", "lines": 400137, "events": 400100,
                  "events_by_kind": {"mm_page_alloc": 109448}, "bad_lines": 0,
                  "lost_events": 0, "markers": 24, "cpus": 2, "start_s": 2.0, "end_s": 5.5,
                  "replayed_from_event": 574},
        "time_window_s": None,
        "machine": {"zones": ["0/DMA32"], "cpus": 2, "pageblock_order": 9, "nodes": 1},
        "reconstruct": {"checked": True, "exact": False, "l1_by_zone": {"0/DMA32": 3},
                        "inconsistencies": {"alloc_of_free_page": 4, "free_of_free_page": 0},
                        "expected": {"0/DMA32": ZONE_FREE}, "reconstructed": {"0/DMA32":
                                                                               ZONE_FREE},
                        "start_exact": True, "end_pagetypeinfo_exact": False,
                        "end_pageblocks_exact": None},
        "agreement": {"decisions": 105923, "exact": 105885, "rate": 0.999641,
                      "determined": 105802, "determined_exact": 105802,
                      "determined_rate": 1.0,
                      "by_order": {"0": {"decisions": 104408, "exact": 104393}},
                      "by_migratetype": {"Movable": {"decisions": 97371, "exact": 97368}},
                      "by_fallback": {"fallback": {"decisions": 11, "exact": 11}}},
        "observed": _side(ZONE_FREE, 109398, 11, 105923),
        "settings": {"pcp_batch": 31} if compare else {},
        "per_process": procs,
        "page_summary": {"alloc_requests": 109398, "alloc_kb": 437592, "free_requests": 64745,
                         "free_kb": 258980, "alloc_and_freed": 60000, "alloc_only": 49398,
                         "free_only": 4745, "alloc_failures": 0,
                         "by_order_migratetype": {
                             "0": {"Unmovable": 6671, "Movable": 100252, "Reclaimable": 1148,
                                   "HighAtomic": 0, "Isolate": 0},
                             "2": {"Unmovable": 1209, "Movable": 0, "Reclaimable": 0,
                                   "HighAtomic": 0, "Isolate": 0},
                             "1": {"Unmovable": 6, "Movable": 0, "Reclaimable": 110,
                                   "HighAtomic": 0, "Isolate": 0},
                             "3": {"Unmovable": 0, "Movable": 0, "Reclaimable": 0,
                                   "HighAtomic": 0, "Isolate": 0}}},
        "live_pages": 1234,
        "verdict": "reconstruction NOT exact (L1 3 blocks); 4 inconsistent events",
    }
    if compare:
        d["simulated"] = _side(ZONE_SIM, 109398, 13, 106480)
        d["gaps"] = {
            "allocs": {"observed": 109398, "simulated": 109398, "diff": 0, "relative": 0.0},
            "fallbacks": {"observed": 11, "simulated": 13, "diff": 2,
                          "relative": 0.18181818},
            "fragmenting_fallbacks": {"observed": 1, "simulated": 1, "diff": 0,
                                      "relative": 0.0},
            "end_free_blocks_l1": {"0/DMA32": 63},
        }
    return d


def sections(md: str) -> list[str]:
    return re.findall(r"^###+ (.+)$", md, flags=re.M)


def split_row(line: str) -> list[str]:
    """The cells of a GFM table row (escaped pipes stay inside their cell)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def tables(md: str) -> list[list[list[str]]]:
    """Every table as rows of cells (header first, the alignment rule dropped)."""
    out, cur = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(split_row(line))
        elif cur:
            out.append([cur[0]] + cur[2:])
            cur = []
    return out


def find_table(md: str, first_header: str) -> list[list[str]]:
    return next(t for t in tables(md) if t[0][0] == first_header)


def test_verdict_comes_first_in_bold() -> None:
    md = render_markdown(make_report())
    lines = [line for line in md.splitlines() if line.strip()]
    assert lines[0].startswith("## pagereplay compare")
    assert lines[1] == "**reconstruction NOT exact (L1 3 blocks); 4 inconsistent events**"


def test_sections_in_order() -> None:
    names = sections(render_markdown(make_report()))
    expected = ["Key numbers", "Reconstruction fidelity", "Agreement with the kernel's block "
                "choices", "End-of-trace fragmentation per zone", "Zone 0/DMA32",
                "Fallbacks by migratetype", "Per-CPU page lists",
                "Top 15 of 22 processes by allocations",
                "Page allocation summary (perf kmem page)", "Settings", "Trace"]
    assert names == expected


def test_every_table_is_rectangular() -> None:
    md = render_markdown(make_report())
    for t in tables(md):
        widths = {len(row) for row in t}
        assert len(widths) == 1, t[0]
    rules = [line for line in md.splitlines() if re.fullmatch(r"\|( (:---|---:) \|)+", line)]
    assert len(rules) == len(tables(md))


def test_key_numbers_observed_simulated_and_gaps() -> None:
    t = find_table(render_markdown(make_report()), "metric")
    assert t[0] == ["metric", "unit", "observed", "simulated", "gap (sim − obs)",
                    "gap (relative)"]
    rows = {r[0]: r for r in t[1:]}
    assert rows["allocations"][1:] == ["requests", "109,398", "109,398", "0", "0.0%"]
    assert rows["fallbacks (mm_page_alloc_extfrag)"][2:] == ["11", "13", "+2", "+18.2%"]
    # gaps computed when build's gaps lack the metric
    assert rows["pcp refill"][2:] == ["105,923", "106,480", "+557", "+0.5%"]
    assert rows["fallback rate"][1] == "per 1,000 allocations"


def test_report_kind_has_observed_column_only() -> None:
    md = render_markdown(make_report(compare=False))
    t = find_table(md, "metric")
    assert t[0] == ["metric", "unit", "observed"]
    assert "simulated" not in "".join(sections(md))
    assert "## pagereplay report" in md


def test_reconstruct_per_zone_and_inconsistencies() -> None:
    md = render_markdown(make_report())
    t = find_table(md, "zone")
    assert t[1][:3] == ["0/DMA32", "❌ differs", "3"]
    assert t[0][2] == "L1 distance (blocks)"
    inc = find_table(md, "inconsistency")
    assert inc[1:] == [["alloc_of_free_page", "4"]]  # only the non-zero kinds
    assert "end pagetypeinfo NOT exact" in md
    assert "kpageflags" not in md  # end_pageblocks_exact None: not checked, not shown


def test_zone_tables_per_order() -> None:
    md = render_markdown(make_report())
    t = find_table(md, "order →")
    assert t[0] == ["order →"] + [str(o) for o in range(11)]
    rows = {r[0]: r[1:] for r in t[1:]}
    assert rows["block size"][0] == "4 KiB" and rows["block size"][10] == "4 MiB"
    assert rows["free blocks, observed"] == [f"{n:,}" for n in ZONE_FREE]
    assert rows["free blocks, simulated"] == [f"{n:,}" for n in ZONE_SIM]
    assert rows["unusable index (0–1), observed"][10] == "0.275"
    assert rows["fragmentation index (−1…1), simulated"][10] == "-0.500"
    summary = find_table(md, "at end of trace")
    by = {r[0]: r[1:] for r in summary[1:]}
    assert by["free pageblocks"] == ["57", "57"]
    assert by["Movable pageblocks"] == ["151", "151"]
    assert "HighAtomic pageblocks" not in by  # zero on both sides


def test_fallback_pairs() -> None:
    t = find_table(render_markdown(make_report()), "requested type")
    assert t[0] == ["requested type", "fell back to", "observed (events)", "simulated (events)"]
    assert ["Unmovable", "Movable", "10", "12"] in t


def test_pcp_section_has_batch_sizes() -> None:
    md = render_markdown(make_report())
    pcp = md.split("### Per-CPU page lists")[1].split("###")[0]
    rows = {r[0]: r for r in tables(pcp)[0][1:]}
    assert rows["blocks per refill"][1:4] == ["blocks/batch", "1,059.2", "1,064.8"]
    assert rows["pages per drain"][2] == "250.0"


def test_processes_top_15_by_allocs_escaped() -> None:
    md = render_markdown(make_report())
    t = find_table(md, "comm")
    assert len(t) == 16
    assert t[1][:3] == ["a\\|b", "7", "2,000"]  # the pipe escaped, busiest first
    assert t[2][:3] == ["proc0", "100", "1,000"]
    assert "&lt;idle&gt;" not in md  # 5 allocs: not in the top 15
    d = make_report()
    d["per_process"] = d["per_process"][-2:]
    md = render_markdown(d)
    assert "| &lt;idle&gt; | 0 | 5 |" in md and "All 2 processes" in md


def test_page_summary_matrix_labels() -> None:
    md = render_markdown(make_report())
    totals = find_table(md, "total")
    assert ["allocation requests", "109,398", "437,592"] in totals
    t = find_table(md, "order")
    assert t[0] == ["order", "block size", "Unmovable (requests)", "Movable (requests)",
                    "Reclaimable (requests)", "HighAtomic (requests)", "Isolate (requests)",
                    "total (requests)"]
    rows = {r[0]: r for r in t[1:]}
    assert list(rows) == ["0", "1", "2", "all"]  # numeric order, empty top order trimmed
    assert rows["0"][2:5] == ["6,671", "100,252", "1,148"]
    assert rows["1"][4] == "110"  # Reclaimable, not Movable
    assert rows["all"][-1] == "109,396"
    assert "live): 1,234" in md


def test_settings() -> None:
    md = render_markdown(make_report())
    assert find_table(md, "setting")[1] == ["pcp_batch", "31"]
    d = make_report()
    d["settings"] = {}
    assert "The kernel's own (no `--set`)." in render_markdown(d)


@pytest.mark.parametrize("drop", ["reconstruct", "agreement", "observed", "simulated", "gaps",
                                  "per_process", "page_summary", "trace", "machine",
                                  "settings", "verdict", "live_pages"])
def test_missing_sections_are_skipped(drop: str) -> None:
    d = make_report()
    del d[drop]
    md = render_markdown(d)
    assert md.endswith("\n")
    for t in tables(md):
        assert len({len(r) for r in t}) == 1


def test_unchecked_reconstruction_and_empty_dict() -> None:
    d = copy.deepcopy(make_report())
    d["reconstruct"] = {"checked": False, "exact": False, "l1_by_zone": {},
                        "inconsistencies": {}}
    assert "could not be checked" in render_markdown(d)
    assert render_markdown({}).startswith("## pagereplay report")


def test_formatters() -> None:
    assert fmt_signed(-0.0001, 2) == "0.00"
    assert fmt_signed(5) == "+5" and fmt_signed(-5) == "-5"
    assert fmt_pct(-0.00001, signed=True) == "0.0%" and fmt_pct(None) == "–"
    assert fmt_thousandths(-500) == "-0.500" and fmt_thousandths(1000) == "1.000"
    assert table(["a", "b"], [["x|y", "<z>"]]).splitlines()[2] == "| x\\|y | &lt;z&gt; |"
    orders, types, counts = order_type_matrix({10: {"Movable": 1}, 2: {"Unmovable": 3}})
    assert orders == ["2", "10"] and types == ["Unmovable", "Movable"]
    assert counts == [[3, 0], [0, 1]]


def test_real_report_from_mixed_small() -> None:
    """A real compare dict (traces/mixed-small) renders with every section."""
    from replay.pipeline import load, observe, simulate_run
    from replay.report.build import build

    run = load(ROOT / "traces" / "mixed-small")
    recon, samples = observe(run)
    d = build(run, recon, samples, simulate_run(run), kind="compare")
    md = render_markdown(d)
    names = sections(md)
    for name in ("Key numbers", "Reconstruction fidelity", "Fallbacks by migratetype",
                 "Per-CPU page lists", "Page allocation summary (perf kmem page)", "Settings"):
        assert name in names
    assert f"**{d['verdict']}**" in md
    assert f"{d['observed']['allocs']:,}" in md
    for zone in d["machine"]["zones"]:
        assert f"#### Zone {zone}" in md
    for t in tables(md):
        assert len({len(r) for r in t}) == 1
