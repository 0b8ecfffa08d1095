"""Memory stays bounded whatever the trace's length: a real trace made several times longer
(its middle repeated, later in time) is replayed in a child process whose peak RSS is read."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

_TS = re.compile(rb"(\s)(\d+)\.(\d{6}):")
_MARK = b"kcapture: "


def longer_bundle(bundle: Path, out: Path, copies: int) -> int:
    """A copy of `bundle` whose trace repeats the part between the start snapshot's last
    marker and the end snapshot's first `copies` times, each copy later in time; returns the
    number of lines written."""
    out.mkdir(parents=True)
    for f in bundle.iterdir():
        if f.is_file() and not f.name.startswith("trace."):
            shutil.copy(f, out / f.name)
    with gzip.open(bundle / "trace.txt.gz", "rb") as fh:
        lines = fh.read().splitlines(keepends=True)
    marks = [i for i, ln in enumerate(lines) if _MARK in ln]
    a = max(i for i in marks if b"start." in lines[i]) + 1
    b = min(i for i in marks if b"end." in lines[i])
    ts = [_TS.search(ln) for ln in lines[a:b]]
    first = next(int(m[2]) * 10**6 + int(m[3]) for m in ts if m)
    last = next(int(m[2]) * 10**6 + int(m[3]) for m in reversed(ts) if m)
    span = last - first + 1

    def shifted(line: bytes, by: int) -> bytes:
        def sub(m: re.Match) -> bytes:
            t = int(m[2]) * 10**6 + int(m[3]) + by
            return m[1] + b"%d.%06d:" % divmod(t, 10**6)
        return _TS.sub(sub, line, count=1)

    n = 0
    with open(out / "trace.txt", "wb") as fh:
        fh.writelines(lines[:b])
        n += b
        for k in range(1, copies):
            fh.writelines(shifted(ln, k * span) for ln in lines[a:b])
            n += b - a
        fh.writelines(shifted(ln, (copies - 1) * span) for ln in lines[b:])
        n += len(lines) - b
    return n


def peak_rss_mb(args: list[str]) -> float:
    """Peak RSS of `python -m replay ARGS` (its own ru_maxrss, reaped here)."""
    with open(os.devnull, "wb") as null:
        pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "replay", *args],
                             os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null.fileno(), 1),
                                                       (os.POSIX_SPAWN_DUP2, null.fileno(), 2)])
        _, status, ru = os.wait4(pid, 0)
    assert os.waitstatus_to_exitcode(status) in (0, 1), args
    return ru.ru_maxrss / 1024


@pytest.mark.slow
def test_compare_memory_does_not_grow_with_the_trace(traces, tmp_path):
    short = tmp_path / "x2"
    long = tmp_path / "x14"
    n_short = longer_bundle(traces / "mixed-small", short, 2)
    n_long = longer_bundle(traces / "mixed-small", long, 14)
    assert n_long > 2_000_000 > n_short
    rss = {name: peak_rss_mb(["compare", str(b), "-o", str(tmp_path / f"out-{name}"),
                              "--plotlyjs", "cdn"])
           for name, b in (("short", short), ("long", long))}
    assert rss["long"] < 1024
    # seven times the events, the same memory (the spool is on disk, not in RSS)
    assert rss["long"] - rss["short"] < 100, rss
