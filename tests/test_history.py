"""History on the real archive: 38 snapshots ICE published from May to July 2025."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import openpyxl
import pytest

from tests.conftest import SHEETS, parsed_sheet
from tests.test_sheets import count_data_rows
from tracking287g import archive, exports
from tracking287g.backfill import backfill, worker_pool
from tracking287g.history import CHANGE_KINDS, History, history_row, match_key, spelling_key
from tracking287g.normalize import CANONICAL_MODELS, normalize_row
from tracking287g.sheets import SheetError

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    db = archive.connect(root)
    history = History(db)
    result = backfill(SHEETS, root, history, archive.Manifest(db),
                      archive.AtomicFSFilesStore(str(root)))
    exports.write_all(root, history, archive.parse_time(history.last_time()))
    yield root, history, result
    db.close()


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def changes(history: History, **where) -> list[sqlite3.Row]:
    clause = " AND ".join(f"{k} = ?" for k in where) or "1"
    return history.db.execute(f"SELECT * FROM changes WHERE {clause} ORDER BY id",
                              tuple(where.values())).fetchall()


def snapshot_time(folder: str) -> str:
    stamp = dt.datetime.strptime(folder[len("sheets_"):], "%Y%m%d_%H%M%S")
    return stamp.replace(tzinfo=dt.UTC).isoformat()


def test_every_folder_becomes_a_snapshot_with_the_sheets_row_counts(backfilled):
    _, history, result = backfilled
    assert (result.snapshots, result.suspects) == (38, [])
    for path in sorted(SHEETS.glob("*/*.xlsx")):
        list_name = "pending" if "pending" in path.name else "participating"
        (row,) = history.db.execute(
            "SELECT row_count, status, published_name FROM snapshots WHERE list_name = ? "
            "AND taken_at = ?", (list_name, snapshot_time(path.parent.name))).fetchall()
        assert row["published_name"] == path.name
        assert row["status"] == "normal"
        assert row["row_count"] == count_data_rows(str(path.relative_to(SHEETS)))


def test_a_folder_without_a_list_records_it_as_seen_unchanged(backfilled):
    _, history, _ = backfilled
    # sheets_20250521_151835 holds only the pending sheet.
    (row,) = history.db.execute(
        "SELECT status, published_name FROM snapshots WHERE list_name = 'participating' "
        "AND taken_at = ?", (snapshot_time("sheets_20250521_151835"),)).fetchall()
    assert tuple(row) == ("unchanged", "participatingAgencies05192025pm.xlsx")


def test_timeseries_totals_agree_with_the_sheets(backfilled):
    root, _, _ = backfilled
    totals = {(r["snapshot_time"], r["list"]): int(r["agreements"])
              for r in read_csv(root / "data" / "timeseries.csv") if r["group"] == "total"}
    for path in sorted(SHEETS.glob("*/*.xlsx")):
        list_name = "pending" if "pending" in path.name else "participating"
        relative = str(path.relative_to(SHEETS))
        # Some sheets list one agreement twice: "City of St. Cloud Police Department" (link
        # pending) beside "St. Cloud Police Department", the same for Zephyrhills.
        listings = {(str(r.values["state"]).strip().upper(),
                     re.sub(r"^city of |[^a-z]", "", str(r.values["agency"]).lower()),
                     str(r.values["model"]).strip().lower())
                    for r in parsed_sheet(relative).rows}
        expected = len(listings)
        assert count_data_rows(relative) - expected in (0, 1, 2)
        assert totals[(snapshot_time(path.parent.name), list_name)] == expected, path.name


def test_the_change_log_uses_only_the_known_kinds(backfilled):
    _, history, _ = backfilled
    kinds = Counter(row["change"] for row in changes(history))
    assert set(kinds) <= set(CHANGE_KINDS)
    assert kinds["added"] > 800 and kinds["promoted"] > 200


def test_no_change_is_a_spelling_artefact(backfilled):
    _, history, _ = backfilled
    for row in changes(history, change="renamed"):
        before, after = row["details"].split(" -> ")
        assert spelling_key(before) != spelling_key(after), row["details"]
    for row in changes(history, change="corrected"):
        for part in row["details"].split("; "):
            field, values = part.split(": ", 1)
            before, after = values.split(" -> ")
            assert spelling_key(before) != spelling_key(after), row["details"]
            if field == "model":
                assert {before, after} <= set(CANONICAL_MODELS)
    # A rename never shows up as a removal plus an addition in the same snapshot.
    by_snapshot = defaultdict(lambda: defaultdict(set))
    for row in changes(history):
        key = (row["list_name"], row["state"], row["model"], match_key(row["agency"]))
        by_snapshot[row["snapshot_time"]][row["change"]].add(key)
    for kinds in by_snapshot.values():
        assert not (kinds["removed"] | kinds["withdrawn"]) & (kinds["added"] | kinds["promoted"])


def test_ft_myers_renamed_fort_myers_keeps_its_agreement_id(backfilled):
    _, history, _ = backfilled
    before = {r.agency: r.agreement_id for r in history.snapshot_rows(history.db.execute(
        "SELECT * FROM snapshots WHERE published_name = 'participatingAgencies07142025am.xlsx'"
    ).fetchone())}
    myers = "Ft. Myers Police Department -> Fort Myers Police Department"
    (renamed,) = [row for row in changes(history, change="renamed") if row["details"] == myers]
    assert renamed["snapshot_time"] == snapshot_time("sheets_20250715_151733")
    assert renamed["agreement_id"] == before["Ft. Myers Police Department"]
    assert not [row for row in changes(history, snapshot_time=renamed["snapshot_time"])
                if "Myers" in row["agency"] and row["change"] in ("added", "removed")]


def test_link_pending_rows_whose_date_moved_when_the_moa_was_published(backfilled):
    _, history, _ = backfilled
    published = {(r["snapshot_time"], r["agreement_id"])
                 for r in changes(history, change="document_published")}
    moved = [r for r in changes(history, change="corrected")
             if r["details"].startswith("signed_date:")
             and (r["snapshot_time"], r["agreement_id"]) in published]
    assert len(moved) >= 5
    for row in moved:
        before, after = (dt.date.fromisoformat(d) for d in
                         row["details"].split(": ")[1].split("; ")[0].split(" -> "))
        assert abs(after - before) <= dt.timedelta(days=62)
        assert not changes(history, snapshot_time=row["snapshot_time"],
                           agreement_id=row["agreement_id"], change="added")


def test_rows_added_between_two_sheets_are_logged(backfilled):
    _, history, _ = backfilled
    def agencies(relative):
        return {spelling_key(normalize_row(r.values, r.links).agency)
                for r in parsed_sheet(relative).rows}
    new = (agencies("sheets_20250716_151931/participatingAgencies07162025am.xlsx")
           - agencies("sheets_20250715_151733/participatingAgencies07152025am.xlsx"))
    assert len(new) >= 10
    logged = {spelling_key(r["agency"]) for r in changes(
        history, snapshot_time=snapshot_time("sheets_20250716_151931"), list_name="participating")
        if r["change"] in ("added", "promoted", "renamed")}
    assert new <= logged


def test_a_sheet_republished_under_the_same_name_with_more_rows(backfilled):
    _, history, _ = backfilled
    versions = history.db.execute(
        "SELECT taken_at, sheet_sha256, row_count FROM snapshots WHERE published_name = "
        "'participatingAgencies07032025pm.xlsx' AND status = 'normal' ORDER BY taken_at").fetchall()
    assert [v["row_count"] for v in versions] == [753, 777]
    assert versions[0]["sheet_sha256"] != versions[1]["sheet_sha256"]
    later = changes(history, snapshot_time=versions[1]["taken_at"], list_name="participating")
    assert sum(r["change"] in ("added", "promoted") for r in later) >= 20


def test_an_agency_listed_twice_is_one_agreement(backfilled):
    _, history, _ = backfilled
    snapshot = history.db.execute("SELECT * FROM snapshots WHERE published_name = "
                                  "'participatingAgencies07072025am.xlsx'").fetchone()
    st_cloud = [r for r in history.snapshot_rows(snapshot)
                if r.agency == "St. Cloud Police Department"]
    assert len(st_cloud) == 2
    assert len({r.agreement_id for r in st_cloud}) == 1


def test_pending_agencies_promoted_a_day_later_are_never_called_withdrawn(backfilled):
    _, history, _ = backfilled
    promoted = {r["agreement_id"] for r in changes(history, change="promoted")}
    withdrawn = {r["agreement_id"] for r in changes(history, change="withdrawn")}
    assert not promoted & withdrawn
    # Auburndale PD left the pending sheet on 2025-05-21 and became participating on 05-22.
    (auburndale,) = [r for r in changes(history) if r["agency"] == "Auburndale Police Department"
                     and r["change"] in ("promoted", "withdrawn")]
    assert (auburndale["change"], auburndale["snapshot_time"]) == (
        "promoted", snapshot_time("sheets_20250522_151740"))


def test_statuses(backfilled):
    root, _, _ = backfilled
    rows = read_csv(root / "data" / "agreements.csv")
    statuses = Counter(r["status"] for r in rows)
    assert set(statuses) <= {"active", "missing", "removed", "superseded"}
    current = {r["agreement_id"] for name in ("participating", "pending")
               for r in read_csv(root / "data" / f"{name}.csv")}
    assert {r["agreement_id"] for r in rows if r["status"] == "active"} == current
    walworth = next(r for r in rows if r["agency"] == "Walworth County Sheriff's Office")
    assert walworth["status"] == "removed"  # dropped from the sheet on 2025-07-07


def broken_copy(relative: str, keep: float) -> bytes:
    """A real sheet with most rows deleted, as ICE once published."""
    workbook = openpyxl.load_workbook(SHEETS / relative)
    sheet = workbook.worksheets[0]
    rows = sheet.max_row
    sheet.delete_rows(int(rows * keep), rows)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def rows_of(body: bytes, list_name: str):
    from tracking287g.sheets import parse_workbook
    return [history_row(list_name, r.row_number, normalize_row(r.values, r.links))
            for r in parse_workbook(body, list_name).rows]


def test_a_broken_snapshot_is_contained(backfilled, tmp_path):
    _, source, _ = backfilled
    latest = "sheets_20250719_151637/participatingAgencies07182025pm.xlsx"
    broken, full = broken_copy(latest, keep=0.4), (SHEETS / latest).read_bytes()
    when = dt.datetime(2025, 7, 20, 15, tzinfo=dt.UTC)
    republished = {"participating": {"sha256": "republished", "published_name": "y.xlsx"}}
    histories = {}
    for name in ("with_broken", "without"):
        (tmp_path / name).mkdir()
        copy = archive.connect(tmp_path / name)
        source.db.backup(copy)  # the WAL too: a file copy would miss the latest writes
        histories[name] = History(copy)
    history = histories["with_broken"]
    before = history.db.execute("SELECT * FROM agreements ORDER BY agreement_id").fetchall()

    changed, suspects = history.record(
        when, {"participating": {"sha256": archive.sha256_hex(broken), "published_name": "x.xlsx"}},
        {"participating": rows_of(broken, "participating")})
    assert changed == []
    assert re.fullmatch(r"the participating list shrank from 832 to \d+ rows \(\d+%, more "
                        r"than the 20% allowed\)", suspects["participating"])
    assert history.db.execute("SELECT * FROM agreements ORDER BY agreement_id").fetchall() == before
    assert history.latest_snapshot("participating")["published_name"] == (
        "participatingAgencies07182025pm.xlsx")

    # The next normal list continues the history as if the broken one had not happened.
    results = {name: h.record(when + dt.timedelta(days=1), republished,
                              {"participating": rows_of(full, "participating")})
               for name, h in histories.items()}
    assert results["with_broken"] == results["without"] == ([], {})
    tables = {name: [tuple(r) for r in h.db.execute(
        "SELECT * FROM agreements ORDER BY agreement_id")] for name, h in histories.items()}
    assert tables["with_broken"] == tables["without"]
    for h in histories.values():
        h.db.close()


def test_backfill_command(tmp_path):
    source = tmp_path / "old"
    for folder in ("sheets_20250714_151904", "sheets_20250715_151733"):
        shutil.copytree(SHEETS / folder, source / folder)
    store = tmp_path / "archive"
    command = [sys.executable, "-m", "scrapy", "backfill", str(source), "-s",
               f"FILES_STORE={store}"]
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tracking287g: imported 2 snapshots (0 already imported)")
    assert sorted(p.relative_to(store).as_posix() for p in (store / "sheets").rglob("*.xlsx")) == [
        "sheets/20250714_151904/participatingAgencies07142025am.xlsx",
        "sheets/20250714_151904/pendingAgencies07142025am.xlsx",
        "sheets/20250715_151733/participatingAgencies07152025am.xlsx"]
    change_log = (store / "data" / "changes.csv").read_text()
    assert "Ft. Myers Police Department -> Fort Myers Police Department" in change_log
    assert (store / "plots" / "agreements_by_model.png").read_bytes().startswith(b"\x89PNG")

    # Older sheets cannot go in after newer ones.
    older = tmp_path / "older"
    shutil.copytree(SHEETS / "sheets_20250519_024922", older / "sheets_20250519_024922")
    result = subprocess.run([*command[:4], str(older), *command[5:]], cwd=PROJECT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "tracking287g: backfill failed: the archive already has snapshots up to "
        "2025-07-15T15:17:33+00:00, later than sheets_20250519_024922; snapshots go in time "
        "order: backfill into a new archive (-s FILES_STORE=DIR)")


def test_a_damaged_sheet_stops_a_backfill_before_it_records_anything_and_names_the_file(
        tmp_path):
    source = tmp_path / "sheets"
    for folder in sorted(p.name for p in SHEETS.iterdir())[:3]:
        shutil.copytree(SHEETS / folder, source / folder)
    damaged = sorted(source.glob("*/*.xlsx"))[0]
    damaged.write_bytes(b"PK\x03\x04 damaged in transit")
    root = tmp_path / "archive"
    db = archive.connect(root)
    with (worker_pool(1) as readers,
          pytest.raises(SheetError, match=rf"^{re.escape(str(damaged))}: expected a readable")):
        backfill(source, root, History(db), archive.Manifest(db),
                 archive.AtomicFSFilesStore(str(root)), readers)
    assert db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 0
