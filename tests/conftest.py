import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The published FBNetV3 block lists, copied from ../shared so a fresh clone runs every test.
PUBLISHED = REPO / "tests" / "data" / "fbnetv3_models.json"


@pytest.fixture(scope="session")
def space():
    from jointnas import load_space

    return load_space("fbnetv3")


@pytest.fixture(scope="session")
def published_models():
    from jointnas.families.fbnetv3_presets import load_published_models

    return load_published_models(PUBLISHED)


def pytest_configure(config):
    # One thread per process: on a shared 2-core machine two OpenMP threads per process
    # collapse under load (BENCHMARKS.md, "Threads"); worker processes the tests start inherit it.
    threads = os.environ.get("JOINTNAS_TEST_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    import torch

    torch.set_num_threads(int(threads))


@pytest.fixture
def refused(capsys):
    """``refused(argv, text)``: ``jointnas ARGV`` exits 2 with one line on stderr containing ``text``."""
    from jointnas.cli import main

    def check(argv, text):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's refusals
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and text in err and len(err.strip().splitlines()) == 1, err
        return err
    return check
