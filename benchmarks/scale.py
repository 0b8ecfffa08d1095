"""Speed and memory of every command at two trace lengths, so the memory slope shows.

Each command runs as its own `python -m replay` process; its peak RSS (ru_maxrss) and CPU time
come from os.wait4 on that process alone. Events/s counts the capture's trace events.

    python benchmarks/scale.py [BUNDLE ...] [--commands ingest,simulate,...] [--json OUT]
                               [--root CHECKOUT] [--repeat N]

Default bundles: the held-out long-mixed-half and long-mixed captures (/work/captures; they
are never copied into the repository), else the largest shared bundle. `--root` measures
another checkout's code (e.g. main, for a before/after table). `trace-cmd report` on the same
capture's trace.dat is timed beside them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, bundles  # noqa: E402

CAPTURES = Path(os.environ.get("PAGEREPLAY_CAPTURES", "/work/captures/bundles"))
DEFAULT = ("long-mixed-half", "long-mixed")
COMMANDS = ("ingest", "reconstruct", "simulate", "compare", "report", "explain", "check")


def command_args(cmd: str, bundle: Path, tmp: Path) -> list[str]:
    out = tmp / f"{bundle.name}-{cmd}"
    return {
        "ingest": ["ingest", str(bundle), "-o", str(out) + ".parquet"],
        "reconstruct": ["reconstruct", str(bundle), "--json", str(out) + ".json"],
        "simulate": ["simulate", str(bundle)],
        "compare": ["compare", str(bundle), "-o", str(out)],
        "report": ["report", str(bundle), "-o", str(out)],
        "explain": ["explain", str(bundle), "-o", str(out)],
        "check": ["check", str(bundle), "--baseline", str(bundle), "--set",
                  "watermark_boost_factor=0"],
    }[cmd]


def run(args: list[str], root: Path) -> dict:
    """Wall and CPU seconds, peak RSS (MB) and exit code of one CLI process (reaped here, so
    its rusage is its own)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "replay", *args], env,
                             file_actions=[(os.POSIX_SPAWN_DUP2, fo.fileno(), 1),
                                           (os.POSIX_SPAWN_DUP2, fe.fileno(), 2)])
        _, status, ru = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        fe.seek(0)
        err = fe.read().decode(errors="replace")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024,
            "code": os.waitstatus_to_exitcode(status), "stderr": err[-400:]}


def events_of(bundle: Path) -> int:
    cj = bundle / "capture.json"
    if cj.exists():
        d = json.loads(cj.read_text())
        if "events" in d:
            return int(d["events"])
    with gzip.open(bundle / "trace.txt.gz", "rb") as f:
        return sum(1 for line in f if b": mm_page" in line)


def tracecmd(bundle: Path, tmp: Path) -> dict | None:
    if shutil.which("trace-cmd") is None or not (bundle / "trace.dat.gz").exists():
        return None
    dat = tmp / f"{bundle.name}.dat"
    dat.write_bytes(gzip.decompress((bundle / "trace.dat.gz").read_bytes()))
    best = None
    for _ in range(2):
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as null:
            pid = os.posix_spawn(shutil.which("trace-cmd"), ["trace-cmd", "report", "-i",
                                                              str(dat)], os.environ,
                                 file_actions=[(os.POSIX_SPAWN_DUP2, null.fileno(), 1)])
            _, _, ru = os.wait4(pid, 0)
        r = {"wall_s": time.perf_counter() - t0, "cpu_s": ru.ru_utime + ru.ru_stime,
             "rss_mb": ru.ru_maxrss / 1024}
        best = r if best is None or r["wall_s"] < best["wall_s"] else best
    dat.unlink()
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundles", nargs="*")
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ap.add_argument("--root", default=str(ROOT))
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell; the fastest is kept")
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args()
    targets = [Path(b) if "/" in b else CAPTURES / b for b in a.bundles] or \
        [CAPTURES / b for b in DEFAULT if (CAPTURES / b).is_dir()] or \
        [max(bundles(False), key=lambda p: (p / "trace.txt.gz").stat().st_size)]
    root = Path(a.root).resolve()
    cmds = [c for c in a.commands.split(",") if c]
    results = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        print(f"code: {root}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print("| bundle | command | events | wall s | CPU s | M events/s (wall) | "
              "M events/s (CPU) | peak RSS MB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for b in targets:
            n = events_of(b)
            rows = [("trace-cmd report", tracecmd(b, tmp))] if "trace-cmd" in cmds or \
                "simulate" in cmds else []
            for cmd in cmds:
                if cmd == "trace-cmd":
                    continue
                best = None
                for _ in range(a.repeat):
                    r = run(command_args(cmd, b, tmp), root)
                    if r["code"] not in (0, 1):
                        print(f"{cmd} on {b.name} failed ({r['code']}): {r['stderr']}",
                              file=sys.stderr)
                    best = r if best is None or r["wall_s"] < best["wall_s"] else best
                rows.append((cmd, best))
            for cmd, r in rows:
                if r is None:
                    continue
                results.append({"bundle": b.name, "command": cmd, "events": n, **r})
                print(f"| {b.name} | {cmd} | {n:,} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                      f"{n / r['wall_s'] / 1e6:.2f} | {n / max(r['cpu_s'], 1e-9) / 1e6:.2f} | "
                      f"{r['rss_mb']:.0f} |", flush=True)
    if len(targets) == 2:
        print("\nmemory slope (MB per million events) between the two lengths:")
        by = {(r["bundle"], r["command"]): r for r in results}
        n0, n1 = events_of(targets[0]), events_of(targets[1])
        for cmd in cmds:
            r0, r1 = by.get((targets[0].name, cmd)), by.get((targets[1].name, cmd))
            if r0 and r1:
                slope = (r1["rss_mb"] - r0["rss_mb"]) / ((n1 - n0) / 1e6)
                print(f"  {cmd}: {slope:+.0f} MB / M events")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
