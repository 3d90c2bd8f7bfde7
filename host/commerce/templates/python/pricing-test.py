"""Tests of rule.py: python3 -m unittest"""

import unittest

import rule


class RuleTest(unittest.TestCase):
    def test_one_percent_off_from_ten_units(self):
        self.assertIsNone(rule.discount(9, 9_000))
        self.assertEqual(rule.discount(10, 10_000), ("1% off 10 units or more", 100))


if __name__ == "__main__":
    unittest.main()
