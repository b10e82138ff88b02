"""Workbooks that are not what they should be: empty, huge, formulas, merged cells."""

from __future__ import annotations

import io
import re
import zipfile

import openpyxl
import pytest

from tests.mirror import SHEETS, MirrorServer, Route, rewrite_workbook
from tests.test_crawl import exports_of, failure_line, read_csv, run_crawl
from tracking287g.sheets import SheetError, parse_workbook

PARTICIPATING = SHEETS / "sheets_20250519_024922" / "participatingAgencies05162025am.xlsx"
SHEET_PATH = "/doclib/about/offices/ero/287g/participatingAgencies05162025am.xlsx"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def workbook_bytes(workbook) -> bytes:
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def test_a_workbook_with_no_rows_is_held_as_suspect(tmp_path):
    workbook = openpyxl.load_workbook(PARTICIPATING)
    workbook.worksheets[0].delete_rows(2, workbook.worksheets[0].max_row)
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        server.routes[SHEET_PATH] = Route(workbook_bytes(workbook), XLSX)
        result = run_crawl(server, tmp_path)
    assert result.returncode == 1
    assert failure_line(result) == (
        "tracking287g: crawl failed: held the new sheet as suspect: participating: the "
        "participating list has no rows; the raw sheet is archived and recorded as a suspect "
        "snapshot, statuses and exports are unchanged; check ICE's page, and if the list "
        "really changed this much, rerun with -s HISTORY_SUSPECT_SHRINK=1")
    assert exports_of(tmp_path) == {}
    assert len(list((tmp_path / "sheets").rglob("*.xlsx"))) == 1


def test_a_workbook_with_50000_rows(tmp_path):
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(["STATE", "LAW ENFORCEMENT AGENCY", "TYPE", "COUNTY", "SUPPORT TYPE",
                  "SIGNED", "MOA"])
    states = ["FLORIDA", "TEXAS", "GEORGIA", "OHIO"]
    for number in range(50_000):
        sheet.append([states[number % 4], f"Agency {number} Police Department", "Municipality",
                      "#N/A", "Task Force Model ", "6/30/2025", "link pending"])
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        server.routes[SHEET_PATH] = Route(workbook_bytes(workbook), XLSX)
        result = run_crawl(server, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_csv(tmp_path / "data" / "participating.csv")
    assert len(rows) == 50_000
    assert rows[-1]["agency"] == "Agency 49999 Police Department"
    assert {r["model"] for r in rows} == {"Task Force Model"}
    assert {r["state"]: int(r["participating"]) for r in
            read_csv(tmp_path / "data" / "counts.csv")} == dict.fromkeys(states, 12_500)


def with_sheet_xml(body: bytes, edit) -> bytes:
    """The workbook with its first worksheet's XML passed through edit(xml)."""
    source = zipfile.ZipFile(io.BytesIO(body))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = edit(data.decode()).encode()
            target.writestr(info, data)
    return out.getvalue()


def with_formula(body: bytes) -> bytes:
    """A2 (STATE) as a formula with its computed value, as Excel saves it."""
    def formula(xml: str) -> str:
        xml, count = re.subn(r'<c r="A2"([^>]*?)(?: t="s")?>\s*<v>\d+</v>\s*</c>',
                             r'<c r="A2"\1 t="str"><f>UPPER("alabama")</f><v>ALABAMA</v></c>',
                             xml)
        assert count == 1
        return xml

    return with_sheet_xml(body, formula)


def test_formula_cells_are_read_by_their_computed_value():
    rows = parse_workbook(with_formula(PARTICIPATING.read_bytes()), "participating").rows
    assert rows[0].values["state"] == "ALABAMA"


def test_merged_cells_in_a_crawl(tmp_path):
    workbook = openpyxl.load_workbook(PARTICIPATING)
    sheet = workbook.worksheets[0]
    first_state = sheet["A2"].value
    sheet.merge_cells("A2:A4")  # the second and third row lose their own STATE text
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        # Links rewritten to the mirror, as for every sheet it serves: no test touches ice.gov.
        server.routes[SHEET_PATH] = Route(rewrite_workbook(workbook_bytes(workbook), server.url),
                                          XLSX)
        result = run_crawl(server, tmp_path)
        assert not [p for p in server.requested() if p.startswith("http")]
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_csv(tmp_path / "data" / "failures.csv") == []
    rows = read_csv(tmp_path / "data" / "participating.csv")
    assert [r["state"] for r in rows[:3]] == [first_state] * 3


def test_a_stray_cell_in_the_last_row_and_column_is_read_without_a_huge_grid():
    # A cell typed far off once (XFD1048576) makes a dense reader ask for 17 billion cells
    # (calamine aborts the process); such a sheet is read streaming, row by row.
    def stray(xml):
        row = '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>'
        return xml.replace("</sheetData>", row + "</sheetData>")

    body = with_sheet_xml(PARTICIPATING.read_bytes(), stray)
    rows = parse_workbook(body, "participating").rows  # the test process survives it
    expected = parse_workbook(PARTICIPATING.read_bytes(), "participating").rows
    assert [(r.row_number, r.values, r.links) for r in rows] == [
        (r.row_number, r.values, r.links) for r in expected]  # the stray row has no data


def test_a_damaged_worksheet_is_a_one_line_sheet_error():
    body = with_sheet_xml(PARTICIPATING.read_bytes(), lambda xml: xml[:len(xml) // 2])
    with pytest.raises(SheetError, match=r"^expected a readable Excel workbook, could not "
                                         r"read it: .*; the file is damaged or not a workbook"):
        parse_workbook(body, "participating")
