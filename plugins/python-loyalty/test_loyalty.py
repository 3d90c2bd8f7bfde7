"""The rule's own tests: python3 -m unittest (from this directory)."""

import unittest

import loyalty


class LoyaltyTest(unittest.TestCase):
    def test_the_highest_tier_reached_applies(self):
        tiers = loyalty.tiers_from_config("{}")
        self.assertIsNone(loyalty.discount(tiers, 9_999))
        self.assertEqual(loyalty.discount(tiers, 10_000), (5, 500))
        self.assertEqual(loyalty.discount(tiers, 49_999), (5, 2_499))
        self.assertEqual(loyalty.discount(tiers, 50_000), (10, 5_000))

    def test_configured_tiers_in_any_order(self):
        tiers = loyalty.tiers_from_config(
            '{"tiers": [{"min_subtotal": 300, "percent": 30}, {"min_subtotal": 0, "percent": 1}]}'
        )
        self.assertEqual(loyalty.discount(tiers, 299), (1, 2))
        self.assertEqual(loyalty.discount(tiers, 1_000), (30, 300))
        self.assertIsNone(loyalty.discount(tiers, 0))

    def test_bad_configuration_is_refused(self):
        for text in ['[]', '{"tiers": 3}', '{"tiers": [{"min_subtotal": -1, "percent": 5}]}',
                     '{"tiers": [{"min_subtotal": 1, "percent": 101}]}']:
            with self.assertRaises(ValueError, msg=text):
                loyalty.tiers_from_config(text)


if __name__ == "__main__":
    unittest.main()
