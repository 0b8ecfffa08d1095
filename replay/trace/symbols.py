"""Kernel symbols for call chains: System.map or /proc/kallsyms, looked up by binary search.

Both files are lines of `ADDRESS TYPE NAME [MODULE]` (`ffffffff81000000 T _text`); only code
symbols (types t, T, w, W) are kept. A call-chain address maps to the greatest symbol at or
below it, printed `name+0xoff`.

KASLR: a System.map holds link-time addresses and a kallsyms from another boot holds that boot's;
the perf.data tells where the recording kernel's `_text` was (perf's kernel map,
`[kernel.kallsyms]_text`), so `relocate()` shifts the core kernel's symbols to match.

    syms = Symbols.load("System.map-6.1.0-56-amd64").relocate(stats.kernel_reloc)
    syms.name(0xffffffff95af9486)          # '__alloc_pages+0x256'
    syms.callsite(chain)                   # first address outside the page allocator
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from replay.errors import InputError

CODE_TYPES = frozenset("tTwW")
_LINE = re.compile(rb"^([0-9a-fA-F]{1,16})\s+(\S)\s+(\S+)(?:\s+\[(\S+)\])?")

# Frames a page-allocator call chain starts with before its real caller: the tracepoint's own
# frames, then the allocator's entry points. The second line is perf kmem's pattern
# (builtin-kmem.c: `^_?_?(alloc|get_free|get_zeroed)_pages?`, a prefix match that also covers
# __alloc_pages_slowpath, alloc_pages_vma, alloc_pages_exact, 6.10+'s *_noprof and
# alloc_pages_mpol...); the folio wrappers, 6.15+'s frozen pages, the fast path under
# __alloc_pages (where zone_locked and extfrag fire) and the free path are added here (perf
# reports __folio_alloc as the caller of every folio). The one rule for call sites
# (replay.metrics.callsites), on names from a System.map or kallsyms or printed by the tracer.
ALLOCATOR_FRAMES = re.compile(
    r"^(__traceiter_|perf_trace_|trace_event_raw_event_|__bpf_trace_|trace_call_bpf)"
    r"|^_?_?(alloc|get_free|get_zeroed)_pages?"
    r"|^_?_?folio_alloc|^vma_alloc_folio|^_?_?alloc_frozen_pages"
    r"|^get_page_from_freelist|^rmqueue|^__rmqueue"
    r"|^_?_?free_(unref_)?pages?|^free_the_page|^__free_pages_ok|^free_pcppages_bulk"
    r"|^free_unref_page_(list|commit|prepare)|^free_pcp_prepare|^free_frozen_pages"
)


class Symbols:
    """Sorted code symbols: `addr` (uint64), `names`, and a relocation already applied."""

    def __init__(self, addr: np.ndarray, names: list[str], source: str = "",
                 text: int | None = None) -> None:
        order = np.argsort(addr, kind="stable")
        self.addr = np.asarray(addr, np.uint64)[order]
        self.names = [names[i] for i in order]
        self.source = source
        self.text = text  # address of _text in this table (after any relocation)
        self._is_allocator: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"Symbols({self.source!r}, {len(self)} code symbols)"

    @classmethod
    def load(cls, path: str | Path) -> Symbols:
        """Read a System.map or kallsyms file (plain or .gz). Raises InputError when it has no
        code symbols (e.g. Debian's placeholder System.map, or kallsyms read without root)."""
        path = Path(path)
        try:
            raw = path.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"{path}: cannot read symbols: {exc}") from None
        return cls.parse(raw, str(path))

    @classmethod
    def parse(cls, raw: bytes, source: str = "<symbols>") -> Symbols:
        """Symbols from the text of a System.map or kallsyms."""
        addrs: list[int] = []
        names: list[str] = []
        text = None
        for line in raw.splitlines():
            m = _LINE.match(line)
            if m is None:
                continue
            name = m[3].decode("utf-8", "replace")
            value = int(m[1], 16)
            if name == "_text" and m[4] is None:
                text = value
            if m[2].decode() not in CODE_TYPES or value == 0:
                continue
            module = m[4]
            addrs.append(value)
            names.append(f"{name} [{module.decode()}]" if module else name)
        if not names:
            raise InputError(f"{source}: no code symbols (expected System.map or kallsyms lines "
                             "like 'ffffffff81000000 T _text'; kallsyms read without root shows "
                             "zero addresses, and Debian's System.map in linux-image is a "
                             "placeholder: the real one is in the -dbg package)")
        return cls(np.array(addrs, np.uint64), names, source, text)

    def relocate(self, kernel_reloc: dict | None) -> Symbols:
        """These symbols moved to where the recording kernel was: `kernel_reloc` is
        {"symbol": "_text", "address": runtime address} (TraceStats.kernel_reloc, from
        perf's kernel map). Module symbols (`name [module]`) are left as they are."""
        if not kernel_reloc or self.text is None:
            return self
        target = int(kernel_reloc["address"])
        shift = (target - self.text) % (1 << 64)
        if shift == 0:
            return self
        core = np.array([not n.endswith("]") for n in self.names])
        moved = self.addr.copy()
        moved[core] = moved[core] + np.uint64(shift)  # wraps modulo 2**64, as addresses do
        out = Symbols(moved, self.names, self.source, (self.text + shift) % (1 << 64))
        return out

    def lookup(self, addrs: np.ndarray | Sequence[int]) -> np.ndarray:
        """Index of the symbol holding each address (-1 below the first symbol)."""
        a = np.asarray(addrs, dtype=np.uint64)
        return np.searchsorted(self.addr, a, side="right").astype(np.int64) - 1

    def function(self, addr: int) -> str | None:
        """Name of the function holding `addr`, None when below every symbol."""
        i = int(self.lookup([addr])[0])
        return self.names[i] if i >= 0 else None

    def name(self, addr: int) -> str:
        """`function+0xoff` for a code address (hex when no symbol holds it)."""
        i = int(self.lookup([addr])[0])
        if i < 0:
            return f"{int(addr):#x}"
        off = int(addr) - int(self.addr[i])
        return f"{self.names[i]}+{off:#x}"

    def names_of(self, addrs: np.ndarray | Sequence[int]) -> list[str]:
        """name() of many addresses."""
        return [self.name(int(a)) for a in addrs]

    def is_allocator(self, addrs: np.ndarray | Sequence[int]) -> np.ndarray:
        """True where an address lies in a tracing or page-allocator frame (ALLOCATOR_FRAMES)."""
        if self._is_allocator is None:
            self._is_allocator = np.array(
                [bool(ALLOCATOR_FRAMES.match(n)) for n in self.names] + [False])
        idx = self.lookup(addrs)
        return self._is_allocator[idx]  # -1 picks the trailing False

    def callsite(self, chain: Sequence[int] | np.ndarray | None) -> int | None:
        """The first address of a kernel call chain (innermost first) outside the tracepoint
        and page-allocator frames: who asked for (or gave back) the page. None for an empty
        chain; the last address when every frame is the allocator's."""
        if chain is None or len(chain) == 0:
            return None
        arr = np.asarray(chain, dtype=np.uint64)
        outside = np.flatnonzero(~self.is_allocator(arr))
        return int(arr[outside[0]]) if outside.size else int(arr[-1])

