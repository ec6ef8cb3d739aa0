"""From op weights to a discrete cell: NAS-Bench-201's argmax per edge, DARTS's top-2 inputs per node,
and the skip cap (the P-DARTS-style remedy for skip-connection collapse).

Weights here are numpy arrays of softmaxed alphas, ``(edges, ops)``; betas are already normalised
over each node's incoming edges.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

SKIP = "skip_connect"


def darts_node_edges(nodes: int = 4, inputs: int = 2) -> Tuple[Tuple[int, ...], ...]:
    """Edge indices into each intermediate node of a DARTS cell: node ``i`` has ``inputs + i`` incoming
    edges, from the inputs and the earlier nodes, numbered consecutively (14 edges for 4 nodes)."""
    out, start = [], 0
    for i in range(nodes):
        n = inputs + i
        out.append(tuple(range(start, start + n)))
        start += n
    return tuple(out)


def argmax_edges(weights: np.ndarray, op_names: Sequence[str]) -> List[str]:
    """NAS-Bench-201's rule: every edge keeps its strongest op (``none`` included, as in the reference)."""
    return [op_names[int(np.argmax(row))] for row in weights]


def top2_genotype(weights: np.ndarray, op_names: Sequence[str], betas: Optional[np.ndarray] = None,
                  node_edges=None) -> List[Tuple[str, int]]:
    """DARTS's rule: per node, the two incoming edges whose strongest non-``none`` op weight (times the
    edge's normalised beta, PC-DARTS) is largest, strongest first, each with that op; ``(op, input)``
    pairs in node order, inputs numbered 0, 1 (the cell inputs), 2.. (the nodes)."""
    node_edges = node_edges or darts_node_edges()
    keep = [k for k, name in enumerate(op_names) if name != "none"]
    w = weights if betas is None else weights * betas[:, None]
    pairs = []
    for edges in node_edges:
        strength = [w[e, keep].max() for e in edges]
        for rank in np.argsort(-np.asarray(strength), kind="stable")[:2]:
            e = edges[rank]
            pairs.append((op_names[keep[int(np.argmax(w[e, keep]))]], int(rank)))
    return pairs


def cap_skips(weights: np.ndarray, op_names: Sequence[str], derive: Callable[[np.ndarray], list],
              skip_edges: Callable[[list], List[int]], cap: int) -> list:
    """The skip cap: while the derived cell holds more than ``cap`` skip connections, the weakest of them
    loses its skip weight and the cell is derived again (P-DARTS keeps the strongest ``cap`` skips)."""
    skip = op_names.index(SKIP)
    w = np.array(weights, dtype=float, copy=True)
    cell = derive(w)
    while len(skip_edges(cell)) > cap:
        weakest = min(skip_edges(cell), key=lambda e: w[e, skip])
        w[weakest, skip] = -np.inf
        cell = derive(w)
    return cell
