"""The buddy free lists: list primitives, expand(), __free_one_page() and their helpers.

Compiled with numba; every function takes the whole `State` (a tuple of arrays) and is inlined
into its callers, so the hot loops carry no call or reference-counting overhead.
Names follow mm/page_alloc.c (6.1) so the two can be read side by side.
"""

from __future__ import annotations

from replay.engine.jit import njit
from replay.engine.profile import CFG_MERGE_RETYPE, CFG_SPLIT_LARGE_FREE
from replay.engine.state import (
    CFG_CAPC_MOVABLE,
    CFG_CAPC_ORDER,
    CFG_CAPC_PAGE,
    CFG_CAPC_ZONE,
    CFG_MAX_ORDER,
    CFG_PAGEBLOCK_ORDER,
    MAX_ORDER,
    NIL,
    PG_BUDDY,
    PG_NONE,
    PG_PCP,
    ZP_END,
    ZP_START,
)

MIGRATE_HIGHATOMIC = 3
MIGRATE_ISOLATE = 4
MIGRATE_MOVABLE = 1


@njit(cache=True, _nrt=False)
def pageblock_mt(st, pfn):
    """get_pageblock_migratetype()"""
    return st.pb_mt[pfn >> st.config[CFG_PAGEBLOCK_ORDER]]


@njit(cache=True, _nrt=False)
def set_pageblock_mt(st, pfn, mt):
    st.pb_mt[pfn >> st.config[CFG_PAGEBLOCK_ORDER]] = mt


@njit(cache=True, _nrt=False)
def _link_head(head, tail, idx, st, pfn):
    first = head[idx]
    st.pg_prev[pfn] = NIL
    st.pg_next[pfn] = first
    if first == NIL:
        tail[idx] = pfn
    else:
        st.pg_prev[first] = pfn
    head[idx] = pfn


@njit(cache=True, _nrt=False)
def _link_tail(head, tail, idx, st, pfn):
    last = tail[idx]
    st.pg_next[pfn] = NIL
    st.pg_prev[pfn] = last
    if last == NIL:
        head[idx] = pfn
    else:
        st.pg_next[last] = pfn
    tail[idx] = pfn


@njit(cache=True, _nrt=False)
def _unlink(head, tail, idx, st, pfn):
    prv = st.pg_prev[pfn]
    nxt = st.pg_next[pfn]
    if prv == NIL:
        head[idx] = nxt
    else:
        st.pg_next[prv] = nxt
    if nxt == NIL:
        tail[idx] = prv
    else:
        st.pg_prev[nxt] = prv
    st.pg_next[pfn] = NIL
    st.pg_prev[pfn] = NIL


@njit(cache=True, _nrt=False)
def add_to_free_list(st, z, pfn, order, mt, tail):
    """__add_to_free_list(): a free block onto free_area[order].free_list[mt], head or tail."""
    idx = (int(z), int(order), int(mt))
    if tail:
        _link_tail(st.fl_head, st.fl_tail, idx, st, pfn)
    else:
        _link_head(st.fl_head, st.fl_tail, idx, st, pfn)
    st.fl_len[z, order, mt] += 1
    st.pg_state[pfn] = PG_BUDDY
    st.pg_order[pfn] = order
    st.pg_mt[pfn] = mt


@njit(cache=True, _nrt=False)
def del_page_from_free_list(st, z, pfn):
    """del_page_from_free_list(): off whatever free list it is on."""
    order = st.pg_order[pfn]
    mt = st.pg_mt[pfn]
    _unlink(st.fl_head, st.fl_tail, (int(z), int(order), int(mt)), st, pfn)
    st.fl_len[z, order, mt] -= 1
    st.pg_state[pfn] = PG_NONE


@njit(cache=True, _nrt=False)
def move_to_free_list_tail(st, z, pfn, mt):
    """move_to_free_list(): list_move_tail onto another type's list (steals)."""
    order = st.pg_order[pfn]
    del_page_from_free_list(st, z, pfn)
    add_to_free_list(st, z, pfn, order, mt, True)


@njit(cache=True, _nrt=False)
def move_freepages(st, z, start, end, mt):
    """move_freepages(): every free block in [start, end) to mt's lists (tail, ascending pfn);
    returns the free pages moved."""
    moved = 0
    p = start
    while p < end:
        if st.pg_state[p] == PG_BUDDY:
            o = st.pg_order[p]
            move_to_free_list_tail(st, z, p, mt)
            moved += 1 << o
            p += 1 << o
        else:
            p += 1
    return moved


@njit(cache=True, _nrt=False)
def move_freepages_block(st, z, pfn, mt):
    """move_freepages_block(): every free block of pfn's pageblock to mt's lists (tail,
    ascending pfn). The range starts at pfn when the pageblock starts before the zone; returns
    (free pages moved, start, end), with 0 moved when the pageblock ends past the zone."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    start = (pfn >> pbo) << pbo
    end = start + (1 << pbo)
    if start < st.zone_param[z, ZP_START]:
        start = pfn  # do not cross the zone's start
    if end > st.zone_param[z, ZP_END]:
        return 0, start, end
    return move_freepages(st, z, start, end, mt), start, end


@njit(cache=True, _nrt=False)
def change_pageblock_range(st, pfn, order, mt):
    """change_pageblock_range(): every pageblock of a block of `order` >= pageblock_order takes
    type mt; returns how many changed."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    changed = 0
    for b in range(pfn >> pbo, (pfn + (1 << order)) >> pbo):
        if st.pb_mt[b] != mt:
            changed += 1
        st.pb_mt[b] = mt
    return changed


@njit(cache=True, _nrt=False)
def zone_contains(st, z, pfn):
    return st.zone_param[z, ZP_START] <= pfn < st.zone_param[z, ZP_END]


@njit(cache=True, _nrt=False)
def page_is_buddy(st, z, buddy, order):
    """page_is_buddy(): a free block of exactly this order, in the same zone."""
    if buddy < 0 or buddy >= st.pg_state.shape[0]:
        return False
    return (st.pg_state[buddy] == PG_BUDDY and st.pg_order[buddy] == order
            and st.pg_zone[buddy] == z)


@njit(cache=True, _nrt=False)
def find_free_block(st, pfn):
    """The head of the free block containing pfn, or -1 (walks up the orders, as PageBuddy)."""
    for o in range(MAX_ORDER):
        head = (pfn >> o) << o
        if st.pg_state[head] == PG_BUDDY and st.pg_order[head] >= o:
            if pfn - head < (1 << st.pg_order[head]):
                return head
    return -1


@njit(cache=True, _nrt=False)
def find_pcp_block(st, pfn):
    """The head of the pcp entry containing pfn, or -1."""
    for o in range(MAX_ORDER):
        head = (pfn >> o) << o
        if st.pg_state[head] == PG_PCP and pfn - head < (1 << st.pg_order[head]):
            return head
    return -1


@njit(cache=True, _nrt=False)
def expand(st, z, pfn, low, high, mt):
    """expand(): split a block of order `high` down to `low`; the lowest part is allocated and
    each upper half goes to the head of the `mt` list (the requested type)."""
    size = 1 << high
    while high > low:
        high -= 1
        size >>= 1
        add_to_free_list(st, z, pfn + size, high, mt, False)
        st.pg_warm[pfn + size] = 1


@njit(cache=True, _nrt=False)
def split_around(st, z, head, high, pfn, low, mt):
    """Like expand(), but keeps the part containing `pfn` (a resync when the model's block is
    larger than the kernel's or the traced page is not its lowest part)."""
    while high > low:
        high -= 1
        half = 1 << high
        if pfn >= head + half:
            add_to_free_list(st, z, head, high, mt, False)
            st.pg_warm[head] = 1
            head += half
        else:
            add_to_free_list(st, z, head + half, high, mt, False)
            st.pg_warm[head + half] = 1
    return head


@njit(cache=True, _nrt=False)
def buddy_merge_likely(st, z, pfn, buddy_pfn, order):
    """buddy_merge_likely(): is the merged block's own buddy one order up free? Then the block
    goes to the tail, to be merged soon rather than allocated."""
    if order >= st.config[CFG_MAX_ORDER] - 2:
        return False
    higher = buddy_pfn & pfn
    higher_buddy = higher ^ (1 << (order + 1))
    return page_is_buddy(st, z, higher_buddy, order + 1)


@njit(cache=True, _nrt=False)
def __free_one_page(st, z, pfn, order, mt, to_tail_forced):
    """__free_one_page(): merge with free buddies up the orders, then list at head or tail.

    Returns the head pfn of the final block. The block goes on the list of `mt` (the freeing
    page's cached type), whatever its buddies' lists were. With the merge_retype rule (6.12
    page_alloc.c:874) a buddy pageblock of another mergeable type takes `mt`.
    """
    cap = st.config[CFG_CAPC_ORDER]
    if cap == 0 or st.config[CFG_CAPC_ZONE] != z:
        head, _ = free_one_page_capc(st, z, pfn, order, mt, to_tail_forced, -1, False)
        return head
    # the model's own direct compaction is running: compaction_capture()
    head, captured = free_one_page_capc(st, z, pfn, order, mt, to_tail_forced, cap - 1,
                                        st.config[CFG_CAPC_MOVABLE] != 0)
    if captured:
        st.config[CFG_CAPC_PAGE] = head + 1
        st.config[CFG_CAPC_ORDER] = 0
    return head


@njit(cache=True, _nrt=False)
def free_one_page_capc(st, z, pfn, order, mt, to_tail_forced, capture_order, capture_movable):
    """__free_one_page() with a direct compaction's capture_control: when the merging block
    reaches `capture_order` (-1: none) and compaction_capture() accepts it, the block is taken
    for the compacting task instead of being listed (`capture_movable`: the 6.12 rule that a
    MOVABLE request may take a MOVABLE block below pageblock_order). Returns (head pfn,
    captured)."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    if mt != MIGRATE_ISOLATE:
        st.nr_free_pages[z] += 1 << order
    buddy_pfn = pfn ^ (1 << order)
    max_order = st.config[CFG_MAX_ORDER]
    while order < max_order - 1:
        if capture_order >= 0 and order == capture_order and mt != MIGRATE_ISOLATE and not (
                order < pbo and mt == MIGRATE_MOVABLE
                and not capture_movable):  # compaction_capture()
            if mt != MIGRATE_ISOLATE:
                st.nr_free_pages[z] -= 1 << order
            st.pg_state[pfn] = PG_NONE
            st.pg_order[pfn] = order
            return pfn, True
        buddy_pfn = pfn ^ (1 << order)
        if not page_is_buddy(st, z, buddy_pfn, order):
            break
        if order >= pbo:
            # do not merge across pageblocks of unmergeable types (HIGHATOMIC, ISOLATE)
            bmt = st.pb_mt[buddy_pfn >> pbo]
            if mt != bmt and (mt >= MIGRATE_HIGHATOMIC or bmt >= MIGRATE_HIGHATOMIC):
                break
            if mt != bmt and st.config[CFG_MERGE_RETYPE] != 0:
                change_pageblock_range(st, buddy_pfn, order, mt)
        del_page_from_free_list(st, z, buddy_pfn)
        pfn = pfn & buddy_pfn
        order += 1
    if to_tail_forced:
        to_tail = True
    else:
        to_tail = buddy_merge_likely(st, z, pfn, buddy_pfn, order)
    add_to_free_list(st, z, pfn, order, mt, to_tail)
    st.pg_warm[pfn] = 1
    return pfn, False


@njit(cache=True, _nrt=False)
def free_one_page(st, z, pfn, order):
    """free_one_page(): a block straight to the buddy lists with its pageblock's type. With
    the split_large_free rule (6.12 split_large_buddy, page_alloc.c:1272) a block above
    pageblock_order is freed as pageblock-sized pieces, each with its own pageblock's type."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    st.pg_state[pfn] = PG_NONE
    if order <= pbo or st.config[CFG_SPLIT_LARGE_FREE] == 0:
        return __free_one_page(st, z, pfn, order, st.pb_mt[pfn >> pbo], False)
    head = pfn
    for k in range(1 << (order - pbo)):
        piece = pfn + (k << pbo)
        st.pg_state[piece] = PG_NONE
        head = __free_one_page(st, z, piece, pbo, st.pb_mt[piece >> pbo], False)
    return head


@njit(cache=True, _nrt=False)
def move_freepages_pageblock(st, z, pfn, mt):
    """__move_freepages_block() as the kernel did it (a traced claim or a proven type): every
    free block of pfn's pageblock (inside the zone) to mt's lists, then the pageblock's type.
    A free block of pageblock_order or more is moved whole and its pageblocks all re-typed.
    Returns the pageblocks whose type changed."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    head = find_free_block(st, pfn)
    if head >= 0 and st.pg_order[head] >= pbo:
        changed = change_pageblock_range(st, head, st.pg_order[head], mt)
        if st.pg_mt[head] != mt:
            move_to_free_list_tail(st, z, head, mt)
        return changed
    start = (pfn >> pbo) << pbo
    end = start + (1 << pbo)
    start = max(start, st.zone_param[z, ZP_START])
    end = min(end, st.zone_param[z, ZP_END])
    p = start
    while p < end:
        if st.pg_state[p] == PG_BUDDY:
            o = st.pg_order[p]
            if st.pg_mt[p] != mt:
                move_to_free_list_tail(st, z, p, mt)
            p += 1 << o
        else:
            p += 1
    changed = 1 if st.pb_mt[pfn >> pbo] != mt else 0
    st.pb_mt[pfn >> pbo] = mt
    return changed


@njit(cache=True, _nrt=False)
def take_free_block(st, z, head):
    """Take a whole free block off its list and out of NR_FREE_PAGES."""
    order = st.pg_order[head]
    del_page_from_free_list(st, z, head)
    st.nr_free_pages[z] -= 1 << order
    return order


# ---- per-CPU lists -------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def order_to_pindex(mt, order, pbo):
    """order_to_pindex(): 3 * order + mt for orders 0-3; THP lists 12 (non-movable), 13."""
    if order > 3:
        return 12 if mt != MIGRATE_MOVABLE else 13
    return 3 * order + mt


@njit(cache=True, _nrt=False)
def pindex_to_order(pindex):
    if pindex >= 12:
        return -1  # pageblock_order: the caller knows it
    return pindex // 3


@njit(cache=True, _nrt=False)
def pcp_add(st, cpu, z, pfn, order, mt, tail):
    """A block onto a pcp list (list_add at the head on free; tail on refill)."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    lmt = mt if mt < MIGRATE_HIGHATOMIC else MIGRATE_MOVABLE  # HIGHATOMIC/CMA use MOVABLE's list
    idx = (int(cpu), int(z), int(order_to_pindex(lmt, order, pbo)))
    if tail:
        _link_tail(st.pcp_head, st.pcp_tail, idx, st, pfn)
    else:
        _link_head(st.pcp_head, st.pcp_tail, idx, st, pfn)
    st.pg_state[pfn] = PG_PCP
    st.pg_order[pfn] = order
    st.pg_mt[pfn] = mt  # page->index: the cached type used at drain time
    st.pg_cpu[pfn] = cpu
    st.pcp_count[cpu, z] += 1 << order


@njit(cache=True, _nrt=False)
def pcp_del(st, z, pfn):
    """A block off whichever pcp list holds it."""
    pbo = st.config[CFG_PAGEBLOCK_ORDER]
    cpu = st.pg_cpu[pfn]
    order = st.pg_order[pfn]
    mt = st.pg_mt[pfn]
    lmt = mt if mt < MIGRATE_HIGHATOMIC else MIGRATE_MOVABLE
    _unlink(st.pcp_head, st.pcp_tail, (int(cpu), int(z), int(order_to_pindex(lmt, order, pbo))),
            st, pfn)
    st.pg_state[pfn] = PG_NONE
    st.pg_cpu[pfn] = -1
    st.pcp_count[cpu, z] -= 1 << order
    return cpu


@njit(cache=True, _nrt=False)
def pcp_allowed_order(order, pbo):
    """pcp_allowed_order(): orders 0..PAGE_ALLOC_COSTLY_ORDER and pageblock_order (THP)."""
    return order <= 3 or order == pbo
