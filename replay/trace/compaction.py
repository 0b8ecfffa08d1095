"""Compaction tracepoints (events/compaction/) as rows of the events table.

The formats are include/trace/events/compaction.h's TP_printk (6.1 and 6.12). Compaction lines
are rare next to the kmem events (hundreds per second at most), so the text scanner hands them
back whole and their payloads are parsed here; trace.dat records are decoded field by field in
tracedat.py and mapped to the same columns with `TRACEDAT_FIELDS`.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from replay.trace.gfp import gfp_from_text
from replay.trace.schema import COMPACTION_EVENT_NAMES, EVENT_CODE, EVENTS_SCHEMA

_HEX = r"(0x[0-9a-fA-F]+|\d+)"
_INT = r"(-?\d+)"
_ZONE = r"(\S+)\s*"
_ISOLATE = re.compile(rf"range=\({_HEX} ~ {_HEX}\) nr_scanned={_INT} nr_taken={_INT}")
_SUITABLE = re.compile(rf"node={_INT} zone={_ZONE}order={_INT} ret=(\S+)")
_DEFER = re.compile(rf"node={_INT} zone={_ZONE}order={_INT} order_failed={_INT} "
                    rf"consider={_INT} limit={_INT}")
_WAKE = re.compile(rf"nid={_INT} order={_INT} (?:classzone_idx|highest_zoneidx)=(\S+)")
_SCANNERS = (rf"zone_start={_HEX} migrate_pfn={_HEX} free_pfn={_HEX} zone_end={_HEX}, "
             r"mode=(sync|async)")

# name -> (regex, columns of its groups in order); a column name ending in "+hex" is parsed
# as a number with base autodetection.
PAYLOADS: dict[str, tuple[re.Pattern, tuple[str, ...]]] = {
    "mm_compaction_isolate_migratepages": (_ISOLATE, ("start_pfn", "end_pfn", "nr_scanned",
                                                       "nr_taken")),
    "mm_compaction_isolate_freepages": (_ISOLATE, ("start_pfn", "end_pfn", "nr_scanned",
                                                    "nr_taken")),
    "mm_compaction_fast_isolate_freepages": (_ISOLATE, ("start_pfn", "end_pfn", "nr_scanned",
                                                         "nr_taken")),
    "mm_compaction_migratepages": (re.compile(rf"nr_migrated={_INT} nr_failed={_INT}"),
                                   ("nr_migrated", "nr_failed")),
    "mm_compaction_begin": (re.compile(_SCANNERS), ("start_pfn", "migrate_pfn", "free_pfn",
                                                    "end_pfn", "sync")),
    "mm_compaction_end": (re.compile(_SCANNERS + r" status=(\S+)"),
                          ("start_pfn", "migrate_pfn", "free_pfn", "end_pfn", "sync", "status")),
    "mm_compaction_try_to_compact_pages": (
        re.compile(rf"order={_INT} gfp_mask=(\S+) priority={_INT}"),
        ("order", "gfp_text", "priority")),
    "mm_compaction_finished": (_SUITABLE, ("node", "zone", "order", "status")),
    "mm_compaction_suitable": (_SUITABLE, ("node", "zone", "order", "status")),
    "mm_compaction_deferred": (_DEFER, ("node", "zone", "order", "order_failed", "consider",
                                        "limit")),
    "mm_compaction_defer_compaction": (_DEFER, ("node", "zone", "order", "order_failed",
                                                "consider", "limit")),
    "mm_compaction_defer_reset": (_DEFER, ("node", "zone", "order", "order_failed", "consider",
                                           "limit")),
    "mm_compaction_kcompactd_sleep": (re.compile(rf"nid={_INT}"), ("node",)),
    "mm_compaction_wakeup_kcompactd": (_WAKE, ("node", "order", "zone")),
    "mm_compaction_kcompactd_wake": (_WAKE, ("node", "order", "zone")),
}
assert set(PAYLOADS) == set(COMPACTION_EVENT_NAMES)

STRING_COLUMNS = ("zone", "status", "gfp_text")
NUMERIC_COLUMNS = ("order", "gfp_flags", "node", "start_pfn", "end_pfn", "migrate_pfn",
                   "free_pfn", "nr_scanned", "nr_taken", "nr_migrated", "nr_failed", "sync",
                   "priority", "order_failed", "consider", "limit")
COMMON_COLUMNS = ("seq", "ts_ns", "cpu", "pid", "tgid", "comm", "irq_flags", "preempt_depth",
                  "migrate_disable")

# trace.dat field -> column, per event (the struct field names of compaction.h). Fields printed
# through __print_symbolic (zone index, compact_result) are decoded with the format's own table.
TRACEDAT_FIELDS: dict[str, dict[str, str]] = {
    "mm_compaction_isolate_migratepages": {"start_pfn": "start_pfn", "end_pfn": "end_pfn",
                                           "nr_scanned": "nr_scanned", "nr_taken": "nr_taken"},
    "mm_compaction_migratepages": {"nr_migrated": "nr_migrated", "nr_failed": "nr_failed"},
    "mm_compaction_begin": {"zone_start": "start_pfn", "migrate_pfn": "migrate_pfn",
                            "free_pfn": "free_pfn", "zone_end": "end_pfn", "sync": "sync"},
    "mm_compaction_try_to_compact_pages": {"order": "order", "gfp_mask": "gfp_flags",
                                           "prio": "priority"},
    "mm_compaction_suitable": {"nid": "node", "idx": "zone", "order": "order", "ret": "status"},
    "mm_compaction_deferred": {"nid": "node", "idx": "zone", "order": "order",
                               "considered": "consider", "defer_shift": "limit",
                               "order_failed": "order_failed"},
    "mm_compaction_kcompactd_sleep": {"nid": "node"},
    "mm_compaction_wakeup_kcompactd": {"nid": "node", "order": "order",
                                       "classzone_idx": "zone", "highest_zoneidx": "zone"},
}
for _same, _as in (("mm_compaction_isolate_freepages", "mm_compaction_isolate_migratepages"),
                   ("mm_compaction_fast_isolate_freepages", "mm_compaction_isolate_migratepages"),
                   ("mm_compaction_end", "mm_compaction_begin"),
                   ("mm_compaction_finished", "mm_compaction_suitable"),
                   ("mm_compaction_defer_compaction", "mm_compaction_deferred"),
                   ("mm_compaction_defer_reset", "mm_compaction_deferred"),
                   ("mm_compaction_kcompactd_wake", "mm_compaction_wakeup_kcompactd")):
    TRACEDAT_FIELDS[_same] = dict(TRACEDAT_FIELDS[_as])
TRACEDAT_FIELDS["mm_compaction_end"]["status"] = "status"


def _number(text: str) -> int:
    return int(text, 16) if text.startswith(("0x", "0X")) else int(text)


def parse_payload(name: str, payload: str) -> dict[str, object] | None:
    """The columns of one compaction line's payload, or None if it does not match its format."""
    regex, columns = PAYLOADS[name]
    m = regex.match(payload.strip())
    if m is None:
        return None
    row: dict[str, object] = {}
    for column, text in zip(columns, m.groups(), strict=True):
        if column in ("zone", "status", "gfp_text"):
            row[column] = text
        elif column == "sync":
            row[column] = 1 if text == "sync" else 0
        else:
            row[column] = _number(text)
    if "gfp_text" in row:
        mask = gfp_from_text(str(row["gfp_text"]))
        if mask is not None:
            row["gfp_flags"] = mask
    return row


class CompactionRows:
    """Compaction events collected column-wise, turned into an events-schema batch."""

    def __init__(self) -> None:
        self.common: list[tuple] = []  # COMMON_COLUMNS values (comm as text or None)
        self.codes: list[int] = []
        self.fields: list[dict[str, object]] = []

    def __len__(self) -> int:
        return len(self.codes)

    def add(self, common: tuple, name: str, fields: dict[str, object]) -> None:
        self.common.append(common)
        self.codes.append(EVENT_CODE[name])
        self.fields.append(fields)

    def batch(self, event_dictionary: pa.Array) -> pa.RecordBatch:
        """The rows as a record batch of EVENTS_SCHEMA (kmem-only columns null)."""
        n = len(self.codes)
        cols: dict[str, pa.Array] = {}
        common = list(zip(*self.common, strict=True)) if n else [[]] * len(COMMON_COLUMNS)
        for name, values in zip(COMMON_COLUMNS, common, strict=True):
            field = EVENTS_SCHEMA.field(name)
            if name == "comm":
                cols[name] = pa.array(values, pa.string()).dictionary_encode()
            else:
                cols[name] = pa.array(values, field.type)
        cols["event"] = pa.DictionaryArray.from_arrays(pa.array(self.codes, pa.int32()),
                                                       event_dictionary)
        cols["failed"] = pa.array(np.zeros(n, bool))
        for name in NUMERIC_COLUMNS + STRING_COLUMNS:
            values = [f.get(name) for f in self.fields]
            typ = EVENTS_SCHEMA.field(name).type
            if name in STRING_COLUMNS:
                cols[name] = pa.array(values, pa.string()).dictionary_encode()
            else:
                cols[name] = pa.array(values, typ)
        arrays = []
        for field in EVENTS_SCHEMA:
            a = cols.get(field.name)
            if a is None:
                a = pa.nulls(n, field.type)
            elif a.type != field.type:
                a = a.cast(field.type)
            arrays.append(a)
        return pa.RecordBatch.from_arrays(arrays, schema=EVENTS_SCHEMA)
