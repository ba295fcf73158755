"""A monthly report as a PDF, drawn with ReportLab from the report's data.

The figures are the ones the finance page shows (`billing.reports.compute.summary_tiles`,
…), formatted once in `billing.reports.compute`, so the page, the PDF and the CSV cannot
disagree.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from io import BytesIO
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing.models import MonthlyReport
from billing.reports import compute as reports

PAGE = landscape(A4)
MARGIN = 15 * mm
# What flowables may fill: the page inside the margins, less the frame's 6 pt padding each side.
WIDTH = PAGE[0] - 2 * MARGIN - 12
INK = colors.HexColor("#1d2433")
RULE = colors.HexColor("#e3e6eb")
ACTUAL = colors.HexColor("#2f6fde")
BASELINE = colors.HexColor("#c4c9d2")
NAME_WIDTH = 52 * mm
# The name, then the figures sharing the rest of the line, so every breakdown lines up.
BREAKDOWN_WIDTHS = [NAME_WIDTH] + [(WIDTH - NAME_WIDTH) / (len(reports.BREAKDOWN_HEADERS) - 1)] * (
    len(reports.BREAKDOWN_HEADERS) - 1
)


def report_pdf(data: reports.Json, *, stored: MonthlyReport | None = None) -> bytes:
    """Render the report; `stored` (the snapshot it comes from) is named on the first page, else it is live."""
    buffer = BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=PAGE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=f"CascadeOps finance report, {data['title']}",
        author="CascadeOps",
    )
    doc.build(_story(data, stored), onFirstPage=_footer, onLaterPages=_footer)
    return buffer.getvalue()


def _story(data: reports.Json, stored: MonthlyReport | None) -> list[Flowable]:
    styles = getSampleStyleSheet()
    h2 = ParagraphStyle("h2", parent=styles["Heading2"], textColor=INK, spaceBefore=8, spaceAfter=4)
    story: list[Flowable] = [
        Paragraph(escape(f"CascadeOps finance report: {data['title']}"), styles["Title"]),
        Paragraph(escape(_provenance(data, stored)), styles["Normal"]),
        Spacer(0, 6 * mm),
        _tiles(reports.summary_tiles(data)),
        Spacer(0, 6 * mm),
        _daily_chart(data),
        Paragraph("Projections", h2),
        _table(reports.projection_rows(data), widths=[50 * mm, 40 * mm, 40 * mm, 40 * mm]),
    ]
    if data.get("projection_basis"):
        story.append(Paragraph(escape(data["projection_basis"]), styles["Normal"]))
    for title, rows in reports.breakdown_tables(data):
        body = rows or [["(no spend)"] + [""] * (len(reports.BREAKDOWN_HEADERS) - 1)]
        table = _table([reports.BREAKDOWN_HEADERS, *body], widths=BREAKDOWN_WIDTHS)
        story.append(KeepTogether([Paragraph(escape(title), h2), table]))
    return story


def _provenance(data: reports.Json, stored: MonthlyReport | None) -> str:
    period = data["period"]
    if stored is None:
        return (
            f"Month to date through {date.fromisoformat(period['end']):%d %B %Y}, computed live from the ledger. "
            "All amounts in USD."
        )
    built = f"{stored.generated_at:%d %B %Y %H:%M %Z}" if stored.generated_at else "–"
    return (
        f"Snapshot built {built} from the ledger, price book version {stored.price_book_version}. "
        f"All amounts in USD; the baseline is the same traffic on each policy's strongest tier alone."
    )


def _tiles(tiles: list[reports.Tile]) -> Table:
    styles = getSampleStyleSheet()
    small = ParagraphStyle("small", parent=styles["Normal"], fontSize=8, textColor=colors.HexColor("#5b6474"))
    big = ParagraphStyle("big", parent=styles["Normal"], fontSize=15, leading=19, fontName="Helvetica-Bold")
    cells: list[list[Any]] = [
        [Paragraph(escape(t.label), small), Paragraph(escape(t.value), big), Paragraph(escape(t.note), small)]
        for t in tiles
    ]
    per_row = 4
    grid: list[list[Any]] = [cells[i : i + per_row] for i in range(0, len(cells), per_row)]
    grid[-1] += [""] * (per_row - len(grid[-1]))
    table = Table(grid, colWidths=[WIDTH / per_row] * per_row)
    table.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.5, RULE),
                ("INNERGRID", (0, 0), (-1, -1), 0.5, RULE),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 6),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    return table


def _table(rows: list[list[str]], widths: list[float] | None = None) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), "Helvetica", 8),
                ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
                ("LINEBELOW", (0, 0), (-1, -1), 0.5, RULE),
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                ("TEXTCOLOR", (0, 0), (-1, -1), INK),
            ]
        )
    )
    return table


def _daily_chart(data: reports.Json) -> Drawing:
    """Daily actual spend against the all-premium baseline, as grouped bars."""
    width, height = WIDTH, 62 * mm
    drawing = Drawing(width, height)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 40, 30, width - 60, height - 50
    # Floats only to place bars on the page; every figure printed comes from the Decimal strings.
    chart.data = [
        [float(Decimal(d["baseline_cost"])) for d in data["daily"]],
        [float(Decimal(d["cost"])) for d in data["daily"]],
    ]
    chart.categoryAxis.categoryNames = [d["day"][-2:] for d in data["daily"]]
    chart.categoryAxis.labels.fontSize = 6
    chart.valueAxis.valueMin = 0
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.labelTextFormat = _dollar_tick
    chart.bars[0].fillColor, chart.bars[1].fillColor = BASELINE, ACTUAL
    chart.bars.strokeColor = None
    chart.groupSpacing = 2
    legend = Legend()
    legend.x, legend.y = 40, height - 4
    legend.fontSize, legend.columnMaximum, legend.deltax, legend.alignment = 8, 1, 150, "right"
    legend.strokeColor = None
    legend.colorNamePairs = [(BASELINE, "Daily all-premium baseline"), (ACTUAL, "Daily actual spend")]
    drawing.add(chart)
    drawing.add(legend)
    return drawing


def _dollar_tick(value: float) -> str:
    return f"${value:,.2f}"


def _footer(canvas: Any, doc: Any) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 7)
    canvas.setFillColor(colors.HexColor("#5b6474"))
    canvas.drawString(MARGIN, 8 * mm, "CascadeOps finance report")
    canvas.drawRightString(PAGE[0] - MARGIN, 8 * mm, f"Page {doc.page}")
    canvas.restoreState()
