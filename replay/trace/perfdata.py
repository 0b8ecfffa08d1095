"""Read perf.data natively (no perf binary): kmem and compaction tracepoint samples, call chains.

`perf kmem --page record` and `perf record -e 'kmem:mm_page_*' [-g] [-z] [-o -]` write the
tracepoint's payload (PERF_SAMPLE_RAW) into each sample; the formats that give its fields are
in the tracing data (a feature section, or a record in pipe mode). The reading, in passes over
flat arrays (perfscan.py): index the records, inflate PERF_RECORD_COMPRESSED (zstd, one stream
over all of them), parse each sample's pid/tid, time, CPU, call chain and payload, put the
records in the order perf's ordered-events queue delivers them (perf script's order), give
each sample the comm its thread had at that point (PERF_RECORD_COMM, FORK), and gather the
event columns as for trace.dat (tracerecords.py). Call chains keep their kernel part, innermost
first, as a list column with a stack id per distinct chain.

Accounting (TraceStats): `lines` counts records (as perf report --stats' TOTAL events),
`events` kmem/compaction samples, `other_events` other samples by event name, `bad_lines`
samples that cannot be decoded, `lost_lines` PERF_RECORD_LOST and LOST_SAMPLES records,
`header_lines` every other record (COMM, MMAP, FORK, FINISHED_ROUND, COMPRESSED, ...).
"""

from __future__ import annotations

import mmap
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from replay.errors import InputError
from replay.trace.perfheader import (
    PIPE_HEADER_SIZE,
    REC_COMM,
    REC_COMPRESSED,
    REC_COMPRESSED2,
    REC_FORK,
    REC_HEADER_ATTR,
    REC_HEADER_FEATURE,
    REC_ID_INDEX,
    REC_LOST,
    REC_LOST_SAMPLES,
    REC_MMAP,
    REC_MMAP2,
    REC_SAMPLE,
    REC_TRACING_DATA,
    SAMPLE_CALLCHAIN,
    SAMPLE_CPU,
    SAMPLE_ID,
    SAMPLE_IDENTIFIER,
    SAMPLE_STREAM_ID,
    PerfAttr,
    PerfHeader,
    apply_feature,
    check_magic,
    looks_like_perfdata,
    parse_attr,
    parse_file_header,
)
from replay.trace.perfscan import (
    comms_at,
    delivery_order,
    first_seen_ids,
    gather_chains,
    index_records,
    parse_records,
    splice_records,
)
from replay.trace.result import TraceData, TraceStats
from replay.trace.schema import EVENTS_SCHEMA, LOST_SCHEMA
from replay.trace.sources import read_whole
from replay.trace.tracefmt import FormatError, TraceFile, read_tracing_data
from replay.trace.tracerecords import Records, as_run, common_fields, record_tables

__all__ = ["looks_like_perfdata", "read_perfdata"]

_MAX_DECOMPRESSED = 1 << 36  # refuse a zstd stream claiming more than 64 GiB
PID_MAX_LIMIT = 1 << 22  # include/linux/threads.h PID_MAX_LIMIT on 64-bit
IDLE_COMM = "swapper"  # perf's name for tid 0 (machine__idle_thread)


@dataclass
class _Stream:
    """The logical record stream: every record in file order, compressed ones inflated in
    place, all in one byte buffer."""

    buf: np.ndarray
    off: np.ndarray
    size: np.ndarray
    typ: np.ndarray
    misc: np.ndarray
    error: str | None = None
    containers: int = 0  # PERF_RECORD_COMPRESSED records (replaced by what they hold)


def _index(buf: np.ndarray, start: int, end: int, what: str) -> tuple[np.ndarray, ...]:
    """Offsets, sizes, types and misc of the records in buf[start:end], and a problem, if any."""
    bound = max(0, end - start) // 8 + 1
    off, size = np.empty(bound, np.int64), np.empty(bound, np.int64)
    typ, misc = np.empty(bound, np.int32), np.empty(bound, np.int32)
    n, stop, status, _ = index_records(buf, start, end, off, size, typ, misc)
    problem = None
    if status == 1:
        problem = f"{what} ends at byte {end} inside a record (from byte {stop})"
        if end - stop >= 16 and _read_u32(buf, stop) in (REC_COMPRESSED, REC_COMPRESSED2):
            # keep the cut compressed record: its complete zstd blocks still inflate
            off[n], size[n], typ[n], misc[n] = stop, end - stop, _read_u32(buf, stop), 0
            n += 1
    elif status == 2:
        problem = f"{what} has a record with an impossible size at byte {stop}"
    return off[:n], size[:n], typ[:n], misc[:n], problem


def _read_u32(buf: np.ndarray, pos: int) -> int:
    return int.from_bytes(buf[pos : pos + 4].tobytes(), "little")


class _Growing:
    """A byte buffer appended to, doubling when full: the file's bytes, then what the
    compressed records inflate to, with no join or second copy."""

    def __init__(self, head: np.ndarray, expect: int) -> None:
        self.buf = np.empty(head.size + max(expect, 1 << 20), np.uint8)
        self.buf[: head.size] = head
        self.used = head.size

    def append(self, chunk: bytes) -> None:
        end = self.used + len(chunk)
        if end > self.buf.size:
            bigger = np.empty(max(end, 2 * self.buf.size), np.uint8)
            bigger[: self.used] = self.buf[: self.used]
            self.buf = bigger
        self.buf[self.used : end] = np.frombuffer(chunk, np.uint8)
        self.used = end


def _inflate(top: np.ndarray, off: np.ndarray, size: np.ndarray, typ: np.ndarray,
             rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Decompress the PERF_RECORD_COMPRESSED payloads `rows` as one zstd stream (a frame may
    span records) into a buffer after the file's own bytes. Returns the buffer and, per
    compressed record, the inflated size so far."""
    import zstandard

    payload = int(size[rows].sum())
    out = _Growing(top, 32 * payload)  # perf -z compresses about 30:1
    dobj = zstandard.ZstdDecompressor().decompressobj()
    ends = np.zeros(rows.size, np.int64)
    problem = None
    raw = top.data
    for j, i in enumerate(rows):
        start, stop = int(off[i]) + 8, int(off[i] + size[i])
        if typ[i] == REC_COMPRESSED2:  # u64 data_size, then the (8-byte padded) payload
            data_size = int.from_bytes(raw[start : start + 8], "little")
            start, stop = start + 8, min(stop, start + 8 + data_size)
        chunk = raw[start:stop]
        try:
            while chunk:
                out.append(dobj.decompress(chunk))
                chunk = dobj.unused_data if dobj.eof else b""
                if dobj.eof:  # a frame ended inside this record: the next one starts here
                    dobj = zstandard.ZstdDecompressor().decompressobj()
        except zstandard.ZstdError as exc:
            problem = f"compressed record {j} at byte {int(off[i])} does not inflate ({exc})"
            ends[j:] = out.used - top.size
            break
        if out.used - top.size > _MAX_DECOMPRESSED:
            problem = "the compressed records inflate to more than 64 GiB"
            ends[j:] = out.used - top.size
            break
        ends[j] = out.used - top.size
    return out.buf[: out.used], ends, problem


def _stream(data: bytes, header: PerfHeader) -> _Stream:
    """Index the records; inflate compressed ones and splice them in after their container."""
    top = np.frombuffer(data, np.uint8)
    off, size, typ, misc, problem = _index(top, header.data_start, header.data_end,
                                           "the perf.data record stream")
    containers = np.flatnonzero((typ == REC_COMPRESSED) | (typ == REC_COMPRESSED2))
    if not containers.size:
        return _Stream(top, off, size, typ, misc, problem)
    buf, ends, zproblem = _inflate(top, off, size, typ, containers)
    doff, dsize, dtyp, dmisc, dproblem = _index(buf, len(data), buf.size,
                                                "the decompressed records")
    if dproblem and not zproblem and ends.size and dsize.size:
        dproblem = dproblem.replace("the decompressed records", "the compressed records")
    n = off.size - containers.size + doff.size
    out = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int32),
           np.empty(n, np.int32))
    splice_records(off, size, typ, misc, doff, dsize, dtyp, dmisc, ends, len(data), *out)
    return _Stream(buf, *out, problem or zproblem or dproblem, int(containers.size))


def _user_records(s: _Stream, header: PerfHeader) -> None:
    """Attributes, tracing data and features that arrive as records (pipe mode, perf inject)."""
    raw = s.buf.data
    for i in np.flatnonzero(np.isin(s.typ, (REC_HEADER_ATTR, REC_TRACING_DATA,
                                            REC_HEADER_FEATURE))):
        start, end = int(s.off[i]), int(s.off[i] + s.size[i])
        t = int(s.typ[i])
        try:
            if t == REC_HEADER_ATTR:
                attr_size = struct.unpack_from("<I", raw, start + 12)[0] or 64
                attr = parse_attr(raw[start + 8 : start + 8 + attr_size])
                nids = max(0, (end - start - 8 - attr_size) // 8)
                attr.ids = list(struct.unpack_from(f"<{nids}Q", raw, start + 8 + attr_size))
                header.attrs.append(attr)
            elif t == REC_TRACING_DATA:
                blob_size = struct.unpack_from("<I", raw, start + 8)[0]
                header.tracing = read_tracing_data(raw[end : end + blob_size],
                                                   "the perf.data tracing data")
            else:
                feat = struct.unpack_from("<Q", raw, start + 8)[0]
                apply_feature(header, int(feat), raw[start + 16 : end])
        except (FormatError, struct.error) as exc:
            header.error = header.error or f"record {t} at byte {start} is damaged ({exc})"


def _id_mode(attrs: list[PerfAttr]) -> tuple[int, int, int]:
    """How records name their attribute: (mode, id position in a sample, from a trailer's end).
    perf's rule (evlist__valid_sample_type): with several events, each sample must carry an
    IDENTIFIER, or all events share one sample_type with PERF_SAMPLE_ID."""
    if attrs and all(a.sample_type & SAMPLE_IDENTIFIER for a in attrs):
        return 1, 0, 1
    if len(attrs) <= 1:
        return 0, 0, 0
    types = {a.sample_type for a in attrs}
    st = types.pop()
    if types or not st & SAMPLE_ID:
        raise FormatError("the perf.data's events have different sample types and no sample "
                          "IDENTIFIER: their samples cannot be told apart")
    id_pos = sum(1 for bit in (1, 2, 4, 8) if st & bit)
    is_pos = 1 + sum(1 for bit in (SAMPLE_CPU, SAMPLE_STREAM_ID) if st & bit)
    return 2, id_pos, is_pos


@dataclass
class _Parsed:
    """parse_records' per-record output, and the compact payloads and kernel chains."""

    attr: np.ndarray
    time: np.ndarray
    cpu: np.ndarray
    pid: np.ndarray
    tid: np.ndarray
    type_id: np.ndarray
    flags: np.ndarray
    pc: np.ndarray
    cpid: np.ndarray
    status: np.ndarray
    payload_at: np.ndarray
    payload_len: np.ndarray
    chain_at: np.ndarray
    chain_len: np.ndarray
    stack: np.ndarray
    payload: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    chains: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    n_stacks: int = 0


PARALLEL_MIN_RECORDS = 200_000  # below this, one thread parses everything


def _parse(s: _Stream, attrs: list[PerfAttr], tf: TraceFile | None,
           threads: int = 2) -> _Parsed:
    """parse_records over the whole stream: in `threads` contiguous parts at once (the kernel
    releases the GIL) when the file is large, their payloads, chains and stack numbers then
    joined as if one pass had read them."""
    n = s.off.size
    mode, id_pos, is_pos = _id_mode(attrs)
    pairs = sorted((i, k) for k, a in enumerate(attrs) for i in a.ids)
    ids = np.array([i for i, _ in pairs], np.int64)
    id_attr = np.array([k for _, k in pairs], np.int64)
    attrs = attrs or [PerfAttr(0, 0, 0, 0, 0)]
    st = np.array([a.sample_type for a in attrs], np.int64)
    rf = np.array([a.read_format for a in attrs], np.int64)
    sid_all = np.array([a.sample_id_all for a in attrs], np.bool_)
    tp = np.array([a.is_tracepoint for a in attrs], np.bool_)
    ctype, cflags, cpc, cpid, end = common_fields(tf.formats if tf else {})
    common = np.array([ctype.offset, min(ctype.size, 4), cflags.offset, cpc.offset,
                       cpid.offset, min(cpid.size, 4), end], np.int64)
    p = _Parsed(*(np.empty(n, t) for t in (
        np.int32, np.int64, np.int32, np.int32, np.int32, np.int32, np.uint8, np.uint8,
        np.int32, np.int8, np.int64, np.int32, np.int64, np.int32, np.int32)))
    buf64 = s.buf[: s.buf.size - s.buf.size % 8].view(np.uint64)
    buf32 = s.buf[: s.buf.size - s.buf.size % 4].view(np.uint32)
    fixed = (s.buf, buf64, buf32)
    tables = (ids, id_attr, st, rf, sid_all, tp, mode, id_pos, is_pos, common)

    k = max(1, min(threads, n // PARALLEL_MIN_RECORDS))
    bounds = [n * j // k for j in range(k + 1)]
    # one payload and one chain buffer, a region per part sized by its records' bytes (an
    # upper bound: payloads and chains are parts of records; inflated records are not
    # contiguous in the stream); np.empty: untouched pages cost nothing
    spans = [(int(s.size[lo:hi].sum()) + 15) & ~7 for lo, hi in zip(bounds[:-1], bounds[1:],
                                                                    strict=True)]
    pay_base = np.concatenate([[0], np.cumsum(spans)]).astype(np.int64)
    chain_base = pay_base // 8 + np.arange(k + 1)
    payload = np.empty(int(pay_base[-1]), np.uint8)
    chains = np.empty(int(chain_base[-1]) + 1, np.uint64)

    def part(j: int) -> tuple[int, int, int]:
        lo, hi = bounds[j], bounds[j + 1]
        pay = payload[pay_base[j]: pay_base[j + 1]]
        slots = 1 << max(10, int(2 * (hi - lo)).bit_length())  # zeroed lazily
        r = slice(lo, hi)
        used, nchain, n_stacks, _ = parse_records(
            *fixed, s.off[r], s.size[r], s.typ[r], s.misc[r], *tables, p.attr[r], p.time[r],
            p.cpu[r], p.pid[r], p.tid[r], p.type_id[r], p.flags[r], p.pc[r], p.cpid[r],
            p.status[r], pay, pay[: pay.size & ~3].view(np.uint32), p.payload_at[r],
            p.payload_len[r], chains[chain_base[j]: chain_base[j + 1]], p.chain_at[r],
            p.chain_len[r], p.stack[r], np.zeros(slots, np.int64), np.zeros(slots, np.int64),
            np.zeros(slots, np.int32))
        return used, nchain, n_stacks

    if k == 1:
        results = [part(0)]
    else:
        with ThreadPoolExecutor(k) as pool:
            results = list(pool.map(part, range(k)))
    _join_parts(p, bounds, pay_base, chain_base, results, chains)
    p.payload = payload[: int(pay_base[k - 1]) + results[-1][0]]
    p.chains = chains[: int(chain_base[k - 1]) + results[-1][1]]
    return p


def _join_parts(p: _Parsed, bounds: list[int], pay_base: np.ndarray, chain_base: np.ndarray,
                results: list[tuple[int, int, int]], chains: np.ndarray) -> None:
    """Make the parts' payload and chain positions absolute in the shared buffers, and number
    the distinct chains across parts (a chain seen in an earlier part keeps its number and
    its first copy)."""
    if len(results) == 1:
        p.n_stacks = results[0][2]
        return
    known: dict[bytes, tuple[int, int]] = {}  # chain -> (number, position)
    for j, (lo, hi, (_, _, n_stacks)) in enumerate(zip(bounds[:-1], bounds[1:], results,
                                                       strict=True)):
        r = slice(lo, hi)
        p.payload_at[r][p.payload_at[r] >= 0] += pay_base[j]
        with_chain = np.flatnonzero(p.chain_at[r] >= 0)
        local = p.stack[r][with_chain]
        first = np.full(n_stacks, -1, np.int64)
        first[local[::-1]] = with_chain[::-1]  # the first record of each of the part's stacks
        number = np.empty(n_stacks, np.int32)
        where = np.empty(n_stacks, np.int64)
        for sid in range(n_stacks):
            i = lo + int(first[sid])
            at, length = int(chain_base[j] + p.chain_at[i]), int(p.chain_len[i])
            number[sid], where[sid] = known.setdefault(chains[at: at + length].tobytes(),
                                                       (len(known), at))
        p.stack[r][with_chain] = number[local]
        p.chain_at[r][with_chain] = where[local]
    p.n_stacks = len(known)


# ---------------------------------------------------------------------------------------------
# comms


def _comm_timeline(s: _Stream, p: _Parsed, delivered: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Every change of a thread's comm, in delivery order: (rank, tid, code), and the names.

    As perf's machine: the idle thread (tid 0) starts as "swapper"; COMM sets a thread's comm;
    FORK recreates the child thread and gives it the parent's comm, if the parent has one (else
    the child has none: perf prints :tid).
    """
    raw = s.buf.data
    typ = s.typ[delivered]
    rank_of_row = np.flatnonzero((typ == REC_COMM) | (typ == REC_FORK))  # delivery ranks
    rows = delivered[rank_of_row]
    names: list[str] = [IDLE_COMM]
    code: dict[str, int] = {IDLE_COMM: 0}
    current: dict[int, int] = {0: 0}
    ranks, tids, codes = [-1], [0], [0]
    for i, rank in zip(rows, rank_of_row, strict=True):
        start = int(s.off[i]) + 8
        if s.typ[i] == REC_COMM:
            pid, tid = struct.unpack_from("<II", raw, start)
            stop = int(s.off[i] + s.size[i])
            name = bytes(raw[start + 8 : stop]).split(b"\0", 1)[0].decode("utf-8", "replace")
            c = code.setdefault(name, len(code))
            if c == len(names):
                names.append(name)
        else:
            pid, _ppid, tid, ptid = struct.unpack_from("<IIII", raw, start)
            c = current.get(ptid, -1)
        current[tid] = c
        ranks.append(rank)
        tids.append(tid)
        codes.append(c)
    return (np.array(ranks, np.int64), np.array(tids, np.int64), np.array(codes, np.int32),
            names)


def _comms_of(sample_rank: np.ndarray, sample_tid: np.ndarray,
              change: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """The comm code each sample's thread had when it was delivered (-1: none)."""
    ranks, tids, codes = change
    keep = tids <= PID_MAX_LIMIT  # a damaged COMM cannot ask for a huge table
    ranks, tids, codes = ranks[keep], tids[keep], codes[keep]
    max_tid = int(max(tids.max(initial=0), 0))
    return comms_at(ranks, tids, codes, sample_rank, sample_tid.astype(np.int64), max_tid)


# ---------------------------------------------------------------------------------------------
# tables


def _id_index(s: _Stream) -> dict[int, int]:
    """Sample id -> CPU from PERF_RECORD_ID_INDEX (u64 nr, then {id, idx, cpu, tid} each)."""
    raw = s.buf.data
    out: dict[int, int] = {}
    for i in np.flatnonzero(s.typ == REC_ID_INDEX):
        start, end = int(s.off[i]) + 8, int(s.off[i] + s.size[i])
        (nr,) = struct.unpack_from("<Q", raw, start)
        for k in range(min(nr, (end - start - 8) // 32)):
            ident, _idx, cpu, _tid = struct.unpack_from("<QQQQ", raw, start + 8 + 32 * k)
            if cpu < 1 << 15:
                out[ident] = cpu
    return out


def _lost_table(s: _Stream, p: _Parsed, attrs: list[PerfAttr], delivered: np.ndarray,
                sample_rank: np.ndarray, stats: TraceStats) -> pa.Table:
    """PERF_RECORD_LOST (a CPU's ring buffer was full: `lost` records dropped, kind "lost")
    and PERF_RECORD_LOST_SAMPLES (an event's samples dropped on one CPU, which perf record
    writes at the end: kind "lost_samples"), at the seq of the next sample (null at the end).

    stats.lost_events counts the page events lost: the tracepoint events' LOST_SAMPLES when
    the file has them (perf 6.x; they count each event's own losses), else the LOST counts."""
    raw = s.buf.data
    typ = s.typ[delivered]
    ranks = np.flatnonzero((typ == REC_LOST) | (typ == REC_LOST_SAMPLES))  # delivery ranks
    rows = delivered[ranks]
    next_sample = np.searchsorted(sample_rank, ranks)
    cpu_of_id = _id_index(s) if np.any(s.typ[rows] == REC_LOST_SAMPLES) else {}
    by_identifier = all(a.sample_type & SAMPLE_IDENTIFIER for a in attrs)
    table_rows, counted = [], []
    for i, nxt in zip(rows, next_sample, strict=True):
        start, end = int(s.off[i]) + 8, int(s.off[i] + s.size[i])
        cpu = int(p.cpu[i]) if p.cpu[i] >= 0 else None
        if s.typ[i] == REC_LOST:
            count, kind = struct.unpack_from("<Q", raw, start + 8)[0], "lost"
        else:
            count, kind = struct.unpack_from("<Q", raw, start)[0], "lost_samples"
            if by_identifier:  # synthesized at the end: the trailer's CPU is 0, the id tells
                cpu = cpu_of_id.get(struct.unpack_from("<Q", raw, end - 8)[0], cpu)
        seq = int(nxt) + 1 if nxt < sample_rank.size else None
        table_rows.append((seq, cpu, int(count), kind))
        counted.append(kind == "lost" or attrs[int(p.attr[i])].is_tracepoint if attrs
                       else True)
    has_samples_kind = any(r[3] == "lost_samples" for r in table_rows)
    for (_, cpu, count, kind), tracepoint in zip(table_rows, counted, strict=True):
        if kind == ("lost_samples" if has_samples_kind else "lost") and tracepoint:
            stats.lost_events += count
            if cpu is not None:
                stats.lost_by_cpu[cpu] = stats.lost_by_cpu.get(cpu, 0) + count
    columns = list(zip(*table_rows, strict=True)) if table_rows else [[], [], [], []]
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, LOST_SCHEMA, strict=True)],
        schema=LOST_SCHEMA)


def _callchain_columns(p: _Parsed, rows: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """stack_id and callchain of samples `rows` (null where the sample has no call chain)."""
    offsets = np.empty(rows.size + 1, np.int64)
    values = np.empty(int(p.chain_len[rows].sum()), np.uint64)
    gather_chains(p.chains, p.chain_at, p.chain_len, rows, offsets, values)
    valid = p.chain_at[rows] >= 0
    ids = first_seen_ids(np.where(valid, p.stack[rows], -1), p.n_stacks)
    mask = pa.array(~valid) if not valid.all() else None
    list_type = pa.int32() if values.size < 2**31 else pa.int64()
    chains = (pa.ListArray if list_type == pa.int32() else pa.LargeListArray).from_arrays(
        pa.array(offsets.astype(np.int32 if list_type == pa.int32() else np.int64)),
        pa.array(values, pa.uint64()), mask=mask)
    return pa.array(ids, pa.int32(), mask=~valid), chains


def _count_records(s: _Stream, p: _Parsed, attrs: list[PerfAttr], is_tp: np.ndarray,
                   stats: TraceStats) -> None:
    """lines (records, PERF_RECORD_COMPRESSED ones too: perf's TOTAL events), header and lost
    records, non-tracepoint samples by event, damaged samples."""
    stats.lines = int(s.typ.size) + s.containers
    samples = s.typ == REC_SAMPLE
    lost = (s.typ == REC_LOST) | (s.typ == REC_LOST_SAMPLES)
    stats.lost_lines = int(np.count_nonzero(lost))
    stats.header_lines = int(stats.lines - np.count_nonzero(samples) - stats.lost_lines)
    reasons = {1: "sample of an unknown event id", 2: "sample shorter than its sample_type"}
    for code, reason in reasons.items():
        bad = np.flatnonzero(samples & (p.status == code))
        if bad.size:
            stats.bad_lines[reason] = stats.bad_lines.get(reason, 0) + int(bad.size)
            if len(stats.bad_samples) < 20:
                stats.bad_samples.append((0, reason, f"record at byte {int(s.off[bad[0]])}"))
    other = samples & (p.status == 0) & ~is_tp
    if other.any():
        names = [a.name or f"type {a.type} config {a.config}" for a in attrs]
        for k, count in zip(*np.unique(p.attr[other], return_counts=True), strict=True):
            name = names[k]
            stats.other_events[name] = stats.other_events.get(name, 0) + int(count)


def _kernel_reloc(s: _Stream) -> dict | None:
    """perf's kernel map (MMAP or MMAP2 of `[kernel.kallsyms]_text`): its pgoff is the
    runtime address of the reference symbol named after the bracket."""
    raw = s.buf.data
    for i in np.flatnonzero((s.typ == REC_MMAP) | (s.typ == REC_MMAP2))[:64]:
        start, end = int(s.off[i]) + 8, int(s.off[i] + s.size[i])
        name_at = start + (32 if s.typ[i] == REC_MMAP else 64)
        name = bytes(raw[name_at:end]).split(b"\0", 1)[0].decode("utf-8", "replace")
        if name.startswith("[kernel.kallsyms]") and len(name) > len("[kernel.kallsyms]"):
            pgoff = struct.unpack_from("<Q", raw, start + 24)[0]
            return {"symbol": name[len("[kernel.kallsyms]"):], "address": int(pgoff)}
    return None


def _decode(data: bytes, stats: TraceStats) -> TraceData:
    pipe = check_magic(data)
    header = (PerfHeader(True, PIPE_HEADER_SIZE, len(data)) if pipe
              else parse_file_header(data))
    stats.layout = "perf.data (pipe)" if pipe else "perf.data"
    s = _stream(data, header)
    _user_records(s, header)
    stats.kernel_release = header.osrelease
    stats.kernel_reloc = _kernel_reloc(s)
    stats.cpus = header.nr_cpus_online
    stats.error = header.error or s.error
    tf = header.tracing
    p = _parse(s, header.attrs, tf)
    delivered = delivery_order(s.typ, p.time)
    is_tp = p.payload_at >= 0
    _count_records(s, p, header.attrs, is_tp, stats)
    sample_rank = np.flatnonzero(is_tp[delivered])
    rows = delivered[sample_rank]  # tracepoint samples, in perf script's order
    if tf is None:
        if rows.size:
            reason = "tracepoint sample without event formats"
            stats.bad_lines[reason] = int(rows.size)
            problem = ("the perf.data has no tracing data (the event formats): its "
                       f"{rows.size} tracepoint samples cannot be decoded")
            stats.error = f"{stats.error}; {problem}" if stats.error else problem
        data_ = TraceData.empty(stats)
        data_.lost = _lost_table(s, p, header.attrs, delivered, sample_rank, stats)
        return data_
    tf.cmdlines = {}
    change = _comm_timeline(s, p, delivered)
    r = as_run(rows)  # the samples as a run of records (no copies) when they are one
    tid = np.where(p.tid[r] >= 0, p.tid[r], p.cpid[r])
    rec = Records(
        buf=p.payload, off=p.payload_at[r], length=p.payload_len[r],
        ts=np.maximum(p.time[r], 0), cpu=np.maximum(p.cpu[r], 0).astype(np.int16),
        type_id=p.type_id[r], flags=p.flags[r], preempt=p.pc[r],
        pid=tid.astype(np.int32), order=np.arange(rows.size),
        comm=_comms_of(sample_rank, tid, change[:3]), comm_values=change[3],
        tgid=np.where(p.pid[r] >= 0, p.pid[r], tid).astype(np.int32),
    )
    chained = rows.size and any(header_has_chain(header.attrs))
    with ThreadPoolExecutor(1) as pool:  # the call chains while the event columns are read
        pending = pool.submit(_callchain_columns, p, rows) if chained else None
        events, markers = record_tables(rec, tf, stats)
        columns = pending.result() if pending is not None else None
    if columns is not None and events.num_rows:
        if events.num_rows != rows.size:  # some samples made no row: take the rows' chains
            columns = _callchain_columns(p, rows[events.column("seq").to_numpy() - 1])
        for name, values in zip(("stack_id", "callchain"), columns, strict=True):
            events = events.set_column(EVENTS_SCHEMA.get_field_index(name),
                                       EVENTS_SCHEMA.field(name), values)
    lost = _lost_table(s, p, header.attrs, delivered, sample_rank, stats)
    return TraceData(events, markers, lost, stats)


def header_has_chain(attrs: list[PerfAttr]) -> list[bool]:
    """Which events record call chains (PERF_SAMPLE_CALLCHAIN)."""
    return [bool(a.sample_type & SAMPLE_CALLCHAIN) for a in attrs]


def _map_or_read(source: str | Path | BinaryIO | bytes
                 ) -> tuple[bytes | mmap.mmap, str, str, str | None]:
    """A plain perf.data file is memory-mapped (no copy); anything else is read whole."""
    if isinstance(source, str | Path):
        try:
            with open(source, "rb") as f:
                if looks_like_perfdata(f.read(8)):
                    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), str(source), \
                        "none", None
        except (OSError, ValueError):
            pass  # read_whole says what is wrong
    return read_whole(source)


def read_perfdata(source: str | Path | BinaryIO | bytes, *, strict: bool = False) -> TraceData:
    """Read a perf.data (file or pipe mode; plain, gzip or zstd file; `perf record -z` data)
    into a TraceData. A truncated or damaged file gives what could be read, `stats.error`
    saying where reading stopped (with `strict=True` that raises InputError); a file that is
    not a perf.data always raises InputError."""
    data, name, compression, problem = _map_or_read(source)
    if not looks_like_perfdata(data):
        if problem and not data:
            raise InputError(f"{name} cannot be decompressed: {problem}")
        raise InputError(f"{name} is not a perf.data file")
    stats = TraceStats(source=name, layout="perf.data", compression=compression)
    try:
        result = _decode(data, stats)
    except FormatError as exc:
        raise InputError(f"{name}: {exc}") from None
    except (struct.error, ValueError, IndexError, KeyError, OverflowError, MemoryError) as exc:
        result = TraceData.empty(stats)
        stats.error = f"the perf.data is corrupt and could not be decoded ({exc})"
    if problem:
        stats.error = f"{problem}; {stats.error}" if stats.error else problem
    if strict and (stats.error or stats.bad_lines):
        reason = stats.error or ", ".join(f"{v} x {k}" for k, v in stats.bad_lines.items())
        raise InputError(f"{name}: {reason}")
    return result
