"""Metrics over events and free-block snapshots: the numbers reports are made of.

* fragmentation: the kernel's indices (mm/vmstat.c) from free block counts per order;
* snapshot_metrics: those indices per zone of a buddyinfo snapshot;
* fallbacks: migratetype fallbacks (extfrag) and pcp refill/drain runs, in total and over time;
* peers: trace-pagealloc-postprocess.pl's per-process table and perf kmem --page's summary and
  live pages, with their 6.1 defects fixed.

Event functions take an events frame (polars DataFrame or LazyFrame, or the Arrow table
`read_trace` gives), observed or simulated alike. docs/metrics.md gives every formula.
"""

from replay.metrics.fallbacks import (
    fallback_summary,
    fallbacks_over_time,
    pcp_over_time,
    pcp_summary,
)
from replay.metrics.fragmentation import (
    MAX_ORDER,
    PAGEBLOCK_ORDER,
    ContigPageInfo,
    extfrag_for_order,
    fill_contig_page_info,
    fragmentation_index,
    fragmentation_index_all,
    free_pageblocks,
    free_pages,
    largest_free_order,
    render_debugfs,
    unusable_free_index,
    unusable_index_all,
)
from replay.metrics.peers import live_pages, page_summary, per_process
from replay.metrics.snapshot_metrics import zone_indices

__all__ = [
    "MAX_ORDER",
    "PAGEBLOCK_ORDER",
    "ContigPageInfo",
    "extfrag_for_order",
    "fallback_summary",
    "fallbacks_over_time",
    "fill_contig_page_info",
    "fragmentation_index",
    "fragmentation_index_all",
    "free_pageblocks",
    "free_pages",
    "largest_free_order",
    "live_pages",
    "page_summary",
    "pcp_over_time",
    "pcp_summary",
    "per_process",
    "render_debugfs",
    "unusable_free_index",
    "unusable_index_all",
    "zone_indices",
]
