"""Where a trial runs: executors (serial, local worker processes, Ray)."""
