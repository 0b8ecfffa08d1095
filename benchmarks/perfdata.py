"""Benchmark: read_perfdata() events/s against `perf script` on the same perf.data.

Usage: python benchmarks/perfdata.py [PERF_DATA] [--copies N] [--repeat N] [--compress]

Default input: traces/perf-small/perf.data.gz (`perf kmem --page record`, 66,428 samples with
call chains), replicated N times (default 40: 2.66 M samples) into one file-mode perf.data: the
same records, each copy's sample times shifted past the previous copy's (FINISHED_ROUND kept),
so perf script and the reader see one long, valid recording. `--compress` re-encodes the
records as PERF_RECORD_COMPRESSED (zstd level 1, 256 KiB chunks, as `perf record -z`).

read_perfdata is timed on the plain file (best of N after a warm-up run that loads the numba
kernels; large files are parsed on two threads); `perf script -i FILE > /dev/null` (its
default fields, call chains included) on the same file (best of N). Wall and CPU times are
both printed: on a shared machine the CPU time (user + system, all threads) is the steadier
number, and the ratio from the same run is the one to read.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# benchmarks/replay.py is named like the package: keep this folder off the import path
sys.path[:] = [p for p in sys.path
               if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from replay.trace.perfdata import _index, read_perfdata  # noqa: E402
from replay.trace.perfheader import (  # noqa: E402
    REC_FINISHED_ROUND,
    REC_SAMPLE,
    SAMPLE_IDENTIFIER,
    SAMPLE_IP,
    SAMPLE_TID,
    SAMPLE_TIME,
    parse_file_header,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "traces/perf-small/perf.data.gz"


def _feature_sections(data: bytes, data_end: int) -> dict[int, bytes]:
    """A file-mode perf.data's feature sections by feature bit."""
    bitmap = int.from_bytes(data[72:104], "little")
    bits = [b for b in range(256) if bitmap >> b & 1]
    out = {}
    for k, bit in enumerate(bits):
        off, size = struct.unpack_from("<QQ", data, data_end + 16 * k)
        out[bit] = data[off:off + size]
    return out


def _features(sections: dict[int, bytes], new_data_end: int) -> bytes:
    """The feature table (in bit order, as perf reads it) and sections, after the data."""
    at = new_data_end + 16 * len(sections)
    table, blobs = b"", b""
    for bit in sorted(sections):
        table += struct.pack("<QQ", at + len(blobs), len(sections[bit]))
        blobs += sections[bit]
    return table + blobs


def _with_features(head: bytearray, body: bytes, sections: dict[int, bytes]) -> bytes:
    bitmap = sum(1 << bit for bit in sections)
    head[72:104] = bitmap.to_bytes(32, "little")
    data_start = struct.unpack_from("<Q", head, 40)[0]
    struct.pack_into("<QQ", head, 40, data_start, len(body))
    return bytes(head) + body + _features(sections, data_start + len(body))


def replicate(data: bytes, copies: int) -> bytes:
    """The records `copies` times over, sample times shifted by the recording's span each time
    (every sample type must hold IP, TID and TIME after the IDENTIFIER, as perf record's)."""
    h = parse_file_header(data)
    bits = {a.sample_type & (SAMPLE_IDENTIFIER | SAMPLE_IP | SAMPLE_TID | SAMPLE_TIME)
            for a in h.attrs}
    assert bits == {SAMPLE_IDENTIFIER | SAMPLE_IP | SAMPLE_TID | SAMPLE_TIME}, bits
    buf = np.frombuffer(data, np.uint8)
    off, size, typ, _misc, problem = _index(buf, h.data_start, h.data_end, "the input")
    assert problem is None, problem
    times = np.array([struct.unpack_from("<Q", data, o + 32)[0] for o in off[typ == REC_SAMPLE]])
    span = int(times.max() - times.min()) + 1000
    body = data[h.data_start:h.data_end]
    keep = (typ == REC_SAMPLE) | (typ == REC_FINISHED_ROUND)
    pieces = [np.frombuffer(body, np.uint8)]
    rec = np.concatenate([np.arange(o, o + s) for o, s in zip(off[keep], size[keep],
                                                             strict=True)])
    one = buf[rec].copy()
    starts = np.cumsum(np.concatenate([[0], size[keep][:-1]]))
    is_sample = typ[keep] == REC_SAMPLE
    for k in range(1, copies):
        t = one.copy()  # add k * span to the u64 time at +32 of every sample, bytewise
        idx = starts[is_sample] + 32
        vals = np.zeros(idx.size, np.uint64)
        for b in range(8):
            vals |= t[idx + b].astype(np.uint64) << np.uint64(8 * b)
        vals += np.uint64(k * span)
        for b in range(8):
            t[idx + b] = ((vals >> np.uint64(8 * b)) & np.uint64(0xFF)).astype(np.uint8)
        pieces.append(t)
    new_body = np.concatenate(pieces).tobytes()
    return _with_features(bytearray(data[:h.data_start]), new_body,
                          _feature_sections(data, h.data_end))


def compress(data: bytes, chunk: int = 256 << 10) -> bytes:
    """The data section re-encoded as PERF_RECORD_COMPRESSED records (zstd frames over whole
    records, split below 64 KiB per record), FINISHED_ROUND records left between them."""
    import zstandard

    h = parse_file_header(data)
    buf = np.frombuffer(data, np.uint8)
    off, size, typ, _misc, _ = _index(buf, h.data_start, h.data_end, "the input")
    cctx = zstandard.ZstdCompressor(level=1)
    out, pending = [], []

    def flush() -> None:
        if not pending:
            return
        frame = cctx.compress(b"".join(pending))
        for i in range(0, len(frame), 65000):
            part = frame[i:i + 65000]
            out.append(struct.pack("<IHH", 81, 0, 8 + len(part)) + part)
        pending.clear()

    total = 0
    for o, s, t in zip(off, size, typ, strict=True):
        record = data[o:o + s]
        if t == REC_FINISHED_ROUND:
            flush()
            total = 0
            out.append(record)
            continue
        pending.append(record)
        total += s
        if total >= chunk:
            flush()
            total = 0
    flush()
    sections = _feature_sections(data, h.data_end)
    # HEADER_COMPRESSED: version 0, type 1 (zstd), level 1, ratio, mmap_len (perf's buffer for
    # one record's inflated data)
    sections[27] = struct.pack("<IIIII", 0, 1, 1, 30, 1 << 20)
    return _with_features(bytearray(data[:h.data_start]), b"".join(out), sections)


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def best_cpu(repeat: int, fn) -> float:
    """Smallest CPU time (all threads of this process) of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("perf_data", nargs="?", default=str(DEFAULT))
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compress", action="store_true")
    args = ap.parse_args()
    raw = Path(args.perf_data).read_bytes()
    raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "perf.data"
        data = replicate(raw, args.copies) if args.copies > 1 else raw
        if args.compress:
            data = compress(data)
        path.write_bytes(data)
        print(f"input: {args.perf_data} x {args.copies}{' (zstd)' if args.compress else ''}: "
              f"{len(data) / 1e6:.1f} MB")
        events = read_perfdata(path).stats.events  # warm-up: numba kernels load
        ours = best_of(args.repeat, lambda: read_perfdata(path))
        cpu = best_cpu(args.repeat, lambda: read_perfdata(path))
        print(f"read_perfdata: {events:,} events in {ours:.3f} s = {events / ours / 1e6:.2f} M "
              f"events/s (CPU time {cpu:.3f} s = {events / cpu / 1e6:.2f} M events per CPU "
              "second)")
        if shutil.which("perf") is None:
            print("perf is not installed: no ratio")
            return
        cmd = ["perf", "script", "-i", str(path)]
        with open(os.devnull, "w") as null:
            theirs = best_of(args.repeat, lambda: subprocess.run(
                cmd, stdout=null, stderr=subprocess.DEVNULL, check=True))
            before = os.times()
            subprocess.run(cmd, stdout=null, stderr=subprocess.DEVNULL, check=True)
            after = os.times()
        their_cpu = (after.children_user - before.children_user
                     + after.children_system - before.children_system)
        print(f"perf script:   {events:,} events in {theirs:.3f} s = "
              f"{events / theirs / 1e6:.2f} M events/s (CPU time {their_cpu:.3f} s)")
        print(f"ratio: {theirs / ours:.1f}x perf script (wall), {their_cpu / cpu:.1f}x (CPU)")


if __name__ == "__main__":
    main()
