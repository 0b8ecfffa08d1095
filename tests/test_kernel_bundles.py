"""Kernel profiles on real captures: a Linux 6.12 bundle and a 32-bit HighMem one end to end,
the upgrade what-if both ways (frag-a and k612-frag ran the same workload on the same guest
under 6.1 and 6.12), and the warning for a kernel with no profile of its own."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_cli

from replay.commands.simulate_cmd import model_counts, traced_counts
from replay.engine.reconstruct import reconstruct
from replay.engine.simulate import Settings, simulate
from replay.pipeline import load


@pytest.fixture(scope="module")
def k612(traces):
    return load(traces / "k612-frag")


@pytest.fixture(scope="module")
def frag_a(traces):
    return load(traces / "frag-a")


def _counts(run, kernel=None):
    sim = simulate(run.data, run.bundle, Settings({"kernel": kernel} if kernel else {}))
    obs = traced_counts(run.data.events.slice(sim.i_start))
    return obs, model_counts(sim.counters, sim.events), sim


def test_612_bundle_reconstructs_exactly(k612):
    r = reconstruct(k612.data, k612.bundle)
    assert r.profile.trace.name == "6.12/x86_64" and not r.profile.warnings
    assert r.exact and r.end_pagetypeinfo.exact and r.end_pageblocks.exact
    assert sum(r.inconsistencies.values()) == 0
    assert r.agreement.rate >= 0.999
    # 6.12's extfrag-only takes (claims of order-10 Movable blocks) are followed as takes
    assert r.counters["extfrag_takes"] == 12 and r.counters["list_type_corrections"] == 0
    # under 6.1's rules the same trace does not reconstruct
    r61 = reconstruct(k612.data, k612.bundle, kernel="6.1")
    assert not r61.exact and "6.12" in r61.profile.warnings[0]


def test_612_bundle_simulates_close_to_the_trace(k612):
    obs, mod, sim = _counts(k612)
    assert sim.machine.kernel == "6.12" and not sim.profile.what_if
    assert abs(mod["pcp_refill_blocks"] / obs["pcp_refill_blocks"] - 1) <= 0.03
    assert abs(mod["pcp_drained_pages"] / obs["pcp_drained_pages"] - 1) <= 0.05
    assert abs(mod["fallbacks"] - obs["fallbacks"]) <= max(3, 0.25 * obs["fallbacks"])


def test_upgrade_what_if_both_ways(k612, frag_a):
    """The same frag workload, 512 MiB, 2 CPUs: frag-a ran on 6.1, k612-frag on 6.12. Each
    trace's requests replayed under the other kernel's policy land near the other's trace
    (measured: 6.1 -> 6.12 refill blocks -6.2%, drained +1.6%; 6.12 -> 6.1 +0.4%, +1.6%),
    where the trace's own kernel gives 2x fewer (or more) refills and 6x fewer drains."""
    _, up, sim_up = _counts(frag_a, "6.12")
    obs612, _, _ = _counts(k612)
    assert sim_up.profile.what_if and sim_up.profile.trace.kernel == "6.1"
    assert abs(up["pcp_refill_blocks"] / obs612["pcp_refill_blocks"] - 1) <= 0.10
    assert abs(up["pcp_drained_pages"] / obs612["pcp_drained_pages"] - 1) <= 0.10
    _, down, sim_down = _counts(k612, "6.1")
    obs61, _, _ = _counts(frag_a)
    assert sim_down.machine.kernel == "6.1" and sim_down.profile.trace.kernel == "6.12"
    assert abs(down["pcp_refill_blocks"] / obs61["pcp_refill_blocks"] - 1) <= 0.05
    assert abs(down["pcp_drained_pages"] / obs61["pcp_drained_pages"] - 1) <= 0.05


def test_i386_highmem_bundle(traces):
    run = load(traces / "i386-frag")
    r = reconstruct(run.data, run.bundle)
    assert r.profile.trace.name == "6.1/i386" and r.machine.arch == "i386"
    assert [z.name for z in r.machine.zones] == ["DMA", "Normal", "HighMem"]
    assert r.exact and sum(r.inconsistencies.values()) == 0 and r.agreement.rate >= 0.999
    # user pages come from HighMem (GFP_HIGHUSER_MOVABLE on i386): refills and drains match
    obs, mod, _ = _counts(run)
    assert abs(mod["pcp_refill_blocks"] / obs["pcp_refill_blocks"] - 1) <= 0.03
    assert abs(mod["pcp_drained_pages"] / obs["pcp_drained_pages"] - 1) <= 0.05


def test_compare_says_which_rules_each_side_used(traces, tmp_path):
    proc = run_cli("compare", str(traces / "mixed-small"), "--kernel", "6.12", "-o",
                   str(tmp_path), "--plotlyjs", "cdn")
    assert proc.returncode == 0, proc.stderr
    d = json.loads((tmp_path / "comparison.json").read_text())
    kp = d["kernel_profile"]
    assert kp["observed"]["name"] == "6.1/x86_64" and kp["simulated"]["name"] == "6.12/x86_64"
    assert kp["what_if"] is True
    md = (tmp_path / "report.md").read_text()
    assert "upgrade what-if" in md and "__rmqueue_claim" in md
    assert "simulated: 6.12/x86_64" in (tmp_path / "dashboard.html").read_text()


def test_unknown_kernel_is_replayed_with_the_nearest_profile_and_a_warning(traces, tmp_path):
    bundle = tmp_path / "k66"
    shutil.copytree(traces / "mixed-small", bundle)
    (bundle / "uname").write_text("Linux (none) 6.6.58-amd64 #1 SMP PREEMPT_DYNAMIC Debian "
                                  "6.6.58-1 x86_64 GNU/Linux\n")
    out = tmp_path / "out"
    proc = run_cli("simulate", str(bundle), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    assert "6.6.58-amd64" in err and "6.1" in err and "no profile of its own" in err
    kp = json.loads((out / "simulate.json").read_text())["kernel_profile"]
    assert kp["trace"]["kernel"] == "6.1" and "6.6.58-amd64" in kp["warnings"][0]
    rep = tmp_path / "rep"
    proc = run_cli("report", str(bundle), "-o", str(rep), "--plotlyjs", "cdn")
    assert proc.returncode == 0, proc.stderr
    assert "Warning:" in (rep / "report.md").read_text()
    summary = json.loads((rep / "summary.json").read_text())
    assert "6.6.58-amd64" in summary["kernel_profile"]["warnings"][0]
