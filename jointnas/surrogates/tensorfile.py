"""Read a file written by ``torch.save`` without importing torch: tensors come back as numpy arrays.

Only what jointnas's checkpoints hold is accepted: plain containers and scalars, ordered dicts
and tensors (``torch._utils._rebuild_tensor_v2`` over typed storages). Any other global the
pickle names is refused before anything is built, so, as with ``torch.load(weights_only=True)``,
no code from the file runs. Importing torch costs 2-3 s; ``jointnas fine`` reads its predictor
with this and never imports it (BENCHMARKS.md, "The fine stage at the predictor's speed").
"""
from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import UsageError

# torch's typed storages -> (numpy dtype, torch's name for the element type)
STORAGES = {"FloatStorage": (np.float32, "torch.float32"), "DoubleStorage": (np.float64, "torch.float64"),
            "HalfStorage": (np.float16, "torch.float16"), "LongStorage": (np.int64, "torch.int64"),
            "IntStorage": (np.int32, "torch.int32"), "ShortStorage": (np.int16, "torch.int16"),
            "CharStorage": (np.int8, "torch.int8"), "ByteStorage": (np.uint8, "torch.uint8"),
            "BoolStorage": (np.bool_, "torch.bool")}
TORCH_DTYPE_NAMES = {np.dtype(d): name for d, name in STORAGES.values()}


class TensorFileError(UsageError):
    """The file is not a torch file this reader accepts (damaged, or naming code to run);
    ``reason`` is the message without the file's name."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


class Refused(TensorFileError):
    """The file names a global (code) that a file of plain values and tensors never does."""


class _Refusal(Exception):
    """Raised while unpickling; :func:`load` turns it into :class:`Refused` naming the file."""


class _Storage:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, *_):
    if not isinstance(storage, np.ndarray):
        raise _Refusal("a tensor over something other than a storage")
    size, stride, offset = [int(v) for v in size], [int(v) for v in stride], int(offset)
    if len(size) != len(stride) or min(size + stride + [offset], default=0) < 0:
        raise _Refusal("a tensor with a negative size, stride or offset")
    if all(size) and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= len(storage):
        raise _Refusal("a tensor reaching past the end of its storage")  # as_strided would read any memory
    item = storage.itemsize
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride)).copy()


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGES:
            return _Storage(STORAGES[name][0])
        raise _Refusal(f"it names {module}.{name}, which a checkpoint of plain values and tensors never does")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise _Refusal("it holds an object this reader does not know")
        raw = self.archive.read(f"{self.prefix}/data/{pid[2]}")
        return np.frombuffer(raw, dtype=pid[1].dtype, count=int(pid[4]))


def load(path):
    """The object saved at ``path`` by ``torch.save``, every tensor a numpy array (little-endian files)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise TensorFileError(f"{path} is not a torch file (no data.pkl in it)", "no data.pkl in it")
            prefix = pickles[0][:-len("/data.pkl")]
            order = f"{prefix}/byteorder"
            if order in archive.namelist() and archive.read(order) != b"little":
                raise TensorFileError(f"{path} was written on a big-endian machine, which this reader does not read",
                                      "written on a big-endian machine")
            return _Unpickler(archive.read(pickles[0]), archive, prefix).load()
    except _Refusal as e:
        raise Refused(f"{path} was refused: {e}", str(e)) from None
    except FileNotFoundError:
        raise TensorFileError(f"no file at {path}", "no such file") from None
    except TensorFileError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes the unpickler raise
        reason = f"{type(e).__name__}: {str(e)[:160]}"
        raise TensorFileError(f"{path} is not a readable torch file (damaged, truncated or another format): "
                              f"{reason}", reason) from None
