"""The ``mbconv`` family: FBNetV3's hard-swish MBConv network (``mbconv_net``), its
closed-form fvcore-exact cost (``mbconv_cost``) and its published models (``fbnetv3_presets``).

A space file names it with ``family: mbconv`` and may give the fixed structure under
``network:`` and the deployable model under ``deploy:`` (both FBNetV3's by default).
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import ClassVar, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import SpaceError
from .base import Cost, Deploy, ModelFamily, parse_fixed, scaled_resolution, check_spec_keys
from .mbconv_cost import Network, closed_form_cost, min_input_size
from .mbconv_cost_arrays import mbconv_costs

STAGE_FIELDS = ("channels", "depth", "kernel", "expansion", "kernel_rep", "expansion_rep", "se", "act")
ACTIVATIONS = ("hswish", "relu", "swish")


@dataclass(frozen=True)
class MBConvFamily(ModelFamily):
    network: Network = field(default_factory=Network)
    deploy: Deploy = field(default_factory=Deploy)
    name: str = "mbconv"

    @classmethod
    def from_spec(cls, spec: Mapping, where: str = "family") -> "MBConvFamily":
        check_spec_keys(spec, "mbconv", ("network", "deploy"), where)
        return cls(parse_fixed("network", Network, spec.get("network")),
                   parse_fixed("deploy", Deploy, spec.get("deploy")))

    def to_dict(self) -> dict:
        return {"name": self.name, "network": {k: list(v) if isinstance(v, tuple) else v
                                               for k, v in asdict(self.network).items()},
                "deploy": asdict(self.deploy)}

    def fingerprint_spec(self) -> dict:
        # The keys the spaces' fingerprints had before families existed: same space, same fingerprint.
        return {"network": self.network.__dict__, "deploy": self.deploy.__dict__}

    # ---- the arch dimensions
    def check_space(self, space) -> None:
        arch, network = space.arch, self.network
        for key in ("resolution", "stem_channels"):
            if key not in arch:
                raise SpaceError(f"arch.{key}: required dimension is missing")
        for i in range(len(network.stage_strides)):
            for f in STAGE_FIELDS:
                if f"s{i}_{f}" not in arch:
                    raise SpaceError(f"arch.s{i}_{f}: required for stage {i} of {len(network.stage_strides)} "
                                     f"(each stage needs {', '.join(STAGE_FIELDS)})")
            for f in ("channels", "depth", "kernel", "expansion", "kernel_rep", "expansion_rep"):
                lowest = _lowest(arch[f"s{i}_{f}"])
                if lowest is not None and lowest < 1:
                    raise SpaceError(f"arch.s{i}_{f}: lowest value {lowest} is below 1; every stage needs at "
                                     "least one block of at least one channel (a depth of 0 would drop the "
                                     "stage and its stride)")
            act = arch[f"s{i}_act"]
            if act.kind != "categorical" or set(act.choices) - set(ACTIVATIONS):
                raise SpaceError(f"arch.s{i}_act: must be categorical over {', '.join(ACTIVATIONS)}")
        known = {"resolution", "stem_channels"} | {f"s{i}_{f}" for i in range(len(network.stage_strides))
                                                   for f in STAGE_FIELDS + ("trim_pad",)}
        unknown = set(arch) - known
        if unknown:
            raise SpaceError(f"arch: unknown dimension(s) {', '.join(sorted(unknown))}; the model builder "
                             "understands resolution, stem_channels and s<i>_<"
                             + "|".join(STAGE_FIELDS + ("trim_pad",)) + ">")

    # ---- cost
    def cost(self, arch: Mapping) -> Cost:
        return closed_form_cost(arch, self.network, self.deploy)

    vectorised_costs: ClassVar[bool] = True

    def costs(self, archs: Union[Sequence[Mapping], Mapping], progress: bool = False) -> np.ndarray:
        """The closed form over arrays (``mbconv_cost_arrays``), about a microsecond per arch, in
        chunks; ``archs`` are arch dicts or columns."""
        if isinstance(archs, Mapping):
            return mbconv_costs(archs, self.network, self.deploy.in_channels, self.deploy.num_classes)
        from tqdm import tqdm  # here: the fine search's columns need no progress bar, nor its import

        archs = list(archs)
        out = np.empty((len(archs), 2), dtype=np.int64)
        chunk = 1 << 15
        with tqdm(total=len(archs), desc="proxies", unit="cand", file=sys.stderr, disable=not progress,
                  mininterval=0.5) as bar:
            for s in range(0, len(archs), chunk):
                part = archs[s:s + chunk]
                out[s:s + len(part)] = mbconv_costs(part, self.network, self.deploy.in_channels,
                                                    self.deploy.num_classes)
                bar.update(len(part))
        return out

    def deployable(self, arch: Mapping) -> Tuple[object, Tuple[int, ...]]:
        """With every ``s<i>_trim_pad`` kept; fvcore takes about a second to count one."""
        d, res = self.deploy, arch["resolution"]
        model = self.build(arch, num_classes=d.num_classes, in_channels=d.in_channels, input_size=res, trim_pad=True)
        return model.eval(), (1, d.in_channels, res, res)

    def deploy_input(self, arch: Mapping) -> Tuple[int, ...]:
        return (1, self.deploy.in_channels, arch["resolution"], arch["resolution"])

    def cost_order(self, dim_name: str, dim) -> Optional[List]:
        """Every arch dimension of the builder changes FLOPs and params monotonically when the
        others stay put: more channels, depth, expansion, resolution or a larger kernel cost more,
        squeeze-excite costs more, and ``trim_pad`` (depthwise padding one smaller on a stage's
        strided block) shrinks the feature map and so costs less. Activations are free."""
        if dim.kind == "int":
            return list(dim.choices)
        if dim.kind == "bool":
            return [True, False] if dim_name.endswith("trim_pad") else [False, True]
        if dim.kind == "categorical" and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                             for c in dim.choices):
            return sorted(dim.choices)
        return None

    # ---- models
    def recipe_dims(self, space) -> tuple:
        """Recipe dimensions ``build`` acts on: dropout before the classifier, drop path in blocks."""
        return ("dropout", "stochastic_depth")

    def input_size(self, arch: Mapping, task) -> int:
        return scaled_resolution(arch["resolution"], task, self.deploy)

    def build(self, arch: Mapping, *, num_classes: int, in_channels: int, input_size: int,
              dropout: float = 0.0, drop_path: float = 0.0, trim_pad: Optional[bool] = None):
        """``trim_pad`` (default: where the input is large enough for it) keeps the ``s<i>_trim_pad``
        dims; a task input smaller than :func:`min_input_size` gets ``k // 2`` padding everywhere."""
        from .mbconv_net import build_model  # torch: only where a model is built

        if trim_pad is None:
            trim_pad = input_size >= min_input_size(arch, self.network)
        return build_model(dict(arch), num_classes, in_channels, network=self.network, dropout=dropout,
                           drop_path=drop_path, trim_pad=trim_pad)

    def build_model_call(self, arch: Mapping) -> dict:
        return {"function": "jointnas.build_model", "arch": dict(arch), "network": asdict(self.network),
                "num_classes": self.deploy.num_classes, "in_channels": self.deploy.in_channels}

    def min_input_size(self, arch: Mapping) -> int:
        return min_input_size(arch, self.network)


def _lowest(dim):
    """The smallest value of a numeric dimension; None for others."""
    if dim.kind == "int":
        return dim.low
    if dim.kind == "categorical" and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                         for c in dim.choices):
        return min(dim.choices)
    return None
