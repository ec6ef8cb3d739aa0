"""jointnas inside the tools users already drive. Each integration is a module of its own that
imports its tool (an optional extra), so ``import jointnas`` imports none of them:

- :mod:`jointnas.integrations.optuna`: ``JointNASSampler``, predictor-guided search as an Optuna
  sampler (``pip install 'jointnas[optuna]'``); Ray Tune takes it through ``OptunaSearch(sampler=...)``.
"""
