"""Call sites of allocations from their kernel stacks, as `perf kmem --caller` finds them.

One rule for every source of stacks: the call site is the first frame of the stack (innermost
first) outside the tracepoint and the page allocator's entry points
(`replay.trace.symbols.ALLOCATOR_FRAMES`: perf's `^_?_?(alloc|get_free|get_zeroed)_pages?`,
tools/perf/builtin-kmem.c, with the folio, frozen-page, freelist, free-path and tracing frames).

A stack comes as the frames' names, printed by the tracer (ftrace's `stacktrace` option or
trigger, `trace-cmd record -T`: the `callchain_syms` column), and/or as return addresses
(perf.data -g, and ftrace with options/sym-addr or trace-cmd beside the names: `callchain`).
Names need nothing more. Addresses alone are named from a System.map or kallsyms
(`replay.trace.symbols.Symbols`, the commands' `--symbols`); without one a call site is the
chain's first address, an allocator frame (what perf kmem reports without kallsyms).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from replay.metrics.fallbacks import Frame, as_lazy
from replay.trace.symbols import ALLOCATOR_FRAMES, Symbols

# A frame as ftrace names it: `func`, `func+0x1a6/0x330`, `func+0x1a6/0x330 [module]`
_FRAME = re.compile(r"^(?P<func>[^+\s]+)(?:\+(?P<off>0x[0-9a-fA-F]+)(?:/0x[0-9a-fA-F]+)?)?"
                    r"(?:\s+\[(?P<mod>[^\]]+)\])?$")


# one stack as the trace gives it: (return addresses or None, frame names or None)
Chain = tuple[list[int] | None, list[str] | None]


@dataclass(frozen=True)
class CallSite:
    """Who asked for the page: `function` ("pgd_alloc"), `name` with the offset where known
    ("pgd_alloc+0x33"), and the return address where the trace has addresses."""

    function: str
    name: str
    addr: int | None


def frame_parts(sym: str) -> tuple[str, str]:
    """(function, name) of a frame as the tracer printed it: `func+0x1a6/0x330 [mod]` gives
    ("func [mod]", "func+0x1a6 [mod]"), as `Symbols` names module code."""
    m = _FRAME.match(sym)
    if m is None:
        return sym, sym
    mod = f" [{m['mod']}]" if m["mod"] else ""
    off = f"+{m['off']}" if m["off"] else ""
    return m["func"] + mod, m["func"] + off + mod


def is_allocator_frame(function: str) -> bool:
    """A tracepoint or page-allocator frame (not a call site)."""
    return bool(ALLOCATOR_FRAMES.match(function))


def site(chain: Sequence[int] | None, syms: Sequence[str] | None = None,
         symbols: Symbols | None = None) -> CallSite | None:
    """The call site of one stack: its frames' names `syms` when the tracer printed them,
    else its addresses `chain` named with `symbols`. None for an empty stack."""
    if syms:
        functions = [frame_parts(s)[0] for s in syms]
        i = next((k for k, f in enumerate(functions) if not is_allocator_frame(f)),
                 len(syms) - 1)
        addr = int(chain[i]) if chain is not None and len(chain) == len(syms) else None
        return CallSite(functions[i], frame_parts(syms[i])[1], addr)
    if chain is None or len(chain) == 0:
        return None
    if symbols is None:
        first = f"{int(chain[0]):#x}"
        return CallSite(first, first, int(chain[0]))
    addr = symbols.callsite(chain)
    return CallSite(symbols.function(addr) or f"{addr:#x}", symbols.name(addr), addr)


def callsite(chain: Sequence[int] | None, symbols: Symbols | None = None,
             syms: Sequence[str] | None = None) -> str | None:
    """The call site's name with its offset (`pte_alloc_one+0x40`), None without a stack."""
    s = site(chain, syms, symbols)
    return s.name if s is not None else None


def named_by_trace(frame: Frame) -> bool:
    """The stacks carry the frames' names (ftrace's stacktrace, trace-cmd -T)."""
    lf = as_lazy(frame)
    if "callchain_syms" not in lf.collect_schema().names():
        return False
    return bool(lf.select(pl.col("callchain_syms").is_not_null().any()).collect().item())


def callsites(frame: Frame, symbols: Symbols | None = None) -> pl.DataFrame:
    """stack_id -> callsite_addr (uint64, null without addresses), callsite (the function)
    and callsite_name (with the offset), one row per distinct stack."""
    lf = as_lazy(frame).filter(pl.col("stack_id").is_not_null())
    names = lf.collect_schema().names()
    syms = pl.col("callchain_syms") if "callchain_syms" in names else pl.lit(None)
    stacks = (lf.group_by("stack_id")
              .agg(pl.col("callchain").first(), syms.first().alias("callchain_syms"))
              .collect())
    rows = []
    for stack_id, chain, frames in stacks.iter_rows():
        s = site(chain, frames, symbols)
        rows.append((stack_id, s.addr, s.function, s.name) if s else (stack_id, None, None, None))
    return pl.DataFrame(rows, orient="row",
                        schema={"stack_id": pl.Int32, "callsite_addr": pl.UInt64,
                                "callsite": pl.Utf8, "callsite_name": pl.Utf8})
