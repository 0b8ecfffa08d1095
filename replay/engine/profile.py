"""Kernel profiles: everything that differs between the kernels the engine follows, as data.

A profile is a kernel and an architecture (`6.1/x86_64`, `6.12/x86_64`, `6.1/i386`). Each rule
that differs between kernels is one field of `KernelProfile` and one slot of `State.config`;
the compiled code reads the slot at the call site and calls the function named after the
kernel's own (`nr_pcp_alloc`, `__rmqueue_claim`, `decay_pcp_high`, ...). Adding a kernel means
one more `KernelProfile` value here (and a function for any rule that is a new algorithm).

`RULES` is the side-by-side table of docs/model.md: each rule's values in 6.1 and 6.12 and the
source lines (6.1.192 and 6.12.118 as Debian ships them; 6.12.118's lines past ~1300 are 3
higher than 6.12.117's, the kernel that produced the shared k612 bundles).

Which profile a trace gets: `--kernel`, else the release in the bundle's `uname`, the trace.dat
header or the trace's own header, mapped to the nearest profile (with a warning naming both
when the release has no profile of its own); a trace with no release at all gets 6.1, with a
warning. The *trace* profile says how to read the trace's events (reconstruct follows it); the
*model* profile says whose policy a simulation follows: they differ in an upgrade what-if.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

from replay.errors import SettingsError

KERNELS: tuple[str, ...] = ("6.1", "6.12")
ARCHES: tuple[str, ...] = ("x86_64", "i386")

# State.config slots 0-5 are the machine's (pageblock_order, mobility, boost factor, fallback
# what-if policy, max_order, lossy); the profile's rules follow.
(CFG_KERNEL, CFG_PCP_HIGH_TUNING, CFG_PCP_REFILL, CFG_PCP_FREE, CFG_FREE_HIGH, CFG_VMSTAT_DECAY,
 CFG_FALLBACK_RULE, CFG_EXTFRAG_TAKES, CFG_FREE_BATCHED_ANY_ORDER, CFG_MERGE_RETYPE,
 CFG_LIST_IS_PAGEBLOCK, CFG_SPLIT_LARGE_FREE, CFG_HIGHATOMIC_WMARK, CFG_WMARK_FAST_KEY,
 CFG_BOOST_WAKE_KSWAPD, CFG_HIGHATOMIC_LIMIT, CFG_BELOW_HIGH, CFG_FREE_HIGH_BATCH,
 CFG_VMSTAT_MS, CFG_COMPACTION) = range(6, 26)
N_CONFIG = 26

FALLBACK_STEAL, FALLBACK_CLAIM_STEAL = 0, 1  # __rmqueue_fallback (6.1) / claim-or-steal (6.12)
VMSTAT_INTERVAL_MS = 1000  # vmstat_update: round_jiffies_relative(HZ) (mm/vmstat.c)


@dataclass(frozen=True)
class KernelProfile:
    """The rules of one kernel on one architecture (1 = the newer behaviour; see RULES)."""

    kernel: str
    arch: str = "x86_64"
    source: str = ""
    min_patch: int = 0  # older stable releases lack backported rules (see warnings_for)
    pcp_high_tuning: int = 0
    pcp_refill: int = 0
    pcp_free: int = 0
    free_high: int = 0
    vmstat_decay: int = 0
    fallback: int = FALLBACK_STEAL
    extfrag_only_takes: int = 0
    free_batched_any_order: int = 0
    merge_retype: int = 0
    list_is_pageblock: int = 0
    split_large_free: int = 0
    highatomic_wmark: int = 0
    wmark_fast_key: int = 0
    boost_wake_kswapd: int = 0
    highatomic_limit: int = 0
    below_high: int = 0
    compaction: int = 0

    @property
    def name(self) -> str:
        return f"{self.kernel}/{self.arch}"

    def config(self) -> dict[int, int]:
        """{State.config slot: value} for this profile's rules."""
        out = {CFG_KERNEL: KERNELS.index(self.kernel)}
        for rule in RULES:
            out[rule.slot] = int(getattr(self, rule.key))
        out[CFG_FREE_HIGH_BATCH] = self.free_high  # PCPF_FREE_HIGH_BATCH assumed set (6.12)
        out[CFG_VMSTAT_MS] = VMSTAT_INTERVAL_MS if self.vmstat_decay else 0
        return out

    def rules(self) -> dict[str, str]:
        """Each rule's value as text (for JSON, the report and the dashboard)."""
        return {r.key: (r.v612 if getattr(self, r.key) else r.v61) for r in RULES}

    def as_dict(self) -> dict:
        d = asdict(self)
        return {"name": self.name, "kernel": self.kernel, "arch": self.arch,
                "source": self.source, "rules": self.rules(),
                "values": {r.key: d[r.key] for r in RULES}}


@dataclass(frozen=True)
class Rule:
    """One rule that differs: its profile field, config slot, and the two kernels' versions."""

    key: str
    slot: int
    what: str
    v61: str
    v612: str
    src61: str
    src612: str


RULES: tuple[Rule, ...] = (
    Rule("pcp_high_tuning", CFG_PCP_HIGH_TUNING, "pcp->high",
         "static: zone_highsize() (low watermark / CPUs of the node)",
         "auto-tuned between high_min (6.1's value) and high_max (managed/8 / CPUs): grows by "
         "the refill on each refill, shrinks on free_high, ZONE_BELOW_HIGH and vmstat decay",
         "zone_highsize L7096", "nr_pcp_alloc :3021, nr_pcp_high :2628, "
         "zone_set_pageset_high_and_batch :5793"),
    Rule("pcp_refill", CFG_PCP_REFILL, "pcp refill size",
         "batch >> order (max 2)", "nr_pcp_alloc: batch << alloc_factor for order 0 (doubling on "
         "refills with no free between, capped by high - count - batch), batch >> order else",
         "__rmqueue_pcplist L3814", "nr_pcp_alloc :3021, free_unref_page_commit :2689"),
    Rule("pcp_free", CFG_PCP_FREE, "drain size",
         "clamp(batch << free_factor, batch, high - batch)",
         "clamp(free_count, batch, high - batch); free_count counts consecutive freed pages",
         "nr_pcp_free L3422", "nr_pcp_free :2603, rmqueue_pcplist :3126"),
    Rule("free_high", CFG_FREE_HIGH, "free_high (high-order free burst)",
         "free_factor > 0 and order 1-3: drain the whole pcp",
         "two consecutive order 1-3 frees with free_count >= batch (and count >= batch): drain "
         "min(count, batch << 5), lower high by batch << 5",
         "free_unref_page_commit L3488", "free_unref_page_commit :2703, nr_pcp_high :2641"),
    Rule("vmstat_decay", CFG_VMSTAT_DECAY, "background pcp drains",
         "none (only NUMA drain_zone_pages)",
         "decay_pcp_high from vmstat_update about once a second per CPU: high -= high/8, drain "
         "count - high in batch chunks", "-", "decay_pcp_high :2412, mm/vmstat.c:839"),
    Rule("fallback", CFG_FALLBACK_RULE, "fallback to another migratetype",
         "__rmqueue_fallback: the largest fallback block; steal_suitable_fallback moves the "
         "pageblock's free pages whatever the threshold, re-types it at >= half",
         "__rmqueue_claim (orders 10 down: whole pageblock iff free + alike >= half, nothing "
         "moved otherwise, never a pageblock straddling the zone) then __rmqueue_steal (the "
         "smallest block alone); rmqueue_bulk keeps the mode for the rest of the refill",
         "__rmqueue_fallback L3033, steal_suitable_fallback L2791",
         "__rmqueue_claim :2217, try_to_steal_block :1955, prep_move_freepages_block :1722, "
         "__rmqueue_steal :2269, __rmqueue :2306"),
    Rule("extfrag_only_takes", CFG_EXTFRAG_TAKES, "mm_page_alloc_extfrag",
         "before the zone_locked of the stolen block; pfn = the stolen block",
         "claims of blocks >= pageblock_order and steals emit no zone_locked: extfrag alone, pfn "
         "= the page handed out; a smaller claim's zone_locked comes first",
         "__rmqueue_fallback L3103", "try_to_steal_block :1976, __rmqueue_claim :2255, "
         "__rmqueue_steal :2286"),
    Rule("free_batched_any_order", CFG_FREE_BATCHED_ANY_ORDER, "mm_page_free_batched",
         "order-0 pages only (free_unref_page_list)",
         "every pcp order, THP folios included, printed order=0: the order is the preceding "
         "mm_page_free's", "free_unref_page_list L3543", "free_unref_folios :2774, :2857"),
    Rule("merge_retype", CFG_MERGE_RETYPE, "merging across pageblocks",
         "the buddy's pageblock keeps its type", "the buddy's pageblock takes the freed page's "
         "type (order >= pageblock_order)", "__free_one_page L1122", "__free_one_page :874"),
    Rule("list_is_pageblock", CFG_LIST_IS_PAGEBLOCK, "free-list type",
         "the type cached at free time (page->index): drains, steals and split remainders can "
         "sit on another type's list",
         "always the pageblock's type: drains re-read it, type changes move every free page",
         "set_pcppage_migratetype L313, free_pcppages_bulk L1621",
         "free_pcppages_bulk :1256, __add_to_free_list :681"),
    Rule("split_large_free", CFG_SPLIT_LARGE_FREE, "frees above pageblock_order",
         "one block", "split_large_buddy: pageblock pieces, each with its pageblock's type",
         "free_one_page L1645", "split_large_buddy :1272"),
    Rule("highatomic_wmark", CFG_HIGHATOMIC_WMARK, "watermark's highatomic term",
         "nr_reserved_highatomic (reserved pageblocks)",
         "nr_free_highatomic (free pages on HIGHATOMIC lists)",
         "__zone_watermark_unusable_free L4012", "__zone_watermark_unusable_free :3190"),
    Rule("wmark_fast_key", CFG_WMARK_FAST_KEY, "zone_watermark_fast's boost-free recheck",
         "order 0 with __GFP_ATOMIC", "order 0 with ALLOC_MIN_RESERVE (__GFP_ATOMIC is gone)",
         "zone_watermark_fast L4148", "zone_watermark_fast :3327"),
    Rule("boost_wake_kswapd", CFG_BOOST_WAKE_KSWAPD, "ZONE_BOOSTED_WATERMARK wake-up",
         "any allocation", "only an allocation with ALLOC_KSWAPD", "rmqueue L3912",
         "rmqueue :3170"),
    Rule("highatomic_limit", CFG_HIGHATOMIC_LIMIT, "HIGHATOMIC reserve limit",
         "managed/100 + pageblock_nr_pages",
         "ALIGN(managed/100, pageblock_nr_pages); none when managed/100 < a pageblock",
         "reserve_highatomic_pageblock L2918", "reserve_highatomic_pageblock :2081-2083"),
    Rule("compaction", CFG_COMPACTION, "compaction as a trace shows it",
         "fast_isolate_freepages() untraced (inferred); targets split to order 0; a compound "
         "page counts once in nr_scanned; capture only non-MOVABLE below pageblock_order",
         "fast_isolate_freepages() traced (mm_compaction_fast_isolate_freepages: pages taken); "
         "targets kept whole, compaction_free() emits mm_page_free of a target that stays "
         "isolated, leftovers freed at their order; a compound page inside the block counts "
         "2^order; __isolate_free_page() moves the pageblock's free blocks to MOVABLE; a "
         "MOVABLE request also captures MOVABLE blocks below pageblock_order",
         "compaction.c:1396-1553, 541-664, split_map_pages :85; page_alloc.c:989",
         "compaction.c:1667, 589-711, 1833-1906, release_free_list :91; page_alloc.c:623, "
         "__isolate_free_page :2889"),
    Rule("below_high", CFG_BELOW_HIGH, "ZONE_BELOW_HIGH",
         "-", "set when an allocation's high-watermark check fails, cleared after a drain that "
         "leaves the zone above it; drives pcp->high down", "-",
         "get_page_from_freelist :3499-3508, free_unref_page_commit :2720"),
)

_LINUX_61 = KernelProfile("6.1", source="Debian 6.1.192 (linux-source-6.1)")
_LINUX_612 = KernelProfile(
    "6.12", source="Debian 6.12.117 (linux-source-6.12; 6.12.29+ claim/steal backport)",
    min_patch=69, **{r.key: 1 for r in RULES})
PROFILES: dict[str, KernelProfile] = {"6.1": _LINUX_61, "6.12": _LINUX_612}


def get_profile(kernel: str = "6.1", arch: str = "x86_64") -> KernelProfile:
    """The profile of a kernel ('6.1' or '6.12') on an architecture ('x86_64' or 'i386')."""
    if kernel not in PROFILES:
        raise SettingsError(f"kernel {kernel!r}: choose one of {', '.join(KERNELS)}")
    if arch not in ARCHES:
        raise SettingsError(f"arch {arch!r}: choose one of {', '.join(ARCHES)}")
    return replace(PROFILES[kernel], arch=arch)


def apply_profile(config, profile: KernelProfile) -> None:
    """Write a profile's rules into a State.config array (in place)."""
    for slot, value in profile.config().items():
        config[slot] = value


def profile_of_config(config) -> str:
    return KERNELS[int(config[CFG_KERNEL])]


_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_release(text: str | None) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a kernel release like '6.12.117+deb12-amd64' or
    '6.1.0-56-amd64' (Debian's ABI name: the patch is in the version, not the release)."""
    if not text:
        return None
    m = _RELEASE.search(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def arch_of_release(text: str | None) -> str | None:
    """i386 for a 32-bit x86 kernel ('686', 'i686', 'i386' in the release or uname)."""
    if not text:
        return None
    if re.search(r"\b(i[3-6]86|686(-pae)?)\b|-686", text):
        return "i386"
    if re.search(r"x86_64|amd64", text):
        return "x86_64"
    return None


def nearest_kernel(version: tuple[int, int, int]) -> str:
    """The profile nearest a release by version number (ties go to the older one)."""
    key = version[0] * 1000 + version[1]
    best = min(KERNELS, key=lambda k: (abs(key - _key(k)), _key(k)))
    return best


def _key(kernel: str) -> int:
    major, minor = (int(x) for x in kernel.split("."))
    return major * 1000 + minor


@dataclass
class ProfileChoice:
    """Which rules each side of a replay follows, and why."""

    trace: KernelProfile  # how the trace's events are read (reconstruct follows it)
    model: KernelProfile  # whose policy a simulation follows
    release: str | None = None
    detected_from: str = "none"  # "uname", "trace header", "--kernel", "none"
    warnings: list[str] = field(default_factory=list)

    @property
    def what_if(self) -> bool:
        return self.trace.kernel != self.model.kernel

    def as_dict(self) -> dict:
        return {"release": self.release, "detected_from": self.detected_from,
                "trace": self.trace.as_dict(), "model": self.model.as_dict(),
                "what_if": self.what_if, "warnings": list(self.warnings)}


def choose_profiles(release: str | None, arch: str | None = None, kernel: str | None = None,
                    detected_from: str = "uname") -> ProfileChoice:
    """The trace's profile from its release (nearest, with a warning when not exact) and the
    model's: `kernel` (--kernel) when given, else the trace's. Without a release, `kernel`
    names the trace's kernel too."""
    arch = arch or arch_of_release(release) or "x86_64"
    warnings: list[str] = []
    version = parse_release(release)
    if version is None:
        trace_kernel = kernel or "6.1"
        if kernel is None:
            warnings.append("kernel release unknown (no uname in the bundle or trace header): "
                            "replaying with the 6.1 profile; give --kernel 6.1|6.12 to choose")
        detected_from = "--kernel" if kernel else "none"
    else:
        trace_kernel = nearest_kernel(version)
        vtext = ".".join(str(x) for x in version)
        if (version[0], version[1]) != tuple(int(x) for x in trace_kernel.split(".")):
            warnings.append(f"kernel {release} has no profile of its own: replayed with the "
                            f"nearest, {trace_kernel} ({PROFILES[trace_kernel].source}); "
                            "rules that differ are listed in docs/model.md")
        elif version[2] and version[2] < PROFILES[trace_kernel].min_patch:
            warnings.append(f"kernel {vtext} predates the stable backports the {trace_kernel} "
                            f"profile follows (6.12.29 claim/steal, 6.12.69 decay batching and "
                            f"re-typing on merge): replayed with {trace_kernel}'s rules")
    model_kernel = kernel or trace_kernel
    if kernel is not None and kernel not in KERNELS:
        raise SettingsError(f"--kernel {kernel}: choose one of {', '.join(KERNELS)}")
    return ProfileChoice(get_profile(trace_kernel, arch), get_profile(model_kernel, arch),
                         release, detected_from, warnings)


def trace_profiles(data=None, bundle=None, kernel: str | None = None,
                   machine=None) -> ProfileChoice:
    """The profiles of a trace (TraceData) and its bundle: the release from the bundle's uname,
    else the trace.dat or trace header's; the architecture from uname, the release or the
    zones (HighMem is 32-bit only); `kernel` from --kernel."""
    release, source = None, "none"
    if bundle is not None and getattr(bundle, "kernel_release", None):
        release, source = bundle.kernel_release, "uname"
    elif data is not None and getattr(data.stats, "kernel_release", None):
        release, source = data.stats.kernel_release, "trace header"
    arch = None
    if bundle is not None and getattr(bundle, "uname", None):
        arch = arch_of_release(bundle.uname)
    arch = arch or arch_of_release(release)
    if arch is None and machine is not None:
        arch = machine.arch
    if arch is None and bundle is not None and getattr(bundle, "start", None) is not None:
        zones = bundle.start.zoneinfo or []
        arch = "i386" if any(zi.name == "HighMem" for zi in zones) else None
    choice = choose_profiles(release, arch, kernel, source)
    if kernel is not None and release is not None and choice.what_if:
        choice.detected_from = f"{source}; --kernel {kernel}"
    return choice
