"""replay.metrics.explain: a hand-built zone where one allocation steals and pins a pageblock,
streaming in chunks, and the goal checks on the bundled traces against independent counts from
the raw text (never through the ingest)."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from conftest import run_cli

from replay.metrics import explain_kernel as K
from replay.metrics.callsites import callsite
from replay.metrics.explain import ExplainState, Occupancy, StateCapture, explain_events
from replay.trace.schema import EVENTS_SCHEMA
from replay.trace.symbols import Symbols

UNMOVABLE, MOVABLE = 0, 1
GFP_KERNEL, GFP_HIGHUSER_MOVABLE = 0xCC0, 0x100CCA
S = 1_000_000_000


def events_table(rows: list[dict]) -> pa.Table:
    """An events table from a few hand-written rows (unset columns null)."""
    full = []
    for i, r in enumerate(rows):
        row = dict.fromkeys(EVENTS_SCHEMA.names)
        row.update(seq=i + 1, cpu=0, irq_flags=0, failed=False)
        row.update(r)
        full.append(row)
    return pa.Table.from_pylist(full, schema=EVENTS_SCHEMA)


def alloc(t, pfn, order, mt, gfp, comm, pid=7):
    return {"ts_ns": t, "event": "mm_page_alloc", "pfn": pfn, "order": order,
            "migratetype": mt, "gfp_flags": gfp, "comm": comm, "pid": pid}


def free(t, pfn, order=0, pid=7):
    return {"ts_ns": t, "event": "mm_page_free", "pfn": pfn, "order": order, "pid": pid,
            "comm": "x"}


def extfrag(t, pfn, alloc_order, fallback_order, amt, fmt, chown, pid=7):
    return {"ts_ns": t, "event": "mm_page_alloc_extfrag", "pfn": pfn, "order": alloc_order,
            "migratetype": amt, "fallback_order": fallback_order, "fallback_migratetype": fmt,
            "change_ownership": chown, "pageblock_order": 9, "pid": pid, "comm": "kworker"}


# Four Movable pageblocks of 512 pages. `cp` puts a Movable order-2 block in pageblock 1;
# kworker's Unmovable request steals an order-3 block there (a whole-pageblock steal that
# re-types it: change_ownership=1), so cp's block now pollutes it until the end. kworker's
# next Unmovable page lands in Movable pageblock 2 for one second.
HAND = [
    alloc(1 * S, 0, 0, MOVABLE, GFP_HIGHUSER_MOVABLE, "cat", pid=5),
    alloc(S + S // 2, 600, 2, MOVABLE, GFP_HIGHUSER_MOVABLE, "cp", pid=6),
    extfrag(2 * S, 512, 0, 3, UNMOVABLE, MOVABLE, 1),
    alloc(2 * S + 10, 512, 0, UNMOVABLE, GFP_KERNEL, "kworker"),
    alloc(3 * S, 1024, 0, UNMOVABLE, GFP_KERNEL, "kworker"),
    free(4 * S, 1024),
    free(6 * S, 0, pid=5),
]


def hand_state(end_index=None, **kw) -> ExplainState:
    zone = np.zeros(2048, np.int8)
    return ExplainState(np.full(5, MOVABLE, np.int8), zone, ["0/DMA32"], 9, cpus=1,
                        end_index=end_index, time_range_ns=(S, 6 * S), **kw)


def test_one_allocation_steals_and_pins_a_pageblock() -> None:
    st = hand_state()
    st.update(events_table(HAND))
    free_pages = np.array([511, 512 - 4 - 1 - 8, 512, 512, 0])  # pb 1: the stolen block's rest
    d = st.finish(Occupancy(free_pages, np.array([0, 8, 0, 0, 0]),
                            np.array([512, 512, 512, 512, 0])))
    assert d["totals"]["steals"] == d["totals"]["extfrag_events"] == 1
    (s,) = d["steals"]["rows"]
    assert (s["comm"], s["gfp"], s["order"], s["pageblock"]) == ("kworker", "GFP_KERNEL", 0, 1)
    assert s["whole_block"] and s["pageblocks_retyped"] == 1 and s["left_mixed"]
    assert (s["pageblock_type_before"], s["pageblock_type_after"]) == ("Movable", "Unmovable")
    assert s["held_live_pages"] == {"Movable": 4}  # cp's block was there when it was stolen
    # cp's 4 pages polluted pageblock 1 from the steal (2 s) to the last event (6 s): 16
    # page-seconds; kworker's page in Movable pageblock 2 for 1 s: 1 page-second
    blame = {r["comm"]: r for r in d["blame"]["rows"]}
    assert blame["cp"]["pollution_page_s"] == pytest.approx(16.0)
    assert blame["kworker"]["pollution_page_s"] == pytest.approx(1.0)
    assert blame["kworker"]["steals"] == 1 and blame["cp"]["steals"] == 0
    assert blame["cp"]["mixed_pageblocks_end"] == 1
    assert blame["kworker"]["mixed_pageblocks_end"] == 0
    assert d["blame"]["rows"][0]["comm"] == "kworker"  # steals rank first
    (m,) = d["mixed_end"]["pageblocks"]
    assert (m["pageblock"], m["type"], m["polluting_pages"]) == (1, "Unmovable", 4)
    (p,) = m["polluters"]
    assert p["pfn"] == 600 and p["culprit"].startswith("cp GFP_HIGHUSER_MOVABLE")
    assert p["cause"] == K.CAUSE_NAMES[K.CAUSE_RETYPED] and p["polluting_s"] == 4.0
    # pageblock 1: 499 free + 8 on a pcp list + cp's 4 + kworker's 1 = 512: pinned by the trace
    mb = d["merge_blockers"]
    assert mb["pinned"] == 1
    (row,) = mb["pageblocks"]
    assert row["pageblock"] == 1 and row["blocker_pages"] == 5 and row["pcp_pages"] == 8
    assert sorted(b["pfn"] for b in row["blockers"]) == [512, 600]
    # the pageblock map: pageblock 1 turns Unmovable and is mixed from the steal on
    mp = d["map"]
    assert mp["type_rows"][1][0] == "1" and mp["type_rows"][1][-1] == "0"
    assert {r for r, _, _ in mp["mixed"]} == {1, 2}
    assert "1" in d["culprits_by_pageblock"]


def test_time_window_clips_pollution_and_steals() -> None:
    st = hand_state(window_ns=(3 * S, 5 * S))
    st.update(events_table(HAND))
    d = st.finish(None)
    blame = {r["comm"]: r for r in d["blame"]["rows"]}
    assert d["totals"]["steals"] == 0  # the steal is at 2 s
    assert blame["cp"]["pollution_page_s"] == pytest.approx(8.0)  # 4 pages x [3 s, 5 s]
    assert blame["kworker"]["pollution_page_s"] == pytest.approx(1.0)
    assert d["merge_blockers"] is None


def test_end_point_reads_the_state_there() -> None:
    st = hand_state(end_index=5)  # after kworker's second page, before it is freed
    st.update(events_table(HAND))
    d = st.finish(None)
    assert sorted(r["pageblock"] for r in d["mixed_end"]["pageblocks"]) == [1, 2]
    assert d["end"]["t_s"] == 3.0


def test_chunks_give_the_same_tables() -> None:
    whole = hand_state()
    whole.update(events_table(HAND))
    a = whole.finish(None)
    parts = hand_state()
    t = events_table(HAND)
    for off in range(0, t.num_rows, 2):
        parts.update(t.slice(off, 2))
    assert parts.finish(None) == a


def test_requester_is_the_next_alloc_of_the_same_pid_on_the_cpu() -> None:
    rows = [extfrag(S, 0, 0, 10, UNMOVABLE, MOVABLE, 1, pid=9),
            alloc(S + 1, 7, 0, MOVABLE, GFP_HIGHUSER_MOVABLE, "irq", pid=3),  # another task
            alloc(S + 2, 8, 0, UNMOVABLE, GFP_KERNEL, "kswapd0", pid=9),
            extfrag(2 * S, 1024, 0, 10, UNMOVABLE, MOVABLE, 1, pid=4)]  # never allocates
    st = hand_state()
    st.update(events_table(rows))
    d = st.finish(None)
    got = [(s["comm"], s["gfp"], s["pageblocks_retyped"]) for s in d["steals"]["rows"]]
    assert got == [("kswapd0", "GFP_KERNEL", 2), ("kworker", None, 2)]
    assert d["blame"]["unattributed_steals"] == 1


def test_callsites_from_a_system_map(tmp_path) -> None:
    smap = tmp_path / "System.map"
    smap.write_text("ffffffff81000000 T _stext\nffffffff81200000 T __alloc_pages\n"
                    "ffffffff81200800 t get_page_from_freelist\n"
                    "ffffffff81300000 T pte_alloc_one\nffffffff81400000 D some_data\n")
    sym = Symbols.load(smap)
    chain = [0xFFFFFFFF81200010, 0xFFFFFFFF81200900, 0xFFFFFFFF81300040]
    assert callsite(chain, sym) == "pte_alloc_one+0x40"
    assert callsite(chain, None) == "0xffffffff81200010"
    assert callsite(None, sym) is None


# ---------------------------------------------------------------------------------------------
# The bundled traces

LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]"
                  r".*?\s(?P<event>mm_page_alloc_extfrag|mm_page_alloc):\s(?P<rest>.*)$")


def recount_steals(path) -> tuple[int, Counter]:
    """From the raw text: extfrag lines (grep -c), and the steals per (comm, gfp, order) of
    the mm_page_alloc that follows each on the same CPU from the same pid."""
    pending: Counter = Counter()
    per_key: Counter = Counter()
    total = 0
    with gzip.open(path, "rt") as f:
        for line in f:
            if "mm_page_alloc" not in line:
                continue
            m = LINE.match(line)
            if not m:
                continue
            who = (m["cpu"], m["pid"])
            if m["event"] == "mm_page_alloc_extfrag":
                total += 1
                pending[who] += 1
            elif pending[who]:
                order = int(re.search(r"order=(\d+)", m["rest"])[1])
                gfp = re.search(r"gfp_flags=(\S+)", m["rest"])[1]
                per_key[(m["comm"].strip(), gfp, order)] += pending.pop(who)
    return total, per_key


@pytest.fixture(scope="module", params=["frag-a", "mixed-small", "numa-frag"])
def explained(request, traces):
    from replay.pipeline import (
        explain_capture,
        explain_observed,
        explain_simulated,
        load,
        observe,
        simulate_run,
    )

    run = load(traces / request.param)
    cap = explain_capture(run)
    recon, samples = observe(run, capture=cap)
    tables, state = explain_observed(run, recon, cap)
    sim_cap = explain_capture(run)
    sim = simulate_run(run, capture=sim_cap)
    sim_tables = explain_simulated(run, sim, sim_cap, comm_by_pid=state.pid_comm)
    return request.param, tables, samples, sim_tables, sim.samples, cap.at


def test_steals_add_up_to_the_extfrag_events(explained, traces) -> None:
    name, tables, *_ = explained
    total, per_key = recount_steals(traces / name / "trace.txt.gz")
    assert total == {"frag-a": 11, "mixed-small": 2, "numa-frag": 11}[name]
    assert tables["totals"]["steals"] == tables["totals"]["extfrag_events"] == total
    assert tables["totals"]["pageblock_types_differing_from_engine"] == 0
    assert sum(r["steals"] for r in tables["blame"]["rows"]) == total
    assert len(tables["steals"]["rows"]) == total
    assert tables["totals"]["steals_requester_traced"] == sum(per_key.values()) == total


def test_top_culprit_agrees_with_a_recount_of_the_raw_trace(explained, traces) -> None:
    name, tables, *_ = explained
    _, per_key = recount_steals(traces / name / "trace.txt.gz")
    top = tables["blame"]["rows"][0]
    most = max(per_key.values())
    assert top["steals"] == most
    assert (top["comm"], top["gfp"], top["order"]) in {k for k, v in per_key.items()
                                                       if v == most}
    got = Counter({(r["comm"], r["gfp"], r["order"]): r["steals"]
                   for r in tables["blame"]["rows"] if r["steals"]})
    assert got == per_key


def _engine_mixed(samples, at) -> dict:
    k = int(np.searchsorted(samples.index, at))
    assert samples.index[k] == at
    return {z: int(samples.mixed_pageblocks[k][i]) for i, z in enumerate(samples.zones)}


def test_every_mixed_pageblock_at_the_end_is_attributed(explained) -> None:
    name, tables, samples, sim_tables, sim_samples, at = explained
    for ex, smp in ((tables, samples), (sim_tables, sim_samples)):
        assert ex["mixed_end"]["by_zone"] == _engine_mixed(smp, at)  # the report's definition
        rows = ex["mixed_end"]["pageblocks"]
        assert ex["totals"]["mixed_pageblocks_end_attributed"] == len(rows)
        assert all(r["polluters"] and r["polluting_pages"] == sum(
            b["pages"] for b in r["polluters"]) for r in rows)
    # numa-frag ends with one mixed pageblock: init's Movable pages in an Unmovable pageblock
    expected = {"frag-a": 0, "mixed-small": 0, "numa-frag": 1}[name]
    assert tables["totals"]["mixed_pageblocks_end"] == expected
    if name == "numa-frag":
        (row,) = tables["mixed_end"]["pageblocks"]
        assert (row["zone"], row["type"]) == ("1/DMA32", "Unmovable")
        assert all(b["culprit"].startswith("init GFP_HIGHUSER_MOVABLE")
                   for b in row["polluters"])


def test_merge_blockers_account_for_every_pageblock(explained) -> None:
    name, tables, *_ = explained
    mb = tables["merge_blockers"]
    for z in mb["by_zone"].values():
        assert z["free"] + z["pinned_by_trace"] + z["with_other_pages"] == z["pageblocks"]
    rows = mb["pageblocks"]
    assert [r["blocker_pages"] for r in rows] == sorted(r["blocker_pages"] for r in rows)
    full = 1 << tables["pageblock_order"]
    assert all(r["free_pages"] + r["pcp_pages"] + r["blocker_pages"] == full for r in rows)
    assert mb["pinned"] == {"frag-a": 113, "mixed-small": 3, "numa-frag": 145}[name]


@pytest.mark.slow
def test_streaming_in_small_chunks_changes_nothing(traces) -> None:
    from replay.pipeline import explain_capture, explain_observed, load, observe

    run = load(traces / "numa-frag")
    cap = explain_capture(run)
    recon, _ = observe(run, samples=False, capture=cap)
    whole, _ = explain_observed(run, recon, cap)
    m = recon.machine
    parts, _ = explain_events(run.data.events, cap, [z.key for z in m.zones], m.pageblock_order,
                              start_index=cap.start_index, end_index=cap.at,
                              chunk_rows=4099)
    assert json.dumps(parts, default=str) == json.dumps(whole, default=str)


def test_state_capture_needs_nothing_but_its_calls() -> None:
    from replay.engine.state import PG_BUDDY

    class St:
        pg_state = np.zeros(1024, np.uint8)
        pg_order = np.zeros(1024, np.int8)
        pg_zone = np.zeros(1024, np.int8)
        pb_mt = np.ones(3, np.int8)

    St.pg_state[512] = PG_BUDDY
    St.pg_order[512] = 9
    cap = StateCapture(at=10, pbo=9)
    cap(St, 3)
    cap(St, 10)
    assert cap.start_index == 3 and cap.end.free_pages.tolist() == [0, 512, 0]


def test_explain_cli(tmp_path, traces) -> None:
    proc = run_cli("explain", str(traces / "mixed-small"), "-o", str(tmp_path), "--top", "3")
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    text = proc.stdout.decode()
    assert "2 steals (of 2 mm_page_alloc_extfrag events)" in text
    d = json.loads((tmp_path / "explain.json").read_text())
    assert d["observed"]["totals"]["steals"] == 2
    bad = run_cli("explain", str(traces / "mixed-small"), "--time", "5,1")
    assert bad.returncode == 2 and bad.stderr.decode().count("\n") == 1
