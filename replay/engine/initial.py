"""The initial state: from a bundle's start snapshot, or all memory free as at boot.

From a snapshot (the rules are documented in docs/model.md):
1. Free pages are the KPF_BUDDY pages of start.kpageflags (6.1 sets it on every page of a free
   block), brought back to the start.buddyinfo marker with the events traced between that marker
   and the end of the kpageflags read: a page whose first such event takes it from buddy was free
   at the marker; a page whose first such event returns it to buddy was not.
2. The free set is split into maximal aligned blocks (order <= MAX_ORDER-1, inside one zone):
   the kernel always merges buddies, so the split is unique.
3. Pageblock types: the trace's own evidence first (a pcpu_drain's migratetype is the type its
   pageblock had when the page was freed; a whole-pageblock free block taken by zone_locked shows
   its list), before any steal touches the pageblock; the rest filled to start.pagetypeinfo's
   per-type counts by what kpageflags says the pageblock holds (LRU pages: Movable; slab and page
   tables: Unmovable).
4. Free-list types: a block's pageblock type, then moved between types (cold blocks first) until
   each (order, type) count equals start.pagetypeinfo's; the replay corrects a block's type when
   the kernel's choice proves it (fix_list_type).
5. Each list in ascending pfn order (the real order is unknowable); pcp lists empty (their pages
   show as allocated in kpageflags, and come back through the trace).
"""

from __future__ import annotations

import numpy as np

from replay.engine.buddy import MIGRATE_HIGHATOMIC
from replay.engine.machine import Machine
from replay.engine.state import (
    MAX_ORDER,
    MIGRATE_TYPES,
    NIL,
    PG_BUDDY,
    ZP_END,
    ZP_RESERVED_HA,
    ZP_START,
    State,
    new_state,
    zone_pageblocks,
)
from replay.trace.schema import (
    EV_EXTFRAG,
    EV_PCPU_DRAIN,
    EV_ZONE_LOCKED,
    MIGRATETYPE_NAMES,
)

KPF_LRU, KPF_SLAB, KPF_BUDDY, KPF_NOPAGE, KPF_PGTABLE = 5, 7, 10, 20, 26
KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL = 15, 16


def split_into_blocks(free: np.ndarray, pg_zone: np.ndarray,
                      max_order: int = MAX_ORDER) -> list[np.ndarray]:
    """Maximal aligned free blocks: heads per order (highest orders first, greedy)."""
    free = free.astype(bool).copy()
    n = len(free)
    heads: list[np.ndarray] = [np.empty(0, np.int64)] * max_order
    for o in range(max_order - 1, -1, -1):
        size = 1 << o
        m = n // size
        if m == 0:
            continue
        full = free[: m * size].reshape(m, size).all(axis=1)
        starts = np.flatnonzero(full) * size
        if len(starts) and o > 0:
            same = (pg_zone[starts] == pg_zone[starts + size - 1]) & (pg_zone[starts] >= 0)
            starts = starts[same]
        elif len(starts):
            starts = starts[pg_zone[starts] >= 0]
        heads[o] = starts.astype(np.int64)
        _clear_blocks(free, heads[o], size)
    return heads


def _clear_blocks(free: np.ndarray, starts: np.ndarray, size: int) -> None:
    if len(starts):
        idx = (starts[:, None] + np.arange(size)[None, :]).ravel()
        free[idx] = False


def correct_free_set(free: np.ndarray, ev: np.ndarray, pfn: np.ndarray, order: np.ndarray,
                     disp_direct: np.ndarray, i0: int, i1: int) -> int:
    """Bring a kpageflags free set back to event index i0 using events [i0, i1): the first
    buddy-level event per page decides. Returns the number of pages changed."""
    sel = np.arange(i0, i1)
    sel = sel[pfn[sel] >= 0]
    take = ev[sel] == EV_ZONE_LOCKED
    ret = (ev[sel] == EV_PCPU_DRAIN) | disp_direct[sel]
    sel_t = sel[take | ret]
    is_take = (ev[sel_t] == EV_ZONE_LOCKED)
    if not len(sel_t):
        return 0
    sizes = (1 << order[sel_t].astype(np.int64))
    pages = np.repeat(pfn[sel_t], sizes) + (np.arange(sizes.sum()) - np.repeat(
        np.cumsum(sizes) - sizes, sizes))
    kinds = np.repeat(is_take, sizes)
    pages_u, first = np.unique(pages, return_index=True)
    ok = pages_u < len(free)
    pages_u, first = pages_u[ok], first[ok]
    want = kinds[first]
    changed = int(np.count_nonzero(free[pages_u] != want))
    free[pages_u] = want
    return changed


def pageblock_evidence(ev: np.ndarray, pfn: np.ndarray, mt: np.ndarray, fmt: np.ndarray,
                       fmt_order: np.ndarray, i0: int, npb: int, pbo: int,
                       takes: np.ndarray | None = None) -> np.ndarray:
    """Per pageblock, the type the trace shows before any steal touches it (-1: no evidence).

    A pcpu_drain's migratetype is the cached pageblock type of the page when it was freed;
    an extfrag's fallback type is its list, and after it the pageblock may change. Where a
    list's type is its pageblock's (6.12), the zone_locked events in the `takes` mask (all
    but a claim's, whose list is the new type) show the pageblock's type too."""
    out = np.full(npb, -1, np.int8)
    sel = np.arange(i0, len(ev))
    kinds = (ev[sel] == EV_PCPU_DRAIN) | (ev[sel] == EV_EXTFRAG)
    if takes is not None:
        kinds |= takes[sel]
    sel = sel[(pfn[sel] >= 0) & kinds]
    if not len(sel):
        return out
    # an extfrag of a block of pageblock_order or more speaks for every pageblock it spans
    span = np.where(ev[sel] == EV_EXTFRAG,
                    np.maximum(1, (1 << np.maximum(fmt_order[sel], 0)) >> pbo), 1)
    rep = np.repeat(sel, span)
    offs = np.arange(len(rep)) - np.repeat(np.cumsum(span) - span, span)
    pb = (pfn[rep] >> pbo) + offs
    pbu, first = np.unique(pb, return_index=True)
    first_sel = rep[first]
    typ = np.where(ev[first_sel] != EV_EXTFRAG, mt[first_sel], fmt[first_sel]).astype(np.int8)
    keep = (pbu < npb) & (typ >= 0) & (typ < MIGRATE_TYPES)
    out[pbu[keep]] = typ[keep]
    return out


def movable_scores(st: State, kpf: np.ndarray | None, pbo: int) -> np.ndarray:
    """Per pageblock, how movable its content looks in kpageflags (LRU pages count for,
    slab and page tables against, free pages half for)."""
    n = st.pg_zone.shape[0]
    npb_all = len(st.pb_mt)
    if kpf is None:
        return np.zeros(npb_all)
    flags = np.zeros(npb_all << pbo, np.uint64)
    m = min(len(kpf), n)
    flags[:m] = kpf[:m]
    flags = flags.reshape(npb_all, 1 << pbo)
    lru = ((flags >> np.uint64(KPF_LRU)) & np.uint64(1)).sum(axis=1)
    buddy = ((flags >> np.uint64(KPF_BUDDY)) & np.uint64(1)).sum(axis=1)
    unmov = (((flags >> np.uint64(KPF_SLAB)) | (flags >> np.uint64(KPF_PGTABLE)))
             & np.uint64(1)).sum(axis=1)
    return lru.astype(np.float64) + buddy * 0.5 - unmov * 2


def assign_pageblock_types(machine: Machine, st: State, kpf: np.ndarray | None,
                           evidence: np.ndarray, targets: dict[int, dict[int, int]]) -> None:
    """Pageblock types: evidence first, then fill each zone's per-type counts by content."""
    pbo = machine.pageblock_order
    movable_score = movable_scores(st, kpf, pbo)
    for zi, z in enumerate(machine.zones):
        pbs = zone_pageblocks(st, z.start_pfn, z.end_pfn, zi, pbo)
        target = targets.get(zi)
        ev = evidence[pbs]
        types = np.full(len(pbs), -1, np.int8)
        types[ev >= 0] = ev[ev >= 0]
        if target is None:
            types[types < 0] = 1
            st.pb_mt[pbs] = types
            continue
        need = {t: target.get(t, 0) - int(np.count_nonzero(types == t)) for t in range(5)}
        free_idx = np.flatnonzero(types < 0)
        # the most movable-looking pageblocks become Movable; the least movable ones the
        # reserves and Reclaimable; the rest Unmovable
        order = free_idx[np.argsort(-movable_score[pbs[free_idx]], kind="stable")]
        k1 = max(need[1], 0)
        types[order[:k1]] = 1
        rest = order[k1:]
        tail = len(rest)
        for t in (2, 3, 4):
            k = min(max(need[t], 0), tail)
            if k:
                types[rest[tail - k : tail]] = t
                tail -= k
        types[rest[:tail]] = 0
        types[types < 0] = 0
        st.pb_mt[pbs] = types


def build_free_lists(st: State, heads: list[np.ndarray], list_types: list[np.ndarray]) -> None:
    """Link each (zone, order, type) list in ascending pfn order."""
    for o in range(MAX_ORDER):
        h = heads[o]
        if not len(h):
            continue
        zs = st.pg_zone[h].astype(np.int64)
        mts = list_types[o].astype(np.int64)
        key = (zs * MIGRATE_TYPES + mts) * (1 << 40) + h
        srt = np.argsort(key, kind="stable")
        h, zs, mts = h[srt], zs[srt], mts[srt]
        st.pg_state[h] = PG_BUDDY
        st.pg_order[h] = o
        st.pg_mt[h] = mts
        grp = zs * MIGRATE_TYPES + mts
        new_grp = np.ones(len(h), bool)
        new_grp[1:] = grp[1:] != grp[:-1]
        end_grp = np.ones(len(h), bool)
        end_grp[:-1] = grp[:-1] != grp[1:]
        nxt = np.empty(len(h), np.int64)
        nxt[:-1] = h[1:]
        nxt[end_grp] = NIL
        prv = np.empty(len(h), np.int64)
        prv[1:] = h[:-1]
        prv[new_grp] = NIL
        st.pg_next[h] = nxt
        st.pg_prev[h] = prv
        st.fl_head[zs[new_grp], o, mts[new_grp]] = h[new_grp]
        st.fl_tail[zs[end_grp], o, mts[end_grp]] = h[end_grp]
        np.add.at(st.fl_len, (zs, o, mts), 1)
        np.add.at(st.nr_free_pages, zs, 1 << o)


def match_list_type_counts(st: State, heads: list[np.ndarray], types: list[np.ndarray],
                           targets: dict[tuple[int, int], np.ndarray],
                           prefer: list[list[np.ndarray]] | None = None) -> None:
    """Move blocks between list types until each (zone, order) has pagetypeinfo's counts:
    the highest-pfn block of a surplus type first, from the first tier of `prefer` (masks
    per order, most preferred first) that holds one."""
    for o in range(MAX_ORDER):
        h = heads[o]
        if not len(h):
            continue
        zs = st.pg_zone[h]
        t = types[o]
        for zi in np.unique(zs):
            target = targets.get((int(zi), o))
            if target is None:
                continue
            sel = np.flatnonzero(zs == zi)
            have = np.bincount(t[sel], minlength=MIGRATE_TYPES)[:MIGRATE_TYPES]
            surplus = {m: int(have[m] - target[m]) for m in range(MIGRATE_TYPES)}
            for m_to in range(MIGRATE_TYPES):
                while surplus[m_to] < 0:
                    donors = [m for m in range(MIGRATE_TYPES) if surplus[m] > 0]
                    if not donors:
                        break
                    m_from = donors[0]
                    cand = sel[t[sel] == m_from]
                    for tier in prefer or ():
                        if tier[o][cand].any():
                            cand = cand[tier[o][cand]]
                            break
                    # move the highest-pfn block of the donor type (lists are ascending)
                    t[cand[-1]] = m_to
                    surplus[m_from] -= 1
                    surplus[m_to] += 1


def _free_blocks_per_pageblock(heads: list[np.ndarray], pbo: int, npb: int) -> np.ndarray:
    """How many free blocks lie in each pageblock (a block above pageblock_order counts in
    every pageblock it spans)."""
    free_pb = np.zeros(npb, np.int64)
    for o in range(MAX_ORDER):
        span = max(1, (1 << o) >> pbo)
        for k in range(span):
            np.add.at(free_pb, (heads[o] >> pbo) + k, 1)
    return free_pb


def _without_evidence(heads: list[np.ndarray], evidence: np.ndarray, pbo: int,
                      alone_in: np.ndarray | None = None) -> list[np.ndarray]:
    """Per order, the blocks whose pageblock(s) the trace says nothing about (and, with
    `alone_in` the free blocks per pageblock, that are their pageblock's only free block):
    their type can change with their pageblock's."""
    out = []
    for o in range(MAX_ORDER):
        h = heads[o]
        first = h >> pbo
        ok = evidence[first] < 0
        if alone_in is not None:
            ok &= alone_in[first] == 1
        for k in range(1, max(1, (1 << o) >> pbo)):
            ok &= evidence[first + k] < 0
        out.append(ok)
    return out


def align_pageblocks_to_lists(machine: Machine, st: State, heads: list[np.ndarray],
                              types: list[np.ndarray], evidence: np.ndarray,
                              score: np.ndarray, free_pb: np.ndarray) -> int:
    """Where a free block's list is always its pageblock's type (6.12), a block the count
    matching put on another type's list says its pageblock has that type: re-type the
    pageblock (when the trace has no evidence for it and all its free blocks are on that list) and
    give its old type to a pageblock of the new type holding no free page, so the per-type
    pageblock counts stay those of pagetypeinfo. `free_pb`: the free blocks in each
    pageblock. Returns the pageblocks re-typed."""
    pbo = machine.pageblock_order
    # per pageblock, the one list type all its free blocks are on (-1: none or several)
    lists_pb = np.full(len(st.pb_mt), -2, np.int64)
    for o in range(MAX_ORDER):
        span = max(1, (1 << o) >> pbo)
        for h, t in zip(heads[o], types[o], strict=True):
            for pb in range(h >> pbo, (h >> pbo) + span):
                lists_pb[pb] = t if lists_pb[pb] in (-2, t) else -1
    changed = 0
    for o in range(MAX_ORDER):
        for h, t in zip(heads[o], types[o], strict=True):
            span = max(1, (1 << o) >> pbo)
            pbs = np.arange(h >> pbo, (h >> pbo) + span)
            old = st.pb_mt[pbs]
            if (old == t).all():
                continue
            if (evidence[pbs] >= 0).any() or (lists_pb[pbs] != t).any():
                continue
            zi = st.pg_zone[h]
            for pb, was in zip(pbs, old, strict=True):
                if was == t:
                    continue
                cand = zone_pageblocks(st, machine.zones[zi].start_pfn, machine.zones[zi].end_pfn,
                                       zi, pbo)
                cand = cand[(st.pb_mt[cand] == t) & (free_pb[cand] == 0) & (evidence[cand] < 0)]
                if not len(cand):
                    continue
                # the pageblock of type t that looks most like `was`
                pick = cand[np.argmax(score[cand] if was == 1 else -score[cand])]
                st.pb_mt[pick] = was
                st.pb_mt[pb] = t
                changed += 1
    return changed


def choose_list_types(machine: Machine, st: State, heads: list[np.ndarray],
                      evidence: np.ndarray, targets: dict[tuple[int, int], np.ndarray],
                      list_is_pageblock: bool, score) -> tuple[list[np.ndarray], int]:
    """Each free block's list type (per order, beside `heads`): its pageblock's, then moved
    between types to meet pagetypeinfo's (zone, order) counts. Where a list is its
    pageblock's type (6.12) the blocks moved first are those whose pageblock can follow them
    (no evidence; alone in it, then with others), and pageblocks are then re-typed to their
    blocks' lists. `score()` gives movable_scores. Returns the types and the re-typed count."""
    pbo = machine.pageblock_order
    types = [st.pb_mt[h >> pbo].astype(np.int64) for h in heads]
    prefer = None
    if list_is_pageblock:
        free_pb = _free_blocks_per_pageblock(heads, pbo, len(st.pb_mt))
        prefer = [_without_evidence(heads, evidence, pbo, free_pb),
                  _without_evidence(heads, evidence, pbo)]
    match_list_type_counts(st, heads, types, targets, prefer)
    retyped = 0
    if list_is_pageblock:
        retyped = align_pageblocks_to_lists(machine, st, heads, types, evidence, score(),
                                            free_pb)
    return types, retyped


def initial_state_from_snapshot(machine: Machine, kpf: np.ndarray, pagetypeinfo,
                                ev: np.ndarray, pfn: np.ndarray, order: np.ndarray,
                                mt: np.ndarray, fmt: np.ndarray, ford: np.ndarray,
                                disp_direct: np.ndarray,
                                i_start: int, i_kpf_end: int, cpus: int,
                                list_is_pageblock: bool = False,
                                claims: np.ndarray | None = None,
                                evidence: np.ndarray | None = None) -> tuple[State, dict]:
    """The state at event index i_start (the start.buddyinfo begin marker).

    `list_is_pageblock` (6.12): every free block is on its pageblock's list, so takes show
    pageblock types (except those of the `claims` mask) and the list types are matched to
    pagetypeinfo by re-typing pageblocks the trace says nothing about. `evidence` is
    pageblock_evidence's result when the caller has it already (a streamed trace, whose
    arrays here hold only the start window)."""
    st = new_state(machine, cpus)
    n = st.pg_zone.shape[0]
    free = np.zeros(n, bool)
    m = min(len(kpf), n)
    # pfns without a struct page (memory holes) belong to no zone
    nopage = ((kpf[:m] >> np.uint64(KPF_NOPAGE)) & np.uint64(1)) != 0
    st.pg_zone[:m][nopage] = -1
    free[:m] = ((kpf[:m] >> np.uint64(KPF_BUDDY)) & np.uint64(1)) != 0
    free &= st.pg_zone >= 0
    changed = correct_free_set(free, ev, pfn, order, disp_direct, i_start, i_kpf_end)
    heads = split_into_blocks(free, st.pg_zone)
    pbo = machine.pageblock_order
    if evidence is None:
        takes = None
        if list_is_pageblock:
            takes = ev == EV_ZONE_LOCKED
            if claims is not None:
                takes &= ~claims
        evidence = pageblock_evidence(ev, pfn, mt, fmt, ford, i_start, len(st.pb_mt), pbo, takes)
    zone_index = {(z.node, z.name): i for i, z in enumerate(machine.zones)}
    pb_targets: dict[int, dict[int, int]] = {}
    list_targets: dict[tuple[int, int], np.ndarray] = {}
    if pagetypeinfo is not None:
        for (node, zname), counts in pagetypeinfo.blocks.items():
            zi = zone_index.get((node, zname))
            if zi is not None:
                pb_targets[zi] = {MIGRATETYPE_NAMES.index(k): v for k, v in counts.items()
                                  if k in MIGRATETYPE_NAMES}
        for (node, zname), per_type in pagetypeinfo.free.items():
            zi = zone_index.get((node, zname))
            if zi is None:
                continue
            for o in range(MAX_ORDER):
                arr = np.zeros(MIGRATE_TYPES, np.int64)
                for k, v in per_type.items():
                    if k in MIGRATETYPE_NAMES and o < len(v):
                        arr[MIGRATETYPE_NAMES.index(k)] = v[o]
                list_targets[(zi, o)] = arr
    assign_pageblock_types(machine, st, kpf, evidence, pb_targets)
    types, retyped = choose_list_types(machine, st, heads, evidence, list_targets,
                                       list_is_pageblock, lambda: movable_scores(st, kpf, pbo))
    build_free_lists(st, heads, types)
    count_highatomic_reserve(machine, st)
    # pages not free: remember whether they look movable (LRU), for the steal estimate
    lru = np.zeros(n, bool)
    lru[:m] = ((kpf[:m] >> np.uint64(KPF_LRU)) & np.uint64(1)) != 0
    nonfree = st.pg_state != PG_BUDDY
    st.pg_mt[nonfree & lru] = 1
    mark_compound_heads(st, kpf[:m])
    info = {"pages_corrected_by_events": changed, "free_pages": int(free.sum())}
    if list_is_pageblock:
        info["pageblocks_retyped_to_lists"] = retyped
    return st, info


def count_highatomic_reserve(machine: Machine, st: State) -> None:
    """zone->nr_reserved_highatomic: a pageblock's pages per HIGHATOMIC pageblock of the
    snapshot (what reserve_highatomic_pageblock() adds per reserve)."""
    pbo = machine.pageblock_order
    for zi in range(st.zone_param.shape[0]):
        pbs = zone_pageblocks(st, int(st.zone_param[zi, ZP_START]),
                              int(st.zone_param[zi, ZP_END]), zi, pbo)
        st.zone_param[zi, ZP_RESERVED_HA] = int((st.pb_mt[pbs] == MIGRATE_HIGHATOMIC).sum()
                                                ) << pbo


def mark_compound_heads(st: State, kpf: np.ndarray) -> None:
    """pg_comp at each compound head of the snapshot: order + 1, the order from the run of
    KPF_COMPOUND_TAIL pages after the head (compaction's free scanner skips a compound page
    whole when it visits its head)."""
    head = ((kpf >> np.uint64(KPF_COMPOUND_HEAD)) & np.uint64(1)).astype(bool)
    tail = ((kpf >> np.uint64(KPF_COMPOUND_TAIL)) & np.uint64(1)).astype(bool)
    heads = np.flatnonzero(head)
    if not len(heads):
        return
    # length of the tail run after each head: distance to the next non-tail page
    not_tail = np.append(np.flatnonzero(~tail), len(kpf))
    nxt = not_tail[np.searchsorted(not_tail, heads + 1)]
    pages = np.minimum(nxt - heads, 1 << (MAX_ORDER - 1))
    order = np.floor(np.log2(np.maximum(pages, 1))).astype(np.int8)
    st.pg_comp[heads] = order + 1


def initial_state_boot(machine: Machine, cpus: int) -> State:
    """Without a snapshot: all memory free, every pageblock MOVABLE, as at boot."""
    st = new_state(machine, cpus)
    free = st.pg_zone >= 0
    if len(free):
        free[0] = False  # pfn 0 is reserved on x86
    heads = split_into_blocks(free, st.pg_zone)
    st.pb_mt[:] = 1
    build_free_lists(st, heads, [np.ones(len(h), np.int64) for h in heads])
    return st
