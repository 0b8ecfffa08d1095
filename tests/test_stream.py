"""The streamed replay equals the in-memory one, to the number, on the bundled real traces;
and its pieces (causal order, look-ahead, trace.dat reader, metrics) equal their whole-trace
counterparts batch by batch."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from replay.commands.report_cmd import _json_default
from replay.engine.causal import causal_order
from replay.engine.causal_stream import CausalStream
from replay.engine.reconstruct import reconstruct
from replay.engine.simulate import Settings, emitted_table, simulate
from replay.pipeline import (
    explain_capture,
    explain_observed,
    explain_simulated,
    load,
    observe,
    simulate_run,
)
from replay.report.build import build
from replay.stream.observe import reconstruct_stream
from replay.stream.runs import StreamJob, report
from replay.stream.simulate_pass import simulate_stream
from replay.stream.trace import open_streamed, plan_machine
from replay.trace.schema import EV_PCPU_DRAIN, EV_ZONE_LOCKED

SMALL_CHUNKS = 7001  # chunks that cut check windows, sample points and refill runs


def _norm(d: dict) -> dict:
    d = json.loads(json.dumps(d, default=_json_default))
    d.pop("seconds", None)
    return d


def _in_memory_report(source: str, compare: bool, settings: Settings,
                      window=None) -> dict:
    run = load(source)
    capture = explain_capture(run, window)
    recon, samples = observe(run, follow="trace" if compare else "requested", capture=capture)
    explained, state = explain_observed(run, recon, capture, window)
    explain = {"observed": explained}
    sim = None
    if compare:
        sc = explain_capture(run, window)
        sim = simulate_run(run, settings, capture=sc)
        explain["simulated"] = explain_simulated(run, sim, sc, window, state.pid_comm)
    return build(run, recon, samples, sim, settings.as_dict(), window,
                 "compare" if compare else "report", explain)


def _streamed_report(source: str, compare: bool, settings: Settings, window=None,
                     prefer_binary: bool = False, threads: bool = True) -> dict:
    with StreamJob(source, follow="trace" if compare else "requested", window=window,
                   chunk_rows=SMALL_CHUNKS, prefer_binary=prefer_binary) as job:
        return report(job, settings, compare, threads=threads)[0]


@pytest.mark.parametrize("bundle,compare,sets,window", [
    ("mixed-small", True, [], None),
    ("k612-frag", True, [], None),
    ("numa-frag", False, [], None),
    ("frag-a", True, ["pageblock_order=7", "cpus=1"], (3.9, 4.6)),
    ("stacks-small", False, [], None),  # kernel stacks: callers table, explain's call sites
    ("stacks-small", True, [], (9168.2, 9168.7)),
])
def test_streamed_report_equals_in_memory(traces, bundle, compare, sets, window):
    source = str(traces / bundle)
    settings = Settings.parse(sets)
    want = _norm(_in_memory_report(source, compare, settings, window))
    got = _norm(_streamed_report(source, compare, settings, window))
    assert got == want


@pytest.mark.slow
@pytest.mark.parametrize("bundle", ["compact-frag", "i386-frag", "perf-small"])
def test_streamed_compare_equals_in_memory_more_bundles(traces, bundle):
    source = str(traces / bundle)
    want = _norm(_in_memory_report(source, True, Settings()))
    got = _norm(_streamed_report(source, True, Settings(), threads=False))
    assert got == want


def test_streamed_trace_dat_equals_in_memory(traces):
    """A bundle with trace.dat and text: the stream reads the trace.dat; so does load() when
    given the file."""
    want = _norm(_in_memory_report(str(traces / "mixed-small" / "trace.dat.gz"), True,
                                   Settings()))
    got = _norm(_streamed_report(str(traces / "mixed-small"), True, Settings(),
                                 prefer_binary=True))
    want["trace"].pop("source")
    got["trace"].pop("source")
    assert got == want


@pytest.mark.parametrize("chunk", [997, 1 << 18])
def test_streamed_reconstruct_and_simulate_equal_in_memory(traces, chunk):
    source = str(traces / "compact-frag")
    run = load(source)
    r = reconstruct(run.data, run.bundle)
    s = simulate(run.data, run.bundle, Settings.parse(["thp_defrag=always"]))
    tr = open_streamed(source, prefer_binary=False)
    try:
        m, _, choice = plan_machine(tr, tr.bundle, None, None, "trace")
        rs = reconstruct_stream(tr, m, choice, chunk_rows=chunk)
        parts = []

        def sink(out, c, seq0):
            parts.append(emitted_table(out._replace(req=out.req - c.c0), c.e,
                                       s.machine.pageblock_order, seq0))

        ss = simulate_stream(tr, Settings.parse(["thp_defrag=always"]), sinks=(sink,),
                             chunk_rows=chunk)
    finally:
        tr.close()
    assert rs.as_dict() == r.as_dict()
    assert all(np.array_equal(a, b) for a, b in zip(rs.state, r.state, strict=True))
    assert ss.counters == s.counters
    events = pa.concat_tables(parts)
    assert events.num_rows == s.events.num_rows
    for name in ("seq", "ts_ns", "cpu", "pid", "pfn", "order", "migratetype", "percpu_refill"):
        assert events[name].equals(s.events[name]), name


def _skewed_trace(seed: int, n: int = 4000):
    """Two CPUs taking and draining a few pages with clock skew: contradictions to repair."""
    rng = np.random.default_rng(seed)
    ev = rng.choice([0, 1, EV_ZONE_LOCKED, EV_PCPU_DRAIN], size=n, p=[0.2, 0.2, 0.35, 0.25])
    pfn = rng.integers(0, 40, size=n)
    cpu = rng.integers(0, 2, size=n)
    ts = np.cumsum(rng.integers(0, 900, size=n))
    return ev.astype(np.int64), pfn.astype(np.int64), cpu.astype(np.int64), ts.astype(np.int64)


@pytest.mark.parametrize("seed", range(6))
def test_causal_stream_equals_causal_order(seed):
    ev, pfn, cpu, ts = _skewed_trace(seed)
    want = causal_order(ev, pfn, cpu, ts)
    assert want is not None  # the trace has contradictions to repair
    rng = np.random.default_rng(100 + seed)
    cuts = np.sort(rng.choice(np.arange(1, len(ev)), size=40, replace=False))
    cs = CausalStream(64)
    got = []
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(ev)], strict=True):
        got.append(cs.push(ev[a:b], pfn[a:b], cpu[a:b], ts[a:b]))
    got.append(cs.finish())
    got = np.concatenate(got)
    assert np.array_equal(got, want)
    assert cs.moved == int(np.count_nonzero(want != np.arange(len(want))))


@pytest.mark.parametrize("name", ["mixed-small-30p.v6.dat.gz", "mixed-small-30p.v7-zlib.dat",
                                  "mixed-small-30p.v7-none.dat.zst"])
def test_tracedat_stream_equals_read_tracedat(data_dir, tmp_path, monkeypatch, name):
    import replay.trace.tracedat_stream as ts
    from replay.trace.tracedat import read_tracedat

    monkeypatch.setattr(ts, "PAGES_PER_READ", 3)
    want = read_tracedat(data_dir / name)
    r = ts.TraceDatReader(data_dir / name, tmp_dir=str(tmp_path), batch_records=700)
    got = pa.concat_tables(list(r.batches())).unify_dictionaries()
    lost = r.lost_table()
    assert got.num_rows == want.events.num_rows
    for col in want.events.column_names:
        a, b = want.events[col], got[col]
        if pa.types.is_dictionary(a.type):
            a, b = a.cast(pa.string()), b.cast(pa.string())
        assert a.equals(b), col
    assert pa.concat_tables(r.markers).equals(want.markers)
    assert lost.equals(want.lost)
    w, g = want.stats.as_dict(), r.stats.as_dict()
    w.pop("source")
    g.pop("source")
    assert g == w


def test_tracedat_stream_keeps_what_precedes_a_truncation(data_dir, tmp_path):
    import gzip

    from replay.trace.tracedat import read_tracedat
    from replay.trace.tracedat_stream import TraceDatReader

    raw = gzip.decompress((data_dir / "mixed-small-30p.v6.dat.gz").read_bytes())
    cut = tmp_path / "cut.dat"
    # kallsyms fills most of the file: cut inside CPU 1's ring-buffer data, near the end
    cut.write_bytes(raw[: len(raw) - 60_000])
    want = read_tracedat(cut)
    r = TraceDatReader(cut, batch_records=500)
    rows = sum(t.num_rows for t in r.batches())
    assert rows == want.events.num_rows > 0
    assert r.stats.error == want.stats.error and "truncated" in r.stats.error


def test_incremental_metrics_equal_polars(traces):
    from replay.commands.simulate_cmd import traced_counts
    from replay.metrics.fallbacks import fallback_summary, pcp_summary
    from replay.metrics.incremental import EventMetrics
    from replay.metrics.peers import live_pages, page_summary, per_process
    from replay.report.build import events_frame, fallback_events
    from replay.stream.columns import CommTable, batch_columns
    from replay.stream.slots import PfnSlots

    run = load(traces / "frag-a")
    table = run.data.events.slice(1234)
    df = events_frame(table)
    m, comms, slots = EventMetrics(), CommTable(), PfnSlots(1 << 18)
    for batch in table.to_batches(max_chunksize=9999):
        cols, _ = batch_columns(batch, comms)
        m.feed(cols, slots.slots(cols["pfn"]))
    assert m.fallback_summary() == fallback_summary(df)
    assert m.pcp_summary() == pcp_summary(df)
    assert m.per_process_frame(comms.names).to_dicts() == per_process(df).to_dicts()
    assert m.page_summary() == page_summary(df)
    assert m.live_pages() == live_pages(df).height
    assert m.traced_counts() == traced_counts(table)
    assert m.fallback_events() == fallback_events(df)
