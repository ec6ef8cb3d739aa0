"""Damage shared by the store's refusal tests: a pool array whose unpickling would run code."""
import hashlib
import json
import os
import sqlite3

import numpy as np


class Evil:
    """Unpickled, it touches ``path``: the marker that code from a file ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def object_pool(run):
    """An object array in ``run``'s pool.npy, its digest recorded so that only the loader stands
    between it and the driver; the marker is ``run.parent / "pwned"``."""
    arr = np.empty((2, 2), dtype=object)
    arr[0, 0] = Evil(str(run.parent / "pwned"))
    np.save(run / "pool.npy", arr, allow_pickle=True)
    conn = sqlite3.connect(run / "run.db")
    info = json.loads(conn.execute("SELECT value FROM meta WHERE key='pool'").fetchone()[0])
    info["files"]["pool.npy"] = hashlib.sha256((run / "pool.npy").read_bytes()).hexdigest()
    conn.execute("UPDATE meta SET value=? WHERE key='pool'", (json.dumps(info),))
    conn.commit()
    conn.close()
