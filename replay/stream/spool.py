"""The engine-order spool: a trace's replay columns on disk, read back a chunk at a time.

The plan pass writes every event once, in the order the engine replays it (causal order), one
file per column in compact types; the later passes read row ranges forward or backward and
widen them to the int64 arrays the compiled kernels take. Reads go through the page cache into
fresh arrays, so memory holds only the chunks in use whatever the trace's length. Files live in
a temporary folder (under $TMPDIR) removed when the spool is closed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from replay.engine.events import N_CE

DTYPES: dict[str, type] = {
    "seq": np.int64, "row": np.int64, "ts": np.int64, "ev": np.int8, "pfn": np.int64,
    "order": np.int8, "mt": np.int8, "cpu": np.int16, "refill": np.int8, "ford": np.int8,
    "fmt": np.int8, "chown": np.int8, "irq": np.uint8, "preempt": np.int8, "gfp": np.int64,
    "pid": np.int32, "comm": np.int32, "cidx": np.int64, "stack": np.int64, "claim": np.int8,
    "disp": np.int8,
}
ENGINE = ("seq", "ts", "ev", "pfn", "order", "mt", "cpu", "refill", "ford", "fmt", "chown",
          "irq", "preempt", "gfp", "pid", "cidx")


class Spool:
    """Column files of one trace in engine order (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pagereplay-", dir=directory))
        self.n = 0
        self.n_cev = 0
        self._out: dict[str, object] = {}

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.bin"

    def append(self, cols: dict[str, np.ndarray], cev: np.ndarray | None = None) -> None:
        """Append rows (every column of DTYPES present in `cols` is written)."""
        n = None
        for name, dtype in DTYPES.items():
            if name not in cols:
                continue
            f = self._out.get(name)
            if f is None:
                f = self._out[name] = open(self._path(name), "ab")  # noqa: SIM115
                if self.n:  # a column first seen late: earlier rows are -1
                    np.full(self.n, -1, dtype).tofile(f)
            a = np.asarray(cols[name])
            n = len(a)
            a.astype(dtype, copy=False).tofile(f)
        if cev is not None and len(cev):
            f = self._out.get("cev")
            if f is None:
                f = self._out["cev"] = open(self._path("cev"), "ab")  # noqa: SIM115
            np.ascontiguousarray(cev, np.int64).tofile(f)
            self.n_cev += len(cev)
        self.n += n or 0

    def close_writer(self) -> None:
        for f in self._out.values():
            f.close()  # type: ignore[attr-defined]
        self._out = {}

    def has(self, name: str) -> bool:
        return self._path(name).exists()

    def read(self, name: str, start: int, stop: int, widen: bool = True) -> np.ndarray:
        """Rows [start, stop) of one column (int64 unless widen=False); -1 where it was never
        written."""
        dtype = DTYPES[name]
        start, stop = max(start, 0), min(stop, self.n)
        count = max(stop - start, 0)
        path = self._path(name)
        if not path.exists():
            return np.full(count, -1, np.int64 if widen else dtype)
        with open(path, "rb") as f:
            a = np.fromfile(f, dtype, count, offset=start * np.dtype(dtype).itemsize)
        return a.astype(np.int64) if widen else a

    def read_many(self, names, start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: self.read(name, start, stop) for name in names}

    def read_cev(self, start: int, stop: int) -> np.ndarray:
        """Compaction rows [start, stop)."""
        count = max(min(stop, self.n_cev) - start, 0)
        if not count:
            return np.zeros((0, N_CE), np.int64)
        with open(self._path("cev"), "rb") as f:
            a = np.fromfile(f, np.int64, count * N_CE, offset=start * N_CE * 8)
        return a.reshape(count, N_CE)

    def write_at(self, name: str, start: int, values: np.ndarray) -> None:
        """Overwrite rows from `start` (a column later passes fill in, such as disp); the
        column is created (-1 everywhere) on first use."""
        dtype = DTYPES[name]
        path = self._path(name)
        if name in self._out:
            self._out[name].flush()  # type: ignore[attr-defined]
        if not path.exists():
            self._fill(path, dtype)
        with open(path, "r+b") as f:
            f.seek(start * np.dtype(dtype).itemsize)
            np.asarray(values).astype(dtype, copy=False).tofile(f)

    def _fill(self, path: Path, dtype) -> None:
        step = 1 << 22
        with open(path, "wb") as f:
            for a in range(0, self.n, step):
                np.full(min(step, self.n - a), -1, dtype).tofile(f)

    def ts_at(self, index: np.ndarray) -> np.ndarray:
        """Timestamps of events at engine indices (random access)."""
        index = np.asarray(index, np.int64)
        if not len(index):
            return np.zeros(0, np.int64)
        m = np.memmap(self._path("ts"), np.int64, "r", shape=(self.n,))
        try:
            return np.asarray(m[np.clip(index, 0, max(self.n - 1, 0))], np.int64)
        finally:
            del m

    def searchsorted_ts(self, values: np.ndarray, side: str = "left") -> np.ndarray:
        """np.searchsorted over the ts column (as over EventArrays.ts), touching only the
        pages the binary search visits."""
        m = np.memmap(self._path("ts"), np.int64, "r", shape=(self.n,))
        try:
            return np.searchsorted(m, values, side=side)
        finally:
            del m

    def cleanup(self) -> None:
        self.close_writer()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


class _Column:
    """One spool column indexed like an array (random access; a few rows at a time)."""

    def __init__(self, spool: Spool, name: str) -> None:
        self.spool = spool
        self.name = name

    def __len__(self) -> int:
        return self.spool.n

    def __getitem__(self, index):
        n = self.spool.n
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            return self.spool.read(self.name, start, stop)[::step]
        idx = np.asarray(index, np.int64)
        idx = np.where(idx < 0, idx + n, idx)
        m = np.memmap(self.spool._path(self.name), DTYPES[self.name], "r", shape=(n,))
        try:
            out = np.asarray(m[idx], np.int64)
        finally:
            del m
        return int(out) if out.ndim == 0 else out


class SpoolEvents:
    """A stand-in for EventArrays over a spool: len(), and .ts / .seq by index."""

    def __init__(self, spool: Spool, reordered: int = 0) -> None:
        self.spool = spool
        self.reordered = reordered
        self.ts = _Column(spool, "ts")
        self.seq = _Column(spool, "seq")

    def __len__(self) -> int:
        return self.spool.n
