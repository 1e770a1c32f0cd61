"""Reports of a run: the pure summary (progress, Pareto front, lineage, Markdown) and its plots."""

from harness.report.summary import ReportData, render_markdown

__all__ = ["ReportData", "render_markdown"]
