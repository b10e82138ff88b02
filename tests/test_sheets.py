"""Reading ICE's workbooks: rows, headers, hyperlinks, and what is not a sheet."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile

import openpyxl
import pytest
import python_calamine

from tests.conftest import LATEST_PARTICIPATING, LATEST_PENDING, SHEETS, parsed_sheet
from tracking287g.sheets import SheetError, _read_fast, parse_workbook


def count_data_rows(relative: str) -> int:
    """Rows with any value below the header, counted independently of the parser."""
    ws = openpyxl.load_workbook(SHEETS / relative, read_only=True).worksheets[0]
    return sum(1 for row in ws.iter_rows(min_row=2, values_only=True)
               if any(v is not None and str(v).strip() for v in row))


@pytest.mark.parametrize("relative", sorted(
    str(p.relative_to(SHEETS)) for p in SHEETS.glob("*/*.xlsx")))
def test_every_real_sheet_parses_with_every_data_row(relative):
    parsed = parsed_sheet(relative)
    assert len(parsed.rows) == count_data_rows(relative)
    assert parsed.header_row == 1


def openpyxl_values(body: bytes) -> list[list]:
    """The first worksheet's values as openpyxl's read-only mode reads them, without the
    empty cells and rows at the ends (the two readers pad differently)."""
    ws = openpyxl.load_workbook(io.BytesIO(body), read_only=True, data_only=True).worksheets[0]
    ws.reset_dimensions()
    return trimmed(ws.iter_rows(values_only=True))


def trimmed(rows) -> list[list]:
    result = [list(row) for row in rows]
    for row in result:
        while row and row[-1] is None:
            row.pop()
    while result and not result[-1]:
        result.pop()
    return result


@pytest.mark.parametrize("relative", sorted(
    str(p.relative_to(SHEETS)) for p in SHEETS.glob("*/*.xlsx")))
def test_every_real_sheet_reads_the_values_openpyxl_reads(relative):
    # Values come from calamine; dates, whole numbers, empty and error cells (#N/A) must
    # come out as openpyxl gives them, or normalisation and history would see changes.
    body = (SHEETS / relative).read_bytes()
    [(_, first_row, values, _)] = _read_fast(body)
    assert first_row == 1
    assert trimmed(values) == openpyxl_values(body)


def test_values_of_every_type_read_as_openpyxl_reads_them():
    workbook = openpyxl.Workbook()
    ws = workbook.active
    ws.append(["text", 45700, 0.1 + 0.2, True, dt.datetime(2025, 5, 8),
               dt.datetime(2025, 5, 8, 13, 30), dt.time(12, 0), None, "=1+1"])
    ws.cell(2, 3).value = "#N/A"
    ws.cell(2, 3).data_type = "e"  # an error cell, as ICE's #N/A counties are
    ws.cell(4, 2).value = "after a blank row"
    out = io.BytesIO()
    workbook.save(out)
    [(_, _, values, _)] = _read_fast(out.getvalue())
    assert trimmed(values) == openpyxl_values(out.getvalue())
    assert values[1][2] == "#N/A" and values[0][1] == 45700 and type(values[0][1]) is int


def test_a_workbook_calamine_cannot_read_is_read_by_openpyxl(monkeypatch):
    def refuse(*args, **kwargs):
        raise python_calamine.CalamineError("unsupported")

    expected = parsed_sheet(LATEST_PARTICIPATING)
    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_filelike", refuse)
    parsed = parse_workbook((SHEETS / LATEST_PARTICIPATING).read_bytes(), "participating")
    assert [(r.row_number, r.values, r.links) for r in parsed.rows] == [
        (r.row_number, r.values, r.links) for r in expected.rows]


def test_blank_rows_at_the_end_are_skipped():
    ws = openpyxl.load_workbook(SHEETS / LATEST_PARTICIPATING).worksheets[0]
    assert ws.max_row == 906  # 73 blank rows follow the data
    parsed = parsed_sheet(LATEST_PARTICIPATING)
    assert len(parsed.rows) == 832
    assert parsed.rows[-1].row_number == 833


def test_latest_sheet_has_every_hyperlink_in_its_xml():
    with zipfile.ZipFile(SHEETS / LATEST_PARTICIPATING) as workbook:
        xml = workbook.read("xl/worksheets/sheet1.xml").decode()
    in_xml = {column: len(re.findall(rf'<hyperlink ref="{column}\d+"', xml)) for column in "GH"}
    assert in_xml == {"G": 603, "H": 39}
    parsed = parsed_sheet(LATEST_PARTICIPATING)
    assert sum("moa" in r.links for r in parsed.rows) == in_xml["G"]
    assert sum("addendum" in r.links for r in parsed.rows) == in_xml["H"]
    assert parsed.columns["addendum"] == "ADDENDUM"


def test_pending_sheet_has_no_documents():
    parsed = parsed_sheet(LATEST_PENDING)
    assert len(parsed.rows) == 26
    assert all(not row.links for row in parsed.rows)


def test_an_agency_listed_twice_keeps_both_rows():
    rows = parsed_sheet("sheets_20250703_151805/participatingAgencies07032025pm.xlsx").rows
    st_cloud = [r for r in rows if r.values["agency"] == "St. Cloud Police Department"]
    assert [r.row_number for r in st_cloud] == [549, 552]
    assert [r.values["moa"] for r in st_cloud] == ["link pending", "link"]


def rebuilt(relative: str, edit) -> bytes:
    workbook = openpyxl.load_workbook(SHEETS / relative)
    edit(workbook.worksheets[0])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def test_header_below_a_title_in_another_order_with_extra_columns():
    def edit(ws):
        ws.insert_rows(1, amount=3)
        ws["A1"] = "287(g) Participating Agencies as of 07/18/2025"
        ws.insert_cols(1)
        ws["A4"] = "Region"
        for cell in ws[4]:
            if cell.value == "SUPPORT TYPE":
                cell.value = " support  type "
        ws.move_range("H4:H836", cols=5, translate=True)  # SIGNED moves to the far right

    parsed = parse_workbook(rebuilt(LATEST_PARTICIPATING, edit), "participating")
    assert parsed.header_row == 4
    assert len(parsed.rows) == 832
    first = parsed.rows[0]
    assert first.values["state"] == "ALABAMA"
    assert first.values["model"] == "Warrant Service Officer"
    assert first.values["signed"] is not None


def with_range_hyperlink(body: bytes) -> tuple[bytes, str]:
    """Make the first MOA hyperlink span its row and the next one (whose link is removed)."""
    source = zipfile.ZipFile(io.BytesIO(body))
    sheet_xml = source.read("xl/worksheets/sheet1.xml").decode()
    match = re.search(r'<hyperlink ref="G(\d+)"', sheet_xml)
    row = int(match.group(1))
    sheet_xml = re.sub(rf'<hyperlink ref="G{row + 1}"[^>]*/>', "", sheet_xml)
    sheet_xml = sheet_xml.replace(f'<hyperlink ref="G{row}"', f'<hyperlink ref="G{row}:G{row + 1}"')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            target.writestr(info, sheet_xml if info.filename.endswith("sheet1.xml") else data)
    return out.getvalue(), row


def test_one_hyperlink_spanning_a_range_links_every_cell():
    body, row = with_range_hyperlink((SHEETS / LATEST_PARTICIPATING).read_bytes())
    rows = {r.row_number: r for r in parse_workbook(body, "participating").rows}
    assert rows[row].links["moa"] == rows[row + 1].links["moa"]
    assert rows[row].links["moa"].endswith(".pdf")


def test_merged_cells_give_every_row_the_value():
    def edit(ws):
        ws["A2"] = "ALABAMA"
        ws.merge_cells("A2:A4")

    rows = parse_workbook(rebuilt(LATEST_PARTICIPATING, edit), "participating").rows
    assert [r.values["state"] for r in rows[:3]] == ["ALABAMA"] * 3


def test_html_page_instead_of_a_workbook():
    page = b"<!DOCTYPE html><html><head><title>Access Denied</title></head><body></body></html>"
    with pytest.raises(SheetError) as error:
        parse_workbook(page, "participating")
    assert str(error.value) == (
        "expected an Excel workbook (a zip starting with 'PK'), got an HTML page titled "
        "'Access Denied'; ICE may be serving an error page: retry later")


def test_corrupt_zip():
    with pytest.raises(SheetError, match="expected a readable Excel workbook"):
        parse_workbook(b"PK\x03\x04" + b"\x00" * 100, "participating")


def test_missing_required_column_names_it():
    def edit(ws):
        ws.delete_cols(7)  # MOA

    with pytest.raises(SheetError) as error:
        parse_workbook(rebuilt(LATEST_PARTICIPATING, edit), "participating")
    assert "expected columns MOA in the participating sheet" in str(error.value)


def test_pending_sheet_needs_no_signed_or_moa_column():
    body = (SHEETS / LATEST_PENDING).read_bytes()
    assert len(parse_workbook(body, "pending").rows) == 26
    with pytest.raises(SheetError, match="expected columns SIGNED, MOA"):
        parse_workbook(body, "participating")


def test_workbook_without_a_header():
    def edit(ws):
        ws.delete_rows(1)

    with pytest.raises(SheetError, match="STATE and LAW ENFORCEMENT AGENCY headers"):
        parse_workbook(rebuilt(LATEST_PENDING, edit), "pending")
