"""GFP flags: the kernel's bit values and its print table (include/trace/events/mmflags.h)."""

from __future__ import annotations

# include/linux/gfp_types.h, without LOCKDEP (__GFP_BITS_SHIFT 27).
___GFP = {
    "__GFP_DMA": 0x1,
    "__GFP_HIGHMEM": 0x2,
    "__GFP_DMA32": 0x4,
    "__GFP_MOVABLE": 0x8,
    "__GFP_RECLAIMABLE": 0x10,
    "__GFP_HIGH": 0x20,
    "__GFP_IO": 0x40,
    "__GFP_FS": 0x80,
    "__GFP_ZERO": 0x100,
    "__GFP_ATOMIC": 0x200,
    "__GFP_DIRECT_RECLAIM": 0x400,
    "__GFP_KSWAPD_RECLAIM": 0x800,
    "__GFP_WRITE": 0x1000,
    "__GFP_NOWARN": 0x2000,
    "__GFP_RETRY_MAYFAIL": 0x4000,
    "__GFP_NOFAIL": 0x8000,
    "__GFP_NORETRY": 0x10000,
    "__GFP_MEMALLOC": 0x20000,
    "__GFP_COMP": 0x40000,
    "__GFP_NOMEMALLOC": 0x80000,
    "__GFP_HARDWALL": 0x100000,
    "__GFP_THISNODE": 0x200000,
    "__GFP_ACCOUNT": 0x400000,
    "__GFP_ZEROTAGS": 0x800000,
}
G = ___GFP
__GFP_RECLAIM = G["__GFP_DIRECT_RECLAIM"] | G["__GFP_KSWAPD_RECLAIM"]
_IO_FS = G["__GFP_IO"] | G["__GFP_FS"]
GFP_ATOMIC = G["__GFP_HIGH"] | G["__GFP_ATOMIC"] | G["__GFP_KSWAPD_RECLAIM"]
GFP_KERNEL = __GFP_RECLAIM | _IO_FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | G["__GFP_ACCOUNT"]
GFP_NOWAIT = G["__GFP_KSWAPD_RECLAIM"]
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | G["__GFP_IO"]
GFP_USER = GFP_KERNEL | G["__GFP_HARDWALL"]
GFP_DMA = G["__GFP_DMA"]
GFP_DMA32 = G["__GFP_DMA32"]
GFP_HIGHUSER = GFP_USER | G["__GFP_HIGHMEM"]
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | G["__GFP_MOVABLE"]
GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | G["__GFP_COMP"] | G["__GFP_NOMEMALLOC"]
                       | G["__GFP_NOWARN"]) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | G["__GFP_DIRECT_RECLAIM"]

# The print table, in the kernel's order (__def_gfpflag_names): first match wins, bits cleared.
GFP_PRINT_TABLE: tuple[tuple[str, int], ...] = (
    ("GFP_TRANSHUGE", GFP_TRANSHUGE),
    ("GFP_TRANSHUGE_LIGHT", GFP_TRANSHUGE_LIGHT),
    ("GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE),
    ("GFP_HIGHUSER", GFP_HIGHUSER),
    ("GFP_USER", GFP_USER),
    ("GFP_KERNEL_ACCOUNT", GFP_KERNEL_ACCOUNT),
    ("GFP_KERNEL", GFP_KERNEL),
    ("GFP_NOFS", GFP_NOFS),
    ("GFP_ATOMIC", GFP_ATOMIC),
    ("GFP_NOIO", GFP_NOIO),
    ("GFP_NOWAIT", GFP_NOWAIT),
    ("GFP_DMA", GFP_DMA),
    ("__GFP_HIGHMEM", G["__GFP_HIGHMEM"]),
    ("GFP_DMA32", GFP_DMA32),
    ("__GFP_HIGH", G["__GFP_HIGH"]),
    ("__GFP_ATOMIC", G["__GFP_ATOMIC"]),
    ("__GFP_IO", G["__GFP_IO"]),
    ("__GFP_FS", G["__GFP_FS"]),
    ("__GFP_NOWARN", G["__GFP_NOWARN"]),
    ("__GFP_RETRY_MAYFAIL", G["__GFP_RETRY_MAYFAIL"]),
    ("__GFP_NOFAIL", G["__GFP_NOFAIL"]),
    ("__GFP_NORETRY", G["__GFP_NORETRY"]),
    ("__GFP_COMP", G["__GFP_COMP"]),
    ("__GFP_ZERO", G["__GFP_ZERO"]),
    ("__GFP_NOMEMALLOC", G["__GFP_NOMEMALLOC"]),
    ("__GFP_MEMALLOC", G["__GFP_MEMALLOC"]),
    ("__GFP_HARDWALL", G["__GFP_HARDWALL"]),
    ("__GFP_THISNODE", G["__GFP_THISNODE"]),
    ("__GFP_RECLAIMABLE", G["__GFP_RECLAIMABLE"]),
    ("__GFP_MOVABLE", G["__GFP_MOVABLE"]),
    ("__GFP_ACCOUNT", G["__GFP_ACCOUNT"]),
    ("__GFP_WRITE", G["__GFP_WRITE"]),
    ("__GFP_RECLAIM", __GFP_RECLAIM),
    ("__GFP_DIRECT_RECLAIM", G["__GFP_DIRECT_RECLAIM"]),
    ("__GFP_KSWAPD_RECLAIM", G["__GFP_KSWAPD_RECLAIM"]),
    ("__GFP_ZEROTAGS", G["__GFP_ZEROTAGS"]),
)
GFP_BY_NAME: dict[str, int] = {name: mask for name, mask in GFP_PRINT_TABLE}
GFP_BY_NAME.update(___GFP)
GFP_BY_NAME["GFP_NOWAIT"] = GFP_NOWAIT
GFP_BY_NAME["none"] = 0


def gfp_to_text(mask: int) -> str:
    """Render a mask as the kernel's trace_print_flags_seq() does."""
    if mask == 0:
        return "none"
    parts = []
    for name, bits in GFP_PRINT_TABLE:
        if bits and (mask & bits) == bits:
            parts.append(name)
            mask &= ~bits
    if mask:
        parts.append(f"0x{mask:x}")
    return "|".join(parts)


def gfp_from_text(text: str) -> int | None:
    """Parse printed gfp_flags (names joined by '|', hex or decimal); None if not gfp text."""
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    mask = 0
    for part in text.split("|"):
        if part in GFP_BY_NAME:
            mask |= GFP_BY_NAME[part]
        elif part.startswith("0x"):
            try:
                mask |= int(part, 16)
            except ValueError:
                return None
        else:
            return None
    return mask & 0xFFFFFFFF
