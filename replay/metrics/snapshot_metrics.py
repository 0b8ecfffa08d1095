"""Per-zone fragmentation indices from a buddyinfo snapshot (start or end of a trace).

The report's per-zone block: for each zone, the kernel's indices over all orders plus the
summary numbers a reader looks for first (largest free block, free 2 MiB pageblocks).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from replay.metrics.fragmentation import (
    PAGEBLOCK_ORDER,
    as_counts,
    fragmentation_index_all,
    free_pageblocks,
    free_pages,
    largest_free_order,
    unusable_index_all,
)

ZoneKey = tuple[int, str] | str


def zone_name(key: ZoneKey) -> str:
    """A zone key as "<node>/<zone>": (0, "DMA32") and "0/DMA32" both give "0/DMA32"."""
    if isinstance(key, str):
        return key
    node, zone = key
    return f"{int(node)}/{zone}"


def zone_index(counts: npt.ArrayLike, pageblock_order: int = PAGEBLOCK_ORDER) -> dict:
    """One zone's indices from its 11 free block counts (see `zone_indices`)."""
    c = as_counts(counts)
    if c.ndim != 1:
        raise ValueError(f"one zone has 1-D counts, got shape {c.shape}")
    return {
        "unusable_index": [int(v) for v in unusable_index_all(c)],
        "fragmentation_index": [int(v) for v in fragmentation_index_all(c)],
        "largest_free_order": int(largest_free_order(c)),
        "free_pageblocks": int(free_pageblocks(c, pageblock_order)),
        "free_pages": int(free_pages(c)),
    }


def zone_indices(buddyinfo_by_zone: Mapping[ZoneKey, npt.ArrayLike],
                 pageblock_order: int = PAGEBLOCK_ORDER) -> dict[str, dict]:
    """{"<node>/<zone>": {"unusable_index": [11], "fragmentation_index": [11],
    "largest_free_order": int, "free_pageblocks": int, "free_pages": int}}.

    Input: free block counts per order per zone, keyed (node, zone) as
    replay.trace.snapshots.read_buddyinfo gives them, or already "<node>/<zone>". The lists are
    thousandths (mm/vmstat.c unusable_free_index, __fragmentation_index); largest_free_order is
    -1 for a zone with nothing free; free_pageblocks counts whole free pageblocks (an order-10
    block is two); free_pages counts buddy pages (pcp lists are not in buddyinfo).
    """
    return {zone_name(key): zone_index(np.asarray(counts), pageblock_order)
            for key, counts in buddyinfo_by_zone.items()}
