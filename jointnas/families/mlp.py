"""The ``mlp`` family: a multi-layer perceptron on feature vectors (the HPOBench MLP benchmarks).

Arch dimensions: ``depth`` (hidden layers) and, for every hidden layer, a width, an activation
and a dropout rate, each given either once for all layers (``width``, ``activation``,
``dropout``) or per layer (``width_<i>``, ``activation_<i>``, ``dropout_<i>``, i = 1..max depth).
Activation defaults to relu and dropout to 0 when the space has no such dimension (HPOBench's
MLP is scikit-learn's ``MLPClassifier``: relu, no dropout).

Cost: closed form of fvcore's count of the deployable model (``deploy:``: input features and
classes), pinned to fvcore by ``tests/test_mlp_family.py``: ``in*out`` flops per linear layer
(one multiply-add = one flop; activations and dropout are not counted), weights + biases.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Mapping, Optional, Tuple

from ..errors import SpaceError
from .base import Cost, ModelFamily, parse_fixed, check_spec_keys

ACTIVATIONS = ("relu", "tanh", "gelu", "silu", "identity")
_PER_LAYER = ("width", "activation", "dropout")


@dataclass(frozen=True)
class MLPDeploy:
    in_features: int = 18   # HPOBench's vehicle task
    num_classes: int = 4


def _max_depth(space) -> int:
    d = space.arch["depth"]
    return max(d.choices)


def layer_value(arch: Mapping, what: str, i: int, default=None):
    """Hidden layer ``i``'s (1-based) width / activation / dropout: per-layer key, shared key, default."""
    for key in (f"{what}_{i}", what):
        if key in arch:
            return arch[key]
    if default is None:
        raise SpaceError(f"arch has no {what} for hidden layer {i} (need {what} or {what}_{i})")
    return default


@dataclass(frozen=True)
class MLPFamily(ModelFamily):
    deploy: MLPDeploy = field(default_factory=MLPDeploy)
    name: str = "mlp"

    @classmethod
    def from_spec(cls, spec: Mapping, where: str = "family") -> "MLPFamily":
        check_spec_keys(spec, "mlp", ("deploy",), where)
        fam = cls(parse_fixed(f"{where}.deploy", MLPDeploy, spec.get("deploy")))
        if fam.deploy.in_features < 1 or fam.deploy.num_classes < 2:
            raise SpaceError(f"{where}.deploy: in_features must be >= 1 and num_classes >= 2")
        return fam

    def to_dict(self) -> dict:
        return {"name": self.name, "deploy": asdict(self.deploy)}

    def fingerprint_spec(self) -> dict:
        return self.to_dict()

    # ---- the arch dimensions
    def check_space(self, space) -> None:
        arch = space.arch
        if "depth" not in arch or arch["depth"].kind not in ("int", "categorical") \
                or not all(isinstance(v, int) and v >= 1 for v in arch["depth"].choices):
            raise SpaceError("arch.depth: required, an int or categorical dimension of positive layer counts")
        n = _max_depth(space)
        allowed = {"depth"} | set(_PER_LAYER) | {f"{w}_{i}" for w in _PER_LAYER for i in range(1, n + 1)}
        unknown = set(arch) - allowed
        if unknown:
            raise SpaceError(f"arch: unknown dimension(s) {', '.join(sorted(unknown))}; the mlp builder understands "
                             "depth and width/activation/dropout (shared or per layer as <name>_<i>)")
        for i in range(1, n + 1):
            if f"width_{i}" not in arch and "width" not in arch:
                raise SpaceError(f"arch.width: required (or width_{i} for hidden layer {i})")
        for key, dim in arch.items():
            if key.startswith("activation") and (dim.kind != "categorical" or set(dim.choices) - set(ACTIVATIONS)):
                raise SpaceError(f"arch.{key}: must be categorical over (a subset of) {', '.join(ACTIVATIONS)}")
            if key.startswith("width") and not all(isinstance(v, int) and v >= 1 for v in dim.choices):
                raise SpaceError(f"arch.{key}: widths must be positive integers")

    def widths(self, arch: Mapping) -> List[int]:
        return [int(layer_value(arch, "width", i)) for i in range(1, int(arch["depth"]) + 1)]

    # ---- cost
    def cost(self, arch: Mapping) -> Cost:
        sizes = [self.deploy.in_features] + self.widths(arch) + [self.deploy.num_classes]
        flops = sum(a * b for a, b in zip(sizes, sizes[1:]))
        return Cost(int(flops), int(flops + sum(sizes[1:])))

    def deployable(self, arch: Mapping) -> Tuple[object, Tuple[int, ...]]:
        d = self.deploy
        model = self.build(arch, num_classes=d.num_classes, in_channels=d.in_features, input_size=1)
        return model.eval(), (1, d.in_features)

    def cost_order(self, dim_name: str, dim) -> Optional[List]:
        if dim_name == "depth" or dim_name.startswith("width"):
            return sorted(dim.choices)
        return None

    # ---- models
    def input_size(self, arch: Mapping, task) -> int:
        return 1

    def build(self, arch: Mapping, *, num_classes: int, in_channels: int, input_size: int = 1,
              dropout: float = 0.0, drop_path: float = 0.0):
        """``in_channels`` is the number of input features (an image input is flattened:
        ``in_channels * input_size ** 2`` features); ``dropout`` applies before the classifier."""
        from torch import nn  # only where a model is built

        acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "identity": nn.Identity}
        layers: list = [nn.Flatten()]
        width = in_channels * input_size * input_size
        for i, w in enumerate(self.widths(arch), start=1):
            layers += [nn.Linear(width, w), acts[layer_value(arch, "activation", i, "relu")]()]
            p = float(layer_value(arch, "dropout", i, 0.0))
            if p > 0:
                layers.append(nn.Dropout(p))
            width = w
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, num_classes))
        return nn.Sequential(*layers)
