"""Crawls killed mid-download, and a disk that fills up: nothing partial, nothing lost."""

from __future__ import annotations

import hashlib
import resource
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.mirror import SHEETS, MirrorServer, Route, fake_pdf
from tests.test_crawl import PROJECT, crawl_command, read_csv, run_crawl

PARTICIPATING = SHEETS / "sheets_20250519_024922" / "participatingAgencies05162025am.xlsx"


def served(server) -> set[str]:
    return {hashlib.sha256(route.body).hexdigest() for route in server.routes.values()}


def archive_is_consistent(store, served: set[str]) -> list[str]:
    """Every archived file is whole (bytes that were served) and in the manifest, and back."""
    on_disk = {p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for folder in ("agreements", "sheets") if (store / folder).exists()
               for p in (store / folder).rglob("*") if p.is_file()}
    assert set(on_disk.values()) <= served, "a partial or foreign file is in the archive"
    with sqlite3.connect(store / "tracking287g.sqlite") as db:
        recorded = dict(db.execute("SELECT path, sha256 FROM files"))
    assert all(on_disk.get(path) == sha for path, sha in recorded.items()), \
        "the manifest names a file the archive does not hold"
    return sorted(set(on_disk) - set(recorded))  # whole files a killed crawl did not record


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_crawl_leaves_no_partial_file_and_the_next_one_finishes(tmp_path, how):
    with MirrorServer() as server:
        documents = server.publish_2025(PARTICIPATING, None)
        for path in documents:
            server.routes[path].fault, server.routes[path].stall = "stall", 0.05
        command, env = crawl_command(server, tmp_path, CONCURRENT_REQUESTS_PER_DOMAIN=2)
        crawl = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(list((tmp_path / "agreements").rglob("*.pdf"))) >= 20:
                break
            time.sleep(0.05)
        crawl.send_signal(how)
        assert crawl.wait(timeout=60) != 0
        assert 20 <= len(list((tmp_path / "agreements").rglob("*.pdf"))) < len(documents)
        archive_is_consistent(tmp_path, served(server))

        for path in documents:
            server.routes[path].fault = ""
        result = run_crawl(server, tmp_path)
        assert archive_is_consistent(tmp_path, served(server)) == []
    assert result.returncode == 0, result.stderr[-2000:]
    pdfs = [p.read_bytes() for p in (tmp_path / "agreements").rglob("*.pdf")]
    assert len(pdfs) == len(set(pdfs)) == len(documents) + 3  # each document exactly once
    assert not list((tmp_path / ".incoming").iterdir())


def limit_file_size() -> None:
    # As a full disk would, writing past this size fails (EFBIG here, ENOSPC there).
    resource.setrlimit(resource.RLIMIT_FSIZE, (4_000_000, 4_000_000))


def test_a_full_disk_fails_the_one_write_and_harms_nothing(tmp_path):
    big = "/doclib/287gMOA/DeafSmithCoTX_WSO_MOA_031725.pdf"
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        assert run_crawl(server, tmp_path).returncode == 0
        before = {p: p.read_bytes() for p in (tmp_path / "agreements").rglob("*.pdf")}
        bodies = served(server)
        # ICE replaces one document with a version too large for what is left of the disk.
        server.routes[big] = Route(fake_pdf(big) + b"%" * 6_000_000, "application/pdf",
                                   last_modified=1760000000.0)
        result = run_crawl(server, tmp_path, preexec_fn=limit_file_size,
                           DOCUMENTS_REVALIDATE_DAYS=0)
        archive_is_consistent(tmp_path, bodies | served(server))
    assert result.returncode == 0, result.stderr[-2000:]
    (failure,) = read_csv(tmp_path / "data" / "failures.csv")
    assert failure["url"].endswith(big)
    assert failure["reason"].startswith("could not store agreements/TEXAS/")
    assert failure["reason"].endswith(": File too large; check the archive's disk")
    assert {p: p.read_bytes() for p in (tmp_path / "agreements").rglob("*.pdf")} == before
    assert not list((tmp_path / ".incoming").iterdir())
