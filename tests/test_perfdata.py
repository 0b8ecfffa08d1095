"""perf.data read natively (replay/trace/perfdata.py): every record kind, call chains, symbols,
damaged input, and equality with `perf script` where perf is installed.

Inputs: traces/perf-small/perf.data.gz (`perf kmem --page record` of the bundle's run) and the
tiny real recordings in tests/data (tests/data/make_perfdata_fixtures.py says how each was
made). Expected numbers come from perf 6.1 on the same files:

    perf report --stats -i FILE             TOTAL events (= stats.lines), LOST_SAMPLES
    perf script -i FILE -F event | sort | uniq -c         samples by event
"""

from __future__ import annotations

import gzip
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from replay.errors import InputError
from replay.metrics.peers import caller_table
from replay.trace.ingest import ingest_to_parquet, read_parquet, read_trace
from replay.trace.perfdata import read_perfdata
from replay.trace.symbols import Symbols
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SMALL = ROOT / "traces/perf-small"
KALLSYMS = DATA / "kallsyms-6.1.0-56.gz"

# fixture -> (layout, samples by event, perf's TOTAL events)
FIXTURES = {
    "perf-kmem-record.data.gz": ("perf.data", {"mm_page_alloc": 62, "mm_page_free": 134}, 389),
    "perf-pipe.data.gz": ("perf.data (pipe)", {"mm_page_alloc": 67, "mm_page_free": 145}, None),
    "perf-pipe-z.data": ("perf.data (pipe)", {"mm_page_alloc": 111, "mm_page_free": 142}, None),
    "perf-lost.data.gz": ("perf.data", {"mm_page_alloc": 89, "mm_page_free": 90}, 379),
    "perf-one-event.data.gz": ("perf.data", {"mm_page_alloc": 63}, 256),
    "perf-compaction.data.gz": ("perf.data", {
        "mm_compaction_isolate_migratepages": 35, "mm_compaction_isolate_freepages": 202,
        "mm_compaction_migratepages": 16, "mm_compaction_begin": 2, "mm_compaction_end": 2,
        "mm_compaction_finished": 37, "mm_compaction_suitable": 2}, 489),
    "perf-z-head.data": ("perf.data", {"mm_page_alloc": 197, "mm_page_free": 82,
                                       "mm_page_free_batched": 77,
                                       "mm_page_alloc_zone_locked": 124}, 679),
}
WITH_CHAINS = {"perf-kmem-record.data.gz", "perf-pipe.data.gz", "perf-pipe-z.data",
               "perf-compaction.data.gz", "perf-z-head.data"}
PERF = shutil.which("perf")
needs_perf = pytest.mark.skipif(PERF is None, reason="perf is not installed: no perf script "
                                "to compare with")


@pytest.fixture(scope="module")
def small():
    return read_trace(SMALL / "perf.data.gz")


def frame(data) -> pl.DataFrame:
    return pl.from_arrow(data.events).with_columns(pl.col("event").cast(pl.Utf8),
                                                   pl.col("comm").cast(pl.Utf8)).sort("seq")


# ---------------------------------------------------------------------------------------------
# traces/perf-small


def test_perf_small_accounting(small):
    s = small.stats
    assert s.layout == "perf.data" and s.compression == "gzip" and s.error is None
    assert s.events_by_kind == {"mm_page_alloc": 35169, "mm_page_free": 31259}
    assert s.lines == 66854  # perf report --stats: TOTAL events
    assert s.lines == s.events + s.header_lines + s.lost_lines + s.bad_total + sum(
        s.other_events.values())
    assert (s.kernel_release, s.cpus) == ("6.1.0-56-amd64", 2)
    assert s.kernel_reloc == {"symbol": "_text", "address": 0xffffffff95800000}
    assert small.lost.num_rows == 0


def test_perf_small_first_sample(small):
    """perf script's first line: perf 129 [001] 5.484649331: kmem:mm_page_alloc:
    page=0xb6e2 pfn=0xb6e2 order=0 migratetype=0 gfp_flags=GFP_HIGHUSER|__GFP_ACCOUNT,
    then 7 kernel frames from ffffffff95ab653e and 7 user frames."""
    row = frame(small).row(0, named=True)
    assert (row["seq"], row["ts_ns"], row["cpu"], row["pid"], row["tgid"], row["comm"]) == (
        1, 5484649331, 1, 129, 129, "perf")
    assert (row["event"], row["pfn"], row["order"], row["migratetype"]) == (
        "mm_page_alloc", 0xb6e2, 0, 0)
    assert row["gfp_text"] == "GFP_HIGHUSER|__GFP_ACCOUNT"
    assert row["callchain"][0] == 0xffffffff95ab653e and len(row["callchain"]) == 7
    assert row["stack_id"] == 0
    assert row["irq_flags"] & 0x80 and row["preempt_depth"] == 1


def test_perf_small_comm_follows_exec(small):
    """pid 130 is perf's forked child: `perf-exec` until it execs memwork (83 samples)."""
    pid130 = frame(small).filter(pl.col("pid") == 130)
    runs = pid130.select(pl.col("comm").rle()).unnest("comm")
    assert runs.rows() == [(83, "perf-exec"), (20427, "memwork")]


def test_perf_small_order_is_perfs_not_sorted(small):
    """perf recorded 62 out-of-order events; perf script prints them where its ordered-events
    queue delivers them, so time goes backwards 25 times in its output (and in ours)."""
    ts = frame(small)["ts_ns"].to_numpy()
    assert int(np.count_nonzero(np.diff(ts) < 0)) == 25


def test_stack_ids_name_distinct_chains(small):
    df = frame(small).with_columns(pl.col("callchain").list.eval(pl.element().cast(pl.Utf8))
                                   .list.join(",").alias("key"))
    per_id = df.group_by("stack_id").agg(pl.col("key").n_unique())
    assert per_id["key"].max() == 1
    assert df["stack_id"].n_unique() == df["key"].n_unique() == 78
    first_seen = df.group_by("stack_id").agg(pl.col("seq").min()).sort("seq")["stack_id"]
    assert first_seen.to_list() == list(range(78))


def test_two_threads_read_what_one_reads(small, monkeypatch):
    """Large files are parsed in two parts at once; the parts join into the same table (the
    same stack ids, chains stored once across parts)."""
    from replay.trace import perfdata

    monkeypatch.setattr(perfdata, "PARALLEL_MIN_RECORDS", 20_000)
    two = perfdata.read_perfdata(SMALL / "perf.data.gz")
    assert two.events.equals(small.events)
    z = DATA / "perf-z-head.data"  # inflated records: parts are not contiguous in the file
    monkeypatch.setattr(perfdata, "PARALLEL_MIN_RECORDS", 200)
    parted = perfdata.read_perfdata(z)
    monkeypatch.setattr(perfdata, "PARALLEL_MIN_RECORDS", 10**9)
    assert parted.events.equals(perfdata.read_perfdata(z).events)


def test_bundle_prefers_text_and_reads_perfdata_alone(tmp_path):
    assert read_trace(SMALL).stats.layout == "ftrace"
    bundle = tmp_path / "perf-only"
    bundle.mkdir()
    for p in SMALL.iterdir():
        if p.name.startswith(("start.", "end.", "uname", "perf.data")):
            shutil.copy(p, bundle / p.name)
    data = read_trace(bundle)
    assert data.stats.layout == "perf.data" and data.stats.events == 66428


def test_parquet_keeps_call_chains(small, tmp_path):
    out = tmp_path / "small.parquet"
    ingest_to_parquet(SMALL / "perf.data.gz", out)
    back = read_parquet(out)
    assert back.events.column("callchain").equals(small.events.column("callchain"))
    assert back.events.column("stack_id").equals(small.events.column("stack_id"))
    assert back.stats.kernel_reloc == small.stats.kernel_reloc


# ---------------------------------------------------------------------------------------------
# every record kind


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture(name):
    layout, by_kind, total = FIXTURES[name]
    data = read_perfdata(DATA / name)
    s = data.stats
    assert s.error is None and not s.bad_lines
    assert s.layout == layout
    assert s.events_by_kind == by_kind
    if total is not None:
        assert s.lines == total
    assert s.lines == s.events + s.header_lines + s.lost_lines + sum(s.other_events.values())
    chains = data.events.column("callchain")
    if name in WITH_CHAINS:
        assert chains.null_count == 0
        assert all(a >= 0xffff800000000000 for a in chains.combine_chunks().flatten().to_pylist())
    else:
        assert chains.null_count == data.events.num_rows


def test_lost_records():
    """perf report --stats: 3 LOST records (46, 60 and 154 records on CPU 1) and LOST_SAMPLES
    of 225 (mm_page_alloc), 293 (mm_page_free) and 4 (the dummy side-band event)."""
    data = read_perfdata(DATA / "perf-lost.data.gz")
    rows = sorted((r["kind"], r["events"], r["cpu"]) for r in data.lost.to_pylist())
    assert rows == [("lost", 46, 1), ("lost", 60, 1), ("lost", 154, 1),
                    ("lost_samples", 4, 1), ("lost_samples", 225, 1), ("lost_samples", 293, 1)]
    assert data.stats.lost_events == 225 + 293
    assert data.stats.lost_by_cpu == {1: 518}
    assert all(r["seq"] is not None for r in data.lost.to_pylist())


def test_compaction_rows_and_chains():
    df = frame(read_perfdata(DATA / "perf-compaction.data.gz"))
    iso = df.filter(pl.col("event") == "mm_compaction_isolate_freepages")
    assert iso.height == 202
    assert iso.select(pl.col("start_pfn", "end_pfn", "nr_scanned", "nr_taken")
                      .null_count()).row(0) == (0, 0, 0, 0)
    assert (iso["end_pfn"] >= iso["start_pfn"]).all()
    begin = df.filter(pl.col("event") == "mm_compaction_begin")
    assert begin["sync"].to_list() == [1, 1]  # echo 1 > compact_memory compacts synchronously
    assert df["pfn"].null_count() == df.height
    assert df["stack_id"].n_unique() == 7


def test_compressed_pipe_equals_uncompressed_reading():
    """perf-pipe-z holds its samples only inside PERF_RECORD_COMPRESSED records."""
    raw = gzip.decompress((DATA / "perf-pipe.data.gz").read_bytes())
    assert b"PERFILE2" == raw[:8] and struct.unpack_from("<Q", raw, 8)[0] == 16
    z = (DATA / "perf-pipe-z.data").read_bytes()
    assert struct.unpack_from("<Q", z, 8)[0] == 16
    data = read_perfdata(z)
    assert data.stats.events == 253 and data.events.column("stack_id").null_count == 0


def test_pipe_mode_from_stdin():
    raw = gzip.decompress((DATA / "perf-pipe.data.gz").read_bytes())
    r = run_cli("info", "-", "--json", stdin=raw)
    assert r.returncode == 0, r.stderr
    assert b'"mm_page_free": 145' in r.stdout


# ---------------------------------------------------------------------------------------------
# symbols and the caller table


def _system_map(kallsyms: bytes) -> bytes:
    """The System.map of the same build: kallsyms moved back to the link address of _text."""
    lines = kallsyms.splitlines()
    text = next(int(ln.split()[0], 16) for ln in lines if ln.endswith(b" _text"))
    shift = text - 0xffffffff81000000
    return b"".join(b"%016x %s\n" % (int(ln.split()[0], 16) - shift, b" ".join(ln.split()[1:]))
                    for ln in lines)


def test_symbols_relocate_and_name(small, tmp_path):
    syms = Symbols.load(KALLSYMS).relocate(small.stats.kernel_reloc)
    assert syms.text == 0xffffffff95800000
    chain = frame(small)["callchain"][1].to_list()
    names = [syms.name(a) for a in chain[:4]]
    assert names == ["__traceiter_mm_page_alloc+0x3e", "__alloc_pages+0x256",
                     "__get_free_pages+0xd", "pgd_alloc+0x33"]
    assert syms.function(syms.callsite(chain)) == "pgd_alloc"
    system_map = tmp_path / "System.map-6.1.0-56-amd64"
    system_map.write_bytes(_system_map(gzip.decompress(KALLSYMS.read_bytes())))
    linked = Symbols.load(system_map)
    assert linked.text == 0xffffffff81000000
    assert linked.relocate(small.stats.kernel_reloc).names_of(chain) == syms.names_of(chain)


def test_symbols_refuse_placeholder(tmp_path):
    debian = tmp_path / "System.map"
    debian.write_text("ffffffffffffffff B The real System.map is in the linux-image-<version>"
                      "-dbg package\n")
    with pytest.raises(InputError, match="no code symbols"):
        Symbols.load(debian)


def test_caller_table_with_symbols(small):
    syms = Symbols.load(KALLSYMS).relocate(small.stats.kernel_reloc)
    table = caller_table(frame(small), syms)
    top = table.row(0, named=True)
    assert (top["callsite"], top["total_alloc_kb"], top["hits"], top["order"],
            top["migratetype"]) == ("__handle_mm_fault", 96344, 24086, 0, "Movable")
    assert table["hits"].sum() == 35169  # every successful allocation, as perf
    assert not table["callsite"].str.starts_with("__traceiter").any()
    assert not table["callsite"].str.contains("alloc_pages").any()


PERF_MIGTYPE = {"UNMOVABL": "Unmovable", "RECLAIM": "Movable", "MOVABLE": "Reclaimable",
                "RESERVED": "HighAtomic", "CMA/ISLT": "Isolate"}


def _perf_caller_rows(text: str) -> dict[tuple, tuple[int, int]]:
    """perf kmem --page --caller stat's table as {(order, 6.1 type, gfp mask): (KB, hits)},
    summed over its callsite column (perf keys rows on the callsite address)."""
    legend = {m[2]: int(m[1], 16) for m in re.finditer(r"^# ([0-9a-f]{8}):\s+(\S+):", text,
                                                        re.M)}
    out: dict[tuple, tuple[int, int]] = {}
    for m in re.finditer(r"^\s+(\d+) \|\s+(\d+) \|\s+(\d+) \|\s*(\S+) \| (\S+)\s+\|", text,
                         re.M):
        key = (int(m[3]), PERF_MIGTYPE[m[4]], legend[m[5]])
        kb, hits = out.get(key, (0, 0))
        out[key] = (kb + int(m[1]), hits + int(m[2]))
    return out


def test_caller_table_matches_perf_kmem_caller(small):
    """Without symbols perf kmem --caller cannot skip the allocator frames, and neither can we:
    the table equals perf's (traces/perf-small/perf-kmem-page-caller-stat.txt, perf 6.1.187)
    row for row, with perf's RECLAIM/MOVABLE labels read as 6.1's Movable/Reclaimable (perf
    splits one row in two, 1024 + 1 hits, over a mangled copy of the same callsite address)."""
    perf = _perf_caller_rows((SMALL / "perf-kmem-page-caller-stat.txt").read_text())
    ours = caller_table(frame(small), None)
    assert ours["callsite"].n_unique() == 1  # __traceiter_mm_page_alloc+0x3e, unnamed
    mine = {(r["order"], r["migratetype"], r["gfp_flags"]): (r["total_alloc_kb"], r["hits"])
            for r in ours.to_dicts()}
    assert mine == perf
    assert sum(hits for _, hits in mine.values()) == 35169


def test_cli_info_and_report_with_symbols(tmp_path):
    r = run_cli("info", str(DATA / "perf-kmem-record.data.gz"), "--symbols", str(KALLSYMS))
    assert r.returncode == 0, r.stderr
    assert b"call chains" in r.stdout and b"34 distinct stacks" in r.stdout
    assert b"__handle_mm_fault" in r.stdout
    # a kallsyms beside the perf.data is found without --symbols
    shutil.copy(DATA / "perf-kmem-record.data.gz", tmp_path / "perf.data.gz")
    shutil.copy(KALLSYMS, tmp_path / "kallsyms.gz")
    r = run_cli("info", str(tmp_path / "perf.data.gz"))
    assert r.returncode == 0 and b"__handle_mm_fault" in r.stdout
    r = run_cli("info", str(DATA / "perf-kmem-record.data.gz"), "--symbols",
                str(tmp_path / "missing"))
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1


def test_cli_report_has_caller_table(tmp_path):
    """perf kmem --page record of `ls -R /bin`: 62 allocations, 24 of them anonymous faults."""
    out = tmp_path / "report"
    r = run_cli("report", str(DATA / "perf-kmem-record.data.gz"), "--machine",
                "mem=512M,cpus=2", "--symbols", str(KALLSYMS), "-o", str(out),
                "--plotlyjs", "cdn")
    assert r.returncode == 0, r.stderr
    md = (out / "report.md").read_text()
    assert "### Allocations by call site (10 of 10 rows)" in md
    assert "| 96 | 24 | 0 | Movable |" in md and "`__handle_mm_fault`" in md
    assert "fig-callers" in (out / "dashboard.html").read_text()


# ---------------------------------------------------------------------------------------------
# damaged and foreign input


def test_truncated_file_mode_keeps_records_but_loses_formats():
    raw = gzip.decompress((DATA / "perf-kmem-record.data.gz").read_bytes())
    data = read_perfdata(raw[: len(raw) // 2])
    assert "truncated" in data.stats.error and "tracing data" in data.stats.error
    assert data.events.num_rows == 0 and data.stats.lines > 0
    with pytest.raises(InputError, match="truncated"):
        read_perfdata(raw[: len(raw) // 2], strict=True)


def test_truncated_in_features_keeps_every_event():
    raw = gzip.decompress((DATA / "perf-kmem-record.data.gz").read_bytes())
    data = read_perfdata(raw[:-40])
    assert data.stats.events == 196 and "feature section" in data.stats.error


@pytest.mark.parametrize("name", ["perf-pipe.data.gz", "perf-pipe-z.data"])
def test_truncated_pipe_keeps_what_was_read(name):
    raw = (DATA / name).read_bytes()
    raw = gzip.decompress(raw) if name.endswith(".gz") else raw
    full = frame(read_perfdata(raw))
    # perf-pipe-z: its tracing data fills 27 of its 35 KB; cut inside a compressed record
    cut = read_perfdata(raw[: int(len(raw) * 0.8) if name.endswith(".gz") else len(raw) - 2000])
    assert cut.stats.error and ("inside a record" in cut.stats.error
                                or "compressed" in cut.stats.error)
    part = frame(cut)
    assert 0 < part.height < full.height
    key = ["ts_ns", "cpu", "pid", "event", "pfn", "order"]
    assert part.select(key).join(full.select(key), on=key, how="anti").height == 0


def test_corrupt_compressed_record():
    raw = bytearray((DATA / "perf-pipe-z.data").read_bytes())
    pos = 16
    while struct.unpack_from("<I", raw, pos)[0] != 81:  # the first PERF_RECORD_COMPRESSED
        typ, _, size = struct.unpack_from("<IHH", raw, pos)
        pos += size + (struct.unpack_from("<I", raw, pos + 8)[0] if typ == 66 else 0)
    raw[pos + 8: pos + 24] = b"\xff" * 16
    data = read_perfdata(bytes(raw))
    assert "does not inflate" in data.stats.error


def test_truncated_gzip_keeps_what_decompressed():
    gz = (SMALL / "perf.data.gz").read_bytes()
    data = read_perfdata(gz[: len(gz) // 2])
    assert "gzip" in data.stats.error


@pytest.mark.parametrize("blob, message", [
    (b"2ELIFREP" + bytes(200), "big-endian"),
    (b"PERFFILE" + bytes(200), "version-1"),
    (b"PERFILE2" + struct.pack("<QQ", 104, 999) + bytes(80), "not a known layout"),
    (b"PERFILE2" + struct.pack("<Q", 104), "cut short"),
])
def test_foreign_or_broken_headers(blob, message):
    with pytest.raises(InputError, match=message):
        read_perfdata(blob)


@pytest.mark.parametrize("name", ["perf-kmem-record.data.gz", "perf-pipe-z.data",
                                  "perf-compaction.data.gz", "perf-lost.data.gz"])
def test_fuzzed_files_never_crash(name):
    """Cuts and flipped bytes anywhere: a result (with an error or bad samples) or one
    InputError, never another exception (the numba passes check every length they follow)."""
    raw = (DATA / name).read_bytes()
    raw = gzip.decompress(raw) if name.endswith(".gz") else raw
    rng = np.random.default_rng(12)
    for _ in range(40):
        blob = bytearray(raw[: int(rng.integers(16, len(raw)))] if rng.random() < 0.3 else raw)
        for pos in rng.integers(0, len(blob), int(rng.integers(1, 40))):
            blob[pos] = int(rng.integers(0, 256))
        try:
            data = read_perfdata(bytes(blob))
        except InputError:
            continue
        assert data.events.num_rows <= 400


def test_not_perfdata():
    with pytest.raises(InputError, match="not a perf.data"):
        read_perfdata(b"# tracer: nop\n")


def test_cli_damaged_is_one_line_exit_2(tmp_path):
    raw = gzip.decompress((DATA / "perf-pipe.data.gz").read_bytes())
    cut = tmp_path / "cut.data"
    cut.write_bytes(raw[: len(raw) * 3 // 4])
    r = run_cli("info", str(cut))
    assert r.returncode == 2
    assert b"Traceback" not in r.stderr and r.stderr.count(b"error:") == 1
    bad = tmp_path / "bad.data"
    bad.write_bytes(b"2ELIFREP" + bytes(100))
    r = run_cli("info", str(bad))
    assert r.returncode == 2 and b"big-endian" in r.stderr and b"Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------
# equality with perf script


SCRIPT_LINE = re.compile(r"^\s*(.*?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+(\S+?):(\S+?):"
                         r"\s?(.*)$")


def perf_script(path: Path) -> tuple[pl.DataFrame, list[list[int]]]:
    """perf script's samples (comm, pid/tid, cpu, ns time, event, pfn, order) and the kernel
    part of each call chain (its leading addresses in the kernel half)."""
    text = subprocess.run([PERF, "script", "-i", str(path), "--ns", "-F",
                           "comm,tid,pid,cpu,time,event,trace,ip"], capture_output=True,
                          text=True, check=True).stdout
    rows, chains = [], []
    for line in text.splitlines():
        if line.startswith("\t") or not line.strip():
            parts = line.split()
            if parts and chains and chains[-1][1]:
                addr = int(parts[0], 16)
                if addr >= 0xffff800000000000:
                    chains[-1][0].append(addr)
                else:
                    chains[-1][1] = False
            continue
        m = SCRIPT_LINE.match(line)
        assert m, line
        comm, tgid, tid, cpu, s, ns, _system, event, rest = m.groups()
        pfn = re.search(r"\bpfn=(0x[0-9a-f]+)", rest)
        rows.append((None if comm.startswith(":") else comm, int(tgid), int(tid), int(cpu),
                     int(s) * 10**9 + int(ns), event, int(pfn[1], 16) if pfn else None))
        chains.append([[], True])
    df = pl.DataFrame(rows, schema=["comm", "tgid", "pid", "cpu", "ts_ns", "event", "pfn"],
                      orient="row")
    return df, [c for c, _ in chains]


@needs_perf
@pytest.mark.parametrize("name", ["perf-small", *FIXTURES])
def test_equals_perf_script(name, tmp_path):
    path = SMALL / "perf.data.gz" if name == "perf-small" else DATA / name
    plain = tmp_path / "perf.data"
    raw = path.read_bytes()
    plain.write_bytes(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    ref, ref_chains = perf_script(plain)
    ours = frame(read_perfdata(plain))
    assert ours.height == ref.height
    cols = ["comm", "tgid", "pid", "cpu", "ts_ns", "event"]
    assert ours.select(cols).equals(ref.select(cols))
    kmem = ref["event"].str.starts_with("mm_page")
    assert ours.filter(kmem)["pfn"].cast(pl.Int64).equals(ref.filter(kmem)["pfn"])
    if name in WITH_CHAINS or name == "perf-small":
        assert [c or [] for c in ours["callchain"].to_list()] == ref_chains


@needs_perf
def test_page_summary_from_perf_kmem_live(tmp_path):
    """perf kmem --page stat on a fixture equals page_summary of our reading of it."""
    from replay.metrics.peers import page_summary
    from tests.test_perf_kmem import parse_perf_summary

    plain = tmp_path / "perf.data"
    plain.write_bytes(gzip.decompress((DATA / "perf-kmem-record.data.gz").read_bytes()))
    text = subprocess.run([PERF, "kmem", "--page", "-i", str(plain), "stat"],
                          capture_output=True, text=True, check=True).stdout
    p = parse_perf_summary(text)
    ours = page_summary(frame(read_perfdata(plain)))
    assert (ours["alloc_requests"], ours["free_requests"]) == (p["alloc"][0], p["free"][0])
    assert (ours["alloc_and_freed"], ours["free_only"]) == (p["alloc_freed"][0],
                                                            p["free_only"][0])
