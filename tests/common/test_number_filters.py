"""The number rule's template filters: one library any app's pages load, the dashboard's too."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template

FIGURES = "{{ cost|usd }} | {{ small|usd }} | {{ rate|share }} | {{ used|pct }} | {{ latency|ms }} | {{ none|usd }}"
CONTEXT = {"cost": Decimal("1234.5"), "small": 0.49750000000000005, "rate": 0.205, "used": 35.0, "latency": 2260.0}


@pytest.mark.parametrize("library", ["numbers", "dashboard_format"])
def test_every_value_is_written_with_its_unit(library: str) -> None:
    html = Template(f"{{% load {library} %}}{FIGURES}").render(Context({**CONTEXT, "none": None}))

    assert html == "$1,234.50 | $0.4975 | 20.5 % | 35.0 % | 2.26 s | –"
