"""The allocator state as flat arrays: a struct-of-arrays page map (like struct page) plus lists.

Every free block, pcp entry and allocated block is described at its head pfn. Free lists and pcp
lists are doubly linked through `next`/`prev` (pfn-indexed), with head and tail per list, so
allocation can take the head and frees can go to the head or the tail as the kernel does.
About 17 bytes per page of modelled RAM.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba.experimental import structref

from replay.engine.jit import njit
from replay.engine.machine import Machine
from replay.engine.profile import N_CONFIG, apply_profile, get_profile
from replay.engine.structs import ArraysRef, ArrayStruct, register_struct

MAX_ORDER = 11
MIGRATE_TYPES = 5
NR_PCP_LISTS = 14
NIL = -1

# pg_state values (at a block's head pfn)
PG_NONE = 0  # not free, not known to the model (allocated before the trace, reserved, hole)
PG_BUDDY = 1  # head of a free block on a buddy free list (PageBuddy)
PG_PCP = 2  # head of a block on a per-CPU list
PG_ALLOC = 3  # head of a block allocated during the trace


class _StateFields(NamedTuple):
    """Arrays only, so compiled code can take the whole state as one argument."""

    # per pfn
    pg_state: np.ndarray  # uint8 PG_*
    pg_order: np.ndarray  # int8: order of the block headed here
    pg_mt: np.ndarray  # int8: free-list type / pcp cached type (page->index) / requested type
    pg_next: np.ndarray  # int32 list links
    pg_prev: np.ndarray  # int32
    pg_cpu: np.ndarray  # int16: the CPU whose pcp list holds the block
    pg_warm: np.ndarray  # uint8: 1 once a traced event placed this block on its list
    pg_zone: np.ndarray  # int8: zone index, -1 outside every zone
    pg_comp: np.ndarray  # int8: compound order + 1 at an allocated compound head, else 0
    pg_target: np.ndarray  # uint8: 1 on a page compaction isolated as a migration target
    # per pageblock
    pb_mt: np.ndarray  # int8 pageblock migratetype
    # per zone x order x migratetype free lists
    fl_head: np.ndarray  # int64 [Z, MAX_ORDER, MIGRATE_TYPES]
    fl_tail: np.ndarray
    fl_len: np.ndarray  # int64 blocks on each list
    nr_free_pages: np.ndarray  # int64 [Z] (NR_FREE_PAGES; pcp pages excluded)
    # per cpu x zone x pcp list
    pcp_head: np.ndarray  # int64 [CPUS, Z, NR_PCP_LISTS]
    pcp_tail: np.ndarray
    pcp_count: np.ndarray  # int64 [CPUS, Z] pages
    pcp_high: np.ndarray  # int64 [CPUS, Z]
    pcp_batch: np.ndarray  # int64 [CPUS, Z]
    pcp_free_factor: np.ndarray  # int64 [CPUS, Z] (6.1)
    # per zone: start_pfn, end_pfn, min, low, high, boost, managed, reserved_ha, flags
    zone_param: np.ndarray  # int64 [Z, 8]
    lowmem_reserve: np.ndarray  # int64 [Z, 6] indexed by highest zone type
    gfpzone: np.ndarray  # int64 [16]: gfp_zone() of the four zone-modifier bits
    zone_type: np.ndarray  # int64 [Z]
    zone_node: np.ndarray  # int64 [Z]
    # [pageblock_order, mobility_grouping, watermark_boost_factor, fallback_policy, max_order,
    #  lossy, then the kernel profile's rules (replay/engine/profile.py)]
    config: np.ndarray
    # per cpu x zone, 6.7+ pcp auto-tuning (struct per_cpu_pages, 6.12 mmzone.h:685)
    pcp_high_min: np.ndarray  # int64 [CPUS, Z]
    pcp_high_max: np.ndarray  # int64 [CPUS, Z]
    pcp_alloc_factor: np.ndarray  # int64 [CPUS, Z]
    pcp_free_count: np.ndarray  # int64 [CPUS, Z]
    pcp_flags: np.ndarray  # int64 [CPUS, Z]: PCPF_PREV_FREE_HIGH_ORDER, PCPF_FREE_HIGH_BATCH


class _StateProxy(structref.StructRefProxy):
    pass


@register_struct(_StateFields, _StateProxy)
class StateRef(ArraysRef):
    """State as compiled code takes it (replay/engine/structs.py)."""


@njit(cache=True)
def _new_state_ref(*arrays):  # noqa: ANN002, ANN201
    return _StateProxy(*arrays)


class State(ArrayStruct, _StateFields):
    """The allocator's state; compiled code gets it as one pointer."""

    _new_ref = staticmethod(_new_state_ref)


NR_ZONE_TYPES = 6  # DMA, DMA32, Normal, Movable, Device, HighMem (i386 only)


def gfp_zone_table(arch: str) -> np.ndarray:
    """gfp_zone() for each combination of __GFP_DMA, __GFP_HIGHMEM, __GFP_DMA32, __GFP_MOVABLE
    (include/linux/gfp.h GFP_ZONE_TABLE): the highest zone type a request may use."""
    dma, dma32, normal, movable, highmem = 0, 1, 2, 3, 5
    if arch == "i386":
        dma32, movable_high = normal, highmem  # no ZONE_DMA32; HighMem|Movable -> HighMem
    else:
        highmem, movable_high = normal, movable  # x86_64: __GFP_HIGHMEM means Normal
    t = np.full(16, normal, np.int64)
    t[0x1] = dma
    t[0x2] = highmem
    t[0x4] = dma32
    t[0x8] = normal
    t[0x9] = dma
    t[0xA] = movable_high
    t[0xC] = dma32
    return t


ZP_START, ZP_END, ZP_MIN, ZP_LOW, ZP_HIGH, ZP_BOOST, ZP_MANAGED, ZP_RESERVED_HA, ZP_FLAGS = range(9)
ZONE_BOOSTED_WATERMARK = 1
ZONE_RECLAIM_ACTIVE = 2  # (kswapd balancing; not modelled)
ZONE_BELOW_HIGH = 4  # 6.12: free pages fell below the high watermark (pcp->high shrinks)
PCPF_PREV_FREE_HIGH_ORDER, PCPF_FREE_HIGH_BATCH = 1, 2
CFG_PAGEBLOCK_ORDER, CFG_MOBILITY, CFG_BOOST_FACTOR, CFG_FALLBACK_POLICY, CFG_MAX_ORDER = range(5)
CFG_LOSSY = 5  # the trace lost events: resynchronise the free lists on the kernel's choices
# The model's direct compaction in progress (current->capture_control): the order + 1 a freed
# block is captured at (0: none), its zone, the captured head + 1 (0: none yet), and whether a
# MOVABLE block below pageblock_order may be captured (6.12, for a MOVABLE request).
CFG_CAPC_ORDER, CFG_CAPC_ZONE, CFG_CAPC_PAGE, CFG_CAPC_MOVABLE = range(N_CONFIG, N_CONFIG + 4)
N_STATE_CONFIG = N_CONFIG + 4


def new_state(machine: Machine, cpus: int | None = None) -> State:
    """An empty state (no free memory) sized for the machine."""
    npfn = machine.total_pfns
    nz = len(machine.zones)
    ncpu = max(cpus or machine.cpus, 1)
    pg_zone = machine.zone_index_array(npfn).astype(np.int8)
    pb = (npfn >> machine.pageblock_order) + 1
    zone_param = np.zeros((nz, 9), np.int64)
    lowmem = np.zeros((nz, NR_ZONE_TYPES), np.int64)
    for i, z in enumerate(machine.zones):
        zone_param[i] = (z.start_pfn, z.end_pfn, z.wmark_min, z.wmark_low, z.wmark_high,
                         z.watermark_boost, z.managed, 0, 0)
        lr = list(z.lowmem_reserve)[:NR_ZONE_TYPES]
        lowmem[i, : len(lr)] = lr
    pcp_high = np.zeros((ncpu, nz), np.int64)
    pcp_high_max = np.zeros((ncpu, nz), np.int64)
    pcp_batch = np.ones((ncpu, nz), np.int64)
    for i, z in enumerate(machine.zones):
        pcp_high[:, i] = z.pcp_high
        pcp_high_max[:, i] = max(z.pcp_high_max, z.pcp_high)
        pcp_batch[:, i] = max(z.pcp_batch, 1)
    profile = get_profile(machine.kernel, machine.arch)
    config = np.zeros(N_STATE_CONFIG, np.int64)
    config[:6] = (machine.pageblock_order, int(machine.mobility_grouping),
                  machine.watermark_boost_factor, 0, machine.max_order, 0)
    apply_profile(config, profile)
    if not profile.pcp_high_tuning:
        pcp_high_max = pcp_high.copy()
    return State(
        pg_state=np.zeros(npfn, np.uint8),
        pg_order=np.zeros(npfn, np.int8),
        pg_mt=np.zeros(npfn, np.int8),
        pg_next=np.full(npfn, NIL, np.int32),
        pg_prev=np.full(npfn, NIL, np.int32),
        pg_cpu=np.full(npfn, -1, np.int16),
        pg_warm=np.zeros(npfn, np.uint8),
        pg_zone=pg_zone,
        pg_comp=np.zeros(npfn, np.int8),
        pg_target=np.zeros(npfn, np.uint8),
        pb_mt=np.full(pb, 1, np.int8),
        fl_head=np.full((nz, MAX_ORDER, MIGRATE_TYPES), NIL, np.int64),
        fl_tail=np.full((nz, MAX_ORDER, MIGRATE_TYPES), NIL, np.int64),
        fl_len=np.zeros((nz, MAX_ORDER, MIGRATE_TYPES), np.int64),
        nr_free_pages=np.zeros(nz, np.int64),
        pcp_head=np.full((ncpu, nz, NR_PCP_LISTS), NIL, np.int64),
        pcp_tail=np.full((ncpu, nz, NR_PCP_LISTS), NIL, np.int64),
        pcp_count=np.zeros((ncpu, nz), np.int64),
        pcp_high=pcp_high,
        pcp_batch=pcp_batch,
        pcp_free_factor=np.zeros((ncpu, nz), np.int64),
        zone_param=zone_param,
        lowmem_reserve=lowmem,
        gfpzone=gfp_zone_table(machine.arch),
        zone_type=np.array([z.zone_type for z in machine.zones], np.int64),
        zone_node=np.array([z.node for z in machine.zones], np.int64),
        config=config,
        pcp_high_min=pcp_high.copy(),
        pcp_high_max=pcp_high_max,
        pcp_alloc_factor=np.zeros((ncpu, nz), np.int64),
        pcp_free_count=np.zeros((ncpu, nz), np.int64),
        pcp_flags=np.full((ncpu, nz), PCPF_FREE_HIGH_BATCH if profile.free_high else 0,
                          np.int64),
    )


def copy_state(st: State) -> State:
    return State(*(a.copy() for a in st))


def buddyinfo(st: State) -> np.ndarray:
    """Free blocks per zone and order (what /proc/buddyinfo prints): [Z, MAX_ORDER]."""
    return st.fl_len.sum(axis=2)


def pagetypeinfo_free(st: State) -> np.ndarray:
    """Free blocks per zone, order and list type: [Z, MAX_ORDER, MIGRATE_TYPES]."""
    return st.fl_len.copy()


def pageblock_counts(st: State, machine: Machine) -> np.ndarray:
    """Pageblocks per zone and owner migratetype: [Z, MIGRATE_TYPES] (as pagetypeinfo counts).

    pagetypeinfo_showblockcount_print() steps from zone_start_pfn by pageblock_nr_pages, so
    every pageblock the zone's span touches is counted once.
    """
    out = np.zeros((len(machine.zones), MIGRATE_TYPES), np.int64)
    pbo = machine.pageblock_order
    for i, z in enumerate(machine.zones):
        pbs = zone_pageblocks(st, z.start_pfn, z.end_pfn, i, pbo)
        types = st.pb_mt[pbs]
        out[i] = np.bincount(types.astype(np.int64), minlength=MIGRATE_TYPES)[:MIGRATE_TYPES]
    return out


def zone_pageblocks(st: State, start_pfn: int, end_pfn: int, zi: int, pbo: int) -> np.ndarray:
    """The pageblocks pagetypeinfo counts for a zone: those whose pfn on the zone's stride
    (start_pfn + k * pageblock_nr_pages) is a valid page of the zone (holes are skipped)."""
    pfns = np.arange(start_pfn, end_pfn, 1 << pbo)
    pfns = pfns[pfns < st.pg_zone.shape[0]]
    return (pfns[st.pg_zone[pfns] == zi] >> pbo).astype(np.int64)
