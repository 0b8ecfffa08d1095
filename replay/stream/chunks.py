"""Chunks of the engine-order spool as the engine's EventArrays, read ahead on a thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from replay.engine.events import EventArrays
from replay.stream.spool import ENGINE, Spool

CHUNK_ROWS = 1 << 18


@dataclass
class Chunk:
    """Events [c0, c1) of the trace: EventArrays with local indices, disp, and extra columns."""

    c0: int
    c1: int
    e: EventArrays
    disp: np.ndarray  # int8
    extra: dict[str, np.ndarray]


def read_chunk(spool: Spool, c0: int, c1: int, extra: tuple[str, ...] = ()) -> Chunk:
    cols = spool.read_many(ENGINE, c0, c1)
    cidx = cols.pop("cidx")
    has = cidx >= 0
    if has.any():
        first, last = int(cidx[has].min()), int(cidx[has].max())
        cev = spool.read_cev(first, last + 1)
        cidx = np.where(has, cidx - first, -1)
    else:
        cev = None
    e = EventArrays(**cols, cidx=cidx, cev=cev)
    disp = spool.read("disp", c0, c1, widen=False)
    return Chunk(c0, c1, e, disp, {name: spool.read(name, c0, c1) for name in extra})


class ChunkReader:
    """Chunks of [start, n) in order, the next one read while the current is in use.

    get(i) gives the chunk holding event i; chunks are CHUNK_ROWS long from `start`."""

    def __init__(self, spool: Spool, start: int = 0, rows: int = CHUNK_ROWS,
                 extra: tuple[str, ...] = (), prefetch: bool = True) -> None:
        self.spool = spool
        self.start = start
        self.rows = max(int(rows), 1)
        self.extra = extra
        self.prefetch = prefetch
        self.current: Chunk | None = None
        self._next: tuple[int, threading.Thread, list] | None = None

    def bounds(self, i: int) -> tuple[int, int]:
        k = (i - self.start) // self.rows
        c0 = self.start + k * self.rows
        return c0, min(c0 + self.rows, self.spool.n)

    def get(self, i: int) -> Chunk:
        cur = self.current
        if cur is not None and cur.c0 <= i < cur.c1:
            return cur
        c0, c1 = self.bounds(i)
        nxt = self._next
        if nxt is not None and nxt[0] == c0:
            nxt[1].join()
            chunk = nxt[2][0]
        else:
            if nxt is not None:
                nxt[1].join()
            chunk = read_chunk(self.spool, c0, c1, self.extra)
        self._next = None
        self.current = chunk
        if self.prefetch and c1 < self.spool.n:
            box: list = []
            t = threading.Thread(target=lambda: box.append(read_chunk(
                self.spool, c1, min(c1 + self.rows, self.spool.n), self.extra)), daemon=True)
            t.start()
            self._next = (c1, t, box)
        return chunk

    def close(self) -> None:
        if self._next is not None:
            self._next[1].join()
            self._next = None
        self.current = None
