"""End to end: the real `scrapy crawl ice287g` against mirrors of ICE's site on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import openpyxl
import pytest

from tests.mirror import AGREEMENTS, ARCHIVE_PATH, SHEETS, MirrorServer, Route, fake_pdf

PROJECT = Path(__file__).resolve().parent.parent
PAGE = "/identify-and-arrest/287g"
PUBLISHED = Path(__file__).parent / "fixtures" / "original_tracker"

PARTICIPATING_0520 = SHEETS / "sheets_20250522_151740" / "participatingAgencies05202025pm.xlsx"
PENDING_0520 = SHEETS / "sheets_20250521_151835" / "pendingAgencies05202025pm.xlsx"
PARTICIPATING_0718 = SHEETS / "sheets_20250719_151637" / "participatingAgencies07182025pm.xlsx"
PARTICIPATING_0516 = SHEETS / "sheets_20250519_024922" / "participatingAgencies05162025am.xlsx"
# The mirror's archive page links the three real agreement PDFs.
ARCHIVE_DOCUMENTS = {f"/doclib/287gMOA/archive/{pdf.name}" for pdf in AGREEMENTS.glob("*.pdf")}


def crawl_command(server: MirrorServer, store: Path, **settings) -> tuple[list[str], dict]:
    """`scrapy crawl ice287g` on the mirror, politeness off (the mirror is local)."""
    settings = {"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False,
                "CONCURRENT_REQUESTS_PER_DOMAIN": 16, "RETRY_BACKOFF_BASE": 0.05,
                # Only the mirror: a link left pointing at ice.gov is refused, never fetched.
                "DOCUMENT_HOSTS": "", **settings}
    command = [sys.executable, "-m", "scrapy", "crawl", "ice287g",
               "-a", f"start_url={server.url}{PAGE}", "-s", f"FILES_STORE={store}"]
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    env = {k: v for k, v in os.environ.items()
           if k != "FILES_STORE" and not k.startswith(("TRACKING287G_", "SCRAPY_"))}
    return command, env


def run_crawl(server: MirrorServer, store: Path, preexec_fn=None,
              **settings) -> subprocess.CompletedProcess:
    command, env = crawl_command(server, store, **settings)
    return subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=600, check=False, preexec_fn=preexec_fn)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def archived_files(store: Path, folder: str) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes()
            for p in sorted((store / folder).rglob("*")) if p.is_file()}


def exports_of(store: Path) -> dict[str, bytes]:
    """The exports, less data/crawls.csv (which records every crawl, failed ones too)."""
    return {k: v for k, v in archived_files(store, "data").items() if k != "data/crawls.csv"}


def manifest(store: Path, query: str) -> list[tuple]:
    with sqlite3.connect(store / "tracking287g.sqlite") as db:
        return db.execute(query).fetchall()


def published_counts(list_name: str) -> dict[str, int]:
    text = (PUBLISHED / "agency_counts_20250521.md").read_text(encoding="utf-8")
    section = text.split(f"### {list_name.title()} Agencies Count:")[1].split("###")[0]
    return {m.group(1).strip(): int(m.group(2))
            for m in re.finditer(r"^\s?\d+\. (.{15}) \| █* ?(\d+)$", section, re.M)}


def failure_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_2025_page_two_crawls(tmp_path):
    with MirrorServer() as server:
        documents = server.publish_2025(PARTICIPATING_0520, PENDING_0520)
        first = run_crawl(server, tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]

        # Every document the sheet and the archive page link is fetched exactly once.
        fetched = Counter(server.requested("/doclib/287gMOA/"))
        assert set(fetched) == documents | ARCHIVE_DOCUMENTS
        assert set(fetched.values()) == {1}
        agreements = archived_files(tmp_path, "agreements")
        assert len(documents) == 425
        assert len(agreements) == 425 + 3
        assert manifest(tmp_path, "SELECT kind, COUNT(*) FROM files GROUP BY kind") == [
            ("document", 428), ("sheet", 2)]
        (sheet_folder,) = (tmp_path / "sheets").iterdir()
        assert sorted(p.name for p in sheet_folder.iterdir()) == [
            "participatingAgencies05202025pm.xlsx", "pendingAgencies05202025pm.xlsx"]

        # The counts are the ones the original tracker published for these sheets.
        counts = read_csv(tmp_path / "data" / "counts.csv")
        for list_name in ("participating", "pending"):
            ours = {row["state"]: int(row[list_name]) for row in counts if int(row[list_name])}
            assert ours == published_counts(list_name), list_name
        participating = read_csv(tmp_path / "data" / "participating.csv")
        assert len(participating) == 603
        assert len(read_csv(tmp_path / "data" / "pending.csv")) == 68
        assert read_csv(tmp_path / "data" / "failures.csv") == []
        # A first crawl adds every agreement once: 671 rows, one agreement listed twice.
        ids = {row["agreement_id"] for name in ("participating", "pending")
               for row in read_csv(tmp_path / "data" / f"{name}.csv")}
        changes = read_csv(tmp_path / "data" / "changes.csv")
        assert len(ids) == 670
        assert Counter(c["change"] for c in changes) == {"added": 670}
        assert {c["agreement_id"] for c in changes} == ids
        assert ("Summary: 603 participating rows, 68 pending rows; 670 changes; documents: 428 "
                "linked, 428 newly archived, 0 already archived, 0 revalidated, 0 failed"
                ) in first.stderr
        archived = read_csv(tmp_path / "data" / "archived_agreements.csv")
        finney = next(row for row in archived if row["agency"] == "Finney County Sheriff's Office")
        assert (finney["state"], finney["model"], finney["date"]) == (
            "KANSAS", "Warrant Service Officer", "2020-03-17")
        assert finney["agreement_id"] == "KS-finney-county-sheriffs-office-wso-2020-03-17"
        assert (tmp_path / finney["path"]).read_bytes() == (
            AGREEMENTS / "287gWSO_FinneyCoKs2020-03-17.pdf").read_bytes()
        for row in participating:
            if row["moa_url"]:
                assert (tmp_path / row["moa_path"]).read_bytes().startswith(b"%PDF")
        readme = (tmp_path / "README.md").read_text(encoding="utf-8")
        assert " 1. FLORIDA         | " + "█" * 40 + " 270" in readme
        assert " 1. FLORIDA         | " + "█" * 40 + " 23" in readme

        # Second crawl: robots.txt, the page and the two sheets; no document again.
        server.clear()
        second = run_crawl(server, tmp_path)
        assert second.returncode == 0, second.stderr[-3000:]
        assert sorted(server.requested()) == sorted([
            "/robots.txt", PAGE, ARCHIVE_PATH,
            "/doclib/about/offices/ero/287g/participatingAgencies05202025pm.xlsx",
            "/doclib/about/offices/ero/287g/pendingAgencies05202025pm.xlsx"])
        assert archived_files(tmp_path, "agreements") == agreements
        assert len(list((tmp_path / "sheets").iterdir())) == 1  # same bytes: not stored again
        assert manifest(tmp_path, "SELECT COUNT(*) FROM files") == [(430,)]
        assert read_csv(tmp_path / "data" / "participating.csv") == participating


def test_2026_page_without_pending_revalidation_and_a_changed_document(tmp_path):
    with MirrorServer() as server:
        documents = server.publish_2026(PARTICIPATING_0718, "participatingAgencies11302026am.xlsx")
        first = run_crawl(server, tmp_path, PROGRESS_INTERVAL=0.2)
        assert first.returncode == 0, first.stderr[-3000:]
        assert "ICE's page links no pending sheet" in first.stderr
        progress = re.findall(r"Documents: ([\d,]+) of 642 done \(0 failed\)", first.stderr)
        assert len(progress) >= 2 and progress[-1] == "642"

        fetched = Counter(server.requested("/doclib/287gMOA/"))
        assert set(fetched) == documents | ARCHIVE_DOCUMENTS and set(fetched.values()) == {1}
        assert len(documents) == 639
        assert len(archived_files(tmp_path, "agreements")) == 639 + 3
        # A document linked only through an Outlook safelink is archived under its agency.
        melbourne = list((tmp_path / "agreements" / "FLORIDA").glob(
            "Melbourne_Beach_Police_Department/*/MelbourneBeachPoliceDeptFL_TFM_MOA_05132025.pdf"))
        assert len(melbourne) == 1
        (sheet,) = (tmp_path / "sheets").rglob("*.xlsx")
        assert sheet.name == "participatingAgencies11302026am.xlsx"
        assert read_csv(tmp_path / "data" / "pending.csv") == []
        assert len(read_csv(tmp_path / "data" / "participating.csv")) == 832
        assert "| pending | 0 | 0 | not published | |" in (tmp_path / "README.md").read_text()

        # Revalidation is due: every document is asked If-Modified-Since, and none changed.
        before = archived_files(tmp_path, "agreements")
        server.clear()
        second = run_crawl(server, tmp_path, DOCUMENTS_REVALIDATE_DAYS=0)
        assert second.returncode == 0, second.stderr[-3000:]
        conditional = [headers for _, path, headers in server.requests
                       if path.startswith("/doclib/287gMOA/")]
        assert len(conditional) == 639 + 3
        assert all("If-Modified-Since" in headers for headers in conditional)
        assert "'file_status_count/revalidated': 642" in second.stderr
        assert "0 newly archived, 0 already archived, 642 revalidated, 0 failed" in second.stderr
        assert archived_files(tmp_path, "agreements") == before

        # ICE replaces one document at the same URL: a new version beside the old one.
        path = "/doclib/287gMOA/MelbourneBeachPoliceDeptFL_TFM_MOA_05132025.pdf"
        server.routes[path] = Route(fake_pdf(path) + b"% amended\n", "application/pdf",
                                    last_modified=1760000000.0)
        third = run_crawl(server, tmp_path, DOCUMENTS_REVALIDATE_DAYS=0)
        assert third.returncode == 0, third.stderr[-3000:]
        after = archived_files(tmp_path, "agreements")
        assert {k: v for k, v in after.items() if k in before} == before
        (added,) = set(after) - set(before)
        assert added.endswith("MelbourneBeachPoliceDeptFL_TFM_MOA_05132025-2.pdf")
        assert after[added].endswith(b"% amended\n")
        versions = manifest(tmp_path, f"SELECT path FROM files WHERE url LIKE '%{path}'"
                                      " ORDER BY id")
        assert [Path(v[0]).name for v in versions] == [
            "MelbourneBeachPoliceDeptFL_TFM_MOA_05132025.pdf",
            "MelbourneBeachPoliceDeptFL_TFM_MOA_05132025-2.pdf"]
        rows = read_csv(tmp_path / "data" / "participating.csv")
        assert {r["moa_path"] for r in rows if r["moa_url"].endswith(path)} == {added}
        (replaced,) = [c for c in read_csv(tmp_path / "data" / "changes.csv")
                       if c["change"] == "document_replaced"]
        assert replaced["agency"] == "Melbourne Beach Police Department"
        assert replaced["details"].startswith(f"moa: new bytes at {server.url}{path} (sha256 ")


def test_bad_documents_are_listed_not_archived_and_retried_next_crawl(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING_0516, None)
        html = "/doclib/287gMOA/287gWSO_PowerCountyID11-20-2020.pdf"
        missing = "/doclib/287gMOA/DeafSmithCoTX_WSO_MOA_031725.pdf"
        server.routes[html] = Route(b"<html><title>Service Unavailable</title></html>",
                                    "text/html")
        del server.routes[missing]
        first = run_crawl(server, tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        failures = {row["url"].split("/")[-1]: row for row in
                    read_csv(tmp_path / "data" / "failures.csv")}
        assert set(failures) == {html.split("/")[-1], missing.split("/")[-1]}
        assert failures[missing.split("/")[-1]]["reason"] == "HTTP 404"
        assert failures[html.split("/")[-1]]["reason"] == (
            "expected a PDF (starting %PDF), got an HTML page titled 'Service Unavailable'")
        assert failures[html.split("/")[-1]]["agency"] == "Power County Sheriff's Office"
        assert not list((tmp_path / "agreements").rglob("287gWSO_PowerCountyID11-20-2020.pdf"))
        assert "Documents that could not be archived this crawl: 2." in (
            tmp_path / "README.md").read_text()

        server.routes[html] = Route(fake_pdf(html), "application/pdf")
        server.routes[missing] = Route(fake_pdf(missing), "application/pdf")
        server.clear()
        second = run_crawl(server, tmp_path)
        assert second.returncode == 0, second.stderr[-3000:]
        assert sorted(server.requested("/doclib/287gMOA/")) == sorted([html, missing])
        assert read_csv(tmp_path / "data" / "failures.csv") == []
        power = (tmp_path / "agreements").rglob("287gWSO_PowerCountyID11-20-2020.pdf")
        assert len(list(power)) == 1


def test_retries_server_errors_then_archives(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING_0516, None)
        flaky = "/doclib/287gMOA/DeafSmithCoTX_WSO_MOA_031725.pdf"
        good = server.routes[flaky]
        server.routes[flaky] = Route(b"busy", "text/plain", status=503)

        def recover():  # answer 503 twice, then the document
            if server.requested(flaky).count(flaky) >= 3:
                server.routes[flaky] = good

        server.on_request = recover
        result = run_crawl(server, tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert server.requested(flaky).count(flaky) == 3
        assert read_csv(tmp_path / "data" / "failures.csv") == []


@pytest.mark.parametrize("case, expected", [
    ("page_forbidden", "could not fetch the 287(g) page {url}/identify-and-arrest/287g: "
                       "HTTP 403: the server refused this client; set USER_AGENT "
                       "(or TRACKING287G_USER_AGENT) to one it accepts, or wait and retry"),
    ("no_sheet_link", "expected a link to the participating-agencies sheet on "
                      "{url}/identify-and-arrest/287g, found none; ICE may have changed the "
                      "page: open it and update tracking287g/discovery.py"),
    ("sheet_is_html", "participating sheet participatingAgencies05162025am.xlsx "
                      "({url}/doclib/about/offices/ero/287g/participatingAgencies05162025am.xlsx)"
                      ": expected an Excel workbook (a zip starting with 'PK'), got an HTML page "
                      "titled 'Access Denied'; ICE may be serving an error page: retry later"),
    ("sheet_missing", "could not download the participating sheet "
                      "{url}/doclib/about/offices/ero/287g/participatingAgencies05162025am.xlsx: "
                      "HTTP 404"),
    ("sheet_without_columns", "participating sheet participatingAgencies05162025am.xlsx "
                              "({url}/doclib/about/offices/ero/287g/"
                              "participatingAgencies05162025am.xlsx): expected columns SIGNED, "
                              "MOA in the participating sheet"),
])
def test_failed_crawls_exit_non_zero_with_one_line_and_archive_nothing(tmp_path, case, expected):
    sheet = "/doclib/about/offices/ero/287g/participatingAgencies05162025am.xlsx"
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING_0516, None)
        if case == "page_forbidden":
            server.routes[PAGE].status = 403
        elif case == "no_sheet_link":
            server.routes[PAGE].body = server.routes[PAGE].body.replace(b".xlsx", b".pdf")
        elif case == "sheet_is_html":
            server.routes[sheet] = Route(b"<html><title>Access Denied</title></html>",
                                         "text/html")
        elif case == "sheet_missing":
            del server.routes[sheet]
        elif case == "sheet_without_columns":
            server.routes[sheet] = Route(
                (SHEETS / "sheets_20250519_024922" / "pendingAgencies05152025am.xlsx").read_bytes())
        result = run_crawl(server, tmp_path)
    assert result.returncode == 1
    assert failure_line(result).startswith(
        "tracking287g: crawl failed: " + expected.format(url=server.url))
    if case == "sheet_without_columns":
        # A real workbook, unreadable: the raw file is kept, as a suspect snapshot.
        assert failure_line(result).endswith(
            "; the raw sheet is archived and recorded as a suspect snapshot, statuses and "
            "exports are unchanged")
        assert [p.name for p in (tmp_path / "sheets").rglob("*.xlsx")] == [
            "participatingAgencies05162025am.xlsx"]
        assert manifest(tmp_path, "SELECT list_name, status FROM snapshots") == [
            ("participating", "suspect")]
    else:
        assert not (tmp_path / "sheets").exists()
    assert not (tmp_path / "agreements").exists()
    assert exports_of(tmp_path) == {}
    (crawl,) = read_csv(tmp_path / "data" / "crawls.csv")
    assert crawl["status"] == "failed"
    assert crawl["failed_checks"] == failure_line(result).split("crawl failed: ", 1)[1]


def test_a_failed_crawl_leaves_the_previous_exports_as_they_were(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING_0516, None)
        assert run_crawl(server, tmp_path).returncode == 0
        exports = exports_of(tmp_path)
        readme = (tmp_path / "README.md").read_bytes()
        sheet = "/doclib/about/offices/ero/287g/participatingAgencies05162025am.xlsx"
        server.routes[sheet] = Route(b"<html><title>Down</title></html>", "text/html")
        result = run_crawl(server, tmp_path)
    assert result.returncode == 1
    assert exports_of(tmp_path) == exports
    assert [c["status"] for c in read_csv(tmp_path / "data" / "crawls.csv")] == ["ok", "failed"]
    assert (tmp_path / "README.md").read_bytes() == readme


def test_a_start_url_that_is_not_a_url_is_refused(tmp_path):
    command = [sys.executable, "-m", "scrapy", "crawl", "ice287g", "-a", "start_url=ice.gov",
               "-s", f"FILES_STORE={tmp_path}"]
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "start_url must be an http(s) URL" in result.stderr


def test_two_mirrors_in_turn_log_what_changed_as_a_backfill_would(tmp_path):
    day1 = SHEETS / "sheets_20250714_151904"
    day2 = SHEETS / "sheets_20250715_151733"
    with MirrorServer() as server:
        server.publish_2025(day1 / "participatingAgencies07142025am.xlsx",
                            day1 / "pendingAgencies07142025am.xlsx")
        assert run_crawl(server, tmp_path / "crawled").returncode == 0
        before = {r["agency"]: r["agreement_id"]
                  for r in read_csv(tmp_path / "crawled" / "data" / "participating.csv")}
        # The next day ICE published a new participating sheet; the pending one stayed.
        server.publish_2025(day2 / "participatingAgencies07152025am.xlsx",
                            day1 / "pendingAgencies07142025am.xlsx")
        second = run_crawl(server, tmp_path / "crawled")
        assert second.returncode == 0, second.stderr[-3000:]
    crawled = read_csv(tmp_path / "crawled" / "data" / "changes.csv")
    latest = max(c["snapshot_time"] for c in crawled)
    logged = [c for c in crawled if c["snapshot_time"] == latest]
    (myers,) = [c for c in logged if c["change"] == "renamed" and "Myers" in c["agency"]]
    assert myers["details"] == "Ft. Myers Police Department -> Fort Myers Police Department"
    assert myers["agreement_id"] == before["Ft. Myers Police Department"]

    # The same two sheets imported by backfill give the same changes.
    source = tmp_path / "old"
    for folder in (day1, day2):
        shutil.copytree(folder, source / folder.name)
    command = [sys.executable, "-m", "scrapy", "backfill", str(source),
               "-s", f"FILES_STORE={tmp_path / 'backfilled'}"]
    assert subprocess.run(command, cwd=PROJECT, capture_output=True, check=False).returncode == 0
    imported = read_csv(tmp_path / "backfilled" / "data" / "changes.csv")
    second_snapshot = max(c["snapshot_time"] for c in imported)

    def comparable(rows):  # document URLs differ (the mirror's host), the rest must not
        return sorted((c["change"], c["agreement_id"], c["agency"]) for c in rows)

    assert comparable(logged) == comparable(
        [c for c in imported if c["snapshot_time"] == second_snapshot])
    assert len(logged) == 10  # nine renames and one corrected type, as on 2025-07-15


def test_a_broken_upstream_list_leaves_the_exports_as_they_were(tmp_path):
    sheet = "/doclib/about/offices/ero/287g/participatingAgencies07182025pm.xlsx"
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING_0718, None)
        assert run_crawl(server, tmp_path).returncode == 0
        exports_before = exports_of(tmp_path)
        readme = (tmp_path / "README.md").read_bytes()

        # ICE publishes a list that lost 59% of its rows.
        good = server.routes[sheet]
        workbook = openpyxl.load_workbook(io.BytesIO(good.body))
        workbook.worksheets[0].delete_rows(340, 600)
        broken = io.BytesIO()
        workbook.save(broken)
        server.routes[sheet] = Route(broken.getvalue(), good.content_type)
        result = run_crawl(server, tmp_path)
        assert result.returncode == 1
        assert failure_line(result) == (
            "tracking287g: crawl failed: held the new sheet as suspect: participating: the "
            "participating list shrank from 832 to 338 rows (59%, more than the 20% allowed); "
            "the raw sheet is archived and recorded as a suspect snapshot, statuses and "
            "exports are unchanged; check ICE's page, and if the list really changed this "
            "much, rerun with -s HISTORY_SUSPECT_SHRINK=1")
        assert exports_of(tmp_path) == exports_before
        assert (tmp_path / "README.md").read_bytes() == readme
        assert len(list((tmp_path / "sheets").rglob("*.xlsx"))) == 2  # the raw file is kept

        # ICE fixes it: the history goes on as if the broken list had not happened.
        server.routes[sheet] = good
        result = run_crawl(server, tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    statuses = manifest(tmp_path, "SELECT status FROM snapshots WHERE list_name = "
                                  "'participating' ORDER BY id")
    assert statuses == [("normal",), ("suspect",), ("unchanged",)]
    changes = read_csv(tmp_path / "data" / "changes.csv")
    assert {c["change"] for c in changes} == {"added"}
    assert read_csv(tmp_path / "data" / "participating.csv") == read_csv_text(
        exports_before["data/participating.csv"])


def read_csv_text(body: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
