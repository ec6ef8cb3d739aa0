"""Random search: the honest baseline a fine strategy is compared against.

It scores the measured seeds that fit the budget, then uniform random candidates within the
budget (rejection sampling; when under 5 % of the first draws fit, draws are repaired onto the
budget instead, and the stop reason says so) in surrogate batches, until ``evaluations``
candidates have been scored.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import Sequence

import numpy as np

from .base import Strategy
from .problem import Board, FineProblem, SearchResult, finish
from .sampling import random_rows, seed_rows

DEFAULT_EVALUATIONS = 20_000
BATCH = 4096
MIN_ACCEPTANCE = 0.05


class RandomSearch(Strategy):
    """Uniform random search; ``settings.evaluations`` (default 20,000) candidates are scored."""

    name = "random"
    label = "random search"

    def search(self, problem: FineProblem, seeds: Sequence = (), *, seed: int = 0, top_k: int = 5,
               progress: bool = False) -> SearchResult:
        st = dataclasses.replace(self.settings, seed=seed, top_k=top_k).validate()
        total = st.evaluations or DEFAULT_EVALUATIONS
        start = time.perf_counter()
        rng = np.random.default_rng(st.seed)
        board = Board(problem, keep=max(2000, 50 * st.top_k))
        G, costs = seed_rows(problem, seeds, min(st.init_best, total), board)
        n_seeded = len(G)
        stats = board.score(G, costs) if len(G) else None
        initial = board.best() if len(G) else None
        history, repaired, stop = [], False, f"evaluation limit reached ({total} scored)"
        bar = None
        if progress:
            from tqdm import tqdm  # only when a bar is drawn: its import costs a command's start-up

            bar = tqdm(total=total, desc="fine (random)", unit="cand", file=sys.stderr, mininterval=0.5)
            bar.update(board.scored)
        acceptance = 0.25  # fraction of draws that fit and are new, updated from each block
        while board.scored < total:
            want = min(BATCH, total - board.scored)
            if not repaired:
                block = int(np.ceil(1.2 * want / max(acceptance, MIN_ACCEPTANCE)))
                G, costs = random_rows(problem, want, rng, board, repair=False, max_blocks=1, block=block)
                acceptance = len(G) / block
                if len(G) < want and acceptance < MIN_ACCEPTANCE:
                    repaired = True
            if repaired:
                G, costs = random_rows(problem, want, rng, board, repair=True)
            if len(G) == 0:
                stop = "no new candidates within the budget left to try"
                break
            stats = board.score(G, costs)
            if initial is None:
                initial = board.scored_list(G[:1], stats[:1])[0]
            history.append({"generation": len(history) + 1, "best_score": float(board.stats[:, 0].max()),
                            "scored": board.scored})
            if bar is not None:
                bar.update(len(G))
        if bar is not None:
            bar.close()
        if repaired:
            stop += "; under 5 % of uniform draws fit the budget, so draws were repaired onto it"
        return finish(problem, board, strategy=self.name, settings=st, start=start, initial_best=initial,
                      history=history, generations=len(history), stop_reason=stop, seeded=n_seeded)
