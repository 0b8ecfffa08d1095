"""Errors that reach the user as one clear line and an exit status (never a traceback)."""

from __future__ import annotations


class PageReplayError(Exception):
    """A problem with the user's input or settings; the CLI prints it and exits with `exit_code`."""

    exit_code = 2


class InputError(PageReplayError):
    """Unreadable, missing, empty, or malformed input."""


class StrictError(InputError):
    """A malformed line under --strict: `file:line: reason`."""


class SettingsError(PageReplayError):
    """An invalid --set KEY=VALUE or machine description."""
