"""The plain baseline a digits search must beat: scikit-learn's ``SVC()`` (default settings) fitted
on exactly the images the jointnas trainer trains on, scored on the same test split.

The splits are the trainer's own (``jointnas.evaluation.data.load_task("digits", seed=SEED)``:
a fixed stratified 20 % test hold-out, then a seeded 20 % validation carve of the rest), so the
test accuracy printed here is quoted beside a coarse run's winner (BENCHMARKS.md). Pixels are the
8x8 images as the trainer holds them (0..255), scaled to 0..1.

    python scripts/bench_svc_digits.py              # training split only, as the winner's search saw it
    python scripts/bench_svc_digits.py --seed 0 --with-validation   # training + validation images
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def features(split):
    return split.images.reshape(len(split), -1).numpy() / 255.0, split.labels.numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="the coarse run's --seed (its validation carve; default 0)")
    p.add_argument("--with-validation", action="store_true", help="also fit on the validation images")
    args = p.parse_args(argv)

    import numpy as np
    from sklearn.svm import SVC

    from jointnas.evaluation.data import load_task

    task = load_task("digits", seed=args.seed)
    x, y = features(task.train)
    if args.with_validation:
        xv, yv = features(task.val)
        x, y = np.concatenate([x, xv]), np.concatenate([y, yv])
    xt, yt = features(task.test)
    accuracy = float((SVC().fit(x, y).predict(xt) == yt).mean())
    fitted = "training + validation" if args.with_validation else "training"
    print(f"SVC() on digits, fitted on the trainer's {fitted} split ({len(y)} images, seed {args.seed}): "
          f"test accuracy {100 * accuracy:.2f} % ({int(round(accuracy * len(yt)))} of {len(yt)} test images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
