"""Opening a trace source: a file, stdin or a bundle directory, with compression told by content."""

from __future__ import annotations

import bz2
import io
import lzma
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from replay.errors import InputError

MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\xfd7zXZ\x00": "xz",
    b"BZh": "bz2",
}
TRACEDAT_MAGIC = b"\x17\x08\x44tracing"
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
# perf.data, file and pipe mode (the header size tells them apart); big-endian and version-1
# files are sniffed too, for a clear refusal
PERFDATA_MAGICS = (b"PERFILE2", b"2ELIFREP", b"PERFFILE")
# A bundle's trace files, best first. perf.data comes last: a bundle that also holds the ftrace
# text of the same run (traces/perf-small) reads the text unless perf.data is named.
TRACE_NAMES = ("trace.txt", "trace.dat", "trace", "trace.pipe", "trace_pipe", "report.txt",
               "perf.data")


@dataclass
class Source:
    """An opened trace: a binary stream of decompressed bytes plus what it is."""

    name: str
    stream: BinaryIO
    compression: str
    is_tracedat: bool
    path: Path | None = None
    bundle_dir: Path | None = None
    is_perfdata: bool = False


def sniff_compression(head: bytes) -> str:
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    return "none"


def trace_files(directory: Path) -> list[Path]:
    """A bundle's trace files, best first: trace.txt, trace.dat, trace, trace_pipe..., perf.data
    with any compression suffix (trace.txt.gz, trace.dat.zst, perf.data.gz), in TRACE_NAMES
    order; then any trace*."""
    candidates = sorted(p for p in Path(directory).iterdir() if p.is_file())

    def rank(p: Path) -> int:
        for i, base in enumerate(TRACE_NAMES):
            if p.name == base or (p.name.startswith(base + ".") and p.name.count(".") <= 2):
                return i
        return len(TRACE_NAMES) if p.name.startswith("trace") else -1

    ranked = [(rank(p), p.name, p) for p in candidates]
    return [p for r, _, p in sorted(ranked) if r >= 0]


def find_trace_in_bundle(directory: Path) -> Path:
    """The trace file of a bundle (the first of trace_files)."""
    files = trace_files(directory)
    if not files:
        raise InputError(f"{directory}: no trace file in this directory (expected "
                         "trace.txt[.gz], trace.dat[.gz] or perf.data[.gz])")
    return files[0]


def resolve(source: str | os.PathLike) -> tuple[Path | None, Path | None]:
    """(trace file, bundle directory) for a path; (None, None) for stdin ('-')."""
    if str(source) == "-":
        return None, None
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        return find_trace_in_bundle(path), path
    return path, None


def _gzip_codec() -> tuple:
    try:
        from isal import isal_zlib as zmod
    except ImportError:  # pragma: no cover - isal is a dependency
        zmod = zlib
    return (lambda: zmod.decompressobj(31)), (zmod.error, zlib.error), _GZIP


def _zstd_codec() -> tuple:
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj, (zstandard.ZstdError,), _ZSTD


_CODECS = {"gzip": _gzip_codec, "zstd": _zstd_codec}


class _InflateReader(io.RawIOBase):
    """Concatenated gzip members or zstd frames inflated as a stream, handing on every byte
    that inflated before a truncation or corruption (the error is raised only once they are
    read): a trace cut inside its first deflate block keeps its first lines, and a cut .zst
    says it was cut. gzip.GzipFile and isal's IGzipFile raise from the read that hits the
    damage and drop what that read had inflated; zstandard's stream reader ends silently."""

    _IN = 1 << 18  # compressed bytes per read
    _OUT = 1 << 22  # at most this many inflated bytes per zlib call (bounded memory)

    def __init__(self, raw: BinaryIO, kind: str) -> None:
        self._new_decoder, self._errors, self._magic = _CODECS[kind]()
        self._kind = kind
        self._bounded = kind == "gzip"  # zlib's decompress takes max_length
        self._raw = raw
        self._decoder = self._new_decoder()
        self._input = b""  # compressed bytes not yet given to the decoder
        self._pending = memoryview(b"")
        self._problem: Exception | None = None
        self._cause: Exception | None = None  # the codec's own error, for damage at the start
        self._done = False

    def readable(self) -> bool:
        return True

    def peek(self, size: int = 1) -> bytes:
        """Inflated bytes ahead, without consuming them (no BufferedReader on top: its
        readinto would drop the bytes of a call that ends in the error)."""
        while not self._pending and not self._done:
            self._inflate_more()
        if not self._pending and self._problem is not None:
            raise self._cause or self._problem  # damaged from the start
        return bytes(self._pending[: max(size, 1)])

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self._pending and not self._done:
            self._inflate_more()
        if not self._pending:
            if self._problem is not None:
                problem, self._problem = self._problem, None
                raise problem
            return 0
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _inflate_more(self) -> None:
        decoder = self._decoder
        data = getattr(decoder, "unconsumed_tail", b"") or self._input
        self._input = b""
        if not data:
            data = self._raw.read(self._IN)
            if not data:  # the file ends
                if not decoder.eof:
                    self._problem = EOFError(f"the {self._kind} stream is truncated")
                self._done = True
                return
        try:
            out = decoder.decompress(data, self._OUT) if self._bounded else \
                decoder.decompress(data)
        except self._errors as exc:
            self._problem = OSError(f"the {self._kind} stream is corrupt ({exc})")
            self._cause = exc
            self._done = True
            return
        if decoder.eof:
            rest = decoder.unused_data
            if rest[: len(self._magic)] == self._magic:  # another member or frame follows
                self._decoder = self._new_decoder()
                self._input = rest
            else:
                self._done = True  # the end, or trailing bytes that are no member (ignored)
        self._pending = memoryview(out)


def inflating_reader(raw: BinaryIO, kind: str) -> BinaryIO:
    """The decompressed stream of `raw`, compressed as `kind` (sniff_compression's names)."""
    if kind in _CODECS:
        return _InflateReader(raw, kind)  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if kind == "bz2":
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    return raw


class _Peekable(io.RawIOBase):
    """Put back the bytes read to sniff a non-seekable stream (stdin)."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto(b)  # type: ignore[attr-defined]


def open_source(source: str | os.PathLike) -> Source:
    """Open a trace file, '-' (stdin) or a bundle directory; decompress by content."""
    path, bundle = resolve(source)
    if path is None:
        raw: BinaryIO = sys.stdin.buffer
        name = "<stdin>"
    else:
        name = str(path)
        try:
            raw = open(path, "rb")  # noqa: SIM115 - the Source owns it
        except OSError as exc:
            raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    head = raw.read(16) if path is None else raw.peek(16)[:16]  # type: ignore[attr-defined]
    if path is None:
        raw = io.BufferedReader(_Peekable(head, raw))  # type: ignore[arg-type]
    kind = sniff_compression(head)
    stream = inflating_reader(raw, kind)
    if kind != "none":
        stream = io.BufferedReader(stream, 1 << 20) if not hasattr(stream, "peek") else stream
    try:
        inner = stream.peek(16)[:16] if hasattr(stream, "peek") else b""  # type: ignore
    except Exception as exc:  # noqa: BLE001 - corrupt compressed header
        raise InputError(f"{name}: corrupt {kind} data at the start: {exc}") from None
    is_dat = inner.startswith(TRACEDAT_MAGIC)
    if path is not None and not head:
        raise InputError(f"{name}: empty file")
    return Source(name, stream, kind, is_dat, path, bundle, inner.startswith(PERFDATA_MAGICS))


def _inflate_whole(data: bytes, kind: str) -> tuple[bytes, str | None]:
    """Decompress concatenated gzip members or zstd frames held in memory; keep what precedes
    a truncation or error, and say what cut it short."""
    reader = _InflateReader(io.BytesIO(data), kind)
    parts: list[bytes] = []
    try:
        while part := reader.read(_InflateReader._OUT):
            parts.append(part)
    except (EOFError, OSError) as exc:
        return b"".join(parts), str(exc)
    return b"".join(parts), None


def read_whole(source: str | Path | BinaryIO | bytes) -> tuple[bytes, str, str, str | None]:
    """A whole file (path, stream or bytes) in memory, decompressed when gzip or zstd: its bytes,
    display name, compression and the problem that cut decompression short, if any (what came
    before the damage is kept). For the binary formats read whole (trace.dat, perf.data)."""
    if isinstance(source, bytes | bytearray | memoryview):
        raw, name = bytes(source), "<bytes>"
    elif isinstance(source, str | Path):
        name = str(source)
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    else:
        name = str(getattr(source, "name", "<stream>"))
        raw = source.read()
    kind = "gzip" if raw[:2] == _GZIP else "zstd" if raw[:4] == _ZSTD else None
    if kind is not None:
        data, problem = _inflate_whole(raw, kind)
        return data, name, kind, problem
    return raw, name, "none", None
