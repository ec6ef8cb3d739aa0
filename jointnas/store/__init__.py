"""A run's directory: its SQLite store, files and lock (see :mod:`jointnas.store.directory`)."""
from .directory import RunDirectory
from .errors import RunInUse, StoreError, no_space_message, writing
from .run_store import RunStore
from .schema import DB_NAME, FINISHED, FORMAT, STATUSES, Trial

__all__ = ["DB_NAME", "FINISHED", "FORMAT", "RunDirectory", "RunInUse", "RunStore", "STATUSES", "StoreError", "Trial",
           "no_space_message", "writing"]
