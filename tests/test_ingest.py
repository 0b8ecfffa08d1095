"""Ingest: real traces give the counts grep and awk give; every layout; bad input handled."""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import zlib

import polars as pl
import pyarrow.compute as pc
import pytest
import zstandard
from conftest import run_cli

from replay.errors import InputError, StrictError
from replay.trace.ingest import ingest_to_parquet, read_parquet, read_trace

# zcat trace.txt.gz | gawk '{for(i=1;i<=NF;i++) if ($i ~ /^mm_page[a-z_]*:$/) {ev=$i;
#   for(j=i+1;j<=NF;j++) if ($j ~ /^pfn=/) s[ev]+=strtonum(substr($j,5)); c[ev]++; break}}'
GREP_COUNTS = {
    "mixed-small": {
        "mm_page_alloc": (32130, 895930124),
        "mm_page_alloc_extfrag": (2, 64512),
        "mm_page_alloc_zone_locked": (33093, 983180259),
        "mm_page_free": (31304, 883344850),
        "mm_page_free_batched": (30012, 829523713),
        "mm_page_pcpu_drain": (32421, 976782061),
    },
    "frag-a": {
        "mm_page_alloc": (109448, 5638736679),
        "mm_page_alloc_extfrag": (11, 657408),
        "mm_page_alloc_zone_locked": (106007, 5447370761),
        "mm_page_free": (64745, 3307008430),
        "mm_page_free_batched": (58356, 2920544022),
        "mm_page_pcpu_drain": (61533, 3135091411),
        "mm_compaction_kcompactd_sleep": (1, 0),  # grep -c mm_compaction_ (no pfn)
    },
    "numa-frag": {
        "mm_page_alloc": (117445, 8429109432),
        "mm_page_alloc_extfrag": (11, 928768),
        "mm_page_alloc_zone_locked": (104869, 7662990636),
        "mm_page_free": (58170, 4144049044),
        "mm_page_free_batched": (51666, 3611752050),
        "mm_page_pcpu_drain": (45660, 3376125182),
    },
}


def per_event(table) -> dict[str, tuple[int, int]]:
    df = pl.from_arrow(table).group_by("event").agg(pl.len(), pl.col("pfn").sum())
    return {r["event"]: (r["len"], r["pfn"] or 0) for r in df.iter_rows(named=True)}


@pytest.mark.parametrize("bundle", sorted(GREP_COUNTS))
def test_bundle_counts_and_pfn_sums_match_grep(traces, bundle):
    data = read_trace(traces / bundle)
    assert per_event(data.events) == GREP_COUNTS[bundle]
    assert data.stats.bad_total == 0
    assert data.markers.num_rows == 24  # 12 snapshot files, begin and end each
    assert data.stats.lost_events == 0
    seq = data.events["seq"].to_numpy()
    assert (seq[1:] > seq[:-1]).all()
    # every line is accounted for exactly once
    st = data.stats
    assert st.lines == st.events + st.markers + st.header_lines + st.bad_total + st.lost_lines \
        + sum(st.other_events.values())


def test_timestamps_are_exact_ns(traces):
    data = read_trace(traces / "mixed-small")
    ts = data.events["ts_ns"]
    assert ts[0].as_py() == 3_649_648_000  # "3.649648" on line 13
    assert pc.max(ts).as_py() == 5_182_460_000


def test_edge_cases(data_dir):
    d = read_trace(data_dir / "edge-cases.txt")
    rows = {r["seq"]: r for r in d.events.to_pylist()}
    assert rows[5]["comm"] == "kworker/u16:1" and rows[5]["pid"] == 77
    assert rows[5]["irq_flags"] & 1 and rows[5]["preempt_depth"] == 1
    assert rows[6]["comm"] == "Web Content" and rows[6]["migrate_disable"] is None
    assert rows[6]["gfp_flags"] == 0x140CCA  # GFP_HIGHUSER_MOVABLE|__GFP_COMP
    assert rows[7]["comm"] == "DOM Worker" and rows[7]["tgid"] == 50
    assert rows[8]["comm"] is None and rows[8]["tgid"] is None and rows[8]["pid"] == 99
    assert rows[9]["comm"] == "<idle>" and rows[9]["irq_flags"] & (1 << 5)  # softirq
    assert rows[10]["comm"] == "irq/100-enet-fe" and rows[10]["failed"] and rows[10]["pfn"] is None
    assert rows[10]["irq_flags"] & (1 << 4)  # hardirq
    assert rows[11]["gfp_flags"] == 0x152C4A and rows[11]["ts_ns"] == 2319_000_857_000
    assert rows[12]["pfn"] == 970744 and rows[12]["gfp_text"] == "GFP_HIGHUSER|__GFP_ZERO"
    assert rows[13]["event"] == "mm_page_free" and rows[13]["pfn"] == 1155800
    assert rows[13]["preempt_depth"] is None  # no irq-info column
    assert rows[14]["ts_ns"] == 123456789  # counter clock
    assert rows[15]["comm"] == "a:b - c-d" and rows[15]["ts_ns"] == 7_123_456_789
    assert rows[15]["fallback_order"] == 10 and rows[15]["change_ownership"] == 1
    assert rows[15]["order"] == 2 and rows[15]["fragmenting"] == 0
    assert rows[24]["failed"] and rows[24]["gfp_flags"] == 0 and rows[24]["preempt_depth"] == 15
    assert rows[29]["pfn"] == 0x11  # last line has no newline
    assert d.markers.to_pylist()[0]["text"] == "kcapture: a=b: c [x]"
    lost = d.lost.to_pylist()
    assert [(r["cpu"], r["events"], r["kind"]) for r in lost] == [
        (None, 15, "overwritten"), (3, 17, "lost"), (1, None, "lost"), (0, 12, "dropped"),
        (2, None, "dropped")]
    assert d.stats.lost_events == 15 + 17 + 12
    assert d.stats.other_events == {"sched_switch": 2}
    assert d.stats.bad_total == 4
    assert [s[0] for s in d.stats.bad_samples] == [25, 26, 27, 28]
    assert d.stats.cpus == 8


def test_strict_stops_at_first_bad_line(data_dir):
    with pytest.raises(StrictError, match=r"edge-cases.txt:25: no 'task-pid"):
        read_trace(data_dir / "edge-cases.txt", strict=True)


@pytest.mark.parametrize("name", ["tracecmd-3.1.txt", "tracecmd-raw.txt", "tracecmd-ns.txt"])
def test_trace_cmd_layouts(data_dir, name):
    text = (data_dir / name).read_text()
    markers = text.count(" print: ")
    d = read_trace(data_dir / name)
    assert d.stats.layout == "trace-cmd" and d.stats.cpus == 2
    expected = sum(1 for ln in text.splitlines() if " mm_page_alloc: " in ln
                   or " mm_page_alloc:  " in ln)
    assert d.stats.events_by_kind.get("mm_page_alloc", 0) == expected
    assert d.stats.bad_total == 0 and d.markers.num_rows == markers
    if markers:
        assert d.markers["text"][0].as_py() == "kcapture: start.buddyinfo begin"


def test_trace_cmd_text_equals_kernel_text(data_dir):
    """trace-cmd's rendering of the same capture gives the same rows as the kernel's text."""
    a = read_trace(data_dir / "ftrace-head.txt").events
    b = read_trace(data_dir / "tracecmd-3.1.txt").events
    raw = read_trace(data_dir / "tracecmd-raw.txt").events
    ns = read_trace(data_dir / "tracecmd-ns.txt").events
    cols = ["cpu", "pid", "comm", "event", "pfn", "order", "migratetype", "gfp_flags"]
    n = 100
    ka = pl.from_arrow(a.select(cols)).head(n)
    assert ka.equals(pl.from_arrow(b.select(cols)).head(n))
    assert ka.equals(pl.from_arrow(raw.select(cols)).head(n))
    assert pl.from_arrow(ns.select(cols)).head(n).equals(ka)
    # the kernel prints usecs rounded to nearest (ns2usecs adds 500 before dividing)
    assert ((ns["ts_ns"].to_numpy()[:n] + 500) // 1000 == a["ts_ns"].to_numpy()[:n] // 1000).all()


@pytest.mark.parametrize("kind", ["gzip", "zstd", "xz", "bz2"])
def test_compression_by_content(tmp_path, data_dir, kind):
    raw = (data_dir / "edge-cases.txt").read_bytes()
    packed = {"gzip": gzip.compress, "zstd": zstandard.ZstdCompressor().compress,
              "xz": lzma.compress, "bz2": bz2.compress}[kind](raw)
    p = tmp_path / "trace.bin"  # no telling extension
    p.write_bytes(packed)
    d = read_trace(p)
    assert d.stats.compression == kind
    assert d.events.equals(read_trace(data_dir / "edge-cases.txt").events)


def test_parquet_roundtrip_and_metadata(tmp_path, traces):
    out = tmp_path / "ms.parquet"
    stats = ingest_to_parquet(traces / "mixed-small", out)
    back = read_parquet(out)
    assert back.events.num_rows == stats.events == sum(c for c, _ in
                                                       GREP_COUNTS["mixed-small"].values())
    assert back.stats.events_by_kind == stats.events_by_kind
    assert back.markers.num_rows == 24
    assert per_event(back.events) == GREP_COUNTS["mixed-small"]


def test_cli_ingest_json_and_stdin(tmp_path, data_dir):
    r = run_cli("ingest", "-", "-o", str(tmp_path / "e.parquet"), "--json",
                stdin=(data_dir / "edge-cases.txt").read_bytes())
    assert r.returncode == 0, r.stderr
    import json

    d = json.loads(r.stdout)
    assert d["events"] == 13 and d["lost_events"] == 44 and d["bad_lines"]
    r = run_cli("ingest", str(data_dir / "edge-cases.txt"), "-o", str(tmp_path / "x.parquet"),
                "--strict")
    assert r.returncode == 2 and b"edge-cases.txt:25:" in r.stderr and b"Traceback" not in r.stderr


@pytest.mark.parametrize("setup,message", [
    ("missing", b"no such file"),
    ("empty", b"empty"),
    ("binary", b"not a text trace"),
    ("emptydir", b"no trace file"),
])
def test_bad_input_one_clear_line(tmp_path, setup, message):
    target = tmp_path / "t"
    if setup == "empty":
        target.write_bytes(b"")
    elif setup == "binary":
        target.write_bytes(bytes(range(256)) * 64)
    elif setup == "emptydir":
        target.mkdir()
    r = run_cli("ingest", str(target), "-o", str(tmp_path / "o.parquet"))
    assert r.returncode == 2
    assert message in r.stderr and b"Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_truncated_gzip_keeps_what_was_read(tmp_path, traces):
    src = (traces / "mixed-small" / "trace.txt.gz").read_bytes()
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(src[: len(src) // 2])
    d = read_trace(cut)
    assert d.stats.error and 40_000 < d.events.num_rows < 150_000
    r = run_cli("ingest", str(cut), "-o", str(tmp_path / "cut.parquet"))
    assert r.returncode == 2 and b"Traceback" not in r.stderr
    assert read_parquet(tmp_path / "cut.parquet").events.num_rows == d.events.num_rows
    with pytest.raises(InputError):
        read_trace(cut, strict=True)


def test_gzip_cut_inside_its_first_block_keeps_its_lines(tmp_path, traces):
    """A .gz cut before its first deflate block ends still hands on every complete line."""
    src = (traces / "frag-a" / "trace.txt.gz").read_bytes()[:100_000]
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(src)
    text = zlib.decompressobj(31).decompress(src)
    complete = text[: text.rfind(b"\n") + 1].splitlines()
    expected = sum(b": mm_" in ln for ln in complete)
    d = read_trace(cut)
    assert "truncated" in d.stats.error
    assert d.events.num_rows == expected > 9000


def test_truncated_zstd_says_so_and_keeps_its_lines(tmp_path, traces):
    """zstandard's stream reader ended a cut .zst silently; the cut is an error now."""
    text = gzip.decompress((traces / "frag-a" / "trace.txt.gz").read_bytes())
    src = zstandard.ZstdCompressor().compress(text)[:100_000]
    cut = tmp_path / "cut.txt.zst"
    cut.write_bytes(src)
    got = zstandard.ZstdDecompressor().decompressobj().decompress(src)
    complete = got[: got.rfind(b"\n") + 1].splitlines()
    d = read_trace(cut)
    assert d.stats.error and "the zstd stream is truncated" in d.stats.error
    assert d.events.num_rows == sum(b": mm_" in ln for ln in complete) > 8000


def test_concatenated_gzip_members(tmp_path, traces):
    src = (traces / "frag-a" / "trace.txt.gz").read_bytes()
    two = tmp_path / "two.txt.gz"
    two.write_bytes(src + gzip.compress(b"# a second member\n") + src)
    one = read_trace(traces / "frag-a" / "trace.txt.gz")
    d = read_trace(two)
    assert not d.stats.error and d.events.num_rows == 2 * one.events.num_rows


def test_bundle_dir_with_plain_trace(tmp_path, data_dir):
    shutil.copy(data_dir / "edge-cases.txt", tmp_path / "trace.txt")
    assert read_trace(tmp_path).events.num_rows == 13


def test_trace_pipe_and_trace_cmd_preambles(tmp_path, data_dir):
    """trace_pipe: no header at all; trace-cmd: `version =`, `CPU N is empty`, `cpus=`."""
    body = [ln for ln in (data_dir / "ftrace-head.txt").read_text().splitlines()
            if not ln.startswith("#")][:50]
    pipe = tmp_path / "pipe.txt"
    pipe.write_text("\n".join(body) + "\n")
    d = read_trace(pipe)
    assert d.stats.layout == "trace_pipe" and d.events.num_rows == 50
    report = tmp_path / "report.txt"
    report.write_text("version = 6\nCPU 2 is empty\nCPU 3 is empty\ncpus=4\n"
                      + "\n".join(body) + "\n")
    d = read_trace(report)
    assert d.stats.layout == "trace-cmd" and d.stats.cpus == 4
    assert d.events.num_rows == 50 and d.stats.header_lines == 4 and d.stats.bad_total == 0
    # one file per CPU (per_cpu/cpuN/trace) reads the same way
    cpu1 = [ln for ln in body if "[001]" in ln]
    per_cpu = tmp_path / "cpu1.txt"
    per_cpu.write_text("\n".join(cpu1) + "\n")
    assert set(read_trace(per_cpu).events["cpu"].to_pylist()) == {1}


@pytest.mark.parametrize("command", ["reconstruct", "simulate", "compare", "report", "explain",
                                     "check"])
def test_text_without_events_is_refused_by_every_replay(tmp_path, traces, command):
    """A bundle whose trace holds no page-allocator event: the replaying commands say so and
    exit 2, as ingest and info do, instead of writing an empty report."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for f in (traces / "mixed-small").iterdir():
        if f.name.startswith(("start.", "end.")) and not f.name.endswith(".gz"):
            shutil.copy(f, bundle / f.name)
    (bundle / "trace.txt").write_text("".join(f"line {k}: nothing a tracer wrote\n"
                                              for k in range(40)))
    args = [command, str(bundle)] + (["--baseline", str(bundle)] if command == "check" else [])
    out = ["--json", str(tmp_path / "out.json")] if command == "reconstruct" else \
        ["-o", str(tmp_path / "out")]
    r = run_cli(*args, *out, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert b"no page-allocator events found in 40 lines (40 bad" in r.stderr
    assert b"Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "out.json").exists()
