"""The one checkpoint file of every surrogate: its ``state()`` (plain values and arrays) inside an
envelope naming its kind and space, written with ``torch.save`` and read without torch by
:mod:`jointnas.surrogates.tensorfile` (no code in the file runs), guarded by a format version,
the space's fingerprint and a content checksum.

The envelope is the one the MLP predictor's files have always had, so every file written
since the first predictor reads as before (one written before kinds existed is an ``mlp``).
"""
from __future__ import annotations

import hashlib
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .. import __version__
from ..errors import UsageError
from ..io import replacing
from ..space import SearchSpace
from .tensorfile import TORCH_DTYPE_NAMES, Refused, TensorFileError, load

FORMAT = "jointnas-predictor"
FORMAT_VERSION = 1
ENVELOPE = ("format", "format_version", "kind", "space", "jointnas_version", "checksum")  # keys a state() may not use
LEGACY_KIND = "mlp"   # what a file of this format that names no kind holds


def _is_tensor(obj) -> bool:
    torch = sys.modules.get("torch")  # a torch tensor exists only once torch is imported: no import here
    return torch is not None and isinstance(obj, torch.Tensor)


def _digest(obj, h) -> None:
    if isinstance(obj, np.ndarray):  # a tensor read back by tensorfile: the same bytes, the same dtype name
        t = np.ascontiguousarray(obj)
        h.update(f"T{TORCH_DTYPE_NAMES[t.dtype]}{tuple(t.shape)}".encode())
        h.update(t.tobytes())
    elif _is_tensor(obj):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            h.update(repr(k).encode())
            _digest(obj[k], h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _digest(v, h)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def checksum(data: dict) -> str:
    h = hashlib.sha256()
    _digest({k: v for k, v in data.items() if k != "checksum"}, h)
    return h.hexdigest()


def space_record(space: SearchSpace) -> dict:
    return {"name": space.name, "fingerprint": space.fingerprint(), "encoding_schema": space.encoding_schema(),
            "arch_width": space.arch_width, "recipe_width": space.recipe_width}


def _storable(obj, where: str, error, torch):
    """``obj`` as ``torch.save`` writes it for tensorfile to read: numpy arrays become tensors,
    numpy scalars Python numbers; anything but plain values, dicts, lists, tuples and arrays is
    an ``error`` naming where it sits in the state."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype not in TORCH_DTYPE_NAMES:
            raise error(f"{where}: a checkpoint holds arrays of numbers or booleans, not of {obj.dtype}")
        return torch.from_numpy(np.array(obj, order="C"))
    if isinstance(obj, torch.Tensor):
        if str(obj.dtype) not in TORCH_DTYPE_NAMES.values():
            raise error(f"{where}: a checkpoint holds tensors of "
                        f"{', '.join(TORCH_DTYPE_NAMES.values())}, not {obj.dtype}")
        return obj.detach().cpu()
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, (str, int))]
        if bad:
            raise error(f"{where}: a checkpoint's mappings have str or int keys, not {bad[0]!r}")
        return {k: _storable(v, f"{where}[{k!r}]", error, torch) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_storable(v, f"{where}[{i}]", error, torch) for i, v in enumerate(obj))
    raise error(f"{where}: a checkpoint holds plain values, dicts, lists, tuples and arrays, not "
                f"{type(obj).__name__} (it is read back without running code)")


def write(path, kind: str, space: SearchSpace, state: dict, error=UsageError) -> None:
    """Write ``state`` in the envelope atomically: a crash mid-write leaves any previous file at
    ``path`` intact; a full disk is a StoreError naming the file."""
    import torch  # torch writes the file; reading one back (jointnas fine) needs none

    if not kind:
        raise error("a surrogate class needs a kind (the name it is registered under) before it can be saved")
    clash = sorted(set(state) & set(ENVELOPE))
    if clash:
        raise error(f"a surrogate's state() may not use the checkpoint's own key(s) {', '.join(clash)}")
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "space": space_record(space),
            "jointnas_version": __version__}
    data.update(_storable(dict(state), "state", error, torch))
    data["checksum"] = checksum(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with replacing(path) as tmp:
            torch.save(data, tmp)
    except (OSError, RuntimeError) as e:
        # torch reports a full disk as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos".
        # The run store's error, imported on a failed write only: jointnas fine reads checkpoints without the store.
        from ..store.errors import StoreError, no_space_message

        raise StoreError(no_space_message(path, str(e) if isinstance(e, OSError) else "write failed")) from None


def _schema_difference(saved: list, current: list) -> str:
    for a, b in zip(saved, current):
        if a != b:
            return (f"column {a.get('name')!r} was {a.get('part')} {a.get('range')} at offset {a.get('offset')}, "
                    f"now {b.get('name')!r} {b.get('part')} {b.get('range')} at offset {b.get('offset')}")
    if len(saved) != len(current):
        return f"{len(saved)} encoded dimensions then, {len(current)} now"
    return "same encoding, but the network or deploy settings (what FLOPs and params refer to) differ"


@dataclass
class Checkpoint:
    """A checkpoint file read (tensors as numpy arrays), before any check of what it holds."""

    path: Path
    data: dict

    @classmethod
    def read(cls, path, error=UsageError) -> "Checkpoint":
        """The file at ``path`` read without torch; any problem is an ``error`` naming the file."""
        path = Path(path)
        if not path.is_file():
            raise error(f"no predictor checkpoint at {path}")
        try:
            data = load(path)
        except Refused as e:
            raise error(f"{path} is not a jointnas checkpoint ({e.reason[:120]}); "
                        "it was refused without running any of its contents") from None
        except TensorFileError as e:
            raise error(f"{path} is not a readable predictor checkpoint (damaged, truncated or not a "
                        f"torch file): {e.reason[:200]}") from None
        if not isinstance(data, dict):
            raise error(f"{path} is a torch file but not a jointnas predictor checkpoint")
        return cls(path, data)

    @property
    def kind(self) -> str:
        """The surrogate kind the file names; a UsageError when it names none."""
        if "kind" in self.data:
            return str(self.data["kind"])
        if self.data.get("format") == FORMAT:
            return LEGACY_KIND
        raise UsageError(f"{self.path} is a torch file but not a jointnas surrogate checkpoint (it names no kind)")

    @property
    def jointnas_version(self) -> Optional[str]:
        """The jointnas version that wrote the file; None for a file written before versions were recorded."""
        version = self.data.get("jointnas_version")
        return None if version is None else str(version)

    @property
    def space_name(self) -> Optional[str]:
        space = self.data.get("space")
        return space.get("name") if isinstance(space, dict) else space

    def state(self, kind: str, space: Optional[SearchSpace], error=UsageError) -> dict:
        """What the surrogate's ``state()`` returned, after every check: a jointnas checkpoint of
        this format version and of ``kind``, intact (checksum), fitted on ``space`` (fingerprint;
        checked when a SearchSpace is given)."""
        data, path = self.data, self.path
        if data.get("format") != FORMAT:
            raise error(f"{path} is a torch file but not a jointnas predictor checkpoint")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise error(f"{path} has predictor format version {version!r}; this jointnas reads version "
                        f"{FORMAT_VERSION}: retrain the predictor, or load it with the jointnas that wrote it")
        if data.get("checksum") != checksum(data):
            raise error(f"{path} is damaged: its contents do not match the checksum stored in it; "
                        "copy it again or retrain it")
        if self.kind != kind:
            raise error(f"{path} holds a surrogate of kind {self.kind!r}, not {kind!r}")
        if isinstance(space, SearchSpace):
            saved = data["space"]
            if space.fingerprint() != saved["fingerprint"]:
                raise error(
                    f"{path} was trained on space {saved['name']!r} (fingerprint {saved['fingerprint']}) and cannot "
                    f"score space {space.name!r} (fingerprint {space.fingerprint()}): "
                    f"{_schema_difference(saved['encoding_schema'], space.encoding_schema())}; "
                    "use the space it was trained on, or retrain the predictor")
        return {k: v for k, v in data.items() if k not in ENVELOPE}

    def space_needed(self, error=UsageError) -> UsageError:
        """The error for a file read without the SearchSpace it scores (the catalog finds a space by name)."""
        return error(f"{self.path} scores space {self.space_name!r}: pass that SearchSpace, or read the file with "
                     "jointnas.catalog.load_surrogate, which finds a space by its name")

    @contextmanager
    def consistent(self, error=UsageError) -> Iterator[None]:
        """Inside: building the surrogate from the state; a state it cannot be built from is an ``error``."""
        try:
            yield
        except UsageError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
            raise error(f"{self.path} is inconsistent with predictor format {FORMAT_VERSION} "
                        f"({type(e).__name__}: {str(e)[:200]}); retrain the predictor") from None


def checkpoint_kind(path) -> str:
    """The kind of surrogate the checkpoint at ``path`` holds (files from before kinds existed: mlp)."""
    return Checkpoint.read(path).kind
