"""Machine descriptions: real zoneinfo values, and the kernel's formulas reproducing them."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from replay.engine.machine import (
    ZONE_DMA32,
    ZONE_NORMAL,
    Machine,
    ZoneSpec,
    boot_managed_from_watermarks,
    boot_sizing,
    calculate_min_free_kbytes,
    infer_min_free_kbytes,
    machine_from_bundle,
    machine_from_description,
    machine_from_zoneinfo,
    nr_free_buffer_pages,
    parse_size,
    recompute_pcp,
    recompute_watermarks,
    set_recommended_min_free_kbytes,
    setup_per_zone_lowmem_reserve,
    setup_per_zone_wmarks,
    zone_batchsize,
    zone_highsize,
)
from replay.errors import InputError, SettingsError
from replay.trace.snapshots import (
    KPF_BUDDY,
    Pageset,
    ZoneInfo,
    buddy_pages,
    open_bundle,
    page_flag,
)

# The kernel sized watermarks, lowmem_reserve and pcp high/batch at boot, before the initramfs
# and __init memory (about 11 MiB) were freed into the top DMA32 zone: every value of every
# bundle's zoneinfo is reproduced exactly with that zone's managed count 2791..2808 pages lower
# (11 bundles checked; the intersection of their solution ranges). 2800 is inside it.
BOOT_DEFICIT = 2800


def real_values(m: Machine) -> list[tuple]:
    return [(z.wmark_min, z.wmark_low, z.wmark_high, z.lowmem_reserve, z.pcp_high, z.pcp_batch)
            for z in m.zones]


def boot_replay(m: Machine, key: str, thp: bool) -> Machine:
    """The machine as boot sized it, with `key`'s managed count BOOT_DEFICIT pages lower."""
    zones = [replace(z, managed=z.managed - BOOT_DEFICIT) if z.key == key else z for z in m.zones]
    sized, mfk = boot_sizing(zones, thp)
    return recompute_pcp(replace(m, zones=tuple(sized), min_free_kbytes=mfk))


@pytest.fixture(scope="module")
def small(traces: Path) -> Machine:
    b = open_bundle(traces / "mixed-small")
    return machine_from_zoneinfo(b.start.zoneinfo, b.start.pagetypeinfo)


@pytest.fixture(scope="module")
def numa(traces: Path) -> Machine:
    return machine_from_zoneinfo(open_bundle(traces / "numa-frag").start.zoneinfo)


# --- machine_from_zoneinfo --------------------------------------------------------------------


def test_machine_from_zoneinfo_mixed_small(small: Machine) -> None:
    assert [z.key for z in small.zones] == ["0/DMA", "0/DMA32"]
    assert (small.cpus, small.cpu_to_node, small.nodes) == (2, (0, 0), 1)
    assert (small.pageblock_order, small.max_order, small.mobility_grouping) == (9, 11, True)
    dma, dma32 = small.zones
    assert (dma.start_pfn, dma.end_pfn, dma.managed, dma.lowmem_reserve) == (
        1, 4096, 3840, (0, 429, 429, 429, 429))
    assert (dma32.wmark_min, dma32.wmark_low, dma32.wmark_high) == (651, 813, 975)
    assert (dma32.pcp_high, dma32.pcp_batch, dma32.cpus) == (406, 31, (0, 1))
    assert (dma.pcp_high, dma.pcp_batch) == (13, 1)
    assert small.min_free_kbytes == 2696  # inferred: the only pages_min (674) giving 22 and 651
    assert small.total_pfns == 4096 + 126941


def test_machine_from_zoneinfo_numa(numa: Machine) -> None:
    assert [z.key for z in numa.zones] == ["0/DMA", "0/DMA32", "1/DMA32"]
    assert numa.cpu_to_node == (0, 0, 1, 1)  # capture.json: CPUs 0-1 and 2-3
    assert numa.zone("1/DMA32").cpus == (2, 3) and numa.node_cpus(0) == (0, 1)
    assert numa.zone("1/DMA32").pcp_high == 3546
    other = machine_from_zoneinfo(zoneinfo_of(numa), cpu_to_node=[0, 1, 0, 1])
    assert other.zone("1/DMA32").cpus == (1, 3)
    with pytest.raises(SettingsError, match="does not fit"):
        machine_from_zoneinfo(zoneinfo_of(numa), cpu_to_node=[0, 1, 2, 0])
    with pytest.raises(KeyError):
        numa.zone("1/Normal")


def zoneinfo_of(m: Machine) -> list[ZoneInfo]:
    """A zoneinfo list rebuilt from a machine (to call machine_from_zoneinfo again)."""
    return [
        ZoneInfo(node=z.node, name=z.name, min=z.wmark_min, low=z.wmark_low, high=z.wmark_high,
                 spanned=z.spanned, present=z.present, managed=z.managed,
                 protection=list(z.lowmem_reserve), start_pfn=z.start_pfn,
                 pagesets={c: Pageset(0, z.pcp_high, z.pcp_batch) for c in range(4)})
        for z in m.zones
    ]


def test_zone_index_array_and_zone_of_pfn(numa: Machine) -> None:
    idx = numa.zone_index_array()
    assert idx.dtype == np.int16 and len(idx) == numa.total_pfns == 131072 + 131037
    assert idx[0] == -1 and idx[1] == 0 and idx[4095] == 0 and idx[4096] == 1
    assert idx[131071] == 1 and idx[131072] == 2 and idx[-1] == 2
    assert np.bincount(idx[idx >= 0]).tolist() == [4095, 126976, 131037]
    pfns = np.array([0, 1, 4096, 131071, 131072, 262108, 262109, 10**7])
    assert numa.zone_of_pfn(pfns).tolist() == [-1, 0, 1, 1, 2, 2, -1, -1]
    assert numa.zone_of_pfn(4096) == 1
    assert len(numa.zone_index_array(1000)) == 1000


@pytest.mark.parametrize("bundle", ("mixed-small", "frag-a", "numa-frag"))
def test_every_free_page_lies_in_a_zone(traces: Path, bundle: str) -> None:
    b = open_bundle(traces / bundle)
    m = machine_from_zoneinfo(b.start.zoneinfo)
    flags = b.start.kpageflags()
    free = buddy_pages(flags)
    zone = m.zone_index_array(len(flags))[free]
    assert (zone >= 0).all()
    per_zone = np.bincount(zone, minlength=len(m.zones))
    if bundle == "mixed-small":  # read with no refill in between: exact per zone
        assert per_zone.tolist() == [z.nr_free_pages for z in b.start.zoneinfo if z.populated]
    assert int(page_flag(flags, KPF_BUDDY).sum()) == per_zone.sum()


# --- the formulas against real zoneinfo values -------------------------------------------------


@pytest.mark.parametrize("bundle", ("mixed-small", "frag-a"))
def test_watermarks_from_zoneinfo_managed(traces: Path, bundle: str) -> None:
    """THP-off bundles (512 MiB: hugepage_init leaves THP off below 512 MiB): watermarks from
    the zoneinfo's own managed counts and the inferred min_free_kbytes are exact."""
    m = machine_from_zoneinfo(open_bundle(traces / bundle).start.zoneinfo)
    wm = setup_per_zone_wmarks(m.zones, m.min_free_kbytes, 10)
    assert [(w.min, w.low, w.high) for w in wm] == [
        (z.wmark_min, z.wmark_low, z.wmark_high) for z in m.zones]
    # and 4 × Σ min (2692) would not do: ⌊673·112694/116534⌋ = 650, not 651
    assert setup_per_zone_wmarks(m.zones, 4 * 673)[1].min == 650


@pytest.mark.parametrize("bundle", ("mixed-small", "frag-a", "numa-frag"))
def test_pcp_sizes_from_zoneinfo(traces: Path, bundle: str) -> None:
    """zone_batchsize(managed) and zone_highsize(low watermark) give every zone's pageset."""
    m = machine_from_zoneinfo(open_bundle(traces / bundle).start.zoneinfo)
    for z in m.zones:
        batch = max(1, zone_batchsize(z.managed))
        assert batch == z.pcp_batch, z.key
        assert zone_highsize(z.wmark_low, z.managed, batch, len(z.cpus), m.cpus) == z.pcp_high
    assert recompute_pcp(m).zones == m.zones  # nothing changes when recomputed


def test_lowmem_reserve_needs_boot_managed(small: Machine) -> None:
    """protection was computed at boot: DMA32 had ⌈429·256⌉..430·256−1 managed pages then."""
    assert setup_per_zone_lowmem_reserve(small.zones)[0] == (0, 440, 440, 440, 440)  # today's
    boot = [replace(z, managed=z.managed - BOOT_DEFICIT) if z.zone_type == ZONE_DMA32 else z
            for z in small.zones]
    assert setup_per_zone_lowmem_reserve(boot)[0] == small.zones[0].lowmem_reserve


def _wmarks_match(m: Machine, managed: dict[str, int], thp: bool) -> bool:
    zones = [replace(z, managed=managed.get(z.key, z.managed)) for z in m.zones]
    sized, _ = boot_sizing(zones, thp)
    return [z.watermarks for z in sized] == [z.watermarks for z in m.zones]


def test_boot_managed_from_watermarks(numa: Machine) -> None:
    """Node 1's DMA32 has no zone below it on its node, so no protection to read its boot-time
    managed count from; the printed watermarks alone place it in 29 pages (min = pages_min ·
    M / ΣM, THP's 5% cap tying pages_min to ΣM), the boot replay's count inside, exactly: the
    range's ends reproduce every watermark, one page beyond them none does."""
    found = boot_managed_from_watermarks(numa.zones)
    lo, hi = found["1/DMA32"]
    assert (lo, hi) == (114173, 114201)
    assert lo <= numa.zone("1/DMA32").managed - BOOT_DEFICIT <= hi
    a, b = found["0/DMA32"]
    assert a <= numa.zone("0/DMA32").managed <= b  # nothing was freed into node 0's DMA32
    node0 = range(a, b + 1)
    for m1, ok in ((lo - 1, False), (lo, True), (hi, True), (hi + 1, False)):
        assert any(_wmarks_match(numa, {"0/DMA32": m0, "1/DMA32": m1}, True)
                   for m0 in node0) == ok, m1


def _k612_numa_zoneinfo() -> list[ZoneInfo]:
    """start.zoneinfo of the shared k612-numa bundle (6.12.117, CPUs 0-1 on node 0, 2-3 on 1)."""
    def zone(node: int, name: str, start: int, spanned: int, managed: int, wmarks: tuple,
             protection: list[int], highs: tuple, batch: int) -> ZoneInfo:
        return ZoneInfo(node=node, name=name, min=wmarks[0], low=wmarks[1], high=wmarks[2],
                        spanned=spanned, present=spanned - (97 if name == "DMA" else 0),
                        managed=managed, boost=0, protection=protection, start_pfn=start,
                        pagesets={c: Pageset(0, h, batch) for c, h in enumerate(highs)})
    return [
        zone(0, "DMA", 1, 4095, 3840, (190, 237, 284), [0, 443, 443, 443, 443], (0,) * 4, 1),
        zone(0, "DMA32", 4096, 126976, 115194, (5639, 7048, 8457), [0] * 5,
             (3926, 3688, 6206, 3524), 31),
        zone(1, "DMA32", 131072, 131037, 128290, (6336, 7920, 9504), [0] * 5,
             (3960, 3960, 6972, 3960), 31),
    ]


def test_high_max_from_boot_watermarks_and_decayed_high() -> None:
    """k612-numa: the initramfs (QEMU puts it at the top of RAM) was freed into node 1's DMA32
    after boot sized the pcps, so high_max is not today's managed/16 (8018) but boot's: the
    watermarks give 127490..127519 managed (7968 or 7969), and CPU 2's printed high 6972 is
    one vmstat decay step (high − high/8) below 7968, not below 7969 (6973); the trace agrees
    (a drain at count 7968, a decay to 6972). Node 0's DMA32: 7091..7093, and 6206 = 7092's
    step."""
    m = machine_from_zoneinfo(_k612_numa_zoneinfo(), cpu_to_node=(0, 0, 1, 1), kernel="6.12")
    found = boot_managed_from_watermarks(m.zones)
    assert found["1/DMA32"] == (127490, 127519)
    assert found["0/DMA32"] == (113466, 113493)  # inside the protection's 113408..113663
    assert m.zone("1/DMA32").pcp_high_max == 7968 and m.zone("1/DMA32").pcp_high == 3960
    assert m.zone("0/DMA32").pcp_high_max == 7092
    assert recompute_pcp(m).zones == m.zones  # boot_managed reproduces them
    # 6.1's static high needs no boot count: as before, today's managed
    old = machine_from_zoneinfo(_k612_numa_zoneinfo(), cpu_to_node=(0, 0, 1, 1))
    assert old.zone("1/DMA32").boot_managed == 128290


@pytest.mark.parametrize(("bundle", "key", "thp"), [
    ("mixed-small", "0/DMA32", False),
    ("frag-a", "0/DMA32", False),
    ("numa-frag", "1/DMA32", True),
])
def test_boot_formulas_reproduce_every_zoneinfo_value(
    traces: Path, bundle: str, key: str, thp: bool
) -> None:
    """calculate_min_free_kbytes -> wmarks -> lowmem_reserve -> THP's recommended minimum ->
    wmarks -> pcp, from boot-time managed counts, give min/low/high, protection and pcp
    high/batch exactly (numa-frag: the initramfs sat in node 1's DMA32, at the top of RAM)."""
    b = open_bundle(traces / bundle)
    assert (b.thp != "never") == thp
    m = machine_from_zoneinfo(b.start.zoneinfo)
    booted = boot_replay(m, key, thp)
    assert real_values(booted) == real_values(m)
    assert booted.min_free_kbytes == (48260 if thp else 2697)


def _literal_machine(cpus: int, rows: list[tuple]) -> Machine:
    """A one-node machine from (zone type, managed, min, low, high, protection, high, batch)."""
    zones = tuple(
        ZoneSpec(node=0, zone_type=t, start_pfn=0, spanned=m, present=m, managed=m,
                 wmark_min=a, wmark_low=lo, wmark_high=h, lowmem_reserve=p, pcp_high=ph,
                 pcp_batch=pb, cpus=tuple(range(cpus)))
        for t, m, a, lo, h, p, ph, pb in rows
    )
    return Machine(zones=zones, cpus=cpus, cpu_to_node=(0,) * cpus, nodes=1)


# From ../shared/traces (not shipped here): normal-frag (5 GiB, ZONE_NORMAL above 4 GiB) and
# frag-4cpu (768 MiB, 4 CPUs), start.zoneinfo.
NORMAL_FRAG = _literal_machine(2, [
    (0, 3840, 51, 63, 75, (0, 2936, 4889, 4889, 4889), 31, 1),
    (1, 754599, 10117, 12646, 15175, (0, 0, 1952, 1952, 1952), 6323, 63),
    (2, 499852, 6726, 8407, 10088, (0,) * 5, 4203, 63),
])
FRAG_4CPU = _literal_machine(4, [
    (0, 3840, 190, 237, 284, (0, 680, 680, 680, 680), 59, 1),
    (1, 176890, 8642, 10802, 12962, (0,) * 5, 2700, 31),
])


def test_boot_formulas_normal_frag() -> None:
    """Three zones and THP's uncapped 67584 kB: exact with DMA32 2800 pages smaller at boot;
    today's managed counts put DMA32's min 15 pages too high and Normal's 15 too low."""
    assert real_values(boot_replay(NORMAL_FRAG, "0/DMA32", True)) == real_values(NORMAL_FRAG)
    today = setup_per_zone_wmarks(NORMAL_FRAG.zones, 67584)
    assert [w.min for w in today] == [51, 10132, 6711]
    assert infer_min_free_kbytes(NORMAL_FRAG.zones) is None  # no single value fits today's


def test_boot_formulas_frag_4cpu_batch() -> None:
    """The pcp batch is 31, not the 63 today's 176890 managed pages give: 174090 >> 10 = 170,
    /4 = 42, 42 + 21 = 63 -> 32 - 1 = 31; 176890 >> 10 = 172 -> 43 -> 64 - 1 = 63."""
    assert zone_batchsize(176890) == 63
    assert zone_batchsize(176890 - BOOT_DEFICIT) == 31
    assert real_values(boot_replay(FRAG_4CPU, "0/DMA32", True)) == real_values(FRAG_4CPU)


def test_formula_units() -> None:
    assert calculate_min_free_kbytes(0) == 128 and calculate_min_free_kbytes(10**10) == 262144
    assert calculate_min_free_kbytes(3840 + 110000) == 2699  # isqrt(455360·16)
    assert set_recommended_min_free_kbytes(3, 10**6) == 67584  # 512·3·11 pages
    assert set_recommended_min_free_kbytes(2, 100000) == 20000  # capped at 5%: 5000 pages
    assert [zone_batchsize(m) for m in (3840, 65536, 112694, 262144, 10**7)] == [0, 15, 31, 63, 63]
    assert zone_highsize(813, 112694, 31, 2, 2) == 406
    assert zone_highsize(27, 3840, 1, 2, 2) == 13
    assert zone_highsize(27, 3840, 7, 2, 2) == 28  # at least 4·batch
    assert zone_highsize(813, 112694, 31, 0, 4) == 203  # a CPU-less node: all online CPUs
    assert zone_highsize(813, 112694, 31, 2, 2, high_fraction=8) == 112694 // 8 // 2
    zones = NORMAL_FRAG.zones
    assert nr_free_buffer_pages(zones) == 3840 + 754599 + 499852
    assert nr_free_buffer_pages(zones, [75, 15175, 10088]) == 3765 + 739424 + 489764


# --- machine_from_description -----------------------------------------------------------------


def test_description_4g() -> None:
    m = machine_from_description("mem=4G,cpus=8,nodes=1")
    assert [z.key for z in m.zones] == ["0/DMA", "0/DMA32"]
    dma, dma32 = m.zones
    assert (dma.start_pfn, dma.spanned, dma.present, dma.managed) == (1, 4095, 3998, 3840)
    assert (dma32.start_pfn, dma32.end_pfn) == (4096, 1 << 20)
    assert dma32.managed == dma32.present - 32 * 512  # 32 sections of memmap
    assert m.min_free_kbytes == 45056  # THP: 512·2·11 pages
    assert [(w.min, w.low, w.high) for w in setup_per_zone_wmarks(m.zones, 45056)] == [
        (z.wmark_min, z.wmark_low, z.wmark_high) for z in m.zones]
    assert dma.lowmem_reserve[1] == dma32.managed // 256
    assert (dma32.pcp_batch, dma32.pcp_high) == (63, dma32.wmark_low // 8)
    assert m.cpu_to_node == (0,) * 8 and dma32.cpus == tuple(range(8))


def test_description_numa_and_normal() -> None:
    m = machine_from_description("mem=1G,cpus=4,nodes=2")
    assert [z.key for z in m.zones] == ["0/DMA", "0/DMA32", "1/DMA32"]
    assert m.zone("1/DMA32").start_pfn == 131072 and m.cpu_to_node == (0, 0, 1, 1)
    assert m.min_free_kbytes > calculate_min_free_kbytes(nr_free_buffer_pages(m.zones))  # THP
    big = machine_from_description("mem=16G,nodes=2,cpus=4")
    assert [z.key for z in big.zones] == ["0/DMA", "0/DMA32", "0/Normal", "1/Normal"]
    assert big.zone("1/Normal").start_pfn == 1 << 21  # node 1 starts at 8 GiB: Normal only
    assert big.zone("0/Normal").zone_type == ZONE_NORMAL


def test_description_matches_normal_frag_layout() -> None:
    """QEMU's 5 GiB guest: 3 GiB under the PCI hole, 2 GiB from 4 GiB."""
    m = machine_from_description("mem=5G,cpus=2,below4g=3G")
    spans = [(z.start_pfn, z.spanned) for z in m.zones]
    assert spans == [(1, 4095), (4096, 1044480), (1 << 20, 524288)]  # as in its zoneinfo
    assert m.min_free_kbytes == 67584
    for model, real in zip(m.zones, NORMAL_FRAG.zones, strict=True):
        assert abs(model.managed - real.managed) <= 0.04 * real.managed
        assert abs(model.wmark_min - real.wmark_min) <= 0.04 * real.wmark_min
        assert model.pcp_batch == real.pcp_batch


def test_description_thp_rule() -> None:
    assert machine_from_description("mem=512M,cpus=2").min_free_kbytes < 4000  # THP off
    assert machine_from_description("mem=512M,cpus=2,thp=always").min_free_kbytes > 20000
    assert machine_from_description("mem=768M,cpus=4").min_free_kbytes > 30000


@pytest.mark.parametrize("text", ["cpus=4", "mem=4Q", "mem=4G,foo=1", "mem=4G,cpus=0",
                                  "mem=4G,nodes=x", "mem=1M", "mem=4G,thp=sometimes", "mem"])
def test_description_errors(text: str) -> None:
    with pytest.raises(SettingsError):
        machine_from_description(text)


def test_parse_size() -> None:
    assert parse_size("4G") == 4 << 30 and parse_size("512m") == 512 << 20
    assert parse_size("64KiB") == 65536 and parse_size("4096") == 4096


# --- what-if recomputation --------------------------------------------------------------------


def test_recompute_watermarks(small: Machine) -> None:
    boosted = replace(small, zones=tuple(replace(z, watermark_boost=512) for z in small.zones))
    m = recompute_watermarks(boosted, min_free_kbytes=4 * 2696)
    dma32 = m.zone("0/DMA32")
    assert (dma32.wmark_min, dma32.watermark_boost) == (2696 * 112694 // 116534, 0)
    assert dma32.wmark_low - dma32.wmark_min == dma32.wmark_min // 4
    assert dma32.pcp_high == dma32.wmark_low // 2  # pcp follow the new low watermark
    assert small.zone("0/DMA32").wmark_min == 651  # the original is untouched
    wide = recompute_watermarks(small, watermark_scale_factor=100).zone("0/DMA32")
    assert wide.wmark_low - wide.wmark_min == 112694 * 100 // 10000
    same = recompute_watermarks(small)
    assert real_values(same) == real_values(small)
    with pytest.raises(SettingsError):
        recompute_watermarks(small, watermark_scale_factor=0)
    with pytest.raises(SettingsError):
        recompute_watermarks(small, min_free_kbytes=-1)


def test_recompute_pcp(small: Machine) -> None:
    m = recompute_pcp(small, pcp_batch=7)
    assert [(z.pcp_batch, z.pcp_high) for z in m.zones] == [(7, 28), (7, 406)]
    assert recompute_pcp(small, pcp_high=100).zone("0/DMA32").pcp_high == 100
    frac = recompute_pcp(small, high_fraction=8)
    assert frac.zone("0/DMA32").pcp_high == 112694 // 8 // 2
    assert frac.percpu_pagelist_high_fraction == 8
    for bad in ({"high_fraction": 5}, {"pcp_batch": 0}, {"pcp_high": -1}):
        with pytest.raises(SettingsError):
            recompute_pcp(small, **bad)


def test_machine_from_bundle_reads_sysctl_and_numa(tmp_path: Path, traces: Path) -> None:
    dest = tmp_path / "b"
    dest.mkdir()
    for name in ("trace.txt.gz", "start.zoneinfo", "start.pagetypeinfo"):
        shutil.copy(traces / "numa-frag" / name, dest / name)
    assert machine_from_bundle(open_bundle(dest)).cpu_to_node == (0, 0, 1, 1)
    (dest / "numa").write_text("node0 0,2\nnode1 1,3\n")
    (dest / "sysctl").write_text("vm.min_free_kbytes = 48260\nvm.watermark_scale_factor = 10\n"
                                 "vm.percpu_pagelist_high_fraction = 0\n")
    m = machine_from_bundle(open_bundle(dest))
    assert m.cpu_to_node == (0, 1, 0, 1) and m.zone("1/DMA32").cpus == (1, 3)
    assert m.min_free_kbytes == 48260
    with pytest.raises(InputError, match="no end.zoneinfo"):
        machine_from_bundle(open_bundle(dest), side="end")
