"""{{name}}: hands the order to rule.py (world `validation`)."""

from wit_world import WitWorld as World
from wit_world.imports.types import Violation

import rule


class WitWorld(World):
    def validate(self, order):
        lines = [(line.sku, line.quantity) for line in order.lines]
        return [
            Violation(code=code, message=message, line=index)
            for code, message, index in rule.violations(lines)
        ]
