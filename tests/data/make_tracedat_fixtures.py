"""Rebuild the small trace.dat fixtures used by tests/test_tracedat.py.

Usage: python tests/data/make_tracedat_fixtures.py [SOURCE_TRACE_DAT(.gz)]
(default source: traces/mixed-small/trace.dat.gz; needs the trace-cmd binary).

1. `trace-cmd split -c -p 30` keeps the first 30 ring-buffer pages of each CPU (v7, zstd).
2. `trace-cmd convert --file-version 6` makes a version 6 file; its 3.9 MB kallsyms block is then
   blanked (same length, newlines only: trace-cmd still reads it) so the file gzips small.
   -> mixed-small-30p.v6.dat.gz
3. `trace-cmd convert --file-version 7 --compression none` of that file, zstd-compressed whole.
   -> mixed-small-30p.v7-none.dat.zst
4. This trace-cmd build has no zlib, so the zlib file is written here: the same sections and
   data chunks, re-laid out as trace-cmd 3.1 lays out a v7 file, compressed with zlib. The same
   writer with zstd is checked against `trace-cmd report` to show the layout is right.
   -> mixed-small-30p.v7-zlib.dat
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import zstandard

from replay.trace.tracedat import (
    OPT_BUFFER,
    OPT_CMDLINES,
    OPT_DONE,
    OPT_EVENT_FORMATS,
    OPT_FTRACE_EVENTS,
    OPT_HEADER_INFO,
    OPT_KALLSYMS,
    OPT_PRINTK,
    _inflate_chunks,
    _MetadataParser,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SECTION_IDS = (OPT_HEADER_INFO, OPT_FTRACE_EVENTS, OPT_EVENT_FORMATS, OPT_KALLSYMS, OPT_PRINTK,
               OPT_CMDLINES)


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


KEEP_SYMBOLS = (b" tracing_mark_write", b" vmemmap_base")


def blank_v6_kallsyms(path: Path) -> None:
    """Overwrite the kallsyms text of a v6 file with newlines (same length), keeping the few
    symbols `trace-cmd report` prints for these events."""
    data = bytearray(path.read_bytes())
    parser = _MetadataParser(bytes(data))
    r = parser.initial_header()
    parser.header_files(r)
    parser.ftrace_formats(r)
    parser.event_formats(r)
    size = r.u32("kallsyms size")
    kept = b"".join(line + b"\n" for line in data[r.pos : r.pos + size].split(b"\n")
                    if line.endswith(KEEP_SYMBOLS))
    data[r.pos : r.pos + size] = kept + b"\n" * (size - len(kept))
    path.write_bytes(bytes(data))


def report_lines(path: Path) -> list[str]:
    """`trace-cmd report` output lines."""
    return run("trace-cmd", "report", "-i", str(path)).splitlines()


class V7Writer:
    """Write a v7 trace.dat with the given codec from the pieces of another v7 file."""

    def __init__(self, name: str, version: str, compress) -> None:
        self.name, self.version, self.compress = name, version, compress
        self.out = bytearray()

    def u16(self, v: int) -> None:
        self.out += struct.pack("<H", v)

    def u32(self, v: int) -> None:
        self.out += struct.pack("<I", v)

    def u64(self, v: int) -> None:
        self.out += struct.pack("<Q", v)

    def pad_to(self, page: int) -> None:
        self.out += b"\0" * (-len(self.out) % page)

    def section(self, sec_id: int, payload: bytes, compressed: bool) -> int:
        offset = len(self.out)
        body = payload
        if compressed:
            z = self.compress(payload)
            body = struct.pack("<II", len(z), len(payload)) + z
        self.u16(sec_id)
        self.u16(1 if compressed else 0)
        self.u32(0)
        self.u64(len(body))
        self.out += body
        return offset

    @staticmethod
    def options(items: list[tuple[int, bytes]], next_offset: int) -> bytes:
        body = b"".join(struct.pack("<HI", opt, len(data)) + data for opt, data in items)
        return body + struct.pack("<HIQ", OPT_DONE, 8, next_offset)

    def write(self, src: bytes) -> bytes:
        parser = _MetadataParser(src)
        tf = parser.parse()
        page = tf.page_size
        self.out += src[:10] + b"7\0" + bytes([0, tf.long_size]) + struct.pack("<I", page)
        self.out += self.name.encode() + b"\0" + self.version.encode() + b"\0"
        options_offset_at = len(self.out)
        self.u64(0)
        offsets = {}
        for sec_id in SECTION_IDS:
            payload, _ = parser.section(parser.sections[sec_id], sec_id, str(sec_id))
            offsets[sec_id] = self.section(sec_id, bytes(payload.data), compressed=True)
        first_options = [(sec_id, struct.pack("<Q", off)) for sec_id, off in offsets.items()]
        first_options += [item for item in first_options_of(parser, src)
                          if item[0] not in SECTION_IDS and item[0] != OPT_BUFFER]
        options_at = len(self.out)
        struct.pack_into("<Q", self.out, options_offset_at, options_at)
        placeholder = self.options(first_options, 0)
        self.section(OPT_DONE, placeholder, compressed=False)
        done_at = len(self.out) - 8
        fly_at = len(self.out)
        self.u16(OPT_BUFFER)
        self.u16(1)
        self.u32(0)
        size_at = len(self.out)
        self.u64(0)
        cpus = []
        for cpu in tf.cpus:
            chunks, problem = _inflate_chunks(src, cpu, parser.codec, tf.endian)
            assert problem is None, problem
            self.pad_to(page)
            start = len(self.out)
            self.u32(len(chunks))
            for chunk in chunks:
                z = self.compress(chunk)
                self.u32(len(z))
                self.u32(len(chunk))
                self.out += z
            cpus.append((cpu.cpu, start, len(self.out) - start))
        struct.pack_into("<Q", self.out, size_at, len(self.out) - size_at - 8)
        last_options = len(self.out)
        struct.pack_into("<Q", self.out, done_at, last_options)
        buffer = struct.pack("<Q", fly_at) + b"\0" + (tf.clock or "local").encode() + b"\0"
        buffer += struct.pack("<II", page, len(cpus))
        buffer += b"".join(struct.pack("<IQQ", *c) for c in cpus)
        self.section(OPT_DONE, self.options([(OPT_BUFFER, buffer)], 0), compressed=False)
        return bytes(self.out)


def first_options_of(parser: _MetadataParser, src: bytes) -> list[tuple[int, bytes]]:
    """The options of the file's first options section, raw."""
    offset = struct.unpack_from("<Q", src, options_offset_position(src))[0]
    sec, _ = parser.section(offset, OPT_DONE, "options")
    items = []
    while True:
        opt = sec.u16("id")
        size = sec.u32("size")
        data = bytes(sec.take(size, "data"))
        if opt == OPT_DONE:
            return items
        items.append((opt, data))


def options_offset_position(src: bytes) -> int:
    """File offset of the v7 header's first-options-offset field."""
    pos = 10 + src[10:].index(b"\0") + 1 + 2 + 4  # version string, endian, long size, page size
    pos = src.index(b"\0", pos) + 1  # compression name
    return src.index(b"\0", pos) + 1  # compression version


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else ROOT / "traces/mixed-small/trace.dat.gz"
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        raw = source.read_bytes()
        (t / "full.dat").write_bytes(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        run("trace-cmd", "split", "-i", str(t / "full.dat"), "-o", str(t / "part.dat"),
            "-c", "-p", "30")
        part = t / "part.dat.1"
        run("trace-cmd", "convert", "-i", str(part), "-o", str(t / "v6.dat"),
            "--file-version", "6")
        blank_v6_kallsyms(t / "v6.dat")
        assert report_lines(t / "v6.dat") == report_lines(part)
        run("trace-cmd", "convert", "-i", str(t / "v6.dat"), "-o", str(t / "v7none.dat"),
            "--file-version", "7", "--compression", "none")
        run("trace-cmd", "convert", "-i", str(t / "v6.dat"), "-o", str(t / "v7zstd.dat"),
            "--file-version", "7", "--compression", "zstd")
        small_zstd = (t / "v7zstd.dat").read_bytes()
        rewritten = V7Writer("zstd", "1.5.4",
                             zstandard.ZstdCompressor(level=3).compress).write(small_zstd)
        (t / "rewritten.dat").write_bytes(rewritten)
        assert report_lines(t / "rewritten.dat") == report_lines(t / "v7zstd.dat")
        zlib_file = V7Writer("zlib", zlib.ZLIB_VERSION, lambda b: zlib.compress(b, 9)).write(
            small_zstd)
        (HERE / "mixed-small-30p.v6.dat.gz").write_bytes(
            gzip.compress((t / "v6.dat").read_bytes(), 9, mtime=0))
        (HERE / "mixed-small-30p.v7-none.dat.zst").write_bytes(
            zstandard.ZstdCompressor(level=19).compress((t / "v7none.dat").read_bytes()))
        (HERE / "mixed-small-30p.v7-zlib.dat").write_bytes(zlib_file)
        lines = report_lines(part)
        print("events in the 30-page cut (trace-cmd report):", len(lines) - 1)
        for name in ("mm_page_alloc:", "mm_page_free:", "mm_page_free_batched:",
                     "mm_page_alloc_zone_locked:", "mm_page_pcpu_drain:",
                     "mm_page_alloc_extfrag:", "print:"):
            print(f"  {name} {sum(name in line for line in lines)}")
        print("  first:", lines[1].strip())
        print("  last: ", lines[-1].strip())
    for f in sorted(HERE.glob("mixed-small-30p.*")):
        print(f.name, f.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
