"""The events table: one schema for every input (ftrace text, trace-cmd, trace.dat, simulation).

Documented for users in docs/schema.md. Codes here are data tables, as in the kernel.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 2

# Event codes: the `event` column is a dictionary over exactly these names, in this order.
KMEM_EVENT_NAMES: tuple[str, ...] = (
    "mm_page_alloc",
    "mm_page_free",
    "mm_page_free_batched",
    "mm_page_alloc_zone_locked",
    "mm_page_pcpu_drain",
    "mm_page_alloc_extfrag",
)
EV_ALLOC, EV_FREE, EV_FREE_BATCHED, EV_ZONE_LOCKED, EV_PCPU_DRAIN, EV_EXTFRAG = range(6)
# events/compaction/ (include/trace/events/compaction.h, 6.1 and 6.12), codes from 6 on.
COMPACTION_EVENT_NAMES: tuple[str, ...] = (
    "mm_compaction_isolate_migratepages",
    "mm_compaction_isolate_freepages",
    "mm_compaction_fast_isolate_freepages",  # 6.12 (6.1's fast search is untraced)
    "mm_compaction_migratepages",
    "mm_compaction_begin",
    "mm_compaction_end",
    "mm_compaction_try_to_compact_pages",
    "mm_compaction_finished",
    "mm_compaction_suitable",
    "mm_compaction_deferred",
    "mm_compaction_defer_compaction",
    "mm_compaction_defer_reset",
    "mm_compaction_kcompactd_sleep",
    "mm_compaction_wakeup_kcompactd",
    "mm_compaction_kcompactd_wake",
)
(EV_ISOLATE_MIGRATE, EV_ISOLATE_FREE, EV_FAST_ISOLATE_FREE, EV_MIGRATEPAGES, EV_COMPACT_BEGIN,
 EV_COMPACT_END, EV_TRY_TO_COMPACT, EV_COMPACT_FINISHED, EV_COMPACT_SUITABLE, EV_COMPACT_DEFERRED,
 EV_DEFER_COMPACTION, EV_DEFER_RESET, EV_KCOMPACTD_SLEEP, EV_WAKEUP_KCOMPACTD,
 EV_KCOMPACTD_WAKE) = range(6, 6 + len(COMPACTION_EVENT_NAMES))
EV_FIRST_COMPACTION = EV_ISOLATE_MIGRATE
EVENT_NAMES: tuple[str, ...] = KMEM_EVENT_NAMES + COMPACTION_EVENT_NAMES
EVENT_CODE = {name: i for i, name in enumerate(EVENT_NAMES)}
# Names older kernels used for the same events (v3.x era).
EVENT_ALIASES = {"mm_page_free_direct": EV_FREE, "mm_pagevec_free": EV_FREE_BATCHED}

# include/linux/mmzone.h enum migratetype, Debian 12 config (CONFIG_CMA off).
MIGRATETYPE_NAMES: tuple[str, ...] = (
    "Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_HIGHATOMIC = range(4)
MIGRATE_ISOLATE = 4
MIGRATE_PCPTYPES = 3
MIGRATE_TYPES = 5

# enum compact_result (include/linux/compaction.h), as mm_compaction_end's status and the
# suitable/finished events' ret print it (include/trace/events/mmflags.h COMPACTION_STATUS).
COMPACT_STATUS_NAMES: tuple[str, ...] = (
    "not_suitable_zone", "skipped", "deferred", "no_suitable_page", "continue", "complete",
    "partial_skipped", "contended", "success")

# irq-info column (kernel/trace/trace_output.c trace_print_lat_fmt), decoded into `irq_flags`.
IRQF_IRQS_OFF = 1 << 0  # 'd' or 'D'
IRQF_BH_OFF = 1 << 1  # 'b' or 'D'
IRQF_NEED_RESCHED = 1 << 2  # 'N' or 'n'
IRQF_PREEMPT_RESCHED = 1 << 3  # 'N' or 'p'
IRQF_HARDIRQ = 1 << 4  # 'h', 'H', 'Z'
IRQF_SOFTIRQ = 1 << 5  # 's', 'H'
IRQF_NMI = 1 << 6  # 'z', 'Z'
IRQF_PRESENT = 1 << 7  # the line had an irq-info column at all
IRQ_FLAG_BITS = {
    "irqs_off": IRQF_IRQS_OFF,
    "bh_off": IRQF_BH_OFF,
    "need_resched": IRQF_NEED_RESCHED,
    "preempt_resched": IRQF_PREEMPT_RESCHED,
    "hardirq": IRQF_HARDIRQ,
    "softirq": IRQF_SOFTIRQ,
    "nmi": IRQF_NMI,
    "present": IRQF_PRESENT,
}

_dict_str = pa.dictionary(pa.int32(), pa.string())

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),  # line number in the source: the tie-breaker
        pa.field("ts_ns", pa.int64(), nullable=False),
        pa.field("cpu", pa.int16(), nullable=False),
        pa.field("pid", pa.int32(), nullable=False),
        pa.field("tgid", pa.int32()),  # null without a TGID column
        pa.field("comm", _dict_str),  # null for `<...>` (pid not in saved_cmdlines)
        pa.field("irq_flags", pa.uint8(), nullable=False),  # IRQF_* bits
        pa.field("preempt_depth", pa.uint8()),  # null without an irq-info column
        pa.field("migrate_disable", pa.uint8()),  # null without a 5th irq-info character
        pa.field("event", _dict_str, nullable=False),  # EVENT_NAMES
        pa.field("pfn", pa.uint64()),  # null for a failed mm_page_alloc (printed pfn=0x0)
        pa.field("failed", pa.bool_(), nullable=False),  # mm_page_alloc that returned NULL
        pa.field("order", pa.int8()),  # extfrag: alloc_order
        pa.field("migratetype", pa.int8()),  # extfrag: alloc_migratetype
        pa.field("gfp_flags", pa.uint32()),  # mm_page_alloc only
        pa.field("gfp_text", _dict_str),  # as printed
        pa.field("percpu_refill", pa.int8()),  # zone_locked only
        pa.field("fallback_order", pa.int8()),  # extfrag only, and the four below
        pa.field("pageblock_order", pa.int8()),
        pa.field("fallback_migratetype", pa.int8()),
        pa.field("fragmenting", pa.int8()),
        pa.field("change_ownership", pa.int8()),
        # compaction events (docs/schema.md says which event fills which column)
        pa.field("node", pa.int16()),  # node= / nid=
        pa.field("zone", _dict_str),  # zone= / classzone_idx= (a zone type name)
        pa.field("start_pfn", pa.uint64()),  # isolate_*: range start; begin/end: zone_start
        pa.field("end_pfn", pa.uint64()),  # isolate_*: range end; begin/end: zone_end
        pa.field("migrate_pfn", pa.uint64()),  # begin/end: the migrate scanner
        pa.field("free_pfn", pa.uint64()),  # begin/end: the free scanner
        pa.field("nr_scanned", pa.int64()),  # isolate_*
        pa.field("nr_taken", pa.int64()),  # isolate_*: pages isolated
        pa.field("nr_migrated", pa.int64()),  # migratepages
        pa.field("nr_failed", pa.int64()),  # migratepages
        pa.field("sync", pa.int8()),  # begin/end: mode=sync 1, async 0
        pa.field("status", _dict_str),  # end: status=; suitable/finished: ret=
        pa.field("priority", pa.int8()),  # try_to_compact_pages
        pa.field("order_failed", pa.int8()),  # deferred/defer_compaction/defer_reset
        pa.field("consider", pa.int64()),  # ditto
        pa.field("limit", pa.int64()),  # ditto: 1 << defer_shift
        # kernel call chains: perf.data -g, ftrace's stacktrace option, trace-cmd -T (else null)
        pa.field("stack_id", pa.int32()),  # index of the distinct call chain in this trace
        pa.field("callchain", pa.list_(pa.uint64())),  # kernel return addresses, innermost first
        pa.field("callchain_syms", pa.list_(_dict_str)),  # the frames as the tracer named them
    ]
)
KMEM_COLUMNS: tuple[str, ...] = tuple(EVENTS_SCHEMA.names[: EVENTS_SCHEMA.names.index("node")])
EXTRA_COLUMNS: tuple[str, ...] = tuple(EVENTS_SCHEMA.names[len(KMEM_COLUMNS):])
STACK_COLUMNS: tuple[str, ...] = ("stack_id", "callchain", "callchain_syms")  # the last ones
assert EXTRA_COLUMNS[-len(STACK_COLUMNS):] == STACK_COLUMNS

MARKERS_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64()),
        pa.field("ts_ns", pa.int64()),
        pa.field("cpu", pa.int16()),
        pa.field("pid", pa.int32()),
        pa.field("comm", pa.string()),
        pa.field("text", pa.string()),
    ]
)

# kind: "lost" ([LOST N EVENTS]), "dropped" (trace-cmd's EVENTS DROPPED),
# "overwritten" (entries-in-buffer/entries-written gap of the `trace` header),
# "missed_page" (trace.dat ring-buffer page flagged with missed events).
LOST_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64()),
        pa.field("cpu", pa.int16()),  # null when the source does not say
        pa.field("events", pa.int64()),  # null when the count is unknown
        pa.field("kind", pa.string()),
    ]
)


def null_columns(names: tuple[str, ...], n: int) -> list[pa.Array]:
    """All-null columns of the events schema (e.g. the compaction columns of kmem rows).

    They share one validity bitmap and one zero value buffer (calloc'd, so untouched pages
    cost nothing): millions of rows need no memory per column."""
    validity = pa.py_buffer(np.zeros((n + 7) // 8, np.uint8))
    zeros = pa.py_buffer(np.zeros(8 * n + 8, np.uint8))  # 8-byte values, or n + 1 offsets
    out = []
    for name in names:
        typ = EVENTS_SCHEMA.field(name).type
        if pa.types.is_dictionary(typ):
            indices = pa.Array.from_buffers(typ.index_type, n, [validity, zeros], null_count=n)
            out.append(pa.DictionaryArray.from_arrays(indices, pa.array([], typ.value_type)))
        elif pa.types.is_list(typ):
            out.append(pa.Array.from_buffers(typ, n, [validity, zeros], null_count=n,
                                             children=[pa.array([], typ.value_type)]))
        elif pa.types.is_integer(typ) or pa.types.is_boolean(typ):
            out.append(pa.Array.from_buffers(typ, n, [validity, zeros], null_count=n))
        else:
            out.append(pa.nulls(n, typ))
    return out
