"""Names in the live charts are text: plotly.js would render markup in them."""

from __future__ import annotations

from tests.dashboard.live.test_charts import figures, point


def test_a_model_name_with_markup_is_shown_as_text() -> None:
    p = point(29)
    p.tiers[(2, '<a href="https://evil.example/">x</a>')] = 1

    names = [t["name"] for t in figures([p])["tiers"]["data"]]

    assert 'tier 2 · &lt;a href="https://evil.example/"&gt;x&lt;/a&gt;' in names
    assert not any("<" in name for name in names)
