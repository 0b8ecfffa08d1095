"""The model's state over time: buddyinfo, pagetypeinfo and pageblock ownership at points.

The same sampler serves the observed (reconstructed) and the simulated state, so the two are
compared on equal terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from replay.engine.events import EventArrays
from replay.engine.machine import Machine
from replay.engine.state import MIGRATE_TYPES, PG_ALLOC, State, pageblock_counts


@dataclass
class Samples:
    """Per sample point: event index, time (ns) and per-zone arrays."""

    zones: list[str]
    index: list[int] = field(default_factory=list)
    ts_ns: list[int] = field(default_factory=list)
    free_blocks: list[np.ndarray] = field(default_factory=list)  # [Z, order]
    free_by_type: list[np.ndarray] = field(default_factory=list)  # [Z, type, order]
    pageblocks: list[np.ndarray] = field(default_factory=list)  # [Z, type]
    mixed_pageblocks: list[np.ndarray] = field(default_factory=list)  # [Z]
    pcp_pages: list[np.ndarray] = field(default_factory=list)  # [Z]

    def stacked(self, name: str) -> np.ndarray:
        return np.stack(getattr(self, name)) if getattr(self, name) else np.zeros((0,))


def mixed_pageblocks(st: State, machine: Machine) -> np.ndarray:
    """Pageblocks per zone holding a block allocated (during the trace) as another type than
    the pageblock's owner."""
    pbo = machine.pageblock_order
    heads = np.flatnonzero(st.pg_state == PG_ALLOC)
    out = np.zeros(len(machine.zones), np.int64)
    if not len(heads):
        return out
    pb = heads >> pbo
    bad = st.pg_mt[heads] != st.pb_mt[pb]
    pbs = np.unique(pb[bad])
    if len(pbs):
        z = st.pg_zone[pbs << pbo]
        z = z[z >= 0]
        out += np.bincount(z.astype(np.int64), minlength=len(out))[: len(out)]
    return out


class Sampler:
    """Callable sampler: `sampler(state, event_index)` appends one sample."""

    def __init__(self, machine: Machine, e: EventArrays) -> None:
        self.machine = machine
        self.e = e
        self.samples = Samples([z.key for z in machine.zones])

    def __call__(self, st: State, index: int) -> None:
        s = self.samples
        s.index.append(int(index))
        i = min(index, len(self.e) - 1)
        s.ts_ns.append(int(self.e.ts[i]) if len(self.e) else 0)
        s.free_blocks.append(st.fl_len.sum(axis=2).copy())
        s.free_by_type.append(st.fl_len.transpose(0, 2, 1)[:, :MIGRATE_TYPES].copy())
        s.pageblocks.append(pageblock_counts(st, self.machine))
        s.mixed_pageblocks.append(mixed_pageblocks(st, self.machine))
        s.pcp_pages.append(st.pcp_count.sum(axis=0).copy())


def sample_points(e: EventArrays, i_start: int, every_events: int | None = None,
                  every_ms: float | None = None, max_samples: int = 400) -> np.ndarray:
    """Event indices at which to sample: every N events or every T ms of trace time."""
    n = len(e)
    if n <= i_start:
        return np.array([n], np.int64)
    if every_ms:
        t0, t1 = e.ts[i_start], e.ts[-1]
        edges = np.arange(t0, t1, int(every_ms * 1e6))[1:]
        pts = np.searchsorted(e.ts, edges)
    else:
        step = every_events or max(1, (n - i_start) // 100)
        pts = np.arange(i_start + step, n, step)
    if len(pts) > max_samples:
        pts = pts[np.linspace(0, len(pts) - 1, max_samples).astype(int)]
    return np.unique(np.append(pts, n)).astype(np.int64)
