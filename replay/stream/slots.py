"""Dense per-page indices for the streamed passes' per-page state.

A pfn inside the machine is its own slot; a pfn beyond it (a corrupt line, a page the machine
description does not cover) gets the next slot above the machine's pages, in order of first
sight, so per-page arrays stay the size of the machine's memory whatever the trace says.
"""

from __future__ import annotations

import numpy as np


class PfnSlots:
    def __init__(self, dense: int) -> None:
        self.dense = max(int(dense), 1)
        self._big = np.zeros(0, np.int64)  # overflow pfns, sorted
        self._big_slot = np.zeros(0, np.int64)

    @property
    def size(self) -> int:
        """Slots in use: per-page arrays need this many entries."""
        return self.dense + len(self._big)

    def slots(self, pfn: np.ndarray) -> np.ndarray:
        """The slot of each pfn (-1 for pfn < 0)."""
        out = pfn.copy()
        big = pfn >= self.dense
        if big.any():
            vals, first = np.unique(pfn[big], return_index=True)
            fresh = ~np.isin(vals, self._big)
            if fresh.any():
                new = vals[fresh][np.argsort(first[fresh])]  # in order of first sight
                slots = np.arange(self.size, self.size + len(new), dtype=np.int64)
                keys = np.concatenate([self._big, np.asarray(new, np.int64)])
                vals_s = np.concatenate([self._big_slot, slots])
                order = np.argsort(keys, kind="stable")
                self._big, self._big_slot = keys[order], vals_s[order]
            out[big] = self._big_slot[np.searchsorted(self._big, pfn[big])]
        return out
