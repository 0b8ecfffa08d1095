"""The first-run helper that compiles simulate's engine in a second process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replay import _warmup


def test_warm_cache_spawns_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("PAGEREPLAY_NO_WARMUP", raising=False)
    assert not _warmup.is_warm()
    (tmp_path / "replay_engine").mkdir()
    mark = "simulate_loop.simulate_requests_fast-91.py311.nbi"
    (tmp_path / "replay_engine" / mark).write_bytes(b"")
    assert _warmup.is_warm()
    _warmup.start()
    assert _warmup._proc is None
    _warmup.wait()  # nothing to wait for


def test_helper_processes_do_not_spawn_helpers(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PAGEREPLAY_NO_WARMUP", "1")
    assert _warmup.is_warm()


@pytest.mark.slow
def test_helper_fills_an_empty_cache(tmp_path):
    """A cold compile of simulate's loop (minutes): afterwards the cache holds it."""
    env = dict(os.environ, PAGEREPLAY_NUMBA_BASE=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    r = subprocess.run([sys.executable, "-m", "replay._warmup"], env=env, timeout=1800)
    assert r.returncode == 0
    for tier in ("simulate_requests_fast", "simulate_requests"):  # fast, then the whole loop
        assert list(tmp_path.glob(f"*/replay_engine/simulate_loop.{tier}-*.nbi"))


def test_a_helper_nobody_waited_for_is_stopped_at_exit(tmp_path):
    """A command that fails before it simulates does not leave a compiler running."""
    env = dict(os.environ, PAGEREPLAY_NUMBA_BASE=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    env.pop("PAGEREPLAY_NO_WARMUP", None)
    code = "from replay import _warmup; _warmup.start(); print(_warmup._proc.pid)"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    status = Path(f"/proc/{int(r.stdout)}/status")
    for _ in range(50):
        if not status.exists() or "zombie" in status.read_text():
            break
        time.sleep(0.1)
    assert not status.exists() or "zombie" in status.read_text()
