"""`pagereplay record`: argument handling everywhere; a real recording where this machine lets
us trace (root and tracefs with the kmem events), reconstructed exactly; and the capture script
under busybox on Debian's 6.1 kernel in QEMU (benchmarks/record_qemu.sh) where the kcapture
harness is set up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from replay.commands.record_cmd import record_args
from replay.errors import SettingsError
from replay.record import SCRIPT


def test_the_capture_script_is_packaged_and_linked_from_traces():
    assert SCRIPT.is_file()
    linked = Path(__file__).resolve().parent.parent / "traces" / "capture.sh"
    assert linked.resolve() == SCRIPT


def test_record_arguments():
    assert record_args(Path("b"), 5, [], 1024, False, True) == ["-b", "1024", "b", "5"]
    assert record_args(Path("b"), None, ["dd", "if=x"], 64, True, False) == [
        "-b", "64", "--trace-cmd", "--no-kpageflags", "b", "--", "dd", "if=x"]
    for bad in ((None, []), (3, ["ls"]), (0, []), (1.5, [])):
        with pytest.raises(SettingsError):
            record_args(Path("b"), bad[0], bad[1], 64, False, True)


def test_record_without_duration_or_command_is_one_line_exit_2(tmp_path):
    res = run_cli("record", str(tmp_path / "b"))
    assert res.returncode == 2
    assert b"--duration" in res.stderr and b"Traceback" not in res.stderr


def _can_trace() -> bool:
    t = Path("/sys/kernel/tracing/events/kmem/mm_page_alloc/enable")
    return os.geteuid() == 0 and t.exists()


@pytest.mark.slow
@pytest.mark.skipif(not _can_trace(), reason="needs root and tracefs with the kmem events")
def test_record_makes_a_bundle_that_reconstructs_exactly(tmp_path):
    out = tmp_path / "live"
    res = run_cli("record", str(out), "--duration", "1", "-b", "32768")
    assert res.returncode == 0, res.stderr.decode()
    for name in ("trace.txt.gz", "start.buddyinfo", "end.pagetypeinfo", "end.kpageflags.gz",
                 "capture.json", "uname", "ringstats"):
        assert (out / name).is_file(), name
    res = run_cli("reconstruct", str(out), "--json", str(tmp_path / "r.json"))
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["start_check"]["exact"] and d["end_check"]["exact"], d["l1_by_zone"]


RECORD_QEMU = Path(__file__).resolve().parent.parent / "benchmarks" / "record_qemu.sh"


@pytest.mark.slow
def test_record_under_qemu_on_debian_6_1_reconstructs_exactly(tmp_path):
    """capture.sh run by busybox sh in a QEMU guest booting Debian's 6.1.0-56-amd64 (the
    kcapture harness in /work/captures: kernels in kpkg/, memwork.c): `memwork mixed 1 20`
    must come back as a bundle that reconstructs exactly with no inconsistent event."""
    check = subprocess.run(["sh", str(RECORD_QEMU), "--check", "61"], capture_output=True,
                           text=True, timeout=60)
    if check.returncode != 0:
        pytest.skip("no QEMU capture harness (/work/captures/kpkg, kcapture/memwork.c, "
                    f"qemu-system-x86_64): {check.stderr.strip()}")
    out = tmp_path / "bundle"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    res = subprocess.run(["sh", str(RECORD_QEMU), "61", "mixed"], capture_output=True,
                         text=True, timeout=1800, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "VERDICT: exact; 0 inconsistent events" in res.stdout, res.stdout
    cap = json.loads((out / "capture.json").read_text())
    assert cap["kernel"].startswith("6.1.") and cap["ring_buffer_overrun_events"] == 0
    assert cap["exit_status"] == 0 and cap["command"] == "/bin/memwork mixed 1 20"
    # capture.sh's exit trap left the guest's tracefs as it found it
    after = (out / "after.txt").read_text()
    assert "instances: \n" in after and "main kmem enables: 0" in after, after
