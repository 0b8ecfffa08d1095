"""perf.data's header, event attributes and feature sections (file mode and pipe mode).

The layout is tools/perf/Documentation/perf.data-file-format.txt and include/uapi/linux/
perf_event.h: a file-mode header (magic PERFILE2, attrs section, data section, a feature
bitmap whose sections follow the data), or a pipe-mode header (magic and size 16) whose
attributes, tracing data and features arrive as records in the stream (HEADER_ATTR,
HEADER_TRACING_DATA, HEADER_FEATURE). Only little-endian files are read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from replay.trace.tracefmt import FormatError, TraceFile, read_tracing_data

PERF_MAGIC = b"PERFILE2"
PERF_MAGIC_SWAPPED = b"2ELIFREP"  # a big-endian file (the u64 magic byte-swapped)
PERF_MAGIC_V1 = b"PERFFILE"
FILE_HEADER_SIZE = 104  # magic, size, attr_size, attrs, data, event_types, 256-bit feature map
PIPE_HEADER_SIZE = 16

# enum perf_event_type (include/uapi/linux/perf_event.h) and perf's own user records
# (tools/lib/perf/include/perf/event.h enum perf_user_event_type).
REC_MMAP, REC_LOST, REC_COMM, REC_EXIT, REC_FORK, REC_SAMPLE = 1, 2, 3, 4, 7, 9
REC_MMAP2, REC_LOST_SAMPLES = 10, 13
REC_USER_FIRST = 64
REC_HEADER_ATTR, REC_TRACING_DATA, REC_FINISHED_ROUND, REC_ID_INDEX = 64, 66, 68, 69
REC_AUXTRACE, REC_EVENT_UPDATE, REC_HEADER_FEATURE = 71, 78, 80
REC_COMPRESSED, REC_COMPRESSED2 = 81, 83
PERF_RECORD_MISC_CPUMODE_MASK = 7
PERF_RECORD_MISC_KERNEL = 1
PERF_RECORD_MISC_COMM_EXEC = 1 << 13

# enum perf_event_sample_format
SAMPLE_IP, SAMPLE_TID, SAMPLE_TIME, SAMPLE_ADDR, SAMPLE_READ = 1, 2, 4, 8, 16
SAMPLE_CALLCHAIN, SAMPLE_ID, SAMPLE_CPU, SAMPLE_PERIOD, SAMPLE_STREAM_ID = 32, 64, 128, 256, 512
SAMPLE_RAW = 1 << 10
SAMPLE_IDENTIFIER = 1 << 16
# enum perf_event_read_format
READ_TOTAL_TIME_ENABLED, READ_TOTAL_TIME_RUNNING, READ_ID, READ_GROUP, READ_LOST = 1, 2, 4, 8, 16
PERF_TYPE_TRACEPOINT = 2
ATTR_FLAG_SAMPLE_ID_ALL = 1 << 18

# tools/perf/util/header.h HEADER_* feature bits
FEAT_TRACING_DATA, FEAT_HOSTNAME, FEAT_OSRELEASE, FEAT_VERSION = 1, 3, 4, 5
FEAT_NRCPUS, FEAT_CMDLINE, FEAT_EVENT_DESC, FEAT_COMPRESSED = 7, 11, 12, 27
FEAT_LAST = 32

_SAMPLE_NAMES = {
    SAMPLE_IP: "IP", SAMPLE_TID: "TID", SAMPLE_TIME: "TIME", SAMPLE_ADDR: "ADDR",
    SAMPLE_READ: "READ", SAMPLE_CALLCHAIN: "CALLCHAIN", SAMPLE_ID: "ID", SAMPLE_CPU: "CPU",
    SAMPLE_PERIOD: "PERIOD", SAMPLE_STREAM_ID: "STREAM_ID", SAMPLE_RAW: "RAW",
    SAMPLE_IDENTIFIER: "IDENTIFIER",
}


@dataclass
class PerfAttr:
    """One event's perf_event_attr (the fields a reader needs) and its sample ids."""

    type: int
    config: int
    sample_type: int
    read_format: int
    flags: int
    ids: list[int] = field(default_factory=list)
    name: str = ""

    @property
    def sample_id_all(self) -> bool:
        return bool(self.flags & ATTR_FLAG_SAMPLE_ID_ALL)

    @property
    def is_tracepoint(self) -> bool:
        return self.type == PERF_TYPE_TRACEPOINT

    def sample_type_text(self) -> str:
        return "|".join(n for bit, n in _SAMPLE_NAMES.items() if self.sample_type & bit)


@dataclass
class PerfHeader:
    """What the header and features say. `data_start`/`data_end` bound the record stream."""

    pipe: bool
    data_start: int
    data_end: int
    attrs: list[PerfAttr] = field(default_factory=list)
    tracing: TraceFile | None = None
    features: set[int] = field(default_factory=set)
    osrelease: str | None = None
    hostname: str | None = None
    perf_version: str | None = None
    nr_cpus_online: int | None = None
    cmdline: str | None = None
    compression: str | None = None  # HEADER_COMPRESSED: "zstd" (perf record -z)
    error: str | None = None  # a damaged feature section: what was lost


def looks_like_perfdata(head: bytes) -> bool:
    """True when `head` (the first bytes of an uncompressed file) is a perf.data header."""
    return head[:8] in (PERF_MAGIC, PERF_MAGIC_SWAPPED, PERF_MAGIC_V1)


def parse_attr(body: bytes | memoryview) -> PerfAttr:
    """A perf_event_attr: type, size, config, period, sample_type, read_format, flags."""
    if len(body) < 48:
        raise FormatError(f"a perf_event_attr of {len(body)} bytes is too short")
    typ, _size, config, _period, sample_type, read_format, flags = struct.unpack_from(
        "<IIQQQQQ", body)
    return PerfAttr(typ, config, sample_type, read_format, flags)


def _string(body: memoryview, pos: int) -> tuple[str, int]:
    """A perf_header_string (u32 length, NUL-padded text) at pos; returns it and the end."""
    if pos + 4 > len(body):
        raise FormatError("a header string runs past its section")
    (n,) = struct.unpack_from("<I", body, pos)
    if pos + 4 + n > len(body):
        raise FormatError("a header string runs past its section")
    text = bytes(body[pos + 4 : pos + 4 + n]).split(b"\0", 1)[0].decode("utf-8", "replace")
    return text, pos + 4 + n


def _event_desc(body: memoryview) -> dict[int, str]:
    """HEADER_EVENT_DESC: event name by sample id."""
    nr, attr_size = struct.unpack_from("<II", body)
    pos, names = 8, {}
    for _ in range(nr):
        pos += attr_size
        (nr_ids,) = struct.unpack_from("<I", body, pos)
        name, pos = _string(body, pos + 4)
        for k in range(nr_ids):
            names[struct.unpack_from("<Q", body, pos + 8 * k)[0]] = name
        pos += 8 * nr_ids
    return names


def apply_feature(header: PerfHeader, feat: int, body: memoryview) -> None:
    """Read one feature section (file mode) or HEADER_FEATURE record body (pipe mode)."""
    header.features.add(feat)
    if feat == FEAT_TRACING_DATA:
        header.tracing = read_tracing_data(body, "the perf.data tracing data")
    elif feat in (FEAT_OSRELEASE, FEAT_HOSTNAME, FEAT_VERSION):
        text, _ = _string(body, 0)
        attr = {FEAT_OSRELEASE: "osrelease", FEAT_HOSTNAME: "hostname",
                FEAT_VERSION: "perf_version"}[feat]
        setattr(header, attr, text)
    elif feat == FEAT_NRCPUS and len(body) >= 8:
        header.nr_cpus_online = struct.unpack_from("<I", body, 4)[0]
    elif feat == FEAT_CMDLINE and len(body) >= 4:
        (nr,) = struct.unpack_from("<I", body)
        pos, words = 4, []
        for _ in range(nr):
            word, pos = _string(body, pos)
            words.append(word)
        header.cmdline = " ".join(words)
    elif feat == FEAT_EVENT_DESC and len(body) >= 8:
        names = _event_desc(body)
        for attr in header.attrs:
            attr.name = next((names[i] for i in attr.ids if i in names), attr.name)
    elif feat == FEAT_COMPRESSED and len(body) >= 8:
        kind = struct.unpack_from("<I", body, 4)[0]
        header.compression = {0: "none", 1: "zstd"}.get(kind, f"type {kind}")


def _features(data: bytes, header: PerfHeader, bitmap: int) -> None:
    """The feature sections after the data: a table of (offset, size), one per set bit."""
    bits = [b for b in range(256) if bitmap >> b & 1]
    table = header.data_end
    view = memoryview(data)
    for k, feat in enumerate(bits):
        entry = table + 16 * k
        if entry + 16 > len(data):
            header.error = (f"the perf.data ends at byte {len(data)}, before its feature "
                            f"sections (at {table}): the tracing data and other features are lost")
            return
        offset, size = struct.unpack_from("<QQ", data, entry)
        if offset + size > len(data):
            header.error = (f"the perf.data ends at byte {len(data)}, inside feature section "
                            f"{feat} ({offset}-{offset + size})")
            return
        try:
            apply_feature(header, feat, view[offset : offset + size])
        except (FormatError, struct.error) as exc:
            header.error = f"feature section {feat} of the perf.data is damaged ({exc})"
            if feat == FEAT_TRACING_DATA:
                header.tracing = None


def parse_file_header(data: bytes) -> PerfHeader:
    """The file-mode header, attrs and features of a perf.data held in memory."""
    if len(data) < FILE_HEADER_SIZE:
        raise FormatError(f"the perf.data header is cut short ({len(data)} of "
                          f"{FILE_HEADER_SIZE} bytes)")
    _magic, size, attr_size = struct.unpack_from("<8sQQ", data, 0)
    attrs_off, attrs_size, data_off, data_size = struct.unpack_from("<4Q", data, 24)
    bitmap = int.from_bytes(data[72:104], "little")
    if size != FILE_HEADER_SIZE or not 80 <= attr_size <= 4096 or attr_size % 8:
        raise FormatError(f"the perf.data header is not a known layout (header size {size}, "
                          f"attr size {attr_size})")
    if attrs_off + attrs_size > len(data):
        raise FormatError(f"the perf.data ends at byte {len(data)}, before its event attributes")
    end = data_off + data_size
    header = PerfHeader(False, data_off, min(end, len(data)))
    if data_size == 0:  # perf record did not finish: the data runs to the end of the file
        header.data_end = len(data)
        header.error = "the perf.data header gives no data size (perf record did not finish)"
    for k in range(attrs_size // attr_size):
        at = attrs_off + k * attr_size
        attr = parse_attr(memoryview(data)[at : at + attr_size - 16])
        ids_off, ids_size = struct.unpack_from("<QQ", data, at + attr_size - 16)
        if ids_off + ids_size <= len(data):
            attr.ids = list(struct.unpack_from(f"<{ids_size // 8}Q", data, ids_off))
        header.attrs.append(attr)
    if end > len(data):
        header.error = (f"the perf.data is truncated at byte {len(data)}, inside its data "
                        f"section (bytes {data_off}-{end}); the feature sections after it (the "
                        "tracing data with the event formats) are lost")
    elif data_size:
        _features(data, header, bitmap)
    return header


def check_magic(data: bytes) -> bool:
    """Is the file in pipe mode? Refuses big-endian and version-1 files with one line."""
    magic = data[:8]
    if magic == PERF_MAGIC_SWAPPED:
        raise FormatError("the perf.data was written on a big-endian machine; only "
                          "little-endian perf.data is read")
    if magic == PERF_MAGIC_V1:
        raise FormatError("the perf.data is in the old version-1 format (PERFFILE); only "
                          "PERFILE2 is read")
    if magic != PERF_MAGIC:
        raise FormatError("not a perf.data file")
    if len(data) < PIPE_HEADER_SIZE:
        raise FormatError("the perf.data header is cut short")
    return struct.unpack_from("<Q", data, 8)[0] == PIPE_HEADER_SIZE
