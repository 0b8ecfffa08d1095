"""The events table as the flat numpy columns the engine's loops take, plus marker positions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replay.trace.result import TraceData
from replay.trace.schema import COMPACT_STATUS_NAMES, EV_FIRST_COMPACTION, EVENT_CODE

# Columns of EventArrays.cev, one row per compaction event (EventArrays.cidx points at it).
(CE_START, CE_END, CE_SCANNED, CE_TAKEN, CE_MIGRATED, CE_FAILED, CE_MIGRATE_PFN, CE_FREE_PFN,
 CE_SYNC, CE_STATUS, CE_PRIORITY, CE_ORDER_FAILED, CE_CONSIDER, CE_LIMIT, CE_NODE, CE_ZONE_TYPE,
 CE_TASK) = range(17)
N_CE = 17
_CE_COLUMNS = ("start_pfn", "end_pfn", "nr_scanned", "nr_taken", "nr_migrated", "nr_failed",
               "migrate_pfn", "free_pfn", "sync", "status", "priority", "order_failed",
               "consider", "limit", "node")
# zone type of a printed zone name (enum zone_type; HighMem gets 5 as in the engine's machines)
ZONE_TYPE_OF_NAME = {"DMA": 0, "DMA32": 1, "Normal": 2, "Movable": 3, "Device": 4, "HighMem": 5}
TASK_OTHER, TASK_KSWAPD, TASK_KCOMPACTD = 0, 1, 2


@dataclass
class EventArrays:
    """int64 columns (nulls as -1), in trace order. Compaction events' own fields are in `cev`
    (one row per compaction event, CE_* columns), found through `cidx` (-1 elsewhere)."""

    seq: np.ndarray
    ts: np.ndarray
    ev: np.ndarray
    pfn: np.ndarray
    order: np.ndarray
    mt: np.ndarray
    cpu: np.ndarray
    refill: np.ndarray
    ford: np.ndarray
    fmt: np.ndarray
    chown: np.ndarray
    irq: np.ndarray
    preempt: np.ndarray
    gfp: np.ndarray
    pid: np.ndarray
    cidx: np.ndarray | None = None
    cev: np.ndarray | None = None
    reordered: int = 0  # events moved by causal_order (cross-CPU clock skew repaired)

    def __post_init__(self) -> None:
        if self.cidx is None:
            self.cidx = np.full(len(self.ev), -1, np.int64)
        if self.cev is None:
            self.cev = np.zeros((0, N_CE), np.int64)

    def __len__(self) -> int:
        return len(self.ev)


def _col(table: pa.Table, name: str, fill: int = -1) -> np.ndarray:
    col = table[name].cast(pa.int64())
    if col.null_count:
        col = pc.fill_null(col, fill)
    return col.to_numpy().astype(np.int64)


def event_codes(table: pa.Table) -> np.ndarray:
    """The `event` dictionary column as EVENT_NAMES codes, whatever the dictionary's order."""
    col = table["event"].combine_chunks() if table.num_rows else None
    if col is None:
        return np.zeros(0, np.int64)
    if isinstance(col, pa.DictionaryArray):
        names = col.dictionary.to_pylist()
        remap = np.array([EVENT_CODE.get(n, -1) for n in names], np.int64)
        return remap[col.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
    return np.array([EVENT_CODE.get(n, -1) for n in col.to_pylist()], np.int64)


def event_arrays(data: TraceData) -> EventArrays:
    """The engine's columns of `data.events`, built once per events table (observe, simulate
    and the report all ask for them)."""
    cached = getattr(data, "_event_arrays", None)
    if cached is not None and cached[0] is data.events:
        return cached[1]
    arrays = _event_arrays(data.events)
    data._event_arrays = (data.events, arrays)  # type: ignore[attr-defined]
    return arrays


def _event_arrays(t: pa.Table) -> EventArrays:
    pfn = t["pfn"]
    pfn_np = pc.fill_null(pfn, 0).to_numpy().astype(np.int64) if t.num_rows else np.zeros(0,
                                                                                          np.int64)
    if t.num_rows:
        pfn_np[pc.is_null(pfn).to_numpy(zero_copy_only=False)] = -1
        pfn_np[t["failed"].to_numpy(zero_copy_only=False)] = -1
    ev = event_codes(t)
    cidx, cev = _compaction_arrays(t, ev)
    arrays = EventArrays(
        seq=_col(t, "seq"), ts=_col(t, "ts_ns"), ev=ev, pfn=pfn_np,
        order=_col(t, "order"), mt=_col(t, "migratetype"), cpu=_col(t, "cpu"),
        refill=_col(t, "percpu_refill"), ford=_col(t, "fallback_order"),
        fmt=_col(t, "fallback_migratetype"), chown=_col(t, "change_ownership"),
        irq=_col(t, "irq_flags", 0), preempt=_col(t, "preempt_depth"),
        gfp=_col(t, "gfp_flags"), pid=_col(t, "pid"), cidx=cidx, cev=cev,
    )
    return _in_causal_order(arrays)


def _in_causal_order(e: EventArrays) -> EventArrays:
    """The arrays in causal_order (each CPU's order kept; see causal.py)."""
    from replay.engine.causal import causal_order

    perm = causal_order(e.ev, e.pfn, e.cpu, e.ts)
    if perm is None:
        return e
    fields = {name: getattr(e, name)[perm] for name in (
        "seq", "ts", "ev", "pfn", "order", "mt", "cpu", "refill", "ford", "fmt", "chown", "irq",
        "preempt", "gfp", "pid", "cidx")}
    moved = int(np.count_nonzero(perm != np.arange(len(perm))))
    return EventArrays(**fields, cev=e.cev, reordered=moved)


def _compaction_arrays(t: pa.Table, ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cidx (row of each compaction event in cev, -1 elsewhere) and the cev matrix."""
    rows = np.flatnonzero(ev >= EV_FIRST_COMPACTION)
    cidx = np.full(len(ev), -1, np.int64)
    cidx[rows] = np.arange(len(rows))
    cev = np.full((len(rows), N_CE), -1, np.int64)
    if not len(rows) or "start_pfn" not in t.column_names:
        return cidx, cev
    sub = t.take(pa.array(rows))
    for k, name in enumerate(_CE_COLUMNS):
        if name == "status":
            cev[:, k] = dictionary_codes(sub[name], lambda n: COMPACT_STATUS_NAMES.index(n)
                                    if n in COMPACT_STATUS_NAMES else -1)
        else:
            cev[:, k] = _col(sub, name)
    cev[:, CE_ZONE_TYPE] = dictionary_codes(sub["zone"], lambda n: ZONE_TYPE_OF_NAME.get(n, -1))
    cev[:, CE_TASK] = dictionary_codes(sub["comm"], _task_kind)
    return cidx, cev


def _task_kind(comm: str | None) -> int:
    """The kernel thread a compaction event came from (kswapdN, kcompactdN), by its comm."""
    if comm and comm.startswith("kswapd"):
        return TASK_KSWAPD
    if comm and comm.startswith("kcompactd"):
        return TASK_KCOMPACTD
    return TASK_OTHER


def dictionary_codes(column, code_of) -> np.ndarray:
    """A dictionary column's values mapped through code_of (nulls: code_of(None) or -1)."""
    col = column.combine_chunks()
    if not isinstance(col, pa.DictionaryArray):
        return np.array([code_of(v) if v is not None else -1 for v in col.to_pylist()],
                        np.int64)
    codes = np.array([code_of(n) for n in col.dictionary.to_pylist()] + [code_of(None)],
                     np.int64)
    idx = col.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes[idx]


def marker_positions(data: TraceData, seq: np.ndarray) -> dict[str, int]:
    """'start.buddyinfo begin' -> the index of the first event after that marker."""
    out: dict[str, int] = {}
    ordered = np.maximum.accumulate(seq) if len(seq) else seq  # causal_order moves a few back
    for row in data.markers.to_pylist():
        text = (row["text"] or "").strip()
        if text.startswith("kcapture: "):
            key = text[len("kcapture: "):]
            out.setdefault(key, int(np.searchsorted(ordered, row["seq"])))
    return out
