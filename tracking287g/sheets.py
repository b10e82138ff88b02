"""Workbook bytes -> raw rows with their hyperlinks. Pure functions, no Scrapy.

Cell values come from python-calamine (a Rust reader, about 15 times faster than openpyxl's
read-only mode), given the types openpyxl gives. Hyperlinks, which is where ICE keeps the
agreement links, and error cells (#N/A), which calamine reads as empty, come from the
worksheet's XML. openpyxl reads what calamine should not: its read-only mode a worksheet too
large for calamine's dense grid or a file calamine cannot read, its normal mode a worksheet
with merged cells (every cell of a merged range gets the range's value and link).
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import zipfile
from dataclasses import dataclass
from xml.etree.ElementTree import ParseError

import python_calamine

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


_CELL = re.compile(r"\$?([A-Z]{1,3})\$?([0-9]+)")


def _cell(reference: str) -> tuple[int, int]:
    """'D11' -> (11, 4): row and column, from 1."""
    match = _CELL.fullmatch(reference.strip().upper())
    if not match:
        raise ValueError(f"expected a cell reference like D11, found {reference!r}")
    return int(match.group(2)), _column(match.group(1))


def _column(letters: str) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def _attributes(tag: str) -> dict[str, str]:
    return {name.split(":")[-1]: html.unescape(value)
            for name, value in re.findall(r'([\w:]+)="([^"]*)"', tag)}


def _relationships(archive: zipfile.ZipFile, part: str) -> dict[str, str]:
    """A .rels part's relationship id -> target (empty when the part is absent)."""
    try:
        xml = archive.read(part).decode("utf-8")
    except KeyError:
        return {}
    return {attributes.get("Id"): attributes.get("Target", "")
            for attributes in map(_attributes, re.findall(r"<Relationship\b[^>]*>", xml))}


def _worksheet_parts(archive: zipfile.ZipFile) -> list[tuple[str, str]]:
    """The workbook's worksheets as (name, XML path), in the workbook's order."""
    relations = _relationships(archive, "xl/_rels/workbook.xml.rels")
    parts = []
    for tag in re.findall(r"<sheet\b[^>]*>", archive.read("xl/workbook.xml").decode("utf-8")):
        attributes = _attributes(tag)
        target = relations.get(attributes.get("id"), "")
        part = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        if "/worksheets/" in part:  # not a chart sheet
            parts.append((attributes.get("name", ""), part))
    return parts


def _hyperlinks(archive: zipfile.ZipFile, part: str, xml: str) -> dict[tuple[int, int], str]:
    """(row, column) -> hyperlink target, ranges expanded, read from the sheet's XML."""
    folder, name = part.rsplit("/", 1)
    targets = _relationships(archive, f"{folder}/_rels/{name}.rels")
    links = {}
    for tag in re.findall(r"<hyperlink\b[^>]*>", xml):
        attributes = _attributes(tag)
        target = targets.get(attributes.get("id"), "")
        if not target.strip():
            continue
        first, _, last = attributes["ref"].partition(":")
        (min_row, min_col), (max_row, max_col) = _cell(first), _cell(last or first)
        for row in range(min_row, max_row + 1):
            for col in range(min_col, max_col + 1):
                links[(row, col)] = target.strip()
    return links


def _error_cells(xml: str) -> dict[tuple[int, int], str]:
    """(row, column) -> the text of an error cell (#N/A and the like)."""
    errors = {}
    for attributes, content in re.findall(r'<c\b([^>]*\bt="e"[^>]*?)(?<!/)>(.*?)</c>', xml):
        value = re.search(r"<v>([^<]*)</v>", content)
        reference = _attributes(attributes).get("r")
        if value and reference:
            errors[_cell(reference)] = html.unescape(value.group(1))
    return errors


def _as_openpyxl(value):
    """A calamine value as openpyxl gives it, so either reader yields the same rows."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # Excel writes whole numbers without a decimal point
    if value == "":
        return None  # an empty cell
    if type(value) is dt.date:
        return dt.datetime.combine(value, dt.time())
    return value


# calamine holds a worksheet as a dense grid from A1 to its last cell: one stray cell far
# off (XFD1048576) would ask for billions. Larger worksheets are read by openpyxl, streaming.
_MAX_CALAMINE_CELLS = 2_000_000


def _extent(xml: str) -> int:
    """How many cells a dense grid of the worksheet holds (rows times columns)."""
    cells = re.findall(r'<c\b[^>]*?\br="\$?([A-Za-z]+)\$?([0-9]+)"', xml)
    rows = max((int(row) for _, row in cells), default=0)
    rows = max(rows, *map(int, re.findall(r'<row\b[^>]*?\br="([0-9]+)"', xml)), 0)
    columns = max(map(_column, {letters for letters, _ in cells}), default=0)
    return rows * columns


def _calamine_values(body: bytes, parts, xmls) -> list[list[tuple]] | None:
    """Each worksheet's rows from calamine, typed as openpyxl types them; None when
    calamine cannot read the workbook or a worksheet is too large for it."""
    if any(_extent(xml) > _MAX_CALAMINE_CELLS for xml in xmls):
        return None
    try:
        workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(body))
        grids = [workbook.get_sheet_by_name(name).to_python(skip_empty_area=False)
                 for name, _ in parts]
        workbook.close()
    except python_calamine.CalamineError:
        return None
    except BaseException as exc:
        # A Rust panic on a malformed file (pyo3's PanicException is a BaseException).
        if type(exc).__name__ != "PanicException":
            raise
        return None
    result = []
    for xml, grid in zip(xmls, grids, strict=True):
        rows = [[_as_openpyxl(value) for value in row] for row in grid]
        for (row, col), text in _error_cells(xml).items():
            if row <= len(rows) and col <= len(rows[row - 1]):
                rows[row - 1][col - 1] = text
        result.append([tuple(row) for row in rows])
    return result


def _openpyxl_values(body: bytes) -> list[list[tuple]]:
    """Each worksheet's rows from openpyxl's read-only mode: streaming, and slower."""
    import openpyxl  # only here: importing it costs a tenth of a second on every crawl

    workbook = openpyxl.load_workbook(io.BytesIO(body), read_only=True, data_only=True)
    result = []
    for ws in workbook.worksheets:
        ws.reset_dimensions()  # ICE's files can carry wrong dimensions
        result.append(list(ws.iter_rows(values_only=True)))
    workbook.close()
    return result


def _read_fast(body: bytes):
    """Worksheets as (title, first row number, value rows, links); the links, which
    both readers drop, from the XML. None when a worksheet has merged cells, which need
    openpyxl's normal mode."""
    archive = zipfile.ZipFile(io.BytesIO(body))
    parts = _worksheet_parts(archive)
    xmls = [archive.read(part).decode("utf-8") for _, part in parts]
    if any("<mergeCell " in xml for xml in xmls):
        return None
    values = _calamine_values(body, parts, xmls) or _openpyxl_values(body)
    return [(name, 1, rows, _hyperlinks(archive, part, xml))
            for (name, part), xml, rows in zip(parts, xmls, values, strict=True)]


def _read_full(body: bytes):
    """The same, with openpyxl's normal mode: merged cells give every cell their value."""
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(body), data_only=True)
    result = []
    for ws in workbook.worksheets:
        merged = {}
        for cells in ws.merged_cells.ranges:
            top_left = ws.cell(cells.min_row, cells.min_col)
            for row in range(cells.min_row, cells.max_row + 1):
                for col in range(cells.min_col, cells.max_col + 1):
                    merged[(row, col)] = top_left
        rows, links = [], {}
        for row_cells in ws.iter_rows():
            values = []
            for cell in row_cells:
                source = merged.get((cell.row, cell.column), cell)
                values.append(source.value)
                link = source.hyperlink  # a merged cell's is its top-left cell's
                if link is not None and (link.target or "").strip():
                    links[(cell.row, cell.column)] = link.target.strip()
            rows.append(tuple(values))
        result.append((ws.title, ws.min_row, rows, links))
    return result


def parse_workbook(body: bytes, list_name: str) -> ParsedSheet:
    """Read a participating or pending sheet; raise SheetError when it is not one."""
    if not is_workbook(body):
        raise SheetError(
            f"expected an Excel workbook (a zip starting with 'PK'), got {describe_bytes(body)}; "
            "ICE may be serving an error page: retry later"
        )
    try:
        worksheets = _read_fast(body) or _read_full(body)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError, ParseError) as exc:
        raise SheetError(f"expected a readable Excel workbook, could not read it: {exc}; the "
                         "file is damaged or not a workbook: retry later") from exc

    errors = []
    for title, first_row, values, links in worksheets:
        try:
            header_index, positions, names = _find_header(values, list_name)
        except SheetError as exc:
            errors.append(exc)
            continue
        missing = [f for f in REQUIRED_FIELDS[list_name] if f not in positions]
        if missing:
            raise SheetError(
                f"expected columns {', '.join(f.upper() for f in missing)} in the {list_name} "
                f"sheet (worksheet {title!r}), found only {', '.join(names.values())}; "
                "ICE changed the layout: update HEADER_ALIASES in tracking287g/sheets.py"
            )
        optional = [f for f in ("agency_type", "county", "signed", "moa", "addendum")
                    if f not in positions and f not in REQUIRED_FIELDS[list_name]]
        rows = []
        for index in range(header_index + 1, len(values)):
            row = values[index]
            row_values = {f: row[c] if c < len(row) else None for f, c in positions.items()}
            if all(v is None or (isinstance(v, str) and not v.strip())
                   for v in row_values.values()):
                continue  # blank rows (ICE's sheets end with hundreds of them)
            number = first_row + index
            row_links = {f: links[(number, positions[f] + 1)] for f in ("moa", "addendum")
                         if f in positions and (number, positions[f] + 1) in links}
            rows.append(RawRow(number, row_values, row_links))
        return ParsedSheet(title, first_row + header_index, names, optional, rows)
    if errors:
        raise errors[0]
    raise SheetError(f"expected a {list_name} sheet, the workbook has no worksheets")
