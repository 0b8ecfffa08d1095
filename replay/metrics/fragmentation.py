"""Fragmentation indices from free block counts, exactly as mm/vmstat.c computes them (6.1).

Every function takes `counts`: free blocks per order (`nr_free`, what /proc/buddyinfo prints),
as anything numpy can read with the order as the last axis, length MAX_ORDER (11). Leading axes
(zones, time steps) broadcast: a [T, 11] series gives [T] (per-order functions) or [T, 11]
(the `*_all` functions). A 1-D input gives Python ints.

Values are in thousandths, with the kernel's integer arithmetic: every division in mm/vmstat.c
is `div_u64` on non-negative operands (so it floors), and only the final `1000 - q` of
`__fragmentation_index` can go below zero. The debugfs renderers print such a value the way the
kernel's `"%2d.%03d", index / 1000, index % 1000` does, with C's truncation toward zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

MAX_ORDER = 11  # include/linux/mmzone.h (6.1, exclusive: orders 0..10)
PAGEBLOCK_ORDER = 9  # include/linux/pageblock-flags.h on x86_64
ORDERS = np.arange(MAX_ORDER, dtype=np.int64)

ArrayLike = npt.ArrayLike
IntOrArray = int | np.ndarray


class ContigPageInfo(NamedTuple):
    """mm/vmstat.c `struct contig_page_info` for one requested order."""

    free_blocks_total: IntOrArray
    free_pages: IntOrArray
    free_blocks_suitable: IntOrArray


def as_counts(counts: ArrayLike) -> np.ndarray:
    """`counts` as an int64 array whose last axis is the order (length MAX_ORDER)."""
    arr = np.asarray(counts, dtype=np.int64)
    if arr.ndim == 0 or arr.shape[-1] != MAX_ORDER:
        raise ValueError(f"free block counts need a last axis of {MAX_ORDER} orders, "
                         f"got shape {arr.shape}")
    if (arr < 0).any():
        raise ValueError("free block counts cannot be negative")
    return arr


def _check_order(order: int) -> int:
    if not 0 <= order < MAX_ORDER:
        raise ValueError(f"order {order} is outside 0..{MAX_ORDER - 1}")
    return int(order)


def _out(value: np.ndarray) -> IntOrArray:
    """A 0-d result as a Python int, anything else unchanged."""
    return int(value) if np.ndim(value) == 0 else value


# Suitable-block weights: SUITABLE[o, k] = 2^(k-o) for k >= o, else 0.
_SHIFT = ORDERS[None, :] - ORDERS[:, None]
SUITABLE = np.where(_SHIFT >= 0, np.left_shift(1, np.maximum(_SHIFT, 0)), 0).astype(np.int64)


def _totals(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(free_blocks_total, free_pages) over the last axis."""
    return c.sum(axis=-1), (c << ORDERS).sum(axis=-1)


def fill_contig_page_info(counts: ArrayLike, order: int) -> ContigPageInfo:
    """mm/vmstat.c `fill_contig_page_info()`: totals and blocks usable for a 2^order request.

    free_blocks_total = sum n_k; free_pages = sum n_k * 2^k;
    free_blocks_suitable = sum over k >= order of n_k * 2^(k - order).
    """
    c, order = as_counts(counts), _check_order(order)
    total, free_pages = _totals(c)
    suitable = c @ SUITABLE[order]
    return ContigPageInfo(_out(total), _out(free_pages), _out(suitable))


def _unusable(free_pages: np.ndarray, suitable: np.ndarray, order: np.ndarray) -> np.ndarray:
    """`unusable_free_index()` on broadcast arrays (1000 when there are no free pages)."""
    usable = suitable << order
    value = (free_pages - usable) * 1000 // np.maximum(free_pages, 1)
    return np.where(free_pages == 0, 1000, value)


def _fragmentation(total: np.ndarray, free_pages: np.ndarray, suitable: np.ndarray,
                   order: np.ndarray) -> np.ndarray:
    """`__fragmentation_index()` on broadcast arrays."""
    quotient = (1000 + free_pages * 1000 // (1 << order)) // np.maximum(total, 1)
    value = np.where(suitable > 0, -1000, 1000 - quotient)
    return np.where(total == 0, 0, value)


def _extfrag(free_pages: np.ndarray, suitable: np.ndarray, order: np.ndarray) -> np.ndarray:
    """`extfrag_for_order()` on broadcast arrays (0 when there are no free pages)."""
    value = (free_pages - (suitable << order)) * 100 // np.maximum(free_pages, 1)
    return np.where(free_pages == 0, 0, value)


def unusable_free_index(counts: ArrayLike, order: int) -> IntOrArray:
    """mm/vmstat.c `unusable_free_index()`: thousandths of free memory unusable at `order`.

    1000 if there are no free pages, else
    (free_pages - free_blocks_suitable * 2^order) * 1000 / free_pages (integer division).
    """
    c, order = as_counts(counts), _check_order(order)
    _, free_pages = _totals(c)
    return _out(_unusable(free_pages, c @ SUITABLE[order], np.int64(order)))


def fragmentation_index(counts: ArrayLike, order: int) -> IntOrArray:
    """mm/vmstat.c `__fragmentation_index()`, in thousandths.

    0 with no free blocks; -1000 when a block of `order` is free (the allocation would succeed);
    else 1000 - (1000 + free_pages * 1000 / 2^order) / free_blocks_total, both divisions
    unsigned (floor). Near 0: failure from lack of memory; near 1000: from fragmentation.
    The result is below zero only for a few tiny blocks (one order-(o-1) block gives -500).
    """
    c, order = as_counts(counts), _check_order(order)
    total, free_pages = _totals(c)
    return _out(_fragmentation(total, free_pages, c @ SUITABLE[order], np.int64(order)))


def extfrag_for_order(counts: ArrayLike, order: int) -> IntOrArray:
    """mm/vmstat.c `extfrag_for_order()`: percent of free memory unusable at `order`.

    The unusable index as a percentage (0..100), except that it is 0, not 100, with no free
    pages. Proactive compaction's `fragmentation_score_zone()` uses it at order 9.
    """
    c, order = as_counts(counts), _check_order(order)
    _, free_pages = _totals(c)
    return _out(_extfrag(free_pages, c @ SUITABLE[order], np.int64(order)))


def unusable_index_all(counts: ArrayLike) -> np.ndarray:
    """`unusable_free_index()` for orders 0..10: int64 array [..., MAX_ORDER]."""
    c = as_counts(counts)
    _, free_pages = _totals(c)
    return _unusable(free_pages[..., None], c @ SUITABLE.T, ORDERS)


def fragmentation_index_all(counts: ArrayLike) -> np.ndarray:
    """`__fragmentation_index()` for orders 0..10: int64 array [..., MAX_ORDER]."""
    c = as_counts(counts)
    total, free_pages = _totals(c)
    return _fragmentation(total[..., None], free_pages[..., None], c @ SUITABLE.T, ORDERS)


def largest_free_order(counts: ArrayLike) -> IntOrArray:
    """The highest order with a free block, -1 when nothing is free."""
    c = as_counts(counts)
    return _out(np.where(c > 0, ORDERS, -1).max(axis=-1))


def free_pageblocks(counts: ArrayLike, pageblock_order: int = PAGEBLOCK_ORDER) -> IntOrArray:
    """Whole free pageblocks: sum over o >= pageblock_order of counts[o] * 2^(o - pbo)."""
    c, pbo = as_counts(counts), _check_order(pageblock_order)
    return _out(c @ SUITABLE[pbo])


def free_pages(counts: ArrayLike) -> IntOrArray:
    """Free base pages: sum counts[o] * 2^o (the buddy part of NR_FREE_PAGES)."""
    return _out(_totals(as_counts(counts))[1])


# ---------------------------------------------------------------------------------------------
# debugfs text (mm/vmstat.c extfrag_show_print / unusable_show_print)


def _c_div_mod(value: int) -> tuple[int, int]:
    """C's `value / 1000` and `value % 1000` (truncation toward zero)."""
    quotient = int(value / 1000)
    return quotient, value - quotient * 1000


def _zone_label(key: tuple[int, str] | str) -> tuple[int, str]:
    """(node, zone) from a (node, zone) tuple or a "node/zone" string."""
    if isinstance(key, str):
        node, _, zone = key.partition("/")
        return int(node), zone
    return int(key[0]), str(key[1])


def render_debugfs(by_zone: Mapping[tuple[int, str] | str, ArrayLike], kind: str) -> str:
    """/sys/kernel/debug/extfrag/{extfrag_index,unusable_index} as the kernel prints them.

    `kind` is "extfrag_index" (`%2d.%03d `) or "unusable_index" (`%d.%03d `); one line per
    zone in the mapping's order: `Node %d, zone %8s ` then 11 values, then a newline.
    A fragmentation index of -500 prints as ` 0.-500`, like the kernel.
    """
    if kind == "extfrag_index":
        compute, fmt = fragmentation_index_all, "%2d.%03d "
    elif kind == "unusable_index":
        compute, fmt = unusable_index_all, "%d.%03d "
    else:
        raise ValueError(f"kind must be 'extfrag_index' or 'unusable_index', not {kind!r}")
    lines = []
    for key, counts in by_zone.items():
        node, zone = _zone_label(key)
        values = "".join(fmt % _c_div_mod(int(v)) for v in compute(counts))
        lines.append(f"Node {node}, zone {zone:>8} {values}\n")
    return "".join(lines)
