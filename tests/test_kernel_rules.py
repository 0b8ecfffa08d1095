"""Each rule that differs between Linux 6.1 and 6.12, on a hand-built zone under both profiles.

Expected values are worked out from the kernels' source by hand (6.1.192 mm/page_alloc.c "L",
6.12.118 ":"; docs/model.md has the side-by-side table); the same setup runs under both
profiles, so each test shows what the rule changes.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import (
    HIGHATOMIC,
    MOVABLE,
    UNMOVABLE,
    counters,
    emitter,
    events,
    free_list,
    machine,
    mark_allocated,
    one_zone_state,
    pcp_list,
    put_free,
    zone_spec,
)

from replay.engine import buddy, policy
from replay.engine.events import EventArrays
from replay.engine.follow import (
    COUNTER_NAMES,
    D_CLAIM_FIRST,
    D_CLAIMED,
    D_DIRECT_IRQ,
    D_PCP,
    INCONSISTENCIES,
    free_batched_orders,
    plan_claims,
    plan_free_dispositions,
)
from replay.engine.profile import (
    CFG_VMSTAT_MS,
    KERNELS,
    RULES,
    choose_profiles,
    get_profile,
    nearest_kernel,
    parse_release,
)
from replay.engine.reconstruct import Follower
from replay.engine.state import (
    PG_PCP,
    ZONE_BELOW_HIGH,
    ZONE_BOOSTED_WATERMARK,
    ZP_BOOST,
    ZP_FLAGS,
    ZP_RESERVED_HA,
    new_state,
)
from replay.trace.schema import (
    EV_ALLOC,
    EV_EXTFRAG,
    EV_FREE,
    EV_FREE_BATCHED,
    EV_PCPU_DRAIN,
    EV_ZONE_LOCKED,
)

S = {name: i for i, name in enumerate(policy.SIM_COUNTER_NAMES)}
C = {name: i for i, name in enumerate(COUNTER_NAMES)}
BOTH = pytest.mark.parametrize("kernel", KERNELS)
ZONE_DMA32 = 1


def _ev(out, kind):
    return [e for e in events(out) if e["ev"] == kind]


def _free_pages(st, cpu, z, pages, order=0):
    out, cnt = emitter(1 << 14), counters()
    for p in pages:
        st.pg_state[p] = 0
        policy.free_unref_page(st, z, p, order, cpu, False, out, 0, cnt)
    return out, cnt


def tuned_state(kernel: str, *, high: int, high_max: int, batch: int, pages: int = 8192,
                **kw):
    return one_zone_state(pages, high=high, high_max=high_max, batch=batch, kernel=kernel, **kw)


# ---- the profiles ----------------------------------------------------------------------------

def test_every_rule_differs_between_the_profiles_and_has_its_own_slot():
    old, new = get_profile("6.1"), get_profile("6.12")
    slots = [r.slot for r in RULES]
    assert len(set(slots)) == len(slots)
    for r in RULES:
        assert getattr(old, r.key) != getattr(new, r.key), r.key
        assert r.src612 and r.v61 and r.v612
    st61 = new_state(machine(kernel="6.1"))
    st612 = new_state(machine(kernel="6.12"))
    assert all(st61.config[s] == 0 for s in slots) and all(st612.config[s] == 1 for s in slots)


@pytest.mark.parametrize(("release", "kernel", "warns"), [
    ("6.1.0-56-amd64", "6.1", False),
    ("6.12.117+deb12-amd64", "6.12", False),
    ("6.6.58-1", "6.1", True),      # pcp auto-tuning came in 6.7: 6.6 is nearer 6.1
    ("6.7.0", "6.12", True),
    ("6.18.2", "6.12", True),
    ("5.15.0-91-generic", "6.1", True),
    ("6.12.20", "6.12", True),      # before the 6.12.29 claim/steal backport
    (None, "6.1", True),
])
def test_nearest_profile_and_the_warning_naming_both(release, kernel, warns):
    choice = choose_profiles(release)
    assert choice.trace.kernel == kernel and choice.model.kernel == kernel
    assert bool(choice.warnings) == warns
    if warns and release and parse_release(release)[:2] not in ((6, 1), (6, 12)):
        assert release in choice.warnings[0] and kernel in choice.warnings[0]


def test_kernel_option_is_the_model_and_the_trace_keeps_its_release():
    choice = choose_profiles("6.1.0-56-amd64", kernel="6.12")
    assert (choice.trace.kernel, choice.model.kernel, choice.what_if) == ("6.1", "6.12", True)
    bare = choose_profiles(None, kernel="6.12")  # no release: --kernel names the trace's too
    assert (bare.trace.kernel, bare.what_if, bare.warnings) == ("6.12", False, [])
    assert choose_profiles("6.1.0-56-686-pae").trace.arch == "i386"
    assert nearest_kernel((6, 9, 0)) == "6.12" and nearest_kernel((6, 4, 0)) == "6.1"


# ---- pcp: refill size, alloc_factor, high growth --------------------------------------------

def test_nr_pcp_alloc_doubles_refills_and_grows_high():
    """nr_pcp_alloc (:3021): batch << alloc_factor with alloc_factor + 1 per refill (max 5),
    high += the refill up to high_max; orders > 0 refill batch >> order."""
    st = tuned_state("6.12", high=410, high_max=7152, batch=31)
    sizes, highs = [], []
    for _ in range(7):
        sizes.append(int(policy.nr_pcp_alloc(st, 0, 0, 0)))
        highs.append(int(st.pcp_high[0, 0]))
    assert sizes == [31, 62, 124, 248, 496, 992, 992]
    assert highs == [441, 503, 627, 875, 1371, 2363, 3355]
    assert int(policy.nr_pcp_alloc(st, 0, 0, 2)) == 7 and st.pcp_high[0, 0] == 3386
    st.zone_param[0, ZP_FLAGS] |= ZONE_BELOW_HIGH  # below the high watermark: no growth
    policy.nr_pcp_alloc(st, 0, 0, 0)
    assert st.pcp_high[0, 0] == 3386


@BOTH
def test_consecutive_refills(kernel):
    """6.1 refills batch blocks every time; 6.12 doubles with no free between and a free
    halves alloc_factor (free_unref_page_commit :2689)."""
    st = tuned_state(kernel, high=410, high_max=7152, batch=31)
    for k in range(8):
        put_free(st, k * 1024, 10, MOVABLE)
    out, cnt = emitter(1 << 13), counters()
    refills = []
    for _ in range(3):
        before = cnt[S["pcp_refill_blocks"]]
        page = policy.rmqueue_pcplist(st, 0, 0, MOVABLE, 0, 0, out, 0, cnt)
        refills.append(int(cnt[S["pcp_refill_blocks"]] - before))
        while st.pcp_head[0, 0, 1] != -1:  # use the rest of the refill
            policy.rmqueue_pcplist(st, 0, 0, MOVABLE, 0, 0, out, 0, cnt)
    assert refills == ([31, 31, 31] if kernel == "6.1" else [31, 62, 124])
    af = int(st.pcp_alloc_factor[0, 0])
    assert af == (0 if kernel == "6.1" else 3)
    st.pg_state[page] = 3  # the caller's: allocated
    _free_pages(st, 0, 0, [page])
    assert st.pcp_alloc_factor[0, 0] == (0 if kernel == "6.1" else af >> 1)


# ---- pcp: drains ---------------------------------------------------------------------------

@BOTH
def test_drain_size_follows_free_count(kernel):
    """nr_pcp_free: 6.1 clamp(batch << free_factor, batch, high - batch) = 31 at the first
    drain; 6.12 clamp(free_count, batch, high - batch) = clamp(100, 31, 69) = 69."""
    st = tuned_state(kernel, high=100, high_max=100, batch=31)
    mark_allocated(st, 0, 100, MOVABLE)
    _, cnt = _free_pages(st, 0, 0, range(100))
    assert cnt[S["pcp_drained_pages"]] == (31 if kernel == "6.1" else 69)


@BOTH
def test_high_grows_to_hold_a_free_run(kernel):
    """nr_pcp_high (:2628): when a free reaches high and high < free_count + batch, 6.12
    raises high to free_count + batch (the drain still uses the old high); 6.1's is static."""
    st = tuned_state(kernel, high=100, high_max=1000, batch=31)
    mark_allocated(st, 0, 100, MOVABLE)
    _, cnt = _free_pages(st, 0, 0, range(100))
    assert st.pcp_high[0, 0] == (100 if kernel == "6.1" else 131)
    assert cnt[S["pcp_drained_pages"]] == (31 if kernel == "6.1" else 69)


@BOTH
def test_free_high(kernel):
    """6.12: two consecutive order-1..3 frees with free_count >= batch drain min(count,
    batch << 5) and lower high by batch << 5. 6.1: only with free_factor > 0 (after a drain),
    then the whole pcp."""
    st = tuned_state(kernel, high=300, high_max=1000, batch=4)
    st.pcp_high[0, 0] = 1000
    mark_allocated(st, 0, 200, MOVABLE)
    mark_allocated(st, 256, 260, MOVABLE)
    _free_pages(st, 0, 0, range(200))
    _, first = _free_pages(st, 0, 0, [256], order=1)
    assert first[S["pcp_drained_pages"]] == 0
    _, second = _free_pages(st, 0, 0, [258], order=1)
    if kernel == "6.12":
        assert second[S["pcp_drained_pages"]] == 4 << 5 and st.pcp_count[0, 0] == 204 - 128
        assert st.pcp_high[0, 0] == 1000 - 128
    else:
        assert second[S["pcp_drained_pages"]] == 0  # free_factor is still 0
        st2 = tuned_state(kernel, high=100, high_max=100, batch=4)
        mark_allocated(st2, 0, 100, MOVABLE)
        mark_allocated(st2, 256, 258, MOVABLE)
        _, c1 = _free_pages(st2, 0, 0, range(100))  # one drain: free_factor 1
        _, c2 = _free_pages(st2, 0, 0, [256], order=1)
        assert c1[S["pcp_drained_pages"]] == 4 and c2[S["pcp_drained_pages"]] == 98


@BOTH
def test_vmstat_decay(kernel):
    """decay_pcp_high (:2412): high = max(count - batch << 5, high - high/8, high_min) = 700,
    then count - high = 90 pages drained in batch chunks (31, 31, 28) from pindex 0."""
    st = tuned_state(kernel, high=100, high_max=1000, batch=31)
    st.pcp_high[0, 0] = 800 if kernel == "6.12" else 100
    for p in range(790):
        buddy.pcp_add(st, 0, 0, p, 0, MOVABLE, False)
    out, cnt = emitter(), counters()
    policy.vmstat_update(st, 0, out, 0, cnt)
    if kernel == "6.1":
        assert cnt[S["pcp_drained_pages"]] == 0 and st.pcp_count[0, 0] == 790
    else:
        assert st.pcp_high[0, 0] == 700 and st.pcp_count[0, 0] == 700
        assert cnt[S["pcp_drained_pages"]] == 90 and cnt[S["pcp_drains"]] == 3
        # the oldest (tail) pages go first
        assert [e["pfn"] for e in _ev(out, EV_PCPU_DRAIN)][:3] == [0, 1, 2]


@BOTH
def test_drain_rereads_the_pageblock_type(kernel):
    """free_pcppages_bulk: 6.1 frees to the type cached at free time; 6.12 (:1256) re-reads
    the pageblock's type at drain time."""
    st = one_zone_state(kernel=kernel)
    buddy.pcp_add(st, 0, 0, 16, 0, UNMOVABLE, False)  # freed while pageblock 0 was Unmovable
    st.pb_mt[0] = MOVABLE
    out, cnt = emitter(), counters()
    policy.free_pcppages_bulk(st, 0, 1, 0, 0, out, 0, cnt)
    mt = MOVABLE if kernel == "6.12" else UNMOVABLE
    assert free_list(st, 0, mt) == [16] and _ev(out, EV_PCPU_DRAIN)[0]["mt"] == mt


@BOTH
def test_zone_below_high(kernel):
    """get_page_from_freelist (:3499-3508): a zone under its high watermark gets
    ZONE_BELOW_HIGH (6.12 only); a drain that leaves it above high clears it (:2720)."""
    st = one_zone_state(kernel=kernel, wmin=10, wlow=20, whigh=2000, high=4, batch=1)
    put_free(st, 0, 10, MOVABLE)  # 1024 free < high 2000
    from engine_helpers import alloc_pages

    out, cnt = emitter(), counters()
    page, _ = alloc_pages(st, 0x100cca, 0, MOVABLE, out, cnt)
    assert page >= 0
    below = bool(st.zone_param[0, ZP_FLAGS] & ZONE_BELOW_HIGH)
    assert below == (kernel == "6.12")
    for k in range(2, 6):
        put_free(st, k * 1024, 10, MOVABLE)  # now 5 * 1024 - 1 free, above high
    mark_allocated(st, 1024, 1028, MOVABLE)
    _free_pages(st, 0, 0, range(1024, 1028))
    assert not st.zone_param[0, ZP_FLAGS] & ZONE_BELOW_HIGH


# ---- fallback: claim or steal ----------------------------------------------------------------

@BOTH
def test_claim_of_a_whole_block(kernel):
    """An Unmovable request with only an order-10 Movable block. 6.12 try_to_steal_block
    (:1973-1980): re-typed and split in place, one extfrag whose pfn is the page handed out,
    no zone_locked. 6.1: extfrag, then the zone_locked of the re-listed block."""
    st = one_zone_state(kernel=kernel)
    put_free(st, 4096, 10, MOVABLE)
    out, cnt = emitter(), counters()
    page, _ = policy.__rmqueue(st, 0, 0, UNMOVABLE, 0, policy.RMQUEUE_NORMAL, out, 0, 0, cnt)
    assert page == 4096 and list(st.pb_mt[8:10]) == [UNMOVABLE, UNMOVABLE]
    kinds = [e["ev"] for e in events(out)]
    x = _ev(out, EV_EXTFRAG)[0]
    assert (x["pfn"], x["ford"], x["fmt"], x["chown"]) == (4096, 10, MOVABLE, 1)
    assert kinds == ([EV_EXTFRAG] if kernel == "6.12" else [EV_EXTFRAG, EV_ZONE_LOCKED])
    assert free_list(st, 9, UNMOVABLE) == [4608] and free_list(st, 0, UNMOVABLE) == [4097]


@BOTH
def test_failed_claim_then_steal_of_the_smallest_block(kernel):
    """A pageblock with 12 free pages among 500 movable ones, asked for one Unmovable page.
    6.12: the claims fail (12 + 0 alike < 256) and move nothing; __rmqueue_steal (:2269)
    takes the smallest block (64, order 2) alone, the rest stays Movable. 6.1: both blocks
    move to Unmovable's lists (steal_suitable_fallback) and __rmqueue_smallest takes 64."""
    st = one_zone_state(kernel=kernel)
    put_free(st, 0, 3, MOVABLE)
    put_free(st, 64, 2, MOVABLE)
    mark_allocated(st, 8, 64, MOVABLE)
    mark_allocated(st, 68, 512, MOVABLE)
    out, cnt = emitter(), counters()
    page, mode = policy.__rmqueue(st, 0, 0, UNMOVABLE, 0, policy.RMQUEUE_NORMAL, out, 0, 0, cnt)
    assert page == 64 and st.pb_mt[0] == MOVABLE
    x = _ev(out, EV_EXTFRAG)[0]
    if kernel == "6.12":
        assert mode == policy.RMQUEUE_STEAL and not _ev(out, EV_ZONE_LOCKED)
        assert (x["pfn"], x["ford"], x["chown"]) == (64, 2, 0)
        assert free_list(st, 3, MOVABLE) == [0] and free_list(st, 1, MOVABLE) == [66]
    else:
        assert (x["pfn"], x["ford"]) == (0, 3) and _ev(out, EV_ZONE_LOCKED)[0]["pfn"] == 64
        assert free_list(st, 3, UNMOVABLE) == [0] and free_list(st, 1, UNMOVABLE) == [66]


def test_steal_mode_is_kept_for_the_rest_of_the_refill():
    """__rmqueue (:2306) in RMQUEUE_STEAL mode skips the own list and the claims."""
    st = one_zone_state(kernel="6.12")
    put_free(st, 0, 0, UNMOVABLE)
    st.pb_mt[0] = UNMOVABLE
    put_free(st, 512, 1, MOVABLE)
    out, cnt = emitter(), counters()
    page, mode = policy.__rmqueue(st, 0, 0, UNMOVABLE, 0, policy.RMQUEUE_STEAL, out, 0, 0, cnt)
    assert (page, mode) == (512, policy.RMQUEUE_STEAL) and free_list(st, 0, UNMOVABLE) == [0]
    page, mode = policy.__rmqueue(st, 0, 0, UNMOVABLE, 0, policy.RMQUEUE_NORMAL, out, 0, 0, cnt)
    assert (page, mode) == (0, policy.RMQUEUE_NORMAL)


# ---- freeing: merges and large frees --------------------------------------------------------

@BOTH
def test_merge_retypes_the_buddy_pageblock(kernel):
    """__free_one_page (:874): at order >= pageblock_order a buddy pageblock of another
    mergeable type takes the freed page's type (6.12); 6.1 leaves it."""
    st = one_zone_state(kernel=kernel)
    put_free(st, 0, 9, MOVABLE)
    st.pb_mt[1] = UNMOVABLE
    buddy.__free_one_page(st, 0, 512, 9, UNMOVABLE, False)
    assert free_list(st, 10, UNMOVABLE) == [0]
    assert st.pb_mt[0] == (UNMOVABLE if kernel == "6.12" else MOVABLE)


@BOTH
def test_order_10_frees_as_pageblock_pieces(kernel):
    """free_one_page: 6.12 split_large_buddy (:1272) frees an order-10 block as two order-9
    pieces with their own pageblock types (a HighAtomic one does not merge back); 6.1 frees
    one block to the first pageblock's type."""
    st = one_zone_state(kernel=kernel)
    st.pb_mt[1] = HIGHATOMIC
    buddy.free_one_page(st, 0, 0, 10)
    if kernel == "6.12":
        assert free_list(st, 9, MOVABLE) == [0] and free_list(st, 9, HIGHATOMIC) == [512]
    else:
        assert free_list(st, 10, MOVABLE) == [0]


# ---- watermarks, boost, HighAtomic ----------------------------------------------------------

@BOTH
def test_highatomic_watermark_term(kernel):
    """__zone_watermark_unusable_free: 6.1 subtracts nr_reserved_highatomic (512), 6.12 the
    free HighAtomic pages (8): 600 free against a mark of 100."""
    st = one_zone_state(kernel=kernel)
    put_free(st, 0, 9, MOVABLE)
    put_free(st, 512, 6, MOVABLE)
    put_free(st, 576, 4, MOVABLE)
    put_free(st, 1024, 3, HIGHATOMIC)
    st.zone_param[0, ZP_RESERVED_HA] = 512
    ok = policy.zone_watermark_ok(st, 0, 0, 100, ZONE_DMA32, policy.ALLOC_WMARK_LOW)
    assert ok == (kernel == "6.12")


@BOTH
def test_watermark_fast_boost_recheck_key(kernel):
    """zone_watermark_fast: the order-0 recheck at the unboosted min is keyed on __GFP_ATOMIC
    (6.1 L4148) or ALLOC_MIN_RESERVE (6.12 :3327). 200 free, min 100, boost 400."""
    st = one_zone_state(kernel=kernel, wmin=100)
    put_free(st, 0, 7, MOVABLE)
    put_free(st, 128, 6, MOVABLE)
    put_free(st, 192, 3, MOVABLE)
    st.zone_param[0, ZP_BOOST] = 400
    flags = policy.ALLOC_WMARK_MIN | policy.ALLOC_MIN_RESERVE
    high_only = policy.zone_watermark_fast(st, 0, 0, 500, ZONE_DMA32, flags, 0x20)
    atomic = policy.zone_watermark_fast(st, 0, 0, 500, ZONE_DMA32, policy.ALLOC_WMARK_MIN,
                                        0x220)
    assert (high_only, atomic) == ((False, True) if kernel == "6.1" else (True, False))


@BOTH
def test_boost_wakes_kswapd_only_with_alloc_kswapd(kernel):
    """rmqueue: ZONE_BOOSTED_WATERMARK is cleared (kswapd woken, boost reset in the model)
    by any allocation in 6.1 (L3912), only an ALLOC_KSWAPD one in 6.12 (:3170)."""
    st = one_zone_state(kernel=kernel, high=4, batch=1)
    put_free(st, 0, 10, MOVABLE)
    st.zone_param[0, ZP_FLAGS] |= ZONE_BOOSTED_WATERMARK
    st.zone_param[0, ZP_BOOST] = 512
    out, cnt = emitter(), counters()
    policy.rmqueue(st, 0, 0, policy.ALLOC_WMARK_LOW, MOVABLE, 0, out, 0, cnt)
    assert st.zone_param[0, ZP_BOOST] == (0 if kernel == "6.1" else 512)
    policy.rmqueue(st, 0, 0, policy.ALLOC_WMARK_LOW | policy.ALLOC_KSWAPD, MOVABLE, 0, out, 0,
                   cnt)
    assert st.zone_param[0, ZP_BOOST] == 0


@BOTH
def test_highatomic_reserve_limit(kernel):
    """reserve_highatomic_pageblock: 6.1 allows managed/100 + a pageblock (593 pages here);
    6.12 none at all when managed/100 (81) is under a pageblock (:2081)."""
    st = one_zone_state(kernel=kernel)
    mark_allocated(st, 0, 8, UNMOVABLE)
    assert policy.reserve_highatomic_pageblock(st, 0, 0, 3) == (kernel == "6.1")
    assert st.pb_mt[0] == (HIGHATOMIC if kernel == "6.1" else MOVABLE)


# ---- reconstruct: reading a 6.12 trace ------------------------------------------------------

def _arrays(rows):
    """Event columns from (ev, pfn, order, mt, cpu, refill, ford, fmt, chown) rows."""
    cols = list(zip(*rows, strict=True))
    return [np.asarray(c, np.int64) for c in cols]


def _follow(st, rows, disp=None, gfp=None):
    """reconstruct's follow_events over hand-made events (task context, no compaction)."""
    ev, pfn, order, mt, cpu, refill, ford, fmt, chown = _arrays(rows)
    n = len(ev)
    zeros = np.zeros(n, np.int64)
    e = EventArrays(seq=np.arange(n), ts=zeros, ev=ev, pfn=pfn, order=order, mt=mt, cpu=cpu,
                    refill=refill, ford=ford, fmt=fmt, chown=chown, irq=zeros + 0x80,
                    preempt=zeros, gfp=zeros if gfp is None else np.asarray(gfp, np.int64),
                    pid=zeros + 1)
    f = Follower(st, e, disp if disp is not None else np.full(n, D_PCP, np.int8))
    f.run(0, n)
    return f.counters, f.pred


@BOTH
def test_reconstruct_extfrag_only_claim(kernel):
    """A 6.12 extfrag of an order-10 claim is the take itself: the block leaves the lists,
    re-typed, its lowest page onto the refilling CPU's pcp list. Under 6.1's reading the
    extfrag only re-lists the block and waits for its zone_locked."""
    st = one_zone_state(kernel=kernel)
    put_free(st, 0, 10, MOVABLE)
    cnt, _ = _follow(st, [(EV_EXTFRAG, 0, 0, UNMOVABLE, 0, -1, 10, MOVABLE, 1)])
    assert list(st.pb_mt[0:2]) == [UNMOVABLE, UNMOVABLE]
    if kernel == "6.12":
        assert st.pg_state[0] == PG_PCP and pcp_list(st, UNMOVABLE) == [0]
        assert free_list(st, 9, UNMOVABLE) == [512] and cnt[C["extfrag_takes"]] == 1
    else:
        assert free_list(st, 10, UNMOVABLE) == [0]


def test_reconstruct_steal_and_claim_pairs():
    """6.12: a steal's extfrag takes the page from its block (rest stays on the pageblock's
    type); a smaller claim's zone_locked comes first and is applied after the claim's move."""
    st = one_zone_state(kernel="6.12")
    put_free(st, 0, 3, MOVABLE)
    put_free(st, 64, 2, MOVABLE)
    put_free(st, 1024, 2, MOVABLE)
    rows = [(EV_EXTFRAG, 1024, 0, UNMOVABLE, 0, -1, 2, MOVABLE, 0),     # a steal
            (EV_ZONE_LOCKED, 64, 0, UNMOVABLE, 0, 1, -1, -1, -1),      # claim of pageblock 0
            (EV_EXTFRAG, 64, 0, UNMOVABLE, 0, -1, 2, MOVABLE, 1)]
    ev, pfn, _, _, cpu, _, ford, _, chown = _arrays(rows)
    disp = np.full(3, D_PCP, np.int8)
    assert plan_claims(ev, pfn, cpu, ford, chown, disp, 9) == 1
    assert list(disp) == [D_PCP, D_CLAIM_FIRST, D_CLAIMED]
    cnt, pred = _follow(st, rows, disp)
    assert pred[1] == 64  # after the move, __rmqueue_smallest's own choice is the traced one
    assert st.pb_mt[0] == UNMOVABLE and free_list(st, 3, UNMOVABLE) == [0]
    assert st.pb_mt[2] == MOVABLE and free_list(st, 1, MOVABLE) == [1026]
    assert cnt[C["list_type_corrections"]] == 0 and sum(cnt[i] for i in INCONSISTENCIES) == 0


@pytest.mark.parametrize("free_elsewhere,reserved", [(0, True), (8 << 10, False)])
def test_reconstruct_highatomic_reserve(free_elsewhere, reserved):
    """An order-3 GFP_ATOMIC allocation that the slow path served (the zone was under its low
    watermark before the refill) reserves its pageblock, untraced: get_page_from_freelist()
    calls reserve_highatomic_pageblock() for ALLOC_HIGHATOMIC, and the pageblock's free blocks
    move to the HIGHATOMIC lists. Above the low watermark the fast path served it: nothing."""
    st = new_state(machine(zone_spec(pages=65536, wmin=2000, wlow=5000, whigh=6000),
                           kernel="6.12"))
    st.pb_mt[:] = UNMOVABLE
    for pfn, order in ((0, 3), (8, 3), (16, 4)):
        put_free(st, pfn, order, UNMOVABLE)
    for k in range(free_elsewhere >> 10):
        put_free(st, 8192 + (k << 10), 10, UNMOVABLE)
    rows = [(EV_ZONE_LOCKED, 0, 3, UNMOVABLE, 0, 1, -1, -1, -1),
            (EV_ALLOC, 0, 3, UNMOVABLE, 0, -1, -1, -1, -1)]
    gfp_atomic_comp = 0x820 | 0x40000  # GFP_ATOMIC|__GFP_COMP (6.12)
    cnt, _ = _follow(st, rows, gfp=[-1, gfp_atomic_comp])
    assert cnt[C["highatomic_reserves"]] == (1 if reserved else 0)
    assert st.pb_mt[0] == (HIGHATOMIC if reserved else UNMOVABLE)
    assert st.zone_param[0, ZP_RESERVED_HA] == (512 if reserved else 0)
    mt = HIGHATOMIC if reserved else UNMOVABLE
    assert free_list(st, 3, mt) == [8] and free_list(st, 4, mt) == [16]


@BOTH
def test_reconstruct_drain_type_proves_the_pageblock(kernel):
    """A 6.12 drain's type is its pageblock's now: a model pageblock of another type is
    corrected; a 6.1 drain's type is the type cached at free time and proves nothing."""
    st = one_zone_state(kernel=kernel)
    buddy.pcp_add(st, 0, 0, 16, 0, MOVABLE, False)
    cnt, _ = _follow(st, [(EV_PCPU_DRAIN, 16, 0, UNMOVABLE, 0, -1, -1, -1, -1)])
    assert free_list(st, 0, UNMOVABLE) == [16]
    assert st.pb_mt[0] == (UNMOVABLE if kernel == "6.12" else MOVABLE)
    assert cnt[C["pageblock_corrections"]] == (1 if kernel == "6.12" else 0)


RECLAIMABLE = 2


@BOTH
def test_start_lists_follow_a_pageblock_the_trace_says_nothing_about(kernel):
    """start.pagetypeinfo wants one more Reclaimable block of orders 2, 5 and 7 than the
    pageblock types give. 6.12 keeps a free block on its pageblock's list, so the order-5
    block to move is the one whose pageblock the trace says nothing about (pageblock 2, whose
    order-2 block moves too: the pageblock is re-typed Reclaimable, trading types with an
    empty Reclaimable pageblock), not the one in pageblock 5, whose Unmovable type later
    drains prove (ho-k612-numa's start: end pagetypeinfo off by one order-5 block before).
    6.1 lists can hold other types: the highest pfns move, pageblocks stay."""
    from replay.engine.initial import choose_list_types

    st = one_zone_state(kernel=kernel)  # 16 pageblocks of 512 pages
    m = machine(kernel=kernel)
    st.pb_mt[:] = UNMOVABLE
    st.pb_mt[9] = RECLAIMABLE  # holds no free page: the swap partner
    heads = [np.zeros(0, np.int64) for _ in range(11)]
    heads[2] = np.array([2 * 512 + 0x44])
    heads[5] = np.array([2 * 512 + 0x60, 5 * 512 + 0x60])
    heads[7] = np.array([5 * 512 + 0x80])
    evidence = np.full(16, -1, np.int8)
    evidence[5] = UNMOVABLE  # the trace's drains show pageblock 5 Unmovable
    targets = {(0, o): np.zeros(5, np.int64) for o in range(11)}
    targets[(0, 2)][RECLAIMABLE] = 1
    targets[(0, 5)][[UNMOVABLE, RECLAIMABLE]] = 1
    targets[(0, 7)][RECLAIMABLE] = 1
    types, retyped = choose_list_types(m, st, heads, evidence, targets, kernel == "6.12",
                                       lambda: np.zeros(16))
    assert types[2].tolist() == [RECLAIMABLE] and types[7].tolist() == [RECLAIMABLE]
    if kernel == "6.12":
        assert types[5].tolist() == [RECLAIMABLE, UNMOVABLE]
        assert (st.pb_mt[2], st.pb_mt[9], st.pb_mt[5]) == (RECLAIMABLE, UNMOVABLE, UNMOVABLE)
        assert retyped == 1
    else:
        assert types[5].tolist() == [UNMOVABLE, RECLAIMABLE]
        assert (st.pb_mt[2], st.pb_mt[9], retyped) == (UNMOVABLE, RECLAIMABLE, 0)


def test_free_batched_order_comes_from_the_mm_page_free():
    """6.12 free_unref_folios prints mm_page_free_batched with order=0 for a THP folio; its
    order is the preceding mm_page_free's of the same pfn on the same CPU."""
    ev = np.array([EV_FREE, EV_FREE, EV_FREE_BATCHED, EV_FREE_BATCHED])
    pfn = np.array([512, 7, 512, 7])
    order = np.array([9, 0, 0, 0])
    cpu = np.array([1, 1, 1, 0])  # pfn 7's batched is on another CPU: not its pair
    assert free_batched_orders(ev, pfn, order, cpu) == 1
    assert list(order) == [9, 0, 9, 0]


def test_interrupt_free_fails_only_its_own_zones_pcp_trylock():
    """pcp locks are per zone: a softirq free interrupting a task freeing another zone's
    pages (i386: HighMem pages, a lowmem free) goes to the pcp list."""
    ev = np.array([EV_FREE_BATCHED, EV_FREE, EV_FREE_BATCHED])
    pfn = np.array([900, 10, 901])
    order = np.zeros(3, np.int64)
    irq = np.array([0x80, 0xA0, 0x80])
    pre = np.array([2, 4, 2])
    cpu = np.zeros(3, np.int64)
    zone = np.zeros(1024, np.int16)
    zone[512:] = 1
    disp = plan_free_dispositions(ev, pfn, order, irq, pre, 9, zone, cpu)
    assert disp[1] == D_PCP
    zone[:] = 0
    assert plan_free_dispositions(ev, pfn, order, irq, pre, 9, zone, cpu)[1] == D_DIRECT_IRQ


def test_api_builds_a_612_machine():
    from replay.api import GFP_HIGHUSER_MOVABLE, PageAllocator

    runs = {}
    for kernel in KERNELS:
        mm = PageAllocator("mem=1G,cpus=2", kernel=kernel)
        pages = [mm.alloc_pages(GFP_HIGHUSER_MOVABLE) for _ in range(3000)]
        runs[kernel] = (mm.counts()["pcp_refills"], mm.pcp()["0/DMA32"])
        assert mm.profile.kernel == kernel and None not in pages
        assert mm.machine.zones[1].pcp_high_max > mm.machine.zones[1].pcp_high
    # 6.1: 48 refills of 63; 6.12: 63, 126, ..., 2016 (six refills), high grown by them
    assert runs["6.1"][0] == 48 and runs["6.12"][0] == 6
    assert runs["6.12"][1]["high"] > runs["6.12"][1]["high_min"]
    assert new_state(machine(kernel="6.12")).config[CFG_VMSTAT_MS] == 1000


def test_docs_table_lists_every_rule(traces):
    """docs/model.md's side-by-side table carries every rule of profile.py with its sources."""
    text = (traces.parent / "docs" / "model.md").read_text()
    for r in RULES:
        assert f"(`{r.key}`)" in text and r.src612.replace("|", "\\|") in text, r.key
