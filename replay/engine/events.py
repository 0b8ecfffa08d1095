"""The events table as the flat numpy columns the engine's loops take, plus marker positions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replay.trace.result import TraceData
from replay.trace.schema import EVENT_CODE


@dataclass
class EventArrays:
    """int64 columns (nulls as -1), in trace order."""

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
    return EventArrays(
        seq=_col(t, "seq"), ts=_col(t, "ts_ns"), ev=event_codes(t), pfn=pfn_np,
        order=_col(t, "order"), mt=_col(t, "migratetype"), cpu=_col(t, "cpu"),
        refill=_col(t, "percpu_refill"), ford=_col(t, "fallback_order"),
        fmt=_col(t, "fallback_migratetype"), chown=_col(t, "change_ownership"),
        irq=_col(t, "irq_flags", 0), preempt=_col(t, "preempt_depth"),
        gfp=_col(t, "gfp_flags"), pid=_col(t, "pid"),
    )


def marker_positions(data: TraceData, seq: np.ndarray) -> dict[str, int]:
    """'start.buddyinfo begin' -> the index of the first event after that marker."""
    out: dict[str, int] = {}
    for row in data.markers.to_pylist():
        text = (row["text"] or "").strip()
        if text.startswith("kcapture: "):
            key = text[len("kcapture: "):]
            out.setdefault(key, int(np.searchsorted(seq, row["seq"])))
    return out
