"""A pricing plugin in Python: a loyalty discount by cart size (see
loyalty.py for the rule). Built with componentize-py against
wit/commerce.wit's `pricing` world:

    componentize-py -d ../../wit -w pricing componentize app -o loyalty.wasm
"""

from componentize_py_types import Err
from wit_world import WitWorld as Pricing
from wit_world.imports import host
from wit_world.imports.types import Adjustment, AdjustmentKind, Money

import loyalty


class WitWorld(Pricing):
    def price(self, cart):
        try:
            tiers = loyalty.tiers_from_config(host.config())
        except ValueError as e:
            raise Err(f"bad configuration: {e}")
        found = loyalty.discount(tiers, cart.subtotal.amount)
        if found is None:
            return []
        percent, amount = found
        label = f"{percent}% loyalty discount"
        money = Money(amount=amount, currency=cart.currency)
        return [Adjustment(label=label, kind=AdjustmentKind.DISCOUNT, amount=money, line=None)]
