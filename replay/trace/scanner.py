"""The compiled byte scanner: one block of ftrace / trace-cmd text lines into numpy columns.

One pass per line, no Python per line. Lines are parsed on anchors, not columns:
comm is everything before the last `-PID` that precedes `[CPU]` (or `(TGID) [CPU]`), the
irq-info column is optional (4 to 8 characters), the timestamp is `secs.frac` or an integer,
the event name may carry a `subsystem:` prefix and may be padded (trace-cmd). Payload fields
are `key=value` tokens in any order (the kernel's TP_printk order or trace-cmd -R's struct order).
Rare lines (headers, markers, lost-event lines, bad-line samples) are handed back to Python as
(kind, line, start, end) records. Strings (comm, gfp text, other event names, stack frames) are
interned in a per-block hash table so Python only decodes each distinct string once per block.

Kernel stacks (ftrace's `stacktrace` option or trigger, `trace-cmd record -T`): after an event
the kernel prints `<stack trace>` in its own context line (trace-cmd: a `kernel_stack:` event
`<stack trace >`) and one ` => frame` line per return address
(kernel/trace/trace_output.c trace_stack_print; trace-cmd's trace_stack_handler). The stack is
the next entry in the same CPU's ring buffer, so it belongs to the last event of that CPU, with
other CPUs' lines possibly in between. Frames are interned; each stack is handed back as
(row, first frame, frames, cpu), row -1 when its event is in an earlier block.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from replay.trace.schema import COMPACTION_EVENT_NAMES, EV_ALLOC

# Special-line kinds handed back to Python.
SP_HASH, SP_LOST, SP_PREAMBLE, SP_MARKER, SP_BAD, SP_COMPACTION = 1, 2, 3, 4, 5, 6
# Interned-string kinds.
STR_COMM, STR_GFP, STR_OTHER, STR_FRAME = 0, 1, 2, 3
# Counters (index into the `counts` array).
C_LINES, C_EVENTS, C_HASH, C_BLANK, C_LOST, C_PREAMBLE, C_MARKERS, C_OTHER = range(8)
C_COMPACTION = 8  # compaction lines handed back (counted as events once parsed)
C_STACK = 9  # '<stack trace>' and ' => ' lines of stacks kept (their event is a row)
C_STACK_OTHER = 10  # stack lines of other events (other tracepoints, markers, user stacks)
C_BAD0 = 11
BAD_REASONS: tuple[str, ...] = (
    "no 'task-pid [cpu]' context",
    "bad irq-info flags",
    "bad timestamp",
    "bad event name",
    "malformed field",
    "missing field",
    "unparsed payload ([FAILED TO PARSE])",
    "non-text bytes",
    "stack frame without '<stack trace>'",
)
BAD_NONTEXT, BAD_FRAME = 7, 8
N_COUNTS = C_BAD0 + len(BAD_REASONS)
MAX_SAMPLES_PER_BLOCK = 16

# Names recognised after the timestamp: the six kmem events, old aliases, markers, and the
# compaction events (rare: handed back whole, their payloads parsed in Python).
_NAMES = (
    "mm_page_alloc",
    "mm_page_free",
    "mm_page_free_batched",
    "mm_page_alloc_zone_locked",
    "mm_page_pcpu_drain",
    "mm_page_alloc_extfrag",
    "mm_page_free_direct",
    "mm_pagevec_free",
    "tracing_mark_write",
    "print",
    *COMPACTION_EVENT_NAMES,
    "kernel_stack",
    "user_stack",
)
EV_STACK = -100  # trace-cmd's kernel_stack event: a kernel stack trace's first line
EV_USER_STACK = -101  # trace-cmd's user_stack event: a user stack, skipped
# -2: marker; -3 - k: the k-th compaction event
NAME_EVENT = np.array([0, 1, 2, 3, 4, 5, 1, 2, -2, -2]
                      + [-3 - k for k in range(len(COMPACTION_EVENT_NAMES))]
                      + [EV_STACK, EV_USER_STACK], dtype=np.int8)
NAME_BYTES = np.zeros((len(_NAMES), 48), dtype=np.uint8)
NAME_LENS = np.zeros(len(_NAMES), dtype=np.int64)
for _i, _n in enumerate(_NAMES):
    NAME_BYTES[_i, : len(_n)] = np.frombuffer(_n.encode(), dtype=np.uint8)
    NAME_LENS[_i] = len(_n)

# Required fields per event (bit per field F_*).
F_PFN, F_ORDER, F_MT, F_GFP, F_REFILL, F_AORD, F_FORD, F_PBORD, F_AMT, F_FMT, F_FRAG, F_CHOWN = (
    1 << i for i in range(12)
)
REQUIRED = np.array(
    [
        F_PFN | F_ORDER | F_MT | F_GFP,
        F_PFN | F_ORDER,
        F_PFN,
        F_PFN | F_ORDER | F_MT | F_REFILL,
        F_PFN | F_ORDER | F_MT,
        F_PFN | F_AORD | F_FORD | F_AMT | F_FMT,
    ],
    dtype=np.int64,
)


class Columns:
    """Preallocated output columns for one block (numpy, wrapped zero-copy as Arrow later)."""

    def __init__(self, capacity: int) -> None:
        self.seq = np.empty(capacity, np.int64)
        self.ts = np.empty(capacity, np.int64)
        self.cpu = np.empty(capacity, np.int16)
        self.pid = np.empty(capacity, np.int32)
        self.tgid = np.empty(capacity, np.int32)
        self.comm = np.empty(capacity, np.int32)
        self.irq = np.empty(capacity, np.uint8)
        self.preempt = np.empty(capacity, np.int8)
        self.migdis = np.empty(capacity, np.int8)
        self.event = np.empty(capacity, np.int8)
        self.pfn = np.empty(capacity, np.uint64)
        self.order = np.empty(capacity, np.int8)
        self.mt = np.empty(capacity, np.int8)
        self.gfp = np.empty(capacity, np.int32)
        self.refill = np.empty(capacity, np.int8)
        self.ford = np.empty(capacity, np.int8)
        self.pbord = np.empty(capacity, np.int8)
        self.fmt = np.empty(capacity, np.int8)
        self.frag = np.empty(capacity, np.int8)
        self.chown = np.empty(capacity, np.int8)

    def arrays(self) -> tuple:
        return (
            self.seq, self.ts, self.cpu, self.pid, self.tgid, self.comm, self.irq, self.preempt,
            self.migdis, self.event, self.pfn, self.order, self.mt, self.gfp, self.refill,
            self.ford, self.pbord, self.fmt, self.frag, self.chown,
        )


class Interner:
    """Per-block open-addressing hash table of (kind, bytes) -> local code."""

    def __init__(self, slots: int = 1 << 13) -> None:
        self.keys = np.zeros(slots, np.uint64)
        self.vals = np.full(slots, -1, np.int32)
        self.ent = np.zeros((slots // 2, 3), np.int64)  # start, length, kind
        self.counts = np.zeros(slots // 2, np.int64)  # uses (other-event counts)


class Stacks:
    """A block's stack traces: (row, first frame, frame count, cpu) and the frames' codes."""

    def __init__(self, nbytes: int, cpus: int = 4096, grow: Stacks | None = None) -> None:
        scale = 4 if grow is not None else 1  # a retry after the tables filled up
        stacks = len(grow.stk) if grow is not None else nbytes // 256 + 64
        frames = len(grow.frames) if grow is not None else nbytes // 16 + 256
        self.stk = np.empty((stacks * scale, 4), np.int64)
        self.frames = np.empty(frames * scale, np.int32)
        # per CPU: the line after which a stack may only go to a newer row (that of the CPU's
        # last event that is not a row, or of its last stack trace); 0: none in this block
        self.fence = np.zeros(cpus, np.int64)
        self.n = np.zeros(2, np.int64)  # stacks, frames


class Specials:
    """Rare lines handed back to Python: kind, line, start, end, plus parsed context."""

    def __init__(self, capacity: int = 4096) -> None:
        self.rec = np.zeros((capacity, 14), np.int64)  # kind, line, start, end, ts, cpu, pid,
        # comm code, payload start, irq flags, preempt depth, migrate-disable, tgid, name index


@njit(inline="always")
def _is_digit(c):
    return 48 <= c <= 57


@njit(inline="always")
def _hexval(c):
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


@njit(inline="always")
def _intern(buf, start, length, kind, keys, vals, ent, nent):
    """FNV-1a hash of the bytes; returns (code, new nent); code -1 when the table is full.

    Consecutive lines mostly repeat the previous line's comm and gfp text, so the last string
    of each kind is checked first (ent[-1 - kind] holds start, length, code)."""
    lk = ent.shape[0] - 1 - kind
    if ent[lk, 1] == length and ent[lk, 2] >= 0:
        ls = ent[lk, 0]
        same = True
        for k in range(length):
            if buf[ls + k] != buf[start + k]:
                same = False
                break
        if same:
            return ent[lk, 2], nent
    code, nent = _intern_hashed(buf, start, length, kind, keys, vals, ent, nent)
    ent[lk, 0] = start
    ent[lk, 1] = length
    ent[lk, 2] = code
    return code, nent


@njit(inline="always")
def _intern_hashed(buf, start, length, kind, keys, vals, ent, nent):
    h = np.uint64(14695981039346656037) ^ np.uint64(kind + 1)
    for k in range(start, start + length):
        h = (h ^ np.uint64(buf[k])) * np.uint64(1099511628211)
    if h == 0:
        h = np.uint64(1)
    mask = keys.shape[0] - 1
    slot = np.int64(h & np.uint64(mask))
    while True:
        if keys[slot] == 0:
            if nent >= ent.shape[0] - 4:  # the last 3 rows cache the previous strings
                return -1, nent
            keys[slot] = h
            vals[slot] = nent
            ent[nent, 0] = start
            ent[nent, 1] = length
            ent[nent, 2] = kind
            return nent, nent + 1
        if keys[slot] == h:
            return vals[slot], nent
        slot = (slot + 1) & mask


@njit(inline="always")
def _starts(buf, s, e, text):
    """buf[s:e] starts with the bytes of `text` (a tuple of ints)."""
    if e - s < len(text):
        return False
    for k in range(len(text)):
        if buf[s + k] != text[k]:
            return False
    return True


_STACK_HDR = tuple(b"<stack trace")  # ftrace '<stack trace>', trace-cmd '<stack trace >'
_USER_HDR = tuple(b"<user stack trace>")


@njit(inline="always")
def _match_name(buf, n0, nlen, names, name_lens, name_event):
    """The event code of the name buf[n0:n0 + nlen] (NAME_EVENT), -1 for another name."""
    for i in range(names.shape[0]):
        if name_lens[i] == nlen:
            same = True
            for k in range(nlen):
                if buf[n0 + k] != names[i, k]:
                    same = False
                    break
            if same:
                return name_event[i]
    return -1


@njit(inline="always")
def _open_stack(cpu_v, line, nrow, cpu, seq, fence, stk, n):
    """A stack trace begins on `cpu_v` at `line`: returns its index (the open stack), -2 when
    the stack is not kept (the CPU's last event is not a row, or has its stack already), or
    -3 when the stack table is full. The CPU's last row is found by looking back from the
    newest row, no further than the fence (so rows cost nothing on traces without stacks)."""
    if cpu_v >= fence.shape[0]:
        return -2
    lim = fence[cpu_v]
    fence[cpu_v] = line  # one stack per event
    r = nrow - 1
    while r >= 0 and seq[r] > lim and cpu[r] != cpu_v:
        r -= 1
    if r >= 0 and seq[r] > lim:
        target = r
    elif r < 0 and lim == 0:
        target = -1  # no event of this CPU in the block yet: it is in an earlier block
    else:
        return -2
    if n[0] >= stk.shape[0]:
        return -3
    i = n[0]
    stk[i, 0] = target
    stk[i, 1] = n[1]
    stk[i, 2] = 0
    stk[i, 3] = cpu_v
    n[0] += 1
    return i


@njit(nogil=True, cache=True, _nrt=False)
def scan_block(  # noqa: C901 - one pass per line, kept in one function so numba inlines it all
    buf, words, nbytes, names, name_lens, name_event, required,
    seq, ts, cpu, pid, tgid, comm, irq, preempt, migdis, event, pfn, order, mt, gfp, refill,
    ford, pbord, fmt, frag, chown,
    keys, vals, ent, ent_counts, spec, counts, stk, frames, fence, nstk,
):
    """Scan buf[:nbytes] (whole lines). Returns (rows, n_strings, n_specials, status).

    status 0: ok; 1: string table full; 2: special table full; 3: row capacity too small;
    4: stack tables full. `seq` holds the 1-based line number inside the block. Stacks go to
    stk/frames (Stacks), their counts to nstk; `fence` ends as Stacks.fence describes.
    """
    nrow = 0
    nent = 0
    nspec = 0
    nsamples = 0
    line = 0
    pos = 0
    cap = seq.shape[0]
    speccap = spec.shape[0]
    cur = -2  # the stack whose frames follow: >= 0 kept, -2 skipped
    cur_line = -1  # the line of its header or last frame: frames must follow it directly
    while pos < nbytes:
        ls = pos
        le = pos
        # find the newline 8 bytes at a time (SWAR "has zero byte" on word ^ 0x0a0a...)
        while le < nbytes and (le & 7) != 0 and buf[le] != 10:
            le += 1
        if le < nbytes and buf[le] != 10:
            wi = le >> 3
            nw = nbytes >> 3
            while wi < nw:
                x = words[wi] ^ np.uint64(0x0A0A0A0A0A0A0A0A)
                if ((x - np.uint64(0x0101010101010101)) & ~x & np.uint64(0x8080808080808080)) != 0:
                    break
                wi += 1
            le = wi << 3
            while le < nbytes and buf[le] != 10:
                le += 1
        pos = le + 1
        line += 1
        counts[C_LINES] += 1
        e = le
        if e > ls and buf[e - 1] == 13:
            e -= 1
        # skip leading spaces
        s = ls
        while s < e and (buf[s] == 32 or buf[s] == 9):
            s += 1
        if s == e:
            counts[C_BLANK] += 1
            continue
        if buf[ls] == 35:  # '#' in the first column: a comment (a comm may start with '#')
            counts[C_HASH] += 1
            if nspec >= speccap:
                return nrow, nent, nspec, 2
            spec[nspec, 0] = SP_HASH
            spec[nspec, 1] = line
            spec[nspec, 2] = s
            spec[nspec, 3] = e
            nspec += 1
            continue
        if nrow >= cap:
            return nrow, nent, nspec, 3
        # ---- context: find '[digits]' preceded by '-pid' (and optional '(tgid)') ----
        bad = -1
        found = False
        b = s
        cpu_v = 0
        pid_v = 0
        tgid_v = -1
        comm_end = s
        after = s
        while b < e:
            if buf[b] == 91:  # '['
                k = b + 1
                v = 0
                while k < e and _is_digit(buf[k]):
                    v = v * 10 + (buf[k] - 48)
                    k += 1
                if k > b + 1 and k < e and buf[k] == 93 and b > s:  # ']'
                    j = b - 1
                    while j > s and buf[j] == 32:
                        j -= 1
                    tg = -1
                    ok = True
                    if buf[j] == 41:  # ')': TGID column
                        q = j - 1
                        tv = 0
                        mul = 1
                        dashes = 0
                        while q > s and buf[q] != 40:
                            if _is_digit(buf[q]):
                                tv += (buf[q] - 48) * mul
                                mul *= 10
                            elif buf[q] == 45:
                                dashes += 1
                            elif buf[q] != 32:
                                ok = False
                                break
                            q -= 1
                        if ok and q > s and buf[q] == 40:
                            tg = tv if dashes == 0 and mul > 1 else -1
                            j = q - 1
                            while j > s and buf[j] == 32:
                                j -= 1
                        else:
                            ok = False
                    if ok and _is_digit(buf[j]):
                        q = j
                        pv = 0
                        mul = 1
                        while q >= s and _is_digit(buf[q]):
                            pv += (buf[q] - 48) * mul
                            mul *= 10
                            q -= 1
                        if q >= s and buf[q] == 45:  # '-'
                            found = True
                            cpu_v = v
                            pid_v = pv
                            tgid_v = tg
                            comm_end = q
                            after = k + 1
                            break
            b += 1
        if not found:
            if e - s >= 4 and buf[s] == 67 and buf[s + 1] == 80 and buf[s + 2] == 85:  # 'CPU'
                if nspec >= speccap:
                    return nrow, nent, nspec, 2
                kind = SP_LOST if buf[s + 3] == 58 else SP_PREAMBLE  # 'CPU:' or 'CPU N is empty'
                counts[C_LOST if kind == SP_LOST else C_PREAMBLE] += 1
                spec[nspec, 0] = kind
                spec[nspec, 1] = line
                spec[nspec, 2] = s
                spec[nspec, 3] = e
                nspec += 1
                continue
            if (e - s >= 5 and buf[s] == 99 and buf[s + 1] == 112 and buf[s + 2] == 117
                    and buf[s + 3] == 115 and buf[s + 4] == 61) or (
                    e - s >= 7 and buf[s] == 118 and buf[s + 1] == 101 and buf[s + 2] == 114
                    and buf[s + 3] == 115):  # 'cpus=' / 'version'
                if nspec >= speccap:
                    return nrow, nent, nspec, 2
                counts[C_PREAMBLE] += 1
                spec[nspec, 0] = SP_PREAMBLE
                spec[nspec, 1] = line
                spec[nspec, 2] = s
                spec[nspec, 3] = e
                nspec += 1
                continue
            if e - s >= 2 and buf[s] == 61 and buf[s + 1] == 62:  # '=>': a stack frame
                if cur_line == line - 1 and cur >= 0:
                    f0 = s + 2
                    while f0 < e and buf[f0] == 32:
                        f0 += 1
                    f1 = e
                    while f1 > f0 and (buf[f1 - 1] == 32 or buf[f1 - 1] == 9):
                        f1 -= 1
                    if nstk[1] >= frames.shape[0]:
                        return nrow, nent, nspec, 4
                    code, nent = _intern_hashed(buf, f0, f1 - f0, STR_FRAME, keys, vals, ent,
                                                nent)
                    if code < 0:
                        return nrow, nent, nspec, 1
                    frames[nstk[1]] = code
                    nstk[1] += 1
                    stk[cur, 2] += 1
                    counts[C_STACK] += 1
                    cur_line = line
                    continue
                if cur_line == line - 1:
                    counts[C_STACK_OTHER] += 1
                    cur_line = line
                    continue
                bad = BAD_FRAME
            else:
                bad = 0
                for k in range(s, e):
                    if buf[k] < 9 or (13 < buf[k] < 32) or buf[k] == 127:
                        bad = BAD_NONTEXT
                        break
        # ---- irq-info flags (optional) and timestamp ----
        irq_v = 0
        pre_v = -1
        mig_v = -1
        ts_v = 0
        q = after
        if bad < 0:
            while q < e and buf[q] == 32:
                q += 1
            t0 = q
            while q < e and buf[q] != 32:
                q += 1
            if q > t0 and buf[q - 1] != 58:  # not 'ts:' -> an irq-info token
                flen = q - t0
                if flen < 4 or flen > 8:
                    bad = 1
                else:
                    irq_v = 128
                    c = buf[t0]
                    if c == 100:
                        irq_v |= 1
                    elif c == 68:
                        irq_v |= 3
                    elif c == 98:
                        irq_v |= 2
                    elif c != 46 and c != 88:
                        bad = 1
                    c = buf[t0 + 1]
                    if c == 78:
                        irq_v |= 12
                    elif c == 110:
                        irq_v |= 4
                    elif c == 112:
                        irq_v |= 8
                    elif c != 46 and c != 66 and c != 76 and c != 98:
                        bad = 1
                    c = buf[t0 + 2]
                    if c == 90:
                        irq_v |= 64 | 16
                    elif c == 122:
                        irq_v |= 64
                    elif c == 72:
                        irq_v |= 16 | 32
                    elif c == 104:
                        irq_v |= 16
                    elif c == 115:
                        irq_v |= 32
                    elif c != 46:
                        bad = 1
                    c = buf[t0 + 3]
                    if c == 46:
                        pre_v = 0
                    else:
                        pre_v = _hexval(c)
                        if pre_v < 0:
                            bad = 1
                    if flen >= 5:
                        c = buf[t0 + 4]
                        if c == 46:
                            mig_v = 0
                        else:
                            mig_v = _hexval(c)
                            if mig_v < 0:
                                bad = 1
                while q < e and buf[q] == 32:
                    q += 1
                t0 = q
                while q < e and buf[q] != 32:
                    q += 1
            if bad < 0:
                # timestamp token t0..q ends with ':'
                if q - t0 < 2 or buf[q - 1] != 58:
                    bad = 2
                else:
                    sec = 0
                    frac = 0
                    nfrac = -1
                    for k in range(t0, q - 1):
                        c = buf[k]
                        if _is_digit(c):
                            if nfrac >= 0:
                                if nfrac < 9:
                                    frac = frac * 10 + (c - 48)
                                    nfrac += 1
                                else:
                                    bad = 2
                            else:
                                sec = sec * 10 + (c - 48)
                        elif c == 46 and nfrac < 0:
                            nfrac = 0
                        else:
                            bad = 2
                            break
                    if bad < 0:
                        if nfrac < 0:
                            ts_v = sec
                        elif nfrac == 0:
                            bad = 2
                        else:
                            while nfrac < 9:
                                frac *= 10
                                nfrac += 1
                            ts_v = sec * 1000000000 + frac
        # ---- event name ----
        ev = -1
        pstart = q
        if bad < 0:
            while q < e and buf[q] == 32:
                q += 1
            n0 = q
            while True:
                while q < e and buf[q] != 58 and buf[q] != 32:
                    q += 1
                if q < e and buf[q] == 58 and q + 1 < e and buf[q + 1] != 32:
                    q += 1  # 'subsystem:' prefix: keep going
                    n0 = q
                    continue
                break
            nend = q
            if ((q >= e or buf[q] != 58 or q == n0) and q + 1 < e and buf[q] == 32
                    and buf[q + 1] == 60):  # options/sym-addr: a marker's 'ip <addr>:'
                r = q + 2
                while r < e and _hexval(buf[r]) >= 0:
                    r += 1
                if r > q + 2 and r + 1 < e and buf[r] == 62 and buf[r + 1] == 58:
                    q = r + 1
            if q >= e or buf[q] != 58 or q == n0:
                bad = 3
                # ftrace's '<stack trace>' (no event name: it is the ring buffer's own entry)
                if n0 < e and buf[n0] == 60 and _starts(buf, n0, e, _STACK_HDR):
                    cur = _open_stack(cpu_v, line, nrow, cpu, seq, fence, stk, nstk)
                    if cur == -3:
                        return nrow, nent, nspec, 4
                    cur_line = line
                    counts[C_STACK if cur >= 0 else C_STACK_OTHER] += 1
                    continue
                if n0 < e and buf[n0] == 60 and _starts(buf, n0, e, _USER_HDR):
                    cur = -2
                    cur_line = line
                    counts[C_STACK_OTHER] += 1
                    continue
            else:
                nlen = nend - n0
                ev = _match_name(buf, n0, nlen, names, name_lens, name_event)
                if ev == -1:
                    for k in range(n0, nend):
                        if buf[k] == 43:  # options/sym-offset: a marker's ip 'name+0x91/0x170'
                            if _match_name(buf, n0, k - n0, names, name_lens, name_event) == -2:
                                ev = -2
                            break
                pstart = q + 1
                while pstart < e and buf[pstart] == 32:
                    pstart += 1
                if ev < 0:  # not a kmem row
                    if ev == EV_STACK:  # trace-cmd's kernel_stack: '<stack trace >'
                        cur = _open_stack(cpu_v, line, nrow, cpu, seq, fence, stk, nstk)
                        if cur == -3:
                            return nrow, nent, nspec, 4
                        cur_line = line
                        counts[C_STACK if cur >= 0 else C_STACK_OTHER] += 1
                        continue
                    cur = -2  # frames right after the line are its own (trace-cmd's user_stack)
                    cur_line = line
                    if ev == EV_USER_STACK:  # the kernel stack may come next
                        counts[C_STACK_OTHER] += 1
                        continue
                    if cpu_v < fence.shape[0]:
                        fence[cpu_v] = line  # a stack that follows is this event's
                    if ev == -1:  # another tracepoint: count it by name
                        code, nent = _intern(buf, n0, nlen, STR_OTHER, keys, vals, ent, nent)
                        if code < 0:
                            return nrow, nent, nspec, 1
                        ent_counts[code] += 1
                        counts[C_OTHER] += 1
                        continue
        if bad < 0:
            ccode = -1
            cs = s
            if not (comm_end - cs == 5 and buf[cs] == 60 and buf[cs + 1] == 46
                    and buf[cs + 2] == 46 and buf[cs + 3] == 46 and buf[cs + 4] == 62):
                ccode, nent = _intern(buf, cs, comm_end - cs, STR_COMM, keys, vals, ent, nent)
                if ccode < 0:
                    return nrow, nent, nspec, 1
            if ev == -2:  # marker
                if nspec >= speccap:
                    return nrow, nent, nspec, 2
                counts[C_MARKERS] += 1
                spec[nspec, 0] = SP_MARKER
                spec[nspec, 1] = line
                spec[nspec, 2] = s
                spec[nspec, 3] = e
                spec[nspec, 4] = ts_v
                spec[nspec, 5] = cpu_v
                spec[nspec, 6] = pid_v
                spec[nspec, 7] = ccode
                spec[nspec, 8] = pstart
                nspec += 1
                continue
            if ev <= -3:  # a compaction event: its payload is parsed in Python
                if nspec >= speccap:
                    return nrow, nent, nspec, 2
                counts[C_COMPACTION] += 1
                spec[nspec, 0] = SP_COMPACTION
                spec[nspec, 1] = line
                spec[nspec, 2] = s
                spec[nspec, 3] = e
                spec[nspec, 4] = ts_v
                spec[nspec, 5] = cpu_v
                spec[nspec, 6] = pid_v
                spec[nspec, 7] = ccode
                spec[nspec, 8] = pstart
                spec[nspec, 9] = irq_v
                spec[nspec, 10] = pre_v
                spec[nspec, 11] = mig_v
                spec[nspec, 12] = tgid_v
                spec[nspec, 13] = -3 - ev
                nspec += 1
                continue
            # ---- payload: key=value tokens ----
            have = 0
            pfn_v = np.uint64(0)
            ord_v = -1
            mt_v = -1
            gfp_v = -1
            ref_v = -1
            aord = -1
            ford_v = -1
            pbord_v = -1
            amt = -1
            fmt_v = -1
            chown_v = -1
            r = pstart
            if r < e and buf[r] == 91:  # '[FAILED TO PARSE]'
                bad = 6
            while r < e and bad < 0:
                while r < e and buf[r] == 32:
                    r += 1
                if r >= e:
                    break
                k0 = r
                if (r + 22 < e and buf[r] == 112 and buf[r + 1] == 97 and buf[r + 2] == 103
                        and buf[r + 4] == 61 and buf[r + 21] == 32):
                    r += 21  # page=%p: 16 hashed hex digits, skipped whole
                    continue
                while r < e and buf[r] != 61 and buf[r] != 32:
                    r += 1
                if r >= e or buf[r] != 61:
                    bad = 4
                    break
                klen = r - k0
                r += 1
                v0 = r
                while r < e and buf[r] != 32:
                    r += 1
                vlen = r - v0
                c0 = buf[k0]
                if klen == 4 and c0 == 112:  # page
                    continue
                if klen == 9 and c0 == 103:  # gfp_flags
                    if vlen == 0:
                        bad = 4
                        break
                    gfp_v, nent = _intern(buf, v0, vlen, STR_GFP, keys, vals, ent, nent)
                    if gfp_v < 0:
                        return nrow, nent, nspec, 1
                    have |= F_GFP
                    continue
                # numeric value: decimal, negative decimal, or 0x hex
                neg = False
                w = v0
                if w < r and buf[w] == 45:
                    neg = True
                    w += 1
                num = np.uint64(0)
                if w + 1 < r and buf[w] == 48 and (buf[w + 1] == 120 or buf[w + 1] == 88):
                    w += 2
                    if w >= r:
                        bad = 4
                        break
                    while w < r:
                        hv = _hexval(buf[w])
                        if hv < 0:
                            bad = 4
                            break
                        num = (num << np.uint64(4)) | np.uint64(hv)
                        w += 1
                else:
                    if w >= r:
                        bad = 4
                        break
                    while w < r:
                        if not _is_digit(buf[w]):
                            bad = 4
                            break
                        num = num * np.uint64(10) + np.uint64(buf[w] - 48)
                        w += 1
                if bad >= 0:
                    break
                iv = np.int64(num)
                if neg:
                    iv = -iv
                if klen == 3 and c0 == 112:  # pfn
                    pfn_v = num
                    have |= F_PFN
                elif klen == 5 and c0 == 111:  # order
                    ord_v = iv
                    have |= F_ORDER
                elif klen == 11 and c0 == 109:  # migratetype
                    mt_v = iv
                    have |= F_MT
                elif klen == 13 and c0 == 112:  # percpu_refill
                    ref_v = iv
                    have |= F_REFILL
                elif klen == 11 and c0 == 97:  # alloc_order
                    aord = iv
                    have |= F_AORD
                elif klen == 14 and c0 == 102:  # fallback_order
                    ford_v = iv
                    have |= F_FORD
                elif klen == 15 and c0 == 112:  # pageblock_order
                    pbord_v = iv
                    have |= F_PBORD
                elif klen == 17 and c0 == 97:  # alloc_migratetype
                    amt = iv
                    have |= F_AMT
                elif klen == 20 and c0 == 102:  # fallback_migratetype
                    fmt_v = iv
                    have |= F_FMT
                elif klen == 11 and c0 == 102:  # fragmenting (recomputed below)
                    have |= F_FRAG
                elif klen == 16 and c0 == 99:  # change_ownership
                    chown_v = iv
                    have |= F_CHOWN
                # other keys (cold=, nr_free=, ...) are accepted and ignored
            if bad < 0 and (have & required[ev]) != required[ev]:
                bad = 5
            if bad < 0 and (ord_v > 127 or ord_v < -1 or mt_v > 127 or mt_v < -1):
                bad = 4
        if bad >= 0:
            if found and cpu_v < fence.shape[0]:
                fence[cpu_v] = line  # a stack that follows is the bad line's
            counts[C_BAD0 + bad] += 1
            if nsamples < MAX_SAMPLES_PER_BLOCK:
                if nspec >= speccap:
                    return nrow, nent, nspec, 2
                spec[nspec, 0] = SP_BAD
                spec[nspec, 1] = line
                spec[nspec, 2] = s
                spec[nspec, 3] = e
                spec[nspec, 4] = bad
                nspec += 1
                nsamples += 1
            continue
        # ---- store the row ----
        seq[nrow] = line
        ts[nrow] = ts_v
        cpu[nrow] = cpu_v
        pid[nrow] = pid_v
        tgid[nrow] = tgid_v
        comm[nrow] = ccode
        irq[nrow] = irq_v
        preempt[nrow] = pre_v
        migdis[nrow] = mig_v
        event[nrow] = ev
        pfn[nrow] = pfn_v
        if ev == 5:
            order[nrow] = aord
            mt[nrow] = amt
            ford[nrow] = ford_v
            pbord[nrow] = pbord_v if pbord_v >= 0 else 9
            fmt[nrow] = fmt_v
            # TP_printk computes it (fallback_order < pageblock_order); trace-cmd 3.1 misprints it
            frag[nrow] = 1 if ford_v < (pbord_v if pbord_v >= 0 else 9) else 0
            chown[nrow] = chown_v
        else:
            order[nrow] = ord_v if ev != 2 or ord_v >= 0 else 0
            mt[nrow] = mt_v
            ford[nrow] = -1
            pbord[nrow] = -1
            fmt[nrow] = -1
            frag[nrow] = -1
            chown[nrow] = -1
        gfp[nrow] = gfp_v
        refill[nrow] = ref_v
        counts[C_EVENTS] += 1
        nrow += 1
    return nrow, nent, nspec, 0


def failed_mask(event: np.ndarray, pfn: np.ndarray) -> np.ndarray:
    """A failed mm_page_alloc prints pfn=0x0 (text) or stores -1UL (raw)."""
    return (event == EV_ALLOC) & ((pfn == 0) | (pfn == np.uint64(0xFFFFFFFFFFFFFFFF)))
