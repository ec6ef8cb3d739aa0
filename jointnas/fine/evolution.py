"""The adaptive genetic search (FBNetV3's fine stage) over rows of a :class:`FineProblem`.

The initial population is the best measured candidates plus random ones within the budget.
Each generation keeps the best quarter as parents and fills the rest with children, half by
uniform crossover and half by per-dimension mutation; an over-budget child is drawn again a
few times and otherwise repaired by stepping arch dimensions cheaper. The mutation rate grows
while the best score stalls (to jump out of a local optimum) and shrinks back when it
improves; the search stops once the best score has gained less than ``tolerance`` for
``patience`` generations in a row, after ``generations``, or after ``evaluations`` scored.
Everything runs on whole arrays of rows: a generation is a few dozen numpy calls and one
surrogate batch.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import Sequence

import numpy as np

from .base import Strategy
from .problem import Board, FineProblem, SearchResult, finish, ranking
from .sampling import filled, seed_rows

# An over-budget child is drawn again this many times before it is repaired instead.
REJECTION_TRIES = 3
# Mutation-rate adaptation: multiplied by this on a stalled generation, divided on progress.
RATE_GROWTH = 1.5
# Children drawn per missing child in a round: the last generation's draws per accepted child
# (over budget or seen before are rejected) with this margin, within these bounds.
OVERDRAW_MARGIN, OVERDRAW_BOUNDS = 1.15, (1.1, 4.0)


def adapted_rate(gain: float, rate: float, stalled: int, st) -> tuple:
    """(mutation rate, stalled generations) after a generation that gained ``gain``: a stalled
    generation (gain below ``st.tolerance``) raises the rate by ``RATE_GROWTH`` up to
    ``st.max_mutation_rate``, progress lowers it back towards ``st.mutation_rate``."""
    if gain < st.tolerance:
        return min(rate * RATE_GROWTH, st.max_mutation_rate), stalled + 1
    return max(rate / RATE_GROWTH, st.mutation_rate), 0


class Evolution(Strategy):
    """The adaptive GA; ``settings`` as in :class:`jointnas.fine.problem.SearchSettings`."""

    name = "evolution"
    label = "adaptive genetic search"
    _draws_per_child = 2.0  # draws per accepted child, learnt generation by generation

    def search(self, problem: FineProblem, seeds: Sequence = (), *, seed: int = 0, top_k: int = 5,
               progress: bool = False) -> SearchResult:
        st = dataclasses.replace(self.settings, seed=seed, top_k=top_k).validate()
        self._draws_per_child = 2.0
        start = time.perf_counter()
        rng = np.random.default_rng(st.seed)
        board = Board(problem, keep=max(2000, 50 * st.top_k))
        cap = st.evaluations or np.inf

        G, costs = seed_rows(problem, seeds, min(st.init_best, st.population), board)
        n_seeded = len(G)
        G, costs = filled(problem, G, costs, st.population, rng, board)
        stats = board.score(G, costs)
        order = ranking(stats)
        G, stats = G[order], stats[order]
        initial_best = board.scored_list(G[:1], stats[:1])[0]
        n_parents = max(2, int(round(st.parent_fraction * st.population)))
        rate, stalled, stop_reason = st.mutation_rate, 0, "generation limit reached"
        history = [_record(0, stats, rate, board)]

        bar = progress_bar(progress, st.generations)
        generation = 0
        for generation in range(1, st.generations + 1):
            if board.scored >= cap:
                generation -= 1
                stop_reason = f"evaluation limit reached ({board.scored} scored)"
                break
            parents, parent_stats = G[:n_parents], stats[:n_parents]
            want = int(min(st.population - n_parents, cap - board.scored))
            child_G, child_c, child_keys = self.children(problem, parents, want, rate, board, rng)
            child_stats = board.score(child_G, child_c, child_keys)
            all_G = np.concatenate([parents, child_G])
            all_stats = np.concatenate([parent_stats, child_stats])
            order = ranking(all_stats)
            gain = all_stats[:, 0].max() - stats[:, 0].max()
            G, stats = all_G[order], all_stats[order]
            rate, stalled = adapted_rate(gain, rate, stalled, st)
            history.append(_record(generation, stats, rate, board))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(best=f"{stats[:, 0].max():.4f}", rate=f"{rate:.2f}", refresh=False)
            if stalled >= st.patience:
                stop_reason = f"converged: best score gained < {st.tolerance:g} for {st.patience} generations"
                break
            if len(child_G) == 0:
                stop_reason = "no new candidates within the budget left to try"
                break
        if bar is not None:
            bar.close()
        return finish(problem, board, strategy=self.name, settings=st, start=start, initial_best=initial_best,
                      history=history, generations=generation, stop_reason=stop_reason, seeded=n_seeded,
                      population=(G, stats))

    def describe(self, result: SearchResult) -> str:
        return f"{self.label}, {result.generations} generations"

    def children(self, problem: FineProblem, parents: np.ndarray, n: int, rate: float, board: Board,
                  rng: np.random.Generator):
        """Up to ``n`` fresh children of ``parents`` (pairs drawn uniformly among them) within the
        budget, the first ``crossover_fraction`` by crossover and the rest by mutation; with their
        costs and keys. The Pareto search (``pareto.py``) breeds its tournament winners here too."""
        genome = problem.genome
        quota = {True: int(round(n * self.settings.crossover_fraction))}
        quota[False] = n - quota[True]
        got = {True: [], False: []}
        claimed: set = set()  # keys drawn this generation: the first draw of a row decides its fate
        P = len(parents)
        drawn = usable = 0
        for attempt in range(10):
            need = {k: max(quota[k] - sum(len(p[0]) for p in got[k]), 0) for k in (True, False)}
            if not need[True] and not need[False]:
                break
            over = float(np.clip(OVERDRAW_MARGIN * self._draws_per_child, *OVERDRAW_BOUNDS))
            m_cross, m_mut = int(np.ceil(over * need[True])), int(np.ceil(over * need[False]))
            drawn += m_cross + m_mut
            i = rng.integers(P, size=m_cross)
            j = (i + 1 + rng.integers(P - 1, size=m_cross)) % P
            crossed = genome.crossover(parents[i], parents[j], rng)
            origin_cross = crossed.copy()
            # Parents that have converged onto one another mostly recombine into themselves.
            again = np.array([k in board.seen for k in genome.keys(crossed)], dtype=bool)
            if again.any():
                crossed[again] = genome.mutate(crossed[again], rate, rng)
            origin_mut = parents[rng.integers(P, size=m_mut)]
            rows = np.concatenate([crossed, genome.mutate(origin_mut, rate, rng)])
            origin = np.concatenate([origin_cross, origin_mut])
            kind = np.concatenate([np.ones(m_cross, bool), np.zeros(m_mut, bool)])
            keys = genome.keys(rows)
            new = board.claim(keys, claimed)  # only new rows are worth pricing
            rows, origin, kind = rows[new], origin[new], kind[new]
            keys = [k for k, f in zip(keys, new) if f]
            costs = problem.costs(rows)
            ok = problem.fits(costs)
            usable += int(ok.sum())
            for k in (True, False):
                mine = kind == k
                idx = np.nonzero(ok & mine)[0][:need[k]]
                part = [(rows[idx], costs[idx], [keys[r] for r in idx])]
                short = need[k] - len(idx)
                if short and attempt >= REJECTION_TRIES - 1:
                    # the rest of this draw, repaired (a mutation's changes protected)
                    rest = np.nonzero(~ok & mine)[0][:short + short // 4 + 1]
                    fixed, fixed_c = problem.repair(rows[rest], costs[rest], rng, protect=rows[rest] != origin[rest])
                    fixed_keys = genome.keys(fixed)
                    fresh = np.nonzero(board.claim(fixed_keys, claimed))[0][:short]
                    part.append((fixed[fresh], fixed_c[fresh], [fixed_keys[r] for r in fresh]))
                got[k] += part
        parts = got[True] + got[False]
        self._draws_per_child = drawn / max(usable, 1)
        return (np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, genome.width)),
                np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 2), dtype=np.int64),
                [k for p in parts for k in p[2]])


def progress_bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm import tqdm  # only when a bar is drawn: its import costs a command's start-up

    return tqdm(total=total, desc="fine", unit="gen", file=sys.stderr, mininterval=0.5)


def _record(generation: int, stats: np.ndarray, rate: float, board: Board) -> dict:
    top = int(np.argmax(stats[:, 0]))
    return {"generation": generation, "best_score": float(stats[top, 0]), "best_acc": float(stats[top, 1]),
            "mean_score": float(stats[:, 0].mean()), "mutation_rate": rate, "scored": board.scored}
