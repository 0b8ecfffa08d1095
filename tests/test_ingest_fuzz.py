"""Property tests: no generated line crashes the parser, and good lines parse back exactly."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay.trace.ingest import read_trace

FIXTURE_OK = [HealthCheck.function_scoped_fixture]
COMM_CHARS = st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="\n")


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_random_bytes_never_crash(tmp_path, chunks):
    p = tmp_path / "t.txt"
    p.write_bytes(b"\n".join(c.replace(b"\x00", b"") for c in chunks) + b"\nx\n")
    try:
        d = read_trace(p)
    except Exception as exc:  # only clean, user-facing errors are allowed
        from replay.errors import PageReplayError

        assert isinstance(exc, PageReplayError)
        return
    st_ = d.stats
    assert st_.lines >= st_.events


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    # longer than a kernel comm (15 characters) to shift the columns, but never with '#' in
    # the line's first column: the kernel cannot print that, and it is how comments start
    comm=st.text(COMM_CHARS, min_size=1, max_size=20).filter(
        lambda s: s.strip() == s and not (len(s) >= 16 and s[0] == "#")),
    pid=st.integers(0, 4_000_000),
    cpu=st.integers(0, 999),
    secs=st.integers(0, 10**7),
    usecs=st.integers(0, 999_999),
    pfn=st.integers(1, 2**40),
    order=st.integers(0, 10),
    mt=st.integers(0, 4),
    flags=st.sampled_from(["", "d..1.", ".....", "dNs1.", "b....", "..Zff", "d..1", "...."]),
)
def test_generated_lines_parse_back(tmp_path, comm, pid, cpu, secs, usecs, pfn, order, mt, flags):
    line = (f"{comm:>16}-{pid:<7} [{cpu:03d}] {flags + ' ' if flags else ''}{secs:5d}.{usecs:06d}: "
            f"mm_page_pcpu_drain: page=00000000dc8c03bd pfn={pfn:#x} order={order} "
            f"migratetype={mt}\n")
    p = tmp_path / "t.txt"
    p.write_text(line)
    d = read_trace(p)
    rows = d.events.to_pylist()
    assert len(rows) == 1, (line, d.stats.bad_samples)
    r = rows[0]
    assert (r["comm"], r["pid"], r["cpu"], r["pfn"], r["order"], r["migratetype"]) == (
        None if comm == "<...>" else comm, pid, cpu, pfn, order, mt)
    assert r["ts_ns"] == secs * 10**9 + usecs * 1000
