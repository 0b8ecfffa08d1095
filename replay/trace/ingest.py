"""Text traces into Arrow and Parquet: blocks of lines, scanned in parallel, written as they go.

The pipeline: the calling thread reads line-aligned blocks (decompressing on the way), two
worker threads run the compiled scanner (it releases the GIL), and blocks are turned into Arrow
record batches in order and appended to a Parquet file (or kept in memory). Memory stays bounded
by the number of blocks in flight, whatever the input size.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replay.errors import InputError, StrictError
from replay.trace import scanner as sc
from replay.trace.compaction import CompactionRows, parse_payload
from replay.trace.gfp import gfp_from_text
from replay.trace.result import TraceData, TraceStats
from replay.trace.schema import (
    COMPACTION_EVENT_NAMES,
    EVENT_NAMES,
    EVENTS_SCHEMA,
    EXTRA_COLUMNS,
    LOST_SCHEMA,
    MARKERS_SCHEMA,
    SCHEMA_VERSION,
    STACK_COLUMNS,
    null_columns,
)
from replay.trace.sources import Source, open_source
from replay.trace.stacks import StackTable

BLOCK_BYTES = 8 << 20
MAX_LINE = 1 << 16
IN_FLIGHT = 4
_EVENT_DICT = pa.array(EVENT_NAMES, pa.string())
_LOST_RE = re.compile(
    r"CPU:\s*(\d+)\s*\[(?:LOST (\d+) EVENTS|LOST EVENTS|(\d+) EVENTS DROPPED|EVENTS DROPPED)\]"
)
_ENTRIES_RE = re.compile(r"entries-in-buffer/entries-written:\s*(\d+)/(\d+)\s+#P:(\d+)")


@dataclass
class _Block:
    index: int
    buf: np.ndarray
    nbytes: int
    line0: int = 0


@dataclass
class _Scanned:
    block: _Block
    cols: sc.Columns
    rows: int
    strings: list[tuple[int, str]]  # (kind, text) per local code
    string_uses: np.ndarray
    specials: np.ndarray
    counts: np.ndarray
    lines: int
    spec_texts: list[str]  # the text of each special line
    stacks: np.ndarray  # (row or -1, first frame, frames, cpu) per stack trace (scanner.Stacks)
    frames: np.ndarray  # local string codes of the stacks' frames
    fence: np.ndarray  # per CPU: a stack may only go to a row after this line (Stacks.fence)


def _scan(block: _Block) -> _Scanned:
    """Run the scanner on one block, growing tables and retrying if one was too small."""
    cap = block.nbytes // 40 + 1024
    slots = 1 << 13
    speccap = 4096
    stacks = sc.Stacks(block.nbytes)
    while True:
        cols = sc.Columns(cap)
        table = sc.Interner(slots)
        table.ent[-3:, 2] = -1
        spec = sc.Specials(speccap).rec
        counts = np.zeros(sc.N_COUNTS, np.int64)
        stacks.fence[:] = 0
        stacks.n[:] = 0
        rows, nent, nspec, status = sc.scan_block(
            block.buf, block.buf.view(np.uint64), block.nbytes, sc.NAME_BYTES, sc.NAME_LENS,
            sc.NAME_EVENT, sc.REQUIRED,
            *cols.arrays(), table.keys, table.vals, table.ent, table.counts, spec, counts,
            stacks.stk, stacks.frames, stacks.fence, stacks.n,
        )
        if status == 0:
            break
        if status == 1:
            slots *= 4
        elif status == 2:
            speccap *= 8
        elif status == 4:
            stacks = sc.Stacks(block.nbytes, grow=stacks)
        else:
            cap = int(np.count_nonzero(block.buf[: block.nbytes] == 10)) + 2
    raw = block.buf
    strings = []
    for i in range(nent):
        start, length, kind = table.ent[i]
        strings.append((int(kind), bytes(raw[start : start + length]).decode("utf-8", "replace")))
    spec_rows = spec[:nspec].copy()
    texts = [bytes(raw[r[2] : r[3]]).decode("utf-8", "replace") for r in spec_rows]
    nstk, nfr = int(stacks.n[0]), int(stacks.n[1])
    return _Scanned(block, cols, rows, strings, table.counts[:nent].copy(), spec_rows, counts,
                    int(counts[sc.C_LINES]), texts, stacks.stk[:nstk].copy(),
                    stacks.frames[:nfr].copy(), stacks.fence.copy())


class BufferPool:
    """Reused block buffers: fresh 8 MB allocations cost page faults on every block."""

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def get(self) -> np.ndarray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return np.empty(BLOCK_BYTES + MAX_LINE, np.uint8)

    def put(self, buf: np.ndarray) -> None:
        with self._lock:
            self._free.append(buf)


def _read_blocks(stream, stats: TraceStats, pool: BufferPool) -> Iterator[_Block]:
    """Line-aligned blocks of at most BLOCK_BYTES (plus the carried-over partial line)."""
    carry = b""
    index = 0
    eof = False
    while not eof:
        buf = pool.get()
        n = len(carry)
        buf[:n] = np.frombuffer(carry, np.uint8)
        view = memoryview(buf)
        try:
            while n < BLOCK_BYTES:
                got = stream.readinto(view[n:BLOCK_BYTES])
                if not got:
                    eof = True
                    break
                n += got
        except (EOFError, OSError, ValueError) as exc:
            stats.error = f"input ends early or is corrupt after {stats_bytes(index, n)}: {exc}"
            eof = True
        except Exception as exc:  # noqa: BLE001 - zlib.error, zstd errors...
            stats.error = f"corrupt compressed data after {stats_bytes(index, n)}: {exc}"
            eof = True
        if n == 0:
            break
        cut = n
        if not eof:
            tail = bytes(buf[max(0, n - MAX_LINE) : n])
            nl = tail.rfind(b"\n")
            if nl >= 0:
                cut = n - len(tail) + stack_safe_end(tail[: nl + 1])
        carry = bytes(buf[cut:n])
        yield _Block(index, buf, cut)
        index += 1


_STACK_HEADERS = (b"<stack trace", b"<user stack trace>", b"user_stack:")


def stack_safe_end(text: bytes) -> int:
    """Where a block of whole lines may end without splitting a kernel stack trace: before
    its trailing `=> frame` lines and the `<stack trace>` line that opens them (the scanner
    keeps a stack's lines together; an event and its stack in two blocks are joined later)."""
    end = len(text)
    while end > 0:
        start = text.rfind(b"\n", 0, end - 1) + 1
        if start == 0:
            return len(text)  # the window holds no line before it: cannot tell, cut as is
        line = text[start:end].lstrip(b" \t")
        if line.startswith(b"=>"):
            end = start
            continue
        if any(h in line for h in _STACK_HEADERS):
            end = start
        break
    return end if end > 0 else len(text)


def stats_bytes(index: int, n: int) -> str:
    return f"about {(index * BLOCK_BYTES + n) / 1e6:.1f} MB of decompressed text"


@dataclass
class _Pending:
    """A scanned block whose batch waits for the next block: a stack trace at the start of
    that block may belong to one of its last events."""

    s: _Scanned
    remap: np.ndarray
    line0: int
    compaction: CompactionRows
    stack_of_row: np.ndarray | None  # each row's stack id (-1: none), None without stacks


class _Assembler:
    """Turns scanned blocks into Arrow batches in order, with global string dictionaries.
    A block's batch comes out when the next block is added (or at `finish`)."""

    def __init__(self, stats: TraceStats, strict: bool, source_name: str) -> None:
        self.stats = stats
        self.strict = strict
        self.source_name = source_name
        self.comm_index: dict[str, int] = {}
        self.comms: list[str] = []
        self.gfp_index: dict[str, int] = {}
        self.gfps: list[str] = []
        self.gfp_masks: list[int] = []
        self.markers: list[tuple] = []
        self.lost: list[tuple] = []
        self.line0 = 0
        self.layout_hint: str | None = None
        self.stack_table = StackTable()
        self.pending: _Pending | None = None

    def _global(self, text: str, index: dict[str, int], values: list[str]) -> int:
        code = index.get(text)
        if code is None:
            code = len(values)
            index[text] = code
            values.append(text)
        return code

    def add(self, s: _Scanned) -> pa.RecordBatch | None:
        remap = np.full(max(len(s.strings), 1), -1, np.int32)
        for code, (kind, text) in enumerate(s.strings):
            if kind == sc.STR_COMM:
                remap[code] = self._global(text, self.comm_index, self.comms)
            elif kind == sc.STR_GFP:
                if text not in self.gfp_index:
                    mask = gfp_from_text(text)
                    self.gfp_masks.append(mask if mask is not None else -1)
                remap[code] = self._global(text, self.gfp_index, self.gfps)
            elif kind == sc.STR_FRAME:
                remap[code] = self.stack_table.frame_id(text)
            else:
                other = self.stats.other_events
                other[text] = other.get(text, 0) + int(s.string_uses[code])
        compaction = CompactionRows()
        self._specials(s, remap, compaction)
        self._count(s)
        stack_of_row = self._stacks(s, remap)
        previous = self.pending
        self.pending = _Pending(s, remap, self.line0, compaction, stack_of_row)
        self.line0 += s.lines
        return self._build(previous)

    def finish(self) -> pa.RecordBatch | None:
        """The last block's batch."""
        previous, self.pending = self.pending, None
        return self._build(previous)

    def _build(self, p: _Pending | None) -> pa.RecordBatch | None:
        if p is None or (p.s.rows == 0 and not len(p.compaction)):
            return None
        batch = self._batch(p.s, p.remap, p.line0, p.stack_of_row)
        if len(p.compaction):
            batch = self._merge_compaction(batch, p.compaction)
        return batch

    def _stacks(self, s: _Scanned, remap: np.ndarray) -> np.ndarray | None:
        """Each row's stack id (-1: none), or None when the block has no stack traces. A
        stack whose event is not in its block goes to that CPU's last row of the block
        before (other CPUs' lines can come between an event and its stack)."""
        if not len(s.stacks):
            return None
        st = self.stats
        ids = self.stack_table.stack_ids(remap[s.frames].astype(np.int64), s.stacks[:, 2])
        rows = s.stacks[:, 0]
        st.stack_lines_other += int(np.count_nonzero(ids < 0))  # headers without frames
        stack_of_row = np.full(s.rows, -1, np.int64)
        here = (rows >= 0) & (ids >= 0)
        stack_of_row[rows[here]] = ids[here]
        for k in np.flatnonzero((rows < 0) & (ids >= 0)):  # rare: at a block's start
            if not self._to_previous(int(s.stacks[k, 3]), int(ids[k])):
                st.stack_lines_other += 1 + int(s.stacks[k, 2])  # its event was not read
        return stack_of_row

    def _to_previous(self, cpu: int, stack: int) -> bool:
        """Give a stack to the last row of `cpu` in the pending block, if that is the CPU's
        last event there and it has no stack yet."""
        prev = self.pending
        if prev is None or cpu >= len(prev.s.fence):
            return False
        rows = np.flatnonzero(prev.s.cols.cpu[: prev.s.rows] == cpu)
        if not rows.size or prev.s.cols.seq[rows[-1]] <= prev.s.fence[cpu]:
            return False
        if prev.stack_of_row is None:
            prev.stack_of_row = np.full(prev.s.rows, -1, np.int64)
        prev.stack_of_row[rows[-1]] = stack
        prev.s.fence[cpu] = prev.s.cols.seq[rows[-1]]  # one stack per event
        return True

    def _merge_compaction(self, batch: pa.RecordBatch, rows: CompactionRows) -> pa.RecordBatch:
        """Put a block's compaction rows among its kmem rows, in line order."""
        st = self.stats
        for code in rows.codes:
            name = EVENT_NAMES[code]
            st.events_by_kind[name] = st.events_by_kind.get(name, 0) + 1
        st.events += len(rows)
        merged = pa.Table.from_batches([batch, rows.batch(_EVENT_DICT)]).unify_dictionaries()
        merged = merged.combine_chunks().sort_by("seq")
        return merged.to_batches()[0] if merged.num_rows else batch

    def _count(self, s: _Scanned) -> None:
        c = s.counts
        st = self.stats
        st.lines += int(c[sc.C_LINES])
        st.header_lines += int(c[sc.C_HASH] + c[sc.C_BLANK] + c[sc.C_PREAMBLE])
        st.lost_lines += int(c[sc.C_LOST])
        st.markers += int(c[sc.C_MARKERS])
        st.stack_lines += int(c[sc.C_STACK] + c[sc.C_STACK_OTHER])
        st.stack_lines_other += int(c[sc.C_STACK_OTHER])
        for i, reason in enumerate(sc.BAD_REASONS):
            if c[sc.C_BAD0 + i]:
                st.bad_lines[reason] = st.bad_lines.get(reason, 0) + int(c[sc.C_BAD0 + i])
        ev = s.cols.event[: s.rows]
        binc = np.bincount(ev, minlength=len(EVENT_NAMES))
        for i, name in enumerate(EVENT_NAMES):
            if binc[i]:
                st.events_by_kind[name] = st.events_by_kind.get(name, 0) + int(binc[i])
        st.events += s.rows

    def _bad(self, line: int, reason: str, text: str) -> None:
        if self.strict:
            raise StrictError(f"{self.source_name}:{line}: {reason}: {text[:120]!r}")
        st = self.stats
        if len(st.bad_samples) < 20:
            st.bad_samples.append((line, reason, text[:200]))

    def _specials(self, s: _Scanned, remap: np.ndarray, compaction: CompactionRows) -> None:
        base = self.line0
        st = self.stats
        for rec, text in zip(s.specials, s.spec_texts, strict=True):
            kind, line = int(rec[0]), base + int(rec[1])
            if kind == sc.SP_HASH:
                m = _ENTRIES_RE.search(text)
                if m:
                    st.entries_in_buffer, st.entries_written = int(m[1]), int(m[2])
                    st.cpus = int(m[3])
                    gap = st.entries_written - st.entries_in_buffer
                    if gap > 0:
                        self.lost.append((line, None, gap, "overwritten"))
                        st.lost_events += gap
                    self.layout_hint = self.layout_hint or "ftrace"
            elif kind == sc.SP_LOST:
                m = _LOST_RE.match(text)
                if not m:
                    st.lost_lines -= 1
                    st.bad_lines["malformed lost-events line"] = (
                        st.bad_lines.get("malformed lost-events line", 0) + 1)
                    self._bad(line, "malformed lost-events line", text)
                    continue
                cpu = int(m[1])
                n = m[2] or m[3]
                kind_s = "lost" if "LOST" in text else "dropped"
                self.lost.append((line, cpu, int(n) if n else None, kind_s))
                if n:
                    st.lost_events += int(n)
                    st.lost_by_cpu[cpu] = st.lost_by_cpu.get(cpu, 0) + int(n)
            elif kind == sc.SP_PREAMBLE:
                self.layout_hint = "trace-cmd"
                m = re.match(r"cpus=(\d+)", text)
                if m:
                    st.cpus = int(m[1])
            elif kind == sc.SP_MARKER:
                payload = text[int(rec[8]) - int(rec[2]):]
                if payload.startswith("tracing_mark_write: "):
                    payload = payload[len("tracing_mark_write: "):]
                elif payload.startswith("ip=") and " buf=" in payload:
                    payload = payload.split(" buf=", 1)[1]
                comm = self.comms[remap[rec[7]]] if rec[7] >= 0 else None
                self.markers.append((line, int(rec[4]), int(rec[5]), int(rec[6]), comm,
                                     payload.rstrip()))
            elif kind == sc.SP_COMPACTION:
                name = COMPACTION_EVENT_NAMES[int(rec[13])]
                fields = parse_payload(name, text[int(rec[8]) - int(rec[2]):])
                if fields is None:
                    reason = sc.BAD_REASONS[4]  # malformed field
                    st.bad_lines[reason] = st.bad_lines.get(reason, 0) + 1
                    self._bad(line, reason, text)
                    continue
                comm = self.comms[remap[rec[7]]] if rec[7] >= 0 else None
                compaction.add((line, int(rec[4]), int(rec[5]), int(rec[6]),
                                int(rec[12]) if rec[12] >= 0 else None, comm, int(rec[9]),
                                int(rec[10]) if rec[10] >= 0 else None,
                                int(rec[11]) if rec[11] >= 0 else None), name, fields)
            elif kind == sc.SP_BAD:
                self._bad(line, sc.BAD_REASONS[int(rec[4])], text)

    def _batch(self, s: _Scanned, remap: np.ndarray, line0: int,
               stack_of_row: np.ndarray | None) -> pa.RecordBatch:
        n = s.rows
        c = s.cols
        comm_local = c.comm[:n]
        comm = np.where(comm_local >= 0, remap[np.maximum(comm_local, 0)], -1).astype(np.int32)
        gfp_local = c.gfp[:n]
        gfp_idx = np.where(gfp_local >= 0, remap[np.maximum(gfp_local, 0)], -1).astype(np.int32)
        masks = np.asarray(self.gfp_masks + [-1], np.int64)
        gfp_mask = masks[gfp_idx]  # -1 index picks the sentinel
        event = c.event[:n]
        pfn = c.pfn[:n]
        failed = sc.failed_mask(event, pfn)
        comm_dict = pa.array(self.comms, pa.string())
        gfp_dict = pa.array(self.gfps, pa.string())

        def opt(arr: np.ndarray, typ: pa.DataType) -> pa.Array:
            return _nullable(arr, arr >= 0, typ)

        def dict_col(idx: np.ndarray, dictionary: pa.Array) -> pa.DictionaryArray:
            return pa.DictionaryArray.from_arrays(_nullable(idx, idx >= 0, pa.int32()), dictionary)

        columns = [
            _nullable(c.seq[:n] + line0, None, pa.int64()),
            _nullable(c.ts[:n], None, pa.int64()),
            _nullable(c.cpu[:n], None, pa.int16()),
            _nullable(c.pid[:n], None, pa.int32()),
            opt(c.tgid[:n], pa.int32()),
            dict_col(comm, comm_dict),
            _nullable(c.irq[:n], None, pa.uint8()),
            _nullable(c.preempt[:n].view(np.uint8), c.preempt[:n] >= 0, pa.uint8()),
            _nullable(c.migdis[:n].view(np.uint8), c.migdis[:n] >= 0, pa.uint8()),
            pa.DictionaryArray.from_arrays(_nullable(event.astype(np.int32), None, pa.int32()),
                                           _EVENT_DICT),
            _nullable(pfn, ~failed, pa.uint64()),
            pa.array(failed, pa.bool_()),
            opt(c.order[:n], pa.int8()),
            opt(c.mt[:n], pa.int8()),
            pa.array(gfp_mask.astype(np.uint32), pa.uint32(), mask=gfp_mask < 0),
            dict_col(gfp_idx, gfp_dict),
            opt(c.refill[:n], pa.int8()),
            opt(c.ford[:n], pa.int8()),
            opt(c.pbord[:n], pa.int8()),
            opt(c.fmt[:n], pa.int8()),
            opt(c.frag[:n], pa.int8()),
            opt(c.chown[:n], pa.int8()),
            *self._extra_columns(n, stack_of_row),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=EVENTS_SCHEMA)

    def _extra_columns(self, n: int, stack_of_row: np.ndarray | None) -> list[pa.Array]:
        """The compaction columns (null on kmem rows) and the stack columns."""
        if stack_of_row is None or not (stack_of_row >= 0).any():
            return null_columns(EXTRA_COLUMNS, n)
        self.stats.stacks += int(np.count_nonzero(stack_of_row >= 0))
        return [*null_columns(EXTRA_COLUMNS[: -len(STACK_COLUMNS)], n),
                *self.stack_table.columns(stack_of_row)]

    def markers_table(self) -> pa.Table:
        cols = list(zip(*self.markers, strict=True)) if self.markers else [[]] * 6
        return pa.table([pa.array(col, f.type) for col, f in zip(cols, MARKERS_SCHEMA,
                                                                   strict=True)],
                        schema=MARKERS_SCHEMA)

    def lost_table(self) -> pa.Table:
        cols = list(zip(*self.lost, strict=True)) if self.lost else [[]] * 4
        return pa.table([pa.array(col, f.type) for col, f in zip(cols, LOST_SCHEMA, strict=True)],
                        schema=LOST_SCHEMA)


def _nullable(values: np.ndarray, valid: np.ndarray | None, typ: pa.DataType) -> pa.Array:
    """Wrap a numpy column zero-copy as Arrow, with a validity bitmap where `valid` is False."""
    n = len(values)
    values = np.ascontiguousarray(values)
    if valid is None or valid.all():
        return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(values)])
    bitmap = np.packbits(valid, bitorder="little")
    nulls = n - int(np.count_nonzero(valid))
    return pa.Array.from_buffers(typ, n, [pa.py_buffer(bitmap), pa.py_buffer(values)], nulls)


def iter_batches(
    source: Source,
    stats: TraceStats,
    *,
    strict: bool = False,
    threads: int = 2,
    progress: Callable[[int], None] | None = None,
) -> tuple[Iterator[pa.RecordBatch], _Assembler]:
    """Record batches of a text source, in line order, plus the assembler holding side tables."""
    asm = _Assembler(stats, strict, source.name)

    def gen() -> Iterator[pa.RecordBatch]:
        pool = ThreadPoolExecutor(max_workers=max(1, threads))
        bufpool = BufferPool()
        pending: list[Future] = []
        try:
            for block in _read_blocks(source.stream, stats, bufpool):
                pending.append(pool.submit(_scan, block))
                if progress:
                    progress(block.nbytes)
                while len(pending) >= IN_FLIGHT:
                    scanned = pending.pop(0).result()
                    bufpool.put(scanned.block.buf)
                    batch = asm.add(scanned)
                    if batch is not None:
                        yield batch
            while pending:
                scanned = pending.pop(0).result()
                batch = asm.add(scanned)
                if batch is not None:
                    yield batch
            batch = asm.finish()
            if batch is not None:
                yield batch
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True)

    return gen(), asm


def _check_text(source: Source) -> None:
    """Refuse binary junk with one clear line before scanning it."""
    try:
        head = source.stream.peek(4096)[:4096] if hasattr(source.stream, "peek") else b""
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{source.name}: cannot read: {exc}") from None
    if not head:
        return
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    if b"\x00" in head or controls > len(head) // 10:
        raise InputError(f"{source.name}: not a text trace (binary data; expected ftrace text, "
                         "trace-cmd report text, trace.dat or perf.data)")


def _finish_stats(stats: TraceStats, asm: _Assembler | None, fmt: str) -> None:
    if asm is not None and not stats.layout:
        stats.layout = asm.layout_hint or "trace_pipe"
    if fmt != "auto":
        stats.layout = fmt


def _kernel_release(source: Source) -> str | None:
    if source.bundle_dir is None:
        return None
    uname = source.bundle_dir / "uname"
    if uname.exists():
        parts = uname.read_text(errors="replace").split()
        return parts[2] if len(parts) > 2 else None
    return None


def read_trace(source: str | os.PathLike, *, strict: bool = False, fmt: str = "auto",
               threads: int = 2) -> TraceData:
    """Read a whole trace (text, trace.dat or perf.data, any compression) into memory."""
    src = open_source(source)
    try:
        if src.is_tracedat or src.is_perfdata:
            return _read_binary(src, strict)
        stats = TraceStats(source=src.name, compression=src.compression)
        stats.kernel_release = _kernel_release(src)
        _check_text(src)
        batches, asm = iter_batches(src, stats, strict=strict, threads=threads)
        table = pa.Table.from_batches(list(batches), schema=EVENTS_SCHEMA)
        _finish_stats(stats, asm, fmt)
        _check_result(stats, strict)
        return TraceData(table, asm.markers_table(), asm.lost_table(), stats)
    finally:
        src.stream.close()


def _read_binary(src: Source, strict: bool) -> TraceData:
    """trace.dat or perf.data: read whole (their metadata and records are not line-aligned)."""
    if src.is_perfdata:
        from replay.trace.perfdata import read_perfdata as reader
    else:
        from replay.trace.tracedat import read_tracedat as reader

    data = reader(src.stream.read() if src.compression != "none" else src.path or
                  src.stream.read(), strict=strict)
    data.stats.source = src.name
    data.stats.compression = src.compression
    data.stats.kernel_release = data.stats.kernel_release or _kernel_release(src)
    return data


def _check_result(stats: TraceStats, strict: bool) -> None:
    if stats.error and strict:
        raise InputError(f"{stats.source}: {stats.error}")
    if stats.lines == 0 and not stats.error:
        raise InputError(f"{stats.source}: empty trace (no lines)")


def parquet_metadata(stats: TraceStats) -> dict[bytes, bytes]:
    import json

    meta = {"schema_version": SCHEMA_VERSION, **stats.as_dict()}
    return {b"pagereplay": json.dumps(meta).encode()}


def ingest_to_parquet(source: str | os.PathLike, out: str | os.PathLike, *, strict: bool = False,
                      fmt: str = "auto", threads: int = 2,
                      progress: Callable[[int], None] | None = None) -> TraceStats:
    """Stream a trace into OUT (events) plus OUT's markers and lost tables beside it.

    Row groups are written as blocks are parsed; on a truncated input every event read before
    the damage is written and `stats.error` says where it stopped.
    """
    src = open_source(source)
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    try:
        if src.is_tracedat and src.path is not None:
            return _tracedat_to_parquet(src, out, tmp, strict)
        if src.is_tracedat or src.is_perfdata:
            data = _read_binary(src, strict)
            write_tables(data, out)
            return data.stats
        stats = TraceStats(source=src.name, compression=src.compression)
        stats.kernel_release = _kernel_release(src)
        _check_text(src)
        batches, asm = iter_batches(src, stats, strict=strict, threads=threads, progress=progress)
        writer = pq.ParquetWriter(tmp, EVENTS_SCHEMA, **PARQUET_OPTIONS)
        try:
            _write_in_background(writer, batches)
        finally:
            _finish_stats(stats, asm, fmt)
            writer.add_key_value_metadata(parquet_metadata(stats))
            writer.close()
        os.replace(tmp, out)
        pq.write_table(asm.markers_table(), side_table_path(out, "markers"))
        pq.write_table(asm.lost_table(), side_table_path(out, "lost"))
        _check_result(stats, strict)
        return stats
    finally:
        src.stream.close()
        if tmp.exists():
            tmp.unlink()


def _tracedat_to_parquet(src: Source, out: Path, tmp: Path, strict: bool) -> TraceStats:
    """A trace.dat into OUT a batch of records at a time (tracedat_stream.py)."""
    from replay.trace.tracedat_stream import TraceDatReader

    reader = TraceDatReader(src.path, tmp_dir=str(out.parent))
    stats = reader.stats
    stats.source = src.name
    stats.kernel_release = stats.kernel_release or _kernel_release(src)
    writer = pq.ParquetWriter(tmp, EVENTS_SCHEMA, **PARQUET_OPTIONS)
    try:
        _write_in_background(writer, (b for t in reader.batches() for b in t.to_batches()))
        lost = reader.lost_table()
    finally:
        writer.add_key_value_metadata(parquet_metadata(stats))
        writer.close()
    if strict and (stats.error or stats.bad_lines):
        reason = stats.error or ", ".join(f"{v} x {k}" for k, v in stats.bad_lines.items())
        raise InputError(f"{src.name}: {reason}")
    os.replace(tmp, out)
    markers = pa.concat_tables(reader.markers) if reader.markers else \
        MARKERS_SCHEMA.empty_table()
    pq.write_table(markers, side_table_path(out, "markers"))
    pq.write_table(lost, side_table_path(out, "lost"))
    return stats


def _write_in_background(writer: pq.ParquetWriter, batches: Iterator[pa.RecordBatch]) -> None:
    """Parquet encoding runs on its own thread (it releases the GIL) while blocks are parsed."""
    q: queue.Queue = queue.Queue(maxsize=2)
    failure: list[BaseException] = []

    def work() -> None:
        while (batch := q.get()) is not None:
            if not failure:
                try:
                    writer.write_batch(batch)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                    failure.append(exc)

    t = threading.Thread(target=work, name="parquet-writer", daemon=True)
    t.start()
    try:
        for batch in batches:
            if failure:
                break
            q.put(batch)
    finally:
        q.put(None)
        t.join()
    if failure:
        raise failure[0]


PARQUET_OPTIONS = dict(  # the events tables pagereplay writes (ingest, simulate -o)
    compression="lz4",
    use_dictionary=["comm", "event", "gfp_text"],
    column_encoding={"seq": "DELTA_BINARY_PACKED", "ts_ns": "DELTA_BINARY_PACKED"},
    write_statistics=["seq", "ts_ns", "pfn"],
)


def side_table_path(events_path: Path, kind: str) -> Path:
    """OUT.parquet -> OUT.markers.parquet / OUT.lost.parquet."""
    stem = events_path.name.removesuffix(".parquet")
    return events_path.with_name(f"{stem}.{kind}.parquet")


def write_tables(data: TraceData, out: str | os.PathLike) -> None:
    out = Path(out)
    table = data.events.replace_schema_metadata(
        {**(data.events.schema.metadata or {}), **parquet_metadata(data.stats)})
    pq.write_table(table, out, **PARQUET_OPTIONS)
    pq.write_table(data.markers, side_table_path(out, "markers"))
    pq.write_table(data.lost, side_table_path(out, "lost"))


def _to_current_schema(events: pa.Table) -> pa.Table:
    """An ingested table in today's schema: columns an older version lacks are added as nulls."""
    for i, field in enumerate(EVENTS_SCHEMA):
        if field.name not in events.column_names:
            events = events.add_column(i, field, pa.nulls(events.num_rows, field.type))
    return events.select(EVENTS_SCHEMA.names).cast(EVENTS_SCHEMA)


def parquet_stats(path: Path, file: pq.ParquetFile | None = None,
                  schema_metadata: dict | None = None) -> TraceStats:
    """The TraceStats an ingest wrote into a Parquet file's metadata."""
    import json

    file = file or pq.ParquetFile(path)
    kv = {**(file.metadata.metadata or {}), **(schema_metadata or {})}
    meta = json.loads(kv.get(b"pagereplay", b"{}"))
    stats = TraceStats(source=meta.get("source", str(path)), layout=meta.get("layout", ""))
    for key in ("lines", "events", "markers", "header_lines", "lost_events", "cpus",
                "stack_lines", "stack_lines_other", "stacks",
                "kernel_release", "kernel_reloc", "error", "compression"):
        if key in meta:
            setattr(stats, key, meta[key])
    stats.events_by_kind = meta.get("events_by_kind", {})
    stats.other_events = meta.get("other_events", {})
    stats.bad_lines = meta.get("bad_lines", {})
    stats.lost_by_cpu = {int(k): v for k, v in meta.get("lost_by_cpu", {}).items()}
    return stats


def read_parquet(path: str | os.PathLike) -> TraceData:
    """Load an ingested trace back (events plus markers/lost tables and the stats)."""
    path = Path(path)
    events = pq.read_table(path)
    stats = parquet_stats(path, schema_metadata=events.schema.metadata)
    markers = side_table_path(path, "markers")
    lost = side_table_path(path, "lost")
    return TraceData(
        _to_current_schema(events.replace_schema_metadata(None)),
        pq.read_table(markers) if markers.exists() else MARKERS_SCHEMA.empty_table(),
        pq.read_table(lost) if lost.exists() else LOST_SCHEMA.empty_table(),
        stats,
    )
