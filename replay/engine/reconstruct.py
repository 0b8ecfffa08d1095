"""Reconstruct: the kernel's real buddy state, followed event by event, checked against /proc.

The state starts at the start.buddyinfo marker (initial.py), follows every buddy-level event
(follow.py), and is compared with start.buddyinfo, end.buddyinfo and end.pagetypeinfo at every
buddy-level event between each file's begin and end markers: a /proc file is read at one
instant inside its markers, so a zone is exact when one of those points matches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace

import numpy as np

from replay.engine.compaction import new_compaction_tables
from replay.engine.events import EventArrays, event_arrays, marker_positions
from replay.engine.follow import (
    COUNTER_NAMES,
    D_CLAIM_FIRST,
    D_DIRECT_IRQ,
    D_DIRECT_LOOKAHEAD,
    D_DIRECT_ORDER,
    D_DIRECT_UNEXPLAINED,
    INCONSISTENCIES,
    N_COUNTERS,
    FollowLoop,
    free_batched_orders,
    plan_claims,
    plan_free_dispositions,
)
from replay.engine.follow_compaction import K_FREE_MISMATCH, KCOUNTER_NAMES, N_KCOUNTERS
from replay.engine.initial import initial_state_boot, initial_state_from_snapshot
from replay.engine.machine import Machine, machine_from_bundle
from replay.engine.profile import KernelProfile, ProfileChoice, get_profile, trace_profiles
from replay.engine.state import (
    CFG_LOSSY,
    MAX_ORDER,
    MIGRATE_TYPES,
    State,
    buddyinfo,
    copy_state,
    pageblock_counts,
)
from replay.errors import InputError
from replay.trace.result import TraceData
from replay.trace.schema import EV_ZONE_LOCKED, MIGRATETYPE_NAMES


@dataclass
class WindowCheck:
    """A /proc file against the model at every point between its markers, per zone."""

    name: str
    exact_by_zone: dict[str, bool] = field(default_factory=dict)
    l1_by_zone: dict[str, int] = field(default_factory=dict)
    matched_at: dict[str, int | None] = field(default_factory=dict)  # event index or None
    expected: dict[str, list] = field(default_factory=dict)
    reconstructed: dict[str, list] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return bool(self.exact_by_zone) and all(self.exact_by_zone.values())


@dataclass
class Agreement:
    """How often __rmqueue_smallest's head is the block the kernel took."""

    decisions: int
    exact: int
    determined: int
    determined_exact: int
    by_order: dict[int, tuple[int, int]]
    by_migratetype: dict[str, tuple[int, int]]
    by_fallback: dict[str, tuple[int, int]]

    @property
    def rate(self) -> float:
        return self.exact / self.decisions if self.decisions else 1.0

    @property
    def determined_rate(self) -> float:
        return self.determined_exact / self.determined if self.determined else 1.0

    def as_dict(self) -> dict:
        return {
            "decisions": self.decisions, "exact": self.exact, "rate": round(self.rate, 6),
            "determined": self.determined, "determined_exact": self.determined_exact,
            "determined_rate": round(self.determined_rate, 6),
            "by_order": {str(k): {"decisions": d, "exact": e} for k, (d, e) in
                         self.by_order.items()},
            "by_migratetype": {k: {"decisions": d, "exact": e} for k, (d, e) in
                               self.by_migratetype.items()},
            "by_fallback": {k: {"decisions": d, "exact": e} for k, (d, e) in
                            self.by_fallback.items()},
        }


@dataclass
class ReconstructResult:
    machine: Machine
    state: State
    events: EventArrays
    counters: dict[str, int]
    start: WindowCheck | None
    end: WindowCheck | None
    end_pagetypeinfo: WindowCheck | None
    end_pageblocks: WindowCheck | None
    agreement: Agreement
    i_start: int
    info: dict = field(default_factory=dict)
    end_state: State | None = None  # the state at the end.buddyinfo marker
    compaction: dict[str, int] = field(default_factory=dict)  # KCOUNTER_NAMES
    profile: ProfileChoice | None = None  # the kernel rules followed

    @property
    def inconsistencies(self) -> dict[str, int]:
        bad = {COUNTER_NAMES[i]: self.counters[COUNTER_NAMES[i]] for i in INCONSISTENCIES}
        name = KCOUNTER_NAMES[K_FREE_MISMATCH]
        bad[name] = self.compaction.get(name, 0)
        return bad

    @property
    def exact(self) -> bool:
        checks = [c for c in (self.start, self.end) if c is not None]
        return bool(checks) and all(c.exact for c in checks)

    def as_dict(self) -> dict:
        d: dict = {
            "exact": self.exact,
            "l1_by_zone": self.end.l1_by_zone if self.end else {},
            "expected": self.end.expected if self.end else {},
            "reconstructed": self.end.reconstructed if self.end else {},
            "inconsistencies": self.inconsistencies,
            "inconsistent_events": sum(self.inconsistencies.values()),
            "counters": self.counters,
            "compaction": self.compaction,
            "agreement": self.agreement.as_dict(),
            "info": self.info,
        }
        if self.profile is not None:
            d["kernel_profile"] = self.profile.as_dict()
        for name, chk in (("start", self.start), ("end", self.end),
                          ("end_pagetypeinfo", self.end_pagetypeinfo),
                          ("end_pageblocks", self.end_pageblocks)):
            if chk is not None:
                d[f"{name}_check"] = {
                    "exact": chk.exact, "exact_by_zone": chk.exact_by_zone,
                    "l1_by_zone": chk.l1_by_zone, "matched_at_event": chk.matched_at,
                }
        return d


class SampledFollower(ABC):
    """What every follower shares, whether the events are in memory or in a spool's chunks:
    follow a range of events, calling `sampler(st, i)` at each sample point inside it.
    Subclasses set st, sampler and points and give _run(i0, i1)."""

    st: State
    sampler: object
    points: np.ndarray

    def run(self, i0: int, i1: int) -> None:
        """Follow events [i0, i1), sampling at the sample points inside (i0, i1]."""
        if i1 <= i0:
            return
        if self.sampler is None or not len(self.points):
            self._run(i0, i1)
            return
        lo, hi = np.searchsorted(self.points, [i0 + 1, i1 + 1])
        pos = i0
        for p in self.points[lo:hi]:
            self._run(pos, int(p))
            self.sampler(self.st, int(p))
            pos = int(p)
        self._run(pos, i1)

    @abstractmethod
    def _run(self, i0: int, i1: int) -> None:
        """Follow events [i0, i1) without sampling."""


class Follower(SampledFollower):
    """Runs follow_events over index ranges, keeping the per-event agreement arrays."""

    def __init__(self, st: State, e: EventArrays, disp: np.ndarray, sampler=None,
                 points=None) -> None:
        self.sampler = sampler
        self.points = np.asarray(points if points is not None else [], np.int64)
        self.st = st
        self.e = e
        self.disp = disp
        n = len(e)
        self.counters = np.zeros(N_COUNTERS, np.int64)
        self.pred = np.full(n, -2, np.int64)
        self.pred_warm = np.zeros(n, np.uint8)
        self.taken_warm = np.zeros(n, np.uint8)
        self.fallback = np.zeros(n, np.bool_)
        self.cc, self.zc = new_compaction_tables(st.zone_param.shape[0])
        self.kc = np.zeros(N_KCOUNTERS, np.int64)
        self.heads = np.zeros(1 << 12, np.int64)  # free blocks one scanned pageblock can hold
        self.nh = np.zeros(1, np.int64)
        self.carry = np.zeros(1, np.int64)  # a fallback in progress between calls
        self.follow_events = FollowLoop()  # the fast tier until compaction acts

    def _run(self, i0: int, i1: int) -> None:
        if i1 <= i0:
            return
        e = self.e
        self.follow_events(self.st, e.ev, e.pfn, e.order, e.mt, e.cpu, e.refill, e.ford, e.fmt,
                           e.chown, self.disp, i0, i1, self.counters, self.pred, self.pred_warm,
                           self.taken_warm, self.fallback, e.pid, e.irq, e.gfp, e.cidx, e.cev,
                           self.cc, self.zc, self.kc, self.heads, self.nh, 0, self.carry)


def _zone_keys(machine: Machine) -> list[str]:
    return [z.key for z in machine.zones]


def check_window(f: Follower, machine: Machine, name: str, i0: int, i1: int,
                 expected: dict[str, np.ndarray], measure) -> WindowCheck:
    """Follow events [i0, i1), comparing `measure(state)` (per zone) with `expected` at the
    start and after each event; leaves the state at i1."""
    chk = WindowCheck(name)
    keys = _zone_keys(machine)
    best: dict[str, int] = {}
    for i in range(i0, i1 + 1):
        now = measure(f.st)
        for zi, key in enumerate(keys):
            if key not in expected:
                continue
            l1 = int(np.abs(now[zi] - expected[key]).sum())
            if key not in best or l1 < best[key]:
                best[key] = l1
                chk.matched_at[key] = i if l1 == 0 else None
                chk.reconstructed[key] = now[zi].tolist()
        if i < i1:
            f.run(i, i + 1)
    for key in best:
        chk.l1_by_zone[key] = best[key]
        chk.exact_by_zone[key] = best[key] == 0
        chk.expected[key] = np.asarray(expected[key]).tolist()
    return chk


def _buddyinfo_expected(snap_buddyinfo: dict | None) -> dict[str, np.ndarray]:
    if not snap_buddyinfo:
        return {}
    out = {}
    for (node, zname), counts in snap_buddyinfo.items():
        arr = np.zeros(MAX_ORDER, np.int64)
        arr[: min(len(counts), MAX_ORDER)] = counts[:MAX_ORDER]
        out[f"{node}/{zname}"] = arr
    return out


def _pagetype_expected(pti) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    free: dict[str, np.ndarray] = {}
    blocks: dict[str, np.ndarray] = {}
    if pti is None:
        return free, blocks
    for (node, zname), per_type in pti.free.items():
        arr = np.zeros((MIGRATE_TYPES, MAX_ORDER), np.int64)
        for k, v in per_type.items():
            if k in MIGRATETYPE_NAMES:
                arr[MIGRATETYPE_NAMES.index(k), : min(len(v), MAX_ORDER)] = v[:MAX_ORDER]
        free[f"{node}/{zname}"] = arr
    for (node, zname), counts in pti.blocks.items():
        arr = np.zeros(MIGRATE_TYPES, np.int64)
        for k, v in counts.items():
            if k in MIGRATETYPE_NAMES:
                arr[MIGRATETYPE_NAMES.index(k)] = v
        blocks[f"{node}/{zname}"] = arr
    return free, blocks


class AgreementCounts:
    """compute_agreement's sums, added chunk by chunk (the same numbers whatever the chunks)."""

    def __init__(self) -> None:
        self.sums = np.zeros(4, np.int64)  # decisions, exact, determined, determined exact
        self.by_order: dict[int, np.ndarray] = {}
        self.by_mt: dict[int, np.ndarray] = {}
        self.by_fb = np.zeros((2, 2), np.int64)  # [no fallback, fallback] x [decisions, exact]

    def add(self, ev, pfn, order, mt, pred, pred_warm, taken_warm, fallback, lo: int) -> None:
        """Rows from `lo` of one run's per-event arrays."""
        idx = np.flatnonzero((ev == EV_ZONE_LOCKED) & (pred > -2))
        idx = idx[idx >= lo]
        match = pred[idx] == pfn[idx]
        determined = (pred_warm[idx] == 1) & (taken_warm[idx] == 1)
        self.sums += (len(idx), int(match.sum()), int(determined.sum()),
                      int(match[determined].sum()))
        for table, col in ((self.by_order, order[idx]), (self.by_mt, mt[idx])):
            for v in np.unique(col):
                sel = col == v
                acc = table.setdefault(int(v), np.zeros(2, np.int64))
                acc += (int(sel.sum()), int(match[sel].sum()))
        fb = fallback[idx]
        self.by_fb[1] += (int(fb.sum()), int(match[fb].sum()))
        self.by_fb[0] += (int((~fb).sum()), int(match[~fb].sum()))

    def result(self) -> Agreement:
        def mt_name(m: int) -> str:
            return MIGRATETYPE_NAMES[m] if 0 <= m < len(MIGRATETYPE_NAMES) else str(m)

        by_order = {o: (int(v[0]), int(v[1])) for o, v in sorted(self.by_order.items())}
        by_mt = {mt_name(m): (int(v[0]), int(v[1])) for m, v in sorted(self.by_mt.items())}
        by_fb = {"fallback": (int(self.by_fb[1, 0]), int(self.by_fb[1, 1])),
                 "no_fallback": (int(self.by_fb[0, 0]), int(self.by_fb[0, 1]))}
        d, x, det, dx = (int(v) for v in self.sums)
        return Agreement(d, x, det, dx, by_order, by_mt, by_fb)


def compute_agreement(f: Follower, i_from: int) -> Agreement:
    e = f.e
    acc = AgreementCounts()
    acc.add(e.ev, e.pfn, e.order, e.mt, f.pred, f.pred_warm, f.taken_warm, f.fallback, i_from)
    return acc.result()


def bundle_machine(bundle, machine: Machine | None, kernel: str | None = None) -> Machine:
    """The machine of a bundle's start.zoneinfo (read as `kernel` prints it), or the given
    machine description (then following `kernel`'s rules when given)."""
    if machine is not None:
        return replace(machine, kernel=kernel) if kernel is not None else machine
    if bundle is not None and bundle.start.zoneinfo is not None:
        return machine_from_bundle(bundle, "start", kernel)
    if bundle is None:
        raise InputError("a bare trace has no /proc snapshots to size the machine from: give "
                         "--machine (e.g. mem=4G,cpus=8)")
    raise InputError(f"{bundle.path}: no start.zoneinfo: give --machine (e.g. mem=4G,cpus=8)")


@dataclass
class Start:
    """Where a replay starts: the initial state, its event index and the free dispositions."""

    state: State
    i_start: int
    disp: np.ndarray
    marks: dict[str, int]
    info: dict


def prepare_start(e: EventArrays, data: TraceData, bundle, machine: Machine,
                  cpus: int | None = None, trace_profile: KernelProfile | None = None) -> Start:
    """The initial state at the start.buddyinfo marker (or boot state without a snapshot).

    `trace_profile` (default: the machine's) says how the trace's events read: 6.12's
    free_batched orders and claim pairs are planned here."""
    cpus = cpus or max(machine.cpus, int(e.cpu.max()) + 1 if len(e) else 1)
    trace_profile = trace_profile or get_profile(machine.kernel, machine.arch)
    marks = marker_positions(data, e.seq)
    if trace_profile.free_batched_any_order:
        free_batched_orders(e.ev, e.pfn, e.order, e.cpu)
    disp = plan_free_dispositions(e.ev, e.pfn, e.order, e.irq, e.preempt, machine.pageblock_order,
                                  machine.zone_index_array(), e.cpu)
    if trace_profile.extfrag_only_takes:
        plan_claims(e.ev, e.pfn, e.cpu, e.ford, e.chown, disp, machine.pageblock_order)
    direct = np.isin(disp, (D_DIRECT_LOOKAHEAD, D_DIRECT_IRQ, D_DIRECT_ORDER,
                            D_DIRECT_UNEXPLAINED))
    snap = bundle.start if bundle is not None else None
    kpf = snap.kpageflags() if snap is not None else None
    i_start = marks.get("start.buddyinfo begin", 0)
    info: dict = {}
    if kpf is not None and "start.buddyinfo begin" in marks:
        i_kpf_end = marks.get("start.kpageflags end", i_start)
        st, info = initial_state_from_snapshot(machine, kpf, snap.pagetypeinfo, e.ev, e.pfn,
                                               e.order, e.mt, e.fmt, e.ford, direct, i_start,
                                               i_kpf_end, cpus,
                                               bool(trace_profile.list_is_pageblock),
                                               disp == D_CLAIM_FIRST)
        info["initial"] = "start snapshot"
    else:
        i_start = 0
        st = initial_state_boot(machine, cpus)
        info["initial"] = "boot (all memory free, every pageblock Movable)"
    return Start(st, i_start, disp, marks, info)


def reconstruct(data: TraceData, bundle=None, machine: Machine | None = None,
                sampler=None, points=None, kernel: str | None = None) -> ReconstructResult:
    """Follow a trace from its start snapshot (or from boot state) and check it against /proc.

    The kernel's rules are those of the trace's release (nearest profile), or `kernel`'s.
    With a sampler, the state is also sampled at the event indices in `points`."""
    e = event_arrays(data)
    choice = trace_profiles(data, bundle, kernel, machine)
    if choice.what_if:
        choice.warnings.append(f"reconstruct follows {choice.model.name}'s rules on a trace "
                               f"from {choice.release} ({choice.trace.name})")
    machine = bundle_machine(bundle, machine, choice.model.kernel)
    if machine.arch != choice.model.arch:
        machine = replace(machine, arch=choice.model.arch)
    start = prepare_start(e, data, bundle, machine, trace_profile=choice.model)
    st, i_start, disp, marks, info = start.state, start.i_start, start.disp, start.marks, \
        start.info
    if data.stats.lost_events or data.lost.num_rows:
        st.config[CFG_LOSSY] = 1
        info["lossy"] = "the trace lost events: free lists resynchronised on the kernel's choices"
    f = Follower(st, e, disp, sampler, points)
    if sampler is not None:
        sampler(st, i_start)
    checks = follow_and_check(f, machine, bundle, marks, i_start, len(e))
    counters = {name: int(f.counters[i]) for i, name in enumerate(COUNTER_NAMES)}
    compaction = {name: int(f.kc[i]) for i, name in enumerate(KCOUNTER_NAMES)}
    if e.reordered:
        info["reordered_events"] = e.reordered  # cross-CPU clock skew repaired (causal.py)
    return ReconstructResult(machine, f.st, e, counters, *checks[:4],
                             compute_agreement(f, i_start), i_start, info, checks[4],
                             compaction, choice)


def follow_and_check(f, machine: Machine, bundle, marks: dict[str, int], i_start: int,
                     n: int) -> tuple:
    """Follow events [i_start, n) with `f` (a Follower, or one over a spool's chunks), checking
    the start.buddyinfo, end.buddyinfo and end.pagetypeinfo windows on the way; returns
    (start check, end check, end pagetypeinfo check, end pageblocks check, end state)."""
    snap = bundle.start if bundle is not None else None
    start_chk = end_chk = pti_chk = pb_chk = None
    pos = i_start
    if snap is not None and snap.buddyinfo and "start.buddyinfo end" in marks:
        i1 = marks["start.buddyinfo end"]
        start_chk = check_window(f, machine, "start.buddyinfo", pos, i1,
                                 _buddyinfo_expected(snap.buddyinfo), buddyinfo)
        pos = i1
    end = bundle.end if bundle is not None else None
    end_state = None
    if end is not None and end.buddyinfo and "end.buddyinfo begin" in marks:
        b0, b1 = marks["end.buddyinfo begin"], marks.get("end.buddyinfo end", n)
        f.run(pos, b0)
        end_chk = check_window(f, machine, "end.buddyinfo", b0, b1,
                               _buddyinfo_expected(end.buddyinfo), buddyinfo)
        end_state = copy_state(f.st)
        pos = b1
        if end.pagetypeinfo is not None and "end.pagetypeinfo begin" in marks:
            p0, p1 = marks["end.pagetypeinfo begin"], marks.get("end.pagetypeinfo end", n)
            f.run(pos, p0)
            free_exp, blocks_exp = _pagetype_expected(end.pagetypeinfo)
            pti_chk = check_window(f, machine, "end.pagetypeinfo", p0, p1, free_exp,
                                   lambda s: s.fl_len.transpose(0, 2, 1))
            pb_chk = WindowCheck("end.pagetypeinfo blocks")
            now = pageblock_counts(f.st, machine)
            for zi, key in enumerate(_zone_keys(machine)):
                if key in blocks_exp:
                    l1 = int(np.abs(now[zi] - blocks_exp[key]).sum())
                    pb_chk.l1_by_zone[key] = l1
                    pb_chk.exact_by_zone[key] = l1 == 0
                    pb_chk.expected[key] = blocks_exp[key].tolist()
                    pb_chk.reconstructed[key] = now[zi].tolist()
            pos = p1
    f.run(pos, n)
    return start_chk, end_chk, pti_chk, pb_chk, end_state

