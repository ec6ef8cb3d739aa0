"""``jointnas describe``: a space's dimensions, or a preset/candidate's FLOPs, params and resolution."""
from __future__ import annotations

import json
from pathlib import Path

from ..catalog import load_space
from ..errors import UsageError
from ..families.cost import count_cost
from ..io import FLOPS_NOTE, FLOPS_NOTE_SHORT
from ..space import Candidate


def register(sub):
    p = sub.add_parser("describe", help="show a space, or the FLOPs/params of a preset or candidate",
                       description="Show a search space's dimensions, or the cost of one candidate. FLOPs are "
                       f"{FLOPS_NOTE}.")
    p.add_argument("--space", default="fbnetv3", help="space name or YAML path (default: fbnetv3)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", help="a preset of the space, e.g. FBNetV3_A")
    g.add_argument("--candidate", type=Path, help="a candidate JSON file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args):
    space = load_space(args.space)
    if args.preset is None and args.candidate is None:
        print(f"space {space.name} ({space.source}): {len(space.arch)} arch + {len(space.recipe)} recipe "
              f"dimensions, encoding width {space.encoding_width}")
        for part, dims in (("arch", space.arch), ("recipe", space.recipe)):
            for d in dims.values():
                print(f"  {part:6s} {d.name:20s} {d.describe()}")
        print(f"presets: {', '.join(space.presets) or 'none'}")
        print(f"model family: {space.family.name if space.family else 'none (a user objective scores it)'}")
        return 0
    if args.preset is not None:
        cand = space.preset(args.preset)
        label = args.preset
    else:
        try:
            cand = Candidate.from_json(args.candidate.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read candidate {args.candidate}: {e}") from None
        space.validate(cand.arch, cand.recipe)
        label = str(args.candidate)
    cost = count_cost(cand.arch, space)
    deploy = space.family.deploy
    resolution = cand.arch.get("resolution", deploy.reference_resolution)
    row = {"name": label, "resolution": resolution, "flops": cost.flops, "params": cost.params,
           "deploy": {"in_channels": deploy.in_channels, "num_classes": deploy.num_classes}}
    if args.json:
        print(json.dumps(row))
    else:
        print(f"{label}: resolution {row['resolution']} px, {cost.flops / 1e6:.1f} MFLOPs, "
              f"{cost.params / 1e6:.2f} M params (deployable model: {deploy.in_channels} channels, "
              f"{deploy.num_classes} classes; {FLOPS_NOTE_SHORT})")
    return 0
