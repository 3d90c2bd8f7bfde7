"""The rule of {{name}}, a pricing plugin: edit it.

As generated: 1% off a cart of 10 units or more, as one discount on the
whole cart. Amounts are in the currency's minor unit (1250 EUR is 12.50).
"""

MIN_UNITS = 10
PERCENT = 1


def discount(units, subtotal):
    """(label, amount) of the discount for a cart, or None."""
    amount = max(subtotal, 0) * PERCENT // 100
    if units < MIN_UNITS or amount == 0:
        return None
    return f"{PERCENT}% off {MIN_UNITS} units or more", amount
