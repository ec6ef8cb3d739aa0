"""The fine stage: a search over candidates scored by a fitted predictor."""
