"""Predictor quality: k-fold Kendall tau, Spearman rho and MAE on trained pairs."""
from __future__ import annotations

import copy
import time

import numpy as np

from .base import PredictorError
from .mlp.ensemble import Predictor


def _corr(fn, a, b) -> float:
    # A constant prediction carries no ranking information: count it as 0, not NaN.
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    value = float(fn(a, b)[0])
    return 0.0 if np.isnan(value) else value


def ranking_metrics(y_true, y_pred) -> dict:
    """Kendall tau-b, Spearman rho and mean absolute error of predictions against the truth."""
    # scipy and scikit-learn load on use, not on import: scoring (the fine stage) needs neither
    from scipy.stats import kendalltau, spearmanr

    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    return {"kendall_tau": _corr(kendalltau, y_true, y_pred), "spearman_rho": _corr(spearmanr, y_true, y_pred),
            "mae": float(np.mean(np.abs(y_true - y_pred))) if len(y_true) else float("nan")}


def evaluate(space, candidates, accuracies, k: int = 5, seed: int = 0, *, pretrain=None,
             frozen_epochs: int = 50, full_epochs: int = 50, **predictor_kwargs) -> dict:
    """k-fold cross-validation of a predictor on trained pairs.

    ``pretrain`` is None (random encoder), ``(pool_candidates, costs)``, or an already
    pretrained Predictor whose encoder (and configuration) every fold starts from.
    Returns the metrics averaged over folds (``kendall_tau``, ``spearman_rho``, ``mae``,
    with ``*_std`` over folds), the same metrics on the pooled out-of-fold predictions
    (``*_pooled``), the out-of-fold ``predictions`` and ``fit_seconds`` per fold.
    """
    if isinstance(pretrain, Predictor):
        if predictor_kwargs:
            raise PredictorError("pass predictor settings either to the pretrained Predictor or to evaluate, not both")
        base = copy.deepcopy(pretrain)
        base.members, base.target_stats = [], None
        if not base.pretrained:
            raise PredictorError("the Predictor passed as pretrain= has not been pretrained")
    else:
        base = Predictor(space, seed=seed, **predictor_kwargs)
        if pretrain is not None:
            base.pretrain(*pretrain)
    x = base.encode(candidates)
    out = cross_validate(base, x, accuracies, k, seed, frozen_epochs=frozen_epochs, full_epochs=full_epochs)
    out["pretrained"] = base.pretrained
    return out


def cross_validate(template, candidates, scores, k: int = 5, seed: int = 0, **fit_options) -> dict:
    """k-fold cross-validation of any surrogate: each fold fits a copy of ``template`` (e.g. one
    pretrained on proxies) on the other folds and predicts its own. For the MLP predictor this
    is :func:`evaluate` with ``pretrain=template``, fold for fold. Returns the pooled metrics
    (``*_pooled``), the per-fold means, the out-of-fold ``predictions`` and their ``spreads``
    (0 for a surrogate without one)."""
    y = np.asarray(scores, dtype=np.float64).reshape(-1)
    rows = candidates if isinstance(candidates, np.ndarray) else None   # already encoded
    candidates = candidates if rows is not None else list(candidates)
    pick = (lambda idx: rows[idx]) if rows is not None else (lambda idx: [candidates[i] for i in idx])
    if len(y) != len(candidates):
        raise PredictorError(f"got {len(candidates)} candidates but {len(y)} scores")
    k = int(min(k, len(y)))
    if k < 2:
        raise PredictorError(f"k-fold evaluation needs k >= 2 and at least 2 pairs (got k={k}, {len(y)} pairs)")
    oof, spread = np.empty(len(y)), np.zeros(len(y))
    folds, seconds = [], []
    from sklearn.model_selection import KFold  # scikit-learn on use: scoring (the fine stage) needs none

    for train_idx, test_idx in KFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y))):
        p = copy.deepcopy(template)
        start = time.perf_counter()
        p.fit(pick(train_idx), y[train_idx], **fit_options)
        seconds.append(time.perf_counter() - start)
        mean, std = p.predict(pick(test_idx))
        oof[test_idx] = mean
        spread[test_idx] = 0.0 if std is None else std
        folds.append(ranking_metrics(y[test_idx], oof[test_idx]))
    out = {}
    for name in ("kendall_tau", "spearman_rho", "mae"):
        values = np.array([f[name] for f in folds])
        out[name], out[f"{name}_std"] = float(values.mean()), float(values.std())
    out.update({f"{name}_pooled": v for name, v in ranking_metrics(y, oof).items()})
    out.update(n=int(len(y)), k=k, predictions=oof.tolist(), spreads=spread.tolist(), fit_seconds=seconds)
    return out
