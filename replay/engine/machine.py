"""The machine the engine models: zones, nodes and CPUs, sized with the kernel's own formulas.

Two ways to build one:
* `machine_from_zoneinfo`: the real values of a captured /proc/zoneinfo (watermarks, protection,
  pcp high/batch as the kernel set them);
* `machine_from_description("mem=4G,cpus=8,nodes=1")`: an x86_64 layout sized by the 6.1 boot
  formulas below.
`recompute_watermarks` and `recompute_pcp` give what-if variants (the simulate command's settings).

Each formula is a small function named after its kernel counterpart (mm/page_alloc.c and
mm/khugepaged.c in Linux 6.1; docs/kernel-6.1-page-allocator.md sections 2.2, 3.2 and 5).

Boot-time inputs: the kernel computes min_free_kbytes, the watermarks, lowmem_reserve and pcp
high/batch at boot (init_per_zone_wmark_min, a postcore initcall, then THP's hugepage_init),
*before* the initramfs and the __init sections are freed into the top DMA32 zone. A later
/proc/zoneinfo shows the larger managed count (about 2,800 pages, 11 MiB, more in every bundle
here), so recomputing from it can miss the printed values: protection by up to 2.5%, watermarks
by up to 1.5%, and in one bundle the pcp batch (frag-4cpu: 63 instead of 31). With the
boot-time count, `boot_sizing` and `recompute_pcp` reproduce every printed value exactly
(tests/test_machine.py). A sysctl write on the live system recomputes from today's count, as
`recompute_watermarks` does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from math import isqrt
from typing import NamedTuple, Protocol

import numpy as np

from replay.errors import InputError, SettingsError
from replay.trace.snapshots import Bundle, PageTypeInfo, ZoneInfo

ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE, ZONE_DEVICE = range(5)
# ZONE_HIGHMEM exists only on 32-bit machine descriptions; it gets an index of its own after
# the x86_64 ones so zoneinfo's protection arrays keep their meaning, and sorts above Normal.
ZONE_HIGHMEM = 5
ZONE_NAMES: tuple[str, ...] = ("DMA", "DMA32", "Normal", "Movable", "Device", "HighMem")
MAX_HIGHMEM_PFN_32 = (896 << 20) >> 12  # 896 MiB: the top of lowmem on i386
ZONE_TYPE: dict[str, int] = {name: i for i, name in enumerate(ZONE_NAMES)}
MAX_NR_ZONES = 5

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_ORDER = 11  # exclusive in 6.1: orders 0..10
PAGEBLOCK_ORDER = 9
MIGRATE_PCPTYPES = 3
MIGRATE_TYPES = 5  # Debian 12: CONFIG_CMA off
SWAP_CLUSTER_MAX = 32
MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8
MAX_DMA_PFN = 1 << (24 - PAGE_SHIFT)  # 16 MiB (arch/x86/include/asm/dma.h)
MAX_DMA32_PFN = 1 << (32 - PAGE_SHIFT)  # 4 GiB
PAGES_PER_SECTION = 1 << (27 - PAGE_SHIFT)  # 128 MiB sparsemem sections
MEMMAP_PAGES_PER_SECTION = PAGES_PER_SECTION * 64 // PAGE_SIZE  # 64-byte struct page

# sysctl defaults (section 5 of the reference)
LOWMEM_RESERVE_RATIO: tuple[int, ...] = (256, 256, 32, 0, 0)  # sysctl_lowmem_reserve_ratio
WATERMARK_SCALE_FACTOR = 10
WATERMARK_BOOST_FACTOR = 15000


class Watermarks(NamedTuple):
    """A zone's _watermark[] in pages."""

    min: int
    low: int
    high: int
    promo: int


class _Sized(Protocol):
    """Anything with a zone type, a node and managed pages (a ZoneSpec, or a test's stand-in)."""

    node: int
    zone_type: int
    managed: int


@dataclass(frozen=True)
class ZoneSpec:
    """One populated zone: its pfn span, sizes, watermarks, reserves and pcp sizing."""

    node: int
    zone_type: int
    start_pfn: int
    spanned: int
    present: int
    managed: int
    wmark_min: int = 0
    wmark_low: int = 0
    wmark_high: int = 0
    watermark_boost: int = 0
    lowmem_reserve: tuple[int, ...] = (0,) * MAX_NR_ZONES  # indexed by zone type (protection)
    pcp_high: int = 0  # 6.1's static high; 6.7+: high_min
    pcp_batch: int = 1
    cpus: tuple[int, ...] = ()  # the CPUs of this zone's node
    pcp_high_max: int = 0  # 6.7+: high_max (zone_highsize with fraction 8); 0: = pcp_high
    boot_managed: int = 0  # managed pages when boot sized the pcps (0: unknown, = managed)

    @property
    def name(self) -> str:
        """The zone name as /proc prints it: DMA, DMA32, Normal, Movable."""
        return ZONE_NAMES[self.zone_type]

    @property
    def key(self) -> str:
        """'<node>/<zone name>', e.g. '0/DMA32'."""
        return f"{self.node}/{self.name}"

    @property
    def end_pfn(self) -> int:
        """One past the zone's last pfn (zone_end_pfn)."""
        return self.start_pfn + self.spanned

    @property
    def watermarks(self) -> Watermarks:
        """min/low/high (promo = high + the low-min gap, as __setup_per_zone_wmarks sets it)."""
        delta = self.wmark_high - self.wmark_low
        return Watermarks(self.wmark_min, self.wmark_low, self.wmark_high, self.wmark_high + delta)


@dataclass(frozen=True)
class Machine:
    """The machine description the engine is built from. Immutable: what-ifs return copies."""

    zones: tuple[ZoneSpec, ...]  # sorted by node, then zone type
    cpus: int
    cpu_to_node: tuple[int, ...]
    nodes: int
    pageblock_order: int = PAGEBLOCK_ORDER
    max_order: int = MAX_ORDER
    min_free_kbytes: int = 0
    watermark_scale_factor: int = WATERMARK_SCALE_FACTOR
    watermark_boost_factor: int = WATERMARK_BOOST_FACTOR
    mobility_grouping: bool = True
    percpu_pagelist_high_fraction: int = 0
    lowmem_reserve_ratio: tuple[int, ...] = LOWMEM_RESERVE_RATIO
    arch: str = "x86_64"  # or "i386": DMA, Normal to 896 MiB, HighMem above
    kernel: str = "6.1"  # whose rules the model follows (replay/engine/profile.py)

    @property
    def total_pfns(self) -> int:
        """One past the highest zone pfn: the size of a pfn-indexed array."""
        return max((z.end_pfn for z in self.zones), default=0)

    @property
    def managed_pages(self) -> int:
        """Σ managed pages (totalram_pages)."""
        return sum(z.managed for z in self.zones)

    @property
    def pageblock_pages(self) -> int:
        """pageblock_nr_pages."""
        return 1 << self.pageblock_order

    def zone(self, key: str) -> ZoneSpec:
        """The zone with key '<node>/<name>' (KeyError if absent)."""
        for z in self.zones:
            if z.key == key:
                return z
        raise KeyError(key)

    def node_cpus(self, node: int) -> tuple[int, ...]:
        """The CPUs of a node (cpumask_of_node)."""
        return tuple(c for c, n in enumerate(self.cpu_to_node) if n == node)

    def zone_index_array(self, max_pfn: int | None = None) -> np.ndarray:
        """int16 array over pfn 0..max_pfn-1: the index in `zones` of each pfn's zone, or -1.

        A zone's whole span is marked, holes included (spanned, not present).
        """
        size = self.total_pfns if max_pfn is None else max_pfn
        out = np.full(size, -1, dtype=np.int16)
        for i, z in enumerate(self.zones):
            out[z.start_pfn : min(z.end_pfn, size)] = i
        return out

    def zone_of_pfn(self, pfn: int | np.ndarray) -> int | np.ndarray:
        """Zone index of a pfn or an array of pfns (-1 outside every zone), without a big table."""
        order = np.argsort([z.start_pfn for z in self.zones], kind="stable")
        starts = np.array([self.zones[i].start_pfn for i in order], dtype=np.int64)
        ends = np.array([self.zones[i].end_pfn for i in order], dtype=np.int64)
        pfns = np.asarray(pfn, dtype=np.int64)
        pos = np.searchsorted(starts, pfns, side="right") - 1
        safe = np.clip(pos, 0, len(starts) - 1)
        inside = (pos >= 0) & (pfns < ends[safe])
        result = np.where(inside, order[safe], -1).astype(np.int16)
        return int(result) if result.ndim == 0 else result


# ---------------------------------------------------------------------------------------------
# The kernel's formulas


def nr_free_buffer_pages(zones: Sequence[_Sized], high: Sequence[int] | None = None) -> int:
    """Σ over zones up to Normal of (managed − high watermark)+."""
    # mm/page_alloc.c nr_free_buffer_pages() -> nr_free_zone_pages(gfp_zone(GFP_USER))
    highs = high if high is not None else [0] * len(zones)
    return sum(
        max(z.managed - h, 0) for z, h in zip(zones, highs, strict=True)
        if z.zone_type <= ZONE_NORMAL
    )


def calculate_min_free_kbytes(nr_free_buffer_pages: int) -> int:
    """int_sqrt(lowmem_kbytes · 16), clamped to [128, 262144]."""
    # mm/page_alloc.c calculate_min_free_kbytes()
    lowmem_kbytes = nr_free_buffer_pages * (PAGE_SIZE >> 10)
    return min(max(isqrt(lowmem_kbytes * 16), 128), 262144)


def set_recommended_min_free_kbytes(
    nr_zones: int, nr_free_buffer_pages: int, pageblock_order: int = PAGEBLOCK_ORDER
) -> int:
    """The min_free_kbytes THP asks for (the caller keeps the larger of this and the current)."""
    # mm/khugepaged.c set_recommended_min_free_kbytes()
    pageblock_nr_pages = 1 << pageblock_order
    recommended = pageblock_nr_pages * nr_zones * 2
    recommended += pageblock_nr_pages * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
    recommended = min(recommended, nr_free_buffer_pages // 20)
    return recommended << (PAGE_SHIFT - 10)


def setup_per_zone_wmarks(
    zones: Sequence[_Sized], min_free_kbytes: int, watermark_scale_factor: int = 10
) -> list[Watermarks]:
    """Watermarks of every zone: min in proportion to managed pages, then the kswapd gaps."""
    # mm/page_alloc.c __setup_per_zone_wmarks()
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem_pages = sum(z.managed for z in zones if z.zone_type != ZONE_MOVABLE)
    out = []
    for z in zones:
        tmp = pages_min * z.managed // lowmem_pages if lowmem_pages else 0
        if z.zone_type == ZONE_MOVABLE:
            wmin = min(max(z.managed // 1024, SWAP_CLUSTER_MAX), 128)
        else:
            wmin = tmp
        delta = max(tmp >> 2, z.managed * watermark_scale_factor // 10000)
        out.append(Watermarks(wmin, wmin + delta, wmin + 2 * delta, wmin + 3 * delta))
    return out


def setup_per_zone_lowmem_reserve(
    zones: Sequence[_Sized], ratios: Sequence[int] = LOWMEM_RESERVE_RATIO
) -> list[tuple[int, ...]]:
    """lowmem_reserve[] (zoneinfo's protection) of every zone, indexed by higher zone type."""
    # mm/page_alloc.c setup_per_zone_lowmem_reserve()
    managed: dict[tuple[int, int], int] = {(z.node, z.zone_type): z.managed for z in zones}
    out = []
    for z in zones:
        ratio = ratios[z.zone_type] if z.zone_type < len(ratios) else 0
        clear = not ratio or not z.managed
        reserve = [0] * MAX_NR_ZONES
        upper = 0
        for j in range(z.zone_type + 1, MAX_NR_ZONES):
            upper += managed.get((z.node, j), 0)
            reserve[j] = 0 if clear else upper // ratio
        out.append(tuple(reserve))
    return out


def _rounddown_pow_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def zone_batchsize(managed: int) -> int:
    """pcp batch: ~0.1% of the zone or 1 MiB, /4, rounded to 2^n − 1 (0 for a tiny zone)."""
    # mm/page_alloc.c zone_batchsize() (CONFIG_MMU)
    batch = min(managed >> 10, (1 << 20) // PAGE_SIZE) // 4
    batch = max(batch, 1)
    return _rounddown_pow_of_two(batch + batch // 2) - 1


def zone_highsize(
    low_wmark: int,
    managed: int,
    batch: int,
    node_cpus: int,
    online_cpus: int,
    high_fraction: int = 0,
    cpu_online: int = 0,
) -> int:
    """pcp high: the low watermark (or managed/fraction) split over the node's CPUs, ≥ 4·batch."""
    # mm/page_alloc.c zone_highsize()
    total_pages = managed // high_fraction if high_fraction else low_wmark
    nr_split_cpus = node_cpus + cpu_online or online_cpus
    return max(total_pages // nr_split_cpus, batch * 4)


def zone_set_high_and_batch(
    zone: ZoneSpec, online_cpus: int, high_fraction: int = 0
) -> tuple[int, int]:
    """(high, batch) of a zone's pcps, with batch at least 1."""
    # mm/page_alloc.c zone_set_high_and_batch()
    batch = max(1, zone_batchsize(zone.managed))
    high = zone_highsize(zone.wmark_low, zone.managed, batch, len(zone.cpus), online_cpus,
                         high_fraction)
    return high, batch


def mobility_grouping_enabled(
    zones: Sequence[_Sized], pageblock_order: int = PAGEBLOCK_ORDER
) -> bool:
    """False on machines too small for grouping by mobility (< 5 pageblocks of pages)."""
    # mm/page_alloc.c build_all_zonelists(): vm_total_pages < pageblock_nr_pages * MIGRATE_TYPES
    # (run before any watermark is set, so vm_total_pages is Σ managed)
    vm_total_pages = sum(z.managed for z in zones)
    return vm_total_pages >= (1 << pageblock_order) * MIGRATE_TYPES


def infer_min_free_kbytes(zones: Sequence[ZoneSpec]) -> int | None:
    """The smallest min_free_kbytes whose `setup_per_zone_wmarks` gives every zone's min.

    Each lowmem zone's min = ⌊pages_min · managed / Σmanaged⌋ bounds pages_min to an interval;
    the answer is 4 × the smallest pages_min in all of them, or None if they do not meet (the
    watermarks were then computed from other managed counts: see the module docstring).
    """
    lowmem = [z for z in zones if z.zone_type != ZONE_MOVABLE]
    total = sum(z.managed for z in lowmem)
    lo, hi = 0, 1 << 40
    for z in lowmem:
        if z.managed:
            lo = max(lo, -(-z.wmark_min * total // z.managed))
            hi = min(hi, -(-(z.wmark_min + 1) * total // z.managed) - 1)
    return lo << (PAGE_SHIFT - 10) if lo <= hi else None


# ---------------------------------------------------------------------------------------------
# Building machines


def even_cpu_to_node(cpus: int, nodes: int) -> tuple[int, ...]:
    """CPUs split evenly across nodes in order (QEMU `-numa node,cpus=0-1` / `2-3`)."""
    return tuple(c * nodes // cpus for c in range(cpus))


def _with_node_cpus(zones: Sequence[ZoneSpec], cpu_to_node: Sequence[int]) -> list[ZoneSpec]:
    return [
        replace(z, cpus=tuple(c for c, n in enumerate(cpu_to_node) if n == z.node)) for z in zones
    ]


def _sorted(zones: Sequence[ZoneSpec]) -> tuple[ZoneSpec, ...]:
    return tuple(sorted(zones, key=lambda z: (z.node, z.zone_type)))


def _pageset_sizes(zi: ZoneInfo) -> tuple[int, int] | None:
    """The (high, batch) most CPUs of a zone have, or None without pagesets."""
    if not zi.pagesets:
        return None
    return Counter((p.high, p.batch) for p in zi.pagesets.values()).most_common(1)[0][0]


# zone_idx() order of each architecture's zones, as zoneinfo's protection arrays index them
# (include/linux/mmzone.h enum zone_type: x86_64 has DMA, DMA32, Normal, Movable, Device; i386
# with HIGHMEM has DMA, Normal, HighMem, Movable)
ZONE_ORDER: dict[str, tuple[int, ...]] = {
    "x86_64": (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE, ZONE_DEVICE),
    "i386": (ZONE_DMA, ZONE_NORMAL, ZONE_HIGHMEM, ZONE_MOVABLE),
}


def zoneinfo_arch(zoneinfo: Sequence[ZoneInfo]) -> str:
    """i386 when the zones include HighMem (only 32-bit kernels have it), else x86_64."""
    return "i386" if any(zi.name == "HighMem" for zi in zoneinfo) else "x86_64"


def _zone_from_info(zi: ZoneInfo, arch: str = "x86_64") -> ZoneSpec:
    if zi.name not in ZONE_TYPE:
        raise SettingsError(f"zoneinfo: unknown zone name {zi.name!r}")
    # lowmem_reserve is kept indexed by this module's zone types (HighMem = 5)
    protection_list = [0] * (MAX_NR_ZONES + 1)
    for idx, value in enumerate(zi.protection):
        order = ZONE_ORDER[arch]
        if idx < len(order):
            protection_list[order[idx]] = value
    protection = tuple(protection_list) if arch == "i386" else tuple(protection_list[:MAX_NR_ZONES])
    zone = ZoneSpec(
        node=zi.node, zone_type=ZONE_TYPE[zi.name], start_pfn=zi.start_pfn or 0,
        spanned=zi.spanned, present=zi.present, managed=zi.managed,
        wmark_min=zi.min, wmark_low=zi.low, wmark_high=zi.high,
        watermark_boost=zi.boost or 0, lowmem_reserve=protection,
    )
    sizes = _pageset_sizes(zi)
    return replace(zone, pcp_high=sizes[0], pcp_batch=sizes[1]) if sizes else zone


def machine_from_zoneinfo(
    zoneinfo: Sequence[ZoneInfo],
    pagetypeinfo: PageTypeInfo | None = None,
    ncpus: int | None = None,
    cpu_to_node: Sequence[int] | None = None,
    min_free_kbytes: int | None = None,
    watermark_scale_factor: int = WATERMARK_SCALE_FACTOR,
    kernel: str = "6.1",
    arch: str | None = None,
) -> Machine:
    """The machine a /proc/zoneinfo describes, with the kernel's real values.

    CPUs default to those with pagesets; cpu_to_node to an even split in order (zoneinfo does
    not say which CPU is on which node). min_free_kbytes (not in /proc/zoneinfo or vmstat)
    defaults to `infer_min_free_kbytes`, else 4 × Σ min. The architecture defaults to i386
    when there is a HighMem zone. A 6.1 zoneinfo's pcp `high` is the static high; from 6.7 it
    is each CPU's current, auto-tuned value, so high_min and high_max come from the kernel's
    zone_highsize() (6.12 page_alloc.c:5680, 5793) over the printed low watermark.
    """
    populated = [zi for zi in zoneinfo if zi.populated]
    if not populated:
        raise SettingsError("zoneinfo: no populated zone")
    arch = arch or zoneinfo_arch(zoneinfo)
    nodes = max(zi.node for zi in zoneinfo) + 1
    if ncpus is None:
        ncpus = max((c for zi in populated for c in zi.pagesets), default=0) + 1
    mapping = tuple(cpu_to_node) if cpu_to_node is not None else even_cpu_to_node(ncpus, nodes)
    if len(mapping) != ncpus or any(not 0 <= n < nodes for n in mapping):
        raise SettingsError(f"cpu_to_node {list(mapping)} does not fit {ncpus} CPUs, {nodes} nodes")
    zones = _sorted(_with_node_cpus([_zone_from_info(zi, arch) for zi in populated], mapping))
    highs = {(zi.node, zi.name): [p.high for p in zi.pagesets.values()] for zi in populated}
    tuned = kernel != "6.1"
    # 6.1's static high needs no boot-time count: only the tuned kernels read the watermarks
    boot = boot_managed_from_watermarks(zones, watermark_scale_factor) if tuned else {}
    zones = tuple(_pcp_limits(z, ncpus, tuned, boot.get(z.key) or boot_managed_range(z, zones),
                              highs.get((z.node, z.name), [])) for z in zones)
    if min_free_kbytes is None:
        inferred = infer_min_free_kbytes(zones)
        min_free_kbytes = inferred if inferred is not None else 4 * sum(z.wmark_min for z in zones)
    pageblock_order = pagetypeinfo.pageblock_order if pagetypeinfo else PAGEBLOCK_ORDER
    return Machine(
        zones=zones, cpus=ncpus, cpu_to_node=mapping, nodes=nodes,
        pageblock_order=pageblock_order, min_free_kbytes=min_free_kbytes,
        watermark_scale_factor=watermark_scale_factor,
        mobility_grouping=mobility_grouping_enabled(zones, pageblock_order), arch=arch,
        kernel=kernel,
    )


def boot_managed_range(z: ZoneSpec, zones: Sequence[ZoneSpec],
                       ratios: Sequence[int] = LOWMEM_RESERVE_RATIO) -> tuple[int, int] | None:
    """The zone's managed pages when boot sized it, from the zone just below it on its node:
    that zone's protection for it is ⌊managed / lowmem_reserve_ratio⌋, computed at the same
    time as the pcp sizes (init_per_zone_wmark_min), before the initramfs was freed into the
    zone. None without such a zone."""
    below = [o for o in zones if o.node == z.node and _rank(o.zone_type) < _rank(z.zone_type)]
    if not below:
        return None
    lower = max(below, key=lambda o: _rank(o.zone_type))
    ratio = ratios[lower.zone_type] if lower.zone_type < len(ratios) else 0
    if not ratio or z.zone_type >= len(lower.lowmem_reserve):
        return None
    p = lower.lowmem_reserve[z.zone_type]
    if not p:
        return None
    return p * ratio, (p + 1) * ratio - 1


def boot_managed_from_watermarks(
    zones: Sequence[ZoneSpec], watermark_scale_factor: int = WATERMARK_SCALE_FACTOR,
    pageblock_order: int = PAGEBLOCK_ORDER,
) -> dict[str, tuple[int, int]]:
    """Each lowmem zone's managed pages when boot last set the watermarks (and the pcp sizes):
    a range per zone key, {} when no boot-time counts reproduce the printed watermarks.

    Boot sets them twice (`boot_sizing`): init_per_zone_wmark_min with min_free_kbytes from
    Σmanaged, then THP's hugepage_init with its recommended min_free_kbytes, capped at 1/20 of
    Σ(managed − that first high watermark) (or, THP off, calculate_min_free_kbytes again; or,
    under 512 MiB, not at all). Each zone's printed min = ⌊pages_min · M / ΣM⌋ places M in a
    window ΣM/pages_min wide for each candidate ΣM; the chain then ties pages_min to ΣM. The
    zones' managed counts may only have grown since (freed initramfs and __init memory), and a
    zone with one below it on its node is also bounded by that zone's protection
    (`boot_managed_range`). x86_64 lowmem only; a zone without a range is left out.
    """
    low = [z for z in zones if z.managed and z.zone_type <= ZONE_NORMAL]
    if not low or any(z.zone_type in (ZONE_HIGHMEM, ZONE_MOVABLE) and z.managed for z in zones):
        return {}
    wsf = watermark_scale_factor
    total = sum(z.managed for z in low)
    sums = np.arange(total - total // 8, total + 1, dtype=np.int64)  # ΣM at boot
    base_lo, base_hi, mins = [], [], []
    for z in low:
        wmin = z.wmark_min - z.watermark_boost
        delta = z.wmark_low - z.wmark_min
        if delta != z.wmark_high - z.wmark_low or wmin < 0 or delta < wmin >> 2:
            return {}
        lo, hi = 1, z.managed
        if delta > wmin >> 2:  # the kswapd gap is managed · wsf / 10000: a window on M
            lo = max(lo, -(-delta * 10000 // wsf))
            hi = min(hi, -(-(delta + 1) * 10000 // wsf) - 1)
        else:
            hi = min(hi, ((delta + 1) * 10000 - 1) // wsf)
        rng = boot_managed_range(z, zones)
        if rng is not None:
            lo, hi = max(lo, rng[0]), min(hi, rng[1])
        if lo > hi:
            return {}
        base_lo.append(lo)
        base_hi.append(hi)
        mins.append(wmin)
    # postcore: watermarks still 0, nr_free_buffer_pages() = ΣM
    mfk1 = _calculate_min_free_kbytes(sums)
    p1 = mfk1 >> (PAGE_SHIFT - 10)

    def held(m: np.ndarray) -> np.ndarray:  # min(high watermark after postcore, managed)
        t = p1 * m // sums
        return np.minimum(t + 2 * np.maximum(t >> 2, m * wsf // 10000), m)

    def thp(nfb: np.ndarray) -> np.ndarray:  # hugepage_init keeps the larger
        rec = set_recommended_min_free_kbytes(len(low), 1 << 40, pageblock_order) >> (
            PAGE_SHIFT - 10)  # before the 5% cap
        return np.maximum(mfk1, np.minimum(rec, nfb // 20) << (PAGE_SHIFT - 10))

    def to_pages(kbytes: np.ndarray) -> np.ndarray:
        return kbytes >> (PAGE_SHIFT - 10)

    found: dict[str, tuple[int, int]] = {}
    for pages_min in range(sum(mins), sum(mins) + len(low)):
        lo = [np.maximum(b, -(-w * sums // pages_min)) for b, w in zip(base_lo, mins, strict=True)]
        hi = [np.minimum(b, -(-(w + 1) * sums // pages_min) - 1)
              for b, w in zip(base_hi, mins, strict=True)]
        s_lo, s_hi = sum(lo), sum(hi)
        ok = (s_lo <= sums) & (sums <= s_hi)
        for a, b in zip(lo, hi, strict=True):
            ok &= a <= b
        if not ok.any():
            continue
        # nr_free_buffer_pages() = ΣM − Σheld(M); held() grows with M
        nfb_lo = sums - sum(held(b) for b in hi)
        nfb_hi = sums - sum(held(a) for a in lo)
        chain = to_pages(mfk1) == pages_min  # THP never started (< 512 MiB)
        for step in (thp, _calculate_min_free_kbytes):  # THP on; off
            chain |= (to_pages(step(nfb_lo)) <= pages_min) & (pages_min <= to_pages(step(nfb_hi)))
        ok &= chain
        if not ok.any():
            continue
        for i, z in enumerate(low):
            zlo = np.maximum(lo[i], sums - (s_hi - hi[i]))[ok]
            zhi = np.minimum(hi[i], sums - (s_lo - lo[i]))[ok]
            good = zlo <= zhi
            if not good.any():
                continue
            a, b = int(zlo[good].min()), int(zhi[good].max())
            prev = found.get(z.key)
            found[z.key] = (min(a, prev[0]), max(b, prev[1])) if prev else (a, b)
    return found


def _calculate_min_free_kbytes(nr_free_buffer_pages: np.ndarray) -> np.ndarray:
    """`calculate_min_free_kbytes` of each element (int_sqrt exact to the integer)."""
    n = nr_free_buffer_pages * (PAGE_SIZE >> 10) * 16
    r = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    r -= (r * r > n).astype(np.int64)
    r += ((r + 1) * (r + 1) <= n).astype(np.int64)
    return np.clip(r, 128, 262144)


def _rank(zone_type: int) -> int:
    """Zone order within a node (HighMem sorts above Normal)."""
    return {ZONE_DMA: 0, ZONE_DMA32: 1, ZONE_NORMAL: 2, ZONE_HIGHMEM: 3}.get(zone_type, 4)


def _pcp_limits(z: ZoneSpec, online_cpus: int, tuned: bool,
                managed_range: tuple[int, int] | None = None,
                observed_highs: Sequence[int] = ()) -> ZoneSpec:
    """high_max of a zone (and, for a tuned kernel's zoneinfo, high_min) by zone_highsize().

    high_max = managed/8 split over the node's CPUs, with managed as boot saw it: a range
    (`boot_managed_from_watermarks`, or the protection of the zone below). A CPU's printed high
    fixes it exactly when it is a candidate high_max itself, or one vmstat decay step below one
    (decay_pcp_high: high − high/8), the first such step that singles candidates out winning;
    otherwise today's count if the range holds it (no memory was freed into the zone), else the
    range's middle."""
    batch = max(z.pcp_batch, 1)
    split = len(z.cpus) or online_cpus

    def highsize(managed: int, fraction: int = 0) -> int:
        return zone_highsize(z.wmark_low, managed, batch, len(z.cpus), online_cpus, fraction)

    boot = z.managed
    if managed_range is not None:
        lo, hi = managed_range
        boot = z.managed if lo <= z.managed <= hi else (lo + hi) // 2
        h_lo, h_hi = (highsize(m, MIN_PERCPU_PAGELIST_HIGH_FRACTION) for m in managed_range)
        seen = set(observed_highs) if tuned else set()
        for step in range(2):  # at high_max; one decay step below it
            cands = range(h_lo, h_hi + 1)
            for _ in range(step):
                cands = [h - (h >> 3) for h in cands]
            hit = [h for h, c in zip(range(h_lo, h_hi + 1), cands, strict=True) if c in seen]
            if hit:
                boot = max(hit) * split * MIN_PERCPU_PAGELIST_HIGH_FRACTION
                break
    high_max = highsize(boot, MIN_PERCPU_PAGELIST_HIGH_FRACTION)
    z = replace(z, boot_managed=boot)
    if not tuned:
        return replace(z, pcp_high_max=max(high_max, z.pcp_high))
    high_min = highsize(z.managed)
    return replace(z, pcp_high=high_min, pcp_high_max=max(high_max, high_min))


def _sysctl_int(sysctl: dict[str, str], name: str) -> int | None:
    value = sysctl.get(f"vm.{name}")
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise InputError(f"sysctl: vm.{name} = {value!r} is not a whole number") from None


def machine_from_bundle(bundle: Bundle, side: str = "start", kernel: str | None = None
                        ) -> Machine:
    """The machine of a bundle's `<side>.zoneinfo`, with its `sysctl` and `numa` files if any.

    `kernel` says how to read the zoneinfo (6.1's static pcp high or 6.7+'s tuned one); by
    default the profile nearest the bundle's uname."""
    from replay.engine.profile import arch_of_release, choose_profiles

    snap = bundle.start if side == "start" else bundle.end
    if snap.zoneinfo is None:
        raise InputError(f"{bundle.path}: no {side}.zoneinfo to build the machine from")
    sysctl = bundle.sysctl or {}
    mapping = bundle.cpu_to_node
    if kernel is None:
        kernel = choose_profiles(bundle.kernel_release).trace.kernel
    arch = arch_of_release(bundle.uname) if bundle.uname else None
    machine = machine_from_zoneinfo(
        snap.zoneinfo, snap.pagetypeinfo,
        ncpus=len(mapping) if mapping else None, cpu_to_node=mapping,
        min_free_kbytes=_sysctl_int(sysctl, "min_free_kbytes"),
        watermark_scale_factor=_sysctl_int(sysctl, "watermark_scale_factor")
        or WATERMARK_SCALE_FACTOR, kernel=kernel, arch=arch,
    )
    extra = {
        name: value
        for name in ("watermark_boost_factor", "percpu_pagelist_high_fraction")
        if (value := _sysctl_int(sysctl, name)) is not None
    }
    return replace(machine, **extra)


def _apply_watermarks(zones: Sequence[ZoneSpec], wmarks: Sequence[Watermarks]) -> list[ZoneSpec]:
    """Zones with new watermarks; the boost is reset as __setup_per_zone_wmarks does."""
    return [
        replace(z, wmark_min=w.min, wmark_low=w.low, wmark_high=w.high, watermark_boost=0)
        for z, w in zip(zones, wmarks, strict=True)
    ]


def recompute_pcp(
    machine: Machine,
    pcp_batch: int | None = None,
    pcp_high: int | None = None,
    high_fraction: int | None = None,
) -> Machine:
    """pcp high/batch of every zone by the kernel's formulas, or fixed what-if values.

    high_fraction is the percpu_pagelist_high_fraction sysctl (0 = from the low watermark).
    """
    fraction = machine.percpu_pagelist_high_fraction if high_fraction is None else high_fraction
    if fraction and fraction < MIN_PERCPU_PAGELIST_HIGH_FRACTION:
        raise SettingsError(f"percpu_pagelist_high_fraction must be 0 or >= 8, not {fraction}")
    if pcp_batch is not None and pcp_batch < 1:
        raise SettingsError(f"pcp batch must be >= 1, not {pcp_batch}")
    if pcp_high is not None and pcp_high < 0:
        raise SettingsError(f"pcp high must be >= 0, not {pcp_high}")
    zones = []
    for z in machine.zones:
        batch = pcp_batch if pcp_batch is not None else max(1, zone_batchsize(z.managed))
        high = zone_highsize(z.wmark_low, z.managed, batch, len(z.cpus), machine.cpus, fraction)
        if pcp_high is not None:
            high = pcp_high
        # zone_set_pageset_high_and_batch() (6.7+): high_max from managed/8 unless the
        # fraction sysctl (or a fixed what-if high) pins high_min == high_max
        high_max = high if (fraction or pcp_high is not None) else max(high, zone_highsize(
            z.wmark_low, z.boot_managed or z.managed, batch, len(z.cpus), machine.cpus,
            MIN_PERCPU_PAGELIST_HIGH_FRACTION))
        zones.append(replace(z, pcp_batch=batch, pcp_high=high, pcp_high_max=high_max))
    return replace(machine, zones=tuple(zones), percpu_pagelist_high_fraction=fraction)


def recompute_watermarks(
    machine: Machine,
    min_free_kbytes: int | None = None,
    watermark_scale_factor: int | None = None,
) -> Machine:
    """Watermarks for new sysctl values, then the pcp sizes (setup_per_zone_wmarks does both)."""
    mfk = machine.min_free_kbytes if min_free_kbytes is None else min_free_kbytes
    wsf = watermark_scale_factor
    if wsf is None:
        wsf = machine.watermark_scale_factor
    if mfk < 0:
        raise SettingsError(f"min_free_kbytes must be >= 0, not {mfk}")
    if not 1 <= wsf <= 3000:
        raise SettingsError(f"watermark_scale_factor must be in 1..3000, not {wsf}")
    zones = _apply_watermarks(machine.zones, setup_per_zone_wmarks(machine.zones, mfk, wsf))
    updated = replace(machine, zones=tuple(zones), min_free_kbytes=mfk, watermark_scale_factor=wsf)
    return recompute_pcp(updated)


# ---------------------------------------------------------------------------------------------
# Machine descriptions: "mem=4G,cpus=8,nodes=1"

_SIZE = re.compile(r"^(\d+)\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)
_DESCRIPTION_KEYS = ("mem", "cpus", "nodes", "below4g", "thp", "arch")
LEGACY_HOLE = (0x9F, 0x100)  # pfns of the 640 KiB-1 MiB hole (EBDA page + VGA/BIOS area)
LOW_RESERVED_PFN = 0x100  # x86 reserves the first MiB (arch/x86/kernel/setup.c)


def parse_size(text: str) -> int:
    """Bytes of a size like '4G', '512M', '4096k' or '1073741824' (the kernel's memparse)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise SettingsError(f"bad size {text!r} (expected e.g. 512M, 4G)")
    shift = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m.group(2).lower()]
    return int(m.group(1)) << shift


def _parse_description(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _DESCRIPTION_KEYS:
            raise SettingsError(
                f"bad machine description item {item!r} (keys: {', '.join(_DESCRIPTION_KEYS)})")
        out[key] = value.strip()
    if "mem" not in out:
        raise SettingsError(f"machine description {text!r} has no mem= (e.g. mem=4G,cpus=8)")
    return out


def _positive_int(desc: dict[str, str], key: str, default: int) -> int:
    try:
        value = int(desc.get(key, default))
    except ValueError:
        raise SettingsError(f"{key}={desc[key]!r} is not a whole number") from None
    if value < 1:
        raise SettingsError(f"{key} must be at least 1, not {value}")
    return value


def _ram_ranges(mem_pages: int, below4g_pages: int) -> list[tuple[int, int]]:
    """RAM pfn ranges: from pfn 1 (page 0 is BIOS-reserved) up to below4g, the rest from 4 GiB."""
    low = min(mem_pages, below4g_pages, MAX_DMA32_PFN)
    ranges = [(1, low)]
    if mem_pages > low:
        ranges.append((MAX_DMA32_PFN, MAX_DMA32_PFN + mem_pages - low))
    return ranges


def _split_nodes(ranges: list[tuple[int, int]], nodes: int) -> list[list[tuple[int, int]]]:
    """Each node's pfn ranges: the RAM split into `nodes` equal shares in address order."""
    total = sum(e - s for s, e in ranges)
    bounds = [total * k // nodes for k in range(nodes + 1)]
    out: list[list[tuple[int, int]]] = [[] for _ in range(nodes)]
    offset = 0
    for s, e in ranges:
        for k in range(nodes):
            lo = max(s, s + bounds[k] - offset)
            hi = min(e, s + bounds[k + 1] - offset)
            if lo < hi:
                out[k].append((lo, hi))
        offset += e - s
    return out


def _overlap(ranges: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    return [(max(s, lo), min(e, hi)) for s, e in ranges if max(s, lo) < min(e, hi)]


def _count(ranges: list[tuple[int, int]]) -> int:
    return sum(e - s for s, e in ranges)


def _layout_zone(node: int, ztype: int, ranges: list[tuple[int, int]]) -> ZoneSpec | None:
    """A zone of a node: the node's span cut at the zone bounds (holes count in `spanned`, not
    in `present`); DMA loses the legacy hole from present and the first MiB from managed."""
    lo, hi = [(0, MAX_DMA_PFN), (MAX_DMA_PFN, MAX_DMA32_PFN), (MAX_DMA32_PFN, 1 << 52)][ztype]
    parts = _overlap(ranges, lo, hi)
    if not parts:
        return None
    start, end = max(ranges[0][0], lo), min(ranges[-1][1], hi)
    hole = _count(_overlap(parts, *LEGACY_HOLE))
    present = _count(parts) - hole
    managed = present - (_count(_overlap(parts, 0, LOW_RESERVED_PFN)) - hole)
    return ZoneSpec(node=node, zone_type=ztype, start_pfn=start, spanned=end - start,
                    present=present, managed=max(managed, 0))


def _charge_memmap(zones: list[ZoneSpec]) -> list[ZoneSpec]:
    """Take each node's memmap (64-byte struct page per page, per 128 MiB section) from its
    highest zone, where memblock allocates it (top-down)."""
    out = list(zones)
    for node in {z.node for z in zones}:
        idx = max((i for i, z in enumerate(out) if z.node == node), key=lambda i: out[i].zone_type)
        present = sum(z.present for z in out if z.node == node)
        memmap = -(-present // PAGES_PER_SECTION) * MEMMAP_PAGES_PER_SECTION
        out[idx] = replace(out[idx], managed=max(out[idx].managed - memmap, 0))
    return out


def boot_sizing(zones: Sequence[ZoneSpec], thp: bool) -> tuple[list[ZoneSpec], int]:
    """Watermarks and lowmem_reserve as boot sets them, from the zones' managed pages.

    Returns the zones with those values and the resulting min_free_kbytes. pcp sizes follow
    from the watermarks (`recompute_pcp`).
    """
    # init_per_zone_wmark_min() (postcore): watermarks are still 0 here
    mfk = calculate_min_free_kbytes(nr_free_buffer_pages(zones))
    zones = _apply_watermarks(zones, setup_per_zone_wmarks(zones, mfk))
    reserves = setup_per_zone_lowmem_reserve(zones)
    zones = [replace(z, lowmem_reserve=r) for z, r in zip(zones, reserves, strict=True)]
    if thp:  # mm/huge_memory.c hugepage_init() -> start_stop_khugepaged()
        nr_zones = sum(1 for z in zones if z.zone_type <= ZONE_NORMAL)
        nfbp = nr_free_buffer_pages(zones, [z.wmark_high for z in zones])
        mfk = max(mfk, set_recommended_min_free_kbytes(nr_zones, nfbp))
        zones = _apply_watermarks(zones, setup_per_zone_wmarks(zones, mfk))
    return zones, mfk


def _thp_enabled(value: str, managed_pages: int) -> bool:
    """thp=always|madvise|never|auto; auto: on unless RAM < 512 MiB (hugepage_init)."""
    if value in ("always", "madvise"):
        return True
    if value == "never":
        return False
    if value != "auto":
        raise SettingsError(f"thp={value!r}: expected always, madvise, never or auto")
    return managed_pages >= (512 << (20 - PAGE_SHIFT))


def machine_from_description(text: str) -> Machine:
    """An x86_64 machine from `mem=SIZE[,cpus=N][,nodes=N][,below4g=SIZE][,thp=MODE]`
    (or a 32-bit one with `arch=i386`: see machine_i386).

    Layout: RAM from pfn 1 (page 0 is reserved) up to `below4g` (default: all of it, up to
    4 GiB), the rest from 4 GiB; split evenly across nodes in address order, CPUs too. Zones:
    DMA below 16 MiB, DMA32 below 4 GiB, Normal above; a node with no memory under 4 GiB has
    only Normal. Approximations: present = RAM pages (DMA minus the 640 KiB-1 MiB hole, as on
    PCs); managed = present, except that DMA loses the reserved first MiB (3840 managed, as on
    every real zoneinfo here) and each node's highest zone loses the node's memmap (512 pages
    per 128 MiB). Real kernels also hold the kernel image, initramfs (until freed), swiotlb,
    page tables and percpu areas, so managed comes out 1-10% high. Sizing then follows boot:
    calculate_min_free_kbytes, setup_per_zone_wmarks, lowmem_reserve, THP's recommended
    min_free_kbytes (thp=auto: on from 512 MiB of RAM), and pcp high/batch.
    """
    desc = _parse_description(text)
    if desc.get("arch", "x86_64") in ("i386", "x86", "32"):
        return machine_i386(desc)
    if desc.get("arch", "x86_64") not in ("x86_64", "amd64"):
        raise SettingsError(f"arch={desc['arch']}: expected x86_64 or i386")
    mem_pages = parse_size(desc["mem"]) >> PAGE_SHIFT
    if mem_pages < 2 * MAX_DMA_PFN:
        raise SettingsError(f"mem={desc['mem']} is too small (at least 32M)")
    cpus = _positive_int(desc, "cpus", 1)
    nodes = _positive_int(desc, "nodes", 1)
    below4g = parse_size(desc["below4g"]) >> PAGE_SHIFT if "below4g" in desc else mem_pages
    node_ranges = _split_nodes(_ram_ranges(mem_pages, below4g), nodes)
    zones = [
        zone
        for node, ranges in enumerate(node_ranges)
        for ztype in (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL)
        if (zone := _layout_zone(node, ztype, ranges)) is not None
    ]
    zones = _charge_memmap(zones)
    thp = _thp_enabled(desc.get("thp", "auto").lower(), sum(z.managed for z in zones))
    zones, mfk = boot_sizing(zones, thp)
    mapping = even_cpu_to_node(cpus, nodes)
    zones = _with_node_cpus(zones, mapping)
    machine = Machine(
        zones=_sorted(zones), cpus=cpus, cpu_to_node=mapping, nodes=nodes, min_free_kbytes=mfk,
        mobility_grouping=mobility_grouping_enabled(zones),
    )
    return recompute_pcp(machine)


def machine_i386(desc: dict[str, str]) -> Machine:
    """A 32-bit x86 machine (one node): DMA below 16 MiB, Normal to 896 MiB, HighMem above.

    lowmem_reserve ratios are the 32-bit ones (DMA 256, Normal 32); HighMem's min watermark is
    managed/1024 clamped to [SWAP_CLUSTER_MAX, 128] as __setup_per_zone_wmarks does for it."""
    mem_pages = parse_size(desc["mem"]) >> PAGE_SHIFT
    if mem_pages < 2 * MAX_DMA_PFN:
        raise SettingsError(f"mem={desc['mem']} is too small (at least 32M)")
    cpus = _positive_int(desc, "cpus", 1)
    spans = [(ZONE_DMA, 1, MAX_DMA_PFN), (ZONE_NORMAL, MAX_DMA_PFN,
                                          min(mem_pages, MAX_HIGHMEM_PFN_32))]
    if mem_pages > MAX_HIGHMEM_PFN_32:
        spans.append((ZONE_HIGHMEM, MAX_HIGHMEM_PFN_32, mem_pages))
    zones = [ZoneSpec(node=0, zone_type=t, start_pfn=lo, spanned=hi - lo, present=hi - lo,
                      managed=hi - lo) for t, lo, hi in spans if hi > lo]
    lowmem = [z for z in zones if z.zone_type != ZONE_HIGHMEM]
    lowmem_kb = 4 * sum(z.managed for z in lowmem)
    mfk = calculate_min_free_kbytes(lowmem_kb // 4)
    total_low = sum(z.managed for z in lowmem)
    out = []
    for z in zones:
        if z.zone_type == ZONE_HIGHMEM:
            wmin = max(SWAP_CLUSTER_MAX, min(z.managed // 1024, 128))
        else:
            wmin = (mfk >> (PAGE_SHIFT - 10)) * z.managed // max(total_low, 1)
        delta = max(wmin // 4, z.managed * WATERMARK_SCALE_FACTOR // 10000)
        reserve = [0] * 6
        upper = 0
        ratios = {ZONE_DMA: 256, ZONE_NORMAL: 32}
        for other in sorted((o for o in zones if o.zone_type != z.zone_type
                             and _rank32(o.zone_type) > _rank32(z.zone_type)),
                            key=lambda o: _rank32(o.zone_type)):
            upper += other.managed
            ratio = ratios.get(z.zone_type, 0)
            reserve[other.zone_type] = upper // ratio if ratio else 0
        out.append(replace(z, wmark_min=wmin, wmark_low=wmin + delta,
                           wmark_high=wmin + 2 * delta, lowmem_reserve=tuple(reserve),
                           cpus=tuple(range(cpus))))
    machine = Machine(zones=tuple(sorted(out, key=lambda z: z.start_pfn)), cpus=cpus,
                      cpu_to_node=(0,) * cpus, nodes=1, min_free_kbytes=mfk, arch="i386")
    return recompute_pcp(machine)


def _rank32(zone_type: int) -> int:
    """Zone order on i386: DMA < Normal < HighMem."""
    return {ZONE_DMA: 0, ZONE_NORMAL: 1, ZONE_HIGHMEM: 2}.get(zone_type, 3)
