"""The ensemble's members evaluated as one numpy computation over stacked weights.

Scoring runs the members' forward pass (:class:`jointnas.surrogates.mlp.network.Member`) for all
members at once: their weights are stacked along a leading member axis, the first encoder layer
and the recipe half of the first head layer of every member are one matrix product each, and
the other layers batched products over the member axis. At the fine search's batches (a few
hundred rows) torch's per-operation overhead, paid once per member and layer, dominated;
this does the same arithmetic (float32) in a fraction of the time and stays within float
rounding of the per-member torch modules (pinned by tests/test_predictor.py).
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from ..base import Scorer, encoded_rows

# Rows per chunk: keeps the (members, rows, hidden) intermediates in cache-sized pieces.
CHUNK = 2048
DEFAULT_SCORE_BOUNDS = (0.0, 1.0)  # the predictor's, and a checkpoint's that saved none


def _linears(sequential) -> list:
    return [m for m in sequential if type(m).__name__ == "Linear"]


def _arrays(linear):
    return (linear.weight.detach().cpu().numpy().astype(np.float32),
            linear.bias.detach().cpu().numpy().astype(np.float32))


class StackedMembers:
    """The weights of ``members`` (all of one shape) stacked; :meth:`outputs` is their forward pass."""

    def __init__(self, members: Sequence):
        self._sources = list(members)
        self._weights = [t for m in members for t in m.parameters()]
        # Tensors made under torch.inference_mode() keep no version counter: then restack each time.
        self._tracked = not any(t.is_inference() for t in self._weights)
        self._versions = self._weight_versions() if self._tracked else None
        self._stack([[_arrays(l) for l in _linears(m.encoder.body)] for m in members],
                    [[_arrays(l) for l in _linears(m.head.body)] for m in members],
                    [_arrays(m.head.out) for m in members], int(members[0].arch_width))

    @classmethod
    def from_state_dicts(cls, state_dicts: Sequence[dict], arch_width: int) -> "StackedMembers":
        """The same from the members' saved state dicts of numpy arrays (no torch needed)."""
        self = cls.__new__(cls)
        self._sources, self._tracked = [], False

        def layers(sd, prefix):
            idx = sorted({int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)})
            return [(np.asarray(sd[f"{prefix}{i}.weight"], np.float32), np.asarray(sd[f"{prefix}{i}.bias"], np.float32))
                    for i in idx]

        self._stack([layers(sd, "encoder.body.") for sd in state_dicts],
                    [layers(sd, "head.body.") for sd in state_dicts],
                    [(np.asarray(sd["head.out.weight"], np.float32), np.asarray(sd["head.out.bias"], np.float32))
                     for sd in state_dicts], int(arch_width))
        return self

    def _stack(self, enc: list, head: list, out: list, arch_width: int) -> None:
        """Stack per-member (weight, bias) arrays: ``enc``/``head`` per member a list of layers."""
        n = len(enc)
        self.arch_width = arch_width
        # First encoder layer of every member as one (arch_width, members * hidden) matrix.
        w0 = np.stack([e[0][0] for e in enc])                        # (M, H, A)
        self.hidden0 = w0.shape[1]
        self.enc0_w = np.ascontiguousarray(w0.transpose(2, 0, 1).reshape(w0.shape[2], n * w0.shape[1]))
        self.enc0_b = np.concatenate([e[0][1] for e in enc])
        self.enc = [(np.stack([e[i][0].T for e in enc]), np.stack([e[i][1] for e in enc])[:, None, :])
                    for i in range(1, len(enc[0]))]
        # First head layer: [embedding, recipe] @ W.T splits into a per-member embedding part and
        # a recipe part shared by all members' inputs (one product for all of them).
        hw = np.stack([h[0][0] for h in head])                       # (M, H, E + R)
        emb = self.enc[-1][0].shape[2] if self.enc else self.hidden0
        self.head0_z = np.ascontiguousarray(hw[:, :, :emb].transpose(0, 2, 1))   # (M, E, H)
        wr = hw[:, :, emb:]                                          # (M, H, R)
        self.head_hidden = hw.shape[1]
        self.head0_r = np.ascontiguousarray(wr.transpose(2, 0, 1).reshape(wr.shape[2], n * hw.shape[1]))
        self.head0_b = np.stack([h[0][1] for h in head])[:, None, :]
        self.head = [(np.stack([h[i][0].T for h in head]), np.stack([h[i][1] for h in head])[:, None, :])
                     for i in range(1, len(head[0]))]
        self.out_w = np.stack([o[0].T for o in out])                 # (M, H, 1)
        self.out_b = np.stack([o[1] for o in out])[:, None, :]       # (M, 1, 1)
        self.members = n

    def _weight_versions(self) -> list:
        return [t._version for t in self._weights]  # torch counts in-place changes per tensor

    def current(self, members: Sequence) -> bool:
        """Whether these are still the weights of ``members``: the same modules, and no weight
        changed in place since stacking."""
        return (self._tracked and len(members) == len(self._sources)
                and all(a is b for a, b in zip(members, self._sources)) and self._weight_versions() == self._versions)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Each member's raw (standardised) output for float32 rows ``x``: shape (members, rows)."""
        out = np.empty((self.members, len(x)), dtype=np.float32)
        for s in range(0, len(x), CHUNK):
            out[:, s:s + CHUNK] = self._forward(x[s:s + CHUNK])
        return out

    def _forward(self, x: np.ndarray) -> np.ndarray:
        n, m = len(x), self.members
        arch = x[:, :self.arch_width] * np.float32(2.0) - np.float32(1.0)
        recipe = x[:, self.arch_width:] * np.float32(2.0) - np.float32(1.0)
        h = arch @ self.enc0_w
        h += self.enc0_b
        np.maximum(h, 0.0, out=h)
        h = h.reshape(n, m, self.hidden0).transpose(1, 0, 2)        # (M, n, H)
        h = _layers(h, self.enc)
        r = (recipe @ self.head0_r).reshape(n, m, self.head_hidden).transpose(1, 0, 2)
        h = np.matmul(h, self.head0_z)
        h += r
        h += self.head0_b
        np.maximum(h, 0.0, out=h)
        h = _layers(h, self.head)
        return (np.matmul(h, self.out_w) + self.out_b)[:, :, 0]


def _layers(h: np.ndarray, layers: List[tuple]) -> np.ndarray:
    for w, b in layers:
        h = np.matmul(h, w)
        h += b
        np.maximum(h, 0.0, out=h)
    return h


def ensemble_stats(out: np.ndarray, target_stats: dict, bounds) -> tuple:
    """(mean, std) over members of their standardised outputs ``out`` (members, rows) in score
    units. Each member's prediction is clipped to the score bounds first: an accuracy is a
    fraction, so each member's extrapolation is cut at 0 and 1 before the ensemble statistics,
    or a search would chase "accuracies" above 100 %."""
    acc = out.astype(np.float64) * target_stats["std"] + target_stats["mean"]
    if bounds is not None:
        np.clip(acc, bounds[0], bounds[1], out=acc)
    return acc.mean(0), acc.std(0)


class StackedScorer(Scorer):
    """A saved MLP-ensemble predictor reduced to its scoring, numpy only: what the fine stage uses,
    read by :meth:`jointnas.surrogates.mlp.ensemble.Predictor.scorer_from_checkpoint`."""

    kind = "mlp"

    def __init__(self, space, config: dict, target_stats: dict, members: Sequence[dict], info=None):
        if not members:
            raise ValueError("the checkpoint holds no fitted members")
        self.space, self.config, self.target_stats, self.info = space, dict(config), dict(target_stats), info
        self.config.setdefault("score_bounds", list(DEFAULT_SCORE_BOUNDS))
        self.stacked = StackedMembers.from_state_dicts(members, space.arch_width)

    def predict_encoded(self, x, costs=None):
        x = encoded_rows(self.space, np.asarray(x))
        return ensemble_stats(self.stacked.outputs(x), self.target_stats, self.config.get("score_bounds"))

    def __repr__(self):
        return f"StackedScorer(space={self.space.name!r}, ensemble={self.stacked.members}, numpy scoring only)"
