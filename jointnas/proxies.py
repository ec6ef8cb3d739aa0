"""Proxies: FLOPs and params of the deployable model, exactly as fvcore counts them.

fvcore counts one multiply-add as one flop. ``count_cost_fvcore`` runs fvcore itself (about a
second per FBNetV3-size model); ``count_cost`` is the fast path used everywhere else.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Optional

import torch

from .model import build_model
from .space import Space, load_space


@dataclass(frozen=True)
class Cost:
    flops: int
    params: int


def deploy_model(arch: dict, space: Space):
    return build_model(arch, space.deploy.num_classes, space.deploy.in_channels, network=space.network).eval()


def count_cost_fvcore(arch: dict, space="fbnetv3") -> Cost:
    """Reference count: fvcore's FlopCountAnalysis total and parameter_count of the deploy model."""
    from fvcore.nn import FlopCountAnalysis, parameter_count

    space = load_space(space)
    model = deploy_model(arch, space)
    x = torch.zeros(1, space.deploy.in_channels, arch["resolution"], arch["resolution"])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = int(analysis.total())
    return Cost(flops, int(parameter_count(model)[""]))


def count_cost(arch: dict, space="fbnetv3") -> Cost:
    """FLOPs and params of the deployable model for ``arch`` (fvcore's numbers)."""
    return count_cost_fvcore(arch, space)
