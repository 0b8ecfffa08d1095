"""The sweep's rows as one table (polars), written as Parquet."""

from __future__ import annotations

from pathlib import Path

import polars as pl

# Columns first in the table; the metrics follow in name order.
LEAD = ("trace", "source", "point", "settings")
TAIL = ("status", "error", "seconds", "worker", "events", "observe_seconds", "observe_error",
        "agreement_rate")


def to_frame(rows: list[dict], knobs: list[str]) -> pl.DataFrame:
    """A row per trace x settings point: the settings, status, timings and every metric."""
    if not rows:
        return pl.DataFrame()
    df = pl.DataFrame(rows, infer_schema_length=None)
    metrics = sorted(c for c in df.columns if c.startswith(("observed.", "simulated.")))
    order = [*LEAD, *knobs, *TAIL, *metrics]
    return df.select([c for c in order if c in df.columns])


def write_table(df: pl.DataFrame, path: Path) -> Path:
    """Write the table as Parquet (zstd)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path, compression="zstd")
    return path
