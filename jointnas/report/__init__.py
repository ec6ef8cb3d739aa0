"""A run's report: what it measured, drawn and written as one HTML page."""
