"""Regression gates for CI: scalar metrics out of a report, thresholds, verdicts, JUnit and
Markdown (`pagereplay check`)."""
