"""Workbooks that are not what they should be: empty, huge, formulas, merged cells."""

from __future__ import annotations

import io
import re
import zipfile

import openpyxl

from tests.mirror import SHEETS, MirrorServer, Route, rewrite_workbook
from tests.test_crawl import exports_of, failure_line, read_csv, run_crawl
from tracking287g.sheets import parse_workbook

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


def with_formula(body: bytes) -> bytes:
    """A2 (STATE) as a formula with its computed value, as Excel saves it."""
    source = zipfile.ZipFile(io.BytesIO(body))
    xml = source.read("xl/worksheets/sheet1.xml").decode()
    xml, count = re.subn(r'<c r="A2"([^>]*?)(?: t="s")?>\s*<v>\d+</v>\s*</c>',
                         r'<c r="A2"\1 t="str"><f>UPPER("alabama")</f><v>ALABAMA</v></c>', xml)
    assert count == 1
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = xml if info.filename == "xl/worksheets/sheet1.xml" else source.read(info)
            target.writestr(info, data)
    return out.getvalue()


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
