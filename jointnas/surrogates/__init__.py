"""Surrogates that rank candidates. The default is the FBNetV3-style accuracy predictor:
proxy-pretrained architecture encoder, Huber-tuned accuracy head, ensemble uncertainty, safe
checkpoints and k-fold quality measurement.

    from jointnas.surrogates import Predictor
    p = Predictor(space).pretrain(pool, costs).fit(trained, accuracies)
    mean, std = p.predict(candidates)
"""
from .base import PredictorError, Surrogate, load_scorer, load_surrogate
from .mlp.checkpoint import FORMAT_VERSION
from .evaluate import evaluate, ranking_metrics

__all__ = ["FORMAT_VERSION", "Predictor", "PredictorError", "Surrogate", "evaluate", "load_scorer",
           "load_surrogate", "ranking_metrics"]


def __getattr__(name):
    # The torch predictor on first use only: scoring a saved one (the fine stage) needs no torch.
    if name == "Predictor":
        from .mlp.ensemble import Predictor

        return Predictor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
