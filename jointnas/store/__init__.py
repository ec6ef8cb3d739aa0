"""A run's directory: its SQLite store, files and lock."""
