"""A progress bar on stderr for the replaying commands' long work: reading, then replaying.

Shown only on a terminal and without --quiet; transient (gone when the work is done).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console


class ReplayProgress:
    """The hooks a StreamJob calls: rows read, then a bar per replay."""

    def __init__(self, prog) -> None:
        self.prog = prog
        self._read = prog.add_task("reading", total=None, unit="events")

    def rows_read(self, n: int) -> None:
        self.prog.advance(self._read, n)

    def done_reading(self) -> None:
        self.prog.update(self._read, visible=False)

    def replay(self, name: str, total: int) -> Callable[[int], None]:
        task = self.prog.add_task(name, total=max(total, 1), unit="events")
        return lambda n: self.prog.advance(task, n)


@contextmanager
def replay_progress(err: Console, quiet: bool = False) -> Iterator[ReplayProgress | None]:
    if quiet or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                  transient=True) as prog:
        yield ReplayProgress(prog)
