"""{{name}}: hands the step to rule.py (world `saga-hook`)."""

from wit_world import WitWorld as World
from wit_world.imports.types import Decision_Continue, Decision_Veto, Phase

import rule


class WitWorld(World):
    def on_step(self, context):
        before = context.phase == Phase.BEFORE
        reason = rule.veto(context.step, before, context.order.total.amount)
        return Decision_Continue() if reason is None else Decision_Veto(reason)
