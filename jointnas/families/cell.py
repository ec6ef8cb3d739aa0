"""The ``cell`` family: the NAS-Bench-201 cell network (Dong & Yang, ICLR 2020).

A cell is a DAG of 4 nodes; each of its 6 edges (node i <- node j, j < i) carries one op of
none / skip_connect / nor_conv_1x1 / nor_conv_3x3 / avg_pool_3x3, node i is the sum of its
incoming edges and node 3 is the output. The network: a 3x3 conv stem (``channels``), then 3
stages of ``cells`` cells at ``channels``, 2x and 4x that width, separated by residual
reduction blocks (two ReLU-conv-BN 3x3 with stride 2, shortcut avg-pool + 1x1 conv), then
BN-ReLU, global average pooling and a linear classifier. Every edge is built and counted, as
NAS-Bench-201 counts them (its params column includes edges whose output never reaches node 3).

The arch dimensions are the edges, named ``edge_<i>_<j>`` in NAS-Bench-201's string order
(1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2), each a categorical over (a subset of) ``OPS``.

Cost: closed form of fvcore's count of the deployable model (``deploy:`` in the space file),
pinned to fvcore by ``tests/test_cell_family.py``. fvcore counts one multiply-add as one
flop: per conv ``k*k*c_in*c_out*h_out*w_out`` (no bias here), 2 per element for an eval-mode
affine batch norm, 1 per input element for the global pooling, ``in*out`` for the linear layer;
ReLU, the 3x3 / 2x2 average pools, the zero op and the sums are not counted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import SpaceError
from .base import Cost, ModelFamily, parse_fixed, check_spec_keys

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")
_KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


@dataclass(frozen=True)
class CellNetwork:
    channels: int = 16    # of the stem and the first stage; doubled by each reduction block
    cells: int = 5        # per stage


@dataclass(frozen=True)
class CellDeploy:
    """The deployable model that FLOPs/params refer to (NAS-Bench-201's CIFAR-10 network)."""

    in_channels: int = 3
    num_classes: int = 10
    resolution: int = 32


def edge_nodes(edge: str):
    """``"edge_3_1"`` -> (3, 1): the edge into node 3 from node 1."""
    _, i, j = edge.split("_")
    return int(i), int(j)


@dataclass(frozen=True)
class CellFamily(ModelFamily):
    network: CellNetwork = field(default_factory=CellNetwork)
    deploy: CellDeploy = field(default_factory=CellDeploy)
    name: str = "cell"

    @classmethod
    def from_spec(cls, spec: Mapping, where: str = "family") -> "CellFamily":
        check_spec_keys(spec, "cell", ("network", "deploy"), where)
        fam = cls(parse_fixed(f"{where}.network", CellNetwork, spec.get("network")),
                  parse_fixed(f"{where}.deploy", CellDeploy, spec.get("deploy")))
        if fam.network.channels < 1 or fam.network.cells < 1:
            raise SpaceError(f"{where}.network: channels and cells must be positive")
        if fam.deploy.resolution % 4:
            raise SpaceError(f"{where}.deploy.resolution: must be a multiple of 4 (two stride-2 reductions), "
                             f"got {fam.deploy.resolution}")
        return fam

    def to_dict(self) -> dict:
        return {"name": self.name, "network": asdict(self.network), "deploy": asdict(self.deploy)}

    def fingerprint_spec(self) -> dict:
        return self.to_dict()

    # ---- the arch dimensions
    def check_space(self, space) -> None:
        for e in EDGES:
            if e not in space.arch:
                raise SpaceError(f"arch.{e}: required dimension is missing (a cell has the edges "
                                 f"{', '.join(EDGES)})")
            dim = space.arch[e]
            if dim.kind != "categorical" or set(dim.choices) - set(OPS):
                raise SpaceError(f"arch.{e}: must be categorical over (a subset of) {', '.join(OPS)}")
        unknown = set(space.arch) - set(EDGES)
        if unknown:
            raise SpaceError(f"arch: unknown dimension(s) {', '.join(sorted(unknown))}; the cell builder "
                             f"understands {', '.join(EDGES)}")

    # ---- cost
    def _fixed_cost(self):
        """(flops, params) of everything but the cells' edges."""
        c, h, d = self.network.channels, self.deploy.resolution, self.deploy
        flops = 9 * d.in_channels * c * h * h + 2 * c * h * h          # stem conv + BN
        params = 9 * d.in_channels * c + 2 * c
        for s in (1, 2):                                               # reduction blocks
            cin, cout, ho = c << (s - 1), c << s, h >> s
            flops += (9 * cin * cout + 9 * cout * cout + cin * cout) * ho * ho + 2 * 2 * cout * ho * ho
            params += 9 * cin * cout + 9 * cout * cout + cin * cout + 2 * 2 * cout
        cl, hl = c << 2, h >> 2
        flops += 2 * cl * hl * hl + cl * hl * hl + cl * d.num_classes  # last BN, pooling, classifier
        params += 2 * cl + cl * d.num_classes + d.num_classes
        return flops, params

    def _edge_cost(self, k: int):
        """(flops, params) of one ``k``x``k`` ReLU-conv-BN edge summed over every cell of the network."""
        flops = params = 0
        for s in range(3):
            c, h = self.network.channels << s, self.deploy.resolution >> s
            flops += self.network.cells * (k * k * c * c * h * h + 2 * c * h * h)
            params += self.network.cells * (k * k * c * c + 2 * c)
        return flops, params

    def cost(self, arch: Mapping) -> Cost:
        flops, params = self._fixed_cost()
        for e in EDGES:
            k = _KERNEL.get(arch[e])
            if k:
                f, p = self._edge_cost(k)
                flops, params = flops + f, params + p
        return Cost(int(flops), int(params))

    def costs(self, archs: Sequence[Mapping], progress: bool = False) -> np.ndarray:
        base = np.array(self._fixed_cost(), dtype=np.int64)
        per = {op: np.array(self._edge_cost(k), dtype=np.int64) for op, k in _KERNEL.items()}
        zero = np.zeros(2, dtype=np.int64)
        out = np.empty((len(archs), 2), dtype=np.int64)
        for i, a in enumerate(archs):
            out[i] = base + sum((per.get(a[e], zero) for e in EDGES), zero)
        return out

    def deploy_input(self, arch: Mapping) -> Tuple[int, ...]:
        d = self.deploy
        return (1, d.in_channels, d.resolution, d.resolution)

    def deployable(self, arch: Mapping) -> Tuple[object, Tuple[int, ...]]:
        d = self.deploy
        model = self.build(arch, num_classes=d.num_classes, in_channels=d.in_channels, input_size=d.resolution)
        return model.eval(), (1, d.in_channels, d.resolution, d.resolution)

    def cost_order(self, dim_name: str, dim) -> Optional[List]:
        """none, skip and pooling cost nothing; a 1x1 conv less than a 3x3."""
        rank = {"none": 0, "skip_connect": 0, "avg_pool_3x3": 0, "nor_conv_1x1": 1, "nor_conv_3x3": 2}
        if dim.kind == "categorical" and set(dim.choices) <= set(rank):
            return sorted(dim.choices, key=lambda op: (rank[op], OPS.index(op)))
        return None

    # ---- models
    def input_size(self, arch: Mapping, task) -> int:
        return self.deploy.resolution

    def build(self, arch: Mapping, *, num_classes: int, in_channels: int, input_size: int,
              dropout: float = 0.0, drop_path: float = 0.0):
        """The cell network of ``arch``; ``drop_path`` is not part of NAS-Bench-201 and is ignored
        (no edge is droppable without changing which ops the table measured)."""
        from .cell_net import CellNet  # torch: only where a model is built

        if input_size % 4:
            raise SpaceError(f"the cell network needs an input size that is a multiple of 4, got {input_size}")
        return CellNet([arch[e] for e in EDGES], self.network.channels, self.network.cells,
                       num_classes, in_channels, dropout)

    def genotype(self, arch: Mapping) -> str:
        """NAS-Bench-201's string of the cell, e.g. ``|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|...|``."""
        nodes = []
        for i in (1, 2, 3):
            nodes.append("|" + "|".join(f"{arch[f'edge_{i}_{j}']}~{j}" for j in range(i)) + "|")
        return "+".join(nodes)
