"""Where long work reports: one-line logs (stdout) and tqdm bars with ETA (stderr, only on a terminal)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

from tqdm import tqdm


@dataclass
class Progress:
    """Where the loop reports: one-line logs (stdout) and tqdm bars (stderr)."""

    bars: bool = True
    log: Callable[[str], None] = field(default=None)

    def __post_init__(self):
        if self.log is None:
            self.log = lambda line: tqdm.write(line, file=sys.stdout)

    @property
    def shown(self) -> bool:
        """Bars only on a terminal: in a log file their carriage returns are noise."""
        return self.bars and sys.stderr.isatty()

    def bar(self, **kw):
        return tqdm(disable=not self.shown, file=sys.stderr, dynamic_ncols=True, **kw)
