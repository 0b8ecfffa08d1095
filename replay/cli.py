"""The `pagereplay` command line: one short function per command, errors as one line at the edge."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from replay.errors import PageReplayError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Replay Linux page-allocator traces through a model of the zoned buddy allocator "
    "(Linux 6.1 and 6.12 rules; x86_64 and 32-bit x86 with HighMem).",
)
err = Console(stderr=True)
out = Console()

SourceArg = Annotated[str, typer.Argument(help="Trace file, '-' for stdin, or a bundle directory.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail on the first bad line (exit 2).")]


@app.command()
def ingest(
    source: SourceArg,
    output: Annotated[Path | None,
                      typer.Option("-o", "--output", help="Events Parquet file.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto, ftrace or trace-cmd.")] = "auto",
    strict: StrictOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the accounting as JSON.")] = False,
    threads: Annotated[int, typer.Option(help="Parser threads.")] = 2,
) -> None:
    """Parse a trace into a typed events table (Parquet), with markers and lost-event tables."""
    from replay.commands.ingest_cmd import run_ingest

    code = run_ingest(source, output, fmt, strict, as_json, threads, out, err)
    raise typer.Exit(code)


SymbolsOpt = Annotated[Path | None, typer.Option(
    "--symbols", help="System.map or /proc/kallsyms (plain or .gz) to name the call sites of "
    "a perf.data recorded with -g (relocated to the recording kernel; default: a bundle's "
    "kallsyms or System.map).")]


@app.command()
def info(
    source: SourceArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    strict: StrictOpt = False,
    symbols: SymbolsOpt = None,
) -> None:
    """Summarise a trace: events by kind, duration, CPUs, zones, markers, lost events, bad lines."""
    from replay.commands.info_cmd import run_info

    raise typer.Exit(run_info(source, as_json, strict, out, err, symbols))


MachineOpt = Annotated[str | None, typer.Option(
    "--machine", help="Machine for a bare trace, e.g. mem=4G,cpus=8,nodes=1.")]
KernelOpt = Annotated[str | None, typer.Option(
    "--kernel", help="Kernel rules to follow: 6.1 or 6.12 (default: the trace's release, from "
    "the bundle's uname or the trace header; nearest profile with a warning).")]


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar (it shows only on "
                                        "a terminal, for long traces).")]


@app.command()
def reconstruct(
    source: SourceArg,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result as JSON "
                                                  "('-' for stdout).")] = None,
    machine: MachineOpt = None,
    kernel: KernelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Follow the kernel's real buddy state through the trace; check it against /proc.

    Exit status 0 when exact with no inconsistent event, 1 when not, 2 for unusable input.
    """
    from replay.commands.progress import replay_progress
    from replay.commands.reconstruct_cmd import run_reconstruct

    with replay_progress(err, quiet) as progress:
        code = run_reconstruct(source, json_out, machine, out, err, kernel, progress)
    raise typer.Exit(code)


SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="What-if setting KEY=VALUE (repeatable): pageblock_order, max_order, pcp_batch, "
    "pcp_high, percpu_pagelist_high_fraction, min_free_kbytes, watermark_scale_factor, "
    "watermark_boost_factor, mobility_grouping, cpus, fallback_policy, kernel, "
    "vmstat_interval_ms, vmstat_phase_ms.")]


@app.command()
def simulate(
    source: SourceArg,
    sets: SetOpt = None,
    outdir: Annotated[Path | None, typer.Option("-o", "--output", help="Directory for "
                                                "simulated.parquet and simulate.json.")] = None,
    agreement: Annotated[bool, typer.Option("--agreement", help="Also measure how often the "
                                            "model picks the kernel's block.")] = False,
    machine: MachineOpt = None,
    kernel: KernelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Feed the trace's requests through the model; it makes every decision itself.

    With --kernel other than the trace's, the same requests run under that kernel's policy
    (the upgrade what-if)."""
    from replay.commands.progress import replay_progress
    from replay.commands.simulate_cmd import run_simulate

    with replay_progress(err, quiet) as progress:
        code = run_simulate(source, sets, outdir, agreement, machine, out, err, kernel,
                            progress)
    raise typer.Exit(code)


OutDirOpt = Annotated[Path | None, typer.Option("-o", "--output", help="Output directory.")]
TimeOpt = Annotated[str | None, typer.Option(
    "--time", help="Limit to START,END seconds (as the trace prints them), like perf kmem --time.")]
WindowMsOpt = Annotated[float | None, typer.Option(
    "--window-ms", help="Sample the state every N ms of trace time (default: 100 samples).")]
WindowEvOpt = Annotated[int | None, typer.Option("--window-events",
                                                 help="Sample the state every N events.")]
PlotlyOpt = Annotated[str, typer.Option("--plotlyjs", help="inline (offline, ~5 MB) or cdn.")]


@app.command()
def report(
    source: SourceArg,
    outdir: OutDirOpt = None,
    time_window: TimeOpt = None,
    window_ms: WindowMsOpt = None,
    window_events: WindowEvOpt = None,
    plotlyjs: PlotlyOpt = "inline",
    machine: MachineOpt = None,
    kernel: KernelOpt = None,
    symbols: SymbolsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """The observed trace alone: summary.json, report.md and dashboard.html."""
    from replay.commands.progress import replay_progress
    from replay.commands.report_cmd import run_report

    with replay_progress(err, quiet) as progress:
        code = run_report(source, outdir, time_window, window_ms, window_events, plotlyjs,
                          machine, None, False, out, err, kernel, symbols, progress)
    raise typer.Exit(code)


@app.command()
def compare(
    source: SourceArg,
    sets: SetOpt = None,
    outdir: OutDirOpt = None,
    time_window: TimeOpt = None,
    window_ms: WindowMsOpt = None,
    window_events: WindowEvOpt = None,
    plotlyjs: PlotlyOpt = "inline",
    machine: MachineOpt = None,
    kernel: KernelOpt = None,
    symbols: SymbolsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Reconstruct, simulate and agreement; observed vs simulated for every metric.

    The observed side follows the trace's kernel; the simulated side --kernel's (the upgrade
    what-if when they differ)."""
    from replay.commands.progress import replay_progress
    from replay.commands.report_cmd import run_report

    with replay_progress(err, quiet) as progress:
        code = run_report(source, outdir, time_window, window_ms, window_events, plotlyjs,
                          machine, sets, True, out, err, kernel, symbols, progress)
    raise typer.Exit(code)


@app.command()
def explain(
    source: SourceArg,
    time_window: TimeOpt = None,
    outdir: Annotated[Path | None, typer.Option("-o", "--output", help="Directory for "
                                                "explain.json.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print explain.json to stdout "
                                          "instead of the tables.")] = False,
    symbols: SymbolsOpt = None,
    sets: SetOpt = None,
    top: Annotated[int, typer.Option("--top", help="Rows per table in the console.")] = 15,
    machine: MachineOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Who stole pageblocks from another migratetype, which live blocks left them mixed (and
    for how long), and which blocks keep pageblocks from merging. With --set, the simulated run
    under those settings is explained too."""
    from replay.commands.explain_cmd import run_explain
    from replay.commands.progress import replay_progress

    with replay_progress(err, quiet or as_json) as progress:
        code = run_explain(source, time_window, outdir, as_json, symbols, machine, sets, top,
                           out, err, progress)
    raise typer.Exit(code)


ThresholdsOpt = Annotated[Path | None, typer.Option(
    "--thresholds", help="TOML file of per-metric thresholds (docs/ci.md); default thresholds "
    "otherwise.")]


@app.command()
def check(
    current: Annotated[str, typer.Argument(help="comparison.json / summary.json (or a report "
                                           "directory), or a bundle to compare first.")],
    baseline: Annotated[str, typer.Option("--baseline", help="The baseline: a report JSON or a "
                                          "bundle, like CURRENT.")],
    thresholds: ThresholdsOpt = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML (one test case "
                                               "per metric).")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown table "
                                                  "for a PR comment.")] = None,
    sets: SetOpt = None,
    baseline_sets: Annotated[list[str] | None, typer.Option(
        "--baseline-set", help="What-if setting KEY=VALUE for a bundle BASE (repeatable).")] = None,
    outdir: Annotated[Path | None, typer.Option("-o", "--output", help="Write the reports "
                                                "computed from bundles here.")] = None,
    plotlyjs: PlotlyOpt = "inline",
    machine: MachineOpt = None,
    kernel: Annotated[str | None, typer.Option(
        "--kernel", help="Kernel rules for a bundle CURRENT's simulation (6.1 or 6.12; same as "
        "--set kernel=...).")] = None,
    baseline_kernel: Annotated[str | None, typer.Option(
        "--baseline-kernel", help="Kernel rules for a bundle BASE's simulation.")] = None,
) -> None:
    """Gate CURRENT against a baseline, metric by metric.

    Exit status 0 when nothing regressed, 1 when something did, 2 for unusable input.
    """
    from replay.commands.check_cmd import run_check

    sets = (sets or []) + ([f"kernel={kernel}"] if kernel else [])
    baseline_sets = (baseline_sets or []) + ([f"kernel={baseline_kernel}"]
                                             if baseline_kernel else [])
    raise typer.Exit(run_check(current, baseline, sets or None, baseline_sets or None,
                               thresholds, junit, markdown, outdir, machine, plotlyjs, out, err))


@app.command()
def sweep(
    sources: Annotated[list[str], typer.Argument(help="Bundle directories or trace files.")],
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", help="KEY=V1,V2,... (repeatable; every combination runs). 'default' leaves "
        "the knob at the trace's value.")] = None,
    outdir: Annotated[Path, typer.Option("-o", "--output", help="Directory for sweep.parquet, "
                                         "sweep.md and sweep.html.")] = Path("sweep"),
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes.")] = 2,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Address of an existing Dask scheduler (tcp://host:8786); "
        "--workers is then ignored.")] = None,
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="Folder for ingested traces (shared storage on a multi-node cluster); "
        "default ~/.cache/pagereplay/ingested.")] = None,
    machine: MachineOpt = None,
    orders: Annotated[list[int] | None, typer.Option(
        "--order", help="Also compare settings at this allocation order (repeatable); order 9 "
        "(2 MiB, THP) always.")] = None,
    kernel: Annotated[str | None, typer.Option(
        "--kernel", help="Kernel rules for every point (6.1 or 6.12); or vary it with "
        "--grid kernel=6.1,6.12.")] = None,
) -> None:
    """Simulate every trace under every combination of settings, in parallel on Dask.

    Exit status 0 when every point ran, 1 when some failed (they are in the table with their
    error), 2 for unusable input.
    """
    from replay.commands.sweep_cmd import run_sweep

    if kernel is not None:
        if any(g.split("=", 1)[0].strip() == "kernel" for g in grid or []):
            from replay.errors import SettingsError

            raise SettingsError("--kernel and --grid kernel=...: give one")
        grid = (grid or []) + [f"kernel={kernel}"]
    raise typer.Exit(run_sweep(sources, grid, outdir, workers, scheduler, cache, machine, out,
                               err, orders))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def record(
    ctx: typer.Context,
    outdir: Annotated[Path, typer.Argument(help="The bundle directory to write.")],
    duration: Annotated[float | None, typer.Option(
        "--duration", help="Trace for this many seconds (instead of -- COMMAND).")] = None,
    buffer_kb: Annotated[int, typer.Option("--buffer-kb", "-b", help="Ring buffer per CPU, "
                                           "KiB (an overrun loses events).")] = 65536,
    trace_cmd: Annotated[bool, typer.Option("--trace-cmd", help="Record with trace-cmd "
                                            "(streams to disk; adds trace.dat.gz).")] = False,
    kpageflags: Annotated[bool, typer.Option(" /--no-kpageflags", help="Skip the "
                                             "/proc/kpageflags snapshots.")] = True,
    stacktrace: Annotated[bool, typer.Option("--stacktrace", help="Record the kernel stack of "
                                             "every mm_page_alloc (call sites; no System.map "
                                             "needed).")] = False,
) -> None:
    """Record a bundle on this host (root): kmem and compaction events, /proc snapshots
    between trace markers. `pagereplay record OUT --duration 30` or
    `pagereplay record OUT -- COMMAND ARG...`; exits with the capture's status."""
    from replay.commands.record_cmd import run_record

    raise typer.Exit(run_record(outdir, duration, list(ctx.args), buffer_kb, trace_cmd,
                                kpageflags, err, stacktrace))


def main() -> None:
    """Entry point: run the app; a PageReplayError becomes one line on stderr and exit 2."""
    try:
        app()
    except PageReplayError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except MemoryError:
        err.print("error: out of memory")
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - no traceback reaches the user
        if os.environ.get("PAGEREPLAY_DEBUG"):
            raise
        err.print(f"internal error: {type(exc).__name__}: {exc} "
                  "(set PAGEREPLAY_DEBUG=1 for a traceback)", highlight=False)
        sys.exit(3)


def dump_json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)
