"""The coarse stage: FBNetV3's constrained iterative optimisation over a run store."""
