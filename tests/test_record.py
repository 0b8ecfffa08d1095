"""`pagereplay record`: argument handling everywhere; a real recording where this machine lets
us trace (root and tracefs with the kmem events), reconstructed exactly."""

from __future__ import annotations

import os
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
    import json

    d = json.loads((tmp_path / "r.json").read_text())
    assert d["start_check"]["exact"] and d["end_check"]["exact"], d["l1_by_zone"]
