"""Reports: the JSON dict (build.py), Markdown for people and CI, HTML dashboards (plotly)."""
