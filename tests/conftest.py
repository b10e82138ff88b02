"""Shared helpers: the real sheets, parsed once per test session."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tracking287g.normalize import NormalisedRow, normalize_row
from tracking287g.sheets import ParsedSheet, parse_workbook

FIXTURES = Path(__file__).parent / "fixtures"
SHEETS = FIXTURES / "ice" / "sheets"

LATEST_PARTICIPATING = "sheets_20250719_151637/participatingAgencies07182025pm.xlsx"
LATEST_PENDING = "sheets_20250719_151637/pendingAgencies07182025pm.xlsx"
EARLIEST_PARTICIPATING = "sheets_20250519_024922/participatingAgencies05162025am.xlsx"


@functools.cache
def parsed_sheet(relative: str) -> ParsedSheet:
    list_name = "pending" if "pending" in relative.lower() else "participating"
    return parse_workbook((SHEETS / relative).read_bytes(), list_name)


def sheet_row(relative: str, row_number: int) -> NormalisedRow:
    """A real row of a real sheet, normalised, by its row number in Excel."""
    for raw in parsed_sheet(relative).rows:
        if raw.row_number == row_number:
            return normalize_row(raw.values, raw.links)
    raise LookupError(f"{relative} has no data row {row_number}")


@pytest.fixture
def latest_rows() -> list[NormalisedRow]:
    return [normalize_row(r.values, r.links) for r in parsed_sheet(LATEST_PARTICIPATING).rows]
