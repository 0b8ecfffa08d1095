"""What reading a trace gives: the events, markers and lost tables plus honest accounting."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from replay.trace.schema import EVENTS_SCHEMA, LOST_SCHEMA, MARKERS_SCHEMA


@dataclass
class TraceStats:
    """Line accounting for one source. Every line lands in exactly one bucket."""

    source: str = ""
    layout: str = ""  # "ftrace", "trace_pipe", "trace-cmd", "trace.dat"
    compression: str = "none"
    lines: int = 0  # lines read (records, for trace.dat)
    events: int = 0  # kmem page-allocator events parsed into the events table
    events_by_kind: dict[str, int] = field(default_factory=dict)
    markers: int = 0
    header_lines: int = 0  # '#' lines, trace-cmd preamble, blank lines
    lost_lines: int = 0
    # kernel stacks printed after events ('<stack trace>' and '=> frame' lines): all of them,
    # those of events not in the table (other tracepoints, markers, user stacks), and how many
    # stack traces went to events of the table (their stack_id)
    stack_lines: int = 0
    stack_lines_other: int = 0
    stacks: int = 0
    other_events: dict[str, int] = field(default_factory=dict)  # other tracepoints by name
    bad_lines: dict[str, int] = field(default_factory=dict)  # reason -> count
    bad_samples: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, text)
    lost_events: int = 0  # events the ring buffer lost (known counts)
    lost_by_cpu: dict[int, int] = field(default_factory=dict)
    cpus: int | None = None  # '#P:N' or 'cpus=N' or the trace.dat header
    entries_in_buffer: int | None = None
    entries_written: int | None = None
    error: str | None = None  # where and why reading stopped early (truncated input)
    kernel_release: str | None = None
    # perf.data: where the recording kernel's text was ({"symbol": "_text", "address": N},
    # perf's kernel map), to relocate a System.map or another boot's kallsyms (KASLR)
    kernel_reloc: dict | None = None

    @property
    def bad_total(self) -> int:
        return sum(self.bad_lines.values())

    def nothing_read(self) -> str | None:
        """Why there is nothing to replay (no event and no marker), or None."""
        if self.events or self.markers:
            return None
        what = f"no page-allocator events found in {self.lines:,} lines"
        if self.bad_total:
            what += f" ({self.bad_total:,} bad: " + ", ".join(
                f"{n:,} {r}" for r, n in self.bad_lines.items()) + ")"
        if self.error:
            what += f"; {self.error}"
        return f"{self.source}: {what}"

    def as_dict(self) -> dict:
        """The accounting as JSON-ready data (CLI --json and Parquet metadata)."""
        return {
            "source": self.source,
            "layout": self.layout,
            "compression": self.compression,
            "lines": self.lines,
            "events": self.events,
            "events_by_kind": self.events_by_kind,
            "markers": self.markers,
            "header_lines": self.header_lines,
            "lost_lines": self.lost_lines,
            "stack_lines": self.stack_lines,
            "stack_lines_other": self.stack_lines_other,
            "stacks": self.stacks,
            "lost_events": self.lost_events,
            "lost_by_cpu": {str(k): v for k, v in self.lost_by_cpu.items()},
            "other_events": self.other_events,
            "bad_lines": self.bad_lines,
            "bad_samples": [{"line": ln, "reason": r, "text": t}
                            for ln, r, t in self.bad_samples],
            "cpus": self.cpus,
            "kernel_release": self.kernel_release,
            "kernel_reloc": self.kernel_reloc,
            "error": self.error,
        }


@dataclass
class TraceData:
    """A whole trace in memory (small and medium traces, tests, the engine's input)."""

    events: pa.Table
    markers: pa.Table
    lost: pa.Table
    stats: TraceStats

    @staticmethod
    def empty(stats: TraceStats | None = None) -> TraceData:
        return TraceData(
            EVENTS_SCHEMA.empty_table(),
            MARKERS_SCHEMA.empty_table(),
            LOST_SCHEMA.empty_table(),
            stats or TraceStats(),
        )
