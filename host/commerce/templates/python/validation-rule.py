"""The rule of {{name}}, a validation plugin: edit it.

As generated: refuses an order with more than 50 units on one line.
"""

MAX_UNITS = 50


def violations(lines):
    """(code, message, line index) for each line over the limit, from
    (sku, quantity) pairs."""
    return [
        ("too-many-units", f"at most {MAX_UNITS} units of {sku} per order", index)
        for index, (sku, quantity) in enumerate(lines)
        if quantity > MAX_UNITS
    ]
