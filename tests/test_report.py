"""report and compare from the CLI: files written, schema keys, numbers checked by hand."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from replay.trace.snapshots import open_bundle

REQUIRED_SIDE = ("allocs", "fallbacks", "fragmenting_fallbacks", "ownership_changes",
                 "fallback_rate_per_1000", "pcp_refill_blocks", "pcp_drained_pages",
                 "end_free_blocks", "end_unusable_index", "end_fragmentation_index")


def unusable_by_hand(counts: list[int], order: int) -> int:
    """mm/vmstat.c unusable_free_index(), written out."""
    free_pages = sum(n << k for k, n in enumerate(counts))
    suitable = sum(n << (k - order) for k, n in enumerate(counts) if k >= order)
    if free_pages == 0:
        return 1000
    return (free_pages - (suitable << order)) * 1000 // free_pages


@pytest.fixture(scope="module")
def compared(tmp_path_factory, traces):
    out = tmp_path_factory.mktemp("cmp")
    r = run_cli("compare", str(traces / "mixed-small"), "-o", str(out), "--plotlyjs", "cdn")
    assert r.returncode == 0, r.stderr.decode()
    return out, json.loads((out / "comparison.json").read_text()), r.stdout.decode()


def test_compare_writes_the_three_files(compared):
    out, d, stdout = compared
    assert (out / "report.md").read_text().startswith("#")
    html = (out / "dashboard.html").read_text()
    assert "plotly" in html and len(html) < 3_000_000
    assert "EXACT" in stdout


def test_comparison_json_schema(compared):
    _, d, _ = compared
    assert d["schema_version"] == 1
    for key in ("trace", "observed", "simulated", "reconstruct", "agreement", "settings",
                "per_process", "page_summary"):
        assert key in d, key
    for side in ("observed", "simulated"):
        for key in REQUIRED_SIDE:
            assert key in d[side], (side, key)
    assert set(d["observed"]["end_free_blocks"]) == {"0/DMA", "0/DMA32"}
    assert d["reconstruct"]["exact"] is True
    assert d["reconstruct"]["inconsistencies"] == {k: 0 for k in d["reconstruct"]
                                                   ["inconsistencies"]}
    assert d["agreement"]["rate"] >= 0.999 and d["agreement"]["decisions"] > 30_000
    for key in ("source", "events_by_kind", "lines", "bad_lines", "lost_events"):
        assert key in d["trace"]


def test_observed_end_indices_equal_the_kernels_formula_on_end_buddyinfo(compared, traces):
    _, d, _ = compared
    end = open_bundle(traces / "mixed-small").end.buddyinfo
    for (node, zone), counts in end.items():
        key = f"{node}/{zone}"
        assert d["observed"]["end_free_blocks"][key] == counts
        assert d["observed"]["end_unusable_index"][key] == [
            unusable_by_hand(counts, o) for o in range(11)]
    # DMA32 at the end of mixed-small: 80 free order-10 blocks, so every order is available
    assert d["observed"]["end_fragmentation_index"]["0/DMA32"] == [-1000] * 11


def test_page_summary_matches_grep(compared):
    _, d, _ = compared
    ps = d["page_summary"]
    # zcat trace.txt.gz | grep -c ' mm_page_alloc: ' -> 32130; replay starts at the
    # start.buddyinfo marker (line 178), after 47 of them
    assert ps["alloc_requests"] == 32130 - 47
    assert ps["alloc_failures"] == 0
    top = d["per_process"][0]
    assert top["comm"] == "memwork" and top["allocs"] > 10_000


def test_report_with_time_window(tmp_path, traces):
    r = run_cli("report", str(traces / "mixed-small"), "-o", str(tmp_path), "--time",
                "4.0,4.5", "--plotlyjs", "cdn")
    assert r.returncode == 0, r.stderr.decode()
    d = json.loads((tmp_path / "summary.json").read_text())
    assert d["kind"] == "report" and "simulated" not in d
    assert d["time_window_s"] == [4.0, 4.5]
    assert 0 < d["page_summary"]["alloc_requests"] < 32130
    assert all(4.0 <= t <= 4.5 for t in d["timeseries"]["observed"]["t_s"])


def test_bad_time_window_is_one_clear_line(tmp_path, traces):
    r = run_cli("report", str(traces / "mixed-small"), "-o", str(tmp_path), "--time", "5,4")
    assert r.returncode == 2 and b"END must be after START" in r.stderr
    assert b"Traceback" not in r.stderr
