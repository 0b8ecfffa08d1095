"""`pagereplay check`: metrics out of reports, thresholds, verdicts, JUnit and Markdown, and the
gate tripping on a real regression (mixed-small under mobility_grouping=off) via the CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import TRACES, run_cli

from replay.ci.gate import IMPROVED, PASS, REGRESSED, SKIPPED, evaluate, judge
from replay.ci.junit import junit_tree
from replay.ci.markdown import render_markdown
from replay.ci.metrics import ReportMetrics, report_metrics, side_scalars
from replay.ci.thresholds import DEFAULTS, Threshold, load_thresholds, match, merge_thresholds
from replay.errors import InputError, SettingsError

BUNDLE = str(TRACES / "mixed-small")


def side(fallbacks=2, allocs=1000, unusable_dma32=30, free_pb=(7, 160), mixed=(0, 1)) -> dict:
    """A report side shaped like build.side_metrics' output (two zones)."""
    zeros = [0] * 11
    return {
        "allocs": allocs, "fallbacks": fallbacks, "fragmenting_fallbacks": 1,
        "ownership_changes": fallbacks, "fallback_rate_per_1000": fallbacks * 1000 / allocs,
        "end_free_blocks": {"0/DMA": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                            "0/DMA32": [512, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]},
        "end_unusable_index": {"0/DMA": [0, 0, 0, 0, 0, 0, 0, 0, 0, 50, 100],
                               "0/DMA32": [*zeros[:9], unusable_dma32, 0]},
        "end_free_pageblocks": {"0/DMA": free_pb[0], "0/DMA32": free_pb[1]},
        "end_mixed_pageblocks": {"0/DMA": mixed[0], "0/DMA32": mixed[1]},
        "end_free_pages": {"0/DMA": 2048, "0/DMA32": 1024},
    }


def report(sim: dict | None = None, obs: dict | None = None, settings=None) -> dict:
    d = {"machine": {"pageblock_order": 9}, "settings": settings or {},
         "trace": {"source": "traces/x"}, "observed": obs or side(),
         "agreement": {"decisions": 100, "rate": 0.99}}
    if sim is not None:
        d["simulated"] = sim
    return d


# --- metrics -------------------------------------------------------------------------------

def test_side_scalars_per_zone_and_aggregates():
    m = side_scalars(side(), 9)
    assert m["fallbacks_per_1000"] == 2.0
    assert m["fragmenting_per_1000"] == 1.0
    assert m["unusable_index_pb.0/DMA32"] == 30 and m["unusable_index_pb.0/DMA"] == 50
    assert m["unusable_index_pb.worst"] == 50
    # all zones together: 512 order-0 pages of 512 + 1024 + 2048 free are below a pageblock
    assert m["unusable_index_pb.all"] == 512 * 1000 // (512 + 512 + 2048)
    assert m["free_pageblocks.total"] == 167 and m["mixed_pageblocks.total"] == 1


def test_report_metrics_prefers_simulated_and_says_so():
    r = report_metrics(report(sim=side(fallbacks=9), settings={"mobility_grouping": False}))
    assert r.side == "simulated" and r.values["fallbacks"] == 9
    assert r.settings == {"mobility_grouping": False}
    assert r.values["agreement_rate"] == 0.99
    assert report_metrics(report()).side == "observed"


def test_simulated_pageblock_order_follows_the_setting():
    s = side()
    s["end_unusable_index"]["0/DMA32"][7] = 77
    r = report_metrics(report(sim=s, settings={"pageblock_order": 7}))
    assert r.values["unusable_index_pb.0/DMA32"] == 77


def test_absent_and_odd_values_are_left_out_not_fatal():
    r = report_metrics({"observed": {"allocs": "many", "fallbacks": None,
                                     "end_unusable_index": {"0/DMA": [1, 2]}}, "agreement": {}})
    assert r.values == {}


# --- thresholds ----------------------------------------------------------------------------

def test_threshold_file_merges_over_defaults(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[metrics.fallbacks_per_1000]\nrelative = 0.5\n'
                 '[metrics."unusable_index_pb.0/DMA"]\nenabled = false\n'
                 '[metrics.allocs]\nworse = "lower"\nabsolute = 10\n')
    ts = load_thresholds(f)
    fb = match(ts, "fallbacks_per_1000")
    assert (fb.worse, fb.relative, fb.absolute) == ("higher", 0.5, 0.05)
    assert match(ts, "unusable_index_pb.0/DMA") is None  # one zone switched off
    assert match(ts, "unusable_index_pb.0/DMA32").pattern == "unusable_index_pb.*"
    assert match(ts, "allocs").worse == "lower"
    assert match(ts, "pcp_drained_pages") is None


def test_dotted_keys_name_metrics():
    ts = merge_thresholds({"inherit_defaults": False, "metrics": {
        "free_pageblocks": {"total": {"absolute": 5}, "worse": "lower"},
        "unusable_index_pb": {"0/DMA": {"enabled": False}}}})
    assert {t.pattern for t in ts} == {"free_pageblocks", "free_pageblocks.total",
                                       "unusable_index_pb.0/DMA"}
    assert match(ts, "free_pageblocks.total").absolute == 5
    assert match(ts, "unusable_index_pb.0/DMA") is None


def test_inherit_defaults_false_starts_empty():
    ts = merge_thresholds({"inherit_defaults": False,
                           "metrics": {"fallbacks": {"absolute": 1}}})
    assert [t.pattern for t in ts] == ["fallbacks"]


@pytest.mark.parametrize("text, error", [
    ('[metrics.x]\nworse = "up"\n', SettingsError),
    ('[metrics.x]\nrelative = -1\n', SettingsError),
    ('[metrics.x]\nlimit = 3\n', SettingsError),
    ('colour = "red"\n', SettingsError),
    ('[metrics.x\n', InputError),
])
def test_bad_threshold_files_are_one_clear_error(tmp_path, text, error):
    f = tmp_path / "t.toml"
    f.write_text(text)
    with pytest.raises(error):
        load_thresholds(f)


def test_missing_threshold_file():
    with pytest.raises(InputError, match="no such thresholds file"):
        load_thresholds(Path("/nonexistent/t.toml"))


# --- gate ----------------------------------------------------------------------------------

def test_judge_needs_every_limit_exceeded():
    t = Threshold("m", "higher", relative=0.10, absolute=0.05)
    assert judge("m", 0.1, 0.14, t).status == PASS  # +40% but under the 0.05 noise floor
    assert judge("m", 0.1, 0.16, t).status == REGRESSED  # +0.06 > 0.05 and > 0.01 (10%)
    assert judge("m", 1.0, 1.2, t).status == REGRESSED  # +0.2 > 0.1 (10%) and > 0.05
    assert judge("m", 1.0, 1.04, t).status == PASS  # within both
    assert judge("m", 1.0, 0.8, t).status == IMPROVED
    low = Threshold("pb", "lower", absolute=2)
    assert judge("pb", 100, 97, low).status == REGRESSED
    assert judge("pb", 100, 98, low).status == PASS


def test_relative_only_on_a_zero_baseline_fails_any_worsening():
    t = Threshold("m", "higher", relative=0.5)
    assert judge("m", 0, 1, t).status == REGRESSED
    assert judge("m", 0, 0, t).status == PASS


def test_absent_metrics_are_skipped_with_a_note():
    base = ReportMetrics("simulated", {"fallbacks_per_1000": 1.0, "unusable_index_pb.1/DMA32": 5})
    cur = ReportMetrics("simulated", {"fallbacks_per_1000": 1.0, "unusable_index_pb.0/DMA32": 5})
    res = evaluate(base, cur, list(DEFAULTS))
    by = {v.metric: v for v in res.verdicts}
    assert by["unusable_index_pb.0/DMA32"].status == SKIPPED
    assert "baseline" in by["unusable_index_pb.0/DMA32"].note
    assert "current" in by["unusable_index_pb.1/DMA32"].note
    assert by["agreement_rate"].note == "absent from both reports"
    assert res.passed


def test_junit_and_markdown_outputs():
    base = report_metrics(report(sim=side()))
    cur = report_metrics(report(sim=side(fallbacks=9, unusable_dma32=80),
                                settings={"mobility_grouping": False}))
    res = evaluate(base, cur, list(DEFAULTS))
    assert not res.passed
    root = junit_tree(res).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == len(res.verdicts)
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"fallbacks_per_1000", "unusable_index_pb.0/DMA32",
                      "unusable_index_pb.worst"}
    assert root.find("testsuite").get("failures") == "3"
    md = render_markdown(res)
    assert "| metric | baseline | current | change | threshold | verdict |" in md
    assert "mobility_grouping=False" in md and "REGRESSED" in md


# --- the CLI on a real bundle --------------------------------------------------------------

@pytest.fixture(scope="module")
def harmful(tmp_path_factory) -> tuple[object, Path]:
    """mixed-small under mobility_grouping=off gated against itself under defaults."""
    out = tmp_path_factory.mktemp("check")
    r = run_cli("check", BUNDLE, "--baseline", BUNDLE, "--set", "mobility_grouping=off",
                "--junit", str(out / "junit.xml"), "--markdown", str(out / "check.md"),
                "-o", str(out / "reports"), "--plotlyjs", "cdn")
    return r, out


def test_check_trips_on_a_harmful_setting(harmful):
    r, out = harmful
    assert r.returncode == 1, r.stderr.decode()
    text = r.stdout.decode()
    assert "REGRESSED" in text and "fallbacks_per_1000" in text
    assert "simulated side (mobility_grouping=False)" in text
    assert "simulated side (default settings)" in text
    root = ET.parse(out / "junit.xml").getroot()
    failed = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
    assert "fallbacks_per_1000" in failed
    assert "❌" in (out / "check.md").read_text()


def test_check_passes_for_the_same_settings():
    r = run_cli("check", BUNDLE, "--baseline", BUNDLE, "--set", "mobility_grouping=off",
                "--baseline-set", "mobility_grouping=off")
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert "passed" in r.stdout.decode()


def test_check_on_report_files(harmful):
    _, out = harmful
    cur = out / "reports" / "current" / "comparison.json"
    base = out / "reports" / "baseline"  # a report directory works too
    assert run_cli("check", str(cur), "--baseline", str(base)).returncode == 1
    assert run_cli("check", str(cur), "--baseline", str(cur)).returncode == 0


def test_check_thresholds_can_loosen_the_gate(harmful, tmp_path):
    _, out = harmful
    t = tmp_path / "loose.toml"
    t.write_text("inherit_defaults = false\n[metrics.free_pageblocks.total]\n"
                 "worse = \"lower\"\nabsolute = 50\n")
    cur = out / "reports" / "current" / "comparison.json"
    r = run_cli("check", str(cur), "--baseline", str(out / "reports" / "baseline"),
                "--thresholds", str(t))
    assert r.returncode == 0, r.stdout.decode()


def test_check_summary_against_comparison_notes_the_sides(harmful, tmp_path):
    _, out = harmful
    d = json.loads((out / "reports" / "baseline" / "comparison.json").read_text())
    del d["simulated"]
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(d))
    r = run_cli("check", str(summary), "--baseline", str(summary))
    assert r.returncode == 0
    assert "observed side" in r.stdout.decode()


@pytest.mark.parametrize("args, message", [
    (["/nonexistent.json", "--baseline", BUNDLE], "no such file"),
    ([BUNDLE, "--baseline", BUNDLE, "--set", "pcp_high=x"], "not a whole number"),
    ([BUNDLE, "--baseline", BUNDLE, "--baseline-set", "nope=1"], "unknown setting"),
])
def test_check_unusable_input_exits_2(args, message):
    r = run_cli("check", *args)
    assert r.returncode == 2
    assert message in r.stderr.decode()
    assert len(r.stderr.decode().strip().splitlines()) == 1


def test_check_rejects_bad_json_and_set_on_a_report(tmp_path, harmful):
    _, out = harmful
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = run_cli("check", str(bad), "--baseline", str(bad))
    assert r.returncode == 2 and "not valid JSON" in r.stderr.decode()
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    r = run_cli("check", str(other), "--baseline", str(other))
    assert r.returncode == 2 and "not a pagereplay report" in r.stderr.decode()
    cur = out / "reports" / "current" / "comparison.json"
    r = run_cli("check", str(cur), "--baseline", str(cur), "--set", "cpus=1")
    assert r.returncode == 2 and "--set applies to a trace" in r.stderr.decode()
