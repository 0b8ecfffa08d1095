"""Rebuild the small perf.data fixtures used by tests/test_perfdata.py.

The fixtures are real recordings: perf 6.1.187 inside a QEMU guest running Debian's
6.1.0-56-amd64 kernel (the kcapture harness's kernel and memwork), with the guest init in
perfdata-capture-init.sh, which records one tiny file of each kind:

    perf-kmem-record.data.gz   perf kmem --page record -- ls -R /bin       (file mode, -g)
    perf-pipe.data.gz          perf record -a -g -e mm_page_alloc,free -o -  (pipe mode)
    perf-pipe-z.data           the same with -z: PERF_RECORD_COMPRESSED (zstd) in pipe mode
    perf-lost.data.gz          perf record -a -m 1 ... memwork anon 1 3: LOST, LOST_SAMPLES
    perf-one-event.data.gz     perf record -a -e kmem:mm_page_alloc (no call chains)
    perf-compaction.data.gz    perf record -a -g -e 'compaction:*' -e extfrag, compact_memory

Two are derived here from real data, byte for byte except the header's data size and the
feature-section offsets:

    perf-z-head.data           the first 6 PERF_RECORD_COMPRESSED records (and the records
                               around them) of `perf record -a -g -z ... memwork mixed 1 1`,
                               a file-mode -z recording too large to keep whole
    kallsyms-6.1.0-56.gz       the guest's /proc/kallsyms, trimmed to the symbols that hold an
                               address of a call chain in these fixtures or in
                               traces/perf-small/perf.data.gz (another boot of the same build:
                               KASLR relocation), plus each one's successor, _text and _stext

Usage: python tests/data/make_perfdata_fixtures.py CAPTURE_OUT_DIR
(the directory the guest's /tmp/out was unpacked into).
"""

from __future__ import annotations

import gzip
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from replay.trace.perfdata import read_perfdata  # noqa: E402
from replay.trace.perfheader import (  # noqa: E402
    FILE_HEADER_SIZE,
    REC_COMPRESSED,
    parse_file_header,
)

COPIES = {
    "tiny-kmem.data": "perf-kmem-record.data.gz",
    "tiny-pipe.data": "perf-pipe.data.gz",
    "tiny-pipe-z.data": "perf-pipe-z.data",
    "tiny-lost.data": "perf-lost.data.gz",
    "tiny-one.data": "perf-one-event.data.gz",
    "tiny-compact.data": "perf-compaction.data.gz",
}
Z_HEAD_RECORDS = 6


def head_of_file_mode(data: bytes, keep_compressed: int) -> bytes:
    """A file-mode perf.data cut after its n-th COMPRESSED record (plus the FINISHED_ROUND
    after it), with the data size and the feature sections moved to match."""
    header = parse_file_header(data)
    pos = header.data_start
    seen = 0
    while pos < header.data_end:
        typ, _misc, size = struct.unpack_from("<IHH", data, pos)
        pos += size
        if typ == REC_COMPRESSED:
            seen += 1
            if seen == keep_compressed:
                break
    if pos + 8 <= header.data_end and struct.unpack_from("<I", data, pos)[0] == 68:
        pos += 8  # the FINISHED_ROUND that closes this round
    body = data[header.data_start:pos]
    bitmap = int.from_bytes(data[72:104], "little")
    bits = [b for b in range(256) if bitmap >> b & 1]
    table_at = header.data_start + len(body)
    sections = []
    for k in range(len(bits)):
        off, size = struct.unpack_from("<QQ", data, header.data_end + 16 * k)
        sections.append(data[off:off + size])
    feat_at = table_at + 16 * len(bits)
    table, blobs = b"", b""
    for blob in sections:
        table += struct.pack("<QQ", feat_at + len(blobs), len(blob))
        blobs += blob
    out = bytearray(data[:header.data_start])
    struct.pack_into("<QQ", out, 40, header.data_start, len(body))
    assert len(out) >= FILE_HEADER_SIZE
    return bytes(out) + body + table + blobs


def chain_addresses(path: Path) -> set[int]:
    """Every address in the call chains of a perf.data."""
    d = read_perfdata(path)
    chains = d.events.column("callchain").combine_chunks().flatten()
    return set(np.unique(chains.to_numpy()).tolist()) if len(chains) else set()


def trimmed_kallsyms(kallsyms: bytes, addresses: set[int], other_text: list[int]) -> bytes:
    """The kallsyms lines holding any of `addresses` (given in this boot's or, through
    other_text, in other boots' addresses) and each one's successor."""
    lines = kallsyms.splitlines()
    code = [(int(ln.split()[0], 16), i) for i, ln in enumerate(lines)
            if len(ln.split()) >= 3 and ln.split()[1] in (b"t", b"T", b"w", b"W")]
    code.sort()
    addrs = np.array([a for a, _ in code], np.uint64)
    text = next(int(ln.split()[0], 16) for ln in lines if ln.endswith(b" _text"))
    wanted = set()
    for a in addresses:
        for base in [text, *other_text]:
            local = (a - base + text) % (1 << 64)
            j = int(np.searchsorted(addrs, np.uint64(local), "right")) - 1
            if 0 <= j and local - int(addrs[j]) < 1 << 20:
                wanted.update({j, j + 1})
    keep = {code[j][1] for j in wanted if j < len(code)}
    keep |= {i for i, ln in enumerate(lines) if ln.endswith((b" _text", b" _stext"))}
    return b"\n".join(lines[i] for i in sorted(keep)) + b"\n"


def main(capture: Path) -> None:
    for src, dest in COPIES.items():
        raw = (capture / src).read_bytes()
        if dest.endswith(".gz"):
            (HERE / dest).write_bytes(gzip.compress(raw, 9, mtime=0))
        else:
            shutil.copyfile(capture / src, HERE / dest)
    (HERE / "perf-z-head.data").write_bytes(
        head_of_file_mode((capture / "tiny-z.data").read_bytes(), Z_HEAD_RECORDS))
    addresses: set[int] = set()
    for dest in [*COPIES.values(), "perf-z-head.data"]:
        addresses |= chain_addresses(HERE / dest)
    small = read_perfdata(ROOT / "traces/perf-small/perf.data.gz")
    small_chains = small.events.column("callchain").combine_chunks().flatten().to_numpy()
    addresses |= set(np.unique(small_chains).tolist())
    other = [small.stats.kernel_reloc["address"]]
    trimmed = trimmed_kallsyms((capture / "kallsyms").read_bytes(), addresses, other)
    (HERE / "kallsyms-6.1.0-56.gz").write_bytes(gzip.compress(trimmed, 9, mtime=0))
    for name in [*COPIES.values(), "perf-z-head.data", "kallsyms-6.1.0-56.gz"]:
        print(f"{name}: {(HERE / name).stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/perfcap2/out"))
