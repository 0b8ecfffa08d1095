"""One batch of the events table as the flat int64 columns the streamed passes use.

The same conversions as replay.engine.events.event_arrays (nulls as -1, a failed allocation's
pfn as -1, event codes whatever the dictionary's order, compaction fields in CE_* rows), batch
by batch, plus what the metrics and explain need beside the engine's columns: comm as a code of
one dictionary for the whole trace, fragmenting, and the call chain's stack id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replay.engine.events import N_CE, _compaction_arrays, event_codes

# int64 columns of a batch, in the order the spool stores them (engine order there)
ENGINE_COLUMNS = ("seq", "ts", "ev", "pfn", "order", "mt", "cpu", "refill", "ford", "fmt",
                  "chown", "irq", "preempt", "gfp", "pid")
EXTRA = ("comm", "frag", "stack")
_SOURCE = {"seq": "seq", "ts": "ts_ns", "order": "order", "mt": "migratetype", "cpu": "cpu",
           "refill": "percpu_refill", "ford": "fallback_order", "fmt": "fallback_migratetype",
           "chown": "change_ownership", "irq": "irq_flags", "preempt": "preempt_depth",
           "gfp": "gfp_flags", "pid": "pid", "frag": "fragmenting", "stack": "stack_id"}


class CommTable:
    """One code per distinct comm over the whole trace (codes in order of first sight)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []

    def code(self, name: str) -> int:
        c = self.index.get(name)
        if c is None:
            c = self.index[name] = len(self.names)
            self.names.append(name)
        return c

    def codes(self, column) -> np.ndarray:
        """A dictionary (or string) column as codes; null as -1."""
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        parts = []
        for ch in chunks:
            if isinstance(ch, pa.DictionaryArray):
                remap = np.array([self.code(s) for s in ch.dictionary.to_pylist()] + [-1],
                                 np.int64)
                idx = ch.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
                parts.append(remap[idx])
            else:
                parts.append(np.array([self.code(s) if s is not None else -1
                                       for s in ch.to_pylist()], np.int64))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def starting_with(self, prefix: str) -> np.ndarray:
        """A bool per code: the comm starts with `prefix`."""
        return np.array([n.startswith(prefix) for n in self.names], bool)


def _int64(column, fill: int = -1) -> np.ndarray:
    column = column.cast(pa.int64())
    if column.null_count:
        column = pc.fill_null(column, fill)
    return column.to_numpy(zero_copy_only=False).astype(np.int64)


def batch_columns(batch: pa.RecordBatch | pa.Table, comms: CommTable
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(columns, cev) of a batch: int64 columns named as EventArrays' fields (plus comm,
    frag, stack and `cidx`, the row of each compaction event in `cev`, -1 elsewhere)."""
    t = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    n = t.num_rows
    cols: dict[str, np.ndarray] = {}
    pfn = t["pfn"]
    if n:
        p = pc.fill_null(pfn, 0).to_numpy().astype(np.int64)
        if pfn.null_count:
            p[pc.is_null(pfn).to_numpy(zero_copy_only=False)] = -1
        p[t["failed"].to_numpy(zero_copy_only=False)] = -1
    else:
        p = np.zeros(0, np.int64)
    cols["pfn"] = p
    cols["failed"] = t["failed"].to_numpy(zero_copy_only=False).astype(np.int64) if n \
        else np.zeros(0, np.int64)
    ev = event_codes(t)
    cols["ev"] = ev
    for name, src in _SOURCE.items():
        if src in t.column_names:
            cols[name] = _int64(t[src], 0 if name == "irq" else -1)
        else:
            cols[name] = np.full(n, -1, np.int64)
    cols["comm"] = comms.codes(t["comm"]) if n else np.zeros(0, np.int64)
    cidx, cev = _compaction_arrays(t, ev)
    cols["cidx"] = cidx
    return cols, cev if len(cev) else np.zeros((0, N_CE), np.int64)


def take_columns(cols: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in cols.items()}


def concat_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass
class ColumnBatch:
    """A batch read straight into columns (a trace.dat): its kmem rows as int64 columns with
    comm as codes into `comm_names`, and its compaction rows, if any, as a record batch."""

    cols: dict[str, np.ndarray]
    comm_names: list[str]
    compaction: pa.RecordBatch | None = None

    @property
    def num_rows(self) -> int:
        return len(self.cols["ev"]) + (self.compaction.num_rows if self.compaction else 0)


def column_batch_columns(cb: ColumnBatch, comms: CommTable
                         ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """batch_columns' result for a ColumnBatch: the comm codes made the trace's, the
    compaction rows converted and put among the kmem rows in seq order."""
    cols = dict(cb.cols)
    remap = np.array([comms.code(n) for n in cb.comm_names] + [-1], np.int64)
    cols["comm"] = remap[cols["comm"]]
    if cb.compaction is None or not cb.compaction.num_rows:
        return cols, np.zeros((0, N_CE), np.int64)
    ccols, cev = batch_columns(cb.compaction, comms)
    merged = {k: np.concatenate([cols[k], ccols[k]]) for k in cols}
    order = np.argsort(merged["seq"], kind="stable")
    return {k: v[order] for k, v in merged.items()}, cev
