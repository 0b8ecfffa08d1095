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
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
from numba import njit

from replay.errors import InputError
from replay.trace.compaction import COMMON_COLUMNS, TRACEDAT_FIELDS, CompactionRows
from replay.trace.gfp import gfp_to_text
from replay.trace.result import TraceData, TraceStats
from replay.trace.schema import (
    EVENT_ALIASES,
    EVENT_CODE,
    EVENT_NAMES,
    EVENTS_SCHEMA,
    EXTRA_COLUMNS,
    IRQF_BH_OFF,
    IRQF_HARDIRQ,
    IRQF_IRQS_OFF,
    IRQF_NEED_RESCHED,
    IRQF_NMI,
    IRQF_PREEMPT_RESCHED,
    IRQF_PRESENT,
    IRQF_SOFTIRQ,
    LOST_SCHEMA,
    MARKERS_SCHEMA,
    null_columns,
)

__all__ = [
    "TRACEDAT_MAGIC",
    "EventFormat",
    "FieldFormat",
    "irq_flags_from_trace_flags",
    "looks_like_tracedat",
    "read_tracedat",
]

TRACEDAT_MAGIC = b"\x17\x08\x44tracing"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

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

# include/linux/trace_events.h (6.1) enum trace_flag_type -> the schema's IRQF_* bits.
TRACE_FLAG_IRQS_OFF = 0x01
TRACE_FLAG_IRQS_NOSUPPORT = 0x02  # printed 'X'; no IRQF bit for it
TRACE_FLAG_NEED_RESCHED = 0x04
TRACE_FLAG_HARDIRQ = 0x08
TRACE_FLAG_SOFTIRQ = 0x10
TRACE_FLAG_PREEMPT_RESCHED = 0x20
TRACE_FLAG_NMI = 0x40
TRACE_FLAG_BH_OFF = 0x80
_TRACE_FLAG_TO_IRQF = (
    (TRACE_FLAG_IRQS_OFF, IRQF_IRQS_OFF),
    (TRACE_FLAG_BH_OFF, IRQF_BH_OFF),
    (TRACE_FLAG_NEED_RESCHED, IRQF_NEED_RESCHED),
    (TRACE_FLAG_PREEMPT_RESCHED, IRQF_PREEMPT_RESCHED),
    (TRACE_FLAG_HARDIRQ, IRQF_HARDIRQ),
    (TRACE_FLAG_SOFTIRQ, IRQF_SOFTIRQ),
    (TRACE_FLAG_NMI, IRQF_NMI),
)

# Events-table columns filled from each event's fields (canonical event name -> column -> field).
_EVENT_FIELDS: dict[str, dict[str, str]] = {
    "mm_page_alloc": {
        "pfn": "pfn", "order": "order", "migratetype": "migratetype", "gfp_flags": "gfp_flags",
    },
    "mm_page_free": {"pfn": "pfn", "order": "order"},
    "mm_page_free_batched": {"pfn": "pfn"},
    "mm_page_alloc_zone_locked": {
        "pfn": "pfn", "order": "order", "migratetype": "migratetype",
        "percpu_refill": "percpu_refill",
    },
    "mm_page_pcpu_drain": {"pfn": "pfn", "order": "order", "migratetype": "migratetype"},
    "mm_page_alloc_extfrag": {
        "pfn": "pfn", "order": "alloc_order", "migratetype": "alloc_migratetype",
        "fallback_order": "fallback_order", "fallback_migratetype": "fallback_migratetype",
        "change_ownership": "change_ownership",
    },
}
_INT_COLUMNS: dict[str, pa.DataType] = {
    "order": pa.int8(), "migratetype": pa.int8(), "percpu_refill": pa.int8(),
    "fallback_order": pa.int8(), "pageblock_order": pa.int8(),
    "fallback_migratetype": pa.int8(), "fragmenting": pa.int8(), "change_ownership": pa.int8(),
}
# pageblock_order on x86-64 6.1: min(HPAGE_SHIFT - PAGE_SHIFT, MAX_ORDER - 1) = min(9, 10).
DEFAULT_PAGEBLOCK_ORDER = 9


def _irq_flags_table() -> np.ndarray:
    """IRQF_* byte for each of the 256 common_flags values."""
    table = np.full(256, IRQF_PRESENT, dtype=np.uint8)
    for value in range(256):
        for kernel_bit, irqf in _TRACE_FLAG_TO_IRQF:
            if value & kernel_bit:
                table[value] |= irqf
    return table


_IRQF_TABLE = _irq_flags_table()


def irq_flags_from_trace_flags(common_flags: np.ndarray) -> np.ndarray:
    """Map the kernel's TRACE_FLAG_* byte (common_flags) to IRQF_* bits, IRQF_PRESENT set."""
    return _IRQF_TABLE[np.asarray(common_flags, dtype=np.uint8)]


def looks_like_tracedat(head: bytes) -> bool:
    """True when `head` (the first bytes of an uncompressed file) is a trace.dat header."""
    return head[: len(TRACEDAT_MAGIC)] == TRACEDAT_MAGIC


# --------------------------------------------------------------------------------------------
# Errors and the byte reader
# --------------------------------------------------------------------------------------------


class _FormatError(Exception):
    """The file's structure cannot be followed any further; the message says where and why."""


class _Reader:
    """Sequential reads of file-endian numbers and strings, with offsets for error messages."""

    def __init__(self, data: bytes | memoryview, endian: str, base: int, what: str) -> None:
        self.data = memoryview(data)
        self.endian = endian
        self.base = base  # file offset of data[0], or -1 inside a decompressed section
        self.what = what
        self.pos = 0

    def _need(self, n: int, item: str) -> None:
        if n < 0 or self.pos + n > len(self.data):
            where = f"at offset {self.base + self.pos}" if self.base >= 0 else f"at byte {self.pos}"
            raise _FormatError(f"the trace.dat ends {where} inside {self.what} ({item})")

    def take(self, n: int, item: str) -> memoryview:
        self._need(n, item)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def number(self, size: int, item: str) -> int:
        self._need(size, item)
        value = int.from_bytes(self.data[self.pos : self.pos + size],
                               "little" if self.endian == "<" else "big")
        self.pos += size
        return value

    def u16(self, item: str) -> int:
        return self.number(2, item)

    def u32(self, item: str) -> int:
        return self.number(4, item)

    def u64(self, item: str) -> int:
        return self.number(8, item)

    def cstring(self, item: str) -> str:
        window = 256
        while True:
            end = bytes(self.data[self.pos : self.pos + window]).find(b"\0")
            if end >= 0 or self.pos + window >= len(self.data):
                break
            window *= 4
        if end < 0:
            self._need(len(self.data) - self.pos + 1, item)
        text = bytes(self.data[self.pos : self.pos + end]).decode("utf-8", "replace")
        self.pos += end + 1
        return text


# --------------------------------------------------------------------------------------------
# Compression: the outer file (gzip/zstd) and the v7 sections and chunks (zstd/zlib)
# --------------------------------------------------------------------------------------------


def _inflate_stream(data: bytes, new_decoder, errors: tuple[type[Exception], ...], magic: bytes,
                    name: str) -> tuple[bytes, str | None]:
    """Decompress concatenated gzip or zstd members; keep what precedes a truncation or error."""
    parts: list[bytes] = []
    rest = data
    step = 1 << 22
    while rest:
        decoder = new_decoder()
        try:
            for start in range(0, len(rest), step):
                parts.append(decoder.decompress(rest[start : start + step]))
                if decoder.eof:
                    break
        except errors as exc:
            return b"".join(parts), f"the {name} stream is corrupt ({exc})"
        if not decoder.eof:
            return b"".join(parts), f"the {name} stream is truncated"
        rest = decoder.unused_data
        if rest[: len(magic)] != magic:
            break
    return b"".join(parts), None


def _gunzip(data: bytes) -> tuple[bytes, str | None]:
    """Decompress gzip data (isal when available)."""
    try:
        from isal import isal_zlib as zmod
    except ImportError:  # pragma: no cover
        zmod = zlib
    return _inflate_stream(data, lambda: zmod.decompressobj(31), (zmod.error, zlib.error),
                           _GZIP_MAGIC, "gzip")


def _unzstd(data: bytes) -> tuple[bytes, str | None]:
    """Decompress zstd data."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    return _inflate_stream(data, dctx.decompressobj, (zstandard.ZstdError,), _ZSTD_MAGIC, "zstd")


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


# --------------------------------------------------------------------------------------------
# Format files: header_page, header_event, event formats, saved cmdlines
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldFormat:
    """One `field:` line of an event format file."""

    name: str
    offset: int
    size: int
    signed: bool
    is_array: bool = False
    is_dynamic: bool = False  # __data_loc: a u32 holding (length << 16) | offset


class EventFormat:
    """An event's id, name and system; fields and print fmt are parsed when first asked for."""

    def __init__(self, ident: int, name: str, system: str, text: str = "") -> None:
        self.id = ident
        self.name = name
        self.system = system
        self.text = text
        self._fields: dict[str, FieldFormat] | None = None

    def __repr__(self) -> str:
        return f"EventFormat({self.system}:{self.name}, id={self.id})"

    @property
    def fields(self) -> dict[str, FieldFormat]:
        """Field name -> layout, from the `field:` lines."""
        if self._fields is None:
            self._fields = {}
            for m in _FIELD_RE.finditer(self.text):
                fname, is_array, is_dynamic = _parse_field_decl(m["decl"])
                self._fields[fname] = FieldFormat(fname, int(m["off"]), int(m["size"]),
                                                  m["signed"] not in (None, "0"),
                                                  is_array, is_dynamic)
        return self._fields

    @property
    def print_fmt(self) -> str:
        """The `print fmt:` text (format string and arguments)."""
        fmt = re.search(r"^print fmt:\s*(.*)$", self.text, re.M | re.S)
        return fmt[1].strip() if fmt else ""


_FIELD_RE = re.compile(
    r"field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
    r"(?:\s*signed:(?P<signed>-?\d+);)?"
)
_NAME_ID_RE = re.compile(r"^name:\s*(\S+)\s*\nID:\s*(\d+)")


def _parse_field_decl(decl: str) -> tuple[str, bool, bool]:
    """Name, is-array and is-dynamic of a C declaration such as `unsigned long pfn`."""
    decl = decl.strip()
    is_dynamic = decl.startswith("__data_loc")
    is_array = "[" in decl
    name = re.findall(r"[A-Za-z_]\w*", re.sub(r"\[[^\]]*\]", "", decl))
    return (name[-1] if name else decl), is_array, is_dynamic


def parse_event_format(text: str, system: str) -> EventFormat:
    """Parse one events/<system>/<event>/format file (name and ID now, fields on demand)."""
    m = _NAME_ID_RE.match(text)
    if m is None:
        name = re.search(r"^name:\s*(\S+)", text, re.M)
        ident = re.search(r"^ID:\s*(\d+)", text, re.M)
        if not name or not ident:
            raise _FormatError(f"an event format in system {system!r} has no name or ID line")
        return EventFormat(int(ident[1]), name[1], system, text)
    return EventFormat(int(m[2]), m[1], system, text)


@dataclass(frozen=True)
class PageHeader:
    """Layout of a ring-buffer page header (events/header_page)."""

    ts_offset: int = 0
    ts_size: int = 8
    commit_offset: int = 8
    commit_size: int = 8
    data_offset: int = 16


def parse_header_page(text: str, long_size: int) -> PageHeader:
    """Read the timestamp, commit and data offsets from the header_page format."""
    fields = {m[1]: (int(m[2]), int(m[3])) for m in re.finditer(
        r"field:[^;]*?(\w+)(?:\[\d*\])?;\s*offset:(\d+);\s*size:(\d+);", text)}
    if "timestamp" not in fields or "commit" not in fields or "data" not in fields:
        return PageHeader(commit_size=long_size, data_offset=8 + long_size)
    header = PageHeader(fields["timestamp"][0], fields["timestamp"][1], fields["commit"][0],
                        fields["commit"][1], fields["data"][0])
    if (header.ts_size not in (4, 8) or header.commit_size not in (4, 8)
            or header.ts_offset + header.ts_size > header.data_offset
            or header.commit_offset + header.commit_size > header.data_offset):
        raise _FormatError(f"the header_page layout is not usable: {header}")
    return header


def check_header_event(text: str) -> None:
    """Refuse ring buffers whose record header is not the 5-bit type_len / 27-bit delta one."""
    type_len = re.search(r"type_len\s*:\s*(\d+)\s*bits", text)
    delta = re.search(r"time_delta\s*:\s*(\d+)\s*bits", text)
    if type_len and delta and (int(type_len[1]), int(delta[1])) != (5, 27):
        raise _FormatError(f"the ring-buffer record header has a {type_len[1]}-bit type and a "
                           f"{delta[1]}-bit time delta; only 5/27 is supported")
    if not type_len and "type_len" not in text and text.strip():
        raise _FormatError("the ring buffer uses the pre-2.6.31 record format, not supported")


def parse_cmdlines(text: str) -> dict[int, str]:
    """saved_cmdlines text (`PID COMM` per line) as a dict."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        pid, _, comm = line.strip().partition(" ")
        if pid.isdigit() and comm:
            out[int(pid)] = comm
    return out


# --------------------------------------------------------------------------------------------
# print fmt: constants such as pageblock_order that TP_printk evaluates
# --------------------------------------------------------------------------------------------


def split_print_fmt(print_fmt: str) -> tuple[str, list[str]]:
    """Split `"fmt", arg1, arg2` at top-level commas into the format string and its arguments."""
    m = re.match(r'\s*"((?:[^"\\]|\\.)*)"\s*(.*)$', print_fmt, re.S)
    if not m:
        return "", []
    fmt, rest = m[1], m[2].strip()
    rest = rest[1:] if rest.startswith(",") else rest
    args: list[str] = []
    current: list[str] = []
    depth, in_str, escaped = 0, False, False
    for ch in rest:
        if in_str:
            current.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        args.append("".join(current).strip())
    return fmt, args


_CONV_RE = re.compile(r"%(?:%|[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z|L)?[a-zA-Z])")


def print_fmt_value(print_fmt: str, key: str) -> int | None:
    """Value TP_printk prints after `key=`: a literal in the format or a constant argument."""
    fmt, args = split_print_fmt(print_fmt)
    literal = re.search(rf"\b{re.escape(key)}=(-?\d+)", fmt)
    if literal:
        return int(literal[1])
    arg_index = 0
    for conv in _CONV_RE.finditer(fmt):
        if conv[0] == "%%":
            continue
        if fmt[: conv.start()].endswith(f"{key}="):
            return eval_c_constant(args[arg_index]) if arg_index < len(args) else None
        arg_index += 1
    return None


_C_TOKEN_RE = re.compile(r"\s*(0[xX][0-9a-fA-F]+|\d+|[A-Za-z_]\w*|<<|>>|<=|>=|==|!=|&&|\|\||\S)")
_C_TYPE_WORDS = {"unsigned", "signed", "int", "long", "short", "char", "u8", "u16", "u32",
                 "u64", "s8", "s16", "s32", "s64", "size_t"}
_C_BINARY = {
    "||": (1, lambda a, b: int(bool(a) or bool(b))), "&&": (2, lambda a, b: int(bool(a and b))),
    "|": (3, lambda a, b: a | b), "^": (4, lambda a, b: a ^ b), "&": (5, lambda a, b: a & b),
    "==": (6, lambda a, b: int(a == b)), "!=": (6, lambda a, b: int(a != b)),
    "<": (7, lambda a, b: int(a < b)), ">": (7, lambda a, b: int(a > b)),
    "<=": (7, lambda a, b: int(a <= b)), ">=": (7, lambda a, b: int(a >= b)),
    "<<": (8, lambda a, b: a << _shift(b)), ">>": (8, lambda a, b: a >> _shift(b)),
    "+": (9, lambda a, b: a + b), "-": (9, lambda a, b: a - b),
    "*": (10, lambda a, b: a * b), "/": (10, lambda a, b: int(a / b)),
    "%": (10, lambda a, b: a % b),
}


def _shift(count: int) -> int:
    """A shift count a C constant expression can use."""
    if not 0 <= count < 64:
        raise ValueError(count)
    return count


def eval_c_constant(expr: str) -> int | None:
    """Evaluate an integer C constant expression (casts, arithmetic, comparisons, ?:).

    Anything else (REC->field, sizeof, function calls) gives None.
    """
    tokens = [t.rstrip("uUlL") if t[0].isdigit() else t for t in _C_TOKEN_RE.findall(expr)]
    pos = 0

    def peek() -> str:
        return tokens[pos] if pos < len(tokens) else ""

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def primary() -> int:
        tok = take()
        if tok == "(":
            if peek() in _C_TYPE_WORDS:  # a cast: skip the type name
                while peek() in _C_TYPE_WORDS:
                    take()
                if take() != ")":
                    raise ValueError(expr)
                return unary()
            value = ternary()
            if take() != ")":
                raise ValueError(expr)
            return value
        if tok[:1].isdigit():
            return int(tok, 0) if not (tok.startswith("0") and tok[1:].isdigit()) else int(tok, 8)
        raise ValueError(expr)

    def unary() -> int:
        if peek() in ("-", "+", "!", "~"):
            op = take()
            value = unary()
            return {"-": -value, "+": value, "!": int(not value), "~": ~value}[op]
        return primary()

    def binary(min_prec: int) -> int:
        left = unary()
        while peek() in _C_BINARY and _C_BINARY[peek()][0] >= min_prec:
            prec, fn = _C_BINARY[take()]
            left = fn(left, binary(prec + 1))
        return left

    def ternary() -> int:
        cond = binary(1)
        if peek() != "?":
            return cond
        take()
        yes = ternary()
        if take() != ":":
            raise ValueError(expr)
        no = ternary()
        return yes if cond else no

    try:
        value = ternary()
    except (ValueError, IndexError, ZeroDivisionError, RecursionError):
        return None
    return value if pos == len(tokens) else None


# --------------------------------------------------------------------------------------------
# The file's metadata (v6 fixed blocks, v7 sections) and where each CPU's pages are
# --------------------------------------------------------------------------------------------


@dataclass
class CpuData:
    """One CPU's flyrecord data: file offset and size (compressed size for chunked data)."""

    cpu: int
    offset: int
    size: int


@dataclass
class TraceFile:
    """Everything the metadata says; `error` is set when the structure ends early."""

    version: int = 0
    endian: str = "<"
    long_size: int = 8
    page_size: int = 4096
    compression: str = "none"
    page_header: PageHeader = field(default_factory=PageHeader)
    formats: dict[int, EventFormat] = field(default_factory=dict)
    cmdlines: dict[int, str] = field(default_factory=dict)
    cpu_count: int | None = None
    cpus: list[CpuData] = field(default_factory=list)
    data_compressed: bool = False
    latency: bool = False
    clock: str | None = None
    uname: str | None = None
    tracecmd_version: str | None = None
    tsc2nsec: tuple[int, int, int] | None = None  # mult, shift, offset
    ts_offset: int = 0  # OPTION_OFFSET (not applied, see the module docstring)
    cpustats: dict[int, dict[str, int]] = field(default_factory=dict)  # CPUSTAT per CPU
    options_end: int = 0  # end of the last options section read (v7)
    error: str | None = None


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
        if bytes(r.take(12, "header_page tag")) != b"header_page\0":
            raise _FormatError(f"no header_page block where expected ({r.what})")
        text = bytes(r.take(r.u64("header_page size"), "header_page")).decode("utf-8", "replace")
        self.tf.page_header = parse_header_page(text, self.tf.long_size)
        if bytes(r.take(13, "header_event tag")) != b"header_event\0":
            raise _FormatError(f"no header_event block where expected ({r.what})")
        check_header_event(
            bytes(r.take(r.u64("header_event size"), "header_event")).decode("utf-8", "replace"))

    def ftrace_formats(self, r: _Reader) -> None:
        for _ in range(r.u32("ftrace format count")):
            text = bytes(r.take(r.u64("format size"), "ftrace format")).decode("utf-8", "replace")
            fmt = parse_event_format(text, "ftrace")
            self.tf.formats[fmt.id] = fmt

    def event_formats(self, r: _Reader) -> None:
        for _ in range(r.u32("event system count")):
            system = r.cstring("system name")
            for _ in range(r.u32("event count")):
                text = bytes(r.take(r.u64("format size"), f"{system} format")).decode(
                    "utf-8", "replace")
                fmt = parse_event_format(text, system)
                self.tf.formats[fmt.id] = fmt

    def cmdlines(self, r: _Reader) -> None:
        size = r.u64("saved cmdlines size")
        self.tf.cmdlines = parse_cmdlines(
            bytes(r.take(size, "saved cmdlines")).decode("utf-8", "replace"))

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

@njit(cache=True, nogil=True, inline="always")
def _read_uint(buf, pos, size, big):  # pragma: no cover - compiled
    """Read an unsigned `size`-byte number at `pos` (wraps to int64 for 8 bytes)."""
    if not big:
        if size == 4:
            return _le32(buf, pos)
        if size == 8:
            return _le32(buf, pos) | (_le32(buf, pos + 4) << 32)
        if size == 2:
            return np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
        if size == 1:
            return np.int64(buf[pos])
    value = np.int64(0)
    if big:
        for k in range(size):
            value = (value << 8) | np.int64(buf[pos + k])
    else:
        for k in range(size - 1, -1, -1):
            value = (value << 8) | np.int64(buf[pos + k])
    return value


@njit(cache=True, nogil=True, inline="always")
def _le32(buf, pos):  # pragma: no cover - compiled
    """A little-endian u32 at `pos`, as int64."""
    return (np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
            | (np.int64(buf[pos + 2]) << 16) | (np.int64(buf[pos + 3]) << 24))


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
def _gather_fields(buf, rec_off, rec_len, idx, kind, spec, nspec, big, wide, narrow,
                   valid):  # pragma: no cover - compiled
    """Read every column of every event in one pass over the records.

    Event i is record idx[i] of kind kind[i]; spec[kind, j] for j < nspec[kind] holds
    (column, offset, size, signed). Columns 0 and 1 go to wide[:, i] (uint64 pfn / gfp), the
    rest to narrow[column - 2, i] (int8); valid[column, i] is set for fields that fit in the
    record. Returns the number of events too short for one of their fields.
    """
    short = 0
    for i in range(idx.size):
        r = idx[i]
        k = kind[i]
        start = rec_off[r]
        length = rec_len[r]
        fits = True
        for j in range(nspec[k]):
            c = spec[k, j, 0]
            rel = spec[k, j, 1]
            size = spec[k, j, 2]
            if rel + size > length:
                fits = False
                continue
            value = _read_uint(buf, start + rel, size, big)
            if spec[k, j, 3] and size < 8 and value >= (1 << (8 * size - 1)):
                value -= 1 << (8 * size)
            if c < 2:
                wide[c, i] = value
            else:
                narrow[c - 2, i] = value
            valid[c, i] = True
        if not fits:
            short += 1
    return short


@njit(cache=True, nogil=True)
def _heap_less(ts, head, a, b):  # pragma: no cover - compiled
    """Stream a's next record sorts before stream b's: earlier time, or same time, lower CPU."""
    ta = ts[head[a]]
    tb = ts[head[b]]
    return ta < tb or (ta == tb and a < b)


@njit(cache=True, nogil=True)
def _merge_streams(ts, starts, ends):  # pragma: no cover - compiled
    """k-way merge of per-CPU record streams: smallest timestamp first, ties to the lower stream.

    This is trace-cmd's tracecmd_peek_next_data() rule (and the kernel's __find_next_entry()),
    done with a binary heap keyed on (timestamp, stream).
    """
    k = starts.size
    order = np.empty(ts.size, dtype=np.int64)
    head = starts.copy()
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
    while hn > 0:
        s = heap[0]
        order[n] = head[s]
        n += 1
        head[s] += 1
        if head[s] >= ends[s]:
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
    return order


# --------------------------------------------------------------------------------------------
# Records: scan, merge
# --------------------------------------------------------------------------------------------


@dataclass
class Records:
    """All ring-buffer records in CPU-stream order (CPU by CPU, page by page), common fields
    read, and `order`: the merged order, record order[i] having seq i + 1."""

    buf: np.ndarray
    off: np.ndarray
    length: np.ndarray
    ts: np.ndarray
    cpu: np.ndarray
    type_id: np.ndarray
    flags: np.ndarray
    preempt: np.ndarray
    pid: np.ndarray
    order: np.ndarray
    page_cpu: np.ndarray
    page_status: np.ndarray
    page_lost: np.ndarray  # per page: -2 none, -1 missed (count not stored), else the count
    page_first_seq: np.ndarray  # seq of the first record at/after a lost page, 0 if none


def _common_field(formats: dict[int, EventFormat], name: str, default: FieldFormat) -> FieldFormat:
    """A common_* field's layout (identical in every format file); the kmem ones are read."""
    preferred = [f for f in formats.values() if f.system == "kmem"][:1]
    for fmt in preferred or list(formats.values())[:1]:
        if name in fmt.fields:
            return fmt.fields[name]
    return default


def _layout(tf: TraceFile) -> np.ndarray:
    """The scan kernel's layout vector: page header timestamp offset/size, commit offset/size,
    data offset, big-endian flag; common_type offset/size, common_flags and
    common_preempt_count offsets, common_pid offset/size; end of the common fields; page size."""
    ph = tf.page_header
    ctype = _common_field(tf.formats, "common_type", FieldFormat("common_type", 0, 2, False))
    cflags = _common_field(tf.formats, "common_flags", FieldFormat("common_flags", 2, 1, False))
    cpc = _common_field(tf.formats, "common_preempt_count",
                        FieldFormat("common_preempt_count", 3, 1, False))
    cpid = _common_field(tf.formats, "common_pid", FieldFormat("common_pid", 4, 4, True))
    common_end = max(ctype.offset + ctype.size, cflags.offset + 1, cpc.offset + 1,
                     cpid.offset + cpid.size)
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


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _dictionary(indices: np.ndarray, valid: np.ndarray | None, values: list[str]) -> pa.Array:
    """dictionary<int32, string> from codes, a validity mask and the dictionary values."""
    mask = None if valid is None or valid.all() else ~valid
    return pa.DictionaryArray.from_arrays(
        pa.array(indices.astype(np.int32, copy=False), type=pa.int32(), mask=mask),
        pa.array(values, type=pa.string()))


def _comm_names(pids: np.ndarray, cmdlines: dict[int, str]) -> list[str | None]:
    """comm of each pid as the kernel prints it: '<idle>' for 0, None (`<...>`) when unknown."""
    return [("<idle>" if pid == 0 else cmdlines.get(int(pid))) for pid in pids]


def _comm_array(pids: np.ndarray, cmdlines: dict[int, str]) -> pa.Array:
    """comm per record from saved cmdlines, dictionary-encoded, null when unknown."""
    if pids.size and 0 <= pids.min() and pids.max() < (1 << 24):
        present = np.zeros(int(pids.max()) + 1, dtype=bool)
        present[pids] = True
        uniq = np.flatnonzero(present)
        inverse_of = None
    else:
        uniq, inverse_of = np.unique(pids, return_inverse=True)
    names = _comm_names(uniq, cmdlines)
    values = sorted({n for n in names if n is not None})
    code = {n: i for i, n in enumerate(values)}
    per_uniq = np.array([code[n] if n is not None else -1 for n in names], dtype=np.int32)
    if inverse_of is not None:
        codes = per_uniq[inverse_of]
    elif pids.size:
        lut = np.full(uniq[-1] + 1, -1, dtype=np.int32)
        lut[uniq] = per_uniq
        codes = lut[pids]
    else:
        codes = np.zeros(0, dtype=np.int32)
    valid = codes >= 0
    return _dictionary(np.where(valid, codes, 0), valid, values)


def _gfp_text_array(masks: pa.Array) -> pa.Array:
    """gfp_to_text() of each mask, computed once per distinct mask."""
    encoded = masks.dictionary_encode()
    texts = [gfp_to_text(int(m)) for m in encoded.dictionary.to_numpy()]
    return pa.DictionaryArray.from_arrays(encoded.indices, pa.array(texts, type=pa.string()))


def _arrow(values: np.ndarray, valid: np.ndarray, type_: pa.DataType) -> pa.Array:
    """A primitive Arrow array over `values` with nulls where `valid` is False."""
    values = np.ascontiguousarray(values)
    nulls = valid.size - int(np.count_nonzero(valid))
    if not nulls:
        return pa.array(values, type=type_)
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(type_, values.size, [bitmap, pa.py_buffer(values)],
                                 null_count=nulls)


def _event_code_by_id(tf: TraceFile) -> dict[int, int]:
    """Format id -> EVENT_NAMES code for the kmem events this table holds."""
    out = {}
    for type_id, fmt in tf.formats.items():
        code = EVENT_CODE.get(fmt.name, EVENT_ALIASES.get(fmt.name))
        if code is not None and fmt.system == "kmem":
            out[type_id] = code
    return out


# Numeric event columns: the first two are read as uint64 (pfn, gfp mask), the rest as int8.
_COLUMNS = ("pfn", "gfp_flags", *_INT_COLUMNS)
_COLUMN_INDEX = {name: i for i, name in enumerate(_COLUMNS)}


def _field_spec(fmt: EventFormat, name: str) -> np.ndarray:
    """(column, offset, size, signed) of each column one event type has a field for."""
    spec = np.zeros((len(_COLUMNS), 4), dtype=np.int64)
    j = 0
    for column, fname in _EVENT_FIELDS[name].items():
        f = fmt.fields.get(fname)
        if f is not None and not f.is_array and not f.is_dynamic and 0 < f.size <= 8:
            spec[j] = (_COLUMN_INDEX[column], f.offset, f.size, int(f.signed))
            j += 1
    return spec[:j]


@dataclass
class _EventColumns:
    """Numeric event columns as read: wide (uint64) and narrow (int8) values, validity."""

    wide: np.ndarray
    narrow: np.ndarray
    valid: np.ndarray

    def values(self, column: str) -> np.ndarray:
        c = _COLUMN_INDEX[column]
        return self.wide[c] if c < 2 else self.narrow[c - 2]

    def set_constant(self, column: str, rows: np.ndarray, value: int) -> None:
        self.values(column)[rows] = value
        self.valid[_COLUMN_INDEX[column], rows] = True


def _print_constants(cols: _EventColumns, fmt: EventFormat, name: str, rows: np.ndarray) -> None:
    """Values TP_printk prints without storing: free_batched's order=0, extfrag's pageblock."""
    if name == "mm_page_free_batched" and "order" not in fmt.fields:
        order = print_fmt_value(fmt.print_fmt, "order")
        cols.set_constant("order", rows, 0 if order is None else order)
    if name == "mm_page_alloc_extfrag":
        pageblock = print_fmt_value(fmt.print_fmt, "pageblock_order")
        pageblock = DEFAULT_PAGEBLOCK_ORDER if pageblock is None else pageblock
        cols.set_constant("pageblock_order", rows, pageblock)
        known = rows[cols.valid[_COLUMN_INDEX["fallback_order"], rows]]
        cols.values("fragmenting")[known] = cols.values("fallback_order")[known] < pageblock
        cols.valid[_COLUMN_INDEX["fragmenting"], known] = True


def _read_event_columns(rec: Records, tf: TraceFile, idx: np.ndarray, type_ids: np.ndarray,
                        kind: np.ndarray, names: list[str]) -> tuple[_EventColumns, int]:
    """Gather every numeric column in one pass; apply printed constants and pfn == -1."""
    n = idx.size
    formats = [tf.formats[int(t)] for t in type_ids]
    specs = [_field_spec(f, nm) for f, nm in zip(formats, names, strict=True)]
    spec = np.zeros((len(specs), len(_COLUMNS), 4), dtype=np.int64)
    for k, one in enumerate(specs):
        spec[k, : len(one)] = one
    nspec = np.array([len(one) for one in specs], dtype=np.int64)
    cols = _EventColumns(np.zeros((2, n), dtype=np.uint64),
                         np.zeros((len(_COLUMNS) - 2, n), dtype=np.int8),
                         np.zeros((len(_COLUMNS), n), dtype=bool))
    short = _gather_fields(rec.buf, rec.off, rec.length, idx, kind, spec, nspec,
                           tf.endian == ">", cols.wide, cols.narrow, cols.valid)
    for k, (fmt, name) in enumerate(zip(formats, names, strict=True)):
        if name in ("mm_page_free_batched", "mm_page_alloc_extfrag"):
            _print_constants(cols, fmt, name, np.flatnonzero(kind == k))
    # page == NULL stores pfn = -1UL: null pfn (and a failed allocation for mm_page_alloc).
    pfn_sizes = [dict((int(c), int(sz)) for c, _, sz, _ in one).get(0, 0) for one in specs]
    pfn_none = np.array([(1 << (8 * sz)) - 1 if sz else 0 for sz in pfn_sizes], dtype=np.uint64)
    none = cols.valid[0] & (cols.wide[0] == pfn_none[kind]) if n else np.zeros(0, dtype=bool)
    cols.valid[0] &= ~none
    return cols, short


def _events_table(rec: Records, tf: TraceFile, idx: np.ndarray,
                  code_by_id: dict[int, int]) -> tuple[pa.Table, dict[str, int], int]:
    """The events table of the records at merged positions `idx`; also counts by kind and the
    short-record count."""
    seq = idx + 1
    idx = rec.order[idx]  # stream-order record numbers from here on
    type_ids = np.array(sorted(code_by_id), dtype=np.int64)
    kind_of_id = np.zeros(int(type_ids.max(initial=0)) + 1, dtype=np.int64)
    kind_of_id[type_ids] = np.arange(type_ids.size)
    kind = kind_of_id[rec.type_id[idx]]  # every idx record has one of type_ids
    codes = np.array([code_by_id[int(t)] for t in type_ids], dtype=np.int32)
    names = [EVENT_NAMES[c] for c in codes]
    cols, short = _read_event_columns(rec, tf, idx, type_ids, kind, names)
    event_code = codes[kind] if idx.size else np.zeros(0, dtype=np.int32)
    failed = (event_code == EVENT_CODE["mm_page_alloc"]) & ~cols.valid[0]
    failed &= cols.wide[0] != 0  # a valid-but-null pfn, not a record too short to hold one
    by_kind: dict[str, int] = {}
    for k, count in enumerate(np.bincount(kind, minlength=len(names))):
        if count:
            by_kind[names[k]] = by_kind.get(names[k], 0) + int(count)
    preempt = rec.preempt[idx]
    gfp = _arrow(cols.wide[1].astype(np.uint32), cols.valid[1], pa.uint32())
    arrays = {
        "seq": pa.array(seq, type=pa.int64()),
        "ts_ns": pa.array(rec.ts[idx], type=pa.int64()),
        "cpu": pa.array(rec.cpu[idx], type=pa.int16()),
        "pid": pa.array(rec.pid[idx], type=pa.int32()),
        "tgid": pa.nulls(idx.size, type=pa.int32()),
        "comm": _comm_array(rec.pid[idx], tf.cmdlines),
        "irq_flags": pa.array(irq_flags_from_trace_flags(rec.flags[idx]), type=pa.uint8()),
        "preempt_depth": pa.array(preempt & 0xF, type=pa.uint8()),
        "migrate_disable": pa.array(preempt >> 4, type=pa.uint8()),
        "event": _dictionary(event_code, None, list(EVENT_NAMES)),
        "pfn": _arrow(cols.wide[0], cols.valid[0], pa.uint64()),
        "failed": pa.array(failed, type=pa.bool_()),
        "gfp_flags": gfp,
        "gfp_text": _gfp_text_array(gfp),
    }
    for name, type_ in _INT_COLUMNS.items():
        arrays[name] = _arrow(cols.values(name), cols.valid[_COLUMN_INDEX[name]], type_)
    arrays.update(zip(EXTRA_COLUMNS, null_columns(EXTRA_COLUMNS, idx.size), strict=True))
    table = pa.Table.from_arrays([arrays[f.name] for f in EVENTS_SCHEMA], schema=EVENTS_SCHEMA)
    return table, by_kind, short


_SYMBOLIC_RE = re.compile(r"__print_symbolic\(\s*REC->(\w+)\s*,(.*?)\)\s*(?:,|$)", re.S)
_SYMBOL_RE = re.compile(r"\{\s*([^,{}]+?)\s*,\s*\"([^\"]*)\"\s*\}")


def _symbolic_tables(fmt: EventFormat) -> dict[str, dict[int, str]]:
    """Field -> {value: name} of every __print_symbolic() in an event's print fmt."""
    out: dict[str, dict[int, str]] = {}
    for m in _SYMBOLIC_RE.finditer(fmt.print_fmt):
        table = {}
        for value, name in _SYMBOL_RE.findall(m[2]):
            v = eval_c_constant(value)
            if v is not None:
                table[v] = name
        out[m[1]] = table
    return out


def _field_values(rec: Records, rows: np.ndarray, f: FieldFormat, big: bool) -> np.ndarray:
    """One fixed-size integer field of records `rows` (stream order), as int64."""
    start = rec.off[rows] + f.offset
    value = np.zeros(rows.size, np.uint64)
    for b in range(f.size):
        shift = 8 * (f.size - 1 - b) if big else 8 * b
        value |= rec.buf[start + b].astype(np.uint64) << np.uint64(shift)
    out = value.view(np.int64)
    if f.signed and f.size < 8:
        top = np.int64(1) << np.int64(8 * f.size - 1)
        out = np.where(out >= top, out - (top << np.int64(1)), out)
    return out


def _compaction_rows(rec: Records, tf: TraceFile, idx: np.ndarray) -> pa.RecordBatch | None:
    """Compaction records at merged positions `idx` as events-schema rows (trace order)."""
    if not idx.size:
        return None
    rows_all = rec.order[idx]
    big = tf.endian == ">"
    out = CompactionRows()
    per_row: list[tuple[int, tuple, str, dict]] = []
    types = rec.type_id[rows_all]
    comms = _comm_names(rec.pid[rows_all], tf.cmdlines)
    flags = irq_flags_from_trace_flags(rec.flags[rows_all])
    for type_id in np.unique(types):
        fmt = tf.formats[int(type_id)]
        mapping = TRACEDAT_FIELDS.get(fmt.name, {})
        symbolic = _symbolic_tables(fmt)
        sel = np.flatnonzero(types == type_id)
        rows = rows_all[sel]
        fits = np.ones(sel.size, bool)
        columns: dict[str, list] = {}
        for fname, column in mapping.items():
            f = fmt.fields.get(fname)
            if f is None or f.is_array or f.is_dynamic or not 0 < f.size <= 8:
                continue
            fits &= rec.length[rows] >= f.offset + f.size
            values = _field_values(rec, rows, f, big)
            if fname in symbolic:
                columns[column] = [symbolic[fname].get(int(v), str(int(v))) for v in values]
            elif fname == "defer_shift":
                columns[column] = [1 << int(v) if 0 <= v < 63 else None for v in values]
            else:
                columns[column] = values.tolist()
        if "gfp_flags" in columns:
            columns["gfp_text"] = [gfp_to_text(int(v)) for v in columns["gfp_flags"]]
        for k, i in enumerate(sel):
            if not fits[k]:
                continue
            r = rows_all[i]
            common = (int(idx[i]) + 1, int(rec.ts[r]), int(rec.cpu[r]), int(rec.pid[r]), None,
                      comms[i], int(flags[i]), int(rec.preempt[r] & 0xF),
                      int(rec.preempt[r] >> 4))
            per_row.append((int(i), common, fmt.name, {c: v[k] for c, v in columns.items()}))
    assert len(COMMON_COLUMNS) == len(per_row[0][1]) if per_row else True
    for _, common, name, fields in sorted(per_row, key=lambda t: t[0]):
        out.add(common, name, fields)
    return out.batch(pa.array(EVENT_NAMES, pa.string())) if len(out) else None


def _marker_text(rec: Records, r: int, f: FieldFormat, big: bool) -> str:
    """The `buf` of one ftrace print record, cut at its NUL, without the trailing newline."""
    start = int(rec.off[r])
    end = start + int(rec.length[r])
    if f.is_dynamic:
        loc = int(_read_loc(rec.buf, start + f.offset, big))
        begin, size = start + (loc & 0xFFFF), loc >> 16
        raw = rec.buf[begin : min(begin + size, end)].tobytes()
    else:
        stop = end if f.size == 0 else min(end, start + f.offset + f.size)
        raw = rec.buf[start + f.offset : stop].tobytes()
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").rstrip("\n")


def _read_loc(buf: np.ndarray, pos: int, big: bool) -> int:
    """A __data_loc u32."""
    return int.from_bytes(buf[pos : pos + 4].tobytes(), "big" if big else "little")


def _markers_table(rec: Records, tf: TraceFile, idx: np.ndarray) -> pa.Table:
    """trace_marker writes (ftrace `print` events at merged positions `idx`) as markers."""
    rows = rec.order[idx]
    big = tf.endian == ">"
    texts = []
    for r in rows:
        f = tf.formats[int(rec.type_id[r])].fields.get("buf")
        texts.append(_marker_text(rec, int(r), f, big) if f is not None else "")
    pids = rec.pid[rows]
    return pa.Table.from_arrays([
        pa.array(idx + 1, type=pa.int64()),
        pa.array(rec.ts[rows], type=pa.int64()),
        pa.array(rec.cpu[rows], type=pa.int16()),
        pa.array(pids, type=pa.int32()),
        pa.array(_comm_names(pids, tf.cmdlines), type=pa.string()),
        pa.array(texts, type=pa.string()),
    ], schema=MARKERS_SCHEMA)


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


def _load_source(source: str | Path | BinaryIO | bytes) -> tuple[bytes, str, str, str | None]:
    """Bytes of the (decompressed) file, its display name, outer compression and any problem."""
    if isinstance(source, bytes | bytearray | memoryview):
        raw, name = bytes(source), "<bytes>"
    elif isinstance(source, str | Path):
        name = str(source)
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    else:
        name = str(getattr(source, "name", "<stream>"))
        raw = source.read()
    if raw[:2] == _GZIP_MAGIC:
        data, problem = _gunzip(raw)
        return data, name, "gzip", problem
    if raw[:4] == _ZSTD_MAGIC:
        data, problem = _unzstd(raw)
        return data, name, "zstd", problem
    return raw, name, "none", None


def _count_other_events(rec: Records, tf: TraceFile, handled: np.ndarray,
                        stats: TraceStats) -> None:
    """Count records that are neither kmem events nor markers, by event name."""
    ids, counts = np.unique(rec.type_id[rec.order[~handled]], return_counts=True)
    for type_id, count in zip(ids, counts, strict=True):
        fmt = tf.formats.get(int(type_id))
        if fmt is None:
            stats.bad_lines["unknown event id"] = (
                stats.bad_lines.get("unknown event id", 0) + int(count))
            if len(stats.bad_samples) < 20:
                stats.bad_samples.append((0, "unknown event id", f"common_type={int(type_id)}"))
        else:
            stats.other_events[fmt.name] = stats.other_events.get(fmt.name, 0) + int(count)


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
    code_by_id = _event_code_by_id(tf)
    merged_type = rec.type_id[rec.order]
    is_event = np.isin(merged_type, list(code_by_id))
    marker_ids = [i for i, f in tf.formats.items() if f.system == "ftrace" and f.name == "print"]
    is_marker = np.isin(merged_type, marker_ids)
    events, by_kind, short = _events_table(rec, tf, np.flatnonzero(is_event), code_by_id)
    compaction_ids = [i for i, f in tf.formats.items()
                      if f.system == "compaction" and f.name in TRACEDAT_FIELDS]
    is_compaction = np.isin(merged_type, compaction_ids)
    comp = _compaction_rows(rec, tf, np.flatnonzero(is_compaction))
    if comp is not None:
        for name, count in zip(*np.unique(comp.column("event").to_numpy(zero_copy_only=False)
                                          .astype(str), return_counts=True), strict=True):
            by_kind[name] = by_kind.get(name, 0) + int(count)
        short += int(np.count_nonzero(is_compaction)) - comp.num_rows
        events = pa.concat_tables([events, pa.Table.from_batches([comp])]).unify_dictionaries()
        events = events.combine_chunks().sort_by("seq")
        is_event |= is_compaction
    if short:
        stats.bad_lines["record shorter than its format"] = short
    markers = _markers_table(rec, tf, np.flatnonzero(is_marker))
    _count_other_events(rec, tf, is_event | is_marker, stats)
    _note_bad_pages(rec, stats)
    lost = _lost_table(rec, tf, stats)
    stats.events = events.num_rows
    stats.events_by_kind = {name: by_kind[name] for name in EVENT_NAMES if name in by_kind}
    stats.markers = markers.num_rows
    return TraceData(events, markers, lost, stats)


def read_tracedat(source: str | Path | BinaryIO | bytes, *, strict: bool = False) -> TraceData:
    """Read a trace-cmd trace.dat (v6 or v7; plain, gzip or zstd file) into a TraceData.

    `source` is a path, a binary stream, or the file's bytes. A truncated or corrupt file gives
    what could be read, with `stats.error` saying where reading stopped; with `strict=True` that
    (and any corrupt page or record) raises InputError instead. A file that is not a trace.dat
    always raises InputError.
    """
    data, name, compression, problem = _load_source(source)
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

