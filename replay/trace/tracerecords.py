"""Tracepoint records (in a trace.dat ring buffer or perf.data samples) into the events table.

A reader hands over `Records`: one byte buffer and, per record, where its tracepoint payload
starts (common_type, common_flags, common_preempt_count, common_pid, then the event's fields),
its length, timestamp, CPU and pid, plus the merged order. `record_tables` gathers every kmem
column in one numba pass per the formats' field offsets, maps compaction events and trace
markers, and counts every other record by event name.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from numba import njit

from replay.trace.compaction import (
    COMMON_COLUMNS,
    STRING_COLUMNS,
    TRACEDAT_FIELDS,
    CompactionRows,
)
from replay.trace.gfp import gfp_to_text
from replay.trace.result import TraceStats
from replay.trace.schema import (
    EVENT_ALIASES,
    EVENT_CODE,
    EVENT_NAMES,
    EVENTS_SCHEMA,
    EXTRA_COLUMNS,
    MARKERS_SCHEMA,
    null_columns,
)
from replay.trace.tracefmt import (
    EventFormat,
    FieldFormat,
    TraceFile,
    eval_c_constant,
    irq_flags_from_trace_flags,
    print_fmt_value,
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


def _common_field(formats: dict[int, EventFormat], name: str, default: FieldFormat) -> FieldFormat:
    """A common_* field's layout (identical in every format file); the kmem ones are read."""
    preferred = [f for f in formats.values() if f.system == "kmem"][:1]
    for fmt in preferred or list(formats.values())[:1]:
        if name in fmt.fields:
            return fmt.fields[name]
    return default


def common_fields(formats: dict[int, EventFormat],
                  ) -> tuple[FieldFormat, FieldFormat, FieldFormat, FieldFormat, int]:
    """common_type, common_flags, common_preempt_count and common_pid as the formats lay them
    out (the usual 0/2/3/4 when no format says), and where the common fields end."""
    ctype = _common_field(formats, "common_type", FieldFormat("common_type", 0, 2, False))
    cflags = _common_field(formats, "common_flags", FieldFormat("common_flags", 2, 1, False))
    cpc = _common_field(formats, "common_preempt_count",
                        FieldFormat("common_preempt_count", 3, 1, False))
    cpid = _common_field(formats, "common_pid", FieldFormat("common_pid", 4, 4, True))
    end = max(ctype.offset + ctype.size, cflags.offset + 1, cpc.offset + 1,
              cpid.offset + cpid.size)
    return ctype, cflags, cpc, cpid, end


def _none() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class Records:
    """Tracepoint records in reading order (trace.dat: CPU by CPU, page by page; perf.data:
    file order), common fields read, and `order`: the merged order, record order[i] having
    seq i + 1. `off`/`length` locate each record's tracepoint payload in `buf`."""

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
    # trace.dat's ring-buffer pages (empty for perf.data): CPU, scan status, lost count (-2
    # none, -1 missed but not stored, else the count), seq of the first record after a loss.
    page_cpu: np.ndarray = field(default_factory=_none)
    page_status: np.ndarray = field(default_factory=_none)
    page_lost: np.ndarray = field(default_factory=_none)
    page_first_seq: np.ndarray = field(default_factory=_none)
    # The task name of each record when the source says it per record (perf's COMM and FORK
    # records): an index into comm_values, -1 unknown. None: saved cmdlines by pid.
    comm: np.ndarray | None = None
    comm_values: list[str] = field(default_factory=list)
    tgid: np.ndarray | None = None  # per record when the source has it (perf's PID), else None

    def comm_names(self, rows: np.ndarray, cmdlines: dict[int, str]) -> list[str | None]:
        """The comm of records `rows` (stream order)."""
        if self.comm is None:
            return _comm_names(self.pid[rows], cmdlines)
        return [self.comm_values[c] if c >= 0 else None for c in self.comm[rows]]

    def comm_array(self, rows: np.ndarray | slice, cmdlines: dict[int, str]) -> pa.Array:
        """The comm of records `rows` as a dictionary array."""
        if self.comm is None:
            return _comm_array(self.pid[rows], cmdlines)
        codes = self.comm[rows]
        valid = codes >= 0
        return _dictionary(np.where(valid, codes, 0), valid, self.comm_values)

    def tgid_array(self, rows: np.ndarray | slice) -> pa.Array:
        if self.tgid is None:
            return pa.nulls(self.pid[rows].size, type=pa.int32())
        return pa.array(self.tgid[rows], type=pa.int32())


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


def as_run(idx: np.ndarray) -> np.ndarray | slice:
    """idx as a slice when it is a run of consecutive record numbers (the usual case)."""
    if idx.size and int(idx[-1]) - int(idx[0]) + 1 == idx.size and \
            (idx.size == 1 or bool((np.diff(idx) == 1).all())):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _events_table(rec: Records, tf: TraceFile, idx: np.ndarray, code_by_id: dict[int, int],
                  seq0: int = 0) -> tuple[pa.Table, dict[str, int], int]:
    """The events table of the records at merged positions `idx` (seq idx + 1 + seq0); also
    counts by kind and the short-record count."""
    seq = idx + 1 + seq0
    idx = rec.order[idx]  # stream-order record numbers from here on
    rows = as_run(idx)  # the same records, read without a copy when they are a run
    type_ids = np.array(sorted(code_by_id), dtype=np.int64)
    kind_of_id = np.zeros(int(type_ids.max(initial=0)) + 1, dtype=np.int64)
    kind_of_id[type_ids] = np.arange(type_ids.size)
    kind = kind_of_id[rec.type_id[rows]]  # every idx record has one of type_ids
    codes = np.array([code_by_id[int(t)] for t in type_ids], dtype=np.int32)
    names = [EVENT_NAMES[c] for c in codes]
    # the fields' gather (compiled, without the GIL) runs beside the per-record columns
    with ThreadPoolExecutor(1) as pool:
        gathered = pool.submit(_read_event_columns, rec, tf, idx, type_ids, kind, names)
        preempt = rec.preempt[rows]
        arrays = {
            "seq": pa.array(seq, type=pa.int64()),
            "ts_ns": pa.array(rec.ts[rows], type=pa.int64()),
            "cpu": pa.array(rec.cpu[rows], type=pa.int16()),
            "pid": pa.array(rec.pid[rows], type=pa.int32()),
            "tgid": rec.tgid_array(rows),
            "comm": rec.comm_array(rows, tf.cmdlines),
            "irq_flags": pa.array(irq_flags_from_trace_flags(rec.flags[rows]), type=pa.uint8()),
            "preempt_depth": pa.array(preempt & 0xF, type=pa.uint8()),
            "migrate_disable": pa.array(preempt >> 4, type=pa.uint8()),
        }
        cols, short = gathered.result()
    event_code = codes[kind] if idx.size else np.zeros(0, dtype=np.int32)
    failed = (event_code == EVENT_CODE["mm_page_alloc"]) & ~cols.valid[0]
    failed &= cols.wide[0] != 0  # a valid-but-null pfn, not a record too short to hold one
    by_kind: dict[str, int] = {}
    for k, count in enumerate(np.bincount(kind, minlength=len(names))):
        if count:
            by_kind[names[k]] = by_kind.get(names[k], 0) + int(count)
    gfp = _arrow(cols.wide[1].astype(np.uint32), cols.valid[1], pa.uint32())
    arrays |= {
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


def _compaction_rows(rec: Records, tf: TraceFile, idx: np.ndarray,
                     seq0: int = 0) -> pa.RecordBatch | None:
    """Compaction records at merged positions `idx` as events-schema rows (trace order)."""
    if not idx.size:
        return None
    rows_all = rec.order[idx]
    big = tf.endian == ">"
    out = CompactionRows()
    per_row: list[tuple[int, tuple, str, dict]] = []
    types = rec.type_id[rows_all]
    comms = rec.comm_names(rows_all, tf.cmdlines)
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
            elif column in STRING_COLUMNS:  # a format without its __print_symbolic table
                columns[column] = [str(int(v)) for v in values]
            else:
                columns[column] = values.tolist()
        if "gfp_flags" in columns:
            columns["gfp_text"] = [gfp_to_text(int(v)) for v in columns["gfp_flags"]]
        for k, i in enumerate(sel):
            if not fits[k]:
                continue
            r = rows_all[i]
            tgid = int(rec.tgid[r]) if rec.tgid is not None else None
            common = (int(idx[i]) + 1 + seq0, int(rec.ts[r]), int(rec.cpu[r]),
                      int(rec.pid[r]), tgid, comms[i], int(flags[i]), int(rec.preempt[r] & 0xF),
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


def _markers_table(rec: Records, tf: TraceFile, idx: np.ndarray, seq0: int = 0) -> pa.Table:
    """trace_marker writes (ftrace `print` events at merged positions `idx`) as markers."""
    rows = rec.order[idx]
    big = tf.endian == ">"
    texts = []
    for r in rows:
        f = tf.formats[int(rec.type_id[r])].fields.get("buf")
        texts.append(_marker_text(rec, int(r), f, big) if f is not None else "")
    pids = rec.pid[rows]
    return pa.Table.from_arrays([
        pa.array(idx + 1 + seq0, type=pa.int64()),
        pa.array(rec.ts[rows], type=pa.int64()),
        pa.array(rec.cpu[rows], type=pa.int16()),
        pa.array(pids, type=pa.int32()),
        pa.array(rec.comm_names(rows, tf.cmdlines), type=pa.string()),
        pa.array(texts, type=pa.string()),
    ], schema=MARKERS_SCHEMA)


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


def _one_of(types: np.ndarray, ids) -> np.ndarray:
    """np.isin(types, ids) for event type ids, by a lookup table."""
    ids = np.fromiter(ids, dtype=np.int64)
    if not types.size or int(types.min()) < 0:
        return np.isin(types, ids)
    lut = np.zeros(max(int(types.max()), int(ids.max(initial=0))) + 1, dtype=bool)
    lut[ids[ids >= 0]] = True
    return lut[types]


def record_tables(rec: Records, tf: TraceFile, stats: TraceStats,
                  seq0: int = 0) -> tuple[pa.Table, pa.Table]:
    """The events table (kmem and compaction rows, in merged order) and the markers table of
    `rec`; fills stats.events, events_by_kind, markers, other_events and short records."""
    code_by_id = _event_code_by_id(tf)
    merged_type = rec.type_id[as_run(rec.order)]
    is_event = _one_of(merged_type, code_by_id)
    marker_ids = [i for i, f in tf.formats.items() if f.system == "ftrace" and f.name == "print"]
    is_marker = _one_of(merged_type, marker_ids)
    events, by_kind, short = _events_table(rec, tf, np.flatnonzero(is_event), code_by_id, seq0)
    compaction_ids = [i for i, f in tf.formats.items()
                      if f.system == "compaction" and f.name in TRACEDAT_FIELDS]
    is_compaction = _one_of(merged_type, compaction_ids)
    comp = _compaction_rows(rec, tf, np.flatnonzero(is_compaction), seq0)
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
    markers = _markers_table(rec, tf, np.flatnonzero(is_marker), seq0)
    _count_other_events(rec, tf, is_event | is_marker, stats)
    stats.events = events.num_rows
    stats.events_by_kind = {name: by_kind[name] for name in EVENT_NAMES if name in by_kind}
    stats.markers = markers.num_rows
    return events, markers


def record_columns(rec: Records, tf: TraceFile, stats: TraceStats, seq0: int = 0
                   ) -> tuple[dict[str, np.ndarray], list[str], pa.RecordBatch | None, pa.Table]:
    """record_tables' kmem rows as int64 columns instead of a table (the streamed replay's
    columns: nulls -1, a failed allocation's pfn -1, comm as codes into the returned names),
    with its compaction rows as a record batch and its markers table; fills the same stats.
    Skipping Arrow for the kmem rows is what makes a trace.dat cheap to replay."""
    code_by_id = _event_code_by_id(tf)
    merged_type = rec.type_id[as_run(rec.order)]
    is_event = _one_of(merged_type, code_by_id)
    marker_ids = [i for i, f in tf.formats.items() if f.system == "ftrace" and f.name == "print"]
    is_marker = _one_of(merged_type, marker_ids)
    pos = np.flatnonzero(is_event)
    idx = rec.order[pos]
    type_ids = np.array(sorted(code_by_id), dtype=np.int64)
    kind_of_id = np.zeros(int(type_ids.max(initial=0)) + 1, dtype=np.int64)
    kind_of_id[type_ids] = np.arange(type_ids.size)
    kind = kind_of_id[rec.type_id[idx]]
    codes = np.array([code_by_id[int(t)] for t in type_ids], dtype=np.int64)
    names = [EVENT_NAMES[c] for c in codes]
    cols, short = _read_event_columns(rec, tf, idx, type_ids, kind, names)
    ev = codes[kind] if idx.size else np.zeros(0, dtype=np.int64)
    failed = (ev == EVENT_CODE["mm_page_alloc"]) & ~cols.valid[0]
    failed &= cols.wide[0] != 0
    by_kind: dict[str, int] = {}
    for k, count in enumerate(np.bincount(kind, minlength=len(names))):
        if count:
            by_kind[names[k]] = by_kind.get(names[k], 0) + int(count)
    pfn = np.where(cols.valid[0] & ~failed, cols.wide[0].astype(np.int64), -1)
    pid = rec.pid[idx].astype(np.int64)
    comm_names, comm = _comm_codes(rec, idx, pid, tf.cmdlines)

    def narrow(name: str) -> np.ndarray:
        c = _COLUMN_INDEX[name]
        return np.where(cols.valid[c], cols.values(name).astype(np.int64), -1)

    out = {
        "seq": pos + 1 + seq0, "ts": rec.ts[idx].astype(np.int64), "ev": ev, "pfn": pfn,
        "order": narrow("order"), "mt": narrow("migratetype"),
        "cpu": rec.cpu[idx].astype(np.int64), "refill": narrow("percpu_refill"),
        "ford": narrow("fallback_order"), "fmt": narrow("fallback_migratetype"),
        "chown": narrow("change_ownership"),
        "irq": irq_flags_from_trace_flags(rec.flags[idx]).astype(np.int64),
        "preempt": (rec.preempt[idx] & 0xF).astype(np.int64),
        "gfp": np.where(cols.valid[1], cols.wide[1].astype(np.uint32).astype(np.int64), -1),
        "pid": pid, "frag": narrow("fragmenting"), "stack": np.full(idx.size, -1, np.int64),
        "failed": failed.astype(np.int64), "comm": comm,
        "cidx": np.full(idx.size, -1, np.int64),
    }
    compaction_ids = [i for i, f in tf.formats.items()
                      if f.system == "compaction" and f.name in TRACEDAT_FIELDS]
    is_compaction = _one_of(merged_type, compaction_ids)
    comp = _compaction_rows(rec, tf, np.flatnonzero(is_compaction), seq0)
    if comp is not None:
        for name, count in zip(*np.unique(comp.column("event").to_numpy(zero_copy_only=False)
                                          .astype(str), return_counts=True), strict=True):
            by_kind[name] = by_kind.get(name, 0) + int(count)
        short += int(np.count_nonzero(is_compaction)) - comp.num_rows
        is_event |= is_compaction
    if short:
        stats.bad_lines["record shorter than its format"] = short
    markers = _markers_table(rec, tf, np.flatnonzero(is_marker), seq0)
    _count_other_events(rec, tf, is_event | is_marker, stats)
    stats.events = idx.size + (comp.num_rows if comp is not None else 0)
    stats.events_by_kind = {name: by_kind[name] for name in EVENT_NAMES if name in by_kind}
    stats.markers = markers.num_rows
    return out, comm_names, comp, markers


def _comm_codes(rec: Records, idx: np.ndarray, pid: np.ndarray,
                cmdlines: dict[int, str]) -> tuple[list[str], np.ndarray]:
    """comm of records `idx` as codes into a names list (-1 unknown), as comm_array names
    them."""
    if rec.comm is not None:
        return list(rec.comm_values), rec.comm[idx].astype(np.int64)
    if not pid.size:
        return [], np.zeros(0, np.int64)
    uniq, inverse = np.unique(pid, return_inverse=True)
    names = _comm_names(uniq, cmdlines)
    values = sorted({n for n in names if n is not None})
    code = {n: i for i, n in enumerate(values)}
    per_uniq = np.array([code[n] if n is not None else -1 for n in names], dtype=np.int64)
    return values, per_uniq[inverse.ravel()]
