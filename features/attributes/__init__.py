"""Attribute network: multi-task heads over a compact CNN whose penultimate layer is
the item's visual embedding.

>>> from features.attributes import Taxonomy
>>> len(Taxonomy.fashionai().names)
8
"""
from features.attributes.estimator import AttributeModel
from features.attributes.model import AttributeNet, AttributeNetConfig
from features.attributes.taxonomy import Taxonomy

__all__ = ["Taxonomy", "AttributeNetConfig", "AttributeNet", "AttributeModel"]
