"""Datasets a candidate is trained on, and how an arch is instantiated for one (a *task*).

Names accepted by :func:`load_task` (native size -> base training resolution, mirror flips):

* ``digits``: scikit-learn's bundled 8x8 grey digits, no download (8 px -> 56 px, no flips);
* ``fashion-mnist``: the IDX files of Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist/``), files under ``data_root``, or torchvision's
  download with ``download=True`` (28 px grey -> 56 px, flips);
* ``cifar10``: torchvision's CIFAR-10 under ``data_root`` (32 px RGB -> 64 px, flips);
* ``imagefolder:DIR``: torchvision ``ImageFolder``, one subfolder per class, or ``train/`` and
  ``val/`` (or ``test/``) subfolders of that form (any size, RGB -> 224 px, flips).

Task vs deployment: FLOPs budgets are about the deployable model (the space's ``deploy``
section: 3 channels, 1000 classes, 224-272 px). For training, the same blocks, widths,
depths, kernels and SE are built with the dataset's ``in_channels`` and ``num_classes``, at
``task_resolution = round(base * arch_resolution / deploy.reference_resolution)``, so the
resolution dimension still matters (digits: 224 px -> 56, 272 px -> 68). Small images are
upsampled on the fly. Every base is at least 56 px: the network downsamples 32x, and a stage
whose first block trims its depthwise padding (``s3_trim_pad``, ``s5_trim_pad``) needs a 3 px
input, so FBNetV3 archs with trimmed padding accept nothing below 49 px
(:func:`jointnas.families.mbconv_cost.min_input_size`). Were a task's resolution ever below that (another
space, another base), the trainer builds that task model with untrimmed padding instead of
failing. Per-layer overhead dominates at these sizes: on CPU 56 px trains only ~1.7x slower
than 32 px.

Splits: ``test`` is only for final reports of a winner; ``train``/``val`` are what a search
sees. For digits (and a flat image folder) the test split is a fixed stratified 20 % hold-out
whatever ``seed`` is; for fashion-mnist and cifar10 it is the official test set, for an image
folder with ``train/`` and ``val/`` (or ``test/``) the latter. ``val`` is a stratified,
``seed``-ed carve of the rest (digits 20 %, the others 10 %). Downloads go to ``data/cache/``
(git-ignored) unless ``data_root`` says otherwise.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

from ..errors import UsageError
from ..families.base import scaled_resolution
from ..optional import torchvision

DEFAULT_DATA_ROOT = Path("data/cache")
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
TASK_NAMES = ("digits", "fashion-mnist", "cifar10", "imagefolder:PATH")
TEST_SPLIT_SEED = 20210301  # a carved-out test split never depends on the search seed
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- splits and tasks
@dataclass
class TensorSplit:
    """A small dataset held as one uint8 tensor ``(N, C, H, W)`` at native size + int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor
    index: Optional[torch.Tensor] = None  # positions in the source dataset, for reports

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> "TensorSplit":
        return TensorSplit(self.images[:n], self.labels[:n], None if self.index is None else self.index[:n])


@dataclass
class FolderSplit:
    """Part of an image folder: the ``ImageFolder`` (no transform) and the sample indices."""

    dataset: object
    indices: List[int]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> "torch.Tensor":
        import torch  # torch: see _tensor_split

        targets = self.dataset.targets
        return torch.tensor([targets[i] for i in self.indices], dtype=torch.int64)

    def head(self, n: int) -> "FolderSplit":
        return FolderSplit(self.dataset, self.indices[:n])


Split = Union[TensorSplit, FolderSplit]


@dataclass
class Task:
    """What a candidate is trained on. ``mean``/``std`` normalise pixels scaled to [0, 1]."""

    name: str
    in_channels: int
    num_classes: int
    base_resolution: int
    train: Split
    val: Split
    test: Split
    mean: Tuple[float, ...] = (0.5,)
    std: Tuple[float, ...] = (0.5,)
    flip: bool = True
    batch_size: int = 64
    classes: List[str] = field(default_factory=list)

    @property
    def in_memory(self) -> bool:
        """True when the splits are tensors (the trainer keeps them on the device)."""
        return isinstance(self.train, TensorSplit)

    def shrink(self, train: Optional[int] = None, val: Optional[int] = None,
               test: Optional[int] = None) -> "Task":
        """The same task with only the first ``n`` samples of some splits (splits are shuffled)."""
        return replace(self, train=self.train.head(train) if train else self.train,
                       val=self.val.head(val) if val else self.val,
                       test=self.test.head(test) if test else self.test)

    def describe(self) -> str:
        return (f"{self.name}: {self.num_classes} classes, {self.in_channels} channel(s), "
                f"train/val/test {len(self.train)}/{len(self.val)}/{len(self.test)}, "
                f"base resolution {self.base_resolution} px")


def task_resolution(arch_resolution: int, task: Task, space) -> int:
    """Training resolution of an arch on ``task`` (see the module docstring)."""
    return scaled_resolution(arch_resolution, task, space.family.deploy)


# --------------------------------------------------------------------------- loading
def check_task_name(name: str) -> None:
    """UsageError, saying what is wrong, unless ``name`` is one of :data:`TASK_NAMES` (nothing is read)."""
    if name.startswith("imagefolder:"):
        if not name.split(":", 1)[1].strip():
            raise UsageError(f"dataset {name!r} names no folder; use imagefolder:DIR, where DIR holds one subfolder "
                             "of images per class (or train/ and val/ or test/ subfolders of that form)")
        return
    if name not in TASK_NAMES:
        raise UsageError(f"unknown dataset {name!r}; use one of {', '.join(TASK_NAMES)}")


def load_task(name: str, data_root=None, seed: int = 0, download: bool = False) -> Task:
    """Load a task by name (``digits``, ``fashion-mnist``, ``cifar10``, ``imagefolder:PATH``).

    Raises :class:`UsageError` with the fix when the data is missing or the name unknown.
    """
    check_task_name(name)
    root = Path(data_root) if data_root is not None else DEFAULT_DATA_ROOT
    if name == "digits":
        return _digits(seed)
    if name == "fashion-mnist":
        return _fashion_mnist(root, seed, download, explicit_root=data_root is not None)
    if name == "cifar10":
        return _cifar10(root, seed, download)
    if name.startswith("imagefolder:"):
        return _image_folder(Path(name.split(":", 1)[1]), seed)
    raise UsageError(f"unknown dataset {name!r}; use one of {', '.join(TASK_NAMES)}")


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices (rest, part) with ``fraction`` of every class in ``part``; both shuffled."""
    from sklearn.model_selection import train_test_split  # scikit-learn: as torch, see _tensor_split

    idx = np.arange(len(labels))
    rest, part = train_test_split(idx, test_size=fraction, stratify=labels, random_state=seed, shuffle=True)
    return rest, part


def _tensor_split(images: np.ndarray, labels: np.ndarray, idx=None) -> TensorSplit:
    import torch  # here, not at the top: the CLI lists task names without loading torch

    idx = np.arange(len(labels)) if idx is None else np.asarray(idx)
    return TensorSplit(torch.from_numpy(np.ascontiguousarray(images[idx])),
                       torch.from_numpy(labels[idx].astype(np.int64)), torch.from_numpy(idx.astype(np.int64)))


def _train_val(images: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    train_idx, val_idx = _stratified_split_safe(labels, fraction, seed)
    return _tensor_split(images, labels, train_idx), _tensor_split(images, labels, val_idx)


def _channel_stats(images: np.ndarray) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    x = images.astype(np.float32) / 255.0
    axes = (0, 2, 3)
    return tuple(float(v) for v in x.mean(axis=axes)), tuple(float(v) for v in x.std(axis=axes))


def _digits(seed: int) -> Task:
    from sklearn.datasets import load_digits  # scikit-learn: see _stratified_split

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # values 0..16 -> 0..255
    labels = d.target.astype(np.int64)
    rest, test = _stratified_split(labels, 0.2, TEST_SPLIT_SEED)
    train_idx, val_idx = _stratified_split(labels[rest], 0.2, seed)
    train_idx, val_idx = rest[train_idx], rest[val_idx]
    mean, std = _channel_stats(images[train_idx])
    return Task("digits", 1, 10, 56, _tensor_split(images, labels, train_idx), _tensor_split(images, labels, val_idx),
                _tensor_split(images, labels, test), mean, std, flip=False, batch_size=64,
                classes=[str(i) for i in range(10)])


# ---- fashion-mnist
FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip'd or raw): big-endian header, dims, then unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UsageError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UsageError(f"{path} is truncated: header says {dims}, found {body.size} bytes of data")
    return body.reshape(dims)


def _find_idx(directory: Path, stem: str) -> Optional[Path]:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def fashion_mnist_dirs(root: Path) -> List[Path]:
    """Where IDX files are looked for, in order."""
    return [root, root / "fashion-mnist", root / "FashionMNIST" / "raw", SYSTEM_FASHION_MNIST]


def _fashion_mnist_files(root: Path) -> Optional[dict]:
    for d in fashion_mnist_dirs(root):
        found = {split: tuple(_find_idx(d, stem) for stem in stems) for split, stems in FASHION_FILES.items()}
        if all(p is not None for pair in found.values() for p in pair):
            return found
    return None


def _fashion_mnist(root: Path, seed: int, download: bool, explicit_root: bool) -> Task:
    files = _fashion_mnist_files(root)
    if files is None and download:
        _torchvision_download("FashionMNIST", root)
        files = _fashion_mnist_files(root)
    if files is None:
        where = ", ".join(str(d) for d in fashion_mnist_dirs(root))
        raise UsageError(f"fashion-mnist IDX files (train-images-idx3-ubyte[.gz] ...) not found in {where}; "
                         "install them with `apt-get install dataset-fashion-mnist`, or pass --data-root DIR "
                         "holding them, or add --download to fetch them with torchvision into "
                         f"{root if explicit_root else DEFAULT_DATA_ROOT}")
    arrays = {split: (read_idx(img)[:, None], read_idx(lab).astype(np.int64)) for split, (img, lab) in files.items()}
    images, labels = arrays["train"]
    train, val = _train_val(images, labels, 0.1, seed)
    mean, std = _channel_stats(images[:10000])
    return Task("fashion-mnist", 1, 10, 56, train, val, _tensor_split(*arrays["test"]), mean, std,
                flip=True, batch_size=128, classes=list(FASHION_CLASSES))


# ---- cifar10
def _cifar10(root: Path, seed: int, download: bool) -> Task:
    tvd = torchvision("datasets", "CIFAR-10")  # as torch, see _tensor_split
    if download:
        _torchvision_download("CIFAR10", root)
    try:
        train_set = tvd.CIFAR10(str(root), train=True, download=False)
        test_set = tvd.CIFAR10(str(root), train=False, download=False)
    except RuntimeError:
        raise UsageError(f"CIFAR-10 not found under {root} (expected {root / 'cifar-10-batches-py'}); pass "
                         "--data-root DIR holding cifar-10-batches-py, or add --download to fetch it there") from None
    to_nchw = lambda a: np.ascontiguousarray(a.transpose(0, 3, 1, 2))  # noqa: E731
    images, labels = to_nchw(train_set.data), np.asarray(train_set.targets, dtype=np.int64)
    train, val = _train_val(images, labels, 0.1, seed)
    mean, std = _channel_stats(images[:10000])
    test = _tensor_split(to_nchw(test_set.data), np.asarray(test_set.targets, dtype=np.int64))
    return Task("cifar10", 3, 10, 64, train, val, test, mean, std, flip=True, batch_size=128,
                classes=list(train_set.classes))


def _torchvision_download(dataset: str, root: Path) -> None:
    tvd = torchvision("datasets", f"downloading {dataset}")

    # Folders made here are removed again when the download fails, so that a failed download
    # (no network) leaves no empty data/cache/ behind.
    made = [p for p in [root, *root.parents] if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            getattr(tvd, dataset)(str(root), train=train, download=True)
    except Exception as e:  # network errors come in many types
        _remove_empty(root, made)
        raise UsageError(f"downloading {dataset} into {root} failed ({type(e).__name__}: {e}); "
                         "check the network or put the files there by hand") from None


def _remove_empty(root: Path, made: List[Path]) -> None:
    """Remove the empty folders under ``root`` and those of ``made`` (innermost first) left empty."""
    if root.is_dir():
        for folder, _, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
            if not os.listdir(folder) and Path(folder) != root:
                os.rmdir(folder)
    for p in made:
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()


# ---- image folders
def _image_folder(path: Path, seed: int) -> Task:
    tvd = torchvision("datasets", "reading an image folder")
    if not path.is_dir():
        raise UsageError(f"image folder {path} does not exist; use imagefolder:DIR where DIR holds one "
                         "subfolder of images per class (or train/ and val/ or test/ subfolders of that form)")

    def open_folder(p: Path):
        try:
            return tvd.ImageFolder(str(p))
        except (FileNotFoundError, RuntimeError) as e:
            raise UsageError(f"cannot read image folder {p}: {e}") from None

    test_dir = next((path / n for n in ("test", "val") if (path / n).is_dir()), None)
    if (path / "train").is_dir() and test_dir is not None:
        train_set, test_set = open_folder(path / "train"), open_folder(test_dir)
        if test_set.classes != train_set.classes:
            raise UsageError(f"{test_dir} and {path / 'train'} have different class subfolders")
        labels = np.asarray(train_set.targets)
        train_idx, val_idx = _stratified_split_safe(labels, 0.1, seed)
        test = FolderSplit(test_set, list(range(len(test_set))))
    else:
        train_set = open_folder(path)
        labels = np.asarray(train_set.targets)
        rest, test_idx = _stratified_split_safe(labels, 0.2, TEST_SPLIT_SEED)
        train_idx, val_idx = _stratified_split_safe(labels[rest], 0.1, seed)
        train_idx, val_idx = rest[train_idx], rest[val_idx]
        test = FolderSplit(train_set, [int(i) for i in test_idx])
    if len(train_set.classes) < 2:
        raise UsageError(f"image folder {path} has {len(train_set.classes)} class subfolder(s) "
                         f"({', '.join(train_set.classes) or 'none'}); a classifier needs at least two, one "
                         "subfolder of images per class")
    return Task(f"imagefolder:{path}", 3, len(train_set.classes), 224,
                FolderSplit(train_set, [int(i) for i in train_idx]), FolderSplit(train_set, [int(i) for i in val_idx]),
                test, IMAGENET_MEAN, IMAGENET_STD, flip=True, batch_size=64, classes=list(train_set.classes))


def _stratified_split_safe(labels: np.ndarray, fraction: float, seed: int):
    """Stratified when every class has at least two images, plain shuffled split otherwise."""
    counts = np.bincount(labels)
    if len(labels) < 2 * len(counts) or counts.min() < 2 or round(fraction * len(labels)) < len(counts):
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(labels))
        n_part = max(1, int(round(fraction * len(labels))))
        return idx[n_part:], idx[:n_part]
    return _stratified_split(labels, fraction, seed)


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)
