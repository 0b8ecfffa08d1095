"""Ingested traces cached as Parquet, so a sweep parses each trace once, not once per point.

A cache entry is a directory `<trace name>-<key>/` holding events.parquet and its markers and
lost tables; the key hashes the trace file's path, size and modification time and the events
schema version, so an edited or re-captured trace is ingested again. An entry is built in a
private directory and renamed into place, so concurrent workers (or concurrent sweeps on shared
storage) never read half of one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from replay.pipeline import Loaded

EVENTS = "events.parquet"


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/pagereplay/ingested (~/.cache/... by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pagereplay" / "ingested"


def trace_file(source: str) -> tuple[Path, Path | None]:
    """(trace file, bundle directory or None) for a sweep source, as `load` resolves it."""
    from replay.trace.sources import resolve

    trace, bundle = resolve(source)
    if trace is None:
        from replay.errors import InputError

        raise InputError("sweep cannot read stdin ('-'): give trace files or bundle directories")
    return trace, bundle


def cache_key(trace: Path) -> str:
    """A short hash of what makes an ingested copy stale."""
    from replay.trace.schema import SCHEMA_VERSION

    st = trace.stat()
    ident = f"{trace.resolve()}|{st.st_size}|{st.st_mtime_ns}|{SCHEMA_VERSION}"
    return hashlib.sha1(ident.encode()).hexdigest()[:16]


def entry_dir(source: str, cache_dir: Path) -> Path:
    """Where a source's ingested copy lives (or will)."""
    trace, bundle = trace_file(source)
    name = (bundle or trace).name.split(".")[0] or "trace"
    return Path(cache_dir) / f"{name}-{cache_key(trace)}"


def ensure_ingested(source: str, cache_dir: Path, threads: int = 2) -> Path:
    """The events.parquet of a source, ingesting it into the cache first if needed."""
    from replay.trace.ingest import ingest_to_parquet

    if str(source).endswith(".parquet") and Path(source).is_file():
        return Path(source)
    trace, _ = trace_file(source)
    final = entry_dir(source, cache_dir)
    if (final / EVENTS).is_file():
        return final / EVENTS
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.partial"
    tmp.mkdir()
    try:
        ingest_to_parquet(trace, tmp / EVENTS, threads=threads)
        try:
            os.rename(tmp, final)
        except OSError:  # another worker won the race: its copy is as good as ours
            if not (final / EVENTS).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / EVENTS


def load_ingested(source: str, events: Path, machine: str | None = None) -> Loaded:
    """A Loaded trace from its ingested copy plus the source's bundle (snapshots, machine)."""
    from replay.engine.machine import machine_from_description
    from replay.trace.ingest import read_parquet
    from replay.trace.snapshots import open_bundle

    bundle_dir = None
    if not (str(source).endswith(".parquet") and Path(source).is_file()):
        _, bundle_dir = trace_file(source)
    bundle = open_bundle(bundle_dir) if bundle_dir is not None else None
    m = machine_from_description(machine) if machine else None
    return Loaded(str(source), read_parquet(events), bundle, m)
