"""Call sites of allocations from their kernel call chains, as `perf kmem --caller` finds them.

The call site is the first address of the chain (innermost first) outside the page allocator's
entry points: perf's rule (tools/perf/builtin-kmem.c, the regex
`^_?_?(alloc|get_free|get_zeroed)_pages?`), extended with 6.1's folio and vma entry points.
Addresses are named from a System.map or /proc/kallsyms the user gives (`--symbols FILE`);
without one a call site is the raw address of the chain's first frame.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

from replay.errors import InputError

ALLOCATOR = re.compile(r"^_?_?(alloc|get_free|get_zeroed)_pages?"
                       r"|^(__)?folio_alloc|^vma_alloc_folio|^alloc_pages_vma|^__alloc_pages"
                       r"|^get_page_from_freelist|^rmqueue")


@dataclass
class Symbols:
    """Text symbols sorted by address."""

    addrs: list[int]
    names: list[str]

    def name(self, addr: int) -> str | None:
        """`func+0xoff` for an address inside a known function, None outside."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0:
            return None
        return f"{self.names[i]}+0x{addr - self.addrs[i]:x}"


def load_symbols(path: str | Path) -> Symbols:
    """Read a System.map or kallsyms file (`ADDRESS TYPE NAME [module]` per line)."""
    pairs = []
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[1] not in "tTwW":
            continue
        try:
            pairs.append((int(parts[0], 16), parts[2]))
        except ValueError:
            continue
    if not pairs:
        raise InputError(f"{path}: no text symbols (expected System.map or kallsyms lines)")
    pairs.sort()
    return Symbols([a for a, _ in pairs], [n for _, n in pairs])


def callsite(chain: list[int] | None, symbols: Symbols | None) -> str | None:
    """The allocation's call site from its chain (innermost first)."""
    if not chain:
        return None
    if symbols is None:
        return f"0x{chain[0]:x}"
    for addr in chain:
        name = symbols.name(addr)
        if name is None:
            continue
        if not ALLOCATOR.match(name.split("+", 1)[0]):
            return name
    return symbols.name(chain[0]) or f"0x{chain[0]:x}"
