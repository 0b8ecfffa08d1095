"""Dense ids for keys (one or two int64s per row), numbered in order of first sight.

A compiled open-addressing table: each batch costs one pass over its rows, where np.unique
would sort them. The per-task tables (per_process, explain's culprits) key rows with it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_EMPTY = -1


@njit(cache=True, nogil=True, _nrt=False)
def _slot(tk, k0, k1):
    mask = tk.shape[0] - 1
    h = ((k0 * 0x5BD1E995) ^ (k1 * 0x2545F491) ^ (k0 >> 31)) & mask
    return h


@njit(cache=True, nogil=True, _nrt=False)
def _assign(tk, tv, used, keys, out, new, nnew, j0):
    """Ids of keys[j0:] into out; new keys into new[nnew]. Returns the row to resume from
    after the table grows (when half full), or the row count when done."""
    mask = tk.shape[0] - 1
    for j in range(j0, keys.shape[0]):
        if 2 * (used[0] + 1) > tk.shape[0]:
            return j
        k0 = keys[j, 0]
        k1 = keys[j, 1]
        h = _slot(tk, k0, k1)
        while True:
            if tv[h] == _EMPTY:
                tk[h, 0] = k0
                tk[h, 1] = k1
                tv[h] = used[0]
                out[j] = used[0]
                new[nnew[0], 0] = k0
                new[nnew[0], 1] = k1
                nnew[0] += 1
                used[0] += 1
                break
            if tk[h, 0] == k0 and tk[h, 1] == k1:
                out[j] = tv[h]
                break
            h = (h + 1) & mask
    return keys.shape[0]


@njit(cache=True, nogil=True, _nrt=False)
def _rehash(tk, tv, nk, nv):
    mask = nk.shape[0] - 1
    for h in range(tk.shape[0]):
        if tv[h] != _EMPTY:
            g = _slot(nk, tk[h, 0], tk[h, 1])
            while nv[g] != _EMPTY:
                g = (g + 1) & mask
            nk[g, 0] = tk[h, 0]
            nk[g, 1] = tk[h, 1]
            nv[g] = tv[h]


class IdMap:
    """ids(keys) -> (ids, the keys first seen in this call, in id order)."""

    def __init__(self, capacity: int = 1 << 12) -> None:
        self.tk = np.zeros((capacity, 2), np.int64)
        self.tv = np.full(capacity, _EMPTY, np.int64)
        self.used = np.zeros(1, np.int64)

    def __len__(self) -> int:
        return int(self.used[0])

    def ids(self, k0: np.ndarray, k1: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        n = len(k0)
        keys = np.empty((n, 2), np.int64)
        keys[:, 0] = k0
        keys[:, 1] = k1 if k1 is not None else 0
        out = np.empty(n, np.int64)
        new = np.empty((n, 2), np.int64)
        nnew = np.zeros(1, np.int64)
        j = 0
        while True:
            j = _assign(self.tk, self.tv, self.used, keys, out, new, nnew, j)
            if j >= n:
                return out, new[: nnew[0]]
            nk = np.zeros((2 * len(self.tv), 2), np.int64)
            nv = np.full(2 * len(self.tv), _EMPTY, np.int64)
            _rehash(self.tk, self.tv, nk, nv)
            self.tk, self.tv = nk, nv
