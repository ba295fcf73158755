"""Names in Plotly charts shown as text, never as markup.

plotly.js renders a subset of HTML in every text it draws (trace names in legends and
hover labels, titles, tick labels): a team named `<a href="https://…">payroll</a>` would
be a live link on a finance chart. Escaping `&`, `<` and `>` keeps the name as typed:
plotly.js turns `&amp;`, `&lt;` and `&gt;` back into the characters when it draws them.
"""

from __future__ import annotations

import html


def chart_text(name: str) -> str:
    """`name` as plain text in a Plotly label."""
    return html.escape(name, quote=False)
