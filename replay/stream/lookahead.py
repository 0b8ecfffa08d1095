"""The backward pass: how each free reached the buddy allocator, and the pageblocks' first
evidence, from the spool read last chunk first.

plan_free_dispositions decides a free from the next event of its page, however far ahead;
walking the trace backwards carries that next event per page, so the answer is the same with
memory per page. The pass writes the `disp` column (with the plan's claim marks laid over it)
and returns initial.pageblock_evidence's per-pageblock types.
"""

from __future__ import annotations

import numpy as np

from replay.engine.follow import D_CLAIM_FIRST
from replay.engine.state import MIGRATE_TYPES
from replay.engine.streamplan import (
    IRQ_LOOKBACK,
    dispositions_batch,
    evidence_backward,
    next_kinds_backward,
)
from replay.stream.slots import PfnSlots
from replay.stream.spool import Spool
from replay.trace.schema import EV_ZONE_LOCKED

_COLUMNS = ("ev", "pfn", "order", "irq", "preempt", "cpu", "mt", "fmt", "ford", "claim")


def backward_pass(spool: Spool, slots: PfnSlots, pfn_zone: np.ndarray, pageblock_order: int,
                  n_pageblocks: int, evidence_from: int | None, takes_show_type: bool,
                  chunk: int = 1 << 18) -> np.ndarray | None:
    """Write `disp`; return the pageblock evidence from event `evidence_from` on (None when
    evidence_from is None: no snapshot to build a start state from)."""
    n = spool.n
    nxt = np.full(slots.size, -1, np.int64)
    evidence = np.full(n_pageblocks, -1, np.int64) if evidence_from is not None else None
    pfn_zone = np.asarray(pfn_zone, np.int64)
    starts = list(range(0, n, chunk))
    for a in reversed(starts):
        b = min(a + chunk, n)
        lo = max(a - (IRQ_LOOKBACK - 1), 0)
        c = spool.read_many(_COLUMNS, lo, b)
        k = a - lo
        slot = slots.slots(c["pfn"][k:])
        if slots.size > len(nxt):
            nxt = np.concatenate([nxt, np.full(slots.size - len(nxt), -1, np.int64)])
        nev = np.full(b - lo, -1, np.int64)
        next_kinds_backward(c["ev"][k:], slot, nxt, nev[k:])
        disp = np.zeros(b - lo, np.int64)
        dispositions_batch(c["ev"], c["pfn"], c["order"], c["irq"], c["preempt"], c["cpu"], nev,
                           pfn_zone, pageblock_order, k, disp)
        claim = c["claim"][k:]
        mine = disp[k:]
        marked = claim > 0
        mine[marked] = claim[marked]
        spool.write_at("disp", a, mine.astype(np.int8))
        if evidence is not None and b > evidence_from:
            ev = c["ev"][k:]
            takes = (ev == EV_ZONE_LOCKED) & (claim != D_CLAIM_FIRST) if takes_show_type \
                else np.zeros(len(ev), bool)
            evidence_backward(ev, c["pfn"][k:], c["mt"][k:], c["fmt"][k:], c["ford"][k:],
                              takes, max(evidence_from - a, 0), pageblock_order, evidence)
    if evidence is not None:
        evidence[(evidence < 0) | (evidence >= MIGRATE_TYPES)] = -1
        return evidence.astype(np.int8)
    return None
