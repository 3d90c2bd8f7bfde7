"""{{name}}: hands the cart to rule.py (world `pricing`)."""

from wit_world import WitWorld as World
from wit_world.imports.types import Adjustment, AdjustmentKind, Money

import rule


class WitWorld(World):
    def price(self, cart):
        units = sum(line.quantity for line in cart.lines)
        found = rule.discount(units, cart.subtotal.amount)
        if found is None:
            return []
        label, amount = found
        money = Money(amount=amount, currency=cart.currency)
        return [Adjustment(label=label, kind=AdjustmentKind.DISCOUNT, amount=money, line=None)]
