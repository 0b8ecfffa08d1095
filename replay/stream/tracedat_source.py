"""trace.dat as an EventSource: the streaming reader's batches (replay/trace/tracedat_stream.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from replay.errors import InputError
from replay.stream.columns import ColumnBatch
from replay.stream.source import EventSource, _MarkerRows
from replay.trace.schema import MARKERS_SCHEMA


class TraceDatSource(EventSource):
    """A trace-cmd trace.dat (plain, gzip or zstd), read a batch of records at a time."""

    def __init__(self, path: str, strict: bool = False, bundle_dir: Path | None = None,
                 tmp_dir: str | None = None) -> None:
        from replay.trace.tracedat_stream import TraceDatReader

        self.reader = TraceDatReader(path, tmp_dir)
        self.name = self.reader.name
        self.stats = self.reader.stats
        self.bundle_dir = bundle_dir
        self.strict = strict
        self._log = _MarkerRows(self.reader.marker_rows)
        self._lost: pa.Table | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        for table in self.reader.batches():
            yield from table.to_batches()
        self._finish()

    def column_batches(self) -> Iterator[ColumnBatch]:
        for cols, names, comp in self.reader.batches(columns=True):
            yield ColumnBatch(cols, names, comp)
        self._finish()

    def _finish(self) -> None:
        self._lost = self.reader.lost_table()
        st = self.stats
        if self.strict and (st.error or st.bad_lines):
            reason = st.error or ", ".join(f"{v} x {k}" for k, v in st.bad_lines.items())
            raise InputError(f"{self.name}: {reason}")

    @property
    def markers_log(self):
        return self._log

    def markers(self) -> pa.Table:
        parts = self.reader.markers
        return pa.concat_tables(parts) if parts else MARKERS_SCHEMA.empty_table()

    def lost(self) -> pa.Table:
        if self._lost is None:
            self._lost = self.reader.lost_table()
        return self._lost
