"""mixmatch recommender: catalogue and outfit data, compatibility, graph, engine, rules.

Imports ``features`` (perception) and never ``api``.
"""
__version__ = "0.1.0"
