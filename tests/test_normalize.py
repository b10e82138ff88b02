"""Every normalisation rule, on the real rows where ICE's sheets break it."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import EARLIEST_PARTICIPATING, LATEST_PARTICIPATING, sheet_row
from tracking287g.normalize import (
    CANONICAL_MODELS,
    normalize_county,
    normalize_model,
    normalize_signed,
    normalize_state,
    normalize_url,
    unwrap_safelinks,
)


def test_trailing_space_in_model_is_dropped_and_raw_kept():
    row = sheet_row(LATEST_PARTICIPATING, 314)  # St. Johns County, "Jail Enforcement Model "
    assert row.model == "Jail Enforcement Model"
    assert row.raw["model"] == "Jail Enforcement Model "
    assert row.county == "St. Johns County"
    assert row.notes == []


def test_every_model_in_the_latest_sheet_is_canonical(latest_rows):
    assert {row.model for row in latest_rows} == set(CANONICAL_MODELS)


@pytest.mark.parametrize("typo, model", [
    ("Warrant Services Officer", "Warrant Service Officer"),
    ("Task Force Officer", "Task Force Model"),
    ("task  force model ", "Task Force Model"),
    ("JAIL ENFORCEMENT MODEL", "Jail Enforcement Model"),
])
def test_model_typos_map_to_the_canonical_models(typo, model):
    assert normalize_model(typo).value == model
    assert normalize_model(typo).note == ""


def test_unknown_model_is_kept_and_reported():
    result = normalize_model("Border Support Model ")
    assert result.value == "Border Support Model"
    assert "not one of the three" in result.note


def test_misspelt_state_is_read_as_the_state_and_reported():
    row = sheet_row("sheets_20250704_151659/participatingAgencies07032025pm.xlsx", 723)
    assert row.raw["state"] == "UTAHJ"
    assert row.state == "UTAH"
    assert row.notes == ["state 'UTAHJ' read as 'UTAH'"]


def test_state_case_typo_is_fixed_silently():
    row = sheet_row("sheets_20250608_151716/pendingAgencies06062025am.xlsx", 3)
    assert (row.raw["state"], row.state, row.notes) == ("AlABAMA", "ALABAMA", [])


def test_unknown_state_is_kept_and_reported():
    assert normalize_state("ATLANTIS").note == "state 'ATLANTIS' is not a US state or territory"


@pytest.mark.parametrize("relative, row_number, raw", [
    (EARLIEST_PARTICIPATING, 264, "#N/A"),
    ("sheets_20250712_151631/pendingAgencies07112025pm.xlsx", 14, "#NA"),
])
def test_county_placeholders_become_empty(relative, row_number, raw):
    row = sheet_row(relative, row_number)
    assert (row.raw["county"], row.county) == (raw, "")


@pytest.mark.parametrize("placeholder", ["N/A", "#N/A", "#NA", " n/a ", ""])
def test_every_county_placeholder_is_empty(placeholder):
    assert normalize_county(placeholder).value == ""


def test_agency_type_variants():
    municipal = sheet_row("sheets_20250710_151854/pendingAgencies07102025am.xlsx", 8)
    assert (municipal.raw["agency_type"], municipal.agency_type) == ("Municipal", "Municipality")
    county = sheet_row("sheets_20250719_151637/pendingAgencies07182025pm.xlsx", 14)
    assert (county.raw["agency_type"], county.agency_type) == ("County ", "County")
    assert county.agency == "Texas County's Sheriff's Office"


def test_curly_apostrophe_becomes_straight():
    row = sheet_row(EARLIEST_PARTICIPATING, 300)
    assert row.raw["agency"] == "Power County Sheriff’s Office"
    assert row.agency == "Power County Sheriff's Office"


def test_signed_as_a_date_cell():
    row = sheet_row(EARLIEST_PARTICIPATING, 300)
    assert (row.raw["signed"], row.signed_date) == ("2020-11-20 00:00:00", "2020-11-20")


@pytest.mark.parametrize("relative, row_number, raw, iso", [
    ("sheets_20250522_151740/participatingAgencies05202025pm.xlsx", 60, "05/082025", "2025-05-08"),
    (LATEST_PARTICIPATING, 775, "7/72025", "2025-07-07"),
])
def test_signed_text_missing_a_separator_is_repaired_and_reported(relative, row_number, raw, iso):
    row = sheet_row(relative, row_number)
    assert (row.raw["signed"], row.signed_date) == (raw, iso)
    assert row.notes == [f"signed date {raw!r} read as {iso}"]


def test_signed_as_an_excel_serial():
    assert normalize_signed(45714).value == "2025-02-26"
    assert normalize_signed(45714.0).value == "2025-02-26"


@pytest.mark.parametrize("text", ["6/30/20026", "13/45/2025", "2/30/2025", "soon", "1/1/1900"])
def test_impossible_signed_date_keeps_its_raw_text_and_is_reported(text):
    result = normalize_signed(text)
    assert result.value == text
    assert result.note.startswith(f"signed date {text!r}")


def test_signed_date_text_in_other_formats():
    assert normalize_signed("6/30/2025").value == "2025-06-30"
    assert normalize_signed("06-30-25").value == "2025-06-30"
    assert normalize_signed("2025-06-30").value == "2025-06-30"
    assert normalize_signed(dt.datetime(2025, 6, 30, 0, 0)).value == "2025-06-30"


def test_link_pending_with_trailing_space_and_no_link():
    row = sheet_row(LATEST_PARTICIPATING, 314)
    assert row.moa_status == "pending"
    assert row.moa_url == ""


def test_link_addendum_text_with_non_breaking_spaces_and_no_hyperlink():
    row = sheet_row("sheets_20250522_151740/participatingAgencies05202025pm.xlsx", 480)
    assert row.raw["moa"] == "link\xa0|\xa0addendum"
    assert (row.moa_status, row.moa_url, row.addendum_url) == ("none", "", "")


def test_safelinks_addendum_is_unwrapped():
    row = sheet_row(LATEST_PARTICIPATING, 165)  # Hillsborough County Sheriff's Office
    assert row.raw["addendum_link"].startswith("https://gcc02.safelinks.protection.outlook.com/")
    assert row.addendum_url == ("https://www.ice.gov/doclib/287gMOA/"
                                "hIllsboroughCountySherrifsOffice_WSO_MOA_06102025.pdf")
    assert row.moa_url == ("https://www.ice.gov/doclib/287gMOA/"
                           "hIllsboroughCountySherrifsOffice_WSO_MOA_03122025.pdf")


def test_no_url_in_the_latest_sheet_is_left_wrapped(latest_rows):
    urls = [u for row in latest_rows for u in (row.moa_url, row.addendum_url) if u]
    assert len(urls) > 600
    assert all(u.startswith("https://www.ice.gov/doclib/") for u in urls)


def test_safelink_with_an_encoded_space_in_its_target():
    row = sheet_row(LATEST_PARTICIPATING, 723)  # Montgomery County, TX
    assert row.moa_url == "https://www.ice.gov/doclib/287gMOA/287gJEM_%20montgomeryCoTX_06-09-2020.pdf"


def test_http_ice_link_is_upgraded_to_https():
    row = sheet_row(EARLIEST_PARTICIPATING, 465)  # Deaf Smith County
    assert row.raw["moa_link"].startswith("http://www.ice.gov/")
    assert row.moa_url == "https://www.ice.gov/doclib/287gMOA/DeafSmithCoTX_WSO_MOA_031725.pdf"


def test_bare_url_cell_text_is_a_link():
    row = sheet_row(EARLIEST_PARTICIPATING, 264)
    assert row.moa_url == "https://www.ice.gov/doclib/287gMOA/UnivFLPDFL_TFM_MOA_041525.pdf"
    assert row.moa_status == "linked"


@pytest.mark.parametrize("broken, fixed", [
    ("https:/www.ice.gov/doclib/287gMOA/a.pdf", "https://www.ice.gov/doclib/287gMOA/a.pdf"),
    ("http:www.ice.gov/doclib/287gMOA/a.pdf", "https://www.ice.gov/doclib/287gMOA/a.pdf"),
    ("https:///www.ice.gov/doclib/a.pdf", "https://www.ice.gov/doclib/a.pdf"),
    ("www.ice.gov/doclib/a.pdf", "https://www.ice.gov/doclib/a.pdf"),
    (" https://www.ice.gov/doclib/a b.pdf ", "https://www.ice.gov/doclib/a%20b.pdf"),
    ("http://127.0.0.1:8000/doclib/a.pdf", "http://127.0.0.1:8000/doclib/a.pdf"),
])
def test_malformed_urls_are_repaired(broken, fixed):
    assert normalize_url(broken).value == fixed


def test_malformed_url_inside_a_safelink():
    wrapped = ("https://gcc02.safelinks.protection.outlook.com/?url=https%3A%2Fwww.ice.gov"
               "%2Fdoclib%2F287gMOA%2Fa.pdf&data=05%7C02&reserved=0")
    assert normalize_url(wrapped).value == "https://www.ice.gov/doclib/287gMOA/a.pdf"


@pytest.mark.parametrize("link", ["javascript:alert(1)", "file:///etc/passwd",
                                  "ftp://www.ice.gov/a.pdf", "mailto:ero@ice.dhs.gov"])
def test_other_schemes_are_not_links(link):
    result = normalize_url(link)
    assert result.value == ""
    assert "not an http(s) URL" in result.note


def test_unwrap_safelinks_leaves_other_urls_alone():
    assert unwrap_safelinks("https://www.ice.gov/a.pdf?url=x") == "https://www.ice.gov/a.pdf?url=x"
