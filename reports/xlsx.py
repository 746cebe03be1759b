"""Helpers for xlsx working papers: one sheet per table, amounts stored as numbers in the
accountant's ``#,##0.00`` format (negatives with a minus sign), columns as wide as their
longest value (a CJK character counted as two) and long text wrapped, a frozen header row,
totals written as SUM formulas over the rows they add up, and a byte-identical file for the
same content.

openpyxl's own ``save`` stamps the workbook's modified time with the wall clock and writes
each zip member with the current time, so neither is used: the workbook is written through
``ExcelWriter`` into memory and then re-zipped with every member dated at the report's as-of
date and fixed permissions.
"""

from __future__ import annotations

import datetime as dt
import io
import unicodedata
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE as _ILLEGAL
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.writer.excel import ExcelWriter

AMOUNT_FORMAT = "#,##0.00"
RATE_FORMAT = "0.00"
INTEGER_FORMAT = "0"
DATE_FORMAT = "yyyy-mm-dd"
HEADER_FILL = PatternFill("solid", fgColor="E6E6E6")
TOTAL_FILL = PatternFill("solid", fgColor="F2F2F2")
WIDTH_MIN = 6
WIDTH_MAX = 72  # wider text is wrapped: a 30-character Chinese name (60) still fits on one line
WIDTH_PADDING = 2


@dataclass(frozen=True, slots=True)
class SheetRow:
    """One row of a sheet.

    Attributes:
      values: cell values in column order: str, int (fen for amount columns), Decimal (rates,
        already in percent), dt.date, or None for an empty cell.
      role: "item", "subtotal" or "total". In a subtotal row, an amount cell holding a number
        is written as a SUM formula over the item rows of the same ``group`` when every one of
        them holds a number (the value given must equal that sum), else as the value given; a
        total row does the same over every item row.
      group: the group a subtotal closes, or the group an item belongs to.
    """

    values: tuple
    role: str = "item"
    group: str | None = None


def new_workbook() -> Workbook:
    wb = Workbook()
    wb.remove(wb.active)
    return wb


def add_sheet(
    wb: Workbook,
    title: str,
    headers: Sequence[str],
    kinds: Sequence[str],
    rows: Sequence[SheetRow],
    *,
    notes: Sequence[str] = (),
) -> None:
    """Write one table on its own sheet: header row 1 (frozen), then the rows, then notes
    below a blank row. ``kinds`` per column: text, long, amount, rate, int or date."""
    ws = wb.create_sheet(title=title[:31])
    bold = Font(bold=True)
    for column, header in enumerate(headers, start=1):
        cell = ws.cell(row=1, column=column)
        put(cell, header.replace("\n", " "))
        cell.font = bold
        cell.fill = HEADER_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
    ws.freeze_panes = "A2"
    first = 2
    item_rows: dict[str | None, list[int]] = {}
    for offset, row in enumerate(rows):
        if row.role == "item":
            item_rows.setdefault(row.group, []).append(first + offset)
    every_item = sorted(r for rows_ in item_rows.values() for r in rows_)
    for offset, row in enumerate(rows):
        number = first + offset
        covers = item_rows.get(row.group, []) if row.role == "subtotal" else every_item if row.role == "total" else []
        for column, (value, kind) in enumerate(zip(row.values, kinds), start=1):
            cell = ws.cell(row=number, column=column)
            if kind == "amount" and row.role != "item" and isinstance(value, int) and covers and _all_numbers(rows, first, covers, column - 1):
                # The formula must say what the PDF prints; a mismatch is a bug in the caller.
                assert value == sum(rows[r - first].values[column - 1] for r in covers), (title, row)
                cell.value = f"=SUM({_ranges(get_column_letter(column), covers)})"
            else:
                put(cell, _cell_value(value, kind))
            if kind == "amount":
                cell.number_format = AMOUNT_FORMAT
            elif kind == "rate":
                cell.number_format = RATE_FORMAT
            elif kind == "int":
                cell.number_format = INTEGER_FORMAT
            elif kind == "date":
                cell.number_format = DATE_FORMAT
            elif kind == "long":
                cell.alignment = Alignment(wrap_text=True, vertical="top")
            if row.role != "item":
                cell.font = bold
                cell.fill = TOTAL_FILL
    fit_columns(ws, last_row=first + len(rows) - 1, shown=lambda r, c: _shown(rows[r - first].values[c - 1], kinds[c - 1]))
    if notes:
        # Notes go below the table after the widths are fitted: a note runs on over the empty
        # cells to its right instead of widening the first column.
        line = first + len(rows) + 1
        for note in notes:
            put(ws.cell(row=line, column=1), note)
            line += 1


def put(cell, value) -> None:
    """Write ``value`` into ``cell``; text is always a string cell, never a formula.

    openpyxl takes any str that starts with "=" for a formula, so a party named
    ``=HYPERLINK("http://evil","click")`` would become a live link (and ``=cmd|' /C calc'!A0``
    a DDE call) in the reader's spreadsheet. Every writer of this package writes text
    through here; only the SUM formulas of ``add_sheet`` are written as formulas. Control
    characters, which a workbook cannot hold (openpyxl refuses them), are written as visible
    escapes (``\\x1b``) instead of failing the report.
    """
    if isinstance(value, str):
        value = _ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
        cell.value = value
        cell.data_type = "s"
    else:
        cell.value = value


def append_row(ws, values: Sequence) -> None:
    """``ws.append(values)`` with every cell written through ``put``."""
    row = ws.max_row + 1 if ws.max_row > 1 or ws.cell(row=1, column=1).value is not None else 1
    for column, value in enumerate(values, start=1):
        put(ws.cell(row=row, column=column), value)


def display_width(text: str) -> int:
    """Columns ``text`` takes on screen: two for a wide (CJK) character, one otherwise; the
    longest line of a multi-line text."""
    return max((sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line) for line in text.split("\n")), default=0)


def shown_text(value, number_format: str) -> str:
    """``value`` as a spreadsheet shows it in ``number_format`` (the formats these helpers use)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime) and number_format == DATE_FORMAT:  # a date read back from a file
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        if number_format == AMOUNT_FORMAT:
            return f"{Decimal(value):,.2f}"
        if number_format == RATE_FORMAT:
            return f"{Decimal(value):.2f}"
        return str(value)
    return str(value)


def _shown(value, kind: str) -> str:
    formats = {"amount": AMOUNT_FORMAT, "rate": RATE_FORMAT, "int": INTEGER_FORMAT}
    return shown_text(_cell_value(value, kind), formats.get(kind, "General"))


def fit_columns(ws, *, last_row: int, shown=None) -> None:
    """Make each column as wide as its widest cell in rows 1..``last_row`` (the header
    included, a CJK character counted as two), between WIDTH_MIN and WIDTH_MAX; a cell wider
    than WIDTH_MAX is wrapped instead. ``shown(row, column)`` gives a data cell's displayed text
    when the cell holds a formula; by default it is read from the cell."""
    for column_cells in ws.iter_cols(min_row=1, max_row=last_row):
        column = column_cells[0].column
        texts = []
        for cell in column_cells:
            text = shown(cell.row, column) if shown is not None and cell.row > 1 else shown_text(cell.value, cell.number_format)
            texts.append((cell, text))
        widest = max((display_width(text) for _, text in texts), default=0)
        ws.column_dimensions[get_column_letter(column)].width = max(WIDTH_MIN, min(WIDTH_MAX, widest + WIDTH_PADDING))
        for cell, text in texts:
            if display_width(text) + WIDTH_PADDING > WIDTH_MAX and not cell.alignment.wrap_text:
                cell.alignment = Alignment(wrap_text=True, vertical="top", horizontal=cell.alignment.horizontal)


def _all_numbers(rows: Sequence[SheetRow], first: int, covers: list[int], index: int) -> bool:
    return all(isinstance(rows[r - first].values[index], int) for r in covers)


def _ranges(letter: str, numbers: list[int]) -> str:
    """Row numbers as the fewest ranges: [2,3,4,7] -> "C2:C4,C7"."""
    parts, start, prev = [], numbers[0], numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"{letter}{start}:{letter}{prev}" if prev != start else f"{letter}{start}")
        if n is not None:
            start = prev = n
    return ",".join(parts)


def _cell_value(value, kind: str):
    if value is None:
        return None
    if kind == "amount":
        if isinstance(value, str):  # words where there is no amount ("未按科目批复"), never a number as text
            return value
        if not isinstance(value, int):
            raise TypeError(f"an amount cell takes whole fen (int), got {value!r}")
        return Decimal(value).scaleb(-2)
    if kind == "rate":
        return Decimal(value)
    return value


def key_value_sheet(wb: Workbook, title: str, pairs: Sequence[tuple[str, object]], *, headers=("项目 Item", "内容 Value")) -> None:
    """A two-column sheet of labelled facts (all text)."""
    add_sheet(wb, title, list(headers), ["text", "long"], [SheetRow((k, "" if v is None else str(v))) for k, v in pairs])


def save_workbook(
    wb: Workbook,
    path: Path,
    *,
    as_of: dt.date,
    title: str,
    subject: str,
    keywords: str,
) -> None:
    """Write ``wb`` to ``path`` with fixed properties and zip timestamps at the as-of date."""
    stamp = dt.datetime(as_of.year, as_of.month, as_of.day)
    props = wb.properties
    props.creator = "jiebang"
    props.lastModifiedBy = "jiebang"
    props.title = title
    props.subject = subject
    props.keywords = keywords
    props.created = stamp
    props.modified = stamp
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(wb, archive).save()
    fixed = io.BytesIO()
    date_time = (max(as_of.year, 1980), as_of.month, as_of.day, 0, 0, 0)
    with zipfile.ZipFile(raw) as source, zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=date_time)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            member.create_system = 3
            target.writestr(member, source.read(info.filename))
    path.write_bytes(fixed.getvalue())
