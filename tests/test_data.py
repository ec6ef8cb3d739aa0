"""Datasets and the task view of an arch: splits, IDX files, missing-data hints, resolutions."""
import gzip
from dataclasses import replace

import numpy as np
import pytest
import torch

import jointnas.evaluation.data as data
from jointnas.evaluation.data import load_task, read_idx, task_resolution
from jointnas.errors import UsageError
from jointnas.families.mbconv_cost import min_input_size
from jointnas.families.mbconv_net import build_model
from jointnas.space import sample_pool


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion(directory, n_train=200, n_test=50, gz=True):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        arrays = {"images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28)), "labels-idx1-ubyte": np.arange(n) % 10}
        for stem, arr in arrays.items():
            body = idx_bytes(arr)
            name = f"{split}-{stem}"
            if gz:
                (directory / f"{name}.gz").write_bytes(gzip.compress(body))
            else:
                (directory / name).write_bytes(body)


@pytest.fixture
def no_system_fashion(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", tmp_path / "not-installed")


# --------------------------------------------------------------------------- digits
def test_digits_splits_are_disjoint_stratified_and_seeded():
    a, b, other = load_task("digits", seed=0), load_task("digits", seed=0), load_task("digits", seed=1)
    assert (a.name, a.in_channels, a.num_classes, a.base_resolution, a.flip) == ("digits", 1, 10, 56, False)
    parts = [set(s.index.tolist()) for s in (a.train, a.val, a.test)]
    assert sum(map(len, parts)) == 1797 and len(set.union(*parts)) == 1797
    assert len(a.test) == 360 and len(a.val) == 288
    assert torch.equal(a.val.index, b.val.index) and torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.val.index, other.val.index)
    assert torch.equal(a.test.index, other.test.index)  # the test hold-out never moves with the seed
    counts = torch.bincount(a.val.labels, minlength=10)
    assert counts.min() >= 27 and counts.max() <= 31  # stratified: ~10 % of 288 per class
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape[1:] == (1, 8, 8)
    assert a.train.images.max() == 255 and len(a.mean) == len(a.std) == 1


def test_shrink_keeps_the_first_samples():
    task = load_task("digits")
    small = task.shrink(train=50, val=20)
    assert len(small.train) == 50 and len(small.val) == 20 and len(small.test) == len(task.test)
    assert torch.equal(small.train.index, task.train.index[:50])


# --------------------------------------------------------------------------- task resolution
def test_task_resolution_scales_with_the_arch(space):
    digits = load_task("digits")
    assert [task_resolution(r, digits, space) for r in (224, 232, 248, 272)] == [56, 58, 62, 68]
    assert task_resolution(240, replace(digits, base_resolution=224), space) == 240


def test_every_arch_fits_the_smallest_task_resolution(space):
    """The network downsamples 32x and trimmed padding needs room: 56 px must do for any arch."""
    smallest = task_resolution(space.arch["resolution"].low, load_task("digits"), space)
    worst = dict(space.preset("FBNetV3_A").arch, s3_kernel=5, s3_trim_pad=True, s5_kernel=5, s5_trim_pad=True)
    archs = [c.arch for c in sample_pool(space, 64, seed=5)] + [worst]
    assert max(min_input_size(a, space.family.network) for a in archs) <= smallest
    model = build_model(worst, 10, 1, network=space.family.network).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, smallest, smallest)).shape == (2, 10)


# --------------------------------------------------------------------------- fashion-mnist
@pytest.mark.parametrize("gz", [True, False])
def test_read_idx(tmp_path, gz):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    path.write_bytes(gzip.compress(idx_bytes(arr)) if gz else idx_bytes(arr))
    assert np.array_equal(read_idx(path), arr)
    (tmp_path / "short").write_bytes(idx_bytes(arr)[:-5])
    with pytest.raises(UsageError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "junk").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(UsageError, match="not an IDX"):
        read_idx(tmp_path / "junk")


@pytest.mark.parametrize("layout", ["fashion-mnist", "FashionMNIST/raw", "."])
def test_fashion_mnist_from_data_root(tmp_path, no_system_fashion, layout):
    write_fashion(tmp_path / layout, gz=layout != ".")
    task = load_task("fashion-mnist", data_root=tmp_path, seed=0)
    assert (task.in_channels, task.num_classes, task.base_resolution, task.flip) == (1, 10, 56, True)
    assert len(task.train) == 180 and len(task.val) == 20 and len(task.test) == 50
    assert task.train.images.shape[1:] == (1, 28, 28) and torch.bincount(task.val.labels).tolist() == [2] * 10


def test_missing_fashion_mnist_names_the_fix(tmp_path, no_system_fashion):
    with pytest.raises(UsageError) as err:
        load_task("fashion-mnist", data_root=tmp_path)
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message and "--data-root" in message
    assert "--download" in message and str(tmp_path) in message


def test_cli_missing_fashion_mnist_exits_2(tmp_path, no_system_fashion, capsys):
    from jointnas.cli import main

    assert main(["train", "--preset", "FBNetV3_A", "--data", "fashion-mnist", "--data-root", str(tmp_path)]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


@pytest.mark.skipif(not data.SYSTEM_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist():
    task = load_task("fashion-mnist", data_root="/nonexistent")
    assert (len(task.train), len(task.val), len(task.test)) == (54000, 6000, 10000)
    assert task.train.images.dtype == torch.uint8 and int(task.test.labels.max()) == 9


# --------------------------------------------------------------------------- cifar10 and image folders
def test_missing_cifar10_names_the_fix(tmp_path):
    with pytest.raises(UsageError, match="--data-root DIR holding cifar-10-batches-py.*--download"):
        load_task("cifar10", data_root=tmp_path)


def test_image_folder_layouts(tmp_path):
    from PIL import Image

    def make(root, n):
        for c in ("cat", "dog"):
            (root / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (10, 12), (i * 9, 0, 0)).save(root / c / f"{i}.png")

    make(tmp_path / "flat", 20)
    flat = load_task(f"imagefolder:{tmp_path / 'flat'}", seed=0)
    assert (flat.in_channels, flat.num_classes, flat.base_resolution, flat.classes) == (3, 2, 224, ["cat", "dog"])
    assert len(flat.test) == 8 and len(flat.val) + len(flat.train) == 32
    assert not set(flat.test.indices) & (set(flat.train.indices) | set(flat.val.indices))
    make(tmp_path / "split" / "train", 10)
    make(tmp_path / "split" / "val", 3)
    split = load_task(f"imagefolder:{tmp_path / 'split'}")
    assert len(split.test) == 6 and len(split.train) + len(split.val) == 20
    with pytest.raises(UsageError, match="does not exist"):
        load_task(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="cannot read image folder"):
        load_task(f"imagefolder:{tmp_path / 'empty'}")


def test_unknown_dataset():
    with pytest.raises(UsageError, match="digits, fashion-mnist, cifar10, imagefolder:PATH"):
        load_task("imagenet")
