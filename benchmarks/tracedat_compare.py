"""Check read_tracedat(trace.dat) against the kernel's text trace of the same capture, and
against `trace-cmd report -t` (nanosecond timestamps) when trace-cmd is installed.

Usage: python benchmarks/tracedat_compare.py BUNDLE_DIR [BUNDLE_DIR ...]
(each directory holds trace.dat.gz and trace.txt.gz). A plain `re` parser reads the text, so
this check does not depend on the project's own text ingest.

Compared per record, in order: event name, CPU, pid, comm (null for `<...>`), the five
irq-info characters, timestamp (to the microsecond the text prints), pfn, order, migratetype,
gfp text, percpu_refill and the extfrag fields; markers (tracing_mark_write) by text.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

# benchmarks/replay.py is named like the package: keep this folder off the import path
sys.path[:] = [p for p in sys.path
               if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from replay.trace.schema import (  # noqa: E402
    EVENT_NAMES,
    IRQF_BH_OFF,
    IRQF_HARDIRQ,
    IRQF_IRQS_OFF,
    IRQF_NEED_RESCHED,
    IRQF_NMI,
    IRQF_PREEMPT_RESCHED,
    IRQF_PRESENT,
    IRQF_SOFTIRQ,
)
from replay.trace.tracedat import read_tracedat  # noqa: E402

LINE_RE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<flags>\S{5})\s+"
    r"(?P<sec>\d+)\.(?P<usec>\d{6}):\s+(?P<event>\w+):\s(?P<body>.*)$"
)
KV_RE = re.compile(r"(\w+)=(\S+)")
IRQ_CHAR0 = {".": 0, "d": IRQF_IRQS_OFF, "D": IRQF_IRQS_OFF | IRQF_BH_OFF, "b": IRQF_BH_OFF,
             "X": 0}
IRQ_CHAR1 = {".": 0, "N": IRQF_NEED_RESCHED | IRQF_PREEMPT_RESCHED, "n": IRQF_NEED_RESCHED,
             "p": IRQF_PREEMPT_RESCHED}
IRQ_CHAR2 = {".": 0, "Z": IRQF_NMI | IRQF_HARDIRQ, "z": IRQF_NMI,
             "H": IRQF_HARDIRQ | IRQF_SOFTIRQ, "h": IRQF_HARDIRQ, "s": IRQF_SOFTIRQ}
INT_KEYS = {
    "order": "order", "migratetype": "migratetype", "percpu_refill": "percpu_refill",
    "alloc_order": "order", "alloc_migratetype": "migratetype",
    "fallback_order": "fallback_order", "pageblock_order": "pageblock_order",
    "fallback_migratetype": "fallback_migratetype", "fragmenting": "fragmenting",
    "change_ownership": "change_ownership",
}


def parse_text(path: Path) -> list[dict]:
    """Every event and marker line of a kernel text trace as a dict of schema-like values."""
    rows = []
    with gzip.open(path, "rt", errors="replace") as fh:
        for line in fh:
            m = LINE_RE.match(line)
            if not m or (m["event"] not in EVENT_NAMES and m["event"] != "tracing_mark_write"):
                continue
            flags = m["flags"]
            row = {
                "event": m["event"], "cpu": int(m["cpu"]), "pid": int(m["pid"]),
                "comm": None if m["comm"].strip() == "<...>" else m["comm"].strip(),
                "irq_flags": IRQF_PRESENT | IRQ_CHAR0[flags[0]] | IRQ_CHAR1[flags[1]]
                | IRQ_CHAR2[flags[2]],
                "preempt_depth": 0 if flags[3] == "." else int(flags[3], 16),
                "migrate_disable": 0 if flags[4] == "." else int(flags[4], 16),
                "ts_us": int(m["sec"]) * 1_000_000 + int(m["usec"]),
            }
            if m["event"] == "tracing_mark_write":
                row = {k: row[k] for k in ("event", "cpu", "pid", "comm", "ts_us")}
                row["text"] = m["body"]  # the markers table has no irq-info columns
            else:
                for key, value in KV_RE.findall(m["body"]):
                    if key == "pfn":
                        row["pfn"] = int(value, 16)
                    elif key == "gfp_flags":
                        row["gfp_text"] = value
                    elif key in INT_KEYS:
                        row[INT_KEYS[key]] = int(value)
            rows.append(row)
    return rows


def dat_rows(path: Path) -> tuple[list[dict], object]:
    """Events and markers of read_tracedat(path), merged back into record order."""
    data = read_tracedat(path)
    events = data.events.to_pylist()
    for row in events:
        row["ts_us"] = (row["ts_ns"] + 500) // 1000
        if row["failed"]:
            row["pfn"] = 0  # the text prints pfn=0x0 for a failed allocation
    markers = [dict(r, event="tracing_mark_write", ts_us=(r["ts_ns"] + 500) // 1000)
               for r in data.markers.to_pylist()]
    return sorted(events + markers, key=lambda r: r["seq"]), data.stats


def compare(bundle: Path, show: int = 5) -> bool:
    """Print the comparison for one bundle; True when everything matched."""
    text = parse_text(bundle / "trace.txt.gz")
    dat, stats = dat_rows(bundle / "trace.dat.gz")
    print(f"== {bundle.name}: text {len(text)} records, trace.dat {len(dat)} "
          f"(events {stats.events}, markers {stats.markers}, error {stats.error})")
    print("   counts text:", dict(Counter(r["event"] for r in text)))
    print("   counts dat: ", dict(Counter(r["event"] for r in dat)))
    diffs: Counter[str] = Counter()
    shown = 0
    for i, (t, d) in enumerate(zip(text, dat, strict=False)):
        for key, value in t.items():
            if d.get(key) != value:
                diffs[key] += 1
                if shown < show:
                    shown += 1
                    print(f"   record {i + 1}: {key}: text {value!r} trace.dat {d.get(key)!r}")
    if len(text) != len(dat):
        diffs["record count"] += 1
    print("   differences by field:", dict(diffs) or "none")
    return not diffs


REPORT_RE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<sec>\d+)\.(?P<ns>\d{9}):\s+"
    r"(?P<event>\w+):\s+(?P<body>.*)$"
)


def compare_tracecmd(bundle: Path, show: int = 5) -> bool:
    """Every event and marker against `trace-cmd report -t`: order, CPU, pid, exact ns, pfn."""
    if not shutil.which("trace-cmd"):
        print("   (trace-cmd not installed: report comparison skipped)")
        return True
    dat, _ = dat_rows(bundle / "trace.dat.gz")
    with tempfile.NamedTemporaryFile(suffix=".dat") as tmp:
        tmp.write(gzip.decompress((bundle / "trace.dat.gz").read_bytes()))
        tmp.flush()
        out = subprocess.run(["trace-cmd", "report", "-t", "-i", tmp.name], check=True,
                             capture_output=True, text=True).stdout
    report = []
    for line in out.splitlines():
        m = REPORT_RE.match(line)
        if m and (m["event"] in EVENT_NAMES or m["event"] == "print"):
            pfn = re.search(r"\bpfn=0x([0-9a-f]+)", m["body"])
            report.append((m["event"].replace("print", "tracing_mark_write"), int(m["cpu"]),
                           int(m["pid"]), int(m["sec"]) * 10**9 + int(m["ns"]),
                           int(pfn[1], 16) if pfn else None))
    mine = [(r["event"], r["cpu"], r["pid"], r["ts_ns"], r.get("pfn")) for r in dat]
    bad = [i for i, (a, b) in enumerate(zip(report, mine, strict=False)) if a != b]
    for i in bad[:show]:
        print(f"   record {i + 1}: trace-cmd {report[i]} trace.dat {mine[i]}")
    same = not bad and len(report) == len(mine)
    print(f"   trace-cmd report -t: {len(report)} records, "
          f"{'identical (order, cpu, pid, ns, pfn)' if same else f'{len(bad)} differ'}")
    return same


def main(argv: list[str]) -> int:
    ok = all([compare(Path(arg)) and compare_tracecmd(Path(arg)) for arg in argv])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
