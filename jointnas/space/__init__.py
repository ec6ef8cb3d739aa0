"""Generic search spaces: typed dimensions, candidates, Sobol pools, the row codec."""
from ..errors import SpaceError
from .candidate import Candidate
from .core import SearchSpace
from .dims import BoolDim, CategoricalDim, Dimension, FloatDim, IntDim
from .pool import decode_values, encode_values, sample_pool

Space = SearchSpace  # the name before the open-toolkit step

__all__ = ["BoolDim", "Candidate", "CategoricalDim", "Dimension", "FloatDim", "IntDim", "SearchSpace", "Space",
           "SpaceError", "decode_values", "encode_values", "sample_pool"]
