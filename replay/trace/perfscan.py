"""numba kernels over a perf.data record stream: index, parse samples, order, call chains.

Each kernel is one pass over flat arrays (no Python per record):

* `index_records`: walk the records (8-byte header: type, misc, size), including the bytes
  HEADER_TRACING_DATA and AUXTRACE carry after their header.
* `parse_records`: per record, the event attribute (from the sample id), and for samples the
  pid, tid, time, CPU, call-chain position and PERF_SAMPLE_RAW payload; for other kernel
  records the time and CPU of their sample_id trailer (sample_id_all).
* `delivery_order`: the order perf's ordered-events queue delivers records in (perf script,
  perf kmem): by time, ties in file order, flushed at each FINISHED_ROUND up to the newest
  time seen before the previous round; records without a time go out at once.
* `kernel_chains` / `stack_ids`: the kernel part of each call chain, and one id per distinct
  chain.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from replay.trace.tracerecords import _read_uint

# parse_records status codes
ST_OK, ST_UNKNOWN_ID, ST_SHORT = 0, 1, 2
# how a record names its event attribute
ID_NONE, ID_IDENTIFIER, ID_POS = 0, 1, 2
PERF_CONTEXT_MAX = np.uint64(2**64 - 4095)  # call-chain context markers are >= this
PERF_CONTEXT_KERNEL = np.uint64(2**64 - 128)


@njit(cache=True, nogil=True)
def index_records(buf, start, end, off, size, typ, misc):  # pragma: no cover - compiled
    """Record offsets, header sizes, types and misc from `start` to `end`.

    Returns (count, stop position, status): 0 read to the end, 1 a record runs past the end,
    2 a record header with an impossible size (< 8).
    """
    n = 0
    pos = start
    status = 0
    while pos < end:
        if pos + 8 > end:
            status = 1
            break
        t = _read_uint(buf, pos, 4, False)
        s = _read_uint(buf, pos + 6, 2, False)
        if s < 8:
            status = 2
            break
        stop = pos + s
        if t == 66:  # HEADER_TRACING_DATA: u32 size, that many bytes after the record
            if pos + 12 > end:
                status = 1
                break
            stop += _read_uint(buf, pos + 8, 4, False)
        elif t == 71:  # AUXTRACE: u64 size of the trace data that follows
            if pos + 16 > end:
                status = 1
                break
            stop += _read_uint(buf, pos + 8, 8, False)
        if stop > end:
            status = 1
            break
        off[n] = pos
        size[n] = s
        typ[n] = t
        misc[n] = _read_uint(buf, pos + 4, 2, False)
        n += 1
        pos = stop
    return n, pos, status


@njit(cache=True, nogil=True, inline="always")
def _attr_of(ident, ids, id_attr):  # pragma: no cover - compiled
    """Attribute index of a sample id (binary search in the sorted ids), -1 if unknown."""
    lo = 0
    hi = ids.size
    while lo < hi:
        mid = (lo + hi) // 2
        if ids[mid] < ident:
            lo = mid + 1
        else:
            hi = mid
    if lo < ids.size and ids[lo] == ident:
        return id_attr[lo]
    return -1


@njit(cache=True, nogil=True, inline="always")
def _read_size(buf, q, rf):  # pragma: no cover - compiled
    """Bytes of a PERF_SAMPLE_READ block with read_format rf starting at q."""
    per = 8
    if rf & 4:  # ID
        per += 8
    if rf & 16:  # LOST
        per += 8
    times = 0
    if rf & 1:
        times += 8
    if rf & 2:
        times += 8
    if rf & 8:  # GROUP: nr, times, nr * {value, id, lost}
        return 8 + times + _read_uint(buf, q, 8, False) * per
    return times + per


@njit(cache=True, nogil=True, inline="always")
def _trailer_size(st):  # pragma: no cover - compiled
    """Bytes of the sample_id trailer of non-sample records (sample_id_all)."""
    n = 0
    for bit in (2, 4, 64, 512, 128, 65536):  # TID TIME ID STREAM_ID CPU IDENTIFIER
        if st & bit:
            n += 8
    return n


@njit(cache=True, nogil=True)
def parse_records(buf, off, size, typ, misc, ids, id_attr, attr_st, attr_rf, attr_sid_all,
                  id_mode, id_pos, is_pos, common, out_attr, out_time, out_cpu, out_pid,
                  out_tid, out_raw, out_raw_len, out_chain, out_chain_nr, out_type_id,
                  out_flags, out_pc, out_cpid, out_status):  # pragma: no cover - compiled
    """Parse every record's sample (or sample_id trailer).

    id_mode: ID_NONE (one attribute: index 0), ID_IDENTIFIER (first u64 of a sample, last of
    a trailer) or ID_POS (PERF_SAMPLE_ID at u64 index id_pos of a sample, is_pos u64s from
    the end of a trailer). common: offsets/sizes of common_type, common_flags,
    common_preempt_count and common_pid in a tracepoint payload. out_time is -1 for records
    without a time; out_raw -1 for samples without a payload; out_chain -1 without a chain.
    """
    ctype_off, ctype_size, cflags_off, cpc_off = common[0], common[1], common[2], common[3]
    cpid_off, cpid_size, common_end = common[4], common[5], common[6]
    for i in range(off.size):
        t = typ[i]
        p = off[i]
        e = p + size[i]
        out_attr[i] = 0
        out_time[i] = -1
        out_cpu[i] = -1
        out_pid[i] = -1
        out_tid[i] = -1
        out_raw[i] = -1
        out_raw_len[i] = 0
        out_chain[i] = -1
        out_chain_nr[i] = 0
        out_type_id[i] = -1
        out_flags[i] = 0
        out_pc[i] = 0
        out_cpid[i] = 0
        out_status[i] = 0
        if t >= 64:
            continue
        k = 0
        if t == 9:
            if id_mode == 1:
                k = _attr_of(_read_uint(buf, p + 8, 8, False), ids, id_attr)
            elif id_mode == 2:
                k = _attr_of(_read_uint(buf, p + 8 + 8 * id_pos, 8, False), ids, id_attr)
            if k < 0:
                out_attr[i] = -1
                out_status[i] = 1
                continue
            out_attr[i] = k
            st = attr_st[k]
            q = p + 8
            if st & 65536:
                q += 8
            if st & 1:
                q += 8
            if st & 2:
                out_pid[i] = _read_uint(buf, q, 4, False)
                out_tid[i] = _read_uint(buf, q + 4, 4, False)
                q += 8
            if st & 4:
                out_time[i] = _read_uint(buf, q, 8, False)
                q += 8
            if st & 8:
                q += 8
            if st & 64:
                q += 8
            if st & 512:
                q += 8
            if st & 128:
                out_cpu[i] = _read_uint(buf, q, 4, False)
                q += 8
            if st & 256:
                q += 8
            if st & 16:
                if q + 8 > e:
                    out_status[i] = 2
                    continue
                q += _read_size(buf, q, attr_rf[k])
            if st & 32:
                if q + 8 > e:
                    out_status[i] = 2
                    continue
                nr = _read_uint(buf, q, 8, False)
                if nr < 0 or nr > (e - q) // 8:
                    out_status[i] = 2
                    continue
                out_chain[i] = q + 8
                out_chain_nr[i] = nr
                q += 8 + 8 * nr
            if st & 1024:
                if q + 4 > e:
                    out_status[i] = 2
                    continue
                rs = _read_uint(buf, q, 4, False)
                out_raw[i] = q + 4
                out_raw_len[i] = rs
                q += 4 + rs
                if rs >= common_end:
                    r = q - rs
                    out_type_id[i] = _read_uint(buf, r + ctype_off, ctype_size, False)
                    out_flags[i] = buf[r + cflags_off]
                    out_pc[i] = buf[r + cpc_off]
                    out_cpid[i] = _read_uint(buf, r + cpid_off, cpid_size, False)
            if q > e:
                out_status[i] = 2
                out_raw[i] = -1
                out_chain[i] = -1
            continue
        # a kernel record other than a sample: its sample_id trailer
        if id_mode == 1 and e - 8 >= p + 8:
            k = _attr_of(_read_uint(buf, e - 8, 8, False), ids, id_attr)
        elif id_mode == 2 and e - 8 * is_pos >= p + 8:
            k = _attr_of(_read_uint(buf, e - 8 * is_pos, 8, False), ids, id_attr)
        if k < 0:
            k = 0  # perf: an unknown or zero id means the first event
        out_attr[i] = k
        st = attr_st[k]
        if not attr_sid_all[k]:
            continue
        q = e - _trailer_size(st)
        if q < p + 8:
            continue
        if st & 2:
            out_pid[i] = _read_uint(buf, q, 4, False)
            out_tid[i] = _read_uint(buf, q + 4, 4, False)
            q += 8
        if st & 4:
            out_time[i] = _read_uint(buf, q, 8, False)
            q += 8
        if st & 64:
            q += 8
        if st & 512:
            q += 8
        if st & 128:
            out_cpu[i] = _read_uint(buf, q, 4, False)


@njit(cache=True, nogil=True, inline="always")
def _before(time, a, b):  # pragma: no cover - compiled
    """Queue order: earlier time, ties in arrival (file) order."""
    return time[a] < time[b] or (time[a] == time[b] and a < b)


@njit(cache=True, nogil=True)
def delivery_order(typ, time):  # pragma: no cover - compiled
    """Records in the order perf's ordered-events queue delivers them (util/ordered-events.c).

    A kernel record with a time is queued; one without (time 0 or none: synthesized records)
    is delivered at once. At each FINISHED_ROUND, if anything is queued, the queue is flushed
    up to `next_flush` (nothing while it is 0), and `next_flush` becomes the newest time
    queued so far. The rest goes at the end. User records (type >= 64) are not delivered.
    """
    n = typ.size
    out = np.empty(n, dtype=np.int64)
    heap = np.empty(n, dtype=np.int64)
    hn = 0
    cnt = 0
    next_flush = 0
    max_ts = 0
    for i in range(n):
        t = typ[i]
        if t == 68:
            if hn == 0:
                continue
            limit = next_flush
            if limit != 0:
                while hn > 0 and time[heap[0]] <= limit:
                    out[cnt] = heap[0]
                    cnt += 1
                    hn -= 1
                    heap[0] = heap[hn]
                    c = 0
                    while True:
                        best = 2 * c + 1
                        if best >= hn:
                            break
                        if best + 1 < hn and _before(time, heap[best + 1], heap[best]):
                            best += 1
                        if not _before(time, heap[best], heap[c]):
                            break
                        heap[best], heap[c] = heap[c], heap[best]
                        c = best
            next_flush = max_ts
            continue
        if t >= 64:
            continue
        ts = time[i]
        if ts <= 0:  # 0, or -1: no time (perf's -ETIME: delivered at once)
            out[cnt] = i
            cnt += 1
            continue
        heap[hn] = i
        c = hn
        hn += 1
        while c > 0 and _before(time, heap[c], heap[(c - 1) // 2]):
            parent = (c - 1) // 2
            heap[c], heap[parent] = heap[parent], heap[c]
            c = parent
        if ts > max_ts:
            max_ts = ts
    while hn > 0:
        out[cnt] = heap[0]
        cnt += 1
        hn -= 1
        heap[0] = heap[hn]
        c = 0
        while True:
            best = 2 * c + 1
            if best >= hn:
                break
            if best + 1 < hn and _before(time, heap[best + 1], heap[best]):
                best += 1
            if not _before(time, heap[best], heap[c]):
                break
            heap[best], heap[c] = heap[c], heap[best]
            c = best
    return out[:cnt]


@njit(cache=True, nogil=True)
def kernel_chains(buf, chain, chain_nr, misc, rows, fill, offsets, values):  # pragma: no cover
    """The kernel part of the call chains of samples `rows`: the addresses in the
    PERF_CONTEXT_KERNEL context (entries before any context marker count as kernel when the
    sample's cpumode is kernel), innermost first. With fill=False only `offsets` (the list
    offsets, rows.size + 1) are computed; with fill=True `values` is filled too."""
    total = 0
    for j in range(rows.size):
        i = rows[j]
        offsets[j] = total
        base = chain[i]
        if base < 0:
            continue
        kernel = (misc[i] & 7) == 1
        for k in range(chain_nr[i]):
            ip = np.uint64(_read_uint(buf, base + 8 * k, 8, False))
            if ip >= PERF_CONTEXT_MAX:
                kernel = ip == PERF_CONTEXT_KERNEL
                continue
            if kernel:
                if fill:
                    values[total] = ip
                total += 1
    offsets[rows.size] = total
    return total


@njit(cache=True, nogil=True)
def stack_ids(offsets, values, valid):  # pragma: no cover - compiled
    """One id per distinct chain, numbered in order of first appearance (-1 where not
    valid). An open-addressing table keyed on an FNV-1a hash of the addresses, chains
    compared in full on a hash match."""
    n = offsets.size - 1
    out = np.full(n, -1, dtype=np.int32)
    size = 1
    while size < 2 * n + 2:
        size *= 2
    slot_row = np.full(size, -1, dtype=np.int64)
    next_id = 0
    for i in range(n):
        if not valid[i]:
            continue
        a, b = offsets[i], offsets[i + 1]
        h = np.uint64(14695981039346656037)
        for k in range(a, b):
            h = (h ^ values[k]) * np.uint64(1099511628211)
        h ^= np.uint64(b - a)
        s = np.int64(h & np.uint64(size - 1))
        while True:
            r = slot_row[s]
            if r < 0:
                slot_row[s] = i
                out[i] = next_id
                next_id += 1
                break
            ra, rb = offsets[r], offsets[r + 1]
            same = rb - ra == b - a
            if same:
                for k in range(b - a):
                    if values[ra + k] != values[a + k]:
                        same = False
                        break
            if same:
                out[i] = out[r]
                break
            s = (s + 1) & (size - 1)
    return out
