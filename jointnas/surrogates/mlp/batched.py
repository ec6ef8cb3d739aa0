"""FBNetV3's predictor network with every ensemble member in one set of arrays: each weight has a
leading member axis, so the whole ensemble runs forward and backward as a few batched numpy
matrix products (:mod:`.fullbatch` trains it, scoring runs :func:`scores`).

Per member it is the network of :class:`jointnas.surrogates.mlp.network.Member` (an encoder over
the architecture columns, an accuracy head over [embedding, recipe]), with the rows' standardised
log-FLOPs/log-params as two more head inputs when the predictor uses proxies; tests pin both the
forward pass and a training step to the member-by-member torch modules.

Why numpy and hand-written gradients rather than torch autograd: at these sizes (a few hundred
rows, 64 hidden units) a step is a few dozen tiny products, and autograd's and the optimizer's
per-operation overhead (about 1.4 ms a step) was 5x the arithmetic; here a step is ~0.2 ms, and
neither fitting nor scoring imports torch.

Weights (M members, H hidden, A arch columns, R head inputs besides the embedding):
``enc{i}.w`` (M, A or H, H), ``enc{i}.b`` (M, 1, H); ``head0.wz`` (M, H, H) and ``head0.wr``
(M, R, H), the first head layer split into its embedding and its other inputs, ``head0.b``;
``head{i}.w``/``.b`` for the later head layers; ``out.w`` (M, H, 1), ``out.b`` (M, 1, 1). The proxy
model that pretraining fits is one member's encoder with ``proxy.w`` (1, H, 2), ``proxy.b``.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

Weights = Dict[str, np.ndarray]   # name -> float32 array, member axis first


def _uniform(rng: np.random.Generator, members: int, fan_in: int, shape) -> np.ndarray:
    """torch.nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(max(fan_in, 1))
    return rng.uniform(-bound, bound, size=(members, *shape)).astype(np.float32)


def _layer(rng, members: int, fan_in: int, width: int, out: dict, name: str) -> None:
    out[f"{name}.w"] = _uniform(rng, members, fan_in, (fan_in, width))
    out[f"{name}.b"] = _uniform(rng, members, fan_in, (1, width))


def init_encoder(rng: np.random.Generator, members: int, arch_width: int, hidden: int, layers: int) -> Weights:
    out: dict = {}
    for i in range(layers):
        _layer(rng, members, arch_width if i == 0 else hidden, hidden, out, f"enc{i}")
    return out


def init_head(rng: np.random.Generator, members: int, hidden: int, rest_width: int, layers: int) -> Weights:
    """The accuracy head: its first layer sees [embedding (hidden), ``rest_width`` other inputs]."""
    fan_in = hidden + rest_width
    out = {"head0.wz": _uniform(rng, members, fan_in, (hidden, hidden)),
           "head0.wr": _uniform(rng, members, fan_in, (rest_width, hidden)),
           "head0.b": _uniform(rng, members, fan_in, (1, hidden))}
    for i in range(1, layers):
        _layer(rng, members, hidden, hidden, out, f"head{i}")
    _layer(rng, members, hidden, 1, out, "out")
    return out


def init_proxy(rng: np.random.Generator, arch_width: int, hidden: int, layers: int) -> Weights:
    out = init_encoder(rng, 1, arch_width, hidden, layers)
    _layer(rng, 1, hidden, 2, out, "proxy")
    return out


def _count(weights: Weights, prefix: str) -> int:
    """Layers named ``prefix0``, ``prefix1``, ... (``head0`` included)."""
    i = 1
    while f"{prefix}{i}.b" in weights:
        i += 1
    return i if f"{prefix}0.b" in weights else 0


def _relu(h: np.ndarray) -> np.ndarray:
    return np.maximum(h, 0.0, out=h)


def centred(arch: np.ndarray) -> np.ndarray:
    """One-hot and range columns in [0, 1] become [-1, 1], as in Member."""
    return arch * np.float32(2.0) - np.float32(1.0)


# ---------------------------------------------------------------------- forward
def embed(w: Weights, a0: np.ndarray, acts: List[np.ndarray] = None) -> np.ndarray:
    """Each member's embedding of centred arch rows ``a0`` (n, A): (M, n, H) (or (1, n, H)
    for the proxy model); ``acts`` collects each layer's output for :func:`backward`."""
    h = a0
    for i in range(_count(w, "enc")):
        h = _relu(h @ w[f"enc{i}.w"] + w[f"enc{i}.b"])
        if acts is not None:
            acts.append(h)
    return h


def head(w: Weights, z: np.ndarray, rest: np.ndarray, acts: List[np.ndarray] = None) -> np.ndarray:
    """Each member's standardised score from embeddings ``z`` (M, n, H) and the rows' other
    head inputs ``rest`` (n, R): (M, n, 1)."""
    h = _relu(z @ w["head0.wz"] + rest @ w["head0.wr"] + w["head0.b"])
    if acts is not None:
        acts.append(h)
    for i in range(1, _count(w, "head")):
        h = _relu(h @ w[f"head{i}.w"] + w[f"head{i}.b"])
        if acts is not None:
            acts.append(h)
    return h @ w["out.w"] + w["out.b"]


def scores(w: Weights, arch: np.ndarray, rest: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Each member's standardised score of float32 rows: (M, n)."""
    out = np.empty((len(w["out.b"]), len(arch)), dtype=np.float32)
    for s in range(0, len(arch), chunk):
        z = embed(w, centred(arch[s:s + chunk]))
        out[:, s:s + chunk] = head(w, z, rest[s:s + chunk])[..., 0]
    return out


def proxies(w: Weights, arch: np.ndarray) -> np.ndarray:
    """The proxy model's standardised (log-FLOPs, log-params) of arch rows: (n, 2)."""
    return (embed(w, centred(arch)) @ w["proxy.w"] + w["proxy.b"])[0]


# ---------------------------------------------------------------------- backward
def linear_grads(grads: Weights, name: str, x: np.ndarray, d: np.ndarray) -> None:
    """Gradients of the layer ``name`` (y = x @ w + b) given its input ``x`` and dL/dy ``d``."""
    xt = x.T if x.ndim == 2 else x.transpose(0, 2, 1)   # a shared (n, k) input serves every member
    np.matmul(xt, d, out=grads[f"{name}.w"])
    np.sum(d, axis=1, keepdims=True, out=grads[f"{name}.b"])


def back_through(d: np.ndarray, w: np.ndarray, below: np.ndarray) -> np.ndarray:
    """dL/d(pre-activation of the layer below) from dL/d(this layer's pre-activation) ``d``."""
    g = d @ w.transpose(0, 2, 1)
    g *= below > 0
    return g


def encoder_backward(w: Weights, grads: Weights, a0: np.ndarray, enc_acts: list, d: np.ndarray) -> None:
    """Encoder gradients given dL/d(embedding pre-activation) ``d`` (ReLU already applied)."""
    for i in reversed(range(_count(w, "enc"))):
        linear_grads(grads, f"enc{i}", enc_acts[i - 1] if i else a0, d)
        if i:
            d = back_through(d, w[f"enc{i}.w"], enc_acts[i - 1])


def backward(w: Weights, grads: Weights, a0, rest, enc_acts: list, head_acts: list, d_out: np.ndarray,
             encoder: bool) -> None:
    """Fill ``grads`` (arrays shaped as ``w``) with the gradients of a loss whose derivative by
    the outputs is ``d_out`` (M, n, 1); the encoder's only when ``encoder``."""
    linear_grads(grads, "out", head_acts[-1], d_out)
    d = back_through(d_out, w["out.w"], head_acts[-1])
    for i in reversed(range(1, _count(w, "head"))):
        linear_grads(grads, f"head{i}", head_acts[i - 1], d)
        d = back_through(d, w[f"head{i}.w"], head_acts[i - 1])
    z = enc_acts[-1]
    np.matmul(z.transpose(0, 2, 1), d, out=grads["head0.wz"])
    np.matmul(rest.T, d, out=grads["head0.wr"])
    np.sum(d, axis=1, keepdims=True, out=grads["head0.b"])
    if encoder:
        encoder_backward(w, grads, a0, enc_acts, back_through(d, w["head0.wz"], z))
