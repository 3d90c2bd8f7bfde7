"""Tests of rule.py: python3 -m unittest"""

import unittest

import rule


class RuleTest(unittest.TestCase):
    def test_more_than_fifty_units_on_a_line_is_refused(self):
        self.assertEqual(rule.violations([("MUG", 50)]), [])
        found = rule.violations([("MUG", 50), ("TEE", 51)])
        self.assertEqual([(code, index) for code, _, index in found], [("too-many-units", 1)])


if __name__ == "__main__":
    unittest.main()
