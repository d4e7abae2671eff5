"""Prices after a percentage discount, in whole cents."""


def discounted(price_cents: int, percent: int) -> int:
    """The price after `percent` off, rounded to the nearest cent (a half cent up)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"a discount is 0 to 100 percent, not {percent}")
    return price_cents * (100 - percent) // 100
