"""The one way money, percentages and durations are written."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.numbers import duration_ms, percent, share, usd


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("84.000000"), "$84.00"),
        (0.49750000000000005, "$0.4975"),  # a float's noise never shows
        (Decimal("0.5"), "$0.50"),
        (Decimal("0.000375"), "$0.000375"),
        (Decimal("0.0003754321"), "$0.0003754"),
        (Decimal("0.0000000123"), "$0.00000001"),
        (Decimal("0"), "$0.00"),
        (Decimal("-0.0000"), "$0.00"),
        (Decimal("-2.5"), "-$2.50"),
        (None, "–"),
    ],
)
def test_money_has_its_currency_and_a_sensible_precision(value: object, text: str) -> None:
    assert usd(value) == text  # type: ignore[arg-type]


def test_money_can_be_signed_or_forced_to_a_precision() -> None:
    assert usd(Decimal("14"), signed=True) == "+$14.00"
    assert usd(Decimal("0.1"), places=6) == "$0.100000"


def test_a_percentage_reads_the_same_from_a_fraction_or_from_percent() -> None:
    assert share(0.205) == percent(20.5) == "20.5 %"
    assert share(0.2, signed=True) == "+20.0 %"
    assert share(None) == percent(None) == "–"


@pytest.mark.parametrize(("ms", "text"), [(850.4, "850 ms"), (2260, "2.26 s"), (185_000, "3 min 05 s"), (None, "–")])
def test_durations_choose_their_unit(ms: float | None, text: str) -> None:
    assert duration_ms(ms) == text
