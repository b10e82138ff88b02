"""Finding the sheets on ICE's page, and the names they were published under."""

from __future__ import annotations

import pytest

from tests.mirror import PAGE_2025, PAGE_2026
from tracking287g.discovery import find_sheet_links, published_name

BASE = "https://www.ice.gov/identify-and-arrest/287g"


def test_2025_page_relative_and_absolute_links():
    page = PAGE_2025.format(
        participating="/doclib/about/offices/ero/287g/participatingAgencies07182025pm.xlsx",
        pending="https://www.ice.gov/doclib/about/offices/ero/287g/pendingAgencies07182025pm.xlsx")
    found, extra = find_sheet_links(page, BASE)
    assert found["participating"].url == (
        "https://www.ice.gov/doclib/about/offices/ero/287g/participatingAgencies07182025pm.xlsx")
    assert found["pending"].url == (
        "https://www.ice.gov/doclib/about/offices/ero/287g/pendingAgencies07182025pm.xlsx")
    assert extra == []


def test_2026_page_file_download_link_found_by_its_text():
    found, _ = find_sheet_links(PAGE_2026, BASE)
    assert list(found) == ["participating"]
    assert found["participating"].url == "https://www.ice.gov/file-download/download/public/51234"
    assert found["participating"].text == "View 287(g) Participating Agencies"


@pytest.mark.parametrize("name, list_name", [
    ("participatingAgencies07182025pm.xlsx", "participating"),
    ("ParticipatingAgency091826am.xlsx", "participating"),
    ("pendingAgencies07112025am_b.xlsx", "pending"),
    ("participating%20Agencies%2007%2018%202025.xlsx", "participating"),
    ("PendingAgencies.XLSX", "pending"),
])
def test_sheet_name_variants(name, list_name):
    page = f'<a href="/doclib/about/offices/ero/287g/{name}">Download</a>'
    found, _ = find_sheet_links(page, BASE)
    assert list(found) == [list_name]


def test_other_links_are_ignored():
    page = """
    <a href="/doclib/about/offices/ero/287g/287gFactSheet.pdf">Participating fact sheet</a>
    <a href="/doclib/detention/FY25_participatingFacilities.xlsx">Detention</a>
    <a href="/doclib/about/offices/ero/287g/trainingSchedule.xlsx">Training</a>
    <a href="/file-download/download/public/999">View ERO Annual Report</a>
    <a href="javascript:void(0)">Participating agencies</a>
    """
    assert find_sheet_links(page, BASE) == ({}, [])


def test_a_second_link_to_the_same_list_is_reported_not_used():
    page = """<a href="/doclib/about/offices/ero/287g/participatingAgencies1.xlsx">a</a>
              <a href="/doclib/about/offices/ero/287g/participatingAgencies1.xlsx">same</a>
              <a href="/doclib/about/offices/ero/287g/participatingAgencies2.xlsx">b</a>"""
    found, extra = find_sheet_links(page, BASE)
    assert found["participating"].url.endswith("participatingAgencies1.xlsx")
    assert [link.url.rsplit("/", 1)[1] for link in extra] == ["participatingAgencies2.xlsx"]


@pytest.mark.parametrize("header, name", [
    (b'attachment; filename="participatingAgencies11302026am.xlsx"',
     "participatingAgencies11302026am.xlsx"),
    (b"attachment; filename=ParticipatingAgency091826am.xlsx", "ParticipatingAgency091826am.xlsx"),
    (b"attachment; filename*=UTF-8''participating%20Agencies%20Dec.xlsx",
     "participating Agencies Dec.xlsx"),
    (b'attachment; filename="../../etc/passwd"', "passwd"),
])
def test_published_name_from_content_disposition(header, name):
    assert published_name(header, "https://www.ice.gov/file-download/download/public/1") == name


def test_published_name_from_the_url():
    url = "https://www.ice.gov/doclib/287gMOA/BellairePoliceDept_TFM_MOA_02.28.25%20508.pdf"
    assert published_name(None, url) == "BellairePoliceDept_TFM_MOA_02.28.25 508.pdf"
    assert published_name(b"inline", url) == "BellairePoliceDept_TFM_MOA_02.28.25 508.pdf"
