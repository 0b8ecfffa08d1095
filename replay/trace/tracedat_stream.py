"""trace.dat read a batch of records at a time, in memory bounded whatever the file's size.

The same decoding as tracedat.py (its metadata parser, page scan and record tables) with the
data read differently: each CPU's ring-buffer pages are read a few hundred at a time (chunk by
chunk where v7 compresses them), scanned, and the CPU streams merged by time as they go, with
trace-cmd's rule (smallest timestamp first, ties to the lower CPU): a stream whose loaded
records run out is refilled before the merge picks again, so the order is the whole-file
merge's. A gzip or zstd file is first inflated to a temporary file.
"""

from __future__ import annotations

import mmap
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from replay.errors import InputError
from replay.trace.result import TraceStats
from replay.trace.schema import EVENT_NAMES, LOST_SCHEMA
from replay.trace.sources import inflating_reader
from replay.trace.tracedat import (
    _LOST_NONE,
    _PAGE_PROBLEMS,
    _apply_clock,
    _Codec,
    _FormatError,
    _layout,
    _MetadataParser,
    _record_arrays,
    _scan_pages,
    looks_like_tracedat,
    merge_until,
)
from replay.trace.tracefmt import CpuData, TraceFile
from replay.trace.tracerecords import Records, record_columns, record_tables

PAGES_PER_READ = 256
BATCH_RECORDS = 1 << 18


class _CpuPages:
    """One CPU's pages from the file, PAGES_PER_READ at a time."""

    def __init__(self, fd: int, size: int, cpu: CpuData, tf: TraceFile,
                 codec: _Codec | None) -> None:
        self.fd = fd
        self.cpu = cpu
        self.page = tf.page_size
        self.endian = "<" if tf.endian == "<" else ">"
        self.error: str | None = None
        self.chunked = bool(tf.data_compressed and codec is not None)
        self.codec = codec
        self.pos = cpu.offset
        if self.chunked:
            self.chunks = self._chunk_count(size)
            self.carry = b""
        else:
            available = max(0, min(cpu.size, size - cpu.offset))
            if available < cpu.size:
                self.error = (f"the trace.dat is truncated at byte {size}, inside the "
                              f"ring-buffer data of CPU {cpu.cpu} (bytes {cpu.offset}-"
                              f"{cpu.offset + cpu.size})")
            self.end = cpu.offset + available
        self.done = False

    def _read(self, n: int, at: int) -> bytes:
        return os.pread(self.fd, n, at)

    def _chunk_count(self, size: int) -> int:
        head = self._read(4, self.pos)
        if len(head) < 4:
            self.error = (f"the trace.dat ends at offset {self.pos} inside the CPU "
                          f"{self.cpu.cpu} data (chunk count)")
            return 0
        self.pos += 4
        return struct.unpack(self.endian + "I", head)[0]

    def pages(self) -> int:
        """How many pages this CPU has (reading the chunk headers of compressed data)."""
        if not self.chunked:
            return -(-(self.end - self.cpu.offset) // self.page)
        total, pos = 0, self.pos
        for _ in range(self.chunks):
            h = self._read(8, pos)
            if len(h) < 8:
                break
            zsize, usize = struct.unpack(self.endian + "II", h)
            total += usize
            pos += 8 + zsize
        return -(-total // self.page)

    def next(self) -> bytes | None:
        """The next pages' bytes (whole pages, the last one perhaps cut), None at the end."""
        if self.done:
            return None
        if not self.chunked:
            n = min(PAGES_PER_READ * self.page, self.end - self.pos)
            if n <= 0:
                self.done = True
                return None
            data = self._read(n, self.pos)
            self.pos += n
            return data
        parts = [self.carry]
        size = len(self.carry)
        self.carry = b""
        while self.chunks and size < PAGES_PER_READ * self.page:
            h = self._read(8, self.pos)
            where = f"chunk of CPU {self.cpu.cpu} at offset {self.pos}"
            if len(h) < 8:
                self.error = self.error or (f"the trace.dat ends at offset {self.pos} inside "
                                            f"the CPU {self.cpu.cpu} data (chunk header)")
                self.chunks = 0
                break
            zsize, usize = struct.unpack(self.endian + "II", h)
            body = self._read(zsize, self.pos + 8)
            if len(body) < zsize:
                self.error = self.error or (f"the trace.dat ends at offset {self.pos + 8} "
                                            f"inside the CPU {self.cpu.cpu} data (chunk data)")
                self.chunks = 0
                break
            try:
                parts.append(self.codec.decompress(body, usize, where))
                size += usize
            except _FormatError as exc:
                self.error = self.error or str(exc)
                self.chunks = 0
                break
            self.pos += 8 + zsize
            self.chunks -= 1
        out = b"".join(parts)
        if self.chunks:
            cut = len(out) // self.page * self.page
            out, self.carry = out[:cut], out[cut:]
        if not out:
            self.done = True
            return None
        return out


class _Stream:
    """One CPU's loaded records: segments of scanned pages not yet merged."""

    def __init__(self, source: _CpuPages, page0: int) -> None:
        self.source = source
        self.page0 = page0  # global index of this CPU's first page (tracedat's PageSet order)
        self.pages_read = 0
        self.bufs: list[np.ndarray] = []
        self.recs: list[tuple[np.ndarray, ...]] = []  # per segment: off, len, ts, type, ...
        self.counts: list[int] = []
        self.first_rec = 0  # per-CPU number of the first loaded record
        self.loaded = 0  # per-CPU records loaded so far
        self.lost_pages: list[tuple[int, int, int]] = []  # (global page, count, first rec)
        self.status: list[tuple[int, int]] = []  # (status, global page) of bad pages
        self.exhausted = False


class TraceDatReader:
    """Reads a trace.dat (path) batch by batch: `batches()` gives events tables in merged order
    (markers collected into `markers`), then `lost_table()` and the filled `stats`."""

    def __init__(self, path: str | os.PathLike, tmp_dir: str | None = None,
                 batch_records: int = BATCH_RECORDS) -> None:
        self.name = str(path)
        self.batch_records = batch_records
        self.stats = TraceStats(source=self.name, layout="trace.dat")
        self._tmp: str | None = None
        plain, self.stats.compression, problem = self._plain(Path(path), tmp_dir)
        self._problem = problem
        self.fd = os.open(plain, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        self.markers: list[pa.Table] = []
        self.marker_rows: list[tuple[int, str]] = []
        self.tf: TraceFile | None = None
        self.codec = None
        self._lost: list[tuple[int, int, int, int]] = []  # (seq or 0, page, cpu, count)
        self.columns = False
        self._open_metadata()

    def _plain(self, path: Path, tmp_dir: str | None) -> tuple[str, str, str | None]:
        """An uncompressed file to read: the file itself or its inflated copy."""
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:2] == b"\x1f\x8b":
            kind = "gzip"
        elif head[:4] == b"\x28\xb5\x2f\xfd":
            kind = "zstd"
        else:
            return str(path), "none", None
        self._tmp = tempfile.mkdtemp(prefix="pagereplay-dat-", dir=tmp_dir)
        out = os.path.join(self._tmp, "trace.dat")
        problem = None
        try:
            with open(path, "rb") as raw, open(out, "wb") as dst:
                shutil.copyfileobj(inflating_reader(raw, kind), dst, 1 << 20)
        except (EOFError, OSError) as exc:  # what inflated before the damage is kept
            problem = str(exc)
        return out, kind, problem

    def _open_metadata(self) -> None:
        if self.size == 0:
            raise InputError(f"{self.name}: empty file")
        with mmap.mmap(self.fd, 0, access=mmap.ACCESS_READ) as mm:
            if not looks_like_tracedat(mm[:16]):
                raise InputError(f"{self.name} is not a trace-cmd trace.dat file")
            parser = _MetadataParser(mm)
            try:
                tf = parser.parse()
            except _FormatError as exc:
                if parser.tf.version == 0:
                    raise InputError(f"{self.name}: {exc}") from None
                self.stats.error = str(exc)
                return
            finally:
                parser.data = b""
        st = self.stats
        st.cpus = tf.cpu_count or (len(tf.cpus) or None)
        if tf.uname:
            parts = tf.uname.split()
            st.kernel_release = parts[2] if len(parts) >= 3 else None
        st.error = tf.error
        if tf.latency and not tf.cpus:
            st.error = st.error or "the trace.dat holds a latency (text) trace, not ring data"
            return
        self.tf = tf
        self.codec = parser.codec

    # -- reading ---------------------------------------------------------------------------

    def batches(self, columns: bool = False) -> Iterator:
        """Events tables, in merged (trace) order; with `columns`, record_columns' tuples
        (int64 columns, comm names, compaction rows) instead."""
        self.columns = columns
        tf = self.tf
        try:
            if tf is not None:
                yield from self._batches(tf)
        except (struct.error, zlib.error, ValueError, IndexError, KeyError, OverflowError,
                MemoryError, _FormatError) as exc:
            self.stats.error = f"the trace.dat is corrupt and could not be decoded ({exc})"
        finally:
            os.close(self.fd)
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)
        if self._problem:
            st = self.stats
            st.error = f"{self._problem}; {st.error}" if st.error else self._problem

    def _batches(self, tf: TraceFile) -> Iterator[pa.Table]:
        layout = _layout(tf)
        streams: list[_Stream] = []
        page0 = 0
        for cpu in tf.cpus:
            if cpu.size == 0:
                continue
            src = _CpuPages(self.fd, self.size, cpu, tf, self.codec)
            streams.append(_Stream(src, page0))
            page0 += src.pages()
        k = len(streams)
        head = np.zeros(k, np.int64)
        out = np.empty(self.batch_records, np.int64)
        pending: list[np.ndarray] = []  # merged (stream, record number) rows of the batch
        npending = 0
        seq0 = 0
        for s in streams:
            self._load(s, layout, tf)
        while True:
            ts, starts, ends = self._loaded(streams)
            more = np.array([not s.exhausted for s in streams], np.bool_)
            h = starts + head
            m = merge_until(ts, h, ends, more, out[: self.batch_records - npending])
            if m:
                pos = out[:m].copy()
                sid = np.searchsorted(ends, pos, side="right")
                pending.append(np.stack([sid, pos - starts[sid] + self._first(streams)[sid]]))
                npending += m
            head = h - starts
            if npending >= self.batch_records:
                yield from self._emit(streams, pending, seq0, tf)
                seq0 += npending
                pending, npending = [], 0
                head = self._drop_merged(streams, head)
                continue
            dry = [i for i, s in enumerate(streams)
                   if head[i] >= sum(s.counts) and not s.exhausted]
            if not dry:
                break
            for i in dry:
                self._load(streams[i], layout, tf)
        if npending:
            yield from self._emit(streams, pending, seq0, tf)
            seq0 += npending
        self.stats.lines = seq0
        for s in streams:
            self.stats.error = self.stats.error or s.source.error
        self._note_pages(streams)

    def _first(self, streams: list[_Stream]) -> np.ndarray:
        return np.array([s.first_rec for s in streams], np.int64)

    def _loaded(self, streams: list[_Stream]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All loaded records' timestamps, stream after stream, and each stream's range."""
        parts, starts, ends = [], [], []
        pos = 0
        for s in streams:
            starts.append(pos)
            for r in s.recs:
                parts.append(r[2])
                pos += len(r[2])
            ends.append(pos)
        ts = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return ts, np.asarray(starts, np.int64), np.asarray(ends, np.int64)

    def _load(self, s: _Stream, layout: np.ndarray, tf: TraceFile) -> None:
        """Scan the next pages of a stream (until some records come, or its end)."""
        while True:
            data = s.source.next()
            if data is None:
                s.exhausted = True
                return
            buf = np.frombuffer(data, np.uint8)
            page = tf.page_size
            starts = np.arange(0, len(buf), page, dtype=np.int64)
            ends = np.minimum(starts + page, len(buf))
            nrec = np.zeros(len(starts), np.int64)
            status = np.zeros(len(starts), np.int64)
            lost = np.zeros(len(starts), np.int64)
            arrays = _record_arrays(len(buf) // 8 + 1)
            total = _scan_pages(buf, starts, ends, layout, True, *arrays, nrec, status, lost)
            arrays = tuple(a[:total] for a in arrays)
            ts = _apply_clock(arrays[2], tf)
            rec_before = np.concatenate(([0], np.cumsum(nrec)[:-1])) + s.loaded
            g = s.page0 + s.pages_read + np.arange(len(starts))
            for p in np.flatnonzero(lost != _LOST_NONE):
                s.lost_pages.append((int(g[p]), int(lost[p]), int(rec_before[p])))
            for p in np.flatnonzero(status != 0):
                s.status.append((int(status[p]), int(g[p])))
            s.pages_read += len(starts)
            s.loaded += total
            if total:
                s.bufs.append(buf)
                s.recs.append((arrays[0], arrays[1], ts, *arrays[3:]))
                s.counts.append(total)
                return

    def _drop_merged(self, streams: list[_Stream], head: np.ndarray) -> np.ndarray:
        """Forget the segments whose records are all merged; the new heads."""
        new = head.copy()
        for i, s in enumerate(streams):
            while s.counts and new[i] >= s.counts[0]:
                new[i] -= s.counts[0]
                s.first_rec += s.counts[0]
                s.counts.pop(0)
                s.recs.pop(0)
                s.bufs.pop(0)
        return new

    def _emit(self, streams: list[_Stream], pending: list[np.ndarray], seq0: int,
              tf: TraceFile) -> Iterator[pa.Table]:
        """The events table of merged rows (stream, per-CPU record number)."""
        rows = np.concatenate(pending, axis=1)
        bufs, offs, fields = [], [], []
        base = 0
        seg_of: list[tuple[int, int, int, int]] = []  # (stream, first rec, count, row base)
        rowbase = 0
        for i, s in enumerate(streams):
            first = s.first_rec
            for b, r, cnt in zip(s.bufs, s.recs, s.counts, strict=True):
                bufs.append(b)
                offs.append(r[0] + base)
                fields.append(r[1:])
                seg_of.append((i, first, cnt, rowbase))
                base += len(b)
                rowbase += cnt
                first += cnt
        seg_stream = np.array([x[0] for x in seg_of], np.int64)
        seg_first = np.array([x[1] for x in seg_of], np.int64)
        seg_row = np.array([x[3] for x in seg_of], np.int64)
        # the concatenated row of each merged record
        key = seg_stream * (1 << 40) + seg_first
        seg = np.searchsorted(key, rows[0] * (1 << 40) + rows[1], side="right") - 1
        at = seg_row[seg] + rows[1] - seg_first[seg]
        buf = np.concatenate(bufs)
        cat = [np.concatenate(offs)] + [np.concatenate([f[j] for f in fields])
                                        for j in range(len(fields[0]))]
        cpu_of = np.array([s.source.cpu.cpu for s in streams], np.int16)
        rec = Records(buf, cat[0][at], cat[1][at], cat[2][at], cpu_of[rows[0]], cat[3][at],
                      cat[4][at], cat[5][at], cat[6][at], np.arange(len(at), dtype=np.int64))
        st = TraceStats()
        if self.columns:
            cols, names, comp, markers = record_columns(rec, tf, st, seq0)
            n = len(cols["ev"]) + (comp.num_rows if comp is not None else 0)
            out = (cols, names, comp)
        else:
            out, markers = record_tables(rec, tf, st, seq0)
            n = out.num_rows
        self._merge_stats(st)
        self._resolve_lost(streams, rows, seq0)
        if markers.num_rows:
            self.markers.append(markers)
            self.marker_rows.extend(zip(markers["seq"].to_pylist(),
                                        markers["text"].to_pylist(), strict=True))
        if n:
            yield out

    def _merge_stats(self, part: TraceStats) -> None:
        st = self.stats
        st.events += part.events
        for name in EVENT_NAMES:
            if name in part.events_by_kind:
                st.events_by_kind[name] = st.events_by_kind.get(name, 0) + \
                    part.events_by_kind[name]
        st.events_by_kind = {n: st.events_by_kind[n] for n in EVENT_NAMES
                             if n in st.events_by_kind}
        st.markers += part.markers
        for k, v in part.other_events.items():
            st.other_events[k] = st.other_events.get(k, 0) + v
        for k, v in part.bad_lines.items():
            st.bad_lines[k] = st.bad_lines.get(k, 0) + v
        room = 20 - len(st.bad_samples)
        st.bad_samples.extend(part.bad_samples[:max(room, 0)])

    def _resolve_lost(self, streams: list[_Stream], rows: np.ndarray, seq0: int) -> None:
        """Seq of the record each lost page's count sits before, once that record is merged."""
        for i, s in enumerate(streams):
            if not s.lost_pages:
                continue
            mine = np.flatnonzero(rows[0] == i)
            recs = rows[1][mine]
            keep = []
            for g, cnt, first in s.lost_pages:
                if len(g_seq := mine[recs == first]):
                    self._lost.append((int(g_seq[0]) + 1 + seq0, g, s.source.cpu.cpu, cnt))
                else:
                    keep.append((g, cnt, first))
            s.lost_pages = keep

    def _note_pages(self, streams: list[_Stream]) -> None:
        """tracedat._note_bad_pages over every page read; unresolved lost pages."""
        st = self.stats
        bad = sorted((g, status, s.source.cpu.cpu) for s in streams for status, g in s.status)
        for status, reason in _PAGE_PROBLEMS.items():
            pages = [(g, c) for g, stt, c in bad if stt == status]
            if pages:
                st.bad_lines[reason] = st.bad_lines.get(reason, 0) + len(pages)
                if len(st.bad_samples) < 20:
                    st.bad_samples.append((0, reason, f"CPU {pages[0][1]} page {pages[0][0]}"))
        for s in streams:
            for g, cnt, _ in s.lost_pages:
                self._lost.append((0, g, s.source.cpu.cpu, cnt))

    def lost_table(self) -> pa.Table:
        """tracedat._lost_table: missed pages by seq (those without a next record last), then
        the CPUs' dropped events."""
        st = self.stats
        lost = sorted(self._lost, key=lambda r: (r[0] == 0, r[0], r[1]))
        rows: list[tuple[int | None, int, int | None, str]] = [
            (q or None, cpu, n if n >= 0 else None, "missed_page") for q, _, cpu, n in lost]
        tf = self.tf
        for cpu, values in sorted((tf.cpustats if tf is not None else {}).items()):
            dropped = values.get("dropped events", 0) + values.get("commit overrun", 0)
            if dropped:
                rows.append((None, cpu, dropped, "dropped"))
        for _, cpu, n, _ in rows:
            if n is not None:
                st.lost_by_cpu[cpu] = st.lost_by_cpu.get(cpu, 0) + n
                st.lost_events += n
        columns = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
        return pa.Table.from_arrays(
            [pa.array(col, type=f.type) for col, f in zip(columns, LOST_SCHEMA, strict=True)],
            schema=LOST_SCHEMA)
