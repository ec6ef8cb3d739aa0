"""Convert the published FBNetV3 block lists (../shared/fbnetv3_models.json) into arch presets.

Usage: python scripts/make_fbnetv3_presets.py [path/to/fbnetv3_models.json]
Prints the ``presets:`` section of spaces/fbnetv3.yaml. The conversion lives in
``jointnas.families.fbnetv3_presets`` so that the tests check the shipped presets against the source file.
"""
import sys
from pathlib import Path

import yaml

from jointnas import load_space
from jointnas.families.fbnetv3_presets import arch_from_block_list, load_published_models

if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2] / "shared" / "fbnetv3_models.json"
    models = load_published_models(sys.argv[1] if len(sys.argv) > 1 else default)
    space = load_space("fbnetv3")
    print("presets:")
    for name, model in models.items():
        arch = arch_from_block_list(model, space.family.network)
        outside = [k for k, d in space.arch.items() if not d.contains(arch[k])]
        print(f"  {name}:")
        if outside:
            print(f"    outside: [{', '.join(outside)}]")
        print("    arch: " + yaml.safe_dump(arch, default_flow_style=True, sort_keys=False, width=10000).strip())
