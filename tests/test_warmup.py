"""The first-run helper that compiles simulate's engine in a second process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from replay import _warmup


def test_warm_cache_spawns_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("PAGEREPLAY_NO_WARMUP", raising=False)
    assert not _warmup.is_warm()
    (tmp_path / "replay_engine").mkdir()
    (tmp_path / "replay_engine" / "simulate.simulate_requests-91.py311.nbi").write_bytes(b"")
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
    assert list(tmp_path.glob("*/replay_engine/simulate.simulate_requests-*.nbi"))
