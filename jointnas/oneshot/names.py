"""What the rows and columns of a search's alphas are: the edges of the cell in the supernet's
order and the ops in the order of the space's primitives (for reports and records)."""
from __future__ import annotations

from typing import List


def op_names(space: str) -> List[str]:
    if space == "nb201":
        from ..families.cell import OPS
    else:
        from ..families.darts_ops import PRIMITIVES as OPS
    return list(OPS)


def edge_names(space: str) -> List[str]:
    """nb201: NAS-Bench-201's edge names (node i <- node j); darts: ``"<node> <- <input>"`` for the 14
    edges, node 2's two inputs first, then node 3's three, as the released code orders them."""
    if space == "nb201":
        from ..families.cell import EDGES

        return list(EDGES)
    return [f"{node} <- {j}" for node in range(2, 6) for j in range(node)]
