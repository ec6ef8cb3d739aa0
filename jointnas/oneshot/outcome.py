"""The end of a one-shot run: the derived cell as a candidate file (``jointnas train --candidate``
reads it), its exact FLOPs and params, for the ``nb201`` space its recorded NAS-Bench-201
accuracies next to the table's best and the all-skip cell, and, when asked, its training from
scratch with a recipe (test accuracy, weights kept in ``RUN/winner/`` as a coarse winner's)."""
from __future__ import annotations

import json
from typing import Dict, List, Optional

import numpy as np

from ..errors import UsageError
from ..io import atomic_write_text
from .run import RESULT, OneShotRun, SPACE_NAMES, derived_candidate

CANDIDATE = "candidate.json"
WINNER = "winner"
NB201_TABLES = {"cifar10-valid": "nb201/cifar10", "cifar100": "nb201/cifar100",
                "ImageNet16-120": "nb201/imagenet16-120"}
ALL_SKIP = {e: "skip_connect" for e in ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")}


def nb201_accuracies(arch: dict) -> Dict[str, dict]:
    """Per NAS-Bench-201 table: the cell's recorded validation accuracy (mean over the table's seeds,
    %), the table's best and the all-skip cell's; {"error": ...} when the tables are not installed."""
    from ..evaluation.tabular import TableError, load_table

    out = {}
    for label, name in NB201_TABLES.items():
        try:
            table = load_table(name)
        except TableError as e:
            return {"error": str(e)}
        def mean(a):
            return round(float(table.means[table.index[table.key_of(a, {})]]) * table.scale, 2)
        out[label] = {"derived": mean(arch), "best": round(float(np.max(table.means)) * table.scale, 2),
                      "all_skip": mean(ALL_SKIP)}
    return out


def finish(run: OneShotRun) -> dict:
    """The end record of ``run`` (made once; a resumed finished run reads it back)."""
    done = run.store.results(RESULT)
    if done:
        return done[-1]
    from ..catalog import load_space

    history = run.history()
    last = history[-1]
    space = load_space(SPACE_NAMES[run.config.space])
    candidate = derived_candidate(run.config, last["derived"])
    path = run.store.run_dir / CANDIDATE
    atomic_write_text(path, json.dumps(candidate.to_dict(), indent=2, sort_keys=True) + "\n")
    cost = space.family.cost(candidate.arch)
    record = {"candidate": candidate.to_dict(), "candidate_file": str(path), "flops": int(cost.flops),
              "params": int(cost.params), "skip_count": last["skip_count"], "epochs_run": len(history),
              "stopped": bool(last["stopped"]), "space": space.name,
              "search_seconds": round(sum(h["seconds"] for h in history), 1)}
    if run.config.space == "nb201":
        record["nb201"] = nb201_accuracies(candidate.arch)
    if run.config.train_epochs:
        record["trained"] = train_from_scratch(run, candidate, space)
    run.store.save_result(RESULT, record)
    return record


def train_from_scratch(run: OneShotRun, candidate, space) -> dict:
    """Train the derived cell from scratch on the run's task (its own train/val/test splits) with the
    recipe's schedule set to ``train_epochs`` epochs; the weights go to ``RUN/winner/``."""
    from ..catalog import read_recipe
    from ..evaluation.saved_model import save_trained
    from ..evaluation.trainer import train
    from ..space import Candidate

    recipe = dict(candidate.recipe if run.config.recipe is None else read_recipe(run.config.recipe).for_space(space))
    if "epochs" in space.recipe:  # a whole schedule of train_epochs, not the first epochs of a longer one
        recipe["epochs"] = run.config.train_epochs
    candidate = Candidate(dict(candidate.arch), recipe, space=space.name, meta=dict(candidate.meta))
    run.progress.log(f"training the derived cell from scratch: {run.config.train_epochs} epoch(s) of recipe "
                     f"{run.config.recipe or 'the space default'} on {run.task.describe()}")
    result = train(candidate, run.task, epochs=run.config.train_epochs, device=run.device, seed=run.config.seed,
                   space=space, progress=run.progress.shown, test=True, keep_model=True)
    out = {"status": result.status, "val_acc": result.final_acc, "test_acc": result.test_acc,
           "epochs": result.epochs_run, "seconds": round(result.wall_time, 1), "recipe": dict(candidate.recipe)}
    if result.status == "done":
        training = {"data": run.config.data, "seed": run.config.seed, "train_subset": None,
                    "epochs": result.epochs_run}
        out["weights"] = str(save_trained(run.store.run_dir / WINNER, candidate, result, result.model, space,
                                          num_classes=run.task.num_classes, in_channels=run.task.in_channels,
                                          training=training))
    else:
        out["error"] = result.error
    return out


def check_recipe(name: Optional[str], space_name: str) -> None:
    """UsageError now, before any search, for a recipe that the candidate's space cannot take."""
    from ..catalog import load_space, read_recipe
    from ..errors import RecipeError

    if name is None:
        return
    try:
        read_recipe(name).for_space(load_space(SPACE_NAMES[space_name]))
    except RecipeError as e:
        raise UsageError(str(e)) from None


def result_lines(config, record: dict) -> List[str]:
    """The end of the run in words."""
    from ..budget import format_flops

    cand = record["candidate"]
    lines = [f"derived cell ({'stopped early by the collapse remedy, ' if record['stopped'] else ''}"
             f"{record['epochs_run']} epochs, {record['search_seconds']:.0f} s of search): "
             + genotype_text(config.space, cand["arch"]),
             f"skip connections in the derived {'cell' if config.space == 'nb201' else 'normal cell'}: "
             f"{record['skip_count']}",
             f"FLOPs {format_flops(record['flops'])}, params {record['params'] / 1e6:.3f} M (the space's deployable "
             f"network); candidate: {record['candidate_file']} (jointnas train --candidate {record['candidate_file']})"]
    tables = record.get("nb201")
    if tables and "error" in tables:
        lines.append(f"NAS-Bench-201 accuracies not shown: {tables['error']}")
    elif tables:
        lines.append("NAS-Bench-201 validation accuracy (mean of the table's seeds): "
                     + "; ".join(f"{k} {v['derived']:.2f} % (table's best {v['best']:.2f}, all-skip "
                                 f"{v['all_skip']:.2f})" for k, v in ((k, tables[k]) for k in NB201_TABLES)))
    trained = record.get("trained")
    if trained and trained["status"] == "done":
        lines.append(f"trained from scratch: {trained['epochs']} epoch(s), val_acc {trained['val_acc']:.4f}, "
                     f"test_acc {trained['test_acc']:.4f} ({trained['seconds']:.0f} s); weights in "
                     f"{trained['weights']}")
    elif trained:
        lines.append(f"training from scratch ended with status {trained['status']}: {trained.get('error')}")
    return lines


def genotype_text(space: str, arch: dict) -> str:
    """The cell on one line: NAS-Bench-201's string, or the DARTS genotype's (op, input) pairs per node."""
    if space == "nb201":
        from ..families.cell import CellFamily

        return CellFamily().genotype(arch)
    from ..families.darts_genotypes import genotype_of

    g = genotype_of(arch)
    def cell(pairs):
        return " / ".join(" ".join(f"({op},{i})" for op, i in pairs[k:k + 2]) for k in range(0, len(pairs), 2))
    return f"normal {cell(g.normal)}; reduce {cell(g.reduce)}"
