"""Accuracy predictor (FBNetV3-style): proxy-pretrained architecture encoder, Huber-tuned
accuracy head, ensemble uncertainty, safe checkpoints and k-fold quality measurement.

    from jointnas.predictor import Predictor
    p = Predictor("fbnetv3").pretrain(pool, costs).fit(trained, accuracies)
    mean, std = p.predict(candidates)
"""
from .checkpoint import FORMAT_VERSION
from .core import Predictor, PredictorError
from .evaluate import evaluate, ranking_metrics

__all__ = ["FORMAT_VERSION", "Predictor", "PredictorError", "evaluate", "ranking_metrics"]
