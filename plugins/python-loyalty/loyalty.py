"""The loyalty rule, free of the plugin bindings so it can be tested with
plain Python: the bigger the cart, the bigger the discount, by tiers.

A tier is {"min_subtotal": N, "percent": P}: from a subtotal of N minor
units (10000 is 100.00 EUR), P percent off the whole cart. The highest
tier reached applies; the discount is rounded down to the minor unit.
"""

import json

DEFAULT_TIERS = [
    {"min_subtotal": 10_000, "percent": 5},
    {"min_subtotal": 50_000, "percent": 10},
]


def tiers_from_config(text):
    """The tiers of a configuration document ("{}": the default tiers)."""
    doc = json.loads(text or "{}")
    if not isinstance(doc, dict):
        raise ValueError("the configuration must be a JSON object")
    tiers = doc.get("tiers", DEFAULT_TIERS)
    if not isinstance(tiers, list):
        raise ValueError("tiers must be a list")
    checked = []
    for tier in tiers:
        low, percent = tier.get("min_subtotal"), tier.get("percent")
        if not isinstance(low, int) or low < 0:
            raise ValueError("min_subtotal must be a whole number of minor units, 0 or more")
        if not isinstance(percent, int) or not 0 < percent <= 100:
            raise ValueError("percent must be a whole number from 1 to 100")
        checked.append((low, percent))
    return sorted(checked)


def discount(tiers, subtotal):
    """(percent, amount) of the highest tier `subtotal` reaches, or None."""
    reached = [percent for low, percent in tiers if subtotal >= low]
    if not reached or subtotal <= 0:
        return None
    percent = reached[-1]
    return percent, subtotal * percent // 100
