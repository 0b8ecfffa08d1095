"""Recording a bundle on a live host: the packaged capture script (capture.sh)."""

from __future__ import annotations

from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "capture.sh"
