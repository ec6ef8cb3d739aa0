"""Model families: what an arch is (builder + exact cost). Look one up by name with
:func:`jointnas.catalog.make_family`; each family is one module."""
from .base import Cost, Deploy, ModelFamily

__all__ = ["Cost", "Deploy", "ModelFamily"]
