"""A run's report: what it measured (view), drawn (plots) and written as one HTML page (page)."""
from .page import Report, build_report

__all__ = ["Report", "build_report"]
