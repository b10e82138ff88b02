"""Workbook bytes -> raw rows with their hyperlinks. Pure functions, no Scrapy.

openpyxl is used in its normal (not read-only) mode: read-only mode and pandas drop cell
hyperlinks, which is where ICE keeps the agreement links.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

import openpyxl
from openpyxl.cell.cell import MergedCell

LISTS = ("participating", "pending")

# Header text (upper case, spaces folded) -> field. ICE changes case, spacing and order.
HEADER_ALIASES = {
    "STATE": "state",
    "LAW ENFORCEMENT AGENCY": "agency",
    "AGENCY": "agency",
    "AGENCY NAME": "agency",
    "TYPE": "agency_type",
    "AGENCY TYPE": "agency_type",
    "COUNTY": "county",
    "SUPPORT TYPE": "model",
    "MODEL": "model",
    "287(G) MODEL": "model",
    "SIGNED": "signed",
    "DATE SIGNED": "signed",
    "SIGNED DATE": "signed",
    "MOA": "moa",
    "MOA LINK": "moa",
    "AGREEMENT": "moa",
    "ADDENDUM": "addendum",
    "ADDENDA": "addendum",
    "ADDENDUM LINK": "addendum",
}

REQUIRED_FIELDS = {
    "participating": ("state", "agency", "model", "signed", "moa"),
    "pending": ("state", "agency", "model"),
}

# How far down to look for the header row (ICE has put titles above it).
_HEADER_SEARCH_ROWS = 25


class SheetError(ValueError):
    """The bytes are not a usable 287(g) sheet; the message says what was found."""


@dataclass
class RawRow:
    """One data row as it stands in the sheet, by field."""

    row_number: int
    values: dict[str, object]
    links: dict[str, str]


@dataclass
class ParsedSheet:
    worksheet: str
    header_row: int
    columns: dict[str, str]  # field -> header text as published
    missing_optional: list[str]
    rows: list[RawRow]


def describe_bytes(body: bytes) -> str:
    """A short description of what a body is, for error messages."""
    head = body[:512].lstrip().lower()
    if not body:
        return "an empty file"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        title = re.search(rb"<title[^>]*>(.*?)</title>", body[:4096], re.I | re.S)
        name = title.group(1).decode("utf-8", "replace").strip()[:80] if title else ""
        return f"an HTML page{f' titled {name!r}' if name else ''}"
    if body.startswith(b"%PDF"):
        return "a PDF"
    if body.startswith(b"PK"):
        return "a zip archive"
    return f"{len(body)} bytes starting {body[:16]!r}"


def is_workbook(body: bytes) -> bool:
    return body.startswith(b"PK\x03\x04")


def _header_key(value: object) -> str:
    return re.sub(r"\s+", " ", str(value or "")).strip().upper().rstrip(":")


def _find_header(rows: list[tuple], list_name: str) -> tuple[int, dict[str, int], dict[str, str]]:
    for index, row in enumerate(rows[:_HEADER_SEARCH_ROWS]):
        positions: dict[str, int] = {}
        names: dict[str, str] = {}
        for col, value in enumerate(row):
            field = HEADER_ALIASES.get(_header_key(value))
            if field and field not in positions:
                positions[field] = col
                names[field] = _header_key(value)
        if "state" in positions and "agency" in positions:
            return index, positions, names
    raise SheetError(
        f"expected a {list_name} sheet with STATE and LAW ENFORCEMENT AGENCY headers in the "
        f"first {_HEADER_SEARCH_ROWS} rows, found none; check the published sheet's layout"
    )


def _fill_merged(ws) -> None:
    """Give every cell of a merged range the value of its top-left cell."""
    for merged in list(ws.merged_cells.ranges):
        top_left = ws.cell(merged.min_row, merged.min_col)
        value, link = top_left.value, top_left.hyperlink
        ws.unmerge_cells(str(merged))
        for row in ws.iter_rows(min_row=merged.min_row, max_row=merged.max_row,
                                min_col=merged.min_col, max_col=merged.max_col):
            for cell in row:
                cell.value = value
                if link is not None and cell.hyperlink is None:
                    cell.hyperlink = link.target or link.location


def parse_workbook(body: bytes, list_name: str) -> ParsedSheet:
    """Read a participating or pending sheet; raise SheetError when it is not one."""
    if not is_workbook(body):
        raise SheetError(
            f"expected an Excel workbook (a zip starting with 'PK'), got {describe_bytes(body)}; "
            "ICE may be serving an error page: retry later"
        )
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(body), data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as exc:
        raise SheetError(f"expected a readable Excel workbook, openpyxl failed: {exc}") from exc

    errors = []
    for ws in workbook.worksheets:
        if ws.max_row > 1 and ws.merged_cells.ranges:
            _fill_merged(ws)
        cells = list(ws.iter_rows())
        values = [tuple(cell.value for cell in row) for row in cells]
        try:
            header_index, positions, names = _find_header(values, list_name)
        except SheetError as exc:
            errors.append(exc)
            continue
        missing = [f for f in REQUIRED_FIELDS[list_name] if f not in positions]
        if missing:
            raise SheetError(
                f"expected columns {', '.join(f.upper() for f in missing)} in the {list_name} "
                f"sheet (worksheet {ws.title!r}), found only {', '.join(names.values())}; "
                "ICE changed the layout: update HEADER_ALIASES in tracking287g/sheets.py"
            )
        optional = [f for f in ("agency_type", "county", "signed", "moa", "addendum")
                    if f not in positions and f not in REQUIRED_FIELDS[list_name]]
        rows = []
        for row_cells in cells[header_index + 1:]:
            row_values = {f: row_cells[c].value if c < len(row_cells) else None
                          for f, c in positions.items()}
            if all(v is None or (isinstance(v, str) and not v.strip())
                   for v in row_values.values()):
                continue  # blank rows (ICE's sheets end with hundreds of them)
            links = {}
            for f in ("moa", "addendum"):
                if f in positions and positions[f] < len(row_cells):
                    cell = row_cells[positions[f]]
                    link = None if isinstance(cell, MergedCell) else cell.hyperlink
                    if link is not None and (link.target or "").strip():
                        links[f] = link.target.strip()
            rows.append(RawRow(row_cells[0].row, row_values, links))
        return ParsedSheet(ws.title, header_index + 1, names, optional, rows)
    if errors:
        raise errors[0]
    raise SheetError(f"expected a {list_name} sheet, the workbook has no worksheets")
