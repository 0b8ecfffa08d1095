"""Parameter sweeps: every trace under every combination of what-if settings, in parallel on
Dask (`pagereplay sweep`), gathered into a Parquet table, a Markdown summary and a dashboard."""
