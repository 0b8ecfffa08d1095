"""Event sources: a trace read batch by batch in the events schema, whatever its format.

An EventSource yields record batches of the events table in trace (seq) order, and keeps the
markers seen so far (`markers_log`, (seq, text) pairs, complete once the batches are done), the
markers and lost-events tables and the TraceStats (final after the last batch). Text is read by
the block scanner as it parses (replay.trace.ingest); an ingested Parquet file by row group;
trace.dat by its streaming reader; perf.data (and anything else read whole) from its table.

`open_events` picks the fastest faithful file of a bundle: trace.dat before the text of the
same capture (the same events, with nanosecond timestamps, read without inflating text).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from replay.errors import InputError
from replay.trace.result import TraceData, TraceStats
from replay.trace.schema import LOST_SCHEMA, MARKERS_SCHEMA

BATCH_ROWS = 1 << 18


class EventSource(ABC):
    """The interface (see the module docstring)."""

    name: str = ""
    stats: TraceStats
    bundle_dir: Path | None = None

    @abstractmethod
    def batches(self) -> Iterator[pa.RecordBatch]:
        """Record batches of the events table, in trace order."""

    def column_batches(self) -> Iterator:
        """Batches for the replay: record batches, or replay.stream.columns.ColumnBatch where
        the source can skip Arrow."""
        return self.batches()

    @property
    @abstractmethod
    def markers_log(self):
        """(seq, text) of the markers read so far, in trace order (a sequence)."""

    @abstractmethod
    def markers(self) -> pa.Table:
        """The markers table (complete once the batches are done)."""

    @abstractmethod
    def lost(self) -> pa.Table:
        """The lost-events table (complete once the batches are done)."""

    def close(self) -> None:  # noqa: B027 - optional: most sources hold nothing to release
        """Release what the source holds open (nothing by default)."""


class _MarkerRows:
    """(seq, text) views of marker tuples (seq first, text last) as they are appended."""

    def __init__(self, rows: list) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[int, str]:
        r = self.rows[i]
        return int(r[0]), r[-1]


class TableSource(EventSource):
    """A trace already in memory (perf.data, tests, anything read whole)."""

    def __init__(self, data: TraceData, bundle_dir: Path | None = None,
                 rows: int = BATCH_ROWS) -> None:
        self.data = data
        self.name = data.stats.source
        self.stats = data.stats
        self.bundle_dir = bundle_dir
        self.rows = rows
        m = data.markers
        self._log = _MarkerRows(list(zip(m["seq"].to_pylist(), m["text"].to_pylist(),
                                         strict=True)))

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from self.data.events.to_batches(max_chunksize=self.rows)

    @property
    def markers_log(self):
        return self._log

    def markers(self) -> pa.Table:
        return self.data.markers

    def lost(self) -> pa.Table:
        return self.data.lost


class TextSource(EventSource):
    """Text traces (ftrace, trace_pipe, trace-cmd report), parsed block by block."""

    def __init__(self, path: str | os.PathLike, strict: bool = False, threads: int = 2,
                 progress=None) -> None:
        from replay.trace.ingest import _check_text, _kernel_release
        from replay.trace.sources import open_source

        self.src = open_source(path)
        self.name = self.src.name
        self.bundle_dir = self.src.bundle_dir
        self.stats = TraceStats(source=self.src.name, compression=self.src.compression)
        self.stats.kernel_release = _kernel_release(self.src)
        self.strict = strict
        self.threads = threads
        self.progress = progress
        _check_text(self.src)
        self._asm = None
        self._log = _MarkerRows([])

    def batches(self) -> Iterator[pa.RecordBatch]:
        from replay.trace.ingest import _check_result, _finish_stats, iter_batches

        gen, asm = iter_batches(self.src, self.stats, strict=self.strict, threads=self.threads,
                                progress=self.progress)
        self._asm = asm
        self._log.rows = asm.markers  # the planner holds this view: fill it in place
        try:
            yield from gen
        finally:
            self.src.stream.close()
        _finish_stats(self.stats, asm, "auto")
        _check_result(self.stats, self.strict)

    @property
    def markers_log(self):
        return self._log

    def markers(self) -> pa.Table:
        return self._asm.markers_table() if self._asm else MARKERS_SCHEMA.empty_table()

    def lost(self) -> pa.Table:
        return self._asm.lost_table() if self._asm else LOST_SCHEMA.empty_table()

    def close(self) -> None:
        self.src.stream.close()


class ParquetSource(EventSource):
    """An ingested .parquet (events, plus its markers and lost side tables), by row group."""

    def __init__(self, path: str | os.PathLike, rows: int = BATCH_ROWS) -> None:
        import pyarrow.parquet as pq

        from replay.trace.ingest import parquet_stats, side_table_path

        self.path = Path(path)
        self.rows = rows
        try:
            self.file = pq.ParquetFile(self.path)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
        self.stats = parquet_stats(self.path, self.file)
        self.name = self.stats.source
        mk, lo = side_table_path(self.path, "markers"), side_table_path(self.path, "lost")
        self._markers = pq.read_table(mk) if mk.exists() else MARKERS_SCHEMA.empty_table()
        self._lost = pq.read_table(lo) if lo.exists() else LOST_SCHEMA.empty_table()
        self._log = _MarkerRows(list(zip(self._markers["seq"].to_pylist(),
                                         self._markers["text"].to_pylist(), strict=True)))

    def batches(self) -> Iterator[pa.RecordBatch]:
        from replay.trace.ingest import _to_current_schema

        for b in self.file.iter_batches(batch_size=self.rows):
            t = _to_current_schema(pa.Table.from_batches([b]).replace_schema_metadata(None))
            yield from t.to_batches()

    @property
    def markers_log(self):
        return self._log

    def markers(self) -> pa.Table:
        return self._markers

    def lost(self) -> pa.Table:
        return self._lost


def open_events(source: str | os.PathLike, *, strict: bool = False,
                prefer_binary: bool = True, progress=None) -> tuple[EventSource, Path | None]:
    """An EventSource for a trace file, a bundle directory or an ingested .parquet, and the
    bundle directory holding its /proc snapshots (None for a bare trace)."""
    from replay.trace.sources import open_source, resolve, trace_files

    src = str(source)
    if src.endswith(".parquet") and Path(src).is_file():
        return ParquetSource(src), None
    trace_file, bundle_dir = resolve(src)
    if bundle_dir is not None and prefer_binary:
        trace_file = preferred_trace_file(trace_files(bundle_dir))
    if bundle_dir is None and trace_file is not None and _has_snapshots(trace_file.parent):
        bundle_dir = trace_file.parent
    path = str(trace_file) if trace_file is not None else src
    opened = open_source(path)
    opened.bundle_dir = bundle_dir
    events = _open(opened, path, bundle_dir, strict, progress)
    if not events.stats.kernel_release and bundle_dir is not None:
        from replay.trace.ingest import _kernel_release

        events.stats.kernel_release = _kernel_release(opened)
    return events, bundle_dir


def _open(opened, path: str, bundle_dir: Path | None, strict: bool, progress) -> EventSource:
    if opened.is_tracedat:
        opened.stream.close()
        from replay.stream.tracedat_source import TraceDatSource

        return TraceDatSource(path, strict=strict, bundle_dir=bundle_dir)
    if opened.is_perfdata:
        from replay.trace.ingest import _read_binary

        try:
            data = _read_binary(opened, strict)
        finally:
            opened.stream.close()
        return TableSource(data, bundle_dir)
    opened.stream.close()
    return TextSource(path, strict=strict, progress=progress)


def preferred_trace_file(files: list[Path]) -> Path:
    """A bundle's trace file to read: trace.dat when the bundle has one beside its text (the
    same capture; decoded several times faster than inflating and parsing the text), else the
    first of trace_files' ranking."""
    if not files:
        raise InputError("no trace file in this directory (expected trace.txt[.gz], "
                         "trace.dat[.gz] or perf.data[.gz])")
    for f in files:
        if f.name == "trace.dat" or f.name.startswith("trace.dat."):
            return f
    return files[0]


def _has_snapshots(directory: Path) -> bool:
    return any((directory / f"start.{name}").exists() for name in ("buddyinfo", "zoneinfo"))
