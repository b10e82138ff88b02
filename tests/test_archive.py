"""Safe paths, the manifest, and a store that never replaces what it holds."""

from __future__ import annotations

import datetime as dt
from io import BytesIO

import pytest

from tracking287g.archive import (
    AtomicFSFilesStore,
    Manifest,
    connect,
    document_path,
    safe_component,
    sheet_path,
    with_suffix_number,
)


@pytest.mark.parametrize("text, safe", [
    ("Finney County Sheriff’s Office", "Finney_County_Sheriff’s_Office"),
    ("../../etc", "_.._etc"),
    ("..", "_"),
    ("/absolute/path", "_absolute_path"),
    ("C:\\Windows", "C__Windows"),
    ("a\x00b", "a_b"),
    ("CON", "_CON"),
    ("con.pdf", "_con.pdf"),
    ("LPT1", "_LPT1"),
    ("Condado de Doña Ana", "Condado_de_Doña_Ana"),
    ("  trailing dot. ", "trailing_dot"),
    ("", "_"),
])
def test_safe_component(text, safe):
    assert safe_component(text) == safe


def test_very_long_name_is_shortened_and_keeps_its_extension():
    name = "x" * 300 + ".pdf"
    safe = safe_component(name)
    assert len(safe.encode()) <= 120
    assert safe.endswith(".pdf")
    assert safe != safe_component("x" * 299 + "y.pdf")  # a hash keeps long names apart


def test_document_path_layout():
    path = document_path("TEXAS", "Smith County Sheriff’s Office", dt.date(2025, 7, 18),
                         "SmithCo TX.pdf")
    assert path == "agreements/TEXAS/Smith_County_Sheriff’s_Office/2025-07-18/SmithCo_TX.pdf"
    assert document_path("", "../..", dt.date(2025, 7, 18), "") == (
        "agreements/UNKNOWN_STATE/UNKNOWN_AGENCY/2025-07-18/document.pdf")


def test_sheet_path_uses_the_crawl_start():
    started = dt.datetime(2025, 7, 19, 15, 16, 37, tzinfo=dt.UTC)
    assert sheet_path(started, "participatingAgencies07182025pm.xlsx") == (
        "sheets/20250719_151637/participatingAgencies07182025pm.xlsx")


def test_with_suffix_number():
    assert with_suffix_number("a/b/name.pdf", 2) == "a/b/name-2.pdf"


def test_manifest_versions(tmp_path):
    manifest = Manifest(connect(tmp_path))
    day1 = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
    day2 = dt.datetime(2025, 7, 2, tzinfo=dt.UTC)
    common = {"url": "https://www.ice.gov/a.pdf", "kind": "document", "published_name": "a.pdf",
              "size": 3, "last_modified": ""}
    first = manifest.record(**common, sha256="1" * 64, path="p/a.pdf", now=day1)
    again = manifest.record(**common, sha256="1" * 64, path="p/a.pdf", now=day2)
    assert (again.id, again.first_seen, again.last_seen) == (first.id, day1.isoformat(),
                                                             day2.isoformat())
    changed = manifest.record(**common, sha256="2" * 64, path="p/a-2.pdf", now=day2)
    assert manifest.latest_version(common["url"]).id == changed.id
    assert manifest.by_sha256("1" * 64).path == "p/a.pdf"
    assert manifest.path_taken("p/a-2.pdf")
    assert manifest.count("document") == 2


def test_store_never_replaces_a_file_and_leaves_no_partial_file(tmp_path):
    store = AtomicFSFilesStore(str(tmp_path))
    store.persist_file("sheets/x/a.xlsx", BytesIO(b"first"), info=None)
    with pytest.raises(FileExistsError):
        store.persist_file("sheets/x/a.xlsx", BytesIO(b"second"), info=None)
    assert (tmp_path / "sheets/x/a.xlsx").read_bytes() == b"first"
    assert sorted(p.name for p in (tmp_path / "sheets/x").iterdir()) == ["a.xlsx"]
