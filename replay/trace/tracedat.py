"""Read trace-cmd's binary trace.dat (file versions 6 and 7) natively into the events table.

No trace-cmd and no libtraceevent: the file is parsed here, following trace-cmd's
Documentation/trace-cmd/trace-cmd.dat.v{6,7}.5.txt and libtraceevent's kbuffer-parse.c.

* Metadata: the initial header, the v7 compression header and sections (zstd, zlib or none),
  header_page / header_event, the ftrace and event ``format`` files (field offsets, sizes and
  signedness are taken from the file), saved cmdlines and the options (BUFFER, CPUCOUNT,
  TRACECLOCK, UNAME, TSC2NSEC...). kallsyms and printk formats are skipped unread.
* Data: the flyrecord per-CPU ring-buffer pages (v7 data may be chunk-compressed) are walked by a
  numba kernel: page header (timestamp, commit word with the missed-events flags and the stored
  lost count), then 5-bit type_len / 27-bit time-delta record headers, time extends, absolute
  time stamps and padding. Fields are gathered per event type at the offsets of its format.
* Order: the per-CPU streams are merged as trace-cmd report (and the kernel's ``trace`` file) do:
  the record with the smallest timestamp first, ties to the lowest CPU, each CPU in page order.

Timestamps are the ring buffer's own clock (converted with TSC2NSEC when the file has it); the
DATE and OFFSET options that ``trace-cmd report`` adds on top are not applied, so ``ts_ns``
matches the kernel's text trace. Guest/host TIME_SHIFT corrections are not applied either, and
a counter clock (``counter``, raw ``x86-tsc``) without TSC2NSEC leaves ``ts_ns`` in ticks. A
discarded event left in a page as padding advances the clock by its delta, as in kbuffer and
trace-cmd report; the kernel's own text reader skips that delta.

Only the top instance's buffer is read; a latency-format (text) trace.dat gives no events. The
whole file is held in memory (compressed CPU data inflated), plus about 30 bytes per record.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
from numba import njit

from replay.errors import InputError
from replay.trace.result import TraceData, TraceStats
from replay.trace.schema import LOST_SCHEMA
from replay.trace.sources import read_whole
from replay.trace.tracefmt import (  # noqa: F401 - re-exported: tests and fixtures use them here
    TRACING_MAGIC,
    CpuData,
    EventFormat,
    FieldFormat,
    PageHeader,
    TraceFile,
    check_header_event,
    eval_c_constant,
    irq_flags_from_trace_flags,
    parse_cmdlines,
    parse_event_format,
    parse_header_page,
    print_fmt_value,
    read_cmdlines,
    read_event_formats,
    read_ftrace_formats,
    read_header_files,
    split_print_fmt,
)
from replay.trace.tracefmt import ByteReader as _Reader
from replay.trace.tracefmt import FormatError as _FormatError
from replay.trace.tracerecords import Records, _read_uint, common_fields, record_tables

__all__ = [
    "TRACEDAT_MAGIC",
    "EventFormat",
    "FieldFormat",
    "irq_flags_from_trace_flags",
    "looks_like_tracedat",
    "read_tracedat",
]

TRACEDAT_MAGIC = TRACING_MAGIC

# trace-cmd option / section ids (lib/trace-cmd/include/trace-cmd-local.h, trace-cmd.dat.v7).
OPT_DONE, OPT_DATE, OPT_CPUSTAT, OPT_BUFFER, OPT_TRACECLOCK, OPT_UNAME = 0, 1, 2, 3, 4, 5
OPT_OFFSET, OPT_CPUCOUNT, OPT_VERSION, OPT_TIME_SHIFT, OPT_TSC2NSEC = 7, 8, 9, 12, 14
OPT_HEADER_INFO, OPT_FTRACE_EVENTS, OPT_EVENT_FORMATS = 16, 17, 18
OPT_KALLSYMS, OPT_PRINTK, OPT_CMDLINES, OPT_BUFFER_TEXT = 19, 20, 21, 22
SEC_FL_COMPRESS = 1
_MAX_OPTION_SECTIONS = 1024
_MAX_BLOCK = 1 << 31  # largest compressed section or chunk accepted (uncompressed bytes)

# include/linux/ring_buffer.h: record types carried in the 5-bit type_len.
RB_TYPE_PADDING, RB_TYPE_TIME_EXTEND, RB_TYPE_TIME_STAMP = 29, 30, 31
RB_MISSED_EVENTS = 1 << 31  # kernel/trace/ring_buffer.c: page commit flags
RB_MISSED_STORED = 1 << 30
RB_COMMIT_MASK = (1 << 27) - 1

# Page status codes written by the scan kernel (as literals: 0..5 in that order).
PAGE_OK, PAGE_SHORT, PAGE_BAD_COMMIT, PAGE_OVERRUN, PAGE_BAD_LENGTH, PAGE_CUT = range(6)
_PAGE_PROBLEMS = {
    PAGE_SHORT: "ring-buffer page shorter than its header",
    PAGE_BAD_COMMIT: "ring-buffer page commit past the page end",
    PAGE_OVERRUN: "ring-buffer record runs past the page commit",
    PAGE_BAD_LENGTH: "ring-buffer record with an impossible length",
}
_LOST_NONE = -2  # page_lost value of a page without the missed-events flag


def looks_like_tracedat(head: bytes) -> bool:
    """True when `head` (the first bytes of an uncompressed file) is a trace.dat header."""
    return head[: len(TRACEDAT_MAGIC)] == TRACEDAT_MAGIC


# --------------------------------------------------------------------------------------------
# Compression: the outer file (gzip/zstd) and the v7 sections and chunks (zstd/zlib)
# --------------------------------------------------------------------------------------------


class _Codec:
    """The v7 file's compression algorithm, for compressed sections and data chunks."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "zstd":
            import zstandard

            self._zstd = zstandard.ZstdDecompressor()
            self._errors: tuple[type[Exception], ...] = (zstandard.ZstdError,)
        elif name in ("zlib", "none"):
            self._errors = (zlib.error,)
        else:
            raise _FormatError(f"the trace.dat uses compression {name!r}; only zstd, zlib and "
                               "none are supported")

    def decompress(self, data: memoryview | bytes, size: int, where: str) -> bytes:
        """Inflate one block to `size` bytes; a codec error becomes a _FormatError at `where`."""
        if size > _MAX_BLOCK:
            raise _FormatError(f"{where} claims {size} uncompressed bytes, more than any block")
        try:
            if self.name == "zstd":
                out = self._zstd.decompress(bytes(data), max_output_size=size)
            elif self.name == "zlib":
                out = zlib.decompress(data, bufsize=max(size, 1))
            else:
                out = bytes(data)
        except (*self._errors, MemoryError) as exc:
            raise _FormatError(f"{where} does not decompress ({self.name}: {exc})") from None
        if len(out) != size:
            raise _FormatError(f"{where} decompresses to {len(out)} bytes, not {size}")
        return out


class _MetadataParser:
    """Reads a trace.dat held in memory into a TraceFile (no ring-buffer data yet)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.tf = TraceFile()
        self.codec: _Codec | None = None
        self.sections: dict[int, int] = {}
        self.buffer_offset: int | None = None

    def reader(self, offset: int, what: str) -> _Reader:
        r = _Reader(self.data, self.tf.endian, 0, what)
        r.pos = offset
        return r

    # ---- shared blocks -------------------------------------------------------------------

    def initial_header(self) -> _Reader:
        r = _Reader(self.data, "<", 0, "the initial header")
        if bytes(r.take(10, "magic")) != TRACEDAT_MAGIC:
            raise _FormatError("not a trace.dat")
        version = r.cstring("version")
        if not version.isdigit() or int(version) not in (6, 7):
            raise _FormatError(f"trace.dat version {version!r} is not supported (6 or 7)")
        self.tf.version = int(version)
        endian = r.number(1, "endianness")
        self.tf.endian = r.endian = ">" if endian else "<"
        self.tf.long_size = r.number(1, "long size")
        self.tf.page_size = r.u32("page size")
        if self.tf.page_size < 64 or self.tf.page_size & (self.tf.page_size - 1):
            raise _FormatError(f"the page size {self.tf.page_size} in the header is not valid")
        return r

    def header_files(self, r: _Reader) -> None:
        read_header_files(r, self.tf)

    def ftrace_formats(self, r: _Reader) -> None:
        read_ftrace_formats(r, self.tf)

    def event_formats(self, r: _Reader) -> None:
        read_event_formats(r, self.tf)

    def cmdlines(self, r: _Reader) -> None:
        read_cmdlines(r, self.tf)

    # ---- options ---------------------------------------------------------------------------

    def option(self, opt: int, body: memoryview) -> None:
        """Apply one option; unknown ones are skipped as trace-cmd does."""
        num = "little" if self.tf.endian == "<" else "big"
        text = (bytes(body).split(b"\0", 1)[0].decode("utf-8", "replace")
                if opt in (OPT_TRACECLOCK, OPT_UNAME, OPT_VERSION, OPT_OFFSET, OPT_CPUSTAT)
                else "")
        if opt in (OPT_HEADER_INFO, OPT_FTRACE_EVENTS, OPT_EVENT_FORMATS, OPT_KALLSYMS,
                   OPT_PRINTK, OPT_CMDLINES) and len(body) >= 8:
            self.sections[opt] = int.from_bytes(body[:8], num)
        elif opt == OPT_BUFFER:
            self.buffer_option(body)
        elif opt == OPT_BUFFER_TEXT:
            self.tf.latency = True
        elif opt == OPT_CPUCOUNT and len(body) >= 4:
            self.tf.cpu_count = int.from_bytes(body[:4], num)
        elif opt == OPT_TRACECLOCK:
            m = re.search(r"\[(\S+)\]", text)
            self.tf.clock = m[1] if m else self.tf.clock
        elif opt == OPT_UNAME:
            self.tf.uname = text
        elif opt == OPT_VERSION:
            self.tf.tracecmd_version = text
        elif opt == OPT_OFFSET:
            try:
                self.tf.ts_offset = int(text, 0)
            except ValueError:
                pass
        elif opt == OPT_TSC2NSEC and len(body) >= 16:
            self.tf.tsc2nsec = (int.from_bytes(body[:4], num), int.from_bytes(body[4:8], num),
                                int.from_bytes(body[8:16], num))
        elif opt == OPT_CPUSTAT:
            self.cpustat(text)

    def cpustat(self, text: str) -> None:
        """CPUSTAT: the per_cpu/cpuN/stats file (`entries: N`, `dropped events: N`, ...)."""
        values = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if value.strip().isdigit():
                values[key.strip()] = int(value)
        if "CPU" in values:
            self.tf.cpustats[values.pop("CPU")] = values

    def buffer_option(self, body: memoryview) -> None:
        """BUFFER: the flyrecord section offset and, in v7, each CPU's data offset and size."""
        r = _Reader(body, self.tf.endian, -1, "the BUFFER option")
        offset = r.u64("buffer offset")
        name = r.cstring("buffer name")
        if name != "" or self.tf.version < 7:  # only the top instance is read
            return
        self.buffer_offset = offset
        clock = r.cstring("buffer clock")
        self.tf.clock = clock or self.tf.clock
        r.u32("buffer page size")
        cpus = [CpuData(r.u32("cpu id"), r.u64("cpu data offset"), r.u64("cpu data size"))
                for _ in range(r.u32("cpu count"))]
        ids = [c.cpu for c in cpus]
        if len(set(ids)) != len(ids) or max(ids, default=0) >= 1 << 15:
            raise _FormatError(f"the BUFFER option lists impossible CPU ids {ids}")
        self.tf.cpus = sorted(cpus, key=lambda c: c.cpu)

    def options_list(self, r: _Reader, sectioned: bool) -> int:
        """Read options until DONE; return the next options section offset (v7) or 0."""
        while True:
            opt = r.u16("option id")
            if opt == OPT_DONE and not sectioned:
                return 0
            size = r.u32("option size")
            body = r.take(size, f"option {opt}")
            if opt == OPT_DONE:
                return int.from_bytes(body[:8], "little" if self.tf.endian == "<" else "big")
            self.option(opt, body)

    # ---- version 6 -------------------------------------------------------------------------

    def parse_v6(self, r: _Reader) -> None:
        r.what = "the header_page/header_event block"
        self.header_files(r)
        r.what = "the ftrace event formats"
        self.ftrace_formats(r)
        r.what = "the event formats"
        self.event_formats(r)
        r.what = "the kallsyms block"
        r.take(r.u32("kallsyms size"), "kallsyms")
        r.what = "the printk formats block"
        r.take(r.u32("printk size"), "printk formats")
        r.what = "the saved cmdlines block"
        self.cmdlines(r)
        r.what = "the flyrecord header"
        header_cpus = r.u32("cpu count")
        kind = bytes(r.take(10, "options/flyrecord tag"))
        if kind.startswith(b"options"):
            r.what = "the options block"
            self.options_list(r, sectioned=False)
            r.what = "the flyrecord header"
            kind = bytes(r.take(10, "flyrecord tag"))
        if kind.startswith(b"latency"):
            self.tf.latency = True
            return
        if not kind.startswith(b"flyrecord"):
            raise _FormatError(f"unknown data block {kind!r} at offset {r.pos - 10}")
        cpus = self.tf.cpu_count or header_cpus
        self.tf.cpu_count = cpus
        self.tf.cpus = [CpuData(cpu, r.u64("cpu data offset"), r.u64("cpu data size"))
                        for cpu in range(cpus)]

    # ---- version 7 -------------------------------------------------------------------------

    def section(self, offset: int, expect: int, what: str) -> tuple[_Reader, int]:
        """Open the section at `offset` and return a reader over its (inflated) payload."""
        r = self.reader(offset, f"the {what} section header")
        sec_id = r.u16("section id")
        flags = r.u16("section flags")
        r.u32("section description")
        size = r.u64("section size")
        if sec_id != expect:
            raise _FormatError(f"expected the {what} section (id {expect}) at offset {offset}, "
                               f"found id {sec_id}")
        r.what = f"the {what} section"
        if flags & SEC_FL_COMPRESS and self.codec is not None and self.codec.name != "none":
            zsize, usize = r.u32("compressed size"), r.u32("uncompressed size")
            start = r.pos
            data = self.codec.decompress(r.take(zsize, "compressed data"), usize,
                                         f"the {what} section at offset {offset}")
            return _Reader(data, self.tf.endian, -1, f"the {what} section"), start + zsize
        start = r.pos
        return _Reader(r.take(size, "section data"), self.tf.endian, start, r.what), start + size

    def parse_v7(self, r: _Reader) -> None:
        self.tf.compression = r.cstring("compression name")
        r.cstring("compression version")
        self.codec = _Codec(self.tf.compression)
        offset = r.u64("first options offset")
        seen: set[int] = set()
        while offset:
            if offset in seen or len(seen) > _MAX_OPTION_SECTIONS:
                raise _FormatError(f"the options sections loop back to offset {offset}")
            seen.add(offset)
            if offset >= len(self.data):
                self.tf.error = (f"the trace.dat is truncated: the options section at offset "
                                 f"{offset} lies past its end ({len(self.data)} bytes)")
                break
            try:
                sec, end = self.section(offset, OPT_DONE, "options")
                offset = self.options_list(sec, sectioned=True)
            except _FormatError as exc:
                if len(seen) == 1:
                    raise
                self.tf.error = str(exc)  # a later options section: keep what was read
                break
            self.tf.options_end = max(self.tf.options_end, end)
        readers = (
            (OPT_HEADER_INFO, "headers", self.header_files),
            (OPT_FTRACE_EVENTS, "ftrace formats", self.ftrace_formats),
            (OPT_EVENT_FORMATS, "event formats", self.event_formats),
            (OPT_CMDLINES, "saved cmdlines", self.cmdlines),
        )
        for sec_id, what, read in readers:
            if sec_id not in self.sections:
                if sec_id != OPT_CMDLINES:
                    raise _FormatError(self.tf.error or f"the trace.dat has no {what} section")
                continue
            sec, _ = self.section(self.sections[sec_id], sec_id, what)
            read(sec)
        self.locate_v7_data()

    def locate_v7_data(self) -> None:
        """Find the flyrecord section's flags; recover the CPU layout if BUFFER is missing."""
        if self.tf.latency and self.buffer_offset is None:
            return
        offset = self.buffer_offset
        if offset is None:
            offset = self.tf.options_end
            if not self.tf.error:
                self.tf.error = "the trace.dat has no BUFFER option describing its CPU data"
        r = self.reader(offset, "the flyrecord section header")
        try:
            sec_id = r.u16("section id")
            flags = r.u16("section flags")
            r.u32("section description")
            r.u64("section size")
        except _FormatError:
            if self.buffer_offset is not None:
                raise
            return
        if sec_id != OPT_BUFFER:
            if self.buffer_offset is not None:
                raise _FormatError(f"no flyrecord section at offset {offset} (found id {sec_id})")
            return
        self.tf.data_compressed = bool(flags & SEC_FL_COMPRESS) and self.tf.compression != "none"
        if self.buffer_offset is None:
            self.recover_cpu_layout(r.pos)

    def recover_cpu_layout(self, start: int) -> None:
        """Walk chunked CPU data (page-aligned, one CPU after the other) without BUFFER."""
        if not self.tf.data_compressed:
            self.tf.error += "; uncompressed CPU data cannot be split without it"
            return
        page = self.tf.page_size
        pos = (start + page - 1) // page * page
        for cpu in range(self.tf.cpu_count or 1):
            r = self.reader(pos, "recovered CPU data")
            try:
                for _ in range(r.u32("chunk count")):
                    zsize = r.u32("chunk compressed size")
                    r.u32("chunk size")
                    r.take(zsize, "chunk data")
            except _FormatError:
                r.pos = len(self.data)
            self.tf.cpus.append(CpuData(cpu, pos, r.pos - pos))
            if r.pos >= len(self.data):
                break
            pos = (r.pos + page - 1) // page * page
        self.tf.error += (f"; recovered data for {len(self.tf.cpus)} CPU(s) by walking the "
                          "compressed chunks")

    def parse(self) -> TraceFile:
        r = self.initial_header()
        if self.tf.version >= 7:
            self.parse_v7(r)
        else:
            self.parse_v6(r)
        return self.tf


# --------------------------------------------------------------------------------------------
# CPU data: inflate chunks and list the pages
# --------------------------------------------------------------------------------------------


@dataclass
class PageSet:
    """All pages to scan: one byte buffer, each page's start/end in it and its CPU."""

    buf: np.ndarray
    start: np.ndarray
    end: np.ndarray
    cpu: np.ndarray
    stream_cpus: list[int]
    error: str | None = None


def _inflate_chunks(data: bytes, cpu: CpuData, codec: _Codec, endian: str,
                    ) -> tuple[list[bytes], str | None]:
    """Decompress one CPU's chunked data; stop at the first short or bad chunk."""
    r = _Reader(data, endian, 0, f"the CPU {cpu.cpu} data")
    r.pos = cpu.offset
    chunks: list[bytes] = []
    try:
        count = r.u32("chunk count")
        for i in range(count):
            zsize, usize = r.u32("chunk compressed size"), r.u32("chunk size")
            where = f"chunk {i} of CPU {cpu.cpu} at offset {r.pos - 8}"
            chunks.append(codec.decompress(r.take(zsize, f"chunk {i}"), usize, where))
    except _FormatError as exc:
        return chunks, str(exc)
    return chunks, None


def _load_pages(data: bytes, tf: TraceFile, codec: _Codec | None) -> PageSet:
    """Collect every CPU's pages into one buffer (inflated when the data is chunked)."""
    page = tf.page_size
    error: str | None = None
    if tf.data_compressed and codec is not None:
        blobs: list[tuple[int, list[bytes]]] = []
        for cpu in tf.cpus:
            if cpu.size == 0:
                continue
            chunks, problem = _inflate_chunks(data, cpu, codec, tf.endian)
            error = error or problem
            blobs.append((cpu.cpu, chunks))
        sizes = [sum(len(c) for c in chunks) for _, chunks in blobs]
        padded = [(s + page - 1) // page * page for s in sizes]
        buf = np.zeros(sum(padded), dtype=np.uint8)
        segments = []
        pos = 0
        for (cpu_id, chunks), size, pad in zip(blobs, sizes, padded, strict=True):
            at = pos
            for chunk in chunks:
                buf[at : at + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                at += len(chunk)
            segments.append((cpu_id, pos, size))
            pos += pad
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
        segments = []
        for cpu in tf.cpus:
            if cpu.size == 0:
                continue
            available = max(0, min(cpu.size, len(data) - cpu.offset))
            if available < cpu.size and error is None:
                error = (f"the trace.dat is truncated at byte {len(data)}, inside the "
                         f"ring-buffer data of CPU {cpu.cpu} (bytes {cpu.offset}-"
                         f"{cpu.offset + cpu.size})")
            segments.append((cpu.cpu, cpu.offset, available))
    starts, ends, cpus = [], [], []
    for cpu_id, seg_start, seg_size in segments:
        page_starts = np.arange(seg_start, seg_start + seg_size, page, dtype=np.int64)
        starts.append(page_starts)
        ends.append(np.minimum(page_starts + page, seg_start + seg_size))
        cpus.append(np.full(page_starts.size, cpu_id, dtype=np.int64))
    return PageSet(buf, _concat(starts), _concat(ends), _concat(cpus),
                   [s[0] for s in segments], error)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    """np.concatenate that accepts an empty list (int64)."""
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# numba kernels: page scan, field gather, per-CPU merge
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _scan_pages(buf, page_start, page_end, layout, fill, rec_off, rec_len, rec_ts, rec_type,
                rec_flags, rec_pc, rec_pid, page_nrec, page_status,
                page_lost):  # pragma: no cover - compiled
    """Walk every page's records; with fill=False only count them. Returns the record count.

    Per record (fill=True): data offset, data length, timestamp and the common fields
    (type id, or -1 when the record is too short for them; flags; preempt count; pid).
    Per page: record count, a PAGE_* status and the lost count (-2 none, -1 missed but not
    stored, else the stored count).
    """
    ts_off, ts_size = layout[0], layout[1]
    commit_off, commit_size, data_off, big = layout[2], layout[3], layout[4], layout[5]
    type_off, type_size, flags_off, pc_off = layout[6], layout[7], layout[8], layout[9]
    pid_off, pid_size, common_end, page_size = layout[10], layout[11], layout[12], layout[13]
    ts_msb = -576460752303423488  # 0xf8 << 56 as int64: absolute stamps keep these bits
    n = 0
    for p in range(page_start.size):
        p0 = page_start[p]
        pend = page_end[p]
        page_nrec[p] = 0
        page_status[p] = 0
        page_lost[p] = -2
        if pend - p0 < data_off:
            page_status[p] = 5 if pend - p0 < page_size else 1
            continue
        ts = _read_uint(buf, p0 + ts_off, ts_size, big)
        commit = _read_uint(buf, p0 + commit_off, commit_size, big)
        end = p0 + data_off + (commit & 0x7FFFFFF)
        if commit & 0x80000000:
            page_lost[p] = -1
            if commit & 0x40000000 and end + commit_size <= pend:
                page_lost[p] = _read_uint(buf, end, commit_size, big)
        overrun = 3  # PAGE_OVERRUN, or PAGE_CUT on a page the file ends inside
        if end > pend:
            overrun = 5 if pend - p0 < page_size else 3
            page_status[p] = 5 if pend - p0 < page_size else 2
            end = pend
        pos = p0 + data_off
        count = 0
        while pos < end:
            if pos + 4 > end:
                page_status[p] = overrun
                break
            word = _read_uint(buf, pos, 4, big)
            if big:
                type_len = word >> 27
                delta = word & 0x7FFFFFF
            else:
                type_len = word & 31
                delta = word >> 5
            if type_len == 29:  # padding; a zero delta means the rest of the page is empty
                if delta == 0 or pos + 8 > end:
                    break
                ts += delta
                pos = pos + 4 + _read_uint(buf, pos + 4, 4, big)
                continue
            if type_len == 30 or type_len == 31:  # time extend / absolute time stamp
                if pos + 8 > end:
                    page_status[p] = overrun
                    break
                extend = (_read_uint(buf, pos + 4, 4, big) << 27) + delta
                if type_len == 30:
                    ts += extend
                else:
                    ts = extend | (ts & ts_msb)
                pos += 8
                continue
            if type_len == 0:
                if pos + 8 > end:
                    page_status[p] = overrun
                    break
                length = _read_uint(buf, pos + 4, 4, big) - 4
                if length < 0:
                    page_status[p] = 4
                    break
                length = (length + 3) & ~3
                start = pos + 8
            else:
                length = type_len * 4
                start = pos + 4
            if start + length > end:
                page_status[p] = overrun
                break
            ts += delta
            if fill:
                rec_off[n] = start
                rec_len[n] = length
                rec_ts[n] = ts
                if length >= common_end:
                    rec_type[n] = _read_uint(buf, start + type_off, type_size, big)
                    rec_flags[n] = buf[start + flags_off]
                    rec_pc[n] = buf[start + pc_off]
                    rec_pid[n] = _read_uint(buf, start + pid_off, pid_size, big)
                else:
                    rec_type[n] = -1
                    rec_flags[n] = 0
                    rec_pc[n] = 0
                    rec_pid[n] = 0
            n += 1
            count += 1
            pos = start + length
        page_nrec[p] = count
    return n


@njit(cache=True, nogil=True)
def _heap_less(ts, head, a, b):  # pragma: no cover - compiled
    """Stream a's next record sorts before stream b's: earlier time, or same time, lower CPU."""
    ta = ts[head[a]]
    tb = ts[head[b]]
    return ta < tb or (ta == tb and a < b)


@njit(cache=True, nogil=True)
def merge_until(ts, head, ends, more, out):  # pragma: no cover - compiled
    """k-way merge of per-CPU record streams into `out` (record indices), smallest timestamp
    first, ties to the lower stream: trace-cmd's tracecmd_peek_next_data() rule (and the
    kernel's __find_next_entry()), with a binary heap keyed on (timestamp, stream). `head`
    advances as records are taken. Stops when a stream with `more` data runs out of loaded
    records (the caller loads more and calls again) or `out` is full; returns the count."""
    k = head.size
    heap = np.empty(k, dtype=np.int64)
    hn = 0
    for s in range(k):
        if head[s] >= ends[s]:
            continue
        heap[hn] = s
        c = hn
        hn += 1
        while c > 0 and _heap_less(ts, head, heap[c], heap[(c - 1) // 2]):
            parent = (c - 1) // 2
            heap[c], heap[parent] = heap[parent], heap[c]
            c = parent
    n = 0
    while hn > 0 and n < out.size:
        s = heap[0]
        out[n] = head[s]
        n += 1
        head[s] += 1
        if head[s] >= ends[s]:
            if more[s]:
                return n
            hn -= 1
            heap[0] = heap[hn]
        c = 0
        while True:
            best = 2 * c + 1
            if best >= hn:
                break
            if best + 1 < hn and _heap_less(ts, head, heap[best + 1], heap[best]):
                best += 1
            if not _heap_less(ts, head, heap[best], heap[c]):
                break
            heap[best], heap[c] = heap[c], heap[best]
            c = best
    return n


@njit(cache=True, nogil=True)
def _merge_streams(ts, starts, ends):  # pragma: no cover - compiled
    """All records of every stream in merged order (merge_until over streams loaded whole)."""
    order = np.empty(ts.size, dtype=np.int64)
    merge_until(ts, starts.copy(), ends, np.zeros(starts.size, np.bool_), order)
    return order


# --------------------------------------------------------------------------------------------
# Records: scan, merge
# --------------------------------------------------------------------------------------------


def _layout(tf: TraceFile) -> np.ndarray:
    """The scan kernel's layout vector: page header timestamp offset/size, commit offset/size,
    data offset, big-endian flag; common_type offset/size, common_flags and
    common_preempt_count offsets, common_pid offset/size; end of the common fields; page size."""
    ph = tf.page_header
    ctype, cflags, cpc, cpid, common_end = common_fields(tf.formats)
    return np.array([ph.ts_offset, ph.ts_size, ph.commit_offset, ph.commit_size,
                     ph.data_offset, int(tf.endian == ">"), ctype.offset, min(ctype.size, 4),
                     cflags.offset, cpc.offset, cpid.offset, min(cpid.size, 4), common_end,
                     tf.page_size], dtype=np.int64)


_ONE_PASS_MAX_RECORDS = 1 << 25  # above this bound, count first instead of over-allocating


def _record_arrays(n: int) -> tuple[np.ndarray, ...]:
    """Empty per-record arrays: offset, length, timestamp, type, flags, preempt count, pid."""
    return (np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int32),
            np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int32),
            np.empty(n, dtype=np.uint8), np.empty(n, dtype=np.uint8),
            np.empty(n, dtype=np.int32))


def _scan(pages: PageSet, layout: np.ndarray) -> tuple[np.ndarray, ...]:
    """Run the page scan: in one pass into arrays sized for the smallest possible records
    (8 bytes; untouched memory is never faulted in), or count first for very large inputs."""
    n_pages = pages.start.size
    nrec = np.zeros(n_pages, dtype=np.int64)
    status = np.zeros(n_pages, dtype=np.int64)
    lost = np.zeros(n_pages, dtype=np.int64)
    head = (pages.buf, pages.start, pages.end, layout)
    tail = (nrec, status, lost)
    bound = int((pages.end - pages.start).sum()) // 8 + 1
    if bound > _ONE_PASS_MAX_RECORDS:
        bound = _scan_pages(*head, False, *_record_arrays(0), *tail)
    arrays = _record_arrays(bound)
    total = _scan_pages(*head, True, *arrays, *tail)
    return (*(a[:total] for a in arrays), nrec, status, lost)


def _apply_clock(ts: np.ndarray, tf: TraceFile) -> np.ndarray:
    """TSC2NSEC: ts * mult >> shift, as trace-cmd's mul_u64_u32_shr()."""
    if not tf.tsc2nsec or not tf.tsc2nsec[0]:
        return ts
    mult, shift, _ = tf.tsc2nsec
    u = ts.astype(np.uint64)
    lo = (u & np.uint64(0xFFFFFFFF)) * np.uint64(mult)
    hi = (u >> np.uint64(32)) * np.uint64(mult)
    if shift <= 32:
        out = (hi << np.uint64(32 - shift)) + (lo >> np.uint64(shift))
    else:
        out = (hi >> np.uint64(shift - 32)) + (lo >> np.uint64(shift))
    return out.astype(np.int64)


def _lost_page_seqs(page_lost: np.ndarray, page_rec_start: np.ndarray,
                    page_stream_end: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For pages with missed events: seq of the CPU's next record (0 when there is none)."""
    out = np.zeros(page_lost.size, dtype=np.int64)
    lost_pages = np.flatnonzero(page_lost != _LOST_NONE)
    if lost_pages.size:
        seq_of_record = np.empty(order.size, dtype=np.int64)
        seq_of_record[order] = np.arange(1, order.size + 1)
        first = page_rec_start[lost_pages]
        has = first < page_stream_end[lost_pages]
        out[lost_pages[has]] = seq_of_record[first[has]]
    return out


def _read_records(pages: PageSet, tf: TraceFile) -> Records:
    """Scan all pages, then merge the CPU streams by time."""
    off, length, ts, type_id, flags, preempt, pid, nrec, status, lost = _scan(pages, _layout(tf))
    ts = _apply_clock(ts, tf)
    # Pages of one CPU are contiguous and CPUs come in ascending order: one stream per CPU.
    page_cpu = pages.cpu
    page_rec_start = np.concatenate(([0], np.cumsum(nrec))).astype(np.int64)
    cpu_ids = np.asarray(pages.stream_cpus, dtype=np.int64)
    starts = page_rec_start[np.searchsorted(page_cpu, cpu_ids, "left")]
    ends = page_rec_start[np.searchsorted(page_cpu, cpu_ids, "right")]
    order = _merge_streams(ts, starts, ends)
    page_stream_end = ends[np.searchsorted(cpu_ids, page_cpu)] if page_cpu.size else nrec
    first_seq = _lost_page_seqs(lost, page_rec_start[:-1], page_stream_end, order)
    rec_cpu = np.repeat(page_cpu.astype(np.int16), nrec)
    return Records(pages.buf, off, length, ts, rec_cpu, type_id, flags, preempt, pid, order,
                   page_cpu, status, lost, first_seq)


def _lost_table(rec: Records, tf: TraceFile, stats: TraceStats) -> pa.Table:
    """One `missed_page` row per page whose commit word has the missed-events flag (count if
    stored), then one `dropped` row per CPU whose CPUSTAT reports events the ring buffer
    dropped without overwriting (`dropped events` + `commit overrun`: no page shows those)."""
    pages = np.flatnonzero(rec.page_lost != _LOST_NONE)
    seqs = rec.page_first_seq[pages]
    order = np.lexsort((pages, seqs, seqs == 0))  # by seq, pages without a next record last
    pages, seqs = pages[order], seqs[order]
    counts = rec.page_lost[pages]
    rows: list[tuple[int | None, int, int | None, str]] = [
        (int(q) or None, int(cpu), int(n) if n >= 0 else None, "missed_page")
        for q, cpu, n in zip(seqs, rec.page_cpu[pages], counts, strict=True)]
    for cpu, values in sorted(tf.cpustats.items()):
        dropped = values.get("dropped events", 0) + values.get("commit overrun", 0)
        if dropped:
            rows.append((None, cpu, dropped, "dropped"))
    for _, cpu, n, _ in rows:
        if n is not None:
            stats.lost_by_cpu[cpu] = stats.lost_by_cpu.get(cpu, 0) + n
            stats.lost_events += n
    columns = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, LOST_SCHEMA, strict=True)],
        schema=LOST_SCHEMA)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _note_bad_pages(rec: Records, stats: TraceStats) -> None:
    """Count pages the scan had to stop early in, by problem."""
    for status, reason in _PAGE_PROBLEMS.items():
        bad = np.flatnonzero(rec.page_status == status)
        if bad.size:
            stats.bad_lines[reason] = stats.bad_lines.get(reason, 0) + int(bad.size)
            if len(stats.bad_samples) < 20:
                stats.bad_samples.append(
                    (0, reason, f"CPU {int(rec.page_cpu[bad[0]])} page {int(bad[0])}"))


def _decode(data: bytes, stats: TraceStats) -> TraceData:
    """Parse metadata and data of an uncompressed trace.dat held in memory."""
    parser = _MetadataParser(data)
    try:
        tf = parser.parse()
    except _FormatError as exc:
        if parser.tf.version == 0:
            raise
        stats.error = str(exc)
        return TraceData.empty(stats)
    stats.cpus = tf.cpu_count or (len(tf.cpus) or None)
    if tf.uname:
        parts = tf.uname.split()
        stats.kernel_release = parts[2] if len(parts) >= 3 else None
    stats.error = tf.error
    if tf.latency and not tf.cpus:
        stats.error = stats.error or "the trace.dat holds a latency (text) trace, not ring data"
        return TraceData.empty(stats)
    pages = _load_pages(data, tf, parser.codec)
    stats.error = stats.error or pages.error
    rec = _read_records(pages, tf)
    stats.lines = int(rec.off.size)
    events, markers = record_tables(rec, tf, stats)
    _note_bad_pages(rec, stats)
    lost = _lost_table(rec, tf, stats)
    return TraceData(events, markers, lost, stats)


def read_tracedat(source: str | Path | BinaryIO | bytes, *, strict: bool = False) -> TraceData:
    """Read a trace-cmd trace.dat (v6 or v7; plain, gzip or zstd file) into a TraceData.

    `source` is a path, a binary stream, or the file's bytes. A truncated or corrupt file gives
    what could be read, with `stats.error` saying where reading stopped; with `strict=True` that
    (and any corrupt page or record) raises InputError instead. A file that is not a trace.dat
    always raises InputError.
    """
    data, name, compression, problem = read_whole(source)
    if not looks_like_tracedat(data):
        if problem and not data:
            raise InputError(f"{name} cannot be decompressed: {problem}")
        raise InputError(f"{name} is not a trace-cmd trace.dat file")
    stats = TraceStats(source=name, layout="trace.dat", compression=compression)
    try:
        result = _decode(data, stats)
    except _FormatError as exc:
        raise InputError(f"{name}: {exc}") from None
    except (struct.error, zlib.error, ValueError, IndexError, KeyError, OverflowError,
            MemoryError) as exc:
        result = TraceData.empty(stats)
        stats.error = f"the trace.dat is corrupt and could not be decoded ({exc})"
    if problem:
        stats.error = f"{problem}; {stats.error}" if stats.error else problem
    if strict and (stats.error or stats.bad_lines):
        reason = stats.error or ", ".join(f"{v} x {k}" for k, v in stats.bad_lines.items())
        raise InputError(f"{name}: {reason}")
    return result

