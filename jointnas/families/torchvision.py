"""The ``torchvision`` family: named classification models of ``torchvision.models``, built
without pretrained weights and adapted to a task's channels and classes.

In a space file either the family fixes the model (``family: {name: torchvision, model:
resnet18}``) or the arch has a categorical ``model`` dimension over model names; an optional
``resolution`` arch dimension is the deployable model's input side (default: ``deploy``'s
``reference_resolution``, 224), and a task trains at that side scaled to its own resolution.
Costs are fvcore's counts of the deployable model, computed by fvcore itself once per distinct
(model, resolution) in a process.
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from ..errors import SpaceError
from ..optional import torchvision
from .base import Cost, Deploy, ModelFamily, fvcore_count, parse_fixed, scaled_resolution, check_spec_keys

ARCH_DIMS = ("model", "resolution")
_COSTS: Dict[Tuple, Cost] = {}


def classification_models() -> List[str]:
    models = torchvision("models", "naming a torchvision model")  # about 2 s: only where they are named or built
    return sorted(models.list_models(module=models))


@dataclass(frozen=True)
class TorchvisionFamily(ModelFamily):
    model: Optional[str] = None            # the fixed model, when the arch has no ``model`` dimension
    deploy: Deploy = field(default_factory=Deploy)
    name: str = "torchvision"

    @classmethod
    def from_spec(cls, spec: Mapping, where: str = "family") -> "TorchvisionFamily":
        check_spec_keys(spec, "torchvision", ("model", "deploy"), where)
        model = spec.get("model")
        if model is not None and not isinstance(model, str):
            raise SpaceError(f"{where}.model: expected a torchvision model name, got {model!r}")
        return cls(model, parse_fixed("deploy", Deploy, spec.get("deploy")))

    def to_dict(self) -> dict:
        out = {"name": self.name, "deploy": asdict(self.deploy)}
        if self.model is not None:
            out["model"] = self.model
        return out

    def fingerprint_spec(self) -> dict:
        return {"family": self.to_dict()}

    # ---- the arch dimensions
    def check_space(self, space) -> None:
        unknown = set(space.arch) - set(ARCH_DIMS)
        if unknown:
            raise SpaceError(f"arch: unknown dimension(s) {', '.join(sorted(unknown))}; the torchvision family "
                             f"understands {', '.join(ARCH_DIMS)}")
        known = set(classification_models())
        if "model" in space.arch:
            if self.model is not None:
                raise SpaceError("arch.model: the family already fixes the model to "
                                 f"{self.model!r}; drop one of the two")
            dim = space.arch["model"]
            if dim.kind != "categorical":
                raise SpaceError("arch.model: must be categorical over torchvision model names")
            names = list(dim.choices)
        elif self.model is None:
            raise SpaceError("family.model: name the model (e.g. resnet18), or add a categorical arch.model "
                             "dimension over model names")
        else:
            names = [self.model]
        bad = [n for n in names if n not in known]
        if bad:
            raise SpaceError(f"arch.model: {', '.join(map(repr, bad))} not among torchvision's classification "
                             f"models (e.g. {', '.join(sorted(known)[:6])}, ...)")
        res = space.arch.get("resolution")
        if res is not None and not (res.kind == "int" or (res.kind == "categorical" and all(
                isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in res.choices))):
            raise SpaceError("arch.resolution: must be an int dimension or categorical over positive ints")

    def model_of(self, arch: Mapping) -> str:
        return arch.get("model", self.model)

    def resolution_of(self, arch: Mapping) -> int:
        return int(arch.get("resolution", self.deploy.reference_resolution))

    # ---- cost
    def cost(self, arch: Mapping) -> Cost:
        key = (self.model_of(arch), self.resolution_of(arch), self.deploy)
        if key not in _COSTS:
            _COSTS[key] = fvcore_count(*self.deployable(arch))
        return _COSTS[key]

    fvcore_cost = cost  # the closed form of this family is fvcore itself

    def deployable(self, arch: Mapping) -> Tuple[object, Tuple[int, ...]]:
        d, res = self.deploy, self.resolution_of(arch)
        return self._build(self.model_of(arch), d.num_classes, d.in_channels, 0.0).eval(), (1, d.in_channels, res, res)

    def cost_order(self, dim_name: str, dim) -> Optional[List]:
        if dim_name == "resolution":
            return sorted(dim.choices)
        if dim_name == "model":
            return sorted(dim.choices, key=lambda m: (self.cost({"model": m}).flops, self.cost({"model": m}).params))
        return None

    # ---- models
    def recipe_dims(self, space) -> tuple:
        """``dropout`` where every model of the space takes it; no torchvision builder takes a drop path."""
        models = torchvision("models", "naming a torchvision model")
        names = list(space.arch["model"].choices) if "model" in space.arch else [self.model]
        takes = all("dropout" in _builder_params(models.get_model_builder(n)) for n in names)
        return ("dropout",) if takes else ()

    def input_size(self, arch: Mapping, task) -> int:
        return scaled_resolution(self.resolution_of(arch), task, self.deploy)

    def build(self, arch: Mapping, *, num_classes: int, in_channels: int, input_size: int,
              dropout: float = 0.0, drop_path: float = 0.0):
        """``dropout`` reaches models whose builder takes it (MobileNet, EfficientNet, ...); the
        torchvision builders have no drop-path setting, so ``drop_path`` is not used."""
        return self._build(self.model_of(arch), num_classes, in_channels, dropout)

    @staticmethod
    def _build(name: str, num_classes: int, in_channels: int, dropout: float):
        from torch import nn  # torch and torchvision: only where a model is built

        models = torchvision("models", f"the torchvision model {name}")

        builder = models.get_model_builder(name)
        kwargs = {"weights": None, "num_classes": num_classes}
        if "dropout" in _builder_params(builder):
            kwargs["dropout"] = dropout
        model = builder(**kwargs)
        if in_channels != 3:
            _replace_first_conv(model, in_channels, nn)
        return model


def _builder_params(builder) -> set:
    """Keyword arguments a torchvision builder passes on to its model class. Signature
    inspection of torchvision's own builders, not of a jointnas plug-in: torchvision declares
    no list of the settings a model takes."""
    names = set(inspect.signature(builder).parameters)
    model_cls = inspect.signature(builder).return_annotation
    if isinstance(model_cls, type):
        names |= set(inspect.signature(model_cls.__init__).parameters)
    return names


def _replace_first_conv(model, in_channels: int, nn) -> None:
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                setattr(parent, child_name, nn.Conv2d(
                    in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                    child.dilation, child.groups if child.groups == 1 else in_channels, child.bias is not None))
                return
    raise SpaceError(f"{type(model).__name__} has no Conv2d to take {in_channels} input channels")
