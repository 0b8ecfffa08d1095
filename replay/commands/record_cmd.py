"""`pagereplay record`: record a bundle on this host with the packaged capture script."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from rich.console import Console

from replay.errors import InputError, SettingsError
from replay.record import SCRIPT


def record_args(outdir: Path, duration: float | None, command: list[str], buffer_kb: int,
                trace_cmd: bool, kpageflags: bool, stacktrace: bool = False) -> list[str]:
    """The capture script's command line."""
    if (duration is None) == (not command):
        raise SettingsError("give either --duration SECONDS or -- COMMAND [ARG...]")
    if duration is not None and (duration <= 0 or duration != int(duration)):
        raise SettingsError(f"--duration {duration}: a whole number of seconds, at least 1")
    if buffer_kb < 1:
        raise SettingsError(f"--buffer-kb {buffer_kb}: must be positive")
    args = ["-b", str(buffer_kb)]
    if trace_cmd:
        args.append("--trace-cmd")
    if not kpageflags:
        args.append("--no-kpageflags")
    if stacktrace:
        args.append("--stacktrace")
    args.append(str(outdir))
    args += [str(int(duration))] if duration is not None else ["--", *command]
    return args


def run_record(outdir: Path, duration: float | None, command: list[str], buffer_kb: int,
               trace_cmd: bool, kpageflags: bool, err: Console, stacktrace: bool = False) -> int:
    args = record_args(outdir, duration, command, buffer_kb, trace_cmd, kpageflags, stacktrace)
    if os.geteuid() != 0:
        raise InputError("pagereplay record needs root (tracefs, /proc/pagetypeinfo, "
                         "/proc/kpageflags): run it with sudo")
    sh = shutil.which("sh")
    if sh is None:
        raise InputError("no /bin/sh to run the capture script")
    stacks = ", mm_page_alloc's kernel stacks" if stacktrace else ""
    err.print(f"recording into {outdir} (kmem and compaction events{stacks}, /proc snapshots)",
              highlight=False)
    return subprocess.run([sh, str(SCRIPT), *args], check=False).returncode
