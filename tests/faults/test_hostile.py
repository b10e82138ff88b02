"""Hostile input in ICE's sheet: traversal names, formula cells, links to elsewhere."""

from __future__ import annotations

import io
import json
import os
import sqlite3

import openpyxl

from tests.mirror import SHEETS, MirrorServer, Route, rewrite_workbook
from tests.test_crawl import read_csv, run_crawl

PARTICIPATING = SHEETS / "sheets_20250519_024922" / "participatingAgencies05162025am.xlsx"
SHEET_PATH = "/doclib/about/offices/ero/287g/participatingAgencies05162025am.xlsx"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

HOSTILE_AGENCIES = [
    "../../../../tmp/tracking287g-escape",
    "/etc/cron.d/evil",
    "..",
    "CON",
    "C:\\Windows\\System32",
    "A" * 300,
    '=HYPERLINK("http://evil.example.com","click")',
    "+1-555-0100",
    "@SUM(A1:A9)",
    "-2+3",
]
HOSTILE_LINKS = ["javascript:alert(1)", "file:///etc/passwd", "ftp://www.ice.gov/a.pdf",
                 "https://evil.example.com/287gMOA/x.pdf"]


def hostile_sheet(base_url: str) -> bytes:
    workbook = openpyxl.load_workbook(PARTICIPATING)
    sheet = workbook.worksheets[0]
    linked = [row for row in sheet.iter_rows(min_row=2) if row[6].hyperlink]
    for row, agency in zip(linked, HOSTILE_AGENCIES, strict=False):
        row[1].value = agency  # keeps its real document, stored under the hostile name
        row[1].data_type = "s"  # text that looks like a formula, not a formula
    linked[len(HOSTILE_AGENCIES)][0].value = "../../ETC"
    for row, link in zip(linked[len(HOSTILE_AGENCIES) + 1:], HOSTILE_LINKS, strict=False):
        row[6].hyperlink = link
    out = io.BytesIO()
    workbook.save(out)
    return rewrite_workbook(out.getvalue(), base_url)


def test_hostile_sheet(tmp_path):
    store = tmp_path / "archive"
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        server.routes[SHEET_PATH] = Route(hostile_sheet(server.url), XLSX)
        result = run_crawl(server, store)
        requested = server.requested()
    assert result.returncode == 0, result.stderr[-3000:]

    # Every file is inside the archive root, and nothing was written beside it.
    root = os.path.realpath(store)
    for folder, _, files in os.walk(store):
        for name in files:
            assert os.path.realpath(os.path.join(folder, name)).startswith(root + os.sep)
            assert len(name.encode()) <= 120
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive"]
    states = {p.name for p in (store / "agreements").iterdir()}
    assert "_.._ETC" in states
    agencies = {p.name for p in (store / "agreements").glob("*/*")}
    assert {"_.._.._.._tmp_tracking287g-escape", "_etc_cron.d_evil", "_CON",
            "C__Windows_System32"} <= agencies
    assert any(name.startswith("AAAA") and len(name.encode()) <= 120 for name in agencies)

    # Links to other schemes and hosts are reported, never fetched.
    failures = {row["url"]: row["reason"] for row in read_csv(store / "data" / "failures.csv")}
    assert failures["https://evil.example.com/287gMOA/x.pdf"] == (
        "not fetched: host 'evil.example.com' is neither ICE's nor the start URL's (add it to "
        "DOCUMENT_HOSTS if it is a real source)")
    for link in HOSTILE_LINKS[:3]:
        assert failures[link] == f"not fetched: {link!r} is not an http(s) URL"
    assert all(path.startswith("/") for path in requested)  # only the mirror, by path

    # Spreadsheet formulas are neutralised in the CSVs; the database keeps the raw text.
    rows = {row["agency_raw"].lstrip("'"): row
            for row in read_csv(store / "data" / "participating.csv")}
    for agency in HOSTILE_AGENCIES[6:]:
        assert rows[agency]["agency"] == "'" + agency
        assert rows[agency]["agency_raw"] == "'" + agency
    with sqlite3.connect(store / "tracking287g.sqlite") as db:
        raw = [json.loads(data)["raw"]["agency"] for (data,) in db.execute(
            "SELECT data FROM snapshot_rows")]
    assert set(HOSTILE_AGENCIES) <= set(raw)
