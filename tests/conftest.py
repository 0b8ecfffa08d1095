"""Shared fixtures: the bundled real traces (never ../shared) and a CLI runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "traces"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def traces() -> Path:
    return TRACES


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def run_cli(*args: str, stdin: bytes | None = None, cwd: Path | None = None):
    """Run `python -m replay ARGS` as a user would; returns the CompletedProcess. The first
    such run on a cold cache compiles the engine (5-6 minutes here), hence the long timeout."""
    return subprocess.run([sys.executable, "-m", "replay", *args], input=stdin,
                          capture_output=True, cwd=cwd, timeout=1800)
