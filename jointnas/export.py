"""Export chosen candidates: one directory per candidate with

- ``candidate.json``  the candidate, with ``meta`` (predicted accuracy and spread, FLOPs, params,
  rank, budget); ``jointnas train --candidate`` reads it;
- ``recipe.yaml``     its training recipe (``yaml.safe_load``-able);
- ``build.json``      the builder call for the deployable model (function, arch, network, classes,
  channels), for tools that read JSON;
- ``build_model.py``  the same call as Python: ``build()`` returns the torch model, ready for
  ``load_state_dict``;
- ``model.onnx``      optionally, the deployable model as ONNX (``torch.onnx``; needs the
  ``onnx`` extra), untrained weights: for latency measurement on a device;
- ``model.ts``        optionally, the same as TorchScript (deprecated in current torch).

``candidate.json``'s ``meta.target`` says what the predicted accuracy means (data, split, epoch,
epoch cap, training subset, seed; :mod:`jointnas.coarse.target`), so that ``jointnas train`` can
compare it like for like.

An ``index.json`` in the export directory lists the candidates best first.
"""
from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import List, Optional, Sequence

import yaml

from .errors import UsageError
from .coarse.target import source_target
from .io import FLOPS_NOTE, replacing
from .io import atomic_write_text as _write  # an interrupted export never leaves half a file
from .space import Space


def _literal(d: dict) -> str:
    """A dict as a Python literal, one key per line."""
    return "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in sorted(d.items())) + "}"


def _builder_python(key: str, arch: dict, network: dict, num_classes: int, in_channels: int, summary: str) -> str:
    res = arch["resolution"]
    return f'''"""Deployable model of candidate {key}, exported by `jointnas fine`.

{summary}

    from build_model import build
    model = build()                      # the model the FLOPs budget refers to (untrained)

Trained weights: `jointnas train --candidate candidate.json --save DIR` writes DIR/weights.pt for
the training data's classes and channels; load them with

    from jointnas.catalog import load_trained
    model, candidate = load_trained("DIR")

Run this file to check that the model builds: python build_model.py
"""
import jointnas
from jointnas.families.mbconv_cost import Network

ARCH = {_literal(arch)}
NETWORK = Network(**{_literal(network)})


def build(num_classes={num_classes}, in_channels={in_channels}, **kwargs):
    """The torch model; ``kwargs`` go to ``jointnas.build_model`` (e.g. dropout, drop_path)."""
    return jointnas.build_model(ARCH, num_classes=num_classes, in_channels=in_channels, network=NETWORK, **kwargs)


if __name__ == "__main__":
    model = build().eval()
    print("built:", sum(p.numel() for p in model.parameters()), "parameters, input {in_channels}x{res}x{res}")
'''


def export_candidates(entries: Sequence, out_dir, space: Space, *, torchscript: bool = False, onnx: bool = False,
                      context: Optional[dict] = None) -> List[Path]:
    """Write each of ``entries`` (:class:`jointnas.fine.problem.Scored`, best first) under ``out_dir``.

    ``context`` (budget, predictor, seed...) is copied into every candidate's ``meta``; its
    ``target`` (what the prediction means) is found from its ``run``/``predictor`` when absent.
    Returns the candidate directories.
    """
    context = dict(context or {})
    if "target" not in context:
        target = source_target(context)
        context["target"] = target.to_dict() if target is not None else None
    if onnx:
        check_onnx()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"export directory {out_dir} is a file; give a directory (it is created if missing)")
    family = space.family
    calls = [family.build_model_call(s.candidate.arch) for s in entries] if family is not None else [None]
    if None in calls:
        raise UsageError(f"exporting builds mbconv models; space {space.name} has family "
                         f"{family.name if family else None!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    dirs, index = [], []
    for rank, (s, call) in enumerate(zip(entries, calls), 1):
        cand = s.candidate
        key = cand.key()
        network, classes, channels = call["network"], call["num_classes"], call["in_channels"]
        d = out_dir / f"rank{rank}-{key}"
        d.mkdir(exist_ok=True)
        meta = dict(context or {}, rank=rank, predicted_acc=s.mean, predicted_std=s.std, score=s.score,
                    flops=s.flops, params=s.params, flops_counting=FLOPS_NOTE,
                    deploy={"num_classes": classes, "in_channels": channels,
                            "resolution": cand.arch["resolution"]})
        record = dict(cand.to_dict(), meta=meta)
        _write(d / "candidate.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
        _write(d / "recipe.yaml", f"# training recipe of candidate {key} (jointnas fine, rank {rank})\n"
               + yaml.safe_dump(dict(cand.recipe), sort_keys=False))
        build = dict(call, space=cand.space, flops=s.flops, params=s.params, flops_counting=FLOPS_NOTE)
        _write(d / "build.json", json.dumps(build, indent=2, sort_keys=True) + "\n")
        summary = (f"Predicted accuracy {s.mean:.4f} +- {s.std:.4f}; {s.flops / 1e6:.1f} MFLOPs ({FLOPS_NOTE}), "
                   f"{s.params / 1e6:.2f} M params at {cand.arch['resolution']} px, {classes} classes.")
        _write(d / "build_model.py", _builder_python(key, cand.arch, network, classes, channels, summary))
        if torchscript:
            _write_torchscript(d / "model.ts", cand.arch, space)
        if onnx:
            _write_onnx(d / "model.onnx", cand.arch, space)
        dirs.append(d)
        index.append({"rank": rank, "key": key, "dir": d.name, "predicted_acc": s.mean, "predicted_std": s.std,
                      "flops": s.flops, "params": s.params})
    _write(out_dir / "index.json", json.dumps({"candidates": index, "context": context or {}}, indent=2,
                                              sort_keys=True) + "\n")
    return dirs


def _write_torchscript(path: Path, arch: dict, space: Space) -> None:
    import torch  # only when a model is written: the export of build files needs none

    model, _ = space.family.deployable(arch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream but still works
        scripted = torch.jit.script(model)
        with replacing(path) as tmp:
            torch.jit.save(scripted, str(tmp))


def check_onnx() -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx writes through it)
    except ImportError:
        raise UsageError("ONNX export needs the onnx package: pip install 'jointnas[onnx]'") from None


def _write_onnx(path: Path, arch: dict, space: Space) -> None:
    """The deployable model as ONNX, input ``image`` (N x C x H x W, batch size free), output ``logits``.
    torch's export through ``torch.export`` needs onnxscript; without it the older TorchScript-based
    exporter writes the same graph."""
    import torch  # see _write_torchscript

    model, shape = space.family.deployable(arch)
    x = torch.zeros(*shape)
    dynamo = importlib.util.find_spec("onnxscript") is not None
    with warnings.catch_warnings(), replacing(path) as tmp:
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter is deprecated
        kwargs = ({"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo
                  else {"dynamic_axes": {"image": {0: "batch"}, "logits": {0: "batch"}}})
        torch.onnx.export(model, (x,), str(tmp), input_names=["image"], output_names=["logits"], dynamo=dynamo,
                          **kwargs)
