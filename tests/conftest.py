import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def space():
    from jointnas import load_space

    return load_space("fbnetv3")


@pytest.fixture(scope="session")
def published_models():
    path = SHARED / "fbnetv3_models.json"
    if not path.is_file():
        pytest.skip(f"{path} not present (it sits beside the checkout in CI)")
    from jointnas.families.fbnetv3_presets import load_published_models

    return load_published_models(path)


def pytest_configure(config):
    # Tests share two cores with nothing else; more torch threads only add contention.
    import torch

    torch.set_num_threads(int(os.environ.get("JOINTNAS_TEST_THREADS", "2")))
