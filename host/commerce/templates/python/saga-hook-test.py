"""Tests of rule.py: python3 -m unittest"""

import unittest

import rule


class RuleTest(unittest.TestCase):
    def test_big_totals_wait_for_review(self):
        self.assertIsNone(rule.veto("authorize-payment", True, rule.MAX_TOTAL))
        self.assertIsNotNone(rule.veto("authorize-payment", True, rule.MAX_TOTAL + 1))
        self.assertIsNone(rule.veto("capture-payment", True, rule.MAX_TOTAL + 1))


if __name__ == "__main__":
    unittest.main()
