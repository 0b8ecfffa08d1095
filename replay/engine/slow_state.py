"""The slow path's state for a simulation: what kswapd, kcompactd, compaction and reclaim keep.

Beside `State` (the page allocator's lists), the model's slow path needs per node the kswapd
and kcompactd fields of `pg_data_t`, per zone the compaction fields of `struct zone`
(compaction.py's `zc` table, with the model's cached migrate pfns), per pageblock the skip bit,
per page whether it is an LRU page (migratable and reclaimable) and when it was allocated, and
the identity maps that let a page the model migrated or reclaimed be found again when the trace
frees it. Counters are named as /proc/vmstat names them (`VM_COUNTER_NAMES`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba.experimental import structref

from replay.engine.compaction import N_CC, ZC_ORDER_FAILED, new_compaction_tables
from replay.engine.jit import njit
from replay.engine.structs import ArraysRef, ArrayStruct, register_struct
from replay.trace.schema import EV_PCPU_DRAIN

# sysctls and model switches (cfg)
(SC_COMPACTION, SC_PROACTIVENESS, SC_EXTFRAG_THRESHOLD, SC_RECLAIM, SC_LRU_HEAD, SC_LRU_TAIL,
 SC_STAMP, SC_NFREE, SC_FREE_HEAD, SC_NMIGRATE, SC_NOW_NS, SC_IN_COMPACTION, SC_KSWAPD_ANY,
 SC_NFAIL, SC_THP_DEFRAG_OBS, SC_THP_DEFRAG, SC_NRUNS, SC_KSWAPD_RUN) = range(18)
N_SC = 18

# per node (pg_data_t): kswapd, kcompactd and the proactive timer
(ND_KSWAPD_ACTIVE, ND_KSWAPD_ORDER, ND_KSWAPD_CLASSZONE, ND_KSWAPD_FAILURES,
 ND_KSWAPD_FREED, ND_KCOMPACTD_ORDER, ND_KCOMPACTD_CLASSZONE, ND_PROACTIVE_NEXT_NS,
 ND_PRESENT) = range(9)
N_ND = 9

# the model's own zone compaction fields, after compaction.py's ZC_* columns
ZC_CACHED_MIGRATE_ASYNC, ZC_CACHED_MIGRATE_SYNC, ZC_INIT_MIGRATE_PFN, ZC_PRESENT = 6, 7, 8, 9
N_ZC_MODEL = 10

VM_COUNTER_NAMES: tuple[str, ...] = (
    "compact_stall", "compact_fail", "compact_success", "compact_migrate_scanned",
    "compact_free_scanned", "compact_isolated", "compact_daemon_wake",
    "compact_daemon_migrate_scanned", "compact_daemon_free_scanned", "pgmigrate_success",
    "pgmigrate_fail", "allocstall", "pgsteal_kswapd", "pgsteal_direct", "pageoutrun",
    "kswapd_wakes", "oom_kill", "compact_captures", "compact_runs", "proactive_runs",
    "drain_all_pages", "frees_of_reclaimed_pages", "frees_of_failed_allocations",
    "thp_alloc", "thp_alloc_failed", "thp_second_tries_dropped", "compact_deferred",
)
(VM_COMPACT_STALL, VM_COMPACT_FAIL, VM_COMPACT_SUCCESS, VM_COMPACT_MIGRATE_SCANNED,
 VM_COMPACT_FREE_SCANNED, VM_COMPACT_ISOLATED, VM_COMPACT_DAEMON_WAKE,
 VM_COMPACT_DAEMON_MIGRATE_SCANNED, VM_COMPACT_DAEMON_FREE_SCANNED, VM_PGMIGRATE_SUCCESS,
 VM_PGMIGRATE_FAIL, VM_ALLOCSTALL, VM_PGSTEAL_KSWAPD, VM_PGSTEAL_DIRECT, VM_PAGEOUTRUN,
 VM_KSWAPD_WAKES, VM_OOM_KILL, VM_CAPTURES, VM_COMPACT_RUNS, VM_PROACTIVE_RUNS,
 VM_DRAIN_ALL, VM_FREES_RECLAIMED, VM_FREES_FAILED, VM_THP_ALLOC, VM_THP_FAILED,
 VM_THP_DROPPED, VM_COMPACT_DEFERRED) = range(27)

# the counters /proc/vmstat also has (compared with the bundle's start->end deltas)
VMSTAT_COMPARABLE: tuple[str, ...] = (
    "compact_stall", "compact_fail", "compact_success", "compact_migrate_scanned",
    "compact_free_scanned", "compact_isolated", "compact_daemon_wake",
    "compact_daemon_migrate_scanned", "compact_daemon_free_scanned", "pgmigrate_success",
    "pgmigrate_fail", "allocstall", "pgsteal_direct", "pageoutrun", "oom_kill",
)

# pfn_map values beside a model pfn: the trace's page has no model page because...
MAP_UNKNOWN = -1  # ...the model never saw it allocated (it stands for itself)
MAP_FAILED = -2  # ...the model failed the allocation the kernel served
MAP_RECLAIMED = -3  # ...the model reclaimed it (the kernel frees it later)

COMPACT_RESULT_NAMES: tuple[str, ...] = (  # enum compact_result, in its order
    "not_suitable_zone", "skipped", "deferred", "no_suitable_page", "continue", "complete",
    "partial_skipped", "contended", "success")
# one row per compact_zone() run: the request (event index) that caused it, zone, order, mode,
# kcompactd (0) / direct (1) / proactive (2) / compact_memory (3), where the scanners started
# and ended, pages migrated, the outcome (enum compact_result)
(RUN_REQ, RUN_ZONE, RUN_ORDER, RUN_MODE, RUN_KIND, RUN_MIGRATE_START, RUN_FREE_START,
 RUN_MIGRATE_END, RUN_FREE_END, RUN_MIGRATED, RUN_RESULT) = range(11)
N_RUN = 11
RUN_LOG = 1 << 14
RUN_COLUMNS = ("req", "zone", "order", "mode", "kind", "migrate_start", "free_start",
               "migrate_end", "free_end", "migrated", "result")
THP_DEFRAG_MODES: tuple[str, ...] = ("always", "defer", "defer+madvise", "madvise", "never")
FAIL_LOG = 1 << 16  # failures kept with their event, order and gfp (the rest only counted)


class _SlowStateFields(NamedTuple):
    """Arrays only, so compiled code takes the whole slow-path state as one argument."""

    cfg: np.ndarray  # int64 [N_SC]
    vm: np.ndarray  # int64 [len(VM_COUNTER_NAMES)]
    node: np.ndarray  # int64 [nodes, N_ND]
    zc: np.ndarray  # int64 [Z, N_ZC_MODEL]
    cc: np.ndarray  # int64 [1, N_CC]: the model's one compact_control at a time
    pb_skip: np.ndarray  # uint8 [pageblocks]: the pageblock skip bit
    pg_lru: np.ndarray  # uint8 [pfn]: an LRU page (order 0, movable): migratable, reclaimable
    pg_age: np.ndarray  # int64 [pfn]: when the LRU page was added (its LRU stamp)
    pfn_map: np.ndarray  # int64 [pfn]: trace pfn -> the model page standing for it (or MAP_*)
    rev_map: np.ndarray  # int64 [pfn]: model pfn -> the trace pfn it stands for (-1: itself)
    lru_pfn: np.ndarray  # int64 ring: LRU additions in order (oldest at SC_LRU_HEAD)
    lru_stamp: np.ndarray  # int64 ring: the stamp each addition had
    zone_lru: np.ndarray  # int64 [Z]: LRU pages per zone (zone_reclaimable_pages)
    freepages: np.ndarray  # int64: cc->freepages (isolated targets, in order)
    migratepages: np.ndarray  # int64: cc->migratepages
    fail_log: np.ndarray  # int64 [FAIL_LOG, 3]: event index, order, gfp of each failure
    results: np.ndarray  # int64 [9]: compact_zone() outcomes by enum compact_result
    run_log: np.ndarray  # int64 [RUN_LOG, N_RUN]: the first compact_zone() runs (RUN_* columns)
    kswapd_runs: np.ndarray  # int64 [K, 3]: the trace's kswapd runs (node, first ts, last ts)


class _SlowStateProxy(structref.StructRefProxy):
    pass


@register_struct(_SlowStateFields, _SlowStateProxy)
class SlowStateRef(ArraysRef):
    """SlowState as compiled code takes it (replay/engine/structs.py)."""


@njit(cache=True)
def _new_slow_state_ref(*arrays):  # noqa: ANN002, ANN201
    return _SlowStateProxy(*arrays)


class SlowState(ArrayStruct, _SlowStateFields):
    """The slow path's state; compiled code gets it as one pointer."""

    _new_ref = staticmethod(_new_slow_state_ref)


def new_slow_state(npfn: int, nzones: int, nodes: int, pageblock_order: int,
                   zone_present: np.ndarray, zone_node: np.ndarray) -> SlowState:
    """An empty slow-path state: kswapd and kcompactd asleep, no LRU page known yet."""
    _, zc6 = new_compaction_tables(nzones)
    zc = np.zeros((max(nzones, 1), N_ZC_MODEL), np.int64)
    zc[:, : zc6.shape[1]] = zc6
    zc[:, ZC_CACHED_MIGRATE_ASYNC:ZC_INIT_MIGRATE_PFN + 1] = -1
    zc[:, ZC_ORDER_FAILED] = 0  # the kernel's zone starts zeroed
    zc[: len(zone_present), ZC_PRESENT] = zone_present
    node = np.zeros((max(nodes, 1), N_ND), np.int64)
    node[:, ND_KSWAPD_CLASSZONE] = -1
    node[:, ND_KCOMPACTD_CLASSZONE] = -1
    for z, n in enumerate(zone_node):
        node[n, ND_PRESENT] += zone_present[z]
    cfg = np.zeros(N_SC, np.int64)
    cfg[SC_COMPACTION] = 1
    cfg[SC_EXTFRAG_THRESHOLD] = 500
    cfg[SC_RECLAIM] = 1
    cfg[SC_THP_DEFRAG_OBS] = -1
    cfg[SC_THP_DEFRAG] = -1
    ring = max(2 * npfn, 1024)
    return SlowState(
        cfg=cfg,
        vm=np.zeros(len(VM_COUNTER_NAMES), np.int64),
        node=node,
        zc=zc,
        cc=np.zeros((1, N_CC + 7), np.int64),  # compact_model's CCM_* after CC_*
        pb_skip=np.zeros((npfn >> pageblock_order) + 1, np.uint8),
        pg_lru=np.zeros(npfn, np.uint8),
        pg_age=np.zeros(npfn, np.int64),
        pfn_map=np.full(npfn, MAP_UNKNOWN, np.int64),
        rev_map=np.full(npfn, -1, np.int64),
        lru_pfn=np.zeros(ring, np.int64),
        lru_stamp=np.zeros(ring, np.int64),
        zone_lru=np.zeros(max(nzones, 1), np.int64),
        freepages=np.zeros(2048 + 64, np.int64),
        migratepages=np.zeros((1 << 10) + 64, np.int64),  # a rescan takes a whole block
        fail_log=np.zeros((FAIL_LOG, 3), np.int64),
        results=np.zeros(len(COMPACT_RESULT_NAMES), np.int64),
        run_log=np.zeros((RUN_LOG, N_RUN), np.int64),
        kswapd_runs=np.zeros((0, 3), np.int64),
    )


def slow_state_for(st, nodes: int | None = None, proactiveness: int = 0) -> SlowState:
    """A slow-path state sized for an allocator state (zone sizes from its managed pages)."""
    from replay.engine.state import CFG_PAGEBLOCK_ORDER, ZP_MANAGED

    nodes = nodes or (int(st.zone_node.max()) + 1 if len(st.zone_node) else 1)
    sp = new_slow_state(st.pg_state.shape[0], st.zone_param.shape[0], nodes,
                        int(st.config[CFG_PAGEBLOCK_ORDER]), st.zone_param[:, ZP_MANAGED].copy(),
                        st.zone_node)
    sp.cfg[SC_PROACTIVENESS] = proactiveness
    return sp


KSWAPD_RUN_GAP_NS = 1_000_000  # a kswapd unseen for longer went back to sleep in between


def kswapd_runs_of(node: np.ndarray, ts: np.ndarray,
                   gap_ns: int = KSWAPD_RUN_GAP_NS) -> np.ndarray:
    """The spans in which the trace shows each node's kswapd at work in balance_pgdat() (its
    own events, or drains at the reclaim cap: `ts` of each piece of evidence, `node` the node
    it speaks for): [node, first ts, last ts] rows, by first ts; evidence of one node less
    than `gap_ns` apart is one run."""
    points = np.stack([node, ts, ts], axis=1).astype(np.int64).reshape(-1, 3)
    return merge_kswapd_runs([points], gap_ns)


def merge_kswapd_runs(parts: list[np.ndarray], gap_ns: int = KSWAPD_RUN_GAP_NS) -> np.ndarray:
    """The runs of pieces of a trace (kswapd_runs_of each) as one list: a node's runs that
    start less than `gap_ns` after the end of an earlier one are joined."""
    runs = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
    out = []
    for n in np.unique(runs[:, 0]):
        r = runs[runs[:, 0] == n]
        r = r[np.argsort(r[:, 1], kind="stable")]
        reach = np.maximum.accumulate(r[:, 2])
        first = np.flatnonzero(np.r_[True, r[1:, 1] - reach[:-1] > gap_ns])
        out.append(np.stack([np.full(len(first), n), r[first, 1],
                             np.maximum.reduceat(r[:, 2], first)], axis=1))
    if not out:
        return np.zeros((0, 3), np.int64)
    res = np.concatenate(out).astype(np.int64)
    return res[np.argsort(res[:, 1], kind="stable")]


def capped_drains(ev: np.ndarray, cpu: np.ndarray, pfn: np.ndarray, order: np.ndarray,
                  ts: np.ndarray, zone_of: np.ndarray, zone_batch: np.ndarray,
                  zone_high: np.ndarray, carry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pcp drains that prove ZONE_RECLAIM_ACTIVE: runs of one CPU's consecutive
    mm_page_pcpu_drain events freeing exactly 3 batches of pages. nr_pcp_high() caps high at
    4 batches while reclaim is active and nr_pcp_free() never frees more than high - batch;
    otherwise that ceiling is thousands of pages (a zone whose high is above 4 batches).
    `carry` (int64 [4]: CPU, pages, zone, first ts; CPU -1 for none) holds a run still open at
    the end of the previous piece and is updated for the next. Returns the first ts and the
    zone of each such run."""
    d = np.flatnonzero(ev == EV_PCPU_DRAIN)
    goes_on = carry[0] >= 0 and len(d) > 0 and d[0] == 0 and cpu[d[0]] == carry[0]
    closed = close_capped_drains(carry, zone_batch, zone_high) if not goes_on else None
    if not len(d):
        return closed
    c = cpu[d]
    pages = np.left_shift(1, np.maximum(order[d], 0)).astype(np.int64)
    p = pfn[d]
    zone = np.where((p >= 0) & (p < len(zone_of)), zone_of[np.clip(p, 0, len(zone_of) - 1)], -1)
    starts = np.r_[0, np.flatnonzero((np.diff(d) != 1) | (np.diff(c) != 0)) + 1]
    total = np.add.reduceat(pages, starts)
    first_ts = ts[d[starts]].astype(np.int64)
    run_zone = zone[starts].astype(np.int64)
    if goes_on:  # the open run goes on
        total[0] += carry[1]
        run_zone[0], first_ts[0] = carry[2], carry[3]
    carry[0] = -1
    if d[-1] == len(ev) - 1:  # the last run may go on in the next piece
        carry[:] = (c[-1], total[-1], run_zone[-1], first_ts[-1])
        total, run_zone, first_ts = total[:-1], run_zone[:-1], first_ts[:-1]
    ok = run_zone >= 0
    batch = np.where(ok, zone_batch[np.maximum(run_zone, 0)], 0)
    high = np.where(ok, zone_high[np.maximum(run_zone, 0)], 0)
    hit = ok & (batch > 0) & (total == 3 * batch) & (high > 4 * batch)
    if closed is not None:
        return np.r_[closed[0], first_ts[hit]], np.r_[closed[1], run_zone[hit]]
    return first_ts[hit], run_zone[hit]


def close_capped_drains(carry: np.ndarray, zone_batch: np.ndarray, zone_high: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """capped_drains' verdict on a run that was open at the end of a piece and has ended."""
    cpu, total, zone, first_ts = (int(v) for v in carry)
    carry[0] = -1
    if cpu < 0 or zone < 0 or zone >= len(zone_batch):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    batch, high = int(zone_batch[zone]), int(zone_high[zone])
    if batch > 0 and total == 3 * batch and high > 4 * batch:
        return np.array([first_ts], np.int64), np.array([zone], np.int64)
    return np.zeros(0, np.int64), np.zeros(0, np.int64)


def reclaim_evidence(ks_node: np.ndarray, ev: np.ndarray, cpu: np.ndarray, pfn: np.ndarray,
                     order: np.ndarray, ts: np.ndarray, zones: ZoneArrays, carry: np.ndarray,
                     last: bool) -> np.ndarray:
    """kswapd_runs_of over one piece of the trace (`last`: the trace ends with it): the
    kswapdN tasks' own events (ks_node >= 0) and the drains that prove reclaim active on a
    zone's node (capped_drains)."""
    rows = np.flatnonzero(ks_node >= 0)
    t2, z2 = capped_drains(ev, cpu, pfn, order, ts, zones.of_pfn, zones.batch, zones.high, carry)
    if last:
        t3, z3 = close_capped_drains(carry, zones.batch, zones.high)
        t2, z2 = np.r_[t2, t3], np.r_[z2, z3]
    node = np.r_[ks_node[rows], zones.node[z2]].astype(np.int64)
    return kswapd_runs_of(node, np.r_[ts[rows], t2].astype(np.int64))


class ZoneArrays(NamedTuple):
    """Per zone of the traced machine (and per pfn, its zone): what reclaim_evidence reads."""

    of_pfn: np.ndarray
    batch: np.ndarray
    high: np.ndarray
    node: np.ndarray

    @staticmethod
    def of(machine) -> ZoneArrays:  # noqa: ANN001 - engine.machine.Machine
        zs = machine.zones
        return ZoneArrays(machine.zone_index_array().astype(np.int64),
                          np.array([z.pcp_batch for z in zs], np.int64),
                          np.array([z.pcp_high for z in zs], np.int64),
                          np.array([z.node for z in zs], np.int64))


def new_carry() -> np.ndarray:
    """capped_drains' state between pieces: no run open."""
    return np.array([-1, 0, 0, 0], np.int64)


def kswapd_node(comm: str | None) -> int:
    """The node of a kswapd thread from its comm (kswapdN), -1 for any other task."""
    if comm and comm.startswith("kswapd"):
        digits = comm[len("kswapd"):].split(":")[0]
        return int(digits) if digits.isdigit() else 0
    return -1


def vm_counters(sp: SlowState) -> dict[str, int]:
    return {name: int(sp.vm[i]) for i, name in enumerate(VM_COUNTER_NAMES)}
