"""THP fault gfp masks and the `thp_defrag` what-if (mm/huge_memory.c vma_thp_gfp_mask, 6.1).

A THP fault allocates an order-9 folio with the gfp its defrag mode gives (docs/model.md):

| defrag | not madvised | madvised |
|---|---|---|
| always | GFP_TRANSHUGE \\| __GFP_NORETRY | GFP_TRANSHUGE |
| defer | GFP_TRANSHUGE_LIGHT \\| __GFP_KSWAPD_RECLAIM | same |
| defer+madvise | GFP_TRANSHUGE_LIGHT \\| __GFP_KSWAPD_RECLAIM | GFP_TRANSHUGE |
| madvise | GFP_TRANSHUGE_LIGHT | GFP_TRANSHUGE |
| never | GFP_TRANSHUGE_LIGHT | GFP_TRANSHUGE_LIGHT |

and `vma_alloc_folio()` tries the local node first (`| __GFP_THISNODE | __GFP_NORETRY`), then,
for a mask that may reclaim, once more without them. The what-if rewrites each traced THP
request to the other mode's mask; a second try the other mode would not make is dropped. A
second try the recorded mode did not make cannot be invented: the trace has none.
"""

from __future__ import annotations

import numpy as np

from replay.trace.gfp import GFP_TRANSHUGE, GFP_TRANSHUGE_LIGHT, G

HPAGE_PMD_ORDER = 9
__GFP_COMP = G["__GFP_COMP"]
__GFP_MOVABLE = G["__GFP_MOVABLE"]
_NORETRY, _THISNODE = G["__GFP_NORETRY"], G["__GFP_THISNODE"]
_KSWAPD, _DIRECT = G["__GFP_KSWAPD_RECLAIM"], G["__GFP_DIRECT_RECLAIM"]

DEFRAG_GFP: dict[str, tuple[int, int]] = {  # mode -> (not madvised, madvised)
    "always": (GFP_TRANSHUGE | _NORETRY, GFP_TRANSHUGE),
    "defer": (GFP_TRANSHUGE_LIGHT | _KSWAPD, GFP_TRANSHUGE_LIGHT | _KSWAPD),
    "defer+madvise": (GFP_TRANSHUGE_LIGHT | _KSWAPD, GFP_TRANSHUGE),
    "madvise": (GFP_TRANSHUGE_LIGHT, GFP_TRANSHUGE),
    "never": (GFP_TRANSHUGE_LIGHT, GFP_TRANSHUGE_LIGHT),
}


def is_thp_fault(gfp: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Requests that look like a THP fault: order 9 with GFP_TRANSHUGE_LIGHT's bits."""
    g = gfp.astype(np.int64)
    return (order == HPAGE_PMD_ORDER) & (g >= 0) & ((g & GFP_TRANSHUGE_LIGHT)
                                                     == GFP_TRANSHUGE_LIGHT)


def thp_defrag_gfp(gfp: np.ndarray, order: np.ndarray, recorded: str, what_if: str
                   ) -> np.ndarray:
    """The gfp column with THP faults rewritten from the recorded defrag mode to `what_if`;
    -1 marks a dropped second try."""
    out = gfp.astype(np.int64).copy()
    thp = is_thp_fault(out, order)
    if not thp.any() or recorded == what_if:
        return out
    g = out[thp]
    first = (g & _THISNODE) != 0
    # madvised: only visible where the recorded mode gives madvised faults another mask
    if recorded == "always":
        madvised = ~first & ((g & _NORETRY) == 0)
    elif recorded in ("defer+madvise", "madvise"):
        madvised = (g & _DIRECT) != 0
    else:
        madvised = np.zeros(len(g), bool)
    plain, madv = DEFRAG_GFP[what_if]
    base = np.where(madvised, madv, plain)
    extra = g & ~(GFP_TRANSHUGE | _NORETRY | _THISNODE | _KSWAPD)  # __GFP_ZERO, ACCOUNT...
    new = base | extra | np.where(first, _THISNODE | _NORETRY, 0)
    new = np.where(~first & ((base & _DIRECT) == 0), -1, new)
    out[thp] = new
    return out
