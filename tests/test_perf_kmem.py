"""page_summary against the real `perf kmem --page stat` on the same run (traces/perf-small).

traces/perf-small holds the ftrace text trace of one `memwork mixed 1 20` run and, recorded
around the same workload inside the same guest, `perf kmem --page record`'s perf.data
(perf.data.gz). Its SUMMARY was printed on the host by perf 6.1.192 and saved beside the trace:

    perf kmem --page -i perf.data stat                  > perf-kmem-page-stat.txt
    perf kmem --page --time 6.0,7.5 -i perf.data stat   > perf-kmem-page-stat-window.txt

perf-window.json records the windows and how they map onto the ftrace clock: perf's samples
were matched one to one with the ftrace events of the same CPU (same event, pfn, order and tid,
in the same order), so the ftrace windows below hold exactly the events perf saw. The same
checks run on perf.data itself, read natively (replay/trace/perfdata.py), with perf's own
--time window. Nothing here needs perf or QEMU: the tests read only traces/perf-small.

The deliberate differences of page_summary (docs/metrics.md section 4) are applied explicitly:
perf's KB of allocation requests and its alloc-only count include failed allocations, and its
migratetype columns are the pre-4.x enum order (its "Reclaimable" column is 6.1's Movable).
"""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from replay.metrics.peers import page_summary
from replay.trace.ingest import read_trace

BUNDLE = "perf-small"

SUMMARY_LINES = {
    "Total allocation requests": "alloc",
    "Total free requests": "free",
    "Total alloc+freed requests": "alloc_freed",
    "Total alloc-only requests": "alloc_only",
    "Total free-only requests": "free_only",
    "Total allocation failures": "failures",
}
# perf's column header -> the 6.1 migratetype it actually counts (perf prints the enum values
# 0..4 under the pre-4.x names: MIGRATE_MOVABLE is 1 on 6.1, perf calls 1 "Reclaimable").
PERF_COLUMNS = {
    "Unmovable": "Unmovable",
    "Reclaimable": "Movable",
    "Movable": "Reclaimable",
    "Reserved": "HighAtomic",
    "CMA/Isolated": "Isolate",
}
LINE = re.compile(r"^(Total [a-z+ -]+?)\s*:\s*(\d+)\s+\[\s*(\d+) KB \]$")


def parse_perf_summary(text: str) -> dict:
    """`perf kmem --page stat`'s SUMMARY: {key: (count, kb)} and `matrix` {order: {header: n}}."""
    out: dict = {}
    lines = text.splitlines()
    start = lines.index("SUMMARY (page allocator)")
    header = None
    matrix: dict[int, dict[str, int]] = {}
    for line in lines[start + 2:]:
        m = LINE.match(line.strip())
        if m:
            out[SUMMARY_LINES[m[1]]] = (int(m[2]), int(m[3]))
        elif line.startswith("Order"):
            header = line.split()[1:]
        elif header and re.match(r"^\s*\d+\s", line):
            order, *cells = line.split()
            assert len(cells) == len(header), line
            matrix[int(order)] = {h: 0 if c == "." else int(c)
                                  for h, c in zip(header, cells, strict=True)}
    assert set(out) == set(SUMMARY_LINES.values()), out
    assert header == list(PERF_COLUMNS), header
    assert sorted(matrix) == list(range(11))
    out["matrix"] = matrix
    return out


@pytest.fixture(scope="module")
def bundle(traces):
    return traces / BUNDLE


@pytest.fixture(scope="module")
def meta(bundle) -> dict:
    return json.loads((bundle / "perf-window.json").read_text())


@pytest.fixture(scope="module")
def events(bundle) -> pl.DataFrame:
    df = pl.from_arrow(read_trace(bundle).events)
    return df.with_columns(pl.col("event").cast(pl.Utf8))


@pytest.fixture(scope="module")
def perf_events(bundle) -> pl.DataFrame:
    df = pl.from_arrow(read_trace(bundle / "perf.data.gz").events)
    return df.with_columns(pl.col("event").cast(pl.Utf8))


CASES = {
    # name in perf-window.json "windows" -> the saved perf output
    "full": "perf-kmem-page-stat.txt",
    "window": "perf-kmem-page-stat-window.txt",
}


def _ftrace_window(meta: dict, name: str) -> tuple[float, float]:
    start, end = meta["windows"][name]["ftrace_time_s"]
    return (start, end)


@pytest.mark.parametrize("name", CASES)
def test_perf_summary_is_self_consistent(bundle, name):
    p = parse_perf_summary((bundle / CASES[name]).read_text())
    # perf subtracts alloc+freed from *all* requests (failures included).
    assert p["alloc_freed"][0] + p["alloc_only"][0] == p["alloc"][0]
    assert p["alloc_freed"][1] + p["alloc_only"][1] == p["alloc"][1]
    assert p["alloc_freed"][0] + p["free_only"][0] == p["free"][0]
    assert p["alloc_freed"][1] + p["free_only"][1] == p["free"][1]
    # the matrix counts successful allocations
    matrix_total = sum(sum(row.values()) for row in p["matrix"].values())
    assert matrix_total == p["alloc"][0] - p["failures"][0]


def _perf_window(meta: dict, name: str) -> tuple[float, float] | None:
    window = meta["windows"][name]["perf_time"]
    return tuple(window) if window else None


@pytest.mark.parametrize("source", ["trace.txt", "perf.data"])
@pytest.mark.parametrize("name", CASES)
def test_page_summary_matches_perf_kmem(bundle, meta, events, perf_events, name, source):
    p = parse_perf_summary((bundle / CASES[name]).read_text())
    if source == "perf.data":
        ours = page_summary(perf_events, time=_perf_window(meta, name))
    else:
        ours = page_summary(events, time=_ftrace_window(meta, name))

    # Same fields, same semantics.
    assert ours["alloc_requests"] == p["alloc"][0]
    assert (ours["free_requests"], ours["free_kb"]) == p["free"]
    assert (ours["alloc_and_freed"], ours["alloc_and_freed_kb"]) == p["alloc_freed"]
    assert (ours["free_only"], ours["free_only_kb"]) == p["free_only"]
    assert (ours["alloc_failures"], ours["alloc_failures_kb"]) == p["failures"]
    # Deliberate difference 2: perf's KB and alloc-only include the failed requests.
    assert ours["alloc_kb"] + ours["alloc_failures_kb"] == p["alloc"][1]
    assert ours["alloc_only"] + ours["alloc_failures"] == p["alloc_only"][0]
    assert ours["alloc_only_kb"] + ours["alloc_failures_kb"] == p["alloc_only"][1]
    # Deliberate difference 1: perf's migratetype labels are the pre-4.x enum order.
    for order in range(11):
        perf_row = {PERF_COLUMNS[h]: n for h, n in p["matrix"][order].items()}
        assert ours["by_order_migratetype"][order] == perf_row, order


@pytest.mark.parametrize("name", CASES)
def test_ftrace_window_holds_exactly_perfs_events(bundle, meta, events, name):
    """perf's alloc+free requests are its samples (it records only these two events); the
    ftrace window holds that many mm_page_alloc + mm_page_free lines."""
    p = parse_perf_summary((bundle / CASES[name]).read_text())
    start, end = _ftrace_window(meta, name)
    inside = events.filter(
        pl.col("event").is_in(["mm_page_alloc", "mm_page_free"])
        & pl.col("ts_ns").is_between(round(start * 1e9), round(end * 1e9))
    )
    assert inside.height == p["alloc"][0] + p["free"][0] == meta["windows"][name]["events"]
    if name == "full":
        # per CPU, the first and last ftrace event matched to perf's first and last sample
        for cpu, m in meta["ftrace_match_by_cpu"].items():
            mine = inside.filter(pl.col("cpu") == int(cpu)).sort("seq")
            assert (mine["seq"][0], mine["seq"][-1], mine.height) == (
                m["first_seq"], m["last_seq"], m["events"]), cpu


def test_perf_labels_movable_as_reclaimable(bundle):
    """The label quirk is exercised: nearly all order-0 allocations are Movable (page cache,
    anon), and perf prints them under "Reclaimable"."""
    p = parse_perf_summary((bundle / "perf-kmem-page-stat.txt").read_text())
    assert p["matrix"][0]["Reclaimable"] > 0.9 * p["alloc"][0]


def test_trace_lost_nothing(bundle):
    overruns = re.findall(r"^overrun: (\d+)$", (bundle / "ringstats").read_text(), re.M)
    assert overruns == ["0", "0"]


def test_perf_data_holds_perfs_samples(meta, perf_events):
    """perf.data read natively: every sample perf counted, per CPU as perf-window.json says."""
    assert perf_events.height == meta["perf_samples"]["total"]
    by_cpu = dict(perf_events.group_by("cpu").len().iter_rows())
    assert by_cpu == {int(c): n for c, n in
                      meta["perf_samples"]["mm_page_alloc_or_free_by_cpu"].items()}
    assert perf_events["ts_ns"].min() / 1e9 == pytest.approx(
        meta["perf_samples"]["first_sample_s"], abs=1e-9)
    assert perf_events["ts_ns"].max() / 1e9 == pytest.approx(
        meta["perf_samples"]["last_sample_s"], abs=1e-9)
