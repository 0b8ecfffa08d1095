"""Tiny hand-built machines and states for the engine's rule tests (tests/test_engine_rules.py).

Everything here is plain Python around the engine's own primitives: a state is built with
`new_state`, free blocks go on the lists with `buddy.add_to_free_list` (plus NR_FREE_PAGES, as
the kernel's accounting has it), allocated blocks are marked in the page map, and the lists are
read back by walking the `pg_next` links from each list's head.
"""

from __future__ import annotations

import inspect

import numpy as np

from replay.engine import buddy, policy
from replay.engine.machine import Machine, ZoneSpec
from replay.engine.state import NIL, PG_ALLOC, State, new_state

UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC, ISOLATE = range(5)
ZONE_DMA, ZONE_DMA32, ZONE_NORMAL = 0, 1, 2
PAGEBLOCK = 512  # pageblock_nr_pages (pageblock_order 9)


def zone_spec(zone_type: int = ZONE_DMA32, start: int = 0, pages: int = 8192, *,
              node: int = 0, wmin: int = 0, wlow: int = 0, whigh: int = 0,
              high: int = 0, batch: int = 1, high_max: int = 0,
              lowmem_reserve: tuple[int, ...] = (0, 0, 0, 0, 0)) -> ZoneSpec:
    """One zone (spanned == present == managed); `high` is 6.1's static pcp high and 6.12's
    high_min, `high_max` 6.12's high_max (0: = high)."""
    return ZoneSpec(node=node, zone_type=zone_type, start_pfn=start, spanned=pages,
                    present=pages, managed=pages, wmark_min=wmin, wmark_low=wlow,
                    wmark_high=whigh, lowmem_reserve=lowmem_reserve, pcp_high=high,
                    pcp_batch=batch, cpus=(0,), pcp_high_max=high_max)


def machine(*zones: ZoneSpec, nodes: int = 1, kernel: str = "6.1") -> Machine:
    """A one-CPU machine (CPU 0 on node 0) over the given zones, following `kernel`'s rules."""
    zs = zones or (zone_spec(),)
    return Machine(zones=tuple(zs), cpus=1, cpu_to_node=(0,), nodes=nodes, kernel=kernel)


def one_zone_state(pages: int = 8192, *, high: int = 0, batch: int = 1, kernel: str = "6.1",
                   **kw) -> State:
    """A state for one DMA32 zone at pfn 0 with no free memory, every pageblock Movable."""
    return new_state(machine(zone_spec(ZONE_DMA32, 0, pages, high=high, batch=batch, **kw),
                             kernel=kernel))


def zone_of(st: State, pfn: int) -> int:
    return int(st.pg_zone[pfn])


def put_free(st: State, pfn: int, order: int, mt: int, tail: bool = False) -> None:
    """A free block onto free_area[order].free_list[mt] (head, or tail), counted free."""
    z = zone_of(st, pfn)
    buddy.add_to_free_list(st, z, pfn, order, mt, tail)
    st.nr_free_pages[z] += 1 << order


def mark_allocated(st: State, start: int, end: int, mt: int) -> None:
    """[start, end) allocated, as maximal aligned blocks requested with type `mt` (an allocated
    block of requested type Movable counts as movable_pages in move_freepages_block)."""
    p = start
    while p < end:
        o = 0
        while o < 10 and p % (1 << (o + 1)) == 0 and p + (1 << (o + 1)) <= end:
            o += 1
        st.pg_state[p] = PG_ALLOC
        st.pg_order[p] = o
        st.pg_mt[p] = mt
        p += 1 << o


def free_list(st: State, order: int, mt: int, z: int = 0) -> list[int]:
    """The pfns on free_area[order].free_list[mt], head first."""
    out = []
    p = int(st.fl_head[z, order, mt])
    while p != NIL:
        out.append(p)
        p = int(st.pg_next[p])
        assert len(out) <= st.pg_next.shape[0], "free list loops"
    assert len(out) == st.fl_len[z, order, mt], "fl_len disagrees with the list"
    assert (out[-1] if out else NIL) == st.fl_tail[z, order, mt], "tail pointer is stale"
    return out


def pcp_list(st: State, pindex: int, cpu: int = 0, z: int = 0) -> list[int]:
    """The pfns on a pcp list, head first."""
    out = []
    p = int(st.pcp_head[cpu, z, pindex])
    while p != NIL:
        out.append(p)
        p = int(st.pg_next[p])
        assert len(out) <= st.pg_next.shape[0], "pcp list loops"
    return out


def free_blocks(st: State, z: int = 0) -> dict[int, tuple[int, int]]:
    """Every free block of the zone: head pfn -> (order, list type)."""
    out = {}
    for order in range(st.fl_head.shape[1]):
        for mt in range(st.fl_head.shape[2]):
            for p in free_list(st, order, mt, z):
                out[p] = (order, mt)
    return out


def emitter(capacity: int = 4096) -> policy.Emitter:
    return policy.new_emitter(capacity)


def counters() -> np.ndarray:
    return np.zeros(len(policy.SIM_COUNTER_NAMES), np.int64)


def events(out: policy.Emitter) -> list[dict[str, int]]:
    """The emitted events as dicts (ev, pfn, order, mt, cpu, refill, ford, fmt, chown, req)."""
    n = int(out.n[0])
    names = ("ev", "pfn", "order", "mt", "cpu", "refill", "ford", "fmt", "chown", "req")
    cols = [getattr(out, k) for k in names]
    return [{k: int(c[i]) for k, c in zip(names, cols, strict=True)} for i in range(n)]


def gfp_zone(st: State, gfp: int) -> int:
    """policy.gfp_zone, whether it takes the state (a per-arch GFP_ZONE_TABLE) or not."""
    fn = policy.gfp_zone
    if len(inspect.signature(fn.py_func).parameters) == 1:
        return int(fn(gfp))
    return int(fn(st, gfp))


def zonelists(st: State, nodes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The per-(node, highest zone) zonelists the policy walks, as (lists, lengths)."""
    if hasattr(policy, "build_zonelists"):
        return policy.build_zonelists(st.zone_node, st.zone_type, nodes)
    nz = len(st.zone_type)
    lists = np.full((nodes, 4, max(nz, 1) * 2), -1, np.int64)
    lens = np.zeros((nodes, 4), np.int64)
    for node in range(nodes):
        for highest in range(4):
            zl = np.zeros(64, np.int64)
            n = policy.build_zonelist(st, node, highest, zl)
            lists[node, highest, :n] = zl[:n]
            lens[node, highest] = n
    return lists, lens


def zonelist(st: State, highest: int, node: int = 0, nodes: int = 1) -> list[int]:
    lists, lens = zonelists(st, nodes)
    return [int(z) for z in lists[node, highest, : lens[node, highest]]]


def alloc_pages(st: State, gfp: int, order: int, mt: int, out, cnt, *, node: int = 0,
                cpu: int = 0, nodes: int = 1, req: int = 0) -> tuple[int, int]:
    """__alloc_pages() for one request; returns (pfn or -1, zone index or -1)."""
    from replay.engine.slow_state import slow_state_for
    from replay.engine.slowpath import __alloc_pages

    lists, lens = zonelists(st, nodes)
    sp = slow_state_for(st, nodes)
    page, z = __alloc_pages(st, sp, gfp, order, mt, cpu, node, out, req, cnt, lists, lens)
    return int(page), int(z)
