"""The model's slow path (issue #11) on hand-built zones: a direct compaction that empties a
pageblock and captures it, deferral, kcompactd's proactive trigger, direct reclaim of the
oldest LRU pages, kswapd's reclaim-active window, an OOM, the THP defrag gfp rewrite; and end
to end on traces/compact-frag (its compact_memory write replayed by the model) and on a lab
capture the slow path must leave alone."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import (
    MOVABLE,
    PAGEBLOCK,
    UNMOVABLE,
    counters,
    emitter,
    machine,
    mark_allocated,
    put_free,
    zone_spec,
    zonelists,
)

from replay.engine.compact_model import (
    COMPACT_DEFERRED,
    compaction_defer_reset,
    compaction_deferred,
    defer_compaction,
    fragmentation_index,
    fragmentation_score_zone,
    kcompactd_timer,
)
from replay.engine.lru import lru_add
from replay.engine.slow_state import (
    MAP_RECLAIMED,
    SC_PROACTIVENESS,
    VM_ALLOCSTALL,
    VM_CAPTURES,
    VM_COMPACT_STALL,
    VM_COMPACT_SUCCESS,
    VM_KSWAPD_WAKES,
    VM_OOM_KILL,
    VM_PGMIGRATE_SUCCESS,
    VM_PGSTEAL_DIRECT,
    VM_PROACTIVE_RUNS,
    ZoneArrays,
    kswapd_node,
    kswapd_runs_of,
    merge_kswapd_runs,
    new_carry,
    reclaim_evidence,
    slow_state_for,
)
from replay.engine.slowpath import __alloc_pages
from replay.engine.state import PG_ALLOC, ZONE_RECLAIM_ACTIVE, ZP_FLAGS, new_state
from replay.engine.thp import thp_defrag_gfp
from replay.engine.vmscan import (
    kswapd_balance_check,
    kswapd_freed,
    traced_kswapd,
    wakeup_kswapd,
)
from replay.trace.gfp import GFP_BY_NAME

GFP_KERNEL = GFP_BY_NAME["GFP_KERNEL"]
GFP_TRANSHUGE = GFP_BY_NAME["GFP_TRANSHUGE"]
GFP_TRANSHUGE_LIGHT = GFP_BY_NAME["GFP_TRANSHUGE_LIGHT"]
NORETRY, THISNODE = GFP_BY_NAME["__GFP_NORETRY"], GFP_BY_NAME["__GFP_THISNODE"]
KSWAPD = GFP_BY_NAME["__GFP_KSWAPD_RECLAIM"]
PAGES = 16 * PAGEBLOCK


def zone(**kw):
    """One DMA32 zone of 16 pageblocks, pcp lists off (high 0: every free drains at once)."""
    st = new_state(machine(zone_spec(pages=PAGES, batch=1, high=0, **kw)))
    return st, slow_state_for(st)


def lru_pages(st, sp, start, end):
    """[start, end) allocated order-0 movable pages on the LRU, oldest first."""
    for p in range(start, end):
        st.pg_state[p] = PG_ALLOC
        st.pg_order[p] = 0
        st.pg_mt[p] = MOVABLE
        lru_add(st, sp, p)


def holes(st, start, end, hole_order=4):
    """[start, end) in pageblocks half full: allocated unmovable blocks with free order-4
    holes between them (no free block of a pageblock or more)."""
    size = 1 << hole_order
    for p in range(start, end, 2 * size):
        mark_allocated(st, p, p + size, UNMOVABLE)
        put_free(st, p + size, hole_order, MOVABLE)


def alloc(st, sp, gfp, order, mt=MOVABLE):
    lists, lens = zonelists(st)
    out, cnt = emitter(1 << 16), counters()
    page, z = __alloc_pages(st, sp, gfp, order, mt, 0, 0, out, 0, cnt, lists, lens)
    return int(page)


def test_direct_compaction_empties_a_pageblock_and_captures_it():
    st, sp = zone()
    mark_allocated(st, 0, PAGEBLOCK, UNMOVABLE)  # pageblock 0 cannot be emptied
    lru_pages(st, sp, PAGEBLOCK, 2 * PAGEBLOCK)  # pageblock 1: all LRU
    mark_allocated(st, 2 * PAGEBLOCK, 8 * PAGEBLOCK, UNMOVABLE)
    holes(st, 8 * PAGEBLOCK, PAGES)  # 4096 free pages, no order-9 block
    assert fragmentation_index(st, 0, 9) > 500
    page = alloc(st, sp, GFP_TRANSHUGE | NORETRY | THISNODE, 9)
    assert page == PAGEBLOCK  # the emptied block, captured as its last page merged
    assert sp.vm[VM_COMPACT_STALL] == 1 and sp.vm[VM_COMPACT_SUCCESS] == 1
    assert sp.vm[VM_CAPTURES] == 1
    assert sp.vm[VM_PGMIGRATE_SUCCESS] == PAGEBLOCK
    # the migrated pages live on in the holes, still LRU pages, and the trace's pfns follow
    assert sp.pg_lru[PAGEBLOCK:2 * PAGEBLOCK].sum() == 0
    assert sp.pg_lru[8 * PAGEBLOCK:].sum() == PAGEBLOCK
    moved = sp.pfn_map[PAGEBLOCK:2 * PAGEBLOCK]
    assert (moved >= 8 * PAGEBLOCK).all() and len(set(moved.tolist())) == PAGEBLOCK
    assert (sp.rev_map[moved] == np.arange(PAGEBLOCK, 2 * PAGEBLOCK)).all()


def test_without_compaction_the_same_request_fails():
    st, sp = zone()
    mark_allocated(st, 0, PAGEBLOCK, UNMOVABLE)
    lru_pages(st, sp, PAGEBLOCK, 2 * PAGEBLOCK)
    mark_allocated(st, 2 * PAGEBLOCK, 8 * PAGEBLOCK, UNMOVABLE)
    holes(st, 8 * PAGEBLOCK, PAGES)
    sp.cfg[0] = 0  # SC_COMPACTION off
    assert alloc(st, sp, GFP_TRANSHUGE | NORETRY | THISNODE, 9) == -1
    assert sp.vm[VM_COMPACT_STALL] == 0


def test_deferral_backs_off_exponentially_and_a_success_resets_it():
    st, sp = zone()
    defer_compaction(sp, 0, 9)
    defer_compaction(sp, 0, 9)  # defer_shift 2: the next 3 attempts are deferred
    assert [compaction_deferred(sp, 0, 9) for _ in range(4)] == [True, True, True, False]
    assert not compaction_deferred(sp, 0, 3)  # below compact_order_failed: never deferred
    compaction_defer_reset(sp, 0, 9, True)
    assert not compaction_deferred(sp, 0, 9)
    assert COMPACT_DEFERRED == 2  # enum compact_result order (try_to_compact_pages' max)


def test_proactive_compaction_runs_on_kcompactds_timer_above_the_high_mark():
    st, sp = zone()
    mark_allocated(st, 0, PAGEBLOCK, UNMOVABLE)
    lru_pages(st, sp, PAGEBLOCK, 2 * PAGEBLOCK)
    mark_allocated(st, 2 * PAGEBLOCK, 8 * PAGEBLOCK, UNMOVABLE)
    holes(st, 8 * PAGEBLOCK, PAGES)
    sp.cfg[SC_PROACTIVENESS] = 20  # marks 80 (low) and 90 (high)
    assert fragmentation_score_zone(st, 0) == 100
    out, cnt = emitter(1 << 16), counters()
    kcompactd_timer(st, sp, 1_000_000_000, 0, out, 0, cnt)
    assert sp.vm[VM_PROACTIVE_RUNS] == 1
    assert fragmentation_score_zone(st, 0) <= 80  # compacted until the low mark
    kcompactd_timer(st, sp, 1_200_000_000, 0, out, 0, cnt)  # within 500 ms: no new check
    assert sp.vm[VM_PROACTIVE_RUNS] == 1


def test_direct_reclaim_frees_the_oldest_lru_pages_and_marks_their_trace_pages():
    st, sp = zone(wmin=64, wlow=80, whigh=96)
    lru_pages(st, sp, 0, PAGEBLOCK)  # oldest first: pfn 0, 1, 2...
    mark_allocated(st, PAGEBLOCK, PAGES - 16, UNMOVABLE)
    put_free(st, PAGES - 16, 4, MOVABLE)  # 16 free pages: below every watermark
    sp.rev_map[:PAGEBLOCK] = np.arange(PAGEBLOCK) + PAGEBLOCK  # stand for trace pfns 512..
    page = alloc(st, sp, GFP_KERNEL, 0, UNMOVABLE)
    assert page >= 0
    assert sp.vm[VM_ALLOCSTALL] >= 1 and sp.vm[VM_PGSTEAL_DIRECT] >= 32
    n = int(sp.vm[VM_PGSTEAL_DIRECT])
    assert (sp.pg_lru[:n] == 0).all() and sp.pg_lru[n:PAGEBLOCK].all()  # oldest went first
    assert (sp.pfn_map[PAGEBLOCK:PAGEBLOCK + n] == MAP_RECLAIMED).all()


def test_an_allocation_nothing_can_serve_is_an_oom_failure():
    st, sp = zone(wmin=64, wlow=80, whigh=96)
    mark_allocated(st, 0, PAGES - 16, UNMOVABLE)  # nothing reclaimable
    put_free(st, PAGES - 16, 4, MOVABLE)
    assert alloc(st, sp, GFP_KERNEL, 0, UNMOVABLE) == -1
    assert sp.vm[VM_OOM_KILL] == 1 and sp.vm[VM_ALLOCSTALL] >= 1


def test_kswapd_caps_the_pcp_lists_while_it_balances_and_sleeps_when_balanced():
    st, sp = zone(wmin=64, wlow=80, whigh=96)
    mark_allocated(st, 0, PAGES - 16, UNMOVABLE)
    put_free(st, PAGES - 16, 4, MOVABLE)
    out, cnt = emitter(), counters()
    wakeup_kswapd(st, sp, 0, GFP_KERNEL, 0, 1, 0, out, 0, cnt)
    assert sp.vm[VM_KSWAPD_WAKES] == 1 and st.zone_param[0, ZP_FLAGS] & ZONE_RECLAIM_ACTIVE
    kswapd_balance_check(st, sp, 0, 0, out, 0, cnt)  # not balanced yet: still reclaiming
    assert st.zone_param[0, ZP_FLAGS] & ZONE_RECLAIM_ACTIVE
    put_free(st, PAGES - 256, 7, MOVABLE)  # the trace's reclaim frees arrive
    kswapd_freed(st, sp, 0, 128)
    kswapd_balance_check(st, sp, 0, 0, out, 0, cnt)
    assert not st.zone_param[0, ZP_FLAGS] & ZONE_RECLAIM_ACTIVE


def test_kswapd_runs_the_trace_shows_keep_it_awake_and_end_in_sleep():
    """The trace shows kswapd at work from t=100 to t=200 (its own events): the kernel's
    kswapd is in balance_pgdat() then, its zones ZONE_RECLAIM_ACTIVE. The model's kswapd,
    asleep and balanced, is woken at the run, stays awake while it lasts, and sleeps after."""
    st, sp = zone(wmin=64, wlow=80, whigh=96)
    mark_allocated(st, 0, PAGES - 256, UNMOVABLE)
    put_free(st, PAGES - 256, 8, MOVABLE)  # balanced: 256 free pages, high 96
    sp = sp._replace(kswapd_runs=np.array([[0, 100, 200]], np.int64))
    out, cnt = emitter(), counters()
    traced_kswapd(st, sp, 50, 0, out, 0, cnt)
    assert not st.zone_param[0, ZP_FLAGS] & ZONE_RECLAIM_ACTIVE  # not yet
    traced_kswapd(st, sp, 100, 0, out, 0, cnt)
    assert st.zone_param[0, ZP_FLAGS] & ZONE_RECLAIM_ACTIVE and sp.vm[VM_KSWAPD_WAKES] == 1
    kswapd_balance_check(st, sp, 0, 150, out, 0, cnt)  # balanced, but the run goes on
    assert st.zone_param[0, ZP_FLAGS] & ZONE_RECLAIM_ACTIVE
    traced_kswapd(st, sp, 201, 0, out, 0, cnt)  # the run is over: kswapd went to sleep
    assert not st.zone_param[0, ZP_FLAGS] & ZONE_RECLAIM_ACTIVE
    assert sp.vm[VM_KSWAPD_WAKES] == 1


def test_drains_at_the_reclaim_cap_are_reclaim_evidence_in_one_piece_or_two():
    """A drain run of exactly 3 batches (high capped at 4 batches under ZONE_RECLAIM_ACTIVE,
    nr_pcp_free() at most high - batch) proves reclaim active on its zone's node; 2 batches,
    or 3 batches in a zone whose own high is no more than 4 batches, prove nothing. A run cut
    by the end of a piece is judged when it ends, as in one piece."""
    from replay.trace.schema import EV_FREE, EV_PCPU_DRAIN

    zones = ZoneArrays(np.array([0] * 100 + [1] * 100, np.int64), np.array([2, 2], np.int64),
                       np.array([100, 8], np.int64), np.array([0, 1], np.int64))
    D, F = EV_PCPU_DRAIN, EV_FREE
    ev = np.array([F, D, D, D, D, F, D, D, D, D, D, D, F, D, D, D, D, D, D], np.int64)
    pfn = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 150, 151, 152, 153, 154, 155])
    order = np.zeros(len(ev), np.int64)
    cpu = np.zeros(len(ev), np.int64)
    ts = np.arange(len(ev), dtype=np.int64) * 10
    node = np.full(len(ev), -1, np.int64)
    # runs: 4 pages (2 batches: nothing), 6 pages in zone 0 (proof, at ts 60), 6 in zone 1
    # (its high, 8, is within 4 batches: nothing)
    whole = reclaim_evidence(node, ev, cpu, pfn, order, ts, zones, new_carry(), True)
    assert whole.tolist() == [[0, 60, 60]]
    for cut in range(1, len(ev)):  # inside the proving run, at its end, anywhere
        carry = new_carry()
        parts = [reclaim_evidence(node[:cut], ev[:cut], cpu[:cut], pfn[:cut], order[:cut],
                                  ts[:cut], zones, carry, False),
                 reclaim_evidence(node[cut:], ev[cut:], cpu[cut:], pfn[cut:], order[cut:],
                                  ts[cut:], zones, carry, True)]
        assert merge_kswapd_runs(parts).tolist() == whole.tolist(), cut


def test_kswapd_runs_split_at_quiet_gaps_and_join_across_pieces():
    ms = 1_000_000
    node = np.array([0, 0, 0, 1, 0])
    ts = np.array([0, ms // 2, 5 * ms, ms, 5 * ms + 10])
    assert kswapd_runs_of(node, ts, ms).tolist() == [[0, 0, ms // 2], [1, ms, ms],
                                                     [0, 5 * ms, 5 * ms + 10]]
    halves = [kswapd_runs_of(node[:2], ts[:2], ms), kswapd_runs_of(node[2:], ts[2:], ms)]
    assert merge_kswapd_runs(halves, ms).tolist() == kswapd_runs_of(node, ts, ms).tolist()
    cut = [kswapd_runs_of(np.zeros(2, np.int64), np.array([0, ms // 2]), ms),
           kswapd_runs_of(np.zeros(1, np.int64), np.array([ms]), ms)]
    assert merge_kswapd_runs(cut, ms).tolist() == [[0, 0, ms]]  # one run cut by a piece edge
    assert [kswapd_node(c) for c in ("kswapd0", "kswapd1", "kworker/0:1", None)] == [0, 1, -1, -1]


def test_thp_defrag_rewrites_the_gfp_of_thp_faults_only():
    first = GFP_TRANSHUGE | NORETRY | THISNODE  # defrag=always, not madvised: 1st try
    second = GFP_TRANSHUGE | NORETRY  # ...and the second
    other = GFP_KERNEL
    gfp = np.array([first, second, other, first], np.int64)
    order = np.array([9, 9, 9, 0])
    never = thp_defrag_gfp(gfp, order, "always", "never")
    assert never.tolist() == [GFP_TRANSHUGE_LIGHT | NORETRY | THISNODE, -1, other, first]
    defer = thp_defrag_gfp(gfp, order, "always", "defer")
    assert defer[0] == GFP_TRANSHUGE_LIGHT | KSWAPD | NORETRY | THISNODE and defer[1] == -1
    assert (thp_defrag_gfp(gfp, order, "always", "always") == gfp).all()


# ---- end to end -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compact_frag_sim(traces):
    from replay.engine.simulate import simulate
    from replay.pipeline import load

    run = load(traces / "compact-frag")
    return run, simulate(run.data, run.bundle)


def test_compact_frag_replays_its_compact_memory_write(compact_frag_sim):
    """The trace shows one compact_memory write (sh's mm_compaction_begin, DMA then DMA32);
    the model compacts every zone there: it migrates as many pages as the kernel's vmstat
    says the kernel did, and ends with as many pageblock-sized free blocks as end.buddyinfo
    shows (DMA32: 5 of order 9 and 21 of order 10; the model 5 and 22)."""
    from replay.engine.events import event_arrays
    from replay.engine.simulate import compact_memory_writes
    from replay.metrics.compaction import vmstat_deltas

    run, sim = compact_frag_sim
    e = event_arrays(run.data)
    assert len(compact_memory_writes(e, sim.i_start)) == 1
    assert sim.counters["compact_runs"] == 2  # DMA and DMA32
    kernel = vmstat_deltas(run.bundle.start.vmstat, run.bundle.end.vmstat)
    assert kernel["pgmigrate_success"] == 6023
    assert abs(sim.counters["pgmigrate_success"] - 6023) <= 0.1 * 6023
    assert sim.recorded_vm["thp_defrag"] == "always"
    assert sim.recorded_vm["compaction_proactiveness"] == 20
    big_kernel = sum(run.bundle.end.buddyinfo[(0, "DMA32")][9:])
    assert big_kernel == 26
    big_model = int(sim.state.fl_len[1, 9:].sum())
    assert abs(big_model - big_kernel) <= 3


def test_compaction_off_leaves_compact_frag_less_compact(compact_frag_sim, traces):
    from replay.engine.simulate import Settings, simulate

    run, sim = compact_frag_sim
    off = simulate(run.data, run.bundle, Settings.parse(["compaction=off"]))
    assert off.counters["pgmigrate_success"] == 0 and off.counters["compact_runs"] == 0
    assert off.state.fl_len[1, 9:].sum() < sim.state.fl_len[1, 9:].sum()


def test_a_lab_capture_never_enters_the_slow_path(traces):
    """mixed-small (compaction off in its guest, no memory pressure): the slow path must not
    change a thing (no stall, no reclaim, no kswapd, no failure)."""
    from replay.engine.simulate import simulate
    from replay.pipeline import load

    run = load(traces / "mixed-small")
    sim = simulate(run.data, run.bundle)
    c = sim.counters
    assert c["alloc_failures"] == 0
    for k in ("compact_stall", "compact_runs", "allocstall", "kswapd_wakes", "oom_kill",
              "pgsteal_direct", "proactive_runs"):
        assert c[k] == 0, k
    # the kcapture harness's guests: THP defrag never, no proactive compaction
    assert sim.recorded_vm["thp_defrag"] == "never"
    assert sim.recorded_vm["compaction_proactiveness"] == 0


def test_compare_sets_the_models_slow_path_beside_the_kernels_vmstat(traces):
    """compare on compact-frag: comparison.json's slow_path block holds the kernel's vmstat
    deltas (grep-able in start/end.vmstat) beside the model's counts, the Markdown has its
    section and the dashboard its panel."""
    from replay.pipeline import load, observe, simulate_run
    from replay.report.build import build
    from replay.report.dashboard import panels
    from replay.report.markdown import render_markdown

    run = load(traces / "compact-frag")
    recon, obs = observe(run)
    sim = simulate_run(run)
    d = build(run, recon, obs, sim, kind="compare")
    rows = {r["counter"]: r for r in d["slow_path"]["vmstat"]}
    assert rows["pgmigrate_success"]["kernel"] == 6023
    assert rows["compact_isolated"]["kernel"] == 12073
    assert rows["compact_free_scanned"]["kernel"] == 69659
    assert rows["pgmigrate_success"]["model"] == d["simulated"]["counters"]["pgmigrate_success"]
    # both scanners' isolated pages count, as in the kernel (the model migrates 6,000 pages)
    assert 11_000 < rows["compact_isolated"]["model"] < 13_000
    assert d["slow_path"]["compaction"]["outcomes"] == {"complete": 2}
    assert "### Slow path" in render_markdown(d)
    assert "slowpath" in [p.key for p in panels(d)]


@pytest.mark.parametrize("bundle,sets", [
    ("compact-frag", []),  # a compact_memory write and kcompactd's timer: stops before events
    ("frag-a", ["min_free_kbytes=131072"]),  # allocations' slow path: kswapd wakes
    # 6.12: a failed fast path has side effects (pcp high, alloc_factor): not repeated
    ("k612-frag", ["min_free_kbytes=131072"]),
])
def test_the_fast_tier_hands_over_to_the_whole_loop_without_a_trace(traces, monkeypatch,
                                                                   bundle, sets):
    """simulate_requests_fast stops where the slow path begins and the whole loop goes on from
    there: the run equals one made by the whole loop from the start, event for event."""
    import replay.engine.simulate as sim_mod
    from replay.pipeline import load

    run = load(traces / bundle)
    settings = sim_mod.Settings.parse(sets)
    tiered = sim_mod.simulate(run.data, run.bundle, settings)
    assert tiered.counters["compact_runs"] + tiered.counters["kswapd_wakes"] > 0
    monkeypatch.setattr(sim_mod, "simulate_requests_fast", sim_mod.simulate_requests)
    whole = sim_mod.simulate(run.data, run.bundle, settings)
    assert tiered.counters == whole.counters
    assert tiered.events.equals(whole.events)
