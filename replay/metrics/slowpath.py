"""The model's slow path beside the kernel's: its vmstat-named counters against the same
counters' deltas between the bundle's start and end /proc/vmstat, its failed allocations by
order and gfp, and its compaction runs (docs/metrics.md §8).

The kernel's deltas cover the whole capture (start snapshot to end snapshot); the model runs
over the same interval, so the two count the same stretch of time.
"""

from __future__ import annotations

import numpy as np

from replay.engine.slow_state import (
    COMPACT_RESULT_NAMES,
    RUN_COLUMNS,
    SC_NFAIL,
    SC_NRUNS,
    VMSTAT_COMPARABLE,
)
from replay.metrics.compaction import vmstat_deltas
from replay.trace.gfp import gfp_to_text

RUN_KINDS = ("kcompactd", "direct", "proactive", "compact_memory")


def vmstat_comparison(model: dict[str, int], deltas: dict[str, int]) -> list[dict]:
    """Per vmstat counter both sides have: kernel delta, model count, relative gap."""
    rows = []
    for k in VMSTAT_COMPARABLE:
        if k not in deltas or k not in model:
            continue
        kern, mod = int(deltas[k]), int(model[k])
        rows.append({"counter": k, "kernel": kern, "model": mod,
                     "gap_pct": round((mod - kern) / kern * 100, 1) if kern else None})
    return rows


def failure_table(sp, ts: np.ndarray, i_start: int) -> list[dict]:
    """The model's failed allocations grouped by (order, gfp): how many, first and last time
    (seconds from the replay's start)."""
    n = min(int(sp.cfg[SC_NFAIL]), sp.fail_log.shape[0])
    if n == 0:
        return []
    log = sp.fail_log[:n]
    t0 = int(ts[i_start]) if len(ts) > i_start else 0
    groups: dict[tuple[int, int], list[int]] = {}
    for req, order, gfp in log.tolist():
        groups.setdefault((order, gfp), []).append(req)
    rows = []
    for (order, gfp), reqs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        t = (ts[np.asarray(reqs)] - t0) / 1e9
        rows.append({"order": order, "gfp": gfp_to_text(gfp), "failures": len(reqs),
                     "first_s": round(float(t.min()), 6), "last_s": round(float(t.max()), 6)})
    return rows


def compaction_runs(sp, limit: int = 200) -> dict:
    """The model's compact_zone() runs: outcomes by enum compact_result, and the first runs."""
    n = min(int(sp.cfg[SC_NRUNS]), sp.run_log.shape[0])
    runs = [dict(zip(RUN_COLUMNS, row, strict=True)) for row in sp.run_log[:min(n, limit)]
            .tolist()]
    for r in runs:
        r["result"] = COMPACT_RESULT_NAMES[r["result"]]
        r["kind"] = RUN_KINDS[r["kind"]]
    return {"outcomes": {name: int(v) for name, v in zip(COMPACT_RESULT_NAMES, sp.results,
                                                         strict=True) if v},
            "runs": int(sp.cfg[SC_NRUNS]), "first_runs": runs}


def slow_path_section(sim, vmstat_start: dict | None, vmstat_end: dict | None) -> dict:
    """simulate.json's and comparison.json's `slow_path` block."""
    deltas = vmstat_deltas(vmstat_start, vmstat_end)
    model = {k: int(sim.counters.get(k, 0)) for k in sim.counters}
    out: dict = {"recorded_sysctls": sim.recorded_vm,
                 "model": {k: model[k] for k in model if k in _SLOW_KEYS},
                 "vmstat": vmstat_comparison(model, deltas)}
    if sim.slow is not None:
        out["failures"] = failure_table(sim.slow, sim.event_ts, sim.i_start)
        out["compaction"] = compaction_runs(sim.slow)
    return out


def _slow_keys() -> set[str]:
    from replay.engine.slow_state import VM_COUNTER_NAMES

    return set(VM_COUNTER_NAMES) | {"alloc_failures", "min_watermark_allocs",
                                    "no_watermark_allocs"}


_SLOW_KEYS = _slow_keys()
