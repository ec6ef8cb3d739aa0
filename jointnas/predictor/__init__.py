"""Surrogates that rank candidates. The default is the FBNetV3-style accuracy predictor:
proxy-pretrained architecture encoder, Huber-tuned accuracy head, ensemble uncertainty, safe
checkpoints and k-fold quality measurement.

    from jointnas.predictor import Predictor
    p = Predictor(space).pretrain(pool, costs).fit(trained, accuracies)
    mean, std = p.predict(candidates)
"""
from .base import Surrogate, load_surrogate
from .checkpoint import FORMAT_VERSION
from .evaluate import evaluate, ranking_metrics
from .mlp_ensemble import Predictor, PredictorError

__all__ = ["FORMAT_VERSION", "Predictor", "PredictorError", "Surrogate", "evaluate", "load_surrogate",
           "ranking_metrics"]
