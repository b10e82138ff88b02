"""A server that fails: errors, throttling, blocks, resets, stalls, truncation, bad bodies."""

from __future__ import annotations

import pytest

from tests.mirror import SHEETS, MirrorServer, Route, fake_pdf
from tests.test_crawl import (
    PAGE,
    archived_files,
    exports_of,
    failure_line,
    read_csv,
    run_crawl,
)

PARTICIPATING = SHEETS / "sheets_20250519_024922" / "participatingAgencies05162025am.xlsx"
DOCUMENT = "/doclib/287gMOA/DeafSmithCoTX_WSO_MOA_031725.pdf"
NAME = DOCUMENT.rsplit("/", 1)[1]


def archived(store, name=NAME) -> list:
    return list((store / "agreements").rglob(name)) if (store / "agreements").exists() else []


def failures(store) -> dict[str, str]:
    return {row["url"].rsplit("/", 1)[1]: row["reason"]
            for row in read_csv(store / "data" / "failures.csv")}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_then_success(tmp_path, status):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        route = server.routes[DOCUMENT]
        route.status = status
        route.fault_times = 2

        def recover():
            if route.served >= 2:
                route.status = 200

        server.on_request = recover
        result = run_crawl(server, tmp_path)
        assert server.requested(DOCUMENT) == [DOCUMENT] * 3
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(archived(tmp_path)) == 1
    assert failures(tmp_path) == {}


def test_429_retry_after_is_honoured(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        route = server.routes[DOCUMENT]
        route.status, route.headers = 429, {"Retry-After": "2"}
        server.on_request = lambda: setattr(route, "status", 200) if route.served >= 1 else None
        result = run_crawl(server, tmp_path)
        times = [t for path, t in server.times if path == DOCUMENT]
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(times) == 2
    assert times[1] - times[0] >= 2.0  # as the server asked
    assert len(archived(tmp_path)) == 1


def test_429_retry_after_is_capped(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        route = server.routes[DOCUMENT]
        route.status, route.headers = 429, {"Retry-After": "3600"}
        server.on_request = lambda: setattr(route, "status", 200) if route.served >= 1 else None
        result = run_crawl(server, tmp_path, RETRY_BACKOFF_MAX=1)
        times = [t for path, t in server.times if path == DOCUMENT]
    assert result.returncode == 0, result.stderr[-2000:]
    assert 1.0 <= times[1] - times[0] < 10  # an hour asked, RETRY_BACKOFF_MAX given
    assert len(archived(tmp_path)) == 1


def test_403_on_every_request_is_a_clear_failure_and_archives_nothing(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        server.routes["/robots.txt"] = Route(b"Forbidden", "text/plain")
        for route in server.routes.values():
            route.status = 403
        result = run_crawl(server, tmp_path)
    assert result.returncode == 1
    assert failure_line(result) == (
        f"tracking287g: crawl failed: could not fetch the 287(g) page {server.url}{PAGE}: "
        "HTTP 403: the server refused this client; set USER_AGENT (or TRACKING287G_USER_AGENT) "
        "to one it accepts, or wait and retry")
    assert not (tmp_path / "sheets").exists() and not (tmp_path / "agreements").exists()
    assert exports_of(tmp_path) == {}


@pytest.mark.parametrize("fault", ["reset", "truncate"])
def test_broken_connections_are_retried(tmp_path, fault):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        route = server.routes[DOCUMENT]
        route.fault, route.fault_times = fault, 2
        result = run_crawl(server, tmp_path)
        assert server.requested(DOCUMENT) == [DOCUMENT] * 3
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = archived(tmp_path)
    assert path.read_bytes() == route.body  # the whole file, not the truncated one


def test_a_stalled_response_times_out_and_is_retried(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        route = server.routes[DOCUMENT]
        route.fault, route.fault_times, route.stall = "stall", 1, 3.0
        result = run_crawl(server, tmp_path, DOWNLOAD_TIMEOUT=1)
        assert server.requested(DOCUMENT) == [DOCUMENT] * 2
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(archived(tmp_path)) == 1


@pytest.mark.parametrize("fault, reason", [
    ("truncate", "truncated: the server sent less than it announced, on every retry "
                 "(ResponseDataLossError)"),
    ("reset", "connection failed on every retry (ConnectionLost)"),
])
def test_a_document_that_never_arrives_whole_is_listed_not_archived(tmp_path, fault, reason):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        server.routes[DOCUMENT].fault = fault
        result = run_crawl(server, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert archived(tmp_path) == []
    assert failures(tmp_path)[NAME].startswith(reason)
    assert not [p for p in (tmp_path / "agreements").rglob("*") if p.name.endswith(".part")]


@pytest.mark.parametrize("body, content_type, reason", [
    (b"", "application/pdf", "expected a PDF (starting %PDF), got an empty file"),
    (b"<!DOCTYPE html><html><head><title>Just a moment...</title></head></html>", "text/html",
     "expected a PDF (starting %PDF), got an HTML page titled 'Just a moment...'"),
])
def test_what_is_not_a_pdf_is_listed_not_archived(tmp_path, body, content_type, reason):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        server.routes[DOCUMENT] = Route(body, content_type)
        result = run_crawl(server, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert failures(tmp_path) == {NAME: reason}
    assert archived(tmp_path) == []


def test_404_for_an_archived_document_keeps_the_archived_copy(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        assert run_crawl(server, tmp_path).returncode == 0
        before = archived_files(tmp_path, "agreements")
        del server.routes[DOCUMENT]
        result = run_crawl(server, tmp_path, DOCUMENTS_REVALIDATE_DAYS=0)
    assert result.returncode == 0, result.stderr[-2000:]
    assert archived_files(tmp_path, "agreements") == before
    assert failures(tmp_path) == {NAME: "HTTP 404"}
    (row,) = [r for r in read_csv(tmp_path / "data" / "participating.csv")
              if r["moa_url"].endswith(DOCUMENT)]
    assert (tmp_path / row["moa_path"]).read_bytes() == fake_pdf(DOCUMENT)


def test_an_enormous_document_is_refused(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        server.routes[DOCUMENT] = Route(fake_pdf(DOCUMENT) + b"0" * 3_000_000, "application/pdf")
        result = run_crawl(server, tmp_path, DOWNLOAD_MAXSIZE=1_000_000)
    assert result.returncode == 0, result.stderr[-2000:]
    assert archived(tmp_path) == []
    assert failures(tmp_path)[NAME] == (
        "larger than DOWNLOAD_MAXSIZE (1000000 bytes): not downloaded; raise "
        "DOWNLOAD_MAXSIZE if this document is real")


def test_an_enormous_sheet_fails_the_crawl(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        result = run_crawl(server, tmp_path, DOWNLOAD_MAXSIZE=50_000)
    assert result.returncode == 1
    assert failure_line(result).startswith(
        "tracking287g: crawl failed: could not download the participating sheet ")
    assert "larger than DOWNLOAD_MAXSIZE (50000 bytes)" in failure_line(result)
    assert not (tmp_path / "sheets").exists()
