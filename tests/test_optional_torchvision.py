"""torchvision is the optional `vision` extra: the digits / FBNetV3 main path runs without it, and
every use of it without it is one line saying how to install it."""
import os
import subprocess
import sys
import textwrap

import pytest

from jointnas.optional import VISION_HINT

# A meta-path finder that refuses torchvision, as on an install without the extra.
NO_TORCHVISION = textwrap.dedent("""
    import sys
    class NoTorchvision:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "torchvision":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, NoTorchvision())
""")


def test_the_digits_main_path_runs_without_torchvision():
    script = NO_TORCHVISION + textwrap.dedent("""
        import numpy as np
        import torch
        from jointnas import load_space, load_task, sample_pool, count_cost, train
        from jointnas.budget import cheapest_arch
        from jointnas.catalog import load_surrogate
        from jointnas.errors import UsageError
        from jointnas.shipped import folder

        torch.set_num_threads(1)
        space = load_space("fbnetv3")
        pool = sample_pool(space, 64)
        costs = [count_cost(c, space) for c in pool[:4]]
        predictor = load_surrogate(folder("predictors") / "fbnetv3-digits.pt", space)
        mean, std = predictor.predict(pool)
        task = load_task("digits")
        cand = space.candidate(cheapest_arch(space), dict(space.default_recipe(), epochs=1))
        result = train(cand, task, epochs=1, device="cpu", space=space)
        try:  # the finder above does refuse torchvision
            load_task("cifar10")
        except UsageError as e:
            print("refused:", e)
        print("ok", len(mean), costs[0].flops > 0, result.status, result.final_acc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == f"refused: CIFAR-10 needs torchvision: {VISION_HINT}"
    ok, n, has_flops, status, acc = lines[1].split()
    assert (ok, n, has_flops, status) == ("ok", "64", "True", "done") and 0.0 <= float(acc) <= 1.0


@pytest.fixture
def without_torchvision(monkeypatch):
    """torchvision and its submodules unimportable in this process (None in sys.modules)."""
    for name in ("torchvision", "torchvision.datasets", "torchvision.models", "torchvision.transforms"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("argv, needed_by", [
    (["train", "--preset", "FBNetV3_A", "--data", "cifar10"], "CIFAR-10"),
    (["autotrain", "--arch", "resnet18", "--data", "digits"], "naming a torchvision model"),
])
def test_what_needs_torchvision_says_how_to_install_it(without_torchvision, refused, argv, needed_by):
    refused(argv, f"{needed_by} needs torchvision: {VISION_HINT}")


def test_an_image_folder_without_torchvision_says_how_to_install_it(without_torchvision, refused, tmp_path):
    (tmp_path / "a").mkdir()
    refused(["train", "--preset", "FBNetV3_A", "--data", f"imagefolder:{tmp_path}"],
            f"reading an image folder needs torchvision: {VISION_HINT}")
