"""`pagereplay sweep`: the grid, the ingest cache, effects and outputs, a failed point, and a
real two-process LocalCluster on loopback running mixed-small x 2 settings via the CLI."""

from __future__ import annotations

import shutil
import time

import polars as pl
import pytest
from conftest import TRACES, run_cli

from replay.ci.inputs import compute_reports
from replay.ci.metrics import report_metrics
from replay.errors import SettingsError
from replay.sweep.cache import ensure_ingested, entry_dir, load_ingested
from replay.sweep.effects import headline, main_effects, top_per_metric
from replay.sweep.grid import knobs, parse_grid
from replay.sweep.run import TraceJob, make_row, run_on, trace_jobs
from replay.sweep.summary import render_summary
from replay.sweep.table import to_frame

BUNDLE = str(TRACES / "mixed-small")


# --- grid ----------------------------------------------------------------------------------

def test_grid_is_the_cartesian_product():
    pts = parse_grid(["mobility_grouping=on,off", "pcp_high=default,64,128"])
    assert len(pts) == 6 and knobs(pts) == ["mobility_grouping", "pcp_high"]
    assert pts[0].items == ("mobility_grouping=on",) and pts[0].values[1] == ("pcp_high", None)
    assert pts[5].label == "mobility_grouping=off, pcp_high=128"
    assert pts[5].values == (("mobility_grouping", False), ("pcp_high", 128))
    assert [p.label for p in parse_grid(None)] == ["default"]
    kernels = parse_grid(["kernel=default,6.1,6.12"])  # the trace's own kernel, then each
    assert [p.values[0][1] for p in kernels] == [None, "6.1", "6.12"]


@pytest.mark.parametrize("axes, message", [
    (["pcp_high"], "expected KEY=V1,V2"),
    (["pcp_high=1,,2"], "empty value"),
    (["nope=1"], "unknown setting"),
    (["pcp_high=x"], "not a whole number"),
    (["pcp_high=1,1"], "listed twice"),
    (["cpus=1", "cpus=2"], "given twice"),
    (["kernel=6.1,6.6"], "choose one of 6.1, 6.12"),
])
def test_bad_grids_are_settings_errors(axes, message):
    with pytest.raises(SettingsError, match=message):
        parse_grid(axes)


# --- cache ---------------------------------------------------------------------------------

def test_ingest_cache_is_built_once_and_follows_the_trace(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(TRACES / "mixed-small", bundle)
    cache = tmp_path / "cache"
    first = ensure_ingested(str(bundle), cache)
    stamp = first.stat().st_mtime_ns
    assert ensure_ingested(str(bundle), cache) == first and first.stat().st_mtime_ns == stamp
    assert not list(cache.glob(".*partial"))
    run = load_ingested(str(bundle), first)
    assert run.bundle is not None and run.data.events.num_rows > 100_000
    (bundle / "trace.txt.gz").touch()  # a re-captured trace is ingested again
    assert entry_dir(str(bundle), cache) != first.parent


# --- rows, effects and the summary ---------------------------------------------------------

def synthetic_rows() -> tuple[list[dict], list[str]]:
    """Two traces x mobility_grouping x pcp_high; mobility moves the unusable index by 40,
    pcp_high by 4; one point failed."""
    pts = parse_grid(["mobility_grouping=on,off", "pcp_high=default,64"])
    rows = []
    for t, base in (("a", 100.0), ("b", 300.0)):
        job = TraceJob(t, f"/x/{t}", 1)
        for p in pts:
            v = dict(p.values)
            u = base + (40 if v["mobility_grouping"] is False else 0) + (4 if v["pcp_high"] else 0)
            res = {"metrics": {"unusable_index_o9.all": u, "free_blocks_o9.total": 50 - u / 10},
                   "seconds": 1.0, "worker": "w"}
            if t == "b" and p.index == 3:
                res = {"error": "SettingsError: boom"}
            rows.append(make_row(job, p, res, {"metrics": {"agreement_rate": 0.99},
                                               "events": 10}))
    return rows, knobs(pts)


def test_effects_rank_the_knob_that_moved_fragmentation():
    rows, ks = synthetic_rows()
    df = to_frame(rows, ks)
    assert df.filter(pl.col("status") == "failed")["error"].to_list() == ["SettingsError: boom"]
    effects = main_effects(df, ks)
    top = top_per_metric(effects)
    assert top["simulated.unusable_index_o9.all"].knob == "mobility_grouping"
    assert headline(effects).knob == "mobility_grouping"
    assert headline(effects).metric == "simulated.unusable_index_o9.all"
    md = render_summary(df, ks, 12.0, 2)
    assert "moved fragmentation most: `mobility_grouping`" in md
    assert "## Failed points" in md and "SettingsError: boom" in md


def test_pageblock_order_is_compared_at_fixed_orders():
    """A smaller pageblock_order leaves the same free memory: at its own order it shows more
    'free pageblocks' (a change of unit), at the fixed reference order 9 none more; the
    unit-bound mixed-pageblock count is not ranked against it."""
    from replay.ci.metrics import side_scalars

    counts = [0] * 7 + [8, 0, 1, 0]  # eight 512 KiB blocks and one 2 MiB block
    side = {"end_free_blocks": {"0/DMA32": counts}, "end_free_pageblocks": {},
            "end_mixed_pageblocks": {"0/DMA32": 3}}
    own7 = side_scalars({**side, "end_free_pageblocks": {"0/DMA32": 10}}, 7, (9, 7))
    own9 = side_scalars({**side, "end_free_pageblocks": {"0/DMA32": 1}}, 9, (9, 7))
    assert own7["free_pageblocks.total"] == 10 and own9["free_pageblocks.total"] == 1
    assert own7["free_blocks_o9.total"] == own9["free_blocks_o9.total"] == 1
    assert own7["free_blocks_o7.total"] == own9["free_blocks_o7.total"] == 12
    assert own7["unusable_index_o9.all"] == own9["unusable_index_o9.all"] == 1000 * 8 // 12
    pts = parse_grid(["pageblock_order=7,9"])
    job = TraceJob("t", "/x/t", 1)
    rows = [make_row(job, p, {"metrics": {**m, "mixed_pageblocks.total": 3 * (1 + p.index)}},
                     {"metrics": {}}) for p, m in zip(pts, (own7, own9), strict=True)]
    df = to_frame(rows, knobs(pts))
    effects = {e.metric: e.mean_effect for e in main_effects(df, knobs(pts))}
    assert effects["simulated.free_blocks_o9.total"] == 0
    assert effects["simulated.free_blocks_o7.total"] == 0
    assert "simulated.mixed_pageblocks.total" not in effects
    md = render_summary(df, knobs(pts), 1.0, 1)
    assert "fixed reference orders (9 (2 MiB), 7 (512 KiB))" in md
    assert "unusable@o9 all" in md and "free 512 KiB blocks" in md


def test_sweep_dashboard_names_each_panels_knob():
    from replay.sweep.dashboard import build_figure

    rows, ks = synthetic_rows()
    fig = build_figure(to_frame(rows, ks), ks)
    titles = [fig.layout[k].title.text for k in fig.layout if k.startswith("xaxis")]
    per_knob = {k: titles.count(k) for k in ks}  # every panel, not only the bottom row's
    assert len(titles) == sum(per_knob.values()) and set(per_knob.values()) == {3}


def test_table_columns_lead_with_the_settings():
    rows, ks = synthetic_rows()
    df = to_frame(rows, ks)
    assert df.columns[:6] == ["trace", "source", "point", "settings", "mobility_grouping",
                              "pcp_high"]
    assert df.schema["mobility_grouping"] == pl.Boolean and df.schema["pcp_high"] == pl.Int64


# --- a sweep on Dask -----------------------------------------------------------------------

def test_failed_points_are_recorded_and_the_sweep_goes_on(tmp_path):
    """In-process cluster: a settings clash fails its point, a corrupt trace fails all of its
    points; every other point still runs."""
    from distributed import Client, LocalCluster

    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "trace.txt.gz").write_bytes(b"\x1f\x8b\x08\x00not gzip at all")
    pts = parse_grid(["pageblock_order=9,10", "max_order=10"])  # 10 >= 10 cannot run
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        res = run_on(client, trace_jobs([BUNDLE, str(bad)]), pts, tmp_path / "cache")
    status = {(r["trace"], r["settings"]): (r["status"], r["error"]) for r in res.rows}
    assert status[("mixed-small", "pageblock_order=9, max_order=10")] == ("ok", None)
    st, err = status[("mixed-small", "pageblock_order=10, max_order=10")]
    assert st == "failed" and "must be below max_order" in err
    assert all(s == "failed" and "corrupt gzip" in e
               for (t, _), (s, e) in status.items() if t == "corrupt")
    assert len(res.failed) == 3


def test_sweep_cli_on_a_two_process_local_cluster(tmp_path):
    """A real LocalCluster with two worker processes on loopback: mixed-small x 2 settings.
    The rows match what `compare` computes for the same settings."""
    t0 = time.perf_counter()
    r = run_cli("sweep", BUNDLE, "--grid", "mobility_grouping=on,off", "--workers", "2",
                "-o", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
    seconds = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert seconds < 60
    df = pl.read_parquet(tmp_path / "out" / "sweep.parquet")
    assert df.height == 2 and df["status"].to_list() == ["ok", "ok"]
    assert df["mobility_grouping"].to_list() == [True, False]
    assert df["worker"].str.starts_with("tcp://127.0.0.1:").all()
    reports = compute_reports(BUNDLE, [["mobility_grouping=on"], ["mobility_grouping=off"]])
    for row, rep in zip(df.iter_rows(named=True), reports, strict=True):
        want = report_metrics(rep).values
        for name in ("fallbacks_per_1000", "unusable_index_pb.0/DMA32", "free_pageblocks.total",
                     "mixed_pageblocks.total", "unusable_index_pb.all"):
            assert row[f"simulated.{name}"] == want[name], name
        assert row["agreement_rate"] == want["agreement_rate"]
    md = (tmp_path / "out" / "sweep.md").read_text()
    assert "moved fragmentation most" in md
    html = (tmp_path / "out" / "sweep.html").read_text()
    assert "mixed-small" in html and len(html) > 1_000_000  # plotly.js inlined
    assert "<script src=\"http" not in html
    assert list((tmp_path / "cache").iterdir())  # ingested once, kept for the next sweep


def test_sweep_cli_bad_input_exits_2(tmp_path):
    r = run_cli("sweep", BUNDLE, "--grid", "pcp_high=lots", "-o", str(tmp_path))
    assert r.returncode == 2 and "not a whole number" in r.stderr.decode()
    r = run_cli("sweep", str(tmp_path / "missing"), "-o", str(tmp_path))
    assert r.returncode == 2 and "no such file" in r.stderr.decode()

