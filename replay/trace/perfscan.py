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
* `gather_chains` / `first_seen_ids`: the kernel part of each call chain (kept once per
  distinct chain by parse_records) and stack ids numbered in delivery order; `comms_at`:
  each sample's thread's comm.
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
WARM_BLOCK = 1 << 15  # bytes read ahead (one load per cache line) before walking them


@njit(cache=True, nogil=True)
def index_records(buf, start, end, off, size, typ, misc):  # pragma: no cover - compiled
    """Record offsets, header sizes, types and misc from `start` to `end`.

    Returns (count, stop position, status, a checksum of the warming reads): status 0 read to
    the end, 1 a record runs past the end, 2 a record header with an impossible size (< 8).
    """
    n = 0
    pos = start
    status = 0
    warm = start
    acc = 0
    while pos < end:
        if pos + 64 > warm:  # pull the next block into cache: the walk itself is a chain of
            stop = min(warm + WARM_BLOCK, buf.size)  # dependent loads the prefetcher misses
            for j in range(warm, stop, 64):
                acc += buf[j]
            warm = stop
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
    return n, pos, status, acc


@njit(cache=True, nogil=True)
def splice_records(off, size, typ, misc, doff, dsize, dtyp, dmisc, ends, base, out_off,
                   out_size, out_typ, out_misc):  # pragma: no cover - compiled
    """The logical record stream: the file's records in order, each PERF_RECORD_COMPRESSED
    replaced by the inflated records completed while reading it (a record's last byte came
    from it: ends[c] is the inflated size after container c; inflated records start at
    `base`). Inflated records completed by no container (a cut stream) go at the end."""
    n = 0
    j = 0
    c = 0
    for i in range(off.size):
        t = typ[i]
        if t == 81 or t == 83:
            while j < doff.size and doff[j] - base + dsize[j] <= ends[c]:
                out_off[n] = doff[j]
                out_size[n] = dsize[j]
                out_typ[n] = dtyp[j]
                out_misc[n] = dmisc[j]
                n += 1
                j += 1
            c += 1
            continue
        out_off[n] = off[i]
        out_size[n] = size[i]
        out_typ[n] = t
        out_misc[n] = misc[i]
        n += 1
    while j < doff.size:
        out_off[n] = doff[j]
        out_size[n] = dsize[j]
        out_typ[n] = dtyp[j]
        out_misc[n] = dmisc[j]
        n += 1
        j += 1
    return n


@njit(cache=True, nogil=True, inline="always")
def _u64(buf, buf64, pos):  # pragma: no cover - compiled
    """A little-endian u64 at pos (as int64): one load when aligned."""
    if pos & 7 == 0 and (pos >> 3) < buf64.size:
        return np.int64(buf64[pos >> 3])
    return _read_uint(buf, pos, 8, False)


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
def parse_records(buf, buf64, buf32, off, size, typ, misc, ids, id_attr, attr_st, attr_rf,
                  attr_sid_all, attr_tp, id_mode, id_pos, is_pos, common, out_attr, out_time,
                  out_cpu, out_pid, out_tid, out_type_id, out_flags, out_pc, out_cpid,
                  out_status, payload, payload32, out_payload, out_payload_len, chains,
                  out_chain, out_chain_len, out_stack, slot_at, slot_len,
                  slot_id):  # pragma: no cover - compiled
    """Parse every record's sample (or sample_id trailer), in one pass in file order.

    id_mode: ID_NONE (one attribute: index 0), ID_IDENTIFIER (first u64 of a sample, last of
    a trailer) or ID_POS (PERF_SAMPLE_ID at u64 index id_pos of a sample, is_pos u64s from
    the end of a trailer). buf64 and buf32 are buf as uint64 and uint32 (aligned loads;
    payload32 likewise for `payload`, whose slots start 8-byte aligned).
    common: offsets/sizes of common_type, common_flags,
    common_preempt_count and common_pid in a tracepoint payload. out_time is -1 for records
    without a time. The PERF_SAMPLE_RAW payload of each tracepoint sample is copied into
    `payload` (out_payload: where, -1 for none), so that later passes in perf's delivery
    order read a compact, nearly sequential array. The kernel part of its call chain is kept
    once per distinct chain in `chains` (out_chain: where, -1 for no chain; out_chain_len
    entries; out_stack: the chain's number in file order), found through an open-addressing
    table (slot_at: chain position + 1, 0 empty; a power-of-two size) keyed on an FNV-1a hash
    and compared in full. Returns (payload bytes used, chain entries used, distinct chains,
    warming checksum).
    """
    ctype_off, ctype_size, cflags_off, cpc_off = common[0], common[1], common[2], common[3]
    cpid_off, cpid_size, common_end = common[4], common[5], common[6]
    np_used = 0
    nc_used = 0
    n_stacks = 0
    warm_lo = 0
    warm_hi = 0
    acc = 0
    for i in range(off.size):
        t = typ[i]
        p = off[i]
        e = p + size[i]
        if e > warm_hi or p < warm_lo:
            warm_lo = p
            warm_hi = min(p + WARM_BLOCK, buf.size)
            for j in range(p, warm_hi, 64):
                acc += buf[j]
        out_attr[i] = 0
        out_time[i] = -1
        out_cpu[i] = -1
        out_pid[i] = -1
        out_tid[i] = -1
        out_type_id[i] = -1
        out_flags[i] = 0
        out_pc[i] = 0
        out_cpid[i] = 0
        out_status[i] = 0
        out_payload[i] = -1
        out_payload_len[i] = 0
        out_chain[i] = -1
        out_chain_len[i] = 0
        if t >= 64:
            continue
        k = 0
        if t == 9:
            if id_mode == 1:
                k = _attr_of(_u64(buf, buf64, p + 8), ids, id_attr)
            elif id_mode == 2:
                k = _attr_of(_u64(buf, buf64, p + 8 + 8 * id_pos), ids, id_attr)
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
                out_time[i] = _u64(buf, buf64, q)
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
                read_size = _read_size(buf, q, attr_rf[k])
                if read_size < 0 or read_size > e - q:
                    out_status[i] = 2
                    continue
                q += read_size
            chain_at = -1
            chain_nr = 0
            if st & 32:
                if q + 8 > e:
                    out_status[i] = 2
                    continue
                chain_nr = _u64(buf, buf64, q)
                if chain_nr < 0 or chain_nr > (e - q) // 8:
                    out_status[i] = 2
                    continue
                chain_at = q + 8
                q += 8 + 8 * chain_nr
            raw_at = -1
            raw_len = 0
            if st & 1024:
                if q + 4 > e:
                    out_status[i] = 2
                    continue
                raw_len = _read_uint(buf, q, 4, False)
                raw_at = q + 4
                q += 4 + raw_len
            if q > e:
                out_status[i] = 2
                continue
            if not attr_tp[k] or raw_at < 0:
                continue
            out_payload[i] = np_used
            out_payload_len[i] = raw_len
            if raw_at & 3 == 0 and (raw_at + raw_len + 3) >> 2 <= buf32.size:
                for c in range((raw_len + 3) >> 2):  # payload slots start 8-byte aligned
                    payload32[(np_used >> 2) + c] = buf32[(raw_at >> 2) + c]
            else:
                for c in range(raw_len):
                    payload[np_used + c] = buf[raw_at + c]
            np_used += (raw_len + 7) & ~7
            if raw_len >= common_end:
                out_type_id[i] = _read_uint(buf, raw_at + ctype_off, ctype_size, False)
                out_flags[i] = buf[raw_at + cflags_off]
                out_pc[i] = buf[raw_at + cpc_off]
                out_cpid[i] = _read_uint(buf, raw_at + cpid_off, cpid_size, False)
            if chain_at >= 0:
                start = nc_used
                kernel = (misc[i] & 7) == 1
                aligned = (chain_at & 7) == 0
                h = np.uint64(14695981039346656037)  # FNV-1a over the kernel addresses
                for c in range(chain_nr):
                    if aligned:
                        ip = buf64[(chain_at >> 3) + c]
                    else:
                        ip = np.uint64(_read_uint(buf, chain_at + 8 * c, 8, False))
                    if ip >= PERF_CONTEXT_MAX:
                        kernel = ip == PERF_CONTEXT_KERNEL
                        continue
                    if kernel:
                        chains[nc_used] = ip
                        nc_used += 1
                        h = (h ^ ip) * np.uint64(1099511628211)
                length = nc_used - start
                h ^= np.uint64(length)
                # one copy per distinct chain: find it, or keep this one as the first
                slot = np.int64(h & np.uint64(slot_at.size - 1))
                while True:
                    at = slot_at[slot] - 1
                    if at < 0:
                        slot_at[slot] = start + 1
                        slot_len[slot] = length
                        slot_id[slot] = n_stacks
                        out_stack[i] = n_stacks
                        n_stacks += 1
                        break
                    same = slot_len[slot] == length
                    if same:
                        for c in range(length):
                            if chains[at + c] != chains[start + c]:
                                same = False
                                break
                    if same:
                        nc_used = start  # drop the duplicate
                        start = at
                        out_stack[i] = slot_id[slot]
                        break
                    slot = (slot + 1) & (slot_at.size - 1)
                out_chain[i] = start
                out_chain_len[i] = length
            continue
        # a kernel record other than a sample: its sample_id trailer
        if id_mode == 1 and e - 8 >= p + 8:
            k = _attr_of(_u64(buf, buf64, e - 8), ids, id_attr)
        elif id_mode == 2 and e - 8 * is_pos >= p + 8:
            k = _attr_of(_u64(buf, buf64, e - 8 * is_pos), ids, id_attr)
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
            out_time[i] = _u64(buf, buf64, q)
            q += 8
        if st & 64:
            q += 8
        if st & 512:
            q += 8
        if st & 128:
            out_cpu[i] = _read_uint(buf, q, 4, False)
    return np_used, nc_used, n_stacks, acc


@njit(cache=True, nogil=True)
def delivery_batches(typ, time):  # pragma: no cover - compiled
    """The batch each record leaves perf's ordered-events queue in (util/ordered-events.c);
    -1 for user records (type >= 64), which are not delivered.

    A kernel record with a time is queued; one without (time 0 or none: synthesized records)
    is delivered at once, in a batch of its own. At each FINISHED_ROUND, if anything is
    queued, the records queued with a time up to `next_flush` leave in one batch (none while
    it is 0), and `next_flush` becomes the newest time queued so far. The rest leaves in a
    last batch. Within a batch perf delivers by time, ties in file order (delivery_order).
    The queue is an unordered array scanned at each flush: perf flushes every round, so it
    stays short, and its limit only grows.
    """
    n = typ.size
    batch = np.full(n, -1, dtype=np.int64)
    queue = np.empty(n, dtype=np.int64)
    qn = 0
    b = 0
    next_flush = 0
    max_ts = 0
    for i in range(n):
        t = typ[i]
        if t == 68:
            if qn == 0:
                continue
            limit = next_flush
            if limit != 0:
                b += 1
                keep = 0
                for j in range(qn):
                    r = queue[j]
                    if time[r] <= limit:
                        batch[r] = b
                    else:
                        queue[keep] = r
                        keep += 1
                qn = keep
            next_flush = max_ts
            continue
        if t >= 64:
            continue
        ts = time[i]
        if ts <= 0:  # 0, or -1: no time (perf's -ETIME: delivered at once)
            b += 1
            batch[i] = b
            continue
        queue[qn] = i
        qn += 1
        if ts > max_ts:
            max_ts = ts
    b += 1
    for j in range(qn):
        batch[queue[j]] = b
    return batch


def delivery_order(typ: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Record indices in the order perf delivers them (perf script's order): by batch, then
    time, then file position."""
    batch = delivery_batches(typ, time)
    delivered = np.flatnonzero(batch >= 0)
    order = np.lexsort((delivered, time[delivered], batch[delivered]))
    return delivered[order]


@njit(cache=True, nogil=True)
def gather_chains(chains, at, length, rows, offsets, values):  # pragma: no cover - compiled
    """The call chains of records `rows` (parse_records' compact kernel chains) as list
    offsets (rows.size + 1) and values; a row without a chain gets an empty slot."""
    total = 0
    for j in range(rows.size):
        offsets[j] = total
        i = rows[j]
        a = at[i]
        if a < 0:
            continue
        for k in range(length[i]):
            values[total + k] = chains[a + k]
        total += length[i]
    offsets[rows.size] = total
    return total


@njit(cache=True, nogil=True)
def comms_at(change_rank, change_tid, change_code, sample_rank, sample_tid, max_tid
             ):  # pragma: no cover - compiled
    """The comm code each sample's thread has when the sample is delivered: the changes and
    the samples both in delivery order (ranks ascending), walked together."""
    current = np.full(max_tid + 1, -1, dtype=np.int32)
    out = np.empty(sample_rank.size, dtype=np.int32)
    c = 0
    for j in range(sample_rank.size):
        while c < change_rank.size and change_rank[c] < sample_rank[j]:
            current[change_tid[c]] = change_code[c]
            c += 1
        tid = sample_tid[j]
        out[j] = current[tid] if 0 <= tid <= max_tid else -1
    return out


@njit(cache=True, nogil=True)
def first_seen_ids(ids, n_ids):  # pragma: no cover - compiled
    """Renumber ids (-1: none) in order of first appearance."""
    remap = np.full(n_ids, -1, dtype=np.int32)
    out = np.empty(ids.size, dtype=np.int32)
    nxt = 0
    for j in range(ids.size):
        k = ids[j]
        if k < 0:
            out[j] = -1
            continue
        if remap[k] < 0:
            remap[k] = nxt
            nxt += 1
        out[j] = remap[k]
    return out
