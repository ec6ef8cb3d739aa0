"""One-shot architecture search: DARTS (first and second order) and PC-DARTS supernets on the
NAS-Bench-201 cell (``nb201``) and the DARTS CNN cell (``darts``)."""
from .search import OneShotSearch
from .settings import OneShotSettings

__all__ = ["OneShotSearch", "OneShotSettings"]
