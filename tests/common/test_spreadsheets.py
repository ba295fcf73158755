"""CSV cells a spreadsheet would run as formulas are written as text (OWASP's rule)."""

from __future__ import annotations

import io

import pytest

from common.spreadsheets import CsvWriter, csv_cell


@pytest.mark.parametrize("value", ["=1+1", "+1+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1", "-", '=HYPERLINK("x")'])
def test_it_prefixes_a_cell_a_spreadsheet_would_read_as_a_formula(value: str) -> None:
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["growth", "", "12.50", "-12.50", "+3", "-1e-05", "a=b", 7, None])
def test_it_leaves_text_and_plain_numbers_alone(value: object) -> None:
    assert csv_cell(value) == value


def test_the_writer_escapes_every_cell() -> None:
    out = io.StringIO()

    CsvWriter(out).writerows([["name", "cost"], ["=cmd|' /C calc'!A0", "-1.5"]])

    assert out.getvalue() == "name,cost\r\n'=cmd|' /C calc'!A0,-1.5\r\n"
