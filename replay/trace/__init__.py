"""Trace input: text layouts, trace.dat, /proc snapshots, and the events schema."""
