"""Kernel stacks printed in text traces, deduplicated into the events table's stack columns.

ftrace's `stacktrace` option (or a `stacktrace` event trigger) and `trace-cmd record -T` print
the kernel stack after an event as one `=> frame` line per return address; the scanner
(scanner.py) interns the frames and hands back each stack as a run of frame codes. Here the
frames get trace-wide ids, each distinct run of frames a `stack_id` (in order of first
appearance, as for perf.data), and the rows their `stack_id`, `callchain_syms` (the frames as
the tracer named them) and `callchain` (the return addresses, where the tracer printed them).

A frame as printed (kernel/trace/trace_output.c seq_print_ip_sym; trace-cmd's
trace_stack_handler):

    ftrace                 __alloc_pages                       (the default)
                           __alloc_pages+0x1a6/0x330 [mod]     (options/sym-offset)
                           __alloc_pages+0x1a6/0x330 <ffffffff8129a1b6>   (options/sym-addr)
                           0xffffffffc0a01234, 0               (no symbol; a zero address)
    trace-cmd report       __alloc_pages (ffffffff8129a1b6)    ffffffffc0a01234 (no symbol)
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

_ADDRESSED = re.compile(r"^(?P<sym>.*?)\s*(?:<(?P<a>[0-9a-fA-F]+)>|\((?P<b>[0-9a-fA-F]+)\))$")
_BARE = re.compile(r"^(?:0x)?[0-9a-fA-F]+$")
_SYMS_TYPE = pa.dictionary(pa.int32(), pa.string())


def parse_frame(text: str) -> tuple[str, int | None]:
    """(symbol as printed, address or None) of one frame line's text after `=> `."""
    m = _ADDRESSED.match(text)
    if m is not None:
        addr = int(m["a"] or m["b"], 16)
        return (m["sym"] or f"{addr:#x}"), addr
    if _BARE.match(text) and (text.startswith("0x") or len(text) >= 8 or text == "0"):
        addr = int(text, 16)
        return f"{addr:#x}", addr
    return text, None


class StackTable:
    """The trace's distinct frames and stacks, and the stack columns of a batch of rows."""

    def __init__(self) -> None:
        self._frame_index: dict[str, int] = {}
        self._frame_sym: list[int] = []  # frame id -> index into syms
        self._frame_addr: list[int] = []  # frame id -> address (0 when not printed)
        self._frame_has_addr: list[bool] = []
        self._sym_index: dict[str, int] = {}
        self.syms: list[str] = []
        self._stack_index: dict[tuple[int, ...], int] = {}
        self._flat: list[int] = []  # the frame ids of every stack, one after the other
        self._start: list[int] = []
        self._len: list[int] = []
        self._arrays: tuple | None = None  # numpy views of the lists above, rebuilt on growth

    def __len__(self) -> int:
        return len(self._start)

    def frame_id(self, text: str) -> int:
        """The trace-wide id of a frame, from its text as printed."""
        fid = self._frame_index.get(text)
        if fid is None:
            sym, addr = parse_frame(text)
            fid = len(self._frame_sym)
            self._frame_index[text] = fid
            if sym not in self._sym_index:
                self._sym_index[sym] = len(self.syms)
                self.syms.append(sym)
            self._frame_sym.append(self._sym_index[sym])
            self._frame_addr.append(addr or 0)
            self._frame_has_addr.append(addr is not None)
        return fid

    def stack_ids(self, frames: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The stack_id of each of a block's stacks: `frames` holds their frame ids one stack
        after the other, `lengths` their sizes. A stack without frames gets -1."""
        n = len(lengths)
        out = np.full(n, -1, np.int64)
        if n == 0 or not lengths.any():
            return out
        width = int(lengths.max())
        grid = np.full((n, width + 1), -1, np.int64)  # the length, then the frames
        grid[:, 0] = lengths
        starts = np.cumsum(lengths) - lengths
        row = np.repeat(np.arange(n), lengths)
        grid[row, 1 + np.arange(len(frames)) - np.repeat(starts, lengths)] = frames
        distinct, first, inverse = np.unique(grid, axis=0, return_index=True,
                                             return_inverse=True)
        ids = np.full(len(distinct), -1, np.int64)
        for k in np.argsort(first):  # new stacks numbered in order of appearance
            size = int(distinct[k, 0])
            if size:
                ids[k] = self._stack_id(tuple(distinct[k, 1:1 + size].tolist()))
        return ids[inverse.reshape(-1)]

    def _stack_id(self, key: tuple[int, ...]) -> int:
        sid = self._stack_index.get(key)
        if sid is None:
            sid = len(self._start)
            self._stack_index[key] = sid
            self._start.append(len(self._flat))
            self._len.append(len(key))
            self._flat.extend(key)
            self._arrays = None
        return sid

    def _numpy(self) -> tuple:
        if self._arrays is None:
            flat = np.asarray(self._flat, np.int64)
            fsym = np.asarray(self._frame_sym, np.int32)
            faddr = np.asarray(self._frame_addr, np.uint64)
            fhas = np.asarray(self._frame_has_addr, bool)
            start = np.asarray(self._start, np.int64)
            length = np.asarray(self._len, np.int64)
            has_addr = np.logical_and.reduceat(fhas[flat], start) if len(start) else \
                np.zeros(0, bool)
            self._arrays = (fsym[flat], faddr[flat], start, length, has_addr)
        return self._arrays

    def columns(self, stack_of_row: np.ndarray) -> list[pa.Array]:
        """stack_id, callchain and callchain_syms of rows whose stack ids are `stack_of_row`
        (-1: no stack). callchain is null where a frame's address was not printed."""
        sym_of, addr_of, start, length, has_addr = self._numpy()
        valid = stack_of_row >= 0
        sid = np.where(valid, stack_of_row, 0)
        ids = pa.array(stack_of_row.astype(np.int32), pa.int32(), mask=~valid)
        lens = np.where(valid, length[sid] if len(length) else 0, 0)
        syms_values, syms_offsets = _gather(sym_of, start[sid] if len(start) else lens, lens)
        syms = pa.ListArray.from_arrays(
            pa.array(syms_offsets), pa.DictionaryArray.from_arrays(
                pa.array(syms_values, pa.int32()), pa.array(self.syms, pa.string())),
            type=pa.list_(_SYMS_TYPE), mask=pa.array(~valid))
        addressed = valid & (has_addr[sid] if len(has_addr) else False)
        alens = np.where(addressed, lens, 0)
        addr_values, addr_offsets = _gather(addr_of, start[sid] if len(start) else alens, alens)
        chain = pa.ListArray.from_arrays(pa.array(addr_offsets),
                                         pa.array(addr_values, pa.uint64()),
                                         mask=pa.array(~addressed))
        return [ids, chain, syms]


def _gather(values: np.ndarray, starts: np.ndarray, lens: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """values[starts[i]:starts[i] + lens[i]] for every i, concatenated, and the list offsets."""
    offsets = np.zeros(len(lens) + 1, np.int32)
    np.cumsum(lens, out=offsets[1:])
    total = int(offsets[-1])
    idx = np.repeat(starts - offsets[:-1], lens) + np.arange(total)
    return values[idx], offsets
