"""Checkpoints read without torch: what torch.load(weights_only=True) reads, nothing that runs code."""
import collections
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from jointnas.surrogates import tensorfile
from jointnas.catalog import load_scorer, load_surrogate as load_predictor

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "predictors" / "fbnetv3-digits.pt"


def _same(ours, theirs):
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, np.ndarray) and ours.dtype == theirs.numpy().dtype
        np.testing.assert_array_equal(ours, theirs.numpy())
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs)
        for k in theirs:
            _same(ours[k], theirs[k])
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _same(a, b)
    else:
        assert ours == theirs


def test_reads_what_torch_load_reads(tmp_path):
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    state = {"f32": torch.randn(3, 5), "f64": base, "i64": torch.arange(7), "bool": torch.tensor([True, False]),
             "transposed": base.t(), "offset_view": base[1:, 2:4], "scalar": torch.tensor(2.5),
             "ordered": collections.OrderedDict(b=torch.ones(2, dtype=torch.int32), a=[1, 2.0, None, "x"]),
             "plain": {"name": "fbnetv3", "stats": (0.5, 1.5), "flag": True}}
    path = tmp_path / "state.pt"
    torch.save(state, path)
    _same(tensorfile.load(path), torch.load(path, weights_only=True))
    _same(tensorfile.load(SHIPPED), torch.load(SHIPPED, weights_only=True))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_file_naming_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.ones(2), "payload": _RunsCode(marker)}, path)
    with pytest.raises(tensorfile.Refused, match=r"evil.pt was refused: it names (posix|os)\.system"):
        tensorfile.load(path)
    assert not marker.exists()


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    """as_strided would read whatever memory lies beyond the storage's bytes."""
    mark = object()

    class Huge:
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (mark, 0, (1_000_000,), (1,), False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if obj is mark else None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"w": Huge()})
    path = tmp_path / "huge.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("huge/data.pkl", buf.getvalue())
        z.writestr("huge/data/0", np.zeros(4, np.float32).tobytes())
    with pytest.raises(tensorfile.Refused, match="past the end of its storage"):
        tensorfile.load(path)


def test_damaged_and_missing_files_are_errors_naming_them(tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(SHIPPED.read_bytes()[:5000])
    for path in (cut, tmp_path / "absent.pt"):
        with pytest.raises(tensorfile.TensorFileError, match=path.name):
            tensorfile.load(path)


def test_the_numpy_scorer_scores_as_the_torch_predictor_does():
    scorer, predictor = load_scorer(SHIPPED), load_predictor(SHIPPED)
    assert scorer.kind == predictor.kind == "mlp" and scorer.space.fingerprint() == predictor.space.fingerprint()
    rows = np.random.default_rng(0).random((500, predictor.space.encoding_width)).astype(np.float32)
    for a, b in zip(scorer.predict_encoded(rows), predictor.predict_encoded(rows)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    candidates = predictor.space.sample(20, seed=1)
    np.testing.assert_allclose(scorer.predict(candidates)[0], predictor.predict(candidates)[0], rtol=1e-5, atol=1e-6)
