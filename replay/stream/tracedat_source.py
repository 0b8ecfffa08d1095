"""trace.dat as an EventSource."""

from __future__ import annotations

from pathlib import Path

from replay.stream.source import TableSource


class TraceDatSource(TableSource):
    """A trace-cmd trace.dat, decoded whole then handed out in batches."""

    def __init__(self, path: str, strict: bool = False, bundle_dir: Path | None = None) -> None:
        from replay.trace.ingest import _read_binary
        from replay.trace.sources import open_source

        src = open_source(path)
        try:
            data = _read_binary(src, strict)
        finally:
            src.stream.close()
        super().__init__(data, bundle_dir)
