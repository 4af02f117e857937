"""Recommendation strategies behind one interface, chosen by name (A/B variants pick them).

>>> sorted(STRATEGIES)
['cooccurrence', 'default', 'visual']
"""
from __future__ import annotations

from features.exceptions import InputError
from recommender.strategies.base import Strategy
from recommender.strategies.cooccurrence import CooccurrenceStrategy
from recommender.strategies.default import DefaultStrategy
from recommender.strategies.visual import VisualStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    "default": DefaultStrategy,
    "cooccurrence": CooccurrenceStrategy,
    "visual": VisualStrategy,
}


def get_strategy(name: str) -> Strategy:
    """A strategy instance by name; unknown names raise InputError(field="strategy")."""
    try:
        return STRATEGIES[name]()
    except (KeyError, TypeError):
        raise InputError(f"unknown strategy {name!r}", field="strategy", value=name,
                         allowed=sorted(STRATEGIES)) from None


__all__ = ["Strategy", "STRATEGIES", "get_strategy", "DefaultStrategy",
           "CooccurrenceStrategy", "VisualStrategy"]
