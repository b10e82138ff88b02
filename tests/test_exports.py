"""Counts and charts, checked against what the original tracker published."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from concurrent.futures import BrokenExecutor, Executor

from tests.conftest import FIXTURES, parsed_sheet
from tracking287g.exports import bar_chart, csv_text, neutralise, state_counts, write_plots
from tracking287g.normalize import normalize_row

PUBLISHED = FIXTURES / "original_tracker" / "agency_counts_20250521.md"
SHEETS_20250521 = {
    "participating": "sheets_20250522_151740/participatingAgencies05202025pm.xlsx",
    "pending": "sheets_20250521_151835/pendingAgencies05202025pm.xlsx",
}
_LINE = re.compile(r"^\s?\d+\. (.{15}) \| (█*) (\d+)$")


def published_charts() -> dict[str, list[str]]:
    charts, current = {}, None
    for line in PUBLISHED.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            current = "pending" if "Pending" in line else "participating"
            charts[current] = []
        elif current and _LINE.match(line):
            charts[current].append(line)
    return charts


def rows_of(relative: str) -> list[dict]:
    return [{"state": normalize_row(r.values, r.links).state}
            for r in parsed_sheet(relative).rows]


def test_counts_equal_the_original_trackers_for_the_same_sheets():
    for list_name, lines in published_charts().items():
        matches = [_LINE.match(line) for line in lines]
        published = {match.group(1).strip(): int(match.group(3)) for match in matches}
        assert state_counts(rows_of(SHEETS_20250521[list_name])) == Counter(published), list_name


def test_chart_lines_are_in_the_original_format():
    for list_name, lines in published_charts().items():
        ours = bar_chart(state_counts(rows_of(SHEETS_20250521[list_name]))).splitlines()
        assert len(ours) == len(lines)
        # Each state's line is character for character the original's, rank aside
        # (the original broke ties in sheet order; we break them alphabetically).
        strip_rank = lambda line: line[3:]  # noqa: E731
        assert sorted(map(strip_rank, ours)) == sorted(map(strip_rank, lines)), list_name
    chart = bar_chart(state_counts(rows_of(SHEETS_20250521["participating"]))).splitlines()
    assert chart[0] == " 1. FLORIDA         | " + "█" * 40 + " 270"
    assert chart[16:20] == ["17. KANSAS          |  6", "18. NEW YORK        |  6",
                            "19. OHIO            |  6", "20. WYOMING         |  6"]


def test_ties_are_alphabetical_and_bars_are_floored():
    assert bar_chart(Counter({"B": 3, "A": 3, "C": 1})).splitlines() == [
        " 1. A               | " + "█" * 40 + " 3",
        " 2. B               | " + "█" * 40 + " 3",
        " 3. C               | " + "█" * 13 + " 1",
    ]


def test_formula_like_cells_are_neutralised_in_csv():
    text = csv_text(("agency",), [{"agency": "=HYPERLINK(\"x\")"}, {"agency": "-1"},
                                  {"agency": "@SUM(A1)"}, {"agency": "Lee County"}])
    assert [row["agency"] for row in csv.DictReader(io.StringIO(text))] == [
        "'=HYPERLINK(\"x\")", "'-1", "'@SUM(A1)", "Lee County"]
    assert neutralise(5) == 5


class DeadWorker(Executor):
    def submit(self, fn, /, *args, **kwargs):
        raise BrokenExecutor("the worker process died")


def test_plots_are_drawn_here_when_the_worker_drawing_them_died(tmp_path):
    timeseries = [{"list": "participating", "group": group, "key": key,
                   "snapshot_time": f"2025-07-{day:02d}T00:00:00+00:00", "agreements": count}
                  for day, count in ((1, 800), (2, 810))
                  for group, key in (("total", "all"), ("model", "Task Force Model"))]
    lists = {"participating": [{"agreement_id": "TX-a", "state": "TEXAS"}], "pending": []}
    written = write_plots(tmp_path, timeseries, lists, DeadWorker())
    assert sorted(path.name for path in written) == ["agreements_by_model.png", "top_states.png"]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in written)
