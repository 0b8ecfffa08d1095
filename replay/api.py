"""The model behind the kernel's page-allocator interface, for scripted what-if workloads.

    >>> from replay.api import PageAllocator, GFP_KERNEL
    >>> mm = PageAllocator("mem=1G,cpus=2")
    >>> page = mm.alloc_pages(GFP_KERNEL, 2)     # a pfn (struct page stands for its pfn)
    >>> mm.__free_pages(page, 2)
    >>> addr = mm.__get_free_pages(GFP_KERNEL, 0)  # an address: pfn << PAGE_SHIFT
    >>> mm.free_pages(addr, 0)

Every call runs the same compiled policy as `pagereplay simulate` (pcp lists, watermarks,
zonelist fallback, __rmqueue_fallback and the steals) and records events in the ingest schema
(`events()`), so the metrics and reports work on scripted runs too. Addresses are physical
(pfn << 12): the model has no direct map.

`PageAllocator("mem=1G,cpus=2", kernel="6.12")` follows Linux 6.12's rules instead (pcp
auto-tuning, claim-or-steal fallback, ...; replay/engine/profile.py). A script has no clock:
`vmstat_update(cpu)` runs 6.12's once-a-second pcp->high decay when the script says so.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from replay.engine.initial import initial_state_boot
from replay.engine.machine import Machine, machine_from_description
from replay.engine.policy import (
    FALLBACK_POLICIES,
    SIM_COUNTER_NAMES,
    build_zonelists,
    new_emitter,
)
from replay.engine.policy import vmstat_update as _vmstat_update
from replay.engine.profile import KernelProfile, get_profile
from replay.engine.simulate import Settings, alloc_one, apply_settings, free_one
from replay.engine.slow_state import SC_RECLAIM, slow_state_for
from replay.engine.state import (
    CFG_FALLBACK_POLICY,
    CFG_MOBILITY,
    PCPF_FREE_HIGH_BATCH,
    State,
    buddyinfo,
)
from replay.errors import SettingsError
from replay.trace.gfp import (  # noqa: F401 - re-exported for scripts
    GFP_ATOMIC,
    GFP_BY_NAME,
    GFP_DMA,
    GFP_DMA32,
    GFP_HIGHUSER,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    GFP_NOFS,
    GFP_NOIO,
    GFP_NOWAIT,
    GFP_TRANSHUGE,
    GFP_TRANSHUGE_LIGHT,
    GFP_USER,
)

PAGE_SHIFT = 12
__GFP_ZERO = 0x100
__GFP_HIGHMEM = 0x2
__GFP_MOVABLE = 0x8
__GFP_RECLAIMABLE = 0x10
__GFP_COMP = 0x40000


def gfp(*names: str) -> int:
    """A gfp mask from flag names: gfp("GFP_KERNEL", "__GFP_ZERO")."""
    mask = 0
    for name in names:
        if name not in GFP_BY_NAME:
            raise SettingsError(f"unknown gfp flag {name!r}")
        mask |= GFP_BY_NAME[name]
    return mask


class PageAllocator:
    """A model machine that answers alloc_pages() / __free_pages() like the 6.1 kernel (or
    6.12's with kernel="6.12")."""

    def __init__(self, machine: Machine | str = "mem=4G,cpus=2",
                 settings: list[str] | None = None, state: State | None = None,
                 kernel: str | None = None) -> None:
        if isinstance(machine, str):
            machine = machine_from_description(machine)
        s = Settings.parse(settings)
        if kernel is not None:
            if s.get("kernel") not in (None, kernel):
                raise SettingsError(f"kernel={kernel} and the setting kernel={s.get('kernel')}")
            s = Settings({**s.values, "kernel": kernel})
        self.machine = apply_settings(machine, s)
        self.profile: KernelProfile = get_profile(self.machine.kernel, self.machine.arch)
        self.st = state if state is not None else initial_state_boot(self.machine,
                                                                     self.machine.cpus)
        if state is None and self.profile.free_high:
            self.st.pcp_flags[:] = PCPF_FREE_HIGH_BATCH
        self.st.config[CFG_MOBILITY] = int(self.machine.mobility_grouping)
        self.st.config[CFG_FALLBACK_POLICY] = FALLBACK_POLICIES[s.get("fallback_policy",
                                                                      "linux-6.1")]
        self.out = new_emitter(1 << 16)
        self.counters = np.zeros(len(SIM_COUNTER_NAMES), np.int64)
        # the slow path: compaction and kswapd, no reclaim (pages held through this API are
        # neither reclaimed nor migrated behind the caller's back)
        self.sp = slow_state_for(self.st, self.machine.nodes)
        self.sp.cfg[SC_RECLAIM] = 0
        self.zonelists, self.zl_len = build_zonelists(self.st.zone_node, self.st.zone_type,
                                                      self.machine.nodes)
        self._events: list[pa.Table] = []

    # ---- the kernel's interface ---------------------------------------------------------------
    def alloc_pages(self, gfp_mask: int, order: int = 0, cpu: int = 0) -> int | None:
        """alloc_pages(): the first pfn of a 2^order block, or None when it fails."""
        if not 0 <= order < self.machine.max_order:
            return None  # __alloc_pages() rejects order >= MAX_ORDER
        cpu = self._cpu(cpu)
        self._room()
        page = alloc_one(self.st, self.sp, int(gfp_mask), int(order), cpu,
                         int(self.machine.cpu_to_node[cpu]), self.out, self.counters,
                         self.zonelists, self.zl_len)
        return None if page < 0 else int(page)

    def alloc_page(self, gfp_mask: int, cpu: int = 0) -> int | None:
        return self.alloc_pages(gfp_mask, 0, cpu)

    def get_zeroed_page(self, gfp_mask: int, cpu: int = 0) -> int:
        return _get_free_pages(self, gfp_mask | __GFP_ZERO, 0, cpu)

    def free_pages(self, addr: int, order: int = 0, cpu: int = 0) -> None:
        """free_pages(): by address (0 is ignored, as in the kernel)."""
        if addr:
            _free_pages(self, addr >> PAGE_SHIFT, order, cpu)

    def free_page(self, addr: int, cpu: int = 0) -> None:
        self.free_pages(addr, 0, cpu)

    def vmstat_update(self, cpu: int = 0) -> None:
        """vmstat_update() on a CPU: under 6.12's rules decay_pcp_high lowers each zone's
        pcp->high by an eighth and drains what exceeds it (nothing under 6.1's)."""
        self._room()
        _vmstat_update(self.st, self._cpu(cpu), self.out, -1, self.counters)

    # ---- looking at the model -----------------------------------------------------------------
    def zone_of(self, page: int) -> str | None:
        z = int(self.st.pg_zone[page]) if 0 <= page < len(self.st.pg_zone) else -1
        return self.machine.zones[z].key if z >= 0 else None

    def buddyinfo(self) -> dict[str, list[int]]:
        b = buddyinfo(self.st)
        return {z.key: b[i].tolist() for i, z in enumerate(self.machine.zones)}

    def pcp(self, cpu: int = 0) -> dict[str, dict[str, int]]:
        """Each zone's per-CPU list state: count, high (and 6.12's high_min, high_max,
        alloc_factor, free_count)."""
        c = self._cpu(cpu)
        return {z.key: {"count": int(self.st.pcp_count[c, i]), "high": int(self.st.pcp_high[c, i]),
                        "batch": int(self.st.pcp_batch[c, i]),
                        "high_min": int(self.st.pcp_high_min[c, i]),
                        "high_max": int(self.st.pcp_high_max[c, i]),
                        "alloc_factor": int(self.st.pcp_alloc_factor[c, i]),
                        "free_count": int(self.st.pcp_free_count[c, i])}
                for i, z in enumerate(self.machine.zones)}

    def counts(self) -> dict[str, int]:
        return {name: int(self.counters[i]) for i, name in enumerate(SIM_COUNTER_NAMES)}

    def nr_free_pages(self) -> dict[str, int]:
        return {z.key: int(self.st.nr_free_pages[i]) for i, z in enumerate(self.machine.zones)}

    def events(self) -> pa.Table:
        """Every event the model emitted, in the ingest schema (mm_page_alloc, zone_locked,
        pcpu_drain, extfrag, mm_page_free)."""
        from replay.engine.events import EventArrays
        from replay.engine.simulate import emitted_table

        n = int(self.out.n[0])
        zeros = np.zeros(max(n, 1), np.int64)
        e = EventArrays(*(zeros for _ in range(15)))
        req = self.out.req.copy()
        self.out.req[:n] = 0
        table = emitted_table(self.out, e, self.machine.pageblock_order)
        self.out.req[:n] = req[:n]
        return table

    def _cpu(self, cpu: int) -> int:
        if not 0 <= cpu < self.machine.cpus:
            raise SettingsError(f"cpu {cpu}: the machine has {self.machine.cpus} CPUs")
        return cpu

    def _room(self) -> None:
        if self.out.n[0] + 4096 > len(self.out.ev):
            from replay.engine.simulate import _grow

            self.out = _grow(self.out, 2 * len(self.out.ev))


def _get_free_pages(self: PageAllocator, gfp_mask: int, order: int = 0, cpu: int = 0) -> int:
    """__get_free_pages(): the block's address (pfn << PAGE_SHIFT), 0 when it fails.
    Like the kernel, __GFP_HIGHMEM is not allowed (no direct mapping for it)."""
    page = self.alloc_pages(gfp_mask & ~__GFP_HIGHMEM, order, cpu)
    return 0 if page is None else page << PAGE_SHIFT


def _free_pages(self: PageAllocator, page: int, order: int = 0, cpu: int = 0) -> None:
    """__free_pages(): give a 2^order block back (to the pcp lists or the buddy lists)."""
    self._room()
    if not free_one(self.st, int(page), int(order), self._cpu(cpu), self.out, self.counters):
        raise SettingsError(f"__free_pages({page:#x}, {order}): not an allocated page")


# Kernel names that start with two underscores would be mangled inside a class body.
setattr(PageAllocator, "__get_free_pages", _get_free_pages)  # noqa: B010
setattr(PageAllocator, "__free_pages", _free_pages)  # noqa: B010
