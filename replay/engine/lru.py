"""The model's LRU: which allocated pages reclaim may take and compaction may migrate.

An LRU page is an order-0 page of a movable allocation (`__GFP_MOVABLE`: anonymous and page
cache memory; slab, page tables and compound pages never), or a page start.kpageflags showed
on an LRU list. Reclaim takes the oldest first: additions go to the tail of a ring, and an
entry whose page has since left the LRU (freed, migrated, re-added) is stale and skipped.
"""

from __future__ import annotations

from replay.engine.jit import njit
from replay.engine.slow_state import SC_LRU_HEAD, SC_LRU_TAIL, SC_STAMP


@njit(cache=True, _nrt=False)
def lru_add(st, sp, pfn):
    """folio_add_lru(): the page becomes the youngest on its zone's LRU."""
    if sp.pg_lru[pfn] == 0:
        sp.zone_lru[st.pg_zone[pfn]] += 1
    sp.pg_lru[pfn] = 1
    stamp = sp.cfg[SC_STAMP] + 1
    sp.cfg[SC_STAMP] = stamp
    sp.pg_age[pfn] = stamp
    ring = sp.lru_pfn.shape[0]
    tail = sp.cfg[SC_LRU_TAIL]
    if tail - sp.cfg[SC_LRU_HEAD] >= ring:
        sp.cfg[SC_LRU_HEAD] += 1  # the ring is full of entries: forget the oldest
    sp.lru_pfn[tail % ring] = pfn
    sp.lru_stamp[tail % ring] = stamp
    sp.cfg[SC_LRU_TAIL] = tail + 1


@njit(cache=True, _nrt=False)
def lru_del(st, sp, pfn):
    """The page leaves the LRU (freed): its ring entry goes stale."""
    if sp.pg_lru[pfn] != 0:
        sp.pg_lru[pfn] = 0
        sp.zone_lru[st.pg_zone[pfn]] -= 1


@njit(cache=True, _nrt=False)
def lru_oldest(st, sp, highest):
    """Pop the oldest LRU page in a zone of type <= highest (-1: none). Pages of higher zones
    are rotated to the tail, as isolate_lru_folios() skips them."""
    ring = sp.lru_pfn.shape[0]
    rotations = sp.cfg[SC_LRU_TAIL] - sp.cfg[SC_LRU_HEAD]
    while sp.cfg[SC_LRU_HEAD] < sp.cfg[SC_LRU_TAIL]:
        k = sp.cfg[SC_LRU_HEAD] % ring
        pfn = sp.lru_pfn[k]
        stamp = sp.lru_stamp[k]
        sp.cfg[SC_LRU_HEAD] += 1
        if sp.pg_lru[pfn] != 1 or sp.pg_age[pfn] != stamp:
            continue
        if st.zone_type[st.pg_zone[pfn]] > highest:
            rotations -= 1
            if rotations < 0:
                return -1
            lru_add(st, sp, pfn)
            continue
        return pfn
    return -1


@njit(cache=True, _nrt=False)
def lru_add_many(st, sp, pfns):
    """The LRU pages a snapshot shows, oldest first."""
    for k in range(pfns.shape[0]):
        lru_add(st, sp, pfns[k])
