"""The /proc snapshots of a capture bundle: buddyinfo, pagetypeinfo, zoneinfo, vmstat, meminfo,
kpageflags, plus the bundle's own files (capture.json, ringstats, uname, cmdline, thp).

Each parser takes the text and an optional `source` name used in error messages; each `read_*`
takes a path (plain or gzip, told by content). Malformed input raises `InputError` as
`source:line: reason`. Formats: mm/vmstat.c and fs/proc/*.c in Linux 6.1 (see
docs/kernel-6.1-page-allocator.md section 4).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from replay.errors import InputError

MAX_ORDER = 11  # orders 0..10 (include/linux/mmzone.h, 6.1: exclusive)
PAGETYPEINFO_CAP = 100000  # pagetypeinfo stops counting a list here and prints `>100000`

# include/uapi/linux/kernel-page-flags.h: bit numbers of /proc/kpageflags.
KPF_LOCKED = 0
KPF_ERROR = 1
KPF_REFERENCED = 2
KPF_UPTODATE = 3
KPF_DIRTY = 4
KPF_LRU = 5
KPF_ACTIVE = 6
KPF_SLAB = 7
KPF_WRITEBACK = 8
KPF_RECLAIM = 9
KPF_BUDDY = 10
KPF_MMAP = 11
KPF_ANON = 12
KPF_SWAPCACHE = 13
KPF_SWAPBACKED = 14
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
KPF_HUGE = 17
KPF_UNEVICTABLE = 18
KPF_HWPOISON = 19
KPF_NOPAGE = 20
KPF_KSM = 21
KPF_THP = 22
KPF_OFFLINE = 23
KPF_ZERO_PAGE = 24
KPF_IDLE = 25
KPF_PGTABLE = 26
# include/linux/kernel-page-flags.h: kernel-internal bits /proc/kpageflags also exports.
KPF_RESERVED = 32
KPF_MLOCKED = 33
KPF_MAPPEDTODISK = 34
KPF_PRIVATE = 35
KPF_PRIVATE_2 = 36
KPF_OWNER_PRIVATE = 37
KPF_ARCH = 38
KPF_UNCACHED = 39
KPF_SOFTDIRTY = 40
KPF_ARCH_2 = 41
KPF_NAMES: dict[int, str] = {
    value: name[4:].lower() for name, value in globals().items() if name.startswith("KPF_")
}

SNAPSHOT_FILES = ("buddyinfo", "pagetypeinfo", "zoneinfo", "vmstat", "meminfo", "kpageflags")
ZoneKey = tuple[int, str]  # (node, zone name), e.g. (0, "DMA32")

_NODE_ZONE = re.compile(r"Node\s+(\d+),\s*zone\s+(\S+)")


# ---------------------------------------------------------------------------------------------
# Reading files


def _fail(source: str, lineno: int | None, reason: str) -> InputError:
    """An InputError `source:line: reason` (or `source: reason` without a line)."""
    where = f"{source}:{lineno}" if lineno else source
    return InputError(f"{where}: {reason}")


def read_bytes(path: str | Path) -> bytes:
    """The decompressed bytes of a plain or gzip file (gzip told by its magic bytes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise _fail(str(path), None, f"corrupt gzip data: {exc}") from None
    return data


def read_text(path: str | Path) -> str:
    """The text of a plain or gzip file; undecodable bytes become U+FFFD (and fail to parse)."""
    return read_bytes(path).decode("utf-8", errors="replace")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for every non-blank line."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield lineno, line


def _ints(fields: list[str], source: str, lineno: int) -> list[int]:
    try:
        return [int(f) for f in fields]
    except ValueError:
        raise _fail(source, lineno, f"expected integers, got {' '.join(fields)!r}") from None


# ---------------------------------------------------------------------------------------------
# /proc/buddyinfo


def parse_buddyinfo(text: str, source: str = "buddyinfo") -> dict[ZoneKey, list[int]]:
    """{(node, zone): free blocks per order} from /proc/buddyinfo (any number of order columns).

    `Node 0, zone    DMA32      1      1      2 ...` -> {(0, "DMA32"): [1, 1, 2, ...]}.
    """
    out: dict[ZoneKey, list[int]] = {}
    for lineno, line in _lines(text):
        m = _NODE_ZONE.match(line)
        if not m:
            raise _fail(source, lineno, "not a `Node N, zone NAME counts...` line")
        counts = _ints(line[m.end():].split(), source, lineno)
        if not counts:
            raise _fail(source, lineno, "no per-order counts")
        key = (int(m.group(1)), m.group(2))
        if key in out:
            raise _fail(source, lineno, f"zone {key[0]}/{key[1]} appears twice")
        out[key] = counts
    if not out:
        raise _fail(source, None, "empty buddyinfo")
    return out


def read_buddyinfo(path: str | Path) -> dict[ZoneKey, list[int]]:
    """`parse_buddyinfo` of a file."""
    return parse_buddyinfo(read_text(path), str(path))


# ---------------------------------------------------------------------------------------------
# /proc/pagetypeinfo


@dataclass
class PageTypeInfo:
    """/proc/pagetypeinfo: free lists per migratetype and pageblock counts per type.

    `free[(node, zone)][type]` is the list length in blocks per order; a count the kernel printed
    as `>100000` is stored as 100000 and listed in `saturated` as (node, zone, type, order).
    `blocks[(node, zone)][type]` is the number of pageblocks of that type; `mixed` the
    "Number of mixed blocks" table (PAGE_OWNER kernels only, else empty).
    """

    pageblock_order: int
    pages_per_block: int
    free: dict[ZoneKey, dict[str, list[int]]] = field(default_factory=dict)
    blocks: dict[ZoneKey, dict[str, int]] = field(default_factory=dict)
    mixed: dict[ZoneKey, dict[str, int]] = field(default_factory=dict)
    saturated: set[tuple[int, str, str, int]] = field(default_factory=set)

    @property
    def migratetypes(self) -> list[str]:
        """Migratetype names in the kernel's order, as printed."""
        for per_type in self.free.values():
            return list(per_type)
        for per_type in self.blocks.values():
            return list(per_type)
        return []


_PTI_FREE = re.compile(r"Node\s+(\d+),\s*zone\s+(\S+),\s*type\s+(\S+)")
_PTI_HEADER_VALUE = re.compile(r"(Page block order|Pages per block):\s*(\S+)\s*$")


def _free_counts(fields: list[str], source: str, lineno: int) -> tuple[list[int], list[int]]:
    """Per-order counts, with the orders printed as `>100000` (saturated) listed apart."""
    counts: list[int] = []
    saturated: list[int] = []
    for order, f in enumerate(fields):
        if f.startswith(">"):
            saturated.append(order)
            f = f[1:]
        try:
            counts.append(int(f))
        except ValueError:
            raise _fail(source, lineno, f"bad free count {f!r}") from None
    return counts, saturated


def parse_pagetypeinfo(text: str, source: str = "pagetypeinfo") -> PageTypeInfo:
    """Parse /proc/pagetypeinfo (one or several nodes; `>100000` counts are capped)."""
    header: dict[str, int] = {}
    info = PageTypeInfo(pageblock_order=-1, pages_per_block=-1)
    table: dict[ZoneKey, dict[str, int]] | None = None
    types: list[str] = []
    for lineno, line in _lines(text):
        if m := _PTI_HEADER_VALUE.match(line):
            value = _ints([m.group(2)], source, lineno)[0]
            if header.setdefault(m.group(1), value) != value:
                raise _fail(source, lineno, f"{m.group(1)} differs between nodes")
        elif line.startswith("Free pages count per migrate type"):
            table = None
        elif line.startswith("Number of blocks type") or line.startswith("Number of mixed blocks"):
            table = info.blocks if line.startswith("Number of blocks") else info.mixed
            types = line.split()[4:]
        elif m := _PTI_FREE.match(line):
            counts, saturated = _free_counts(line[m.end():].split(), source, lineno)
            if not counts:
                raise _fail(source, lineno, "no per-order counts")
            key, mt = (int(m.group(1)), m.group(2)), m.group(3)
            info.free.setdefault(key, {})[mt] = counts
            info.saturated.update((key[0], key[1], mt, o) for o in saturated)
        elif (m := _NODE_ZONE.match(line)) and table is not None:
            counts = _ints(line[m.end():].split(), source, lineno)
            if len(counts) != len(types):
                raise _fail(source, lineno, f"{len(counts)} counts for {len(types)} types")
            table[(int(m.group(1)), m.group(2))] = dict(zip(types, counts, strict=True))
        else:
            raise _fail(source, lineno, "unrecognised pagetypeinfo line")
    if "Page block order" not in header or "Pages per block" not in header:
        raise _fail(source, None, "no `Page block order:` / `Pages per block:` header")
    info.pageblock_order = header["Page block order"]
    info.pages_per_block = header["Pages per block"]
    return info


def read_pagetypeinfo(path: str | Path) -> PageTypeInfo:
    """`parse_pagetypeinfo` of a file."""
    return parse_pagetypeinfo(read_text(path), str(path))


# ---------------------------------------------------------------------------------------------
# /proc/zoneinfo


class Pageset(NamedTuple):
    """One CPU's per-cpu pageset of a zone, as /proc/zoneinfo prints it."""

    count: int
    high: int
    batch: int


@dataclass
class ZoneInfo:
    """One zone of /proc/zoneinfo (mm/vmstat.c zoneinfo_show_print).

    An unpopulated zone (present == 0) prints only its watermarks and protection: `populated`
    is False and `start_pfn` None. `stats` holds the zone's vm counters (nr_free_pages, ...),
    `node_stats` the node's counters when the kernel printed them under this zone (its first
    populated one).
    """

    node: int
    name: str
    free: int = 0
    min: int = 0
    low: int = 0
    high: int = 0
    spanned: int = 0
    present: int = 0
    managed: int = 0
    promo: int | None = None
    boost: int | None = None
    cma: int | None = None
    protection: list[int] = field(default_factory=list)
    start_pfn: int | None = None
    pagesets: dict[int, Pageset] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    node_stats: dict[str, int] = field(default_factory=dict)
    vm_stats_threshold: dict[int, int] = field(default_factory=dict)
    pageset_extra: dict[int, dict[str, int]] = field(default_factory=dict)  # high_min, ... (6.7+)
    node_unreclaimable: int | None = None

    @property
    def populated(self) -> bool:
        """The kernel's populated_zone(): any present pages."""
        return self.present > 0

    @property
    def nr_free_pages(self) -> int:
        """The zone's NR_FREE_PAGES counter (falls back to `pages free`)."""
        return self.stats.get("nr_free_pages", self.free)

    @property
    def key(self) -> ZoneKey:
        """(node, zone name)."""
        return (self.node, self.name)


_ZI_FIELDS = {"min", "low", "high", "promo", "boost", "cma", "spanned", "present", "managed"}
_ZI_KV = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_ ]*?):?\s+(-?\d+)\s*$")
_ZI_PROTECTION = re.compile(r"^\s*protection:\s*\(([-\d,\s]*)\)\s*$")


class _ZoneinfoState:
    """Where the zoneinfo parser is: the current zone, section and CPU."""

    def __init__(self) -> None:
        self.zones: list[ZoneInfo] = []
        self.section = "head"  # head | node | zone | pagesets
        self.cpu: int | None = None
        self.pcp: dict[str, int] = {}


def _zoneinfo_value(st: _ZoneinfoState, key: str, value: int, source: str, lineno: int) -> None:
    """Store one `key value` line of the current zone according to the section."""
    zone = st.zones[-1]
    if key == "pages free":
        zone.free, st.section = value, "zone"
    elif key == "cpu":
        st.section, st.cpu, st.pcp = "pagesets", value, {}
    elif st.section == "pagesets" and key in ("count", "high", "batch"):
        st.pcp[key] = value
        if len(st.pcp) == 3 and st.cpu is not None:
            zone.pagesets[st.cpu] = Pageset(st.pcp["count"], st.pcp["high"], st.pcp["batch"])
    elif key == "vm stats threshold" and st.cpu is not None:
        zone.vm_stats_threshold[st.cpu] = value
    elif key == "start_pfn":
        zone.start_pfn = value
    elif key == "node_unreclaimable":
        zone.node_unreclaimable = value
    elif st.section == "pagesets" and st.cpu is not None:
        zone.pageset_extra.setdefault(st.cpu, {})[key] = value
    elif st.section == "node":
        zone.node_stats[key] = value
    elif key in _ZI_FIELDS and not zone.protection and "nr_free_pages" not in zone.stats:
        setattr(zone, key, value)
    elif st.section in ("zone", "pagesets"):
        zone.stats[key] = value
    else:
        raise _fail(source, lineno, f"{key!r} outside a zone's sections")


def parse_zoneinfo(text: str, source: str = "zoneinfo") -> list[ZoneInfo]:
    """Every zone of /proc/zoneinfo, populated or not, in file order."""
    st = _ZoneinfoState()
    for lineno, line in _lines(text):
        if m := _NODE_ZONE.match(line):
            if line[m.end():].strip():
                raise _fail(source, lineno, "text after the zone name")
            st.zones.append(ZoneInfo(node=int(m.group(1)), name=m.group(2)))
            st.section, st.cpu = "head", None
        elif not st.zones:
            raise _fail(source, lineno, "expected a `Node N, zone NAME` line first")
        elif line.strip() == "per-node stats":
            st.section = "node"
        elif line.strip() == "pagesets":
            st.section = "pagesets"
        elif m := _ZI_PROTECTION.match(line):
            fields = [f for f in m.group(1).replace(",", " ").split()]
            st.zones[-1].protection = _ints(fields, source, lineno)
        elif m := _ZI_KV.match(line):
            _zoneinfo_value(st, m.group(1).strip(), int(m.group(2)), source, lineno)
        else:
            raise _fail(source, lineno, "unrecognised zoneinfo line")
    if not st.zones:
        raise _fail(source, None, "no zones in zoneinfo")
    _check_zones(st.zones, source)
    return st.zones


def _check_zones(zones: list[ZoneInfo], source: str) -> None:
    """Reject a zoneinfo cut short: every populated zone needs its span and protection."""
    for z in zones:
        if not z.protection:
            raise _fail(source, None, f"zone {z.node}/{z.name} has no protection line (truncated?)")
        if z.populated and z.start_pfn is None:
            raise _fail(source, None, f"zone {z.node}/{z.name} has no start_pfn (truncated?)")


def read_zoneinfo(path: str | Path) -> list[ZoneInfo]:
    """`parse_zoneinfo` of a file."""
    return parse_zoneinfo(read_text(path), str(path))


# ---------------------------------------------------------------------------------------------
# /proc/vmstat, /proc/meminfo


def parse_vmstat(text: str, source: str = "vmstat") -> dict[str, int]:
    """{counter: value} from /proc/vmstat (`name value` per line)."""
    out: dict[str, int] = {}
    for lineno, line in _lines(text):
        fields = line.split()
        if len(fields) != 2:
            raise _fail(source, lineno, "expected `name value`")
        out[fields[0]] = _ints(fields[1:], source, lineno)[0]
    if not out:
        raise _fail(source, None, "empty vmstat")
    return out


def read_vmstat(path: str | Path) -> dict[str, int]:
    """`parse_vmstat` of a file."""
    return parse_vmstat(read_text(path), str(path))


_MEMINFO = re.compile(r"^([^:\s][^:]*):\s+(\d+)(?:\s+kB)?\s*$")


def parse_meminfo(text: str, source: str = "meminfo") -> dict[str, int]:
    """{field: value} from /proc/meminfo: kB fields in kB, counts (HugePages_*) as counts."""
    out: dict[str, int] = {}
    for lineno, line in _lines(text):
        m = _MEMINFO.match(line)
        if not m:
            raise _fail(source, lineno, "expected `Name:   value [kB]`")
        out[m.group(1)] = int(m.group(2))
    if not out:
        raise _fail(source, None, "empty meminfo")
    return out


def read_meminfo(path: str | Path) -> dict[str, int]:
    """`parse_meminfo` of a file."""
    return parse_meminfo(read_text(path), str(path))


# ---------------------------------------------------------------------------------------------
# /proc/kpageflags


def load_kpageflags(path: str | Path) -> np.ndarray:
    """/proc/kpageflags as a uint64 array indexed by pfn from 0 (raw little-endian u64s)."""
    data = read_bytes(path)
    if len(data) % 8:
        raise _fail(str(path), None, f"{len(data)} bytes is not a whole number of u64 entries")
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def page_flag(flags: np.ndarray, bit: int) -> np.ndarray:
    """Boolean array: which pfns have KPF bit `bit` set."""
    return (flags >> np.uint64(bit)) & np.uint64(1) != 0


def buddy_pages(flags: np.ndarray) -> np.ndarray:
    """The pfns with KPF_BUDDY set (on 6.1: every page of every free buddy block)."""
    return np.flatnonzero(page_flag(flags, KPF_BUDDY))


# ---------------------------------------------------------------------------------------------
# Bundle files: ringstats, capture.json, uname, cmdline, thp


@dataclass
class CpuRingStats:
    """One CPU's tracefs per_cpu/cpuN/stats: overruns and dropped events mean lost events."""

    cpu: int
    entries: int = 0
    overrun: int = 0
    commit_overrun: int = 0
    bytes: int = 0
    oldest_event_ts: float | None = None
    now_ts: float | None = None
    dropped_events: int = 0
    read_events: int = 0

    @property
    def lost(self) -> int:
        """Events the ring buffer lost on this CPU (overwritten, or dropped at commit)."""
        return self.overrun + self.commit_overrun + self.dropped_events


_RS_CPU = re.compile(r"^(?:==\s*\S*?cpu(\d+)\s*|CPU:\s*(\d+)\s*)$")
_RS_KV = re.compile(r"^\s*([a-z][a-z ]*[a-z]):\s*(\S+)\s*$")


def _ring_value(stats: CpuRingStats, key: str, value: str, source: str, lineno: int) -> None:
    name = key.replace(" ", "_")
    if not hasattr(stats, name) or name == "cpu":
        return  # a counter this version does not know: ignore, as the kernel adds some
    try:
        setattr(stats, name, float(value) if name.endswith("_ts") else int(value))
    except ValueError:
        raise _fail(source, lineno, f"bad value {value!r} for {key}") from None


def parse_ringstats(text: str, source: str = "ringstats") -> dict[int, CpuRingStats]:
    """{cpu: CpuRingStats} from `== .../per_cpu/cpuN` (or `CPU: N`) headed stats blocks."""
    out: dict[int, CpuRingStats] = {}
    current: CpuRingStats | None = None
    for lineno, line in _lines(text):
        if m := _RS_CPU.match(line.strip()):
            cpu = int(m.group(1) or m.group(2))
            current = out.setdefault(cpu, CpuRingStats(cpu))
        elif (m := _RS_KV.match(line)) and current is not None:
            _ring_value(current, m.group(1), m.group(2), source, lineno)
        else:
            raise _fail(source, lineno, "expected a `== .../cpuN` header or `name: value`")
    return out


def read_ringstats(path: str | Path) -> dict[int, CpuRingStats]:
    """`parse_ringstats` of a file."""
    return parse_ringstats(read_text(path), str(path))


def read_capture_json(path: str | Path) -> dict:
    """capture.json as a dict (InputError naming the line if it is not a JSON object)."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise _fail(str(path), exc.lineno, f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise _fail(str(path), None, "expected a JSON object")
    return data


def kernel_release(uname: str) -> str | None:
    """The kernel release from `uname -a` (its third word), e.g. '6.1.0-56-amd64'."""
    words = uname.split()
    return words[2] if len(words) >= 3 else None


def thp_mode(text: str) -> str | None:
    """The selected mode of /sys/kernel/mm/transparent_hugepage/enabled (or defrag):
    `[never]` -> 'never'."""
    m = re.search(r"\[([\w+]+)\]", text)
    return m.group(1) if m else (text.strip() or None)


def parse_sysctl(text: str, source: str = "sysctl") -> dict[str, str]:
    """{name: value} from `sysctl -a` style lines (`vm.min_free_kbytes = 67584`)."""
    out: dict[str, str] = {}
    for lineno, line in _lines(text):
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise _fail(source, lineno, "expected `name = value`")
        out[name.strip()] = " ".join(value.split())
    return out


def parse_cpulist(text: str) -> list[int]:
    """CPUs of a kernel cpulist such as '0-3,8,10-11' (empty for '')."""
    cpus: list[int] = []
    for part in filter(None, text.strip().split(",")):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def parse_numa(text: str, source: str = "numa") -> tuple[int, ...]:
    """cpu_to_node from `nodeN CPULIST` lines (/sys/devices/system/node/nodeN/cpulist)."""
    owner: dict[int, int] = {}
    for lineno, line in _lines(text):
        m = re.match(r"^node(\d+)\s*([\d,\-]*)\s*$", line.strip())
        if not m:
            raise _fail(source, lineno, "expected `nodeN CPULIST`, e.g. `node0 0-1`")
        for cpu in parse_cpulist(m.group(2)):
            owner[cpu] = int(m.group(1))
    if sorted(owner) != list(range(len(owner))):
        raise _fail(source, None, f"CPUs {sorted(owner)} are not numbered 0..N-1")
    return tuple(owner[c] for c in range(len(owner)))


# ---------------------------------------------------------------------------------------------
# Snapshots and bundles


@dataclass
class Snapshot:
    """One side (`start` or `end`) of a bundle; a file that is missing is None.

    kpageflags is large, so only its path is kept: `kpageflags()` loads it (once).
    """

    side: str
    buddyinfo: dict[ZoneKey, list[int]] | None = None
    pagetypeinfo: PageTypeInfo | None = None
    zoneinfo: list[ZoneInfo] | None = None
    vmstat: dict[str, int] | None = None
    meminfo: dict[str, int] | None = None
    kpageflags_path: Path | None = None
    _kpageflags: np.ndarray | None = field(default=None, repr=False, compare=False)

    def kpageflags(self) -> np.ndarray | None:
        """The kpageflags array (see `load_kpageflags`), or None without the file."""
        if self._kpageflags is None and self.kpageflags_path is not None:
            self._kpageflags = load_kpageflags(self.kpageflags_path)
        return self._kpageflags

    @property
    def empty(self) -> bool:
        """No snapshot file at all for this side."""
        return all(getattr(self, f) is None for f in SNAPSHOT_FILES[:-1]) and (
            self.kpageflags_path is None
        )


_SNAPSHOT_READERS = {
    "buddyinfo": read_buddyinfo,
    "pagetypeinfo": read_pagetypeinfo,
    "zoneinfo": read_zoneinfo,
    "vmstat": read_vmstat,
    "meminfo": read_meminfo,
}


def _existing(directory: Path, name: str) -> Path | None:
    """directory/name or directory/name.gz, whichever exists (plain first)."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_snapshot(directory: str | Path, side: str) -> Snapshot:
    """The `<side>.*` snapshot files of a bundle directory (missing ones are None)."""
    directory = Path(directory)
    snap = Snapshot(side=side)
    for name, reader in _SNAPSHOT_READERS.items():
        path = _existing(directory, f"{side}.{name}")
        if path is not None:
            setattr(snap, name, reader(path))
    snap.kpageflags_path = _existing(directory, f"{side}.kpageflags")
    return snap


def find_trace_files(directory: str | Path) -> list[Path]:
    """The bundle's trace files, best first (the same choice ingest makes)."""
    from replay.trace.sources import trace_files

    return trace_files(Path(directory))


@dataclass
class Bundle:
    """A capture directory: the trace, the start/end snapshots and the capture's metadata."""

    path: Path
    trace_path: Path
    trace_paths: list[Path]
    start: Snapshot
    end: Snapshot
    capture: dict = field(default_factory=dict)
    ringstats: dict[int, CpuRingStats] | None = None
    uname: str | None = None
    cmdline: str | None = None
    thp: str | None = None
    thp_defrag: str | None = None  # /sys/kernel/mm/transparent_hugepage/defrag's mode
    sysctl: dict[str, str] | None = None  # the `sysctl` file capture.sh writes (vm.*)
    cpu_to_node: tuple[int, ...] | None = None  # the `numa` file capture.sh writes

    @property
    def name(self) -> str:
        """The directory's name, e.g. 'mixed-small'."""
        return self.path.name

    @property
    def kernel_release(self) -> str | None:
        """The kernel release (third word of uname -a), e.g. '6.1.0-56-amd64'."""
        return kernel_release(self.uname) if self.uname else None

    @property
    def lost_events(self) -> int:
        """Events the ring buffer lost over all CPUs (0 without ringstats)."""
        return sum(s.lost for s in (self.ringstats or {}).values())


def _read_optional_text(directory: Path, name: str) -> str | None:
    path = _existing(directory, name)
    return read_text(path).strip() if path is not None else None


def open_bundle(directory: str | Path) -> Bundle:
    """Open a capture bundle directory (see traces/README.md for its layout)."""
    path = Path(directory)
    if not path.is_dir():
        raise InputError(f"{path}: not a directory (a bundle is a directory holding a trace)")
    traces = find_trace_files(path)
    if not traces:
        raise InputError(f"{path}: no trace file (trace.txt[.gz], trace.dat[.gz] or "
                         "perf.data[.gz]) in this bundle directory")
    capture_path = _existing(path, "capture.json")
    ring_path = _existing(path, "ringstats")
    thp = _read_optional_text(path, "thp")
    defrag = _read_optional_text(path, "thp_defrag")
    sysctl_path, numa_path = _existing(path, "sysctl"), _existing(path, "numa")
    return Bundle(
        path=path,
        trace_path=traces[0],
        trace_paths=traces,
        start=read_snapshot(path, "start"),
        end=read_snapshot(path, "end"),
        capture=read_capture_json(capture_path) if capture_path else {},
        ringstats=read_ringstats(ring_path) if ring_path else None,
        uname=_read_optional_text(path, "uname"),
        cmdline=_read_optional_text(path, "cmdline"),
        thp=thp_mode(thp) if thp is not None else None,
        thp_defrag=thp_mode(defrag) if defrag is not None else None,
        sysctl=parse_sysctl(read_text(sysctl_path), str(sysctl_path)) if sysctl_path else None,
        cpu_to_node=parse_numa(read_text(numa_path), str(numa_path)) if numa_path else None,
    )
