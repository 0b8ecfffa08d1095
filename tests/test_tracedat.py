"""replay.trace.tracedat: trace-cmd's binary trace.dat read natively.

Real captures: traces/mixed-small and traces/frag-a (trace.dat v7, zstd sections, gzip file).
Small fixtures in tests/data (see tests/data/make_tracedat_fixtures.py): the first 30 pages per
CPU of mixed-small as version 6 (gzip), v7 without compression (zstd file) and v7 with zlib.
Synthetic files built below cover what the captures do not: lost pages, failed allocations,
time extends, absolute stamps, padding, big-endian, unknown pids and corrupt pages.
"""

from __future__ import annotations

import gzip
import io
import re
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from replay.errors import InputError
from replay.trace.schema import (
    COMPACTION_EVENT_NAMES,
    EVENT_NAMES,
    EVENTS_SCHEMA,
    IRQF_BH_OFF,
    IRQF_HARDIRQ,
    IRQF_IRQS_OFF,
    IRQF_NEED_RESCHED,
    IRQF_NMI,
    IRQF_PREEMPT_RESCHED,
    IRQF_PRESENT,
    IRQF_SOFTIRQ,
    KMEM_EVENT_NAMES,
    LOST_SCHEMA,
    MARKERS_SCHEMA,
)
from replay.trace.tracedat import (
    eval_c_constant,
    irq_flags_from_trace_flags,
    looks_like_tracedat,
    print_fmt_value,
    read_tracedat,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
MIXED = ROOT / "traces/mixed-small"
FRAG = ROOT / "traces/frag-a"

# Counts from the text trace of the same capture:
#   zcat traces/<bundle>/trace.txt.gz | grep -c ' <event>: '   (tracing_mark_write for markers)
MIXED_COUNTS = {
    "mm_page_alloc": 32130,
    "mm_page_free": 31304,
    "mm_page_free_batched": 30012,
    "mm_page_alloc_zone_locked": 33093,
    "mm_page_pcpu_drain": 32421,
    "mm_page_alloc_extfrag": 2,
}
FRAG_COUNTS = {
    "mm_page_alloc": 109448,
    "mm_page_free": 64745,
    "mm_page_free_batched": 58356,
    "mm_page_alloc_zone_locked": 106007,
    "mm_page_pcpu_drain": 61533,
    "mm_page_alloc_extfrag": 11,
    "mm_compaction_kcompactd_sleep": 1,  # grep -c mm_compaction_ trace.txt
}
# Sum of every pfn=0x... in the text:
#   zcat trace.txt.gz | grep -o 'pfn=0x[0-9a-f]*' | awk -F0x '{s+=strtonum("0x"$2)} END {print s}'
MIXED_PFN_SUM = 4568825519
FRAG_PFN_SUM = 20449408711
# The 30-page cut of mixed-small, counted with `trace-cmd report -i FILE | grep -c ' <event>:'`.
CUT_COUNTS = {
    "mm_page_alloc": 2491,
    "mm_page_free": 664,
    "mm_page_free_batched": 648,
    "mm_page_alloc_zone_locked": 2294,
    "mm_page_pcpu_drain": 703,
}
CUT_FILES = ("mixed-small-30p.v6.dat.gz", "mixed-small-30p.v7-none.dat.zst",
             "mixed-small-30p.v7-zlib.dat")


@pytest.fixture(scope="module")
def mixed():
    return read_tracedat(MIXED / "trace.dat.gz")


@pytest.fixture(scope="module")
def cut_reference():
    return read_tracedat(DATA / CUT_FILES[0])


def plain(table):
    """`table` with dictionary columns cast to strings (dictionaries differ between files)."""
    return table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type)
                                 else f for f in table.schema]))


def kind_counts(table) -> dict[str, int]:
    counts = pc.value_counts(table["event"].cast("string")).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


# ----------------------------------------------------------------------------------------------
# Real captures against their text traces
# ----------------------------------------------------------------------------------------------


def test_mixed_small_counts_and_values(mixed):
    stats = mixed.stats
    assert mixed.events.schema == EVENTS_SCHEMA
    assert mixed.markers.schema == MARKERS_SCHEMA
    assert mixed.lost.schema == LOST_SCHEMA
    assert kind_counts(mixed.events) == MIXED_COUNTS
    assert stats.events_by_kind == MIXED_COUNTS
    assert stats.events == sum(MIXED_COUNTS.values())
    assert stats.markers == 24 and mixed.markers.num_rows == 24
    assert stats.lines == stats.events + stats.markers == 158986  # entries-written in the text
    assert stats.layout == "trace.dat" and stats.compression == "gzip"
    assert stats.cpus == 2 and stats.kernel_release == "6.1.0-56-amd64"
    assert stats.error is None and not stats.bad_lines and stats.lost_events == 0
    assert pc.sum(mixed.events["pfn"]).as_py() == MIXED_PFN_SUM
    # first line: init-1 [001] ..... 3.649648: mm_page_alloc: ... pfn=0x1a2e order=1 ...
    first = mixed.events.slice(0, 1).to_pylist()[0]
    assert first["ts_ns"] == 3649647861 and (first["ts_ns"] + 500) // 1000 == 3649648
    assert (first["cpu"], first["pid"], first["comm"], first["pfn"], first["order"]) == (
        1, 1, "init", 0x1A2E, 1)
    assert first["gfp_text"] == "GFP_KERNEL_ACCOUNT|__GFP_ZERO" and first["tgid"] is None
    # last event: cat-167 [000] ..... 5.182460: mm_page_free: ... pfn=0x1023a order=0
    last = mixed.events.slice(mixed.events.num_rows - 1).to_pylist()[0]
    assert (last["ts_ns"] + 500) // 1000 == 5182460 and last["pfn"] == 0x1023A
    assert mixed.markers["text"][-1].as_py() == "kcapture: end.kpageflags end"
    seq = mixed.events["seq"].to_numpy()
    assert seq[0] == 1 and np.all(np.diff(seq) > 0)
    assert np.all(np.diff(mixed.events["ts_ns"].to_numpy()) >= 0)


def test_frag_a_counts():
    data = read_tracedat(FRAG / "trace.dat.gz")
    assert kind_counts(data.events) == FRAG_COUNTS
    assert pc.sum(data.events["pfn"]).as_py() == FRAG_PFN_SUM
    assert data.stats.markers == 24 and data.stats.error is None
    assert not data.stats.other_events  # kcompactd's one sleep is a compaction row
    ts = data.events["ts_ns"].to_numpy()
    assert (ts[0] + 500) // 1000 == 2063333 and (ts[-1] + 500) // 1000 == 5360894
    extfrag = data.events.filter(pc.equal(data.events["event"].cast("string"),
                                          "mm_page_alloc_extfrag"))
    assert extfrag.num_rows == 11
    assert set(extfrag["pageblock_order"].to_pylist()) == {9}
    frag = extfrag["fragmenting"].to_numpy()
    assert np.array_equal(frag, (extfrag["fallback_order"].to_numpy() < 9).astype(np.int8))


TEXT_RE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<flags>\S{5})\s+"
    r"(?P<sec>\d+)\.(?P<usec>\d{6}):\s+(?P<event>\w+):\s(?P<body>.*)$")


# kernel/trace/trace_output.c trace_print_lat_fmt(): the first three irq-info characters.
IRQ_CHARS = (
    {".": 0, "X": 0, "d": IRQF_IRQS_OFF, "b": IRQF_BH_OFF, "D": IRQF_IRQS_OFF | IRQF_BH_OFF},
    {".": 0, "n": IRQF_NEED_RESCHED, "p": IRQF_PREEMPT_RESCHED,
     "N": IRQF_NEED_RESCHED | IRQF_PREEMPT_RESCHED},
    {".": 0, "s": IRQF_SOFTIRQ, "h": IRQF_HARDIRQ, "H": IRQF_HARDIRQ | IRQF_SOFTIRQ,
     "z": IRQF_NMI, "Z": IRQF_NMI | IRQF_HARDIRQ},
)


def text_head(path: Path, n: int) -> list[dict]:
    """The first n event/marker lines of a text trace (a plain `re` parse)."""
    rows = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            m = TEXT_RE.match(line)
            if m:
                rows.append(m.groupdict())
                if len(rows) == n:
                    break
    return rows


def test_mixed_small_matches_text_record_by_record(mixed):
    """The first 20000 records: same order, CPU, pid, comm, flags, time (us) and fields."""
    text = text_head(MIXED / "trace.txt.gz", 20000)
    events = mixed.events.slice(0, 20000).to_pylist()
    markers = {r["seq"]: r for r in mixed.markers.to_pylist()}
    by_seq = {r["seq"]: r for r in events}
    for seq, t in enumerate(text, start=1):
        if t["event"] == "tracing_mark_write":
            d = markers[seq]
            assert d["text"] == t["body"]
        else:
            d = by_seq[seq]
            assert d["event"] == t["event"]
            flags = t["flags"]
            expect = IRQF_PRESENT | sum(IRQ_CHARS[i][c] for i, c in enumerate(flags[:3]))
            assert d["irq_flags"] == expect
            assert d["preempt_depth"] == (0 if flags[3] == "." else int(flags[3], 16))
            assert d["migrate_disable"] == (0 if flags[4] == "." else int(flags[4], 16))
            fields = dict(re.findall(r"(\w+)=(\S+)", t["body"]))
            assert d["pfn"] == int(fields["pfn"], 16)
            assert d["order"] == int(fields.get("order", fields.get("alloc_order")))
            if "gfp_flags" in fields:
                assert d["gfp_text"] == fields["gfp_flags"]
            if "percpu_refill" in fields:
                assert d["percpu_refill"] == int(fields["percpu_refill"])
        assert (d["cpu"], d["pid"], d["comm"]) == (int(t["cpu"]), int(t["pid"]), t["comm"])
        assert (d["ts_ns"] + 500) // 1000 == int(t["sec"]) * 1_000_000 + int(t["usec"])


# ----------------------------------------------------------------------------------------------
# Version 6, v7 without compression, v7 zlib (tests/data)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CUT_FILES)
def test_cut_fixtures(name, cut_reference):
    data = read_tracedat(DATA / name)
    assert data.stats.events_by_kind == CUT_COUNTS
    assert data.stats.markers == 12 and data.stats.cpus == 2 and data.stats.error is None
    assert data.events.equals(cut_reference.events)
    assert data.markers.equals(cut_reference.markers)
    ts = data.events["ts_ns"].to_numpy()
    assert (ts[0], ts[-1]) == (3649647861, 4203889221)
    assert pc.sum(data.events["pfn"]).as_py() == 171594079


def test_cut_fixture_is_a_prefix_of_the_full_capture(mixed, cut_reference):
    """The first records of the 30-page cut are the full capture's first records."""
    n = 2000
    assert plain(cut_reference.events.slice(0, n)).equals(plain(mixed.events.slice(0, n)))


def test_sources_path_bytes_stream(cut_reference):
    raw = gzip.decompress((DATA / CUT_FILES[0]).read_bytes())
    assert looks_like_tracedat(raw)
    from_bytes = read_tracedat(raw)
    assert from_bytes.events.equals(cut_reference.events)
    assert from_bytes.stats.compression == "none" and from_bytes.stats.source == "<bytes>"
    assert read_tracedat(io.BytesIO(raw)).events.equals(cut_reference.events)
    assert read_tracedat(str(DATA / CUT_FILES[0])).stats.compression == "gzip"


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def test_truncated_v7_reads_what_it_can():
    full = gzip.decompress((MIXED / "trace.dat.gz").read_bytes())
    data = read_tracedat(full[:1_200_000])  # inside CPU 0's compressed data; BUFFER option lost
    assert 0 < data.stats.events < sum(MIXED_COUNTS.values())
    assert "truncated" in data.stats.error and "1677028" in data.stats.error
    assert data.events["seq"][0].as_py() == 1
    with pytest.raises(InputError, match="truncated"):
        read_tracedat(full[:1_200_000], strict=True)


def test_truncated_v6_reads_what_it_can(cut_reference):
    raw = gzip.decompress((DATA / CUT_FILES[0]).read_bytes())
    cut = len(raw) - 100_000  # inside CPU 1's pages
    data = read_tracedat(raw[:cut])
    assert 0 < data.stats.lines < cut_reference.stats.lines
    assert data.stats.error.startswith(f"the trace.dat is truncated at byte {cut}")
    assert "CPU 1" in data.stats.error
    assert not data.stats.bad_lines  # a cut page is truncation, not corruption
    cpu0 = cut_reference.events.filter(pc.equal(cut_reference.events["cpu"], 0))
    assert data.events.filter(pc.equal(data.events["cpu"], 0))["pfn"].equals(cpu0["pfn"])


def test_truncated_gzip():
    gz = (MIXED / "trace.dat.gz").read_bytes()
    data = read_tracedat(gz[: len(gz) // 2])
    assert data.stats.error.startswith("the gzip stream is truncated")
    assert data.events.num_rows == 0


def test_truncated_metadata_sets_error():
    raw = gzip.decompress((DATA / CUT_FILES[0]).read_bytes())
    data = read_tracedat(raw[:1000])
    assert data.events.num_rows == 0
    assert data.stats.error == ("the trace.dat ends at offset 481 inside the ftrace event "
                                "formats (ftrace format)")
    with pytest.raises(InputError, match="ftrace event formats"):
        read_tracedat(raw[:1000], strict=True)


@pytest.mark.parametrize("junk", [b"", b"hello world\n", b"# tracer: nop\n" * 10,
                                  bytes(range(256)) * 4])
def test_junk_is_not_a_trace_dat(junk):
    with pytest.raises(InputError, match="is not a trace-cmd trace.dat file"):
        read_tracedat(junk)


def test_unsupported_version_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="version '9' is not supported"):
        read_tracedat(b"\x17\x08\x44tracing9\0" + bytes(20))
    with pytest.raises(InputError, match="cannot read"):
        read_tracedat(tmp_path / "missing.dat")
    bad = tmp_path / "junk.dat"
    bad.write_bytes(b"not a trace")
    with pytest.raises(InputError, match=r"junk\.dat is not a trace-cmd trace\.dat file"):
        read_tracedat(bad)


# ----------------------------------------------------------------------------------------------
# Synthetic version 6 files: every record type, lost pages, failed allocations, endianness
# ----------------------------------------------------------------------------------------------

COMMON = ("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
          "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
          "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
          "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n")
FORMATS = {
    "print": (5, "ftrace", "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n"
              "\tfield:char buf[];\toffset:16;\tsize:0;\tsigned:1;\n",
              '"%ps: %s", (void *)REC->ip, REC->buf'),
    "mm_page_alloc": (547, "kmem", "\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;\n"
                      "\tfield:unsigned int order;\toffset:16;\tsize:4;\tsigned:0;\n"
                      "\tfield:unsigned long gfp_flags;\toffset:24;\tsize:8;\tsigned:0;\n"
                      "\tfield:int migratetype;\toffset:32;\tsize:4;\tsigned:1;\n",
                      '"page=%p pfn=0x%lx order=%d migratetype=%d gfp_flags=%s", REC->pfn'),
    "mm_page_free_batched": (548, "kmem",
                             "\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;\n",
                             '"page=%p pfn=0x%lx order=0", REC->pfn, REC->pfn'),
    "mm_page_alloc_extfrag": (
        544, "kmem", "\tfield:unsigned long pfn;\toffset:8;\tsize:8;\tsigned:0;\n"
        "\tfield:int alloc_order;\toffset:16;\tsize:4;\tsigned:1;\n"
        "\tfield:int fallback_order;\toffset:20;\tsize:4;\tsigned:1;\n"
        "\tfield:int alloc_migratetype;\toffset:24;\tsize:4;\tsigned:1;\n"
        "\tfield:int fallback_migratetype;\toffset:28;\tsize:4;\tsigned:1;\n"
        "\tfield:int change_ownership;\toffset:32;\tsize:4;\tsigned:1;\n",
        '"page=%p pfn=0x%lx alloc_order=%d fallback_order=%d pageblock_order=%d '
        'alloc_migratetype=%d fallback_migratetype=%d fragmenting=%d change_ownership=%d", '
        "(((struct page *)vmemmap_base) + (REC->pfn)), REC->pfn, REC->alloc_order, "
        "REC->fallback_order, (((unsigned int)((21 - 12))) < ((unsigned int)(11 - 1)) ? "
        "((unsigned int)((21 - 12))) : ((unsigned int)(11 - 1))), REC->alloc_migratetype, "
        "REC->fallback_migratetype, REC->fallback_order < (((unsigned int)((21 - 12))) < "
        "((unsigned int)(11 - 1)) ? ((unsigned int)((21 - 12))) : ((unsigned int)(11 - 1))), "
        "REC->change_ownership"),
    "mm_compaction_kcompactd_sleep": (600, "compaction",
                                      "\tfield:int nid;\toffset:8;\tsize:4;\tsigned:1;\n",
                                      '"nid=%d", REC->nid'),
}
HEADER_PAGE = ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
               "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
               "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
               "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n")
HEADER_EVENT = ("# compressed entry header\n\ttype_len    :    5 bits\n"
                "\ttime_delta  :   27 bits\n\tarray       :   32 bits\n\n"
                "\tpadding     : type == 29\n\ttime_extend : type == 30\n"
                "\ttime_stamp : type == 31\n\tdata max type_len  == 28\n")
PAGE = 4096


class Synth:
    """Builds ring-buffer pages and a v6 trace.dat around them, in either byte order."""

    def __init__(self, endian: str = "<") -> None:
        self.e = endian

    def word(self, type_len: int, delta: int) -> bytes:
        value = (type_len << 27 | delta) if self.e == ">" else (delta << 5 | type_len)
        return struct.pack(self.e + "I", value)

    def u32(self, value: int) -> bytes:
        return struct.pack(self.e + "I", value)

    def event(self, name: str, delta: int, pid: int, *fields: int, flags: int = 0,
              preempt: int = 0, big: bool = False) -> bytes:
        """A data record of event `name`; fields are (offset-ordered) u64/i32 values."""
        ident = FORMATS[name][0]
        payload = struct.pack(self.e + "HBBi", ident, flags, preempt, pid)
        if name == "print":
            text = fields[0].encode() if isinstance(fields[0], str) else b""
            payload += struct.pack(self.e + "Q", 0xFFFFFFFF81000000) + text + b"\0"
        elif name == "mm_page_alloc":
            pfn, order, gfp, mt = fields
            payload += struct.pack(self.e + "QIIQi", pfn, order, 0, gfp, mt)
        elif name == "mm_page_free_batched":
            payload += struct.pack(self.e + "Q", fields[0])
        elif name == "mm_page_alloc_extfrag":
            payload += struct.pack(self.e + "Q5i", *fields)
        else:
            payload += struct.pack(self.e + "i", *fields)
        payload += b"\0" * (-len(payload) % 4)
        if big or len(payload) > 28 * 4:  # type_len 0: length in array[0]
            return self.word(0, delta) + self.u32(len(payload) + 4) + payload
        return self.word(len(payload) // 4, delta) + payload

    def extend(self, delta: int) -> bytes:
        return self.word(30, delta & 0x7FFFFFF) + self.u32(delta >> 27)

    def absolute(self, ts: int) -> bytes:
        return self.word(31, ts & 0x7FFFFFF) + self.u32((ts >> 27) & 0xFFFFFFFF)

    def padding(self, delta: int, total: int) -> bytes:
        """A discarded event: padding with a non-zero delta, `total` bytes long."""
        return self.word(29, delta) + self.u32(total - 4) + b"\0" * (total - 8)

    def page(self, ts: int, records: list[bytes], lost: int | None = None,
             stored: bool = True, commit: int | None = None) -> bytes:
        body = b"".join(records)
        flags = 0
        tail = b""
        if lost is not None:
            flags = 1 << 31
            if stored:
                flags |= 1 << 30
                tail = struct.pack(self.e + "Q", lost)
        size = len(body) if commit is None else commit
        page = struct.pack(self.e + "QQ", ts, size | flags) + body + tail
        return page + self.word(29, 0) + b"\0" * (PAGE - len(page) - 4)

    def file(self, cpus: list[list[bytes]], cmdlines: str = "1 init\n42 worker\n",
             uname: str = "Linux host 6.1.0-test x86_64",
             options: tuple[tuple[int, str], ...] = ()) -> bytes:
        e = self.e
        out = b"\x17\x08\x44tracing6\0" + bytes([self.e == ">", 8]) + struct.pack(e + "I", PAGE)
        out += b"header_page\0" + struct.pack(e + "Q", len(HEADER_PAGE)) + HEADER_PAGE.encode()
        out += b"header_event\0" + struct.pack(e + "Q", len(HEADER_EVENT))
        out += HEADER_EVENT.encode()
        texts = {}
        for name, (ident, system, fields, fmt) in FORMATS.items():
            text = f"name: {name}\nID: {ident}\nformat:\n{COMMON}{fields}\nprint fmt: {fmt}\n"
            texts.setdefault(system, []).append(text.encode())
        ftrace = texts.pop("ftrace")
        out += struct.pack(e + "I", len(ftrace))
        out += b"".join(struct.pack(e + "Q", len(t)) + t for t in ftrace)
        out += struct.pack(e + "I", len(texts))
        for system, items in texts.items():
            out += system.encode() + b"\0" + struct.pack(e + "I", len(items))
            out += b"".join(struct.pack(e + "Q", len(t)) + t for t in items)
        out += struct.pack(e + "I", 0) + struct.pack(e + "I", 0)  # kallsyms, printk
        out += struct.pack(e + "Q", len(cmdlines)) + cmdlines.encode()
        out += struct.pack(e + "I", len(cpus)) + b"options  \0"
        for opt, text in ((5, uname), *options):
            out += struct.pack(e + "HI", opt, len(text) + 1) + text.encode() + b"\0"
        out += struct.pack(e + "H", 0) + b"flyrecord\0"
        data_at = (len(out) + 16 * len(cpus) + PAGE - 1) // PAGE * PAGE
        blobs = [b"".join(pages) for pages in cpus]
        at = data_at
        for blob in blobs:
            out += struct.pack(e + "QQ", at, len(blob))
            at += len(blob)
        return out + b"\0" * (data_at - len(out)) + b"".join(blobs)


def synthetic(endian: str) -> bytes:
    s = Synth(endian)
    t0 = 5_000_000_000
    cpu0 = [
        s.page(t0, [
            s.event("mm_page_alloc", 0, 1, 0x1000, 0, 0xCC0, 0, flags=0x81, preempt=0x23),
            s.extend(3_000_000_000),  # needs the extend: > 2**27 ns
            s.event("mm_page_alloc", 0, 42, 0xFFFFFFFFFFFFFFFF, 3, 0x42A20, 1),  # failed
            s.padding(7, 24),  # a discarded event: its delta still counts
            s.event("print", 10, 0, "hello marker\n"),
            s.event("mm_page_free_batched", 5, 99, 0x2000),  # pid 99 not in cmdlines
        ]),
        s.page(t0 + 4_000_000_000, [
            s.event("mm_page_alloc_extfrag", 0, 1, 0x3000, 2, 10, 0, 1, 1, big=True),
            s.event("mm_compaction_kcompactd_sleep", 1, 1, 0),
        ], lost=7),
    ]
    cpu1 = [
        s.page(t0, [s.event("mm_page_free_batched", 0, 1, 0x4000, flags=0x0C)]),  # tie: cpu0 1st
        s.page(t0 + 100, [s.absolute(t0 + 3_000_000_017),
                          s.event("mm_page_free_batched", 0, 1, 0x5000)],
               lost=0, stored=False),  # missed events, count not stored
    ]
    return s.file([cpu0, cpu1])


@pytest.mark.parametrize("endian", ["<", ">"])
def test_synthetic_records(endian):
    data = read_tracedat(synthetic(endian))
    stats = data.stats
    assert stats.error is None and not stats.bad_lines
    assert stats.kernel_release == "6.1.0-test" and stats.cpus == 2
    assert stats.lines == 8 and stats.events == 7 and stats.markers == 1
    assert stats.other_events == {}  # the compaction event is a row of its own
    rows = data.events.to_pylist()
    t0 = 5_000_000_000
    # Equal times go to the lower CPU first (seq 1/2, and the marker at seq 4 before seq 5);
    # the time extend, the discarded event's delta and the absolute stamp all count.
    assert [(r["seq"], r["cpu"], r["ts_ns"]) for r in rows] == [
        (1, 0, t0), (2, 1, t0), (3, 0, t0 + 3_000_000_000), (5, 1, t0 + 3_000_000_017),
        (6, 0, t0 + 3_000_000_022), (7, 0, t0 + 4_000_000_000), (8, 0, t0 + 4_000_000_001)]
    sleep = rows[-1]
    assert sleep["event"] == "mm_compaction_kcompactd_sleep" and sleep["node"] == 0
    assert sleep["pfn"] is None and sleep["order"] is None
    first, tie, failed = rows[0], rows[1], rows[2]
    assert first["event"] == "mm_page_alloc" and first["pfn"] == 0x1000
    assert first["gfp_text"] == "GFP_KERNEL" and first["gfp_flags"] == 0xCC0
    assert first["irq_flags"] == IRQF_PRESENT | IRQF_IRQS_OFF | IRQF_BH_OFF
    assert (first["preempt_depth"], first["migrate_disable"]) == (3, 2)
    assert first["comm"] == "init" and first["failed"] is False
    assert tie["irq_flags"] == IRQF_PRESENT | IRQF_NEED_RESCHED | IRQF_HARDIRQ
    assert tie["order"] == 0 and tie["migratetype"] is None  # free_batched prints order=0
    assert failed["pfn"] is None and failed["failed"] is True and failed["comm"] == "worker"
    assert failed["gfp_text"] == "GFP_ATOMIC|__GFP_NOWARN|__GFP_COMP" and failed["order"] == 3
    by_pfn = {r["pfn"]: r for r in rows}
    assert by_pfn[0x2000]["comm"] is None and by_pfn[0x2000]["pid"] == 99
    extfrag = by_pfn[0x3000]
    assert (extfrag["order"], extfrag["fallback_order"], extfrag["pageblock_order"],
            extfrag["migratetype"], extfrag["fallback_migratetype"], extfrag["fragmenting"],
            extfrag["change_ownership"]) == (2, 10, 9, 0, 1, 0, 1)
    assert extfrag["gfp_flags"] is None and extfrag["percpu_refill"] is None
    marker = data.markers.to_pylist()
    assert marker == [{"seq": 4, "ts_ns": t0 + 3_000_000_017, "cpu": 0, "pid": 0,
                       "comm": "<idle>", "text": "hello marker"}]
    assert data.lost.to_pylist() == [
        {"seq": 5, "cpu": 1, "events": None, "kind": "missed_page"},
        {"seq": 7, "cpu": 0, "events": 7, "kind": "missed_page"},
    ]
    assert stats.lost_events == 7 and stats.lost_by_cpu == {0: 7}


def test_synthetic_endianness_agrees():
    little, big = read_tracedat(synthetic("<")), read_tracedat(synthetic(">"))
    assert little.events.equals(big.events) and little.markers.equals(big.markers)


def test_corrupt_page_is_counted_and_strict_raises():
    s = Synth()
    good = s.page(1000, [s.event("mm_page_free_batched", 0, 1, 0x10)])
    bad = s.page(2000, [s.event("mm_page_free_batched", 0, 1, 0x20)], commit=PAGE)
    raw = s.file([[good, bad, good]])
    data = read_tracedat(raw)
    assert data.stats.bad_lines == {"ring-buffer page commit past the page end": 1}
    assert data.events["pfn"].to_pylist() == [0x10, 0x20, 0x10]  # records still well-formed
    with pytest.raises(InputError, match="commit past the page end"):
        read_tracedat(raw, strict=True)


def test_empty_trace_and_cpustat_drops():
    cpustat = "CPU: 1\nentries: 0\noverrun: 0\ncommit overrun: 2\nbytes: 0\n" \
              "dropped events: 40\nread events: 0\n"
    data = read_tracedat(Synth().file([[], []], options=((2, cpustat),)))
    assert data.events.num_rows == 0 and data.markers.num_rows == 0
    assert data.stats.error is None and data.stats.lines == 0 and data.stats.cpus == 2
    assert data.lost.to_pylist() == [{"seq": None, "cpu": 1, "events": 42, "kind": "dropped"}]
    assert data.stats.lost_events == 42 and data.stats.lost_by_cpu == {1: 42}


def test_unknown_event_id_is_counted():
    s = Synth()
    record = bytearray(s.event("mm_page_free_batched", 0, 1, 0x10))
    record[4:6] = struct.pack("<H", 999)
    data = read_tracedat(s.file([[s.page(0, [bytes(record)])]]))
    assert data.events.num_rows == 0 and data.stats.bad_lines == {"unknown event id": 1}


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def test_irq_flag_mapping():
    got = irq_flags_from_trace_flags(np.array([0x00, 0x01, 0x80, 0x81, 0x02, 0x24, 0x58]))
    assert got.tolist() == [0x80, 0x81, 0x82, 0x83, 0x80, 0x8C, 0xF0]


def test_print_fmt_constants():
    fmt = FORMATS["mm_page_alloc_extfrag"][3]
    assert print_fmt_value(fmt, "pageblock_order") == 9
    assert print_fmt_value(FORMATS["mm_page_free_batched"][3], "order") == 0
    assert print_fmt_value(fmt, "alloc_order") is None  # a REC-> field, not a constant
    assert eval_c_constant("(1 ? 2 : 3) + (4 << 1) * -1") == -6
    assert eval_c_constant("((unsigned int)(11 - 1))") == 10
    assert eval_c_constant("sizeof(long)") is None


def test_event_names_cover_schema():
    assert set(MIXED_COUNTS) == set(KMEM_EVENT_NAMES)
    assert set(EVENT_NAMES) == set(KMEM_EVENT_NAMES) | set(COMPACTION_EVENT_NAMES)
