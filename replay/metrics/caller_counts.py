"""perf kmem --page --caller's table on a stream: the call chains and their allocations
gathered batch by batch, then the same table as `peers.caller_table` over the whole events.

A trace read in batches (replay.stream) never holds its events table, so the call chains
(`stack_id` -> callchain, callchain_syms) and the gfp masks' texts are learned as the batches
go by (`learn_chains`), and the successful mm_page_alloc events with a call chain are counted
per (stack_id, order, migratetype, gfp_flags) (`CallerCounts`); `caller_table_from` joins the
one call-site rule (callsites.py) to those counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from replay.metrics.callsites import Chain, callsites
from replay.metrics.peers import caller_rows
from replay.trace.schema import EV_ALLOC
from replay.trace.symbols import Symbols

_MERGE_PARTS = 32  # partial groupings kept before they are merged


@dataclass
class ChainBook:
    """The call chains and gfp texts of a trace, learned from its batches as they are read."""

    chains: dict[int, Chain] = field(default_factory=dict)
    gfp_texts: dict[int, str | None] = field(default_factory=dict)

    def learn(self, table: pa.Table | pa.RecordBatch, stack: np.ndarray,
              gfp: np.ndarray) -> None:
        """The chains of stack ids not seen yet (`stack`: the batch's stack_id, -1 for none;
        `gfp`: its gfp_flags, -1 for none), and the texts of new gfp masks on those rows."""
        has = np.flatnonzero(stack >= 0)
        if not len(has):
            return
        ids, first = np.unique(stack[has], return_index=True)
        new = [k for k, s in enumerate(ids.tolist()) if s not in self.chains]
        if new:
            rows = pa.array(has[first[new]])
            names = table.schema.names
            chain = table["callchain"].take(rows).to_pylist() if "callchain" in names \
                else [None] * len(new)
            syms = table["callchain_syms"].take(rows).to_pylist() \
                if "callchain_syms" in names else [None] * len(new)
            for k, c, s in zip(new, chain, syms, strict=True):
                self.chains[int(ids[k])] = (c, s)
        masks, at = np.unique(gfp[has], return_index=True)
        fresh = [k for k, m in enumerate(masks.tolist()) if m >= 0 and m not in self.gfp_texts]
        if fresh and "gfp_text" in table.schema.names:
            texts = table["gfp_text"].take(pa.array(has[at[fresh]])).to_pylist()
            for k, t in zip(fresh, texts, strict=True):
                self.gfp_texts[int(masks[k])] = t

    @property
    def named_by_trace(self) -> bool:
        """The tracer printed the frames' names (ftrace's stacktrace, trace-cmd -T)."""
        return any(s is not None for _, s in self.chains.values())

    def frame(self) -> pl.DataFrame:
        """stack_id, callchain, callchain_syms: one row per chain (as callsites takes them)."""
        ids = sorted(self.chains)
        return pl.DataFrame({
            "stack_id": pl.Series(ids, dtype=pl.Int32),
            "callchain": pl.Series([self.chains[i][0] for i in ids],
                                   dtype=pl.List(pl.UInt64)),
            "callchain_syms": pl.Series([self.chains[i][1] for i in ids],
                                        dtype=pl.List(pl.Utf8)),
        })


class CallerCounts:
    """Successful mm_page_alloc events with a call chain, counted per (stack_id, order,
    migratetype, gfp_flags), and the distinct stack ids of all events fed."""

    def __init__(self) -> None:
        self.parts: list[pl.DataFrame] = []
        self.seen = np.zeros(0, bool)  # by stack id: on some event fed
        self.events = 0  # events with a call chain

    def feed(self, c: dict[str, np.ndarray]) -> None:
        """Rows as int64 columns (replay.stream.columns: ev, pfn -1 when failed, order, mt,
        gfp, stack, -1 for none)."""
        stack = c.get("stack")
        if stack is None or not len(stack):
            return
        has = stack >= 0
        n = int(np.count_nonzero(has))
        if not n:
            return
        self.events += n
        top = int(stack.max()) + 1
        if top > len(self.seen):
            self.seen = np.concatenate([self.seen, np.zeros(max(top, 2 * len(self.seen))
                                                            - len(self.seen), bool)])
        self.seen[stack[has]] = True
        sel = has & (c["ev"] == EV_ALLOC) & (c["pfn"] >= 0)
        if not sel.any():
            return
        gfp = c["gfp"][sel]
        part = pl.DataFrame({
            "stack_id": stack[sel].astype(np.int32), "order": c["order"][sel].astype(np.int8),
            "migratetype": c["mt"][sel].astype(np.int8),
            "gfp_flags": pl.Series(np.where(gfp >= 0, gfp, 0).astype(np.uint32)).set(
                pl.Series(gfp < 0), None)})
        self.parts.append(_group(part.with_columns(
            pl.lit(2, pl.Int64).pow(pl.col("order").cast(pl.Int64).clip(lower_bound=0))
            .alias("pages"), pl.lit(1, pl.Int64).alias("hits"))))
        if len(self.parts) > _MERGE_PARTS:
            self.parts = [_group(pl.concat(self.parts))]

    @property
    def stacks(self) -> int:
        """Distinct call chains among the events fed."""
        return int(np.count_nonzero(self.seen))

    def groups(self, gfp_texts: dict[int, str | None]) -> pl.DataFrame:
        """stack_id, order, migratetype, gfp_flags, pages, hits, gfp_text."""
        g = _group(pl.concat(self.parts)) if self.parts else _group(pl.DataFrame(schema={
            "stack_id": pl.Int32, "order": pl.Int8, "migratetype": pl.Int8,
            "gfp_flags": pl.UInt32, "pages": pl.Int64, "hits": pl.Int64}))
        return g.with_columns(pl.col("gfp_flags").cast(pl.Int64)
                              .replace_strict(gfp_texts, default=None, return_dtype=pl.Utf8)
                              .alias("gfp_text"))


def _group(df: pl.DataFrame) -> pl.DataFrame:
    return df.group_by("stack_id", "order", "migratetype", "gfp_flags").agg(
        pl.col("pages").sum(), pl.col("hits").sum())


def caller_table_from(counts: CallerCounts, book: ChainBook,
                      symbols: Symbols | None = None) -> pl.DataFrame:
    """peers.caller_table of the events `counts` was fed, from the counts and the chains."""
    return caller_rows(counts.groups(book.gfp_texts).lazy(), callsites(book.frame(), symbols))
