"""Kernel stacks in text traces (ftrace's stacktrace, trace-cmd -T) and the one call-site rule.

traces/stacks-small is a real capture with `pagereplay record --stacktrace` (Linux 6.18,
options sym-offset and sym-addr on); tests/data/ftrace-stacks-nosym.txt is ftrace's default
frame format (names only) with user stacks, tests/data/tracecmd-stacks.txt `trace-cmd report`'s
(`kernel_stack` / `user_stack` events), both real. Numbers below are grep/awk counts of the
raw text.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import DATA, TRACES, run_cli

from replay.commands.record_cmd import record_args
from replay.errors import StrictError
from replay.metrics.caller_counts import CallerCounts, ChainBook, caller_table_from
from replay.metrics.callsites import callsite, callsites, frame_parts, site
from replay.metrics.peers import caller_table
from replay.stream.columns import CommTable, batch_columns
from replay.trace import ingest
from replay.trace.ingest import read_parquet, read_trace, stack_safe_end
from replay.trace.symbols import Symbols

BUNDLE = TRACES / "stacks-small"
NOSYM = DATA / "ftrace-stacks-nosym.txt"
TRACECMD = DATA / "tracecmd-stacks.txt"
KALLSYMS = DATA / "kallsyms-6.1.0-56.gz"

# zcat trace.txt.gz | grep -c ' EVENT: ' (and '<stack trace>', '^ => ', 'kcapture:')
BUNDLE_COUNTS = {"mm_page_alloc": 11760, "mm_page_free": 10013, "mm_page_free_batched": 7792,
                 "mm_page_alloc_zone_locked": 1178, "mm_page_pcpu_drain": 19}
STACK_HEADERS, FRAME_LINES, MARKERS = 11760, 121316, 22
# the first frame of each stack outside the allocator, by awk over the raw text:
#   /<stack trace>/ opens a stack, ' => ' lines are its frames, any other line closes it; the
#   site is the first frame not matching ^(trace_event_raw_event_|__traceiter_|_?_?alloc_pages|
#   __alloc_pages|_?_?alloc_frozen_pages|alloc_pages_mpol|_?_?folio_alloc|vma_alloc_folio|
#   get_page_from_freelist|rmqueue|_?_?get_free_pages)
AWK_CALLSITES = {"do_anonymous_page": 8188, "anon_pipe_write": 1830, "__filemap_get_folio": 419,
                 "do_fault": 388, "allocate_slab": 342, "pte_alloc_one": 170, "do_wp_page": 139,
                 "tlb_next_batch": 87, "vma_alloc_anon_folio_pmd": 67, "__pmd_alloc": 54,
                 "tlb_remove_table": 36, "__pud_alloc": 28, "pgd_alloc": 12}

CONTEXT = re.compile(r"^\s*.*?-\d+\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?"
                     r"[\d.]+:\s+(?P<rest>.*)$")


def reference_stacks(lines: list[str]) -> dict[int, list[str]]:
    """Line number of each event followed by a kernel stack -> the stack's frames as printed,
    by the kernel's rule read plainly: a stack belongs to the last event line of its CPU."""
    last: dict[str, int] = {}
    out: dict[int, list[str]] = {}
    frames: list[str] | None = None
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if text.startswith("=>"):
            if frames is not None:
                frames.append(text[2:].strip())
            continue
        frames = None
        m = CONTEXT.match(line)
        if m is None:
            continue
        if m["rest"].startswith(("<stack trace>", "kernel_stack:")):
            event = last.pop(m["cpu"], None)
            if event is not None:
                out[event] = frames = []
        elif not m["rest"].startswith(("<user stack trace>", "user_stack:")):
            last[m["cpu"]] = n
    return out


@pytest.fixture(scope="module")
def bundle():
    return read_trace(BUNDLE)


@pytest.fixture(scope="module")
def bundle_lines() -> list[str]:
    return gzip.decompress((BUNDLE / "trace.txt.gz").read_bytes()).decode().splitlines()


def rows_with_stacks(data) -> dict[int, dict]:
    df = pl.from_arrow(data.events.select(["seq", "event", "stack_id", "callchain",
                                           "callchain_syms"]))
    return {r["seq"]: r for r in df.filter(pl.col("stack_id").is_not_null()).to_dicts()}


# ---------------------------------------------------------------------------------------------
# ingest


def test_bundle_counts_and_every_line_accounted(bundle):
    st = bundle.stats
    assert {k: v for k, v in st.events_by_kind.items()
            if not k.startswith("mm_compaction")} == BUNDLE_COUNTS
    assert st.bad_total == 0 and bundle.markers.num_rows == MARKERS == st.markers
    assert st.stack_lines == STACK_HEADERS + FRAME_LINES and st.stack_lines_other == 0
    assert st.stacks == STACK_HEADERS  # the trigger is on mm_page_alloc: one stack each
    assert st.lines == (st.events + st.markers + st.header_lines + st.bad_total + st.lost_lines
                        + sum(st.other_events.values()) + st.stack_lines)
    # markers printed with options sym-offset and sym-addr ('tracing_mark_write+0x91/0x170
    # <ffffffff814abf11>: kcapture: ...') are still markers
    assert bundle.markers["text"][0].as_py() == "kcapture: start.buddyinfo begin"
    df = pl.from_arrow(bundle.events.select(["event", "stack_id"])).with_columns(
        pl.col("event").cast(pl.Utf8))
    assert df.filter(pl.col("stack_id").is_not_null())["event"].unique().to_list() == [
        "mm_page_alloc"]
    assert df.filter(pl.col("event") == "mm_page_alloc")["stack_id"].null_count() == 0


def test_stacks_go_to_the_last_event_of_their_cpu(bundle, bundle_lines):
    """Every stack, its frames and addresses, against a plain reading of the text (294 of
    the stacks have another CPU's lines between the event and its `<stack trace>`)."""
    ref = reference_stacks(bundle_lines)
    got = rows_with_stacks(bundle)
    assert got.keys() == ref.keys()
    for seq, frames in ref.items():
        syms = [f.rsplit(" <", 1)[0] for f in frames]
        addrs = [int(f.rsplit(" <", 1)[1].rstrip(">"), 16) for f in frames]
        assert got[seq]["callchain_syms"] == syms and got[seq]["callchain"] == addrs, seq


def test_distinct_stacks_numbered_in_order_of_appearance(bundle, bundle_lines):
    ref = reference_stacks(bundle_lines)
    distinct: dict[tuple, int] = {}
    for seq in sorted(ref):
        distinct.setdefault(tuple(ref[seq]), len(distinct))
    assert len(distinct) == 60
    got = rows_with_stacks(bundle)
    assert all(got[seq]["stack_id"] == distinct[tuple(ref[seq])] for seq in ref)


def test_callsites_without_a_system_map(bundle):
    frame = pl.from_arrow(bundle.events).with_columns(pl.col("event").cast(pl.Utf8))
    sites = callsites(frame)
    per_site = (frame.filter(pl.col("stack_id").is_not_null()).join(sites, on="stack_id")
                .group_by("callsite").len())
    assert dict(per_site.iter_rows()) == AWK_CALLSITES
    assert sites["callsite_addr"].null_count() == 0  # sym-addr printed the addresses
    table = caller_table(frame)
    assert table.row(0, named=True)["callsite"] == "vma_alloc_anon_folio_pmd"  # 67 THPs
    assert table.row(0, named=True)["total_alloc_kb"] == 67 * 2048
    # a System.map of another kernel changes nothing: the trace's own names win
    other = Symbols.load(KALLSYMS)
    assert caller_table(frame, other).equals(table)


@pytest.mark.parametrize("rows", [500, 1 << 18])
def test_caller_table_counted_batch_by_batch(bundle, rows):
    """The streamed commands' caller table (chains and allocations gathered batch by batch,
    partial counts merged) equals the one over the whole events table."""
    book, counts, comms = ChainBook(), CallerCounts(), CommTable()
    for batch in bundle.events.to_batches(max_chunksize=rows):
        cols, _ = batch_columns(batch, comms)
        book.learn(batch, cols["stack"], cols["gfp"])
        counts.feed(cols)
    frame = pl.from_arrow(bundle.events).with_columns(pl.col("event").cast(pl.Utf8))
    want = caller_table(frame)
    assert want.height > len(AWK_CALLSITES)
    assert caller_table_from(counts, book).equals(want)
    assert (counts.events, counts.stacks, book.named_by_trace) == (STACK_HEADERS, 60, True)
    assert len(book.gfp_texts) == frame.filter(pl.col("stack_id").is_not_null())[
        "gfp_flags"].n_unique()


@pytest.mark.parametrize("block", [2048, 7776, 65536])
def test_block_boundaries_change_nothing(bundle_lines, tmp_path, monkeypatch, block):
    """Blocks that cut between an event and its stack (the stack is joined to the previous
    block's last event of that CPU) or inside a stack (the cut moves before it)."""
    path = tmp_path / "head.txt"
    path.write_text("\n".join(bundle_lines[:30000]) + "\n")
    whole = read_trace(path)
    monkeypatch.setattr(ingest, "BLOCK_BYTES", block)
    cut = read_trace(path)
    assert cut.stats.as_dict() == whole.stats.as_dict()
    assert pl.from_arrow(cut.events).equals(pl.from_arrow(whole.events))
    assert cut.markers.equals(whole.markers)


def test_stack_safe_end():
    text = (b"  a-1 [000] ..... 1.0: mm_page_alloc: x\n"
            b"  a-1 [000] ..... 1.0: <stack trace>\n => f\n => g\n")
    assert stack_safe_end(text) == text.index(b"  a-1 [000] ..... 1.0: <stack")
    assert stack_safe_end(text[: text.index(b" => f")]) == text.index(b"  a-1 [000] ..... 1.0: <")
    assert stack_safe_end(text[: text.index(b"  a-1 [000] ..... 1.0: <")]) == text.index(
        b"  a-1 [000] ..... 1.0: <")  # ends with an event: as is
    assert stack_safe_end(b" => f\n => g\n") == len(b" => f\n => g\n")  # cannot tell


def test_trace_cmd_report_kernel_and_user_stacks():
    """trace-cmd report (3.1.6) of a `trace-cmd extract` (the instance's buffer-name prefix
    removed): `kernel_stack: <stack trace >` then `=> name (address)`; user_stack events and
    their tab-indented frames are skipped, and the kernel stack after them still found."""
    lines = TRACECMD.read_text().splitlines()
    data = read_trace(TRACECMD)
    st = data.stats
    assert st.layout == "trace-cmd" and st.bad_total == 0 and st.markers == 2
    assert st.events == sum(1 for ln in lines if " mm_page_" in ln) == 10
    assert st.stacks == sum(1 for ln in lines if "kernel_stack:" in ln) == 7
    user = sum(1 for ln in lines if "user_stack:" in ln or ln.startswith("\t=>"))
    assert st.stack_lines_other == user == 80
    assert st.lines == st.events + st.markers + st.header_lines + st.stack_lines
    got = rows_with_stacks(data)
    ref = reference_stacks(lines)
    assert got.keys() == ref.keys()
    for seq, frames in ref.items():
        assert got[seq]["callchain_syms"] == [f.split(" (")[0] for f in frames]
        assert got[seq]["callchain"] == [int(f.split(" (")[1].rstrip(")"), 16) for f in frames]
    assert [callsite(r["callchain"], None, r["callchain_syms"]) for r in got.values()][:3] == [
        "pgd_alloc", "__pud_alloc", "__pmd_alloc"]


def test_ftrace_default_format_names_only():
    lines = NOSYM.read_text().splitlines()
    data = read_trace(NOSYM)
    st = data.stats
    assert st.bad_total == 0 and st.markers == 2 and st.events == 24
    assert st.stacks == sum(1 for ln in lines if ln.endswith("<stack trace>")) == 14
    assert st.stack_lines_other == sum(
        1 for ln in lines if "<user stack trace>" in ln or ln.startswith(" =>  <")) == 48
    got = rows_with_stacks(data)
    assert {s: r["callchain_syms"] for s, r in got.items()} == reference_stacks(lines)
    assert all(r["callchain"] is None for r in got.values())  # no addresses printed
    sites = callsites(pl.from_arrow(data.events))
    assert sites["callsite_addr"].null_count() == sites.height
    assert sorted(set(sites["callsite"])) == ["__pmd_alloc", "__pud_alloc", "do_anonymous_page",
                                             "pgd_alloc", "pte_alloc_one"]


# ---------------------------------------------------------------------------------------------
# damaged input: counted, never a traceback, nothing good lost


def _snippet(lines: list[str], n: int = 80) -> list[str]:
    """The bundle's first n lines after its header (real lines)."""
    return lines[:12] + lines[12:12 + n]


def test_frames_without_their_header_are_bad_lines(bundle_lines, tmp_path):
    lines = _snippet(bundle_lines)
    header = next(i for i, ln in enumerate(lines) if ln.endswith("<stack trace>"))
    del lines[header]
    path = tmp_path / "t.txt"
    path.write_text("\n".join(lines) + "\n")
    data = read_trace(path)
    reason = "stack frame without '<stack trace>'"
    frames = next(i for i, ln in enumerate(lines[header:]) if not ln.startswith(" => "))
    assert data.stats.bad_lines == {reason: frames}
    assert data.stats.bad_samples[0][:2] == (header + 1, reason)
    assert data.events.num_rows == sum(1 for ln in lines if " mm_page_" in ln)
    assert data.stats.stacks == sum(1 for ln in lines if ln.endswith("<stack trace>"))
    with pytest.raises(StrictError, match=f":{header + 1}: {re.escape(reason)}"):
        read_trace(path, strict=True)
    res = run_cli("ingest", str(path), "-o", str(tmp_path / "t.parquet"), "--strict")
    assert res.returncode == 2 and b"Traceback" not in res.stderr


def test_a_stack_without_frames_or_event_is_not_attached(bundle_lines, tmp_path):
    lines = _snippet(bundle_lines)
    first = next(i for i, ln in enumerate(lines) if " mm_page_alloc: " in ln)
    cut = lines[:first] + lines[first + 1:]  # the event is gone: its stack has no event
    cut.append(lines[first + 1])  # a '<stack trace>' at the very end, without frames
    path = tmp_path / "t.txt"
    path.write_text("\n".join(cut) + "\n")
    data = read_trace(path)
    st = data.stats
    assert st.bad_total == 0
    frames = next(i for i, ln in enumerate(lines[first + 2:]) if not ln.startswith(" => "))
    # the orphan stack's frames count, and the header without frames at the end
    assert st.stack_lines_other == 1 + frames + 1
    assert st.lines == (st.events + st.markers + st.header_lines + st.stack_lines
                        + sum(st.other_events.values()))


# ---------------------------------------------------------------------------------------------
# Parquet, commands


def test_parquet_round_trip(bundle, tmp_path):
    out = tmp_path / "s.parquet"
    res = run_cli("ingest", str(BUNDLE), "-o", str(out))
    assert res.returncode == 0, res.stderr
    back = read_parquet(out)
    cols = ["seq", "stack_id", "callchain", "callchain_syms"]
    assert pl.from_arrow(back.events.select(cols)).equals(
        pl.from_arrow(bundle.events.select(cols)))
    assert back.stats.stacks == STACK_HEADERS and back.stats.stack_lines == bundle.stats.stack_lines


def test_cli_info_names_call_sites_without_symbols():
    res = run_cli("info", str(BUNDLE), "--json")
    assert res.returncode == 0, res.stderr
    c = json.loads(res.stdout)["callchains"]
    assert (c["events"], c["stacks"], c["symbols"], c["named_by_trace"]) == (
        STACK_HEADERS, 60, None, True)
    top = {r["callsite"]: r["hits"] for r in c["top_callsites"]}
    assert top["vma_alloc_anon_folio_pmd"] == 67 and top["do_anonymous_page"] == 8188
    res = run_cli("info", str(BUNDLE))
    assert b"distinct stacks" in res.stdout and b"vma_alloc_anon_folio_pmd" in res.stdout


def test_cli_explain_and_report_show_call_sites(tmp_path):
    res = run_cli("explain", str(BUNDLE), "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["observed"]["blame"]["rows"]
    assert rows and all(r["callsite"] for r in rows)
    assert "python3 GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO order 0 @ " \
           "do_anonymous_page+0x1ff" in [r["label"] for r in rows]
    out = tmp_path / "r"
    res = run_cli("report", str(BUNDLE), "-o", str(out), "--plotlyjs", "cdn")
    assert res.returncode == 0, res.stderr
    md = (out / "report.md").read_text()
    assert "### Allocations by call site" in md and "the frames' names the tracer printed" in md
    assert "| 137,216 | 67 | 9 | Movable |" in md and "`vma_alloc_anon_folio_pmd`" in md


def test_streamed_explain_names_perf_call_sites():
    """perf.data -g through the streamed explain: the chains learned on the plan pass name the
    culprits, by the same rule as the caller table."""
    perf = TRACES / "perf-small" / "perf.data.gz"
    res = run_cli("explain", str(perf), "--symbols", str(KALLSYMS), "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["observed"]["blame"]["rows"]
    assert rows and all(r["callsite"] for r in rows)
    data = read_trace(perf)
    frame = pl.from_arrow(data.events).with_columns(pl.col("event").cast(pl.Utf8))
    table = caller_table(frame, Symbols.load(KALLSYMS).relocate(data.stats.kernel_reloc))
    assert {r["callsite"].split("+")[0] for r in rows} <= set(table["callsite"])


# ---------------------------------------------------------------------------------------------
# the one call-site rule


def test_one_rule_for_names_and_addresses():
    syms = Symbols.load(KALLSYMS)
    chain = [int(syms.addr[syms.names.index(n)]) + 5 for n in
             ("__traceiter_mm_page_alloc", "__alloc_pages", "get_page_from_freelist",
              "pte_alloc_one")]
    named = site(chain, None, syms)
    assert (named.function, named.name, named.addr) == ("pte_alloc_one", "pte_alloc_one+0x5",
                                                        chain[3])
    printed = ["trace_event_raw_event_mm_page_alloc+0xb7/0x110", "__alloc_pages+0x5/0x30",
               "get_page_from_freelist+0x5/0x90", "pte_alloc_one+0x5/0x40 [kvm]"]
    by_trace = site(None, printed, syms)
    assert (by_trace.function, by_trace.name, by_trace.addr) == (
        "pte_alloc_one [kvm]", "pte_alloc_one+0x5 [kvm]", None)
    assert site(chain, printed, None).addr == chain[3]
    assert callsite(chain) == f"{chain[0]:#x}"  # no names at all: perf kmem's first address
    assert frame_parts("0xffffffffc0a01234") == ("0xffffffffc0a01234", "0xffffffffc0a01234")
    assert site(None, ["__alloc_pages_noprof", "alloc_pages_noprof"], None).name == \
        "alloc_pages_noprof"  # only allocator frames: the outermost


def test_record_stacktrace_option():
    assert record_args(Path("b"), 1, [], 64, False, True, True) == [
        "-b", "64", "--stacktrace", "b", "1"]
    assert "--stacktrace" in (Path(__file__).resolve().parent.parent / "replay" / "record"
                              / "capture.sh").read_text()


def test_stack_columns_are_null_without_stacks(traces):
    data = read_trace(traces / "mixed-small")
    assert data.stats.stack_lines == 0 and data.stats.stacks == 0
    for name in ("stack_id", "callchain", "callchain_syms"):
        assert data.events[name].null_count == data.events.num_rows
    assert np.all(np.asarray(data.events["stack_id"].is_null()))
