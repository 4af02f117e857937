"""Pairwise compatibility: pair features, co-occurrence statistics, the LightGBM model.

>>> from recommender.compat import CompatibilityModel
"""
from recommender.compat.model import CompatibilityModel

__all__ = ["CompatibilityModel"]
