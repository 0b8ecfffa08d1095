"""write_dashboard: one self-contained HTML file that draws every figure in headless Chromium."""

from __future__ import annotations

import copy
import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from replay.report.dashboard import busiest_zone, render_dashboard, write_dashboard

ROOT = Path(__file__).resolve().parent.parent
# the figures a report of a trace without compaction draws (mixed-small); PANELS adds the
# compaction panel, drawn when the trace shows compaction runs
FIGURES = ("free", "unusable", "fallbacks", "pageblocks", "pbmap", "culprits", "pcp",
           "buddyinfo", "matrix", "processes")
PANELS = FIGURES + ("compaction",)
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000",
)


@pytest.fixture(scope="module")
def report() -> dict:
    """A real compare dict built from the bundled traces/mixed-small."""
    from replay.pipeline import (
        explain_capture,
        explain_observed,
        explain_simulated,
        load,
        observe,
        simulate_run,
    )
    from replay.report.build import build

    run = load(ROOT / "traces" / "mixed-small")
    cap, sim_cap = explain_capture(run), explain_capture(run)
    recon, samples = observe(run, capture=cap)
    obs, state = explain_observed(run, recon, cap)
    sim = simulate_run(run, capture=sim_cap)
    explain = {"observed": obs, "simulated": explain_simulated(run, sim, sim_cap,
                                                               comm_by_pid=state.pid_comm)}
    return build(run, recon, samples, sim, kind="compare", explain=explain)


def report_only(d: dict) -> dict:
    """The same dict as `report` would give it: no simulated side anywhere."""
    r = copy.deepcopy(d)
    r["kind"] = "report"
    for key in ("simulated", "gaps", "page_summary_simulated"):
        r.pop(key, None)
    for key in ("timeseries", "fallback_events", "pcp_rates", "explain"):
        (r.get(key) or {}).pop("simulated", None)
    return r


def find_chromium() -> str | None:
    """The Chromium binary, if this machine has one."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def dump_dom(page: Path, tmp: Path, fragment: str = "") -> tuple[str, str]:
    """(DOM after load, Chromium's stderr) for `page` opened in headless Chromium."""
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium binary (apt-get install chromium)")
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}",
           "--dump-dom", page.resolve().as_uri() + fragment]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def status_of(dom: str) -> dict[str, str]:
    """The attributes of the page's #dash-status element."""
    tag = re.search(r'<div id="dash-status"[^>]*>', dom)
    assert tag, "no #dash-status in the dumped DOM"
    return {k: html.unescape(v) for k, v in re.findall(r'(data-[a-z]+)="([^"]*)"', tag.group())}


def figure_divs(dom: str) -> dict[str, tuple[bool, bool]]:
    """Per figure div: (is a plotly plot, has a rendered .main-svg)."""
    tags = list(re.finditer(r'<div\b[^>]*\bid="fig-([a-z]+)"[^>]*>', dom))
    out = {}
    for i, m in enumerate(tags):
        end = tags[i + 1].start() if i + 1 < len(tags) else len(dom)
        cls = re.search(r'\bclass="([^"]*)"', m.group())
        is_plot = bool(cls) and "js-plotly-plot" in cls.group(1).split()
        out[m.group(1)] = (is_plot, 'class="main-svg"' in dom[m.end():end])
    return out


def console_errors(stderr: str) -> list[str]:
    """Page console lines in Chromium's log that report an error."""
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]


def assert_drawn(dom: str, stderr: str, figures: tuple[str, ...] = FIGURES) -> None:
    status = status_of(dom)
    assert status["data-state"] == "done", status
    assert status["data-errors"] == "", status["data-errors"]
    errors = console_errors(stderr)
    assert errors == [], errors
    divs = figure_divs(dom)
    assert sorted(divs) == sorted(figures)
    not_drawn = [k for k, (plot, svg) in divs.items() if not (plot and svg)]
    assert not_drawn == [], f"figures not drawn: {not_drawn}"
    assert int(status["data-figures"]) == int(status["data-drawn"]) == len(figures)


# ---------------------------------------------------------------------------------------------
# the file


def test_inline_file_is_self_contained(report: dict, tmp_path: Path) -> None:
    path = write_dashboard(report, tmp_path / "sub" / "dash.html")
    assert path == tmp_path / "sub" / "dash.html" and path.is_file()
    text = path.read_text(encoding="utf-8")
    assert "<script src=" not in text and "https://" not in text.split("<body>")[1]
    assert text.count('class="fig"') == len(FIGURES)
    assert 'id="dash-status"' in text and 'id="zone"' in text
    assert path.stat().st_size < 6_000_000
    assert html.escape(report["verdict"]) in text


def test_cdn_file_is_small(report: dict, tmp_path: Path) -> None:
    path = write_dashboard(report, tmp_path / "dash.html", plotlyjs="cdn")
    text = path.read_text(encoding="utf-8")
    assert re.search(r'<script src="https://cdn\.plot\.ly/plotly-[0-9.]+\.min\.js"', text)
    assert path.stat().st_size < 1_000_000


def test_unknown_plotlyjs_mode(report: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="inline"):
        write_dashboard(report, tmp_path / "x.html", plotlyjs="directory")


def test_text_from_the_trace_cannot_break_out_of_scripts(report: dict) -> None:
    d = copy.deepcopy(report)
    d["per_process"][0]["comm"] = "</script><script>alert(1)</script>"
    d["trace"]["source"] = "<b>x</b>"
    text = render_dashboard(d, plotlyjs="cdn")
    assert "<script>alert(1)" not in text
    assert "<b>x</b>" not in text


def test_absent_sections_leave_notes(tmp_path: Path) -> None:
    text = render_dashboard({}, plotlyjs="cdn")
    assert text.count("(not drawn)") == len(PANELS)
    assert 'data-figures="0"' in text
    d = {"observed": {"allocs": 5, "end_free_blocks": {"0/Normal": [1] * 11}},
         "machine": {"zones": ["0/Normal"]}}
    text = render_dashboard(d, plotlyjs="cdn")
    assert 'id="fig-buddyinfo"' in text and 'data-figures="1"' in text


def test_busiest_zone(report: dict) -> None:
    assert busiest_zone(report) == "0/DMA32"  # DMA's free lists never move in mixed-small
    assert busiest_zone({}) is None


# ---------------------------------------------------------------------------------------------
# in a browser


@pytest.mark.browser
def test_compare_dashboard_draws_in_chromium(report: dict, tmp_path: Path) -> None:
    """Every figure drawn, no error; the zone in the address switches the per-zone figures
    (restyled after drawing) from the busiest zone to 0/DMA."""
    page = write_dashboard(report, tmp_path / "dash.html")
    dom, stderr = dump_dom(page, tmp_path, "#zone=0/DMA")
    assert_drawn(dom, stderr)
    assert dom.count('class="zonename">(zone 0/DMA)') == 3


@pytest.mark.browser
def test_report_dashboard_draws_in_chromium(report: dict, tmp_path: Path) -> None:
    """Without a simulation: one side per figure, opened on the busiest zone."""
    page = write_dashboard(report_only(report), tmp_path / "dash.html")
    dom, stderr = dump_dom(page, tmp_path)
    assert_drawn(dom, stderr)
    assert dom.count('class="zonename">(zone 0/DMA32)') == 3


@pytest.fixture(scope="module")
def compaction_report() -> dict:
    """A real report of the bundled traces/compact-frag (compact_memory ran)."""
    from replay.pipeline import load, observe
    from replay.report.build import build

    run = load(ROOT / "traces" / "compact-frag")
    recon, samples = observe(run)
    return build(run, recon, samples)


def test_compaction_panel_in_a_compaction_report(compaction_report: dict) -> None:
    d = compaction_report
    assert d["compaction"]["trace"]["runs"] == 2
    assert sum(d["compaction"]["rates"]["free_isolated"]) == 6023
    text = render_dashboard(d, plotlyjs="cdn")
    assert 'id="fig-compaction"' in text and "6,023 free pages isolated" in text


@pytest.mark.browser
def test_compaction_panel_draws_in_chromium(compaction_report: dict, tmp_path: Path) -> None:
    page = write_dashboard(compaction_report, tmp_path / "dash.html")
    dom, stderr = dump_dom(page, tmp_path)
    divs = figure_divs(dom)
    assert "compaction" in divs and all(divs["compaction"]), divs.get("compaction")
    assert console_errors(stderr) == []


@pytest.mark.browser
def test_clicking_the_pageblock_map_lists_its_culprits(report: dict, tmp_path: Path) -> None:
    """A click on a pageblock (sent through plotly's own click event) lists what keeps it
    from merging: the nearest-to-merging pageblock's blocker."""
    ex = report["explain"]["observed"]
    target = ex["merge_blockers"]["pageblocks"][0]
    row = ex["map"]["pageblocks"].index(target["pageblock"])
    page = write_dashboard(report, tmp_path / "dash.html")
    dom, stderr = dump_dom(page, tmp_path, f"#click={row},3")
    assert_drawn(dom, stderr)
    box = re.search(r'<div id="pbmap-culprits"[^>]*data-pageblock="(\d+)"[^>]*>(.*?)</div>',
                    dom, re.S)
    assert box, "no culprits listed after the click"
    assert int(box.group(1)) == target["pageblock"]
    assert "keep it from merging at the end" in box.group(2)
    assert html.escape(target["blockers"][0]["culprit"]) in box.group(2)
