"""How every page, report, export and notification writes money, percentages and durations.

One rule for the product (docs/dashboard.md#numbers): money in US dollars with a `$`, cents
from a dollar up and four significant digits below it (never a float's binary noise);
percentages with one decimal and a `%`, whether the figure was kept as a fraction or in
percent; durations in ms below a second, in seconds below a minute, then minutes. A missing
value is a dash.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MISSING = "–"
CENTS = 2
# Below a dollar: four significant digits, at most eight places (records keep ten).
SMALL_SIGNIFICANT = 4
SMALL_MAX_PLACES = 8


def as_decimal(value: Decimal | float | int | str) -> Decimal:
    # str() first: Decimal(0.1) would keep the float's binary expansion.
    return value if isinstance(value, Decimal) else Decimal(str(value))


def usd(value: Decimal | float | int | str | None, *, signed: bool = False, places: int | None = None) -> str:
    """`$1,234.50`, `$0.4975`, `$0.000375`; `+$14.00` when `signed`; `places` forces a precision."""
    if value is None:
        return MISSING
    amount = as_decimal(value)
    digits = places if places is not None else money_places(amount)
    rounded = amount.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ("+" if signed and rounded > 0 else "")
    text = f"{abs(rounded):,.{digits}f}"
    if places is None and digits > CENTS:
        whole, fraction = text.split(".")
        text = f"{whole}.{fraction.rstrip('0').ljust(CENTS, '0')}"
    return f"{sign}${text}"


def money_places(amount: Decimal) -> int:
    """Cents from a dollar up (and for zero); below it, enough places for four significant digits."""
    size = abs(amount)
    if size >= 1 or size.is_zero():
        return CENTS
    leading_zeros = -size.adjusted() - 1  # 0.000375 → 3
    return max(CENTS, min(SMALL_MAX_PLACES, leading_zeros + SMALL_SIGNIFICANT))


def percent(value: float | Decimal | None, *, signed: bool = False, places: int = 1) -> str:
    """A figure already in percent: 20.5 → `20.5 %` (`places` 2 where a tenth hides the point: 99.95 %)."""
    if value is None:
        return MISSING
    return f"{float(value):{'+' if signed else ''}.{places}f} %"


def share(fraction: float | Decimal | None, *, signed: bool = False) -> str:
    """A fraction as a percentage: 0.205 → `20.5 %`."""
    return MISSING if fraction is None else percent(float(fraction) * 100, signed=signed)


def duration_ms(value: float | None) -> str:
    """`850 ms`, `2.26 s`, `3 min 05 s`."""
    if value is None:
        return MISSING
    if value < 1000:
        return f"{value:,.0f} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes:,} min {rest:02d} s"
