"""Surrogates that rank candidates: the :class:`Surrogate` base class every kind subclasses, and
the default, the FBNetV3-style accuracy predictor (proxy-pretrained architecture encoder,
Huber-tuned accuracy head, ensemble uncertainty), plus k-fold quality measurement.

    from jointnas.surrogates import Predictor
    p = Predictor(space).pretrain(pool, costs).fit(trained, accuracies)
    mean, std = p.predict(candidates)

Checkpoints of any kind are read back by ``jointnas.catalog.load_surrogate`` (and, for scoring
only, ``load_scorer``), which finds the class of the kind a file names.
"""
from .base import PredictorError, Scorer, Surrogate
from .checkpoint import FORMAT_VERSION, checkpoint_kind
from .evaluate import evaluate, ranking_metrics
from .mlp.ensemble import Predictor

__all__ = ["FORMAT_VERSION", "Predictor", "PredictorError", "Scorer", "Surrogate", "checkpoint_kind", "evaluate",
           "ranking_metrics"]
