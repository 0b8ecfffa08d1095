"""The events table: one schema for every input (ftrace text, trace-cmd, trace.dat, simulation).

Documented for users in docs/schema.md. Codes here are data tables, as in the kernel.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

# Event codes: the `event` column is a dictionary over exactly these names, in this order.
EVENT_NAMES: tuple[str, ...] = (
    "mm_page_alloc",
    "mm_page_free",
    "mm_page_free_batched",
    "mm_page_alloc_zone_locked",
    "mm_page_pcpu_drain",
    "mm_page_alloc_extfrag",
)
EV_ALLOC, EV_FREE, EV_FREE_BATCHED, EV_ZONE_LOCKED, EV_PCPU_DRAIN, EV_EXTFRAG = range(6)
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
    ]
)

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
