"""``jointnas describe``: a space's dimensions, a preset/candidate's FLOPs, params and resolution, or
the shipped recipes."""
from __future__ import annotations

import json
from pathlib import Path

from ..catalog import available_recipes, load_space, read_recipe
from ..errors import RecipeError, UsageError
from ..families.cost import count_cost
from ..io import FLOPS_NOTE, FLOPS_NOTE_SHORT
from ..space import Candidate


def register(sub):
    p = sub.add_parser("describe", help="show a space, the FLOPs/params of a preset or candidate, or the recipes",
                       description="Show a search space's dimensions, the cost of one candidate, or (--recipes) "
                       "the shipped training recipes that 'jointnas train --recipe NAME' takes. FLOPs are "
                       f"{FLOPS_NOTE}.")
    p.add_argument("--space", help="space name or YAML path (default: fbnetv3)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", help="a preset of the space, e.g. FBNetV3_A")
    g.add_argument("--candidate", type=Path, help="a candidate JSON file")
    g.add_argument("--recipes", action="store_true", help="list the shipped recipes: name, description, source, "
                   "and, where --space is given, the values each gives that space")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args):
    if args.recipes:
        return list_recipes(args)
    space = load_space(args.space or "fbnetv3")
    if args.preset is None and args.candidate is None:
        print(f"space {space.name} ({space.source}): {len(space.arch)} arch + {len(space.recipe)} recipe "
              f"dimensions, encoding width {space.encoding_width}")
        for part, dims in (("arch", space.arch), ("recipe", space.recipe)):
            for d in dims.values():
                print(f"  {part:6s} {d.name:20s} {d.describe()}")
        print(f"presets: {', '.join(space.presets) or 'none'}")
        print(f"shipped recipes: {', '.join(available_recipes()) or 'none'} (jointnas describe --recipes)")
        summary = space.family.summary() if space.family else ""
        print(f"model family: {space.family.name if space.family else 'none (a user objective scores it)'}"
              + (f": {summary}" if summary else ""))
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
    shape = space.family.deploy_input(cand.arch)
    resolution = shape[-1] if len(shape) == 4 else None
    row = {"name": label, "resolution": resolution, "flops": cost.flops, "params": cost.params,
           "deploy": {"in_channels": shape[1], "num_classes": deploy.num_classes}}
    if args.json:
        print(json.dumps(row))
    else:
        print(f"{label}: " + (f"resolution {resolution} px, " if resolution else "") + f"{cost.flops / 1e6:.1f} MFLOPs, "
              f"{cost.params / 1e6:.2f} M params (deployable model: {shape[1]} channels, "
              f"{deploy.num_classes} classes; {FLOPS_NOTE_SHORT})")
    return 0


def list_recipes(args) -> int:
    """The shipped recipes, one per line (or a JSON list); with --space, each one's values in that space."""
    space = load_space(args.space) if args.space else None
    rows = []
    for name in available_recipes():
        found = read_recipe(name)
        row = {"name": found.name, "description": found.description, "source": found.source,
               "spaces": list(found.spaces)}
        if space is not None:
            try:
                row["recipe"] = found.for_space(space)
            except RecipeError as e:
                row["does_not_fit"] = str(e)
        rows.append(row)
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        print(f"{row['name']}: {row['description']}")
        print(f"  source: {row['source']}" + (f"; written for {', '.join(row['spaces'])}" if row["spaces"] else ""))
        if "recipe" in row:
            print(f"  in space {space.name}: " + ", ".join(f"{k}={v}" for k, v in row["recipe"].items()))
        elif "does_not_fit" in row:
            print(f"  does not fit space {space.name}: {row['does_not_fit']}")
    print("train one with: jointnas train --preset NAME --recipe RECIPE (or a recipe file's path)")
    return 0
