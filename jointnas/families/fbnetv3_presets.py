"""Published FBNetV3 block lists <-> arch dicts of the ``fbnetv3`` space."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from .mbconv_cost import Network


def load_published_models(path) -> Dict[str, dict]:
    return json.loads(Path(path).read_text())["models"]


def _stages(blocks: List[list], strides) -> List[List[list]]:
    """Split block-list entries into stages: a stage starts where the stride or width changes, or
    after a (first block, repeat blocks) pair of entries."""
    stages: List[List[list]] = []
    for entry in blocks:
        k, se, c, s, n, e, pad = entry
        if not stages or s != 1 or c != stages[-1][-1][2] or len(stages[-1]) == 2:
            stages.append([])
        stages[-1].append(entry)
    if len(stages) != len(strides):
        raise ValueError(f"block list has {len(stages)} stages, the network expects {len(strides)}")
    return stages


def arch_from_block_list(model: dict, network: Network = Network(), trim_stages=(3, 5)) -> dict:
    """One published model ({input_resolution, stem_channels, blocks}) -> an arch dict.

    ``trim_stages``: stages whose first block has the ``s<i>_trim_pad`` dimension.
    """
    arch = {"resolution": model["input_resolution"], "stem_channels": model["stem_channels"]}
    for i, entries in enumerate(_stages(model["blocks"], network.stage_strides)):
        k, se, c, s, n, e, pad = entries[0]
        if s != network.stage_strides[i]:
            raise ValueError(f"stage {i} has stride {s}, the network expects {network.stage_strides[i]}")
        blocks = [(ent[0], ent[5], ent[1]) for ent in entries for _ in range(ent[4])]
        rest = blocks[1:] or [blocks[0]]
        if len(set(rest)) != 1 or len({b[2] for b in blocks}) != 1:
            raise ValueError(f"stage {i}: repeat blocks differ ({rest}); the space cannot express this")
        arch.update({
            f"s{i}_channels": c, f"s{i}_depth": len(blocks),
            f"s{i}_kernel": k, f"s{i}_expansion": e,
            f"s{i}_kernel_rep": rest[0][0], f"s{i}_expansion_rep": rest[0][1],
            f"s{i}_se": bool(se), f"s{i}_act": "hswish",
        })
        if pad is not None and (pad != k // 2 - 1 or i not in trim_stages):
            raise ValueError(f"stage {i}: dw_padding {pad} (kernel {k}) is not expressible in the space")
        if i in trim_stages:
            arch[f"s{i}_trim_pad"] = pad is not None
    return arch
