"""The rule of {{name}}, a saga hook: edit it.

As generated: vetoes the payment (before `authorize-payment`) of an order
whose total is above 10,000.00 in its currency's minor unit. Install it
with `--listen authorize-payment:before` so that it is called only there.
"""

MAX_TOTAL = 1_000_000


def veto(step, before, total):
    """Why the saga must stop here, or None to let it go on."""
    if step == "authorize-payment" and before and total > MAX_TOTAL:
        return f"a total above {MAX_TOTAL} needs review"
    return None
