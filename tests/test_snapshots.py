"""Snapshot parsers: real bundle files give the numbers they show; bad input is an InputError."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from replay.errors import InputError
from replay.trace.snapshots import (
    KPF_BUDDY,
    KPF_NAMES,
    KPF_RESERVED,
    buddy_pages,
    load_kpageflags,
    open_bundle,
    page_flag,
    parse_buddyinfo,
    parse_cpulist,
    parse_meminfo,
    parse_numa,
    parse_pagetypeinfo,
    parse_ringstats,
    parse_sysctl,
    parse_vmstat,
    parse_zoneinfo,
    read_buddyinfo,
    read_meminfo,
    read_pagetypeinfo,
    read_vmstat,
    read_zoneinfo,
)

BUNDLES = ("mixed-small", "frag-a", "numa-frag")


def pages(counts: list[int]) -> int:
    return sum(c << order for order, c in enumerate(counts))


# --- buddyinfo --------------------------------------------------------------------------------


def test_buddyinfo_mixed_small_counts(traces: Path) -> None:
    info = read_buddyinfo(traces / "mixed-small/start.buddyinfo")
    assert info == {
        (0, "DMA"): [0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 3],
        (0, "DMA32"): [1, 1, 2, 0, 0, 1, 2, 2, 1, 2, 84],
    }


def test_buddyinfo_numa_frag_two_nodes(traces: Path) -> None:
    info = read_buddyinfo(traces / "numa-frag/start.buddyinfo")
    assert list(info) == [(0, "DMA"), (0, "DMA32"), (1, "DMA32")]
    assert info[(1, "DMA32")] == [1, 1, 2, 1, 2, 2, 1, 3, 3, 2, 90]


def test_buddyinfo_any_column_count() -> None:
    text = "Node 0, zone   Normal      5      0      2 \nNode 1, zone      DMA 1\n"
    assert parse_buddyinfo(text) == {(0, "Normal"): [5, 0, 2], (1, "DMA"): [1]}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("Node 0, zone      DMA      0      0\nNode 0, zone    DMA32\n", "buddyinfo:2:"),
        ("Node 0, zone DMA 1 2 x3 4\n", "buddyinfo:1:"),
        ("garbage\n", "buddyinfo:1:"),
        ("Node 0, zone DMA 1\nNode 0, zone DMA 2\n", "buddyinfo:2:"),
        ("\n\n", "buddyinfo:"),
    ],
)
def test_buddyinfo_malformed(text: str, where: str) -> None:
    with pytest.raises(InputError, match=re.escape(where)):
        parse_buddyinfo(text)


# --- pagetypeinfo -----------------------------------------------------------------------------


def test_pagetypeinfo_mixed_small(traces: Path) -> None:
    info = read_pagetypeinfo(traces / "mixed-small/start.pagetypeinfo")
    assert (info.pageblock_order, info.pages_per_block) == (9, 512)
    assert info.migratetypes == ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"]
    assert info.free[(0, "DMA32")]["Movable"] == [0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 84]
    assert info.free[(0, "DMA32")]["Reclaimable"] == [1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0]
    assert info.blocks == {
        (0, "DMA"): {"Unmovable": 1, "Movable": 7, "Reclaimable": 0, "HighAtomic": 0,
                     "Isolate": 0},
        (0, "DMA32"): {"Unmovable": 63, "Movable": 179, "Reclaimable": 6, "HighAtomic": 0,
                       "Isolate": 0},
    }
    assert not info.saturated and not info.mixed


def test_pagetypeinfo_numa_frag_per_node_headers(traces: Path) -> None:
    info = read_pagetypeinfo(traces / "numa-frag/start.pagetypeinfo")
    assert list(info.free) == [(0, "DMA"), (0, "DMA32"), (1, "DMA32")]
    assert info.blocks[(1, "DMA32")] == {"Unmovable": 72, "Movable": 182, "Reclaimable": 2,
                                         "HighAtomic": 0, "Isolate": 0}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_pagetypeinfo_sums_to_buddyinfo(traces: Path, bundle: str) -> None:
    """Per zone and order, the free lists of all types add up to buddyinfo (start snapshots)."""
    info = read_pagetypeinfo(traces / bundle / "start.pagetypeinfo")
    buddy = read_buddyinfo(traces / bundle / "start.buddyinfo")
    for key, per_type in info.free.items():
        assert np.sum(list(per_type.values()), axis=0).tolist() == buddy[key]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_pagetypeinfo_blocks_cover_zone_span(traces: Path, bundle: str) -> None:
    """Σ pageblocks of a zone = the pageblocks its pfn span touches (zoneinfo start_pfn/spanned)."""
    info = read_pagetypeinfo(traces / bundle / "start.pagetypeinfo")
    for zone in read_zoneinfo(traces / bundle / "start.zoneinfo"):
        if zone.populated:
            first, end = zone.start_pfn, zone.start_pfn + zone.spanned
            expected = -(-end // 512) - first // 512
            assert sum(info.blocks[zone.key].values()) == expected, zone.key


def test_pagetypeinfo_saturated_count() -> None:
    text = (
        "Page block order: 9\nPages per block:  512\n\n"
        "Free pages count per migrate type at order       0      1 \n"
        "Node    0, zone   Normal, type      Movable >100000     12 \n"
        "\nNumber of blocks type     Unmovable      Movable \n"
        "Node 0, zone   Normal            3          900 \n"
    )
    info = parse_pagetypeinfo(text)
    assert info.free[(0, "Normal")]["Movable"] == [100000, 12]
    assert info.saturated == {(0, "Normal", "Movable", 0)}
    assert info.blocks[(0, "Normal")] == {"Unmovable": 3, "Movable": 900}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("Page block order: 9\nPages per block:  512\nhello world\n", "pagetypeinfo:3:"),
        ("Pages per block:  512\n", "no `Page block order:`"),
        ("Page block order: 9\nPages per block:  512\n"
         "Node    0, zone   DMA, type  Movable  1  x  3\n", "pagetypeinfo:3:"),
        ("Page block order: 9\nPages per block:  512\nNode 0, zone DMA, type Movable \n",
         "pagetypeinfo:3: no per-order counts"),
        ("Page block order: 9\nPages per block:  512\nNumber of blocks type  Unmovable Movable\n"
         "Node 0, zone DMA 1\n", "pagetypeinfo:4: 1 counts for 2 types"),
    ],
)
def test_pagetypeinfo_malformed(text: str, where: str) -> None:
    with pytest.raises(InputError, match=re.escape(where)):
        parse_pagetypeinfo(text)


# --- zoneinfo ---------------------------------------------------------------------------------


def test_zoneinfo_mixed_small(traces: Path) -> None:
    zones = read_zoneinfo(traces / "mixed-small/start.zoneinfo")
    assert [(z.node, z.name, z.populated) for z in zones] == [
        (0, "DMA", True), (0, "DMA32", True), (0, "Normal", False), (0, "Movable", False),
        (0, "Device", False),
    ]
    dma, dma32 = zones[0], zones[1]
    assert (dma.start_pfn, dma.spanned, dma.present, dma.managed) == (1, 4095, 3998, 3840)
    assert (dma.min, dma.low, dma.high, dma.boost) == (22, 27, 32, 0)
    assert dma.protection == [0, 429, 429, 429, 429]
    assert dma.node_stats["nr_inactive_anon"] == 991  # per-node stats print under DMA
    assert (dma32.start_pfn, dma32.spanned, dma32.present, dma32.managed) == (
        4096, 126941, 126941, 112694)
    assert (dma32.min, dma32.low, dma32.high) == (651, 813, 975)
    assert dma32.nr_free_pages == 87723 and dma32.free == 87723
    assert dma32.pagesets == {0: (306, 406, 31), 1: (209, 406, 31)}
    assert dma32.pagesets[1].high == 406 and dma32.vm_stats_threshold == {0: 12, 1: 12}
    assert not dma32.node_stats and dma32.stats["numa_hit"] == 25068
    normal = zones[2]
    assert normal.start_pfn is None and normal.pagesets == {} and normal.managed == 0


def test_zoneinfo_numa_frag_second_node(traces: Path) -> None:
    zones = {z.key: z for z in read_zoneinfo(traces / "numa-frag/start.zoneinfo")}
    assert len(zones) == 10 and not zones[(1, "DMA")].populated
    n1 = zones[(1, "DMA32")]
    assert (n1.start_pfn, n1.spanned, n1.managed) == (131072, 131037, 116986)
    assert (n1.min, n1.low, n1.high) == (5674, 7092, 8510)
    assert {c: p.high for c, p in n1.pagesets.items()} == {0: 3546, 1: 3546, 2: 3546, 3: 3546}
    assert n1.node_stats  # node 1's stats print under its first populated zone
    assert zones[(0, "DMA")].protection == [0, 487, 487, 487, 487]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_zoneinfo_free_matches_vmstat_and_meminfo(traces: Path, bundle: str) -> None:
    zones = read_zoneinfo(traces / bundle / "start.zoneinfo")
    vmstat = read_vmstat(traces / bundle / "start.vmstat")
    meminfo = read_meminfo(traces / bundle / "start.meminfo")
    free = sum(z.nr_free_pages for z in zones)
    assert free == vmstat["nr_free_pages"] == meminfo["MemFree"] // 4
    assert sum(z.managed for z in zones) * 4 == meminfo["MemTotal"]


def test_zoneinfo_truncated_is_an_input_error(traces: Path) -> None:
    text = (traces / "mixed-small/start.zoneinfo").read_text()
    cut = text[: text.index("  start_pfn:           4096")]
    with pytest.raises(InputError, match=r"zone 0/DMA32 has no start_pfn \(truncated\?\)"):
        parse_zoneinfo(cut)
    with pytest.raises(InputError, match=r"zone 0/DMA has no protection"):
        parse_zoneinfo(text[: text.index("        protection: (0, 429")])


def test_zoneinfo_garbage_names_the_line(traces: Path) -> None:
    lines = (traces / "mixed-small/start.zoneinfo").read_text().splitlines()
    lines[50] = "  ~~ not a zoneinfo line ~~"
    with pytest.raises(InputError, match=r"^zi:51: unrecognised zoneinfo line"):
        parse_zoneinfo("\n".join(lines), "zi")
    with pytest.raises(InputError, match=r"zoneinfo:1: expected a `Node N, zone NAME`"):
        parse_zoneinfo("  pages free 3\n")


# A 6.18 zone (captured with traces/capture.sh on a 6.18 host): promo, high_min/high_max.
ZONEINFO_6_18 = """Node 0, zone    DMA32
  pages free     772915
        boost    0
        min      7420
        low      9275
        high     11130
        promo    12985
        spanned  1044480
        present  782336
        managed  772915
        cma      0
        protection: (0, 0, 3840, 3840, 3840)
      nr_free_pages 772915
      nr_free_pages_blocks 770048
  pagesets
    cpu: 0
              count:    0
              high:     4637
              batch:    63
              high_min: 4637
              high_max: 48307
  vm stats threshold: 24
  node_unreclaimable:  0
  start_pfn:           4096
"""


def test_zoneinfo_newer_kernel_fields() -> None:
    (zone,) = parse_zoneinfo(ZONEINFO_6_18)
    assert (zone.min, zone.low, zone.high, zone.promo, zone.cma) == (7420, 9275, 11130, 12985, 0)
    assert zone.pagesets == {0: (0, 4637, 63)}
    assert zone.pageset_extra == {0: {"high_min": 4637, "high_max": 48307}}
    assert zone.stats == {"nr_free_pages": 772915, "nr_free_pages_blocks": 770048}
    assert (zone.start_pfn, zone.node_unreclaimable, zone.vm_stats_threshold) == (4096, 0, {0: 24})


# --- vmstat, meminfo --------------------------------------------------------------------------


def test_vmstat_and_meminfo_values(traces: Path) -> None:
    vmstat = read_vmstat(traces / "mixed-small/start.vmstat")
    assert vmstat["nr_free_pages"] == 91531 and vmstat["numa_hit"] == 25071
    meminfo = read_meminfo(traces / "mixed-small/start.meminfo")
    assert meminfo["MemTotal"] == 466136 and meminfo["MemFree"] == 366124
    assert meminfo["HugePages_Total"] == 0 and meminfo["Hugepagesize"] == 2048
    assert meminfo["VmallocTotal"] == 13743895347199


@pytest.mark.parametrize(
    ("parser", "text", "where"),
    [
        (parse_vmstat, "nr_free_pages 12\nnr_bogus\n", "vmstat:2:"),
        (parse_vmstat, "nr_free_pages twelve\n", "vmstat:1:"),
        (parse_vmstat, "", "vmstat: empty"),
        (parse_meminfo, "MemTotal:   12 kB\nMemFree   3 kB\n", "meminfo:2:"),
        (parse_meminfo, "MemTotal:   1x2 kB\n", "meminfo:1:"),
    ],
)
def test_vmstat_meminfo_malformed(parser, text: str, where: str) -> None:
    with pytest.raises(InputError, match=re.escape(where)):
        parser(text)


# --- kpageflags -------------------------------------------------------------------------------


def test_kpageflags_constants() -> None:
    assert KPF_BUDDY == 10 and KPF_NAMES[10] == "buddy" and KPF_NAMES[26] == "pgtable"
    assert KPF_NAMES[22] == "thp" and KPF_RESERVED == 32


def test_kpageflags_buddy_pages_equal_free_pages(traces: Path) -> None:
    """On 6.1 every page of a free block has KPF_BUDDY: mixed-small's start snapshot, read
    with no allocation between the reads, counts exactly nr_free_pages."""
    flags = load_kpageflags(traces / "mixed-small/start.kpageflags.gz")
    assert flags.dtype == np.uint64 and len(flags) == 131072  # 512 MiB of pfns from pfn 0
    assert int(page_flag(flags, KPF_BUDDY).sum()) == 91531
    assert page_flag(flags, KPF_RESERVED)[:256].all()  # the first MiB is reserved
    free = buddy_pages(flags)
    assert free.min() >= 256 and free.max() < 4096 + 126941


def _moved_pages(trace: Path, begin: str, end: str) -> int:
    """Pages the buddy lists gained or lost (zone_locked takes, pcpu_drain returns) between two
    kcapture markers of a trace: what can separate two snapshot files read at other instants."""
    moved, inside = 0, False
    with gzip.open(trace, "rt") as f:
        for line in f:
            if f"kcapture: {begin}" in line:
                inside = True
            elif f"kcapture: {end}" in line:
                return moved
            elif inside and ("mm_page_alloc_zone_locked:" in line or "mm_page_pcpu_drain:" in line):
                moved += 1 << int(re.search(r" order=(\d+)", line).group(1))
    raise AssertionError(f"marker {end!r} not found")


@pytest.mark.parametrize("bundle", ("frag-a", "numa-frag"))
def test_kpageflags_buddy_pages_within_the_trace_window(traces: Path, bundle: str) -> None:
    """kpageflags is read after buddyinfo: the difference is at most what the trace moved
    between the buddyinfo and kpageflags markers (31 and 62 here: one pcp refill or two)."""
    flags = load_kpageflags(traces / bundle / "start.kpageflags.gz")
    buddyinfo = read_buddyinfo(traces / bundle / "start.buddyinfo")
    nr_free = sum(pages(counts) for counts in buddyinfo.values())
    diff = abs(int(page_flag(flags, KPF_BUDDY).sum()) - nr_free)
    moved = _moved_pages(traces / bundle / "trace.txt.gz", "start.buddyinfo begin",
                         "start.kpageflags end")
    assert 0 < diff <= moved


def test_kpageflags_plain_file_and_bad_length(tmp_path: Path) -> None:
    values = np.array([0, 1 << KPF_BUDDY, 1 << 12 | 1 << 5], dtype="<u8")
    plain = tmp_path / "kpf"
    plain.write_bytes(values.tobytes())
    assert load_kpageflags(plain).tolist() == values.tolist()
    assert buddy_pages(load_kpageflags(plain)).tolist() == [1]
    plain.write_bytes(values.tobytes()[:-1])
    with pytest.raises(InputError, match="not a whole number of u64"):
        load_kpageflags(plain)
    corrupt = tmp_path / "kpf.gz"
    corrupt.write_bytes(gzip.compress(values.tobytes())[:-12])
    with pytest.raises(InputError, match="corrupt gzip"):
        load_kpageflags(corrupt)


# --- ringstats, sysctl, numa ------------------------------------------------------------------


def test_ringstats_match_trace_header(traces: Path) -> None:
    stats = open_bundle(traces / "mixed-small").ringstats
    assert stats is not None and sorted(stats) == [0, 1]
    assert (stats[0].entries, stats[0].overrun, stats[0].oldest_event_ts) == (102264, 0, 3.658144)
    with gzip.open(traces / "mixed-small/trace.txt.gz", "rt") as f:
        header = "".join(next(f) for _ in range(3))
    in_buffer = int(re.search(r"entries-in-buffer/entries-written: (\d+)/", header).group(1))
    assert sum(s.entries for s in stats.values()) == in_buffer == 158986


def test_ringstats_trace_cmd_layout_and_errors() -> None:
    stats = parse_ringstats("CPU: 3\nentries: 5\noverrun: 7\ncommit overrun: 1\n"
                            "dropped events: 2\nnew counter: 9\n")
    assert stats[3].overrun == 7 and stats[3].lost == 10
    with pytest.raises(InputError, match=r"ringstats:1:"):
        parse_ringstats("entries: 5\n")
    with pytest.raises(InputError, match=r"ringstats:3: bad value"):
        parse_ringstats("== /sys/kernel/tracing/per_cpu/cpu0\nentries: 5\noverrun: lots\n")


def test_sysctl_and_numa_files() -> None:
    text = "vm.min_free_kbytes = 67584\nvm.lowmem_reserve_ratio = 256\t256\t32\t0\n"
    assert parse_sysctl(text) == {"vm.min_free_kbytes": "67584",
                                  "vm.lowmem_reserve_ratio": "256 256 32 0"}
    assert parse_cpulist("0-2,5,7-8") == [0, 1, 2, 5, 7, 8] and parse_cpulist("") == []
    assert parse_numa("node0 0-1\nnode1 2-3\nnode2\n") == (0, 0, 1, 1)
    with pytest.raises(InputError, match=r"numa:2:"):
        parse_numa("node0 0-1\ncpu2 node1\n")
    with pytest.raises(InputError, match="not numbered 0..N-1"):
        parse_numa("node0 0\nnode1 2\n")


# --- bundles ----------------------------------------------------------------------------------


def test_open_bundle_mixed_small(traces: Path) -> None:
    b = open_bundle(traces / "mixed-small")
    assert b.name == "mixed-small"
    assert b.trace_path.name == "trace.txt.gz"
    assert [p.name for p in b.trace_paths] == ["trace.txt.gz", "trace.dat.gz"]
    assert b.capture["cpus"] == 2 and b.capture["mem_mb"] == 512
    assert b.kernel_release == "6.1.0-56-amd64"
    assert b.cmdline is not None and "kc.workload=mixed" in b.cmdline
    assert b.thp == "never" and b.lost_events == 0
    assert b.sysctl is None and b.cpu_to_node is None
    assert b.start.buddyinfo is not None and b.end.zoneinfo is not None
    assert b.start.kpageflags_path is not None and b.start._kpageflags is None  # lazy
    assert len(b.start.kpageflags()) == 131072
    assert b.end.vmstat is not None and b.end.vmstat["nr_free_pages"] == 90532


@pytest.mark.parametrize("bundle", BUNDLES)
def test_open_bundle_every_snapshot(traces: Path, bundle: str) -> None:
    b = open_bundle(traces / bundle)
    for snap in (b.start, b.end):
        assert not snap.empty
        assert None not in (snap.buddyinfo, snap.pagetypeinfo, snap.zoneinfo, snap.vmstat,
                            snap.meminfo, snap.kpageflags_path)


def _copy_bundle(traces: Path, tmp_path: Path, files: list[str]) -> Path:
    dest = tmp_path / "bundle"
    dest.mkdir()
    for name in files:
        shutil.copy(traces / "mixed-small" / name, dest / name)
    return dest


def test_open_bundle_without_trace(tmp_path: Path, traces: Path) -> None:
    dest = _copy_bundle(traces, tmp_path, ["start.buddyinfo", "capture.json"])
    with pytest.raises(InputError, match=r"no trace file .* in this bundle directory"):
        open_bundle(dest)
    with pytest.raises(InputError, match="not a directory"):
        open_bundle(tmp_path / "missing")


def test_open_bundle_partial(tmp_path: Path, traces: Path) -> None:
    """Only a trace.dat and a start buddyinfo: everything else is None, not an error."""
    dest = _copy_bundle(traces, tmp_path, ["trace.dat.gz", "start.buddyinfo"])
    b = open_bundle(dest)
    assert b.trace_path.name == "trace.dat.gz" and b.capture == {} and b.ringstats is None
    assert b.start.buddyinfo is not None and b.start.zoneinfo is None
    assert b.end.empty and b.end.kpageflags() is None and b.uname is None


def test_open_bundle_any_trace_name(tmp_path: Path) -> None:
    (tmp_path / "trace-2024.log").write_text("# tracer: nop\n")
    assert open_bundle(tmp_path).trace_path.name == "trace-2024.log"


@pytest.mark.parametrize(
    ("name", "damage", "where"),
    [
        ("start.buddyinfo", lambda t: t + "Node 0, zone\n", "start.buddyinfo:3:"),
        ("end.zoneinfo", lambda t: t.replace("  pagesets", "  pagesets?!", 1), "end.zoneinfo:"),
        ("start.vmstat", lambda t: "garbage garbage garbage\n" + t, "start.vmstat:1:"),
        ("capture.json", lambda t: t[:-5], "capture.json:1: invalid JSON"),
        ("ringstats", lambda t: t.replace("entries: 102264", "entries: many"), "ringstats:2:"),
    ],
)
def test_open_bundle_malformed_file_names_file_and_line(
    tmp_path: Path, traces: Path, name: str, damage, where: str
) -> None:
    files = ["trace.dat.gz", "start.buddyinfo", "end.zoneinfo", "start.vmstat", "capture.json",
             "ringstats"]
    dest = _copy_bundle(traces, tmp_path, files)
    target = dest / name
    target.chmod(0o644)
    target.write_text(damage(target.read_text()))
    with pytest.raises(InputError) as info:
        open_bundle(dest)
    assert str(dest / name) in str(info.value) and where in str(info.value)
