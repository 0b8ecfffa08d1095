"""Simulate: the trace's requests through the model, which makes every decision itself.

Each traced mm_page_alloc becomes an allocation (order, migratetype, gfp, CPU) and each traced
free frees the model's page standing for the traced pfn (a page allocated before the trace
frees that same pfn). The model picks its own pfns and emits its own events in the ingest
schema. The buddy-level events of the trace (zone_locked, pcpu_drain, extfrag) are not inputs:
they are what the model is compared against.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from replay.engine.buddy import find_free_block
from replay.engine.events import EventArrays, dictionary_codes
from replay.engine.follow import (
    plan_free_dispositions,
)
from replay.engine.jit import njit
from replay.engine.machine import Machine, recompute_pcp, recompute_watermarks
from replay.engine.policy import (
    FALLBACK_POLICIES,
    S_ALLOCS,
    S_DOUBLEFREE,
    S_FAIL,
    S_FREES,
    SIM_COUNTER_NAMES,
    Emitter,
    build_zonelists,
    emit,
    free_the_page,
    new_emitter,
)
from replay.engine.profile import (
    CFG_FREE_HIGH_BATCH,
    CFG_VMSTAT_MS,
    KernelProfile,
    ProfileChoice,
    apply_profile,
    get_profile,
    trace_profiles,
)
from replay.engine.simulate_loop import DONE, simulate_requests, simulate_requests_fast, stop_at
from replay.engine.slow_state import (
    SC_COMPACTION,
    SC_EXTFRAG_THRESHOLD,
    SC_NFAIL,
    SC_PROACTIVENESS,
    SC_RECLAIM,
    THP_DEFRAG_MODES,
    SlowState,
    ZoneArrays,
    kswapd_node,
    new_carry,
    new_slow_state,
    reclaim_evidence,
    slow_state_for,
    vm_counters,
)
from replay.engine.slowpath import __alloc_pages
from replay.engine.state import (
    CFG_FALLBACK_POLICY,
    CFG_MOBILITY,
    PCPF_FREE_HIGH_BATCH,
    PG_ALLOC,
    PG_PCP,
    State,
    copy_state,
)
from replay.errors import SettingsError
from replay.trace.schema import EV_ALLOC, EV_FREE, EV_FREE_BATCHED, EVENT_NAMES

SETTINGS_HELP = {
    "pageblock_order": "pageblock order (default 9; 1..max_order-1)",
    "max_order": "MAX_ORDER, exclusive (default 11; pageblock_order+1..11)",
    "pcp_batch": "pcp batch for every zone (default: the kernel's zone_batchsize)",
    "pcp_high": "pcp high for every zone (default: the kernel's zone_highsize)",
    "percpu_pagelist_high_fraction": "vm.percpu_pagelist_high_fraction (0 or >= 8)",
    "min_free_kbytes": "vm.min_free_kbytes (watermarks and pcp sizes follow)",
    "watermark_scale_factor": "vm.watermark_scale_factor (1..3000)",
    "watermark_boost_factor": "vm.watermark_boost_factor (0 disables boosting)",
    "mobility_grouping": "on/off: group pages by mobility (off: everything is Unmovable)",
    "cpus": "CPUs in the model (the trace's CPU n runs on n mod cpus)",
    "fallback_policy": "linux-6.1 | no-whole-block-steal | no-fallback-below-pageblock",
    "kernel": "6.1 | 6.12: whose page-allocator rules the model follows (default: the trace's)",
    "vmstat_interval_ms": "6.12: ms between a CPU's vmstat_update (pcp->high decay); 0: never",
    "vmstat_phase_ms": "6.12: where in the interval vmstat_update runs when the trace shows "
    "none (default 0: whole seconds of the trace clock)",
    "compaction": "on/off: direct compaction, kcompactd and proactive compaction in the model",
    "compaction_proactiveness": "vm.compaction_proactiveness (0..100; default: the bundle's)",
    "extfrag_threshold": "vm.extfrag_threshold (0..1000; default: the bundle's, else 500)",
    "thp_defrag": "THP fault gfp: always | defer | defer+madvise | madvise | never (default: "
    "the bundle's)",
    "reclaim": "on/off: the model reclaims LRU pages where it runs shorter than the kernel",
}


@dataclass
class Settings:
    """What-if settings (`--set KEY=VALUE`); None means the kernel's (or the trace's) value."""

    values: dict[str, object] = field(default_factory=dict)

    @staticmethod
    def parse(items: list[str] | None) -> Settings:
        vals: dict[str, object] = {}
        for item in items or []:
            if "=" not in item:
                raise SettingsError(f"--set {item!r}: expected KEY=VALUE")
            key, raw = (x.strip() for x in item.split("=", 1))
            if key not in SETTINGS_HELP:
                raise SettingsError(f"--set {key}: unknown setting; known: "
                                    + ", ".join(sorted(SETTINGS_HELP)))
            vals[key] = _parse_value(key, raw)
        return Settings(vals)

    def get(self, key: str, default=None):
        return self.values.get(key, default)

    def as_dict(self) -> dict:
        return dict(self.values)


def _parse_value(key: str, raw: str) -> object:
    if key == "kernel":
        from replay.engine.profile import KERNELS

        if raw not in KERNELS:
            raise SettingsError(f"--set kernel={raw}: choose one of {', '.join(KERNELS)}")
        return raw
    if key == "fallback_policy":
        if raw not in FALLBACK_POLICIES:
            raise SettingsError(f"--set fallback_policy={raw}: choose one of "
                                + ", ".join(FALLBACK_POLICIES))
        return raw
    if key == "thp_defrag":
        if raw not in THP_DEFRAG_MODES:
            raise SettingsError(f"--set thp_defrag={raw}: choose one of "
                                + ", ".join(THP_DEFRAG_MODES))
        return raw
    if key in ("mobility_grouping", "compaction", "reclaim"):
        low = raw.lower()
        if low in ("on", "1", "true", "yes"):
            return True
        if low in ("off", "0", "false", "no"):
            return False
        raise SettingsError(f"--set {key}={raw}: use on or off")
    try:
        v = int(raw)
    except ValueError:
        raise SettingsError(f"--set {key}={raw}: not a whole number") from None
    limits = {"pageblock_order": (1, 10), "max_order": (2, 11), "pcp_batch": (1, 1 << 16),
              "pcp_high": (0, 1 << 24), "percpu_pagelist_high_fraction": (0, 1 << 20),
              "min_free_kbytes": (128, 1 << 22), "watermark_scale_factor": (1, 3000),
              "watermark_boost_factor": (0, 1 << 20), "cpus": (1, 4096),
              "vmstat_interval_ms": (0, 1 << 20), "vmstat_phase_ms": (0, 1 << 20),
              "compaction_proactiveness": (0, 100), "extfrag_threshold": (0, 1000)}
    lo, hi = limits[key]
    if not lo <= v <= hi:
        raise SettingsError(f"--set {key}={v}: must be between {lo} and {hi}")
    if key == "percpu_pagelist_high_fraction" and 0 < v < 8:
        raise SettingsError("--set percpu_pagelist_high_fraction: 0 or at least 8 (the sysctl's"
                            " minimum)")
    return v


def apply_settings(machine: Machine, s: Settings) -> Machine:
    """The machine under what-if settings (watermarks and pcp sizes follow the kernel's
    formulas when their inputs change)."""
    m = machine
    if s.get("kernel") is not None and s.get("kernel") != m.kernel:
        m = replace(m, kernel=str(s.get("kernel")))
    pbo = s.get("pageblock_order")
    max_order = s.get("max_order")
    if pbo is not None or max_order is not None:
        pbo = pbo if pbo is not None else m.pageblock_order
        max_order = max_order if max_order is not None else m.max_order
        if pbo >= max_order:
            raise SettingsError(f"pageblock_order ({pbo}) must be below max_order ({max_order})")
        m = replace(m, pageblock_order=pbo, max_order=max_order)
    if s.get("min_free_kbytes") is not None or s.get("watermark_scale_factor") is not None:
        m = recompute_watermarks(m, min_free_kbytes=s.get("min_free_kbytes"),
                                 watermark_scale_factor=s.get("watermark_scale_factor"))
    if s.get("cpus") is not None:
        from replay.engine.machine import even_cpu_to_node

        cpus = int(s.get("cpus"))
        m = replace(m, cpus=cpus, cpu_to_node=even_cpu_to_node(cpus, m.nodes))
        m = recompute_pcp(m)
    if any(s.get(k) is not None for k in ("pcp_batch", "pcp_high",
                                           "percpu_pagelist_high_fraction")):
        m = recompute_pcp(m, pcp_batch=s.get("pcp_batch"), pcp_high=s.get("pcp_high"),
                          high_fraction=s.get("percpu_pagelist_high_fraction"))
    if s.get("watermark_boost_factor") is not None:
        m = replace(m, watermark_boost_factor=int(s.get("watermark_boost_factor")))
    if s.get("mobility_grouping") is not None:
        m = replace(m, mobility_grouping=bool(s.get("mobility_grouping")))
    return m


def retype_for_pageblock_order(st_pb: np.ndarray, old_pbo: int, new_pbo: int,
                               npfn: int) -> np.ndarray:
    """Pageblock types carried over to another pageblock_order (each new pageblock takes the
    type of the old one holding its first page)."""
    n_new = (npfn >> new_pbo) + 1
    first_pfn = np.arange(n_new, dtype=np.int64) << new_pbo
    return st_pb[np.minimum(first_pfn >> old_pbo, len(st_pb) - 1)].copy()


@dataclass
class SimulateResult:
    machine: Machine
    settings: Settings
    state: State
    counters: dict[str, int]
    events: pa.Table  # simulated events, ingest schema
    emitted: Emitter
    n_emitted: int
    samples: object  # sampling.Samples: metrics over time
    i_start: int = 0  # the trace event the simulation started from
    profile: object = None  # profile.ProfileChoice: the rules each side follows
    slow: SlowState | None = None  # the slow path's state at the end (failures, kswapd...)
    recorded_vm: dict = field(default_factory=dict)  # the traced machine's slow-path sysctls
    event_ts: np.ndarray | None = None  # the requests' trace times (slow.fail_log indexes them)


def cpu_mapping(machine: Machine, trace_cpus: int) -> tuple[np.ndarray, np.ndarray]:
    cpus = max(machine.cpus, 1)
    cpu_map = (np.arange(max(trace_cpus, 1)) % cpus).astype(np.int64)
    cpu_node = np.array([machine.cpu_to_node[c] if c < len(machine.cpu_to_node) else 0
                         for c in range(cpus)], np.int64)
    return cpu_map, cpu_node


@dataclass
class VmstatEvidence:
    """What vmstat_schedule needs of the trace: the first and last times of the replayed part,
    and the time and (trace) CPU of each vmstat_update run the trace shows."""

    t0: int
    t1: int
    ts: np.ndarray
    cpu: np.ndarray
    empty: bool = False  # nothing to replay


def vmstat_evidence_of(e: EventArrays, i_start: int,
                       evidence: np.ndarray | None) -> VmstatEvidence:
    if i_start >= len(e):
        return VmstatEvidence(0, 0, np.zeros(0, np.int64), np.zeros(0, np.int64), True)
    idx = np.asarray(evidence if evidence is not None else [], np.int64)
    return VmstatEvidence(int(e.ts[i_start]), int(e.ts[-1]), e.ts[idx], e.cpu[idx])


class SimulationRun:
    """run_simulation's loop, fed one chunk of the trace at a time (EventArrays holding events
    [base, base + len) of the trace; the whole trace is one chunk). Request indices in the
    emitted events (`req`) and the failure log are trace indices."""

    def __init__(self, st: State, machine: Machine, settings: Settings, i_start: int,  # noqa: PLR0913
                 trace_cpus: int, vm: VmstatEvidence, sp: SlowState | None = None,
                 compact_memory: np.ndarray | None = None) -> None:
        self.st = st
        self.machine = machine
        st.config[CFG_MOBILITY] = int(machine.mobility_grouping)
        st.config[CFG_FALLBACK_POLICY] = FALLBACK_POLICIES[settings.get("fallback_policy",
                                                                        "linux-6.1")]
        if st.config[CFG_VMSTAT_MS] and settings.get("vmstat_interval_ms") is not None:
            st.config[CFG_VMSTAT_MS] = int(settings.get("vmstat_interval_ms"))
        if sp is None:
            sp = slow_state_for(st, machine.nodes)
        apply_slow_settings(sp, settings)
        self.sp = sp
        self.cpu_map, self.cpu_node = cpu_mapping(machine, trace_cpus)
        self.vm_t, self.vm_cpu = vmstat_schedule_from(vm, int(st.config[CFG_VMSTAT_MS]),
                                                      self.cpu_map,
                                                      int(settings.get("vmstat_phase_ms", 0)))
        self.vm_pos = np.zeros(1, np.int64)
        # trace indices of compact_memory writes (compact_memory_writes)
        self.cm_idx = compact_memory if compact_memory is not None else np.zeros(0, np.int64)
        self.cm_pos = np.zeros(1, np.int64)
        self.counters = np.zeros(len(SIM_COUNTER_NAMES), np.int64)
        self.zonelists, self.zl_len = build_zonelists(st.zone_node, st.zone_type, machine.nodes)
        max_high = int(max(st.pcp_high.max(), st.pcp_high_max.max())) if st.pcp_high.size else 0
        # room a compaction run may need (its migrations and drains); the buffer is not touched
        # beyond what is written, so the headroom costs address space only
        self.headroom = 4 * max_high + 20000 + 3 * st.pg_state.shape[0]
        self.pos = i_start
        self.slow_tier = False  # simulate_requests_fast until the model needs the slow path
        self.before_slow_tier = None  # called once, before the whole loop first runs

    def feed(self, e: EventArrays, base: int, disp: np.ndarray, gfp: np.ndarray, i1: int,
             points=(), sampler=None, capacity: int = 0) -> Emitter:
        """Requests from where the last call stopped to trace index i1 (inside this chunk),
        sampling at each of `points` on the way; returns the events emitted."""
        st, sp = self.st, self.sp
        out = new_emitter(max(capacity, 1 << 16))
        nfail = int(sp.cfg[SC_NFAIL])
        cm_local = self.cm_idx - base  # the kernel compares them with chunk rows
        stops = [int(p) for p in points if self.pos < p < i1] + [i1]
        for nxt in stops:
            if nxt <= self.pos:
                continue
            need = int(out.n[0]) + (nxt - self.pos) * 4 + self.headroom
            if need > len(out.ev):
                out = _grow(out, max(need, 2 * len(out.ev)))
            i, slow_at = self.pos - base, -1
            while True:
                loop = simulate_requests if self.slow_tier else simulate_requests_fast
                code = loop(st, sp, e.ev, e.pfn, e.order, e.mt, e.cpu, gfp, disp, e.ts, i,
                            nxt - base, self.cpu_map, self.cpu_node,
                            bool(self.machine.mobility_grouping), out, self.counters,
                            self.zonelists, self.zl_len, self.vm_t, self.vm_cpu, self.vm_pos,
                            cm_local, self.cm_pos, slow_at)
                if code == DONE:
                    break
                # the model enters the slow path: from here on, the whole loop
                if self.before_slow_tier is not None:
                    self.before_slow_tier()
                self.slow_tier = True
                i, in_slowpath = stop_at(code)
                slow_at = i if in_slowpath else -1
            if out.n[1]:
                raise RuntimeError("simulated event buffer overflowed")
            self.pos = nxt
            if sampler is not None and (nxt != i1 or nxt in points):
                sampler(st, nxt)
        if base:
            n = int(out.n[0])
            out.req[:n] += base
            top = min(int(sp.cfg[SC_NFAIL]), sp.fail_log.shape[0])
            sp.fail_log[nfail:top, 0] += base
        return out

    def result(self) -> dict:
        result = {name: int(self.counters[i]) for i, name in enumerate(SIM_COUNTER_NAMES)}
        result.update(vm_counters(self.sp))
        return result


def run_simulation(st: State, machine: Machine, settings: Settings, e: EventArrays,  # noqa: PLR0913
                   i_start: int, disp: np.ndarray | None = None,
                   sample_points=None, sampler=None,
                   vmstat_evidence: np.ndarray | None = None,
                   sp: SlowState | None = None,
                   gfp: np.ndarray | None = None) -> tuple[dict, Emitter]:
    """Run the model over the trace's requests from i_start; returns counters (the page
    allocator's, then the slow path's under their vmstat names) and events."""
    if disp is None:
        disp = plan_free_dispositions(e.ev, e.pfn, e.order, e.irq, e.preempt,
                                      machine.pageblock_order, machine.zone_index_array(), e.cpu)
    gfp = e.gfp if gfp is None else gfp
    trace_cpus = int(e.cpu.max()) + 1 if len(e) else 1
    run = SimulationRun(st, machine, settings, i_start, trace_cpus,
                        vmstat_evidence_of(e, i_start, vmstat_evidence), sp,
                        compact_memory_writes(e, i_start))
    n_req = int(np.count_nonzero(np.isin(e.ev[i_start:], (EV_ALLOC, EV_FREE, EV_FREE_BATCHED))))
    points = list(sample_points) if sample_points is not None else [len(e)]
    if sampler is not None:
        sampler(st, i_start)
    last = max([int(p) for p in points] + [i_start])
    out = run.feed(e, 0, disp, gfp, last, points, sampler, max(1 << 16, n_req * 3))
    return run.result(), out


def compact_memory_writes(e: EventArrays, i_start: int) -> np.ndarray:
    """The events at which the trace shows a compact_memory write: the first
    mm_compaction_begin of a run of them by a task that is neither kcompactd nor kswapd nor
    compacting for its own allocation (no mm_compaction_try_to_compact_pages since its last
    mm_page_alloc)."""
    from replay.engine.events import CE_TASK, TASK_OTHER
    from replay.trace.schema import EV_COMPACT_BEGIN, EV_TRY_TO_COMPACT

    begins = np.flatnonzero(e.ev[i_start:] == EV_COMPACT_BEGIN) + i_start
    if not len(begins):
        return np.zeros(0, np.int64)
    marks = np.flatnonzero(np.isin(e.ev[i_start:], (EV_ALLOC, EV_TRY_TO_COMPACT))) + i_start
    last: dict[int, int] = {}  # pid -> the event code of its last alloc / try_to_compact
    out = []
    j = 0
    open_run: dict[int, bool] = {}
    for i in begins:
        while j < len(marks) and marks[j] < i:
            k = marks[j]
            last[int(e.pid[k])] = int(e.ev[k])
            if e.ev[k] == EV_ALLOC:  # the task did something else: a later begin is new
                open_run.pop(int(e.pid[k]), None)
            j += 1
        pid = int(e.pid[i])
        if e.cev[e.cidx[i], CE_TASK] != TASK_OTHER or last.get(pid) == EV_TRY_TO_COMPACT:
            continue
        if not open_run.get(pid):
            out.append(int(i))
            open_run[pid] = True
    return np.asarray(out, np.int64)


def apply_slow_settings(sp: SlowState, settings: Settings) -> None:
    """The what-if sysctls of the slow path (the bundle's values are set by the caller)."""
    if settings.get("compaction") is not None:
        sp.cfg[SC_COMPACTION] = int(bool(settings.get("compaction")))
    if settings.get("reclaim") is not None:
        sp.cfg[SC_RECLAIM] = int(bool(settings.get("reclaim")))
    if settings.get("compaction_proactiveness") is not None:
        sp.cfg[SC_PROACTIVENESS] = int(settings.get("compaction_proactiveness"))
    if settings.get("extfrag_threshold") is not None:
        sp.cfg[SC_EXTFRAG_THRESHOLD] = int(settings.get("extfrag_threshold"))


VMSTAT_CPU_SKEW_NS = 12_000_000  # round_jiffies_common(): 3 jiffies per CPU at HZ=250


def vmstat_runs(data, e: EventArrays, i_start: int) -> np.ndarray:
    """Indices of the trace's pcpu_drain runs made by a kworker (vmstat_update's
    decay_pcp_high or drain_zone_pages): the instants a CPU's vmstat_update is known to run."""
    from replay.trace.schema import EV_PCPU_DRAIN

    idx = np.flatnonzero(e.ev[i_start:] == EV_PCPU_DRAIN) + i_start
    if not len(idx) or "comm" not in data.events.column_names:
        return np.zeros(0, np.int64)
    comm = data.events.column("comm").take(idx).to_pylist()
    kw = np.array([c is not None and c.startswith("kworker/") for c in comm], bool)
    idx = idx[kw]
    if not len(idx):
        return idx
    # a run: the first of consecutive kworker drains on a CPU (no other event between)
    starts = []
    last = {}
    for i in idx:
        c = int(e.cpu[i])
        j = last.get(c)
        if j is None or np.any((e.cpu[j + 1:i] == c) & (e.ev[j + 1:i] != EV_PCPU_DRAIN)):
            starts.append(i)
        last[c] = i
    return np.asarray(starts, np.int64)


def kswapd_runs_in(data, e: EventArrays, i_start: int, machine: Machine) -> np.ndarray:
    """The spans of the replayed part in which the trace shows reclaim active
    (slow_state.reclaim_evidence: kswapd's own events, drains at the 4-batch cap)."""
    if i_start >= len(e):
        return np.zeros((0, 3), np.int64)
    node = np.full(len(e) - i_start, -1, np.int64)
    if "comm" in data.events.column_names:
        node = dictionary_codes(data.events.column("comm").slice(i_start), kswapd_node)
    s = slice(i_start, None)
    return reclaim_evidence(node, e.ev[s], e.cpu[s], e.pfn[s], e.order[s], e.ts[s],
                            ZoneArrays.of(machine), new_carry(), True)


def vmstat_schedule(e: EventArrays, i_start: int, interval_ms: int, cpu_map: np.ndarray,
                    evidence: np.ndarray | None = None,
                    phase_ms: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """vmstat_schedule_from with the evidence read off the trace's arrays."""
    return vmstat_schedule_from(vmstat_evidence_of(e, i_start, evidence), interval_ms,
                                cpu_map, phase_ms)


def vmstat_schedule_from(vm: VmstatEvidence, interval_ms: int, cpu_map: np.ndarray,
                         phase_ms: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The instants of each CPU's vmstat_update over the replayed part of the trace, in time
    order: every interval (round_jiffies_relative(HZ) re-arms it), CPU c 3·c jiffies before
    the whole second (round_jiffies_common's skew). Where the trace shows a CPU's
    vmstat_update (`vm.ts`/`vm.cpu`: kworker drain runs) the schedule runs through those
    instants; CPUs without one take the phase the others show; with none at all, `phase_ms`
    past whole seconds of the trace clock (the true phase is not in the trace: docs/model.md)."""
    if interval_ms <= 0 or vm.empty:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    iv = interval_ms * 1_000_000
    t0, t1 = vm.t0, vm.t1
    ncpu = int(cpu_map.max()) + 1 if len(cpu_map) else 1
    ev_t = [[] for _ in range(ncpu)]
    for tc, tt in zip(vm.cpu, vm.ts, strict=True):
        c = int(cpu_map[tc]) if tc < len(cpu_map) else -1
        if 0 <= c < ncpu:
            ev_t[c].append(int(tt))
    skew = [c * VMSTAT_CPU_SKEW_NS for c in range(ncpu)]
    phases = [(t[0] + skew[c]) % iv for c, t in enumerate(ev_t) if t]
    if phases:  # the circular mean of the phases the evidence shows
        ang = np.asarray(phases, float) / iv * 2 * np.pi
        phase = int((np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()) / (2 * np.pi)) % 1 * iv)
    else:
        phase = (phase_ms * 1_000_000) % iv
    times, cpus = [], []
    for c in range(ncpu):
        # the first instant after t0 with (t + skew) at the phase
        anchors = sorted(ev_t[c]) or [((t0 + skew[c] - phase) // iv + 1) * iv + phase - skew[c]]
        t = anchors[0]
        while t - iv > t0:
            t -= iv
        k = 0
        while t <= t1:
            while k < len(anchors) and anchors[k] <= t + iv // 2:
                t = anchors[k]
                k += 1
            if t > t0:
                times.append(t)
                cpus.append(c)
            t += iv
    order = np.argsort(np.asarray(times, np.int64), kind="stable")
    return np.asarray(times, np.int64)[order], np.asarray(cpus, np.int64)[order]


def _grow(out: Emitter, capacity: int) -> Emitter:
    grown = new_emitter(capacity)
    n = int(out.n[0])
    for a, b in zip(grown[:-1], out[:-1], strict=True):
        a[:n] = b[:n]
    grown.n[0] = n
    return grown


def emitted_table(out: Emitter, e: EventArrays, pageblock_order: int = 9,
                  seq0: int = 0) -> pa.Table:
    """Simulated events as an events table (seq = emission order, from seq0 + 1; time, pid from
    the request, `out.req` indexing `e`)."""
    from replay.trace.schema import EVENTS_SCHEMA, EXTRA_COLUMNS, null_columns

    n = int(out.n[0])
    req = out.req[:n]
    ts = e.ts[req] if n else np.zeros(0, np.int64)
    pid = e.pid[req] if n else np.zeros(0, np.int64)
    evc = out.ev[:n]
    pfn = out.pfn[:n]
    failed = (evc == EV_ALLOC) & (pfn < 0)

    def opt(a, typ):
        return pa.array(a, typ, mask=a < 0)

    gfp = np.where(evc == EV_ALLOC, e.gfp[req] if n else 0, -1)
    cols = [
        pa.array(np.arange(seq0 + 1, seq0 + n + 1), pa.int64()), pa.array(ts, pa.int64()),
        pa.array(out.cpu[:n], pa.int16()), pa.array(pid, pa.int32()),
        pa.nulls(n, pa.int32()),
        pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string())),
        pa.array(np.zeros(n, np.uint8)), pa.nulls(n, pa.uint8()), pa.nulls(n, pa.uint8()),
        pa.DictionaryArray.from_arrays(pa.array(evc.astype(np.int32)),
                                       pa.array(EVENT_NAMES, pa.string())),
        pa.array(np.maximum(pfn, 0).astype(np.uint64), pa.uint64(), mask=pfn < 0),
        pa.array(failed), opt(out.order[:n], pa.int8()), opt(out.mt[:n], pa.int8()),
        pa.array(gfp, pa.uint32(), mask=gfp < 0),
        pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string())),
        opt(out.refill[:n], pa.int8()), opt(out.ford[:n], pa.int8()),
        pa.array(np.where(evc == 5, pageblock_order, -1), pa.int8(), mask=evc != 5),
        opt(out.fmt[:n], pa.int8()),
        pa.array(np.where(evc == 5, (out.ford[:n] < pageblock_order).astype(np.int8), -1),
                 pa.int8(),
                 mask=evc != 5),
        opt(out.chown[:n], pa.int8()),
        *null_columns(EXTRA_COLUMNS, n),
    ]
    return pa.Table.from_arrays(cols, schema=EVENTS_SCHEMA)


def transform_state(st: State, base: Machine, sim: Machine) -> State:
    """Carry a state built for the bundle's machine over to the what-if machine: pageblock
    types to another pageblock_order, free blocks split below a smaller max_order, and the
    what-if watermarks and pcp sizes."""
    from replay.engine.initial import build_free_lists
    from replay.engine.state import CFG_MAX_ORDER, CFG_PAGEBLOCK_ORDER, MAX_ORDER, NIL, PG_BUDDY

    if sim.pageblock_order != base.pageblock_order:
        pb = retype_for_pageblock_order(st.pb_mt, base.pageblock_order, sim.pageblock_order,
                                        st.pg_zone.shape[0])
        st = st._replace(pb_mt=pb)
        st.config[CFG_PAGEBLOCK_ORDER] = sim.pageblock_order
    if sim.max_order < base.max_order:
        heads = np.flatnonzero(st.pg_state == PG_BUDDY)
        orders = st.pg_order[heads].astype(np.int64)
        types = st.pg_mt[heads].astype(np.int64)
        st.pg_state[heads] = 0
        st.fl_head[:] = NIL
        st.fl_tail[:] = NIL
        st.fl_len[:] = 0
        st.nr_free_pages[:] = 0
        new_heads = []
        for o in range(MAX_ORDER):
            sel = orders == o
            h, t = heads[sel], types[sel]
            if o >= sim.max_order:
                k = 1 << (o - sim.max_order + 1)
                h = (h[:, None] + (np.arange(k) << (sim.max_order - 1))[None, :]).ravel()
                t = np.repeat(t, k)
                o = sim.max_order - 1
            new_heads.append((o, h, t))
        per_order_h = [np.empty(0, np.int64)] * MAX_ORDER
        per_order_t = [np.empty(0, np.int64)] * MAX_ORDER
        for o, h, t in new_heads:
            per_order_h[o] = np.concatenate([per_order_h[o], h])
            per_order_t[o] = np.concatenate([per_order_t[o], t])
        build_free_lists(st, per_order_h, per_order_t)
        st.config[CFG_MAX_ORDER] = sim.max_order
    profile = get_profile(sim.kernel, sim.arch)
    apply_profile(st.config, profile)
    for i, z in enumerate(sim.zones):
        st.zone_param[i, 2:5] = (z.wmark_min, z.wmark_low, z.wmark_high)
        st.pcp_high[:, i] = z.pcp_high
        st.pcp_high_min[:, i] = z.pcp_high
        st.pcp_high_max[:, i] = max(z.pcp_high_max, z.pcp_high) if profile.pcp_high_tuning \
            else z.pcp_high
        st.pcp_batch[:, i] = max(z.pcp_batch, 1)
    st.pcp_flags[:] = PCPF_FREE_HIGH_BATCH if st.config[CFG_FREE_HIGH_BATCH] else 0
    return st


def simulation_machines(data, bundle, settings: Settings, machine: Machine | None
                        ) -> tuple[ProfileChoice, Machine, Machine, Machine]:
    """(the rules each side follows, the traced machine, the simulated machine, the machine
    the start state is built on: the simulated one at the traced pageblock and max order)."""
    from replay.engine.reconstruct import bundle_machine

    choice = trace_profiles(data, bundle, settings.get("kernel"), machine)
    base = bundle_machine(bundle, machine, choice.trace.kernel)
    if base.arch != choice.trace.arch:
        base = replace(base, arch=choice.trace.arch)
    sim_machine = apply_settings(base, settings)
    if sim_machine.kernel != choice.model.kernel:
        sim_machine = replace(sim_machine, kernel=choice.model.kernel)
    init_machine = replace(sim_machine, pageblock_order=base.pageblock_order,
                           max_order=base.max_order, kernel=base.kernel)
    return choice, base, sim_machine, init_machine


def simulate(data, bundle=None, settings: Settings | None = None,
             machine: Machine | None = None, points=None, sampler_factory=None,
             start_cache: dict | None = None) -> SimulateResult:
    """Simulate a trace's requests from its start state under (what-if) settings.

    `start_cache` (a dict the caller keeps) reuses the initial state across calls on the same
    trace, as a sweep does for each of its settings points."""
    from replay.engine.events import event_arrays
    from replay.engine.reconstruct import prepare_start

    settings = settings or Settings()
    e = event_arrays(data)
    choice, base, sim_machine, init_machine = simulation_machines(data, bundle, settings,
                                                                  machine)
    key = (data.stats.source, data.events.num_rows, init_machine.cpus,
           init_machine.pageblock_order, init_machine.kernel)
    if start_cache is not None and key in start_cache:
        start = start_cache[key]
    else:
        start = prepare_start(e, data, bundle, init_machine, cpus=sim_machine.cpus,
                              trace_profile=choice.trace)
        if start_cache is not None:
            start_cache.clear()  # one trace at a time: the states are large
            start_cache[key] = start
    st = transform_state(copy_state(start.state) if start_cache is not None else start.state,
                         base, sim_machine)
    trace_cpus = int(e.cpu.max()) + 1 if len(e) else 1
    cpu_map = cpu_mapping(sim_machine, trace_cpus)[0]
    if start.i_start > 0:  # a snapshot start: its pcp lists are learnt from the trace
        seed_initial_pcp(st, e, start.i_start, cpu_map)
        zoneinfo = bundle.start.zoneinfo if bundle is not None else None
        seed_pcp_tuning(st, e, start.i_start, cpu_map, sim_machine, zoneinfo, choice.trace)
    sampler = sampler_factory(sim_machine, e) if sampler_factory else None
    evidence = vmstat_runs(data, e, start.i_start) if choice.trace.vmstat_decay else None
    recorded = recorded_vm_settings(bundle)
    sp = slow_state(st, sim_machine, recorded, bundle)._replace(
        kswapd_runs=kswapd_runs_in(data, e, start.i_start, base))
    gfp = e.gfp
    defrag = settings.get("thp_defrag")
    if defrag is not None and defrag != recorded["thp_defrag"]:
        from replay.engine.thp import thp_defrag_gfp

        gfp = thp_defrag_gfp(e.gfp, e.order, recorded["thp_defrag"], str(defrag))
    counters, out = run_simulation(st, sim_machine, settings, e, start.i_start, start.disp,
                                   points, sampler, evidence, sp, gfp)
    table = emitted_table(out, e, sim_machine.pageblock_order)
    return SimulateResult(sim_machine, settings, st, counters, table, out, int(out.n[0]),
                          sampler.samples if sampler else None, start.i_start, choice, sp,
                          recorded, e.ts)


KERNEL_VM_DEFAULTS = {"compaction_proactiveness": 20, "extfrag_threshold": 500,
                      "thp_defrag": "madvise"}


def recorded_vm_settings(bundle) -> dict:
    """The slow path's sysctls as the traced machine had them: the bundle's `sysctl` and
    `thp_defrag` files (pagereplay record writes them), else the kcapture harness's guest
    options in capture.json (its guests default to defrag never and proactiveness 0), else
    the kernel's defaults. `source` says which."""
    vals = dict(KERNEL_VM_DEFAULTS)
    source = "kernel defaults"
    if bundle is None:
        return {**vals, "source": source}
    cap = bundle.capture or {}
    if "workload" in cap and "kernel" in cap:  # the kcapture harness (../kcapture/init)
        vals.update(compaction_proactiveness=0, thp_defrag="never")
        opts = dict(o.split("=", 1) for o in str(cap.get("guest_options", "")).split()
                    if "=" in o)
        if "kc.defrag" in opts:
            vals["thp_defrag"] = opts["kc.defrag"]
        if "kc.proactive" in opts and opts["kc.proactive"].isdigit():
            vals["compaction_proactiveness"] = int(opts["kc.proactive"])
        source = "capture.json guest options"
    sysctl = bundle.sysctl or {}
    for key in ("compaction_proactiveness", "extfrag_threshold"):
        raw = str(sysctl.get(f"vm.{key}", "")).strip()
        if raw.isdigit():
            vals[key] = int(raw)
            source = "sysctl"
    if bundle.thp_defrag in THP_DEFRAG_MODES:
        vals["thp_defrag"] = bundle.thp_defrag
    return {**vals, "source": source}


def slow_state(st: State, machine: Machine, recorded: dict, bundle) -> SlowState:
    """The slow path's state at the start: the recorded sysctls, and the LRU pages the start
    snapshot's kpageflags shows among the pages allocated before the trace."""
    sp = new_slow_state(st.pg_state.shape[0], len(machine.zones), machine.nodes,
                        machine.pageblock_order,
                        np.array([z.present for z in machine.zones], np.int64),
                        np.array([z.node for z in machine.zones], np.int64))
    sp.cfg[SC_PROACTIVENESS] = int(recorded["compaction_proactiveness"])
    sp.cfg[SC_EXTFRAG_THRESHOLD] = int(recorded["extfrag_threshold"])
    kpf = bundle.start.kpageflags() if bundle is not None else None
    if kpf is not None:
        from replay.engine.initial import KPF_BUDDY, KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_LRU
        from replay.engine.lru import lru_add_many

        m = min(len(kpf), st.pg_state.shape[0])
        f = kpf[:m]
        bit = lambda b: ((f >> np.uint64(b)) & np.uint64(1)) != 0  # noqa: E731
        lru = bit(KPF_LRU) & ~bit(KPF_COMPOUND_HEAD) & ~bit(KPF_COMPOUND_TAIL) & ~bit(KPF_BUDDY)
        lru &= (st.pg_state[:m] == 0) & (st.pg_zone[:m] >= 0)
        lru_add_many(st, sp, np.flatnonzero(lru).astype(np.int64))
    return sp


@njit(cache=True, _nrt=False)
def alloc_one(st, sp, gfp, order, cpu, node, out, counters, zonelists, zl_len):
    """One __alloc_pages() call (the Python API's entry); returns the pfn or -1."""
    mt = ((gfp & 0x18) >> 3) if st.config[CFG_MOBILITY] else 0
    page, z = __alloc_pages(st, sp, gfp, order, mt, cpu, node, out, -1, counters, zonelists,
                            zl_len)
    counters[S_ALLOCS] += 1
    if page < 0:
        counters[S_FAIL] += 1
        emit(out, EV_ALLOC, -1, order, mt, cpu, -1, -1, -1, -1, -1)
        return -1
    st.pg_state[page] = PG_ALLOC
    st.pg_order[page] = order
    st.pg_mt[page] = mt
    emit(out, EV_ALLOC, page, order, mt, cpu, -1, -1, -1, -1, -1)
    return page


@njit(cache=True, _nrt=False)
def free_one(st, page, order, cpu, out, counters):
    """One __free_pages() call; returns False for a page that is not allocated."""
    if page < 0 or page >= st.pg_state.shape[0] or st.pg_zone[page] < 0:
        return False
    if find_free_block(st, page) >= 0 or st.pg_state[page] == PG_PCP:
        counters[S_DOUBLEFREE] += 1
        return False
    free_the_page(st, st.pg_zone[page], page, order, cpu, False, out, -1, counters)
    counters[S_FREES] += 1
    return True


def seed_initial_pcp(st: State, e: EventArrays, i_start: int, cpu_map: np.ndarray) -> int:
    """seed_pcp_pages with the first events read off the trace's arrays."""
    return seed_pcp_pages(st, first_pcp_events(e, i_start), cpu_map)


def first_pcp_events(e: EventArrays, i_start: int) -> np.ndarray:
    """(index, pfn, order, migratetype, cpu) of each page's first event after i_start (among
    allocs, frees, takes and drains) when that is an alloc or a drain, in trace order."""
    from replay.trace.schema import EV_PCPU_DRAIN, EV_ZONE_LOCKED

    idx = np.arange(i_start, len(e))
    idx = idx[(e.pfn[idx] >= 0) & np.isin(e.ev[idx], (EV_ALLOC, EV_FREE, EV_FREE_BATCHED,
                                                         EV_ZONE_LOCKED, EV_PCPU_DRAIN))]
    if not len(idx):
        return np.zeros((0, 5), np.int64)
    _, first = np.unique(e.pfn[idx], return_index=True)
    first = np.sort(idx[first])
    first = first[np.isin(e.ev[first], (EV_ALLOC, EV_PCPU_DRAIN))]
    return np.stack([first, e.pfn[first], e.order[first], e.mt[first], e.cpu[first]], axis=1)


def seed_pcp_pages(st: State, first: np.ndarray, cpu_map: np.ndarray) -> int:
    """Put back on the pcp lists the pages the snapshot could not show there: a page whose first
    event after the start is a pcp allocation (no zone_locked before it) or a pcpu_drain was on
    a per-CPU list when the snapshot was taken (`first`: first_pcp_events' rows, in trace order:
    the first used is nearest the list head). Returns the pages seeded."""
    from replay.engine.buddy import pcp_add, pcp_allowed_order
    from replay.engine.state import PG_NONE

    pbo = int(st.config[0])
    seeded = 0
    for _, p, o, m, c in first.tolist():
        if not pcp_allowed_order(o, pbo) or p >= len(st.pg_state) or st.pg_zone[p] < 0:
            continue
        if st.pg_state[p] != PG_NONE or find_free_block(st, p) >= 0:
            continue
        mt = m if m >= 0 else int(st.pb_mt[p >> pbo])
        cpu = int(cpu_map[c])  # the allocating (or draining) CPU
        pcp_add(st, cpu, int(st.pg_zone[p]), p, o, mt, True)
        seeded += 1
    return seeded


def seed_pcp_tuning(st: State, e: EventArrays | None, i_start: int, cpu_map: np.ndarray,
                    machine: Machine, zoneinfo, trace_profile: KernelProfile,
                    refills: list[tuple[int, int, int, int]] | None = None) -> None:
    """The pcp state a snapshot can show or the trace reveals, beyond the pages on the lists:

    - count: start.zoneinfo's per-CPU count; pages the trace never shows (never allocated or
      drained) stay on the lists for the whole run and are kept as a count only;
    - high (6.7+ kernels): each CPU's current, auto-tuned value in start.zoneinfo (a 6.1
      zoneinfo shows the static high, which a 6.12 model starts from);
    - alloc_factor (6.12 model on a 6.12 trace): from the size of each CPU's first order-0
      refill, batch << k (k halved once per free before it, so known only without one);
    - free_count starts at 0.

    `refills` (first_refills' result) stands for `e` where the caller has it already.
    """
    from replay.engine.state import MAX_ORDER  # noqa: F401 - documents the array bound

    if zoneinfo is None:
        return
    by_key = {(zi.node, zi.name): zi for zi in zoneinfo if zi.populated}
    ncpu = st.pcp_count.shape[0]
    for zidx, zone in enumerate(machine.zones):
        zi = by_key.get((zone.node, zone.name))
        if zi is None:
            continue
        for tcpu, ps in zi.pagesets.items():
            if tcpu >= len(cpu_map):
                continue
            c = int(cpu_map[tcpu])
            if c >= ncpu or c != tcpu:
                continue  # a what-if CPU count: the snapshot's pcp state does not carry over
            st.pcp_count[c, zidx] = max(int(st.pcp_count[c, zidx]), int(ps.count))
            if st.pcp_high_min[c, zidx] != st.pcp_high_max[c, zidx] and ps.high > 0:
                st.pcp_high[c, zidx] = min(max(int(ps.high), int(st.pcp_high_min[c, zidx])),
                                           int(st.pcp_high_max[c, zidx]))
    if trace_profile.pcp_refill and st.config[CFG_FREE_HIGH_BATCH]:
        if refills is None:
            refills = first_refills(st, e, i_start)
        seed_alloc_factor(st, refills, cpu_map)


def first_refills(st: State, e: EventArrays, i_start: int) -> list[tuple[int, int, int, int]]:
    """Each (CPU, zone)'s first order-0 pcp refill after i_start: (cpu, zone, pages in its
    refill run, frees on that CPU before it)."""
    from replay.trace.schema import EV_EXTFRAG, EV_ZONE_LOCKED

    ev, cpu = e.ev[i_start:], e.cpu[i_start:]
    seen: set[tuple[int, int]] = set()
    out = []
    frees = np.zeros(int(cpu.max()) + 1 if len(cpu) else 1, np.int64)
    idx = np.flatnonzero((ev == EV_ZONE_LOCKED) | (ev == EV_FREE) | (ev == EV_FREE_BATCHED))
    for k in idx:
        i = i_start + int(k)
        c = int(e.cpu[i])
        if e.ev[i] != EV_ZONE_LOCKED:
            if e.ev[i] == EV_FREE_BATCHED or (e.order[i] <= 3 and e.pfn[i] >= 0):
                frees[c] += 1
            continue
        if e.refill[i] != 1 or e.order[i] != 0 or e.pfn[i] < 0:
            continue
        z = int(st.pg_zone[e.pfn[i]]) if e.pfn[i] < len(st.pg_zone) else -1
        if z < 0 or (c, z) in seen:
            continue
        seen.add((c, z))
        n, j = 0, i
        while j < len(e) and ((e.ev[j] == EV_ZONE_LOCKED and e.refill[j] == 1
                               and e.order[j] == 0) or e.ev[j] == EV_EXTFRAG
                              or e.cpu[j] != c):
            if e.cpu[j] == c and e.ev[j] == EV_ZONE_LOCKED:
                n += 1
            j += 1
        out.append((c, z, n, int(frees[c])))
    return out


def seed_alloc_factor(st: State, refills: list[tuple[int, int, int, int]],
                      cpu_map: np.ndarray) -> None:
    """pcp alloc_factor from each CPU's first refill run: batch << k covers the run, k halved
    once per free before it (unknown after three)."""
    for c, z, n, frees in refills:
        mc = int(cpu_map[c]) if c < len(cpu_map) else -1
        if mc != c or mc >= st.pcp_alloc_factor.shape[0]:
            continue
        batch = int(st.pcp_batch[mc, z])
        k_at = 0
        while k_at < 5 and (batch << k_at) < n:
            k_at += 1
        st.pcp_alloc_factor[mc, z] = min(5, k_at << frees) if frees < 3 else 0
