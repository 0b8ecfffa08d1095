"""The tracefs metadata that trace.dat and perf.data share: format files and "tracing data".

Both trace-cmd's trace.dat and perf.data's HEADER_TRACING_DATA carry the same blob (trace-cmd's
trace.dat v6 layout up to the saved cmdlines; perf's tools/perf/util/trace-event-info.c writes
it as version "0.6"): header_page, header_event, the ftrace and event `format` files (field
offsets, sizes, signedness, print fmt), kallsyms, printk formats and saved cmdlines. This module
parses those pieces; tracedat.py and perfdata.py read the containers around them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from replay.trace.schema import (
    IRQF_BH_OFF,
    IRQF_HARDIRQ,
    IRQF_IRQS_OFF,
    IRQF_NEED_RESCHED,
    IRQF_NMI,
    IRQF_PREEMPT_RESCHED,
    IRQF_PRESENT,
    IRQF_SOFTIRQ,
)

TRACING_MAGIC = b"\x17\x08\x44tracing"

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


# --------------------------------------------------------------------------------------------
# Errors and the byte reader
# --------------------------------------------------------------------------------------------


class FormatError(Exception):
    """The file's structure cannot be followed any further; the message says where and why."""


class ByteReader:
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
            raise FormatError(f"the trace.dat ends {where} inside {self.what} ({item})")

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
            raise FormatError(f"an event format in system {system!r} has no name or ID line")
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
        raise FormatError(f"the header_page layout is not usable: {header}")
    return header


def check_header_event(text: str) -> None:
    """Refuse ring buffers whose record header is not the 5-bit type_len / 27-bit delta one."""
    type_len = re.search(r"type_len\s*:\s*(\d+)\s*bits", text)
    delta = re.search(r"time_delta\s*:\s*(\d+)\s*bits", text)
    if type_len and delta and (int(type_len[1]), int(delta[1])) != (5, 27):
        raise FormatError(f"the ring-buffer record header has a {type_len[1]}-bit type and a "
                           f"{delta[1]}-bit time delta; only 5/27 is supported")
    if not type_len and "type_len" not in text and text.strip():
        raise FormatError("the ring buffer uses the pre-2.6.31 record format, not supported")


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
# What the metadata says (trace.dat or perf.data tracing data)
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


# --------------------------------------------------------------------------------------------
# The "tracing data" blocks, in file order
# --------------------------------------------------------------------------------------------


def read_header_files(r: ByteReader, tf: TraceFile) -> None:
    """header_page and header_event: the ring-buffer page and record header layouts."""
    if bytes(r.take(12, "header_page tag")) != b"header_page\0":
        raise FormatError(f"no header_page block where expected ({r.what})")
    text = bytes(r.take(r.u64("header_page size"), "header_page")).decode("utf-8", "replace")
    tf.page_header = parse_header_page(text, tf.long_size)
    if bytes(r.take(13, "header_event tag")) != b"header_event\0":
        raise FormatError(f"no header_event block where expected ({r.what})")
    check_header_event(
        bytes(r.take(r.u64("header_event size"), "header_event")).decode("utf-8", "replace"))


def read_ftrace_formats(r: ByteReader, tf: TraceFile) -> None:
    """The ftrace system's formats (print, function...)."""
    for _ in range(r.u32("ftrace format count")):
        text = bytes(r.take(r.u64("format size"), "ftrace format")).decode("utf-8", "replace")
        fmt = parse_event_format(text, "ftrace")
        tf.formats[fmt.id] = fmt


def read_event_formats(r: ByteReader, tf: TraceFile) -> None:
    """Every other system's event formats."""
    for _ in range(r.u32("event system count")):
        system = r.cstring("system name")
        for _ in range(r.u32("event count")):
            text = bytes(r.take(r.u64("format size"), f"{system} format")).decode(
                "utf-8", "replace")
            fmt = parse_event_format(text, system)
            tf.formats[fmt.id] = fmt


def read_cmdlines(r: ByteReader, tf: TraceFile) -> None:
    """saved_cmdlines (u64 size, then `PID COMM` lines)."""
    size = r.u64("saved cmdlines size")
    tf.cmdlines = parse_cmdlines(bytes(r.take(size, "saved cmdlines")).decode("utf-8", "replace"))


def read_tracing_data(blob: bytes | memoryview, what: str = "the tracing data") -> TraceFile:
    """perf.data's tracing data (tools/perf/util/trace-event-info.c, versions "0.5" and "0.6"):
    magic, version, endianness, long size, page size, then the blocks of a trace.dat v6 up to
    the saved cmdlines (0.6 only). kallsyms and printk formats are skipped unread."""
    tf = TraceFile()
    r = ByteReader(blob, "<", -1, what)
    if bytes(r.take(10, "magic")) != TRACING_MAGIC:
        raise FormatError(f"{what} does not start with the tracing magic")
    version = r.cstring("version")
    if version not in ("0.5", "0.6"):
        raise FormatError(f"{what} has version {version!r}; 0.5 and 0.6 are supported")
    tf.version = 6
    tf.endian = r.endian = ">" if r.number(1, "endianness") else "<"
    tf.long_size = r.number(1, "long size")
    tf.page_size = r.u32("page size")
    read_header_files(r, tf)
    read_ftrace_formats(r, tf)
    read_event_formats(r, tf)
    r.take(r.u32("kallsyms size"), "kallsyms")
    r.take(r.u32("printk size"), "printk formats")
    if version == "0.6" and r.pos < len(r.data):
        read_cmdlines(r, tf)
    return tf
