"""What ``jointnas fine`` writes where asked, for a single-budget search and a Pareto front alike:
the result as JSON (``--out``) and the chosen candidates as folders (``--export``)."""
from __future__ import annotations

import json
from typing import List

from ..export import export_candidates
from ..io import atomic_write_text


def write_outputs(args, payload: dict, members, space, context: dict) -> List:
    """``payload`` to ``--out`` and ``members`` to ``--export`` (each only when given); the exported
    folders, in ``members``' order ([] without ``--export``)."""
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if args.export is None:
        return []
    return export_candidates(members, args.export, space, torchscript=args.torchscript, onnx=args.onnx,
                             context=context)
