"""The sample project's tests (run inside a workspace's sandbox, not by this repository's pytest:
tests/conftest.py leaves the directory out). One fails until discount.py rounds."""

import unittest

from discount import discounted  # type: ignore[import-not-found]


class DiscountTest(unittest.TestCase):
    def test_no_discount(self) -> None:
        self.assertEqual(discounted(999, 0), 999)

    def test_whole_cents(self) -> None:
        self.assertEqual(discounted(1000, 15), 850)

    def test_a_half_cent_rounds_up(self) -> None:
        self.assertEqual(discounted(150, 15), 128)

    def test_out_of_range(self) -> None:
        with self.assertRaises(ValueError):
            discounted(100, 101)


if __name__ == "__main__":
    unittest.main()
