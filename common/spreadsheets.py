"""CSV that a spreadsheet opens as data, never as formulas: every CSV the product writes uses it.

A cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return, which some
spreadsheets skip before reading one of those) is a formula to Excel, LibreOffice and
Google Sheets: a team named `=HYPERLINK(...)` would reach finance as a live link. OWASP's
rule: prefix such a cell with `'`, which the spreadsheet shows as text. A plain number
(`-12.50`, a negative change in spend) cannot run anything and is left as it is, so the
columns finance adds up stay numbers.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, Protocol

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def csv_cell(value: object) -> object:
    """`value`, with a leading `'` when a spreadsheet would read it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(value):
        return f"'{value}"
    return value


class CsvWriter:
    """`csv.writer` whose every cell goes through `csv_cell`."""

    def __init__(self, file: _Writable, **options: Any) -> None:
        self._writer = csv.writer(file, **options)

    def writerow(self, row: Iterable[object]) -> Any:
        return self._writer.writerow([csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)
