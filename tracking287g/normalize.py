"""Every rule that turns a raw sheet cell into a clean value lives here.

Each rule returns the normalised value and, when it had to guess or could not make sense
of the input, a note. Notes are exported beside the row so that readers can see what was
repaired; an unrecognised value is kept (cleaned), never dropped.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit, urlunsplit

CANONICAL_MODELS = ("Jail Enforcement Model", "Task Force Model", "Warrant Service Officer")

# Keys are lower-case letters only, so case, spacing and punctuation never matter.
_MODEL_ALIASES = {
    "jailenforcementmodel": "Jail Enforcement Model",
    "jailenforcement": "Jail Enforcement Model",
    "jem": "Jail Enforcement Model",
    "taskforcemodel": "Task Force Model",
    "taskforce": "Task Force Model",
    "taskforceofficer": "Task Force Model",  # a real typo in ICE's sheets
    "tfm": "Task Force Model",
    "warrantserviceofficer": "Warrant Service Officer",
    "warrantservicesofficer": "Warrant Service Officer",  # a real typo in ICE's sheets
    "warrantserviceofficers": "Warrant Service Officer",
    "wso": "Warrant Service Officer",
}

_AGENCY_TYPES = {
    "county": "County",
    "municipality": "Municipality",
    "municipal": "Municipality",
    "stateagency": "State Agency",
    "state": "State Agency",
    "federalagency": "Federal Agency",
    "tribal": "Tribal",
}

US_STATES = (
    "ALABAMA", "ALASKA", "ARIZONA", "ARKANSAS", "CALIFORNIA", "COLORADO", "CONNECTICUT",
    "DELAWARE", "DISTRICT OF COLUMBIA", "FLORIDA", "GEORGIA", "HAWAII", "IDAHO", "ILLINOIS",
    "INDIANA", "IOWA", "KANSAS", "KENTUCKY", "LOUISIANA", "MAINE", "MARYLAND",
    "MASSACHUSETTS", "MICHIGAN", "MINNESOTA", "MISSISSIPPI", "MISSOURI", "MONTANA",
    "NEBRASKA", "NEVADA", "NEW HAMPSHIRE", "NEW JERSEY", "NEW MEXICO", "NEW YORK",
    "NORTH CAROLINA", "NORTH DAKOTA", "OHIO", "OKLAHOMA", "OREGON", "PENNSYLVANIA",
    "RHODE ISLAND", "SOUTH CAROLINA", "SOUTH DAKOTA", "TENNESSEE", "TEXAS", "UTAH",
    "VERMONT", "VIRGINIA", "WASHINGTON", "WEST VIRGINIA", "WISCONSIN", "WYOMING",
    "AMERICAN SAMOA", "GUAM", "NORTHERN MARIANA ISLANDS", "PUERTO RICO",
    "U.S. VIRGIN ISLANDS",
)

# Spreadsheet placeholders for "no value" (seen in COUNTY: #N/A, N/A, #NA).
_PLACEHOLDERS = {"", "#n/a", "n/a", "#na", "na", "none", "null", "-", "--", "#value!", "#ref!"}

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201b": "'",
                              "\u00b4": "'", "\u2032": "'", "\u201c": '"', "\u201d": '"'})

# Excel's day zero for serial dates (the 1900 leap-year bug makes it 1899-12-30).
_EXCEL_EPOCH = dt.date(1899, 12, 30)
# Agreements under 287(g) exist since 1996; later than this is a typo, not a date.
_EARLIEST_SIGNED = dt.date(1995, 1, 1)
_LATEST_SIGNED = dt.date(2100, 1, 1)

_SAFELINKS_HOST = re.compile(r"(^|\.)safelinks\.protection\.outlook\.com$", re.I)
_ICE_HOST = re.compile(r"(^|\.)ice\.gov$", re.I)


def _cached(rule):
    """Memoise a rule: ICE's sheets repeat the same values in every version. Values that
    cannot be dictionary keys are normalised afresh."""
    cached = functools.lru_cache(maxsize=65536)(rule)

    @functools.wraps(rule)
    def wrapper(value):
        try:
            return cached(value)
        except TypeError:
            return rule(value)

    return wrapper


@dataclass(frozen=True)
class Normalised:
    """A normalised value and what had to be done to get it."""

    value: str
    note: str = ""


def clean_text(value: object) -> str:
    """Text with every kind of space folded to one, trimmed, and straight apostrophes."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = unicodedata.normalize("NFC", str(value)).translate(_APOSTROPHES)
    # \s covers the non-breaking and other unicode spaces ICE's cells contain.
    return re.sub(r"\s+", " ", text).strip()


def raw_text(value: object) -> str:
    """The cell exactly as ICE typed it, as text (dates in ISO form)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


@_cached
def normalize_state(value: object) -> Normalised:
    text = clean_text(value).upper()
    if not text or text in US_STATES:
        return Normalised(text)
    guess = difflib.get_close_matches(text, US_STATES, n=1, cutoff=0.85)
    if guess:
        return Normalised(guess[0], f"state {text!r} read as {guess[0]!r}")
    return Normalised(text, f"state {text!r} is not a US state or territory")


@_cached
def normalize_agency(value: object) -> Normalised:
    return Normalised(clean_text(value))


@_cached
def normalize_agency_type(value: object) -> Normalised:
    text = clean_text(value)
    if not text:
        return Normalised("")
    known = _AGENCY_TYPES.get(_letters(text))
    if known:
        return Normalised(known)
    return Normalised(text, f"agency type {text!r} is not a known type")


@_cached
def normalize_county(value: object) -> Normalised:
    text = clean_text(value)
    if text.lower() in _PLACEHOLDERS:
        return Normalised("")
    return Normalised(text)


@_cached
def normalize_model(value: object) -> Normalised:
    text = clean_text(value)
    if not text:
        return Normalised("", "model is empty")
    known = _MODEL_ALIASES.get(_letters(text))
    if known:
        return Normalised(known)
    return Normalised(text, f"model {text!r} is not one of the three 287(g) models")


def _plausible(day: dt.date) -> bool:
    return _EARLIEST_SIGNED <= day < _LATEST_SIGNED


@_cached
def normalize_signed(value: object) -> Normalised:
    """SIGNED as an ISO date: a real date, an Excel serial, or text (with typos repaired)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return Normalised("")
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        if _plausible(value):
            return Normalised(value.isoformat())
        return Normalised(raw_text(value), f"signed date {value.isoformat()} is implausible")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            day = _EXCEL_EPOCH + dt.timedelta(days=int(value))
        except OverflowError:
            day = None
        if day and _plausible(day):
            return Normalised(day.isoformat())
        return Normalised(raw_text(value), f"signed date {raw_text(value)!r} is not a date")
    return _parse_date_text(clean_text(value))


_MDY = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})$")
_YMD = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T].*)?$")
# "05/082025", "7/72025": the second separator is missing; day and year still split one way.
_MISSING_SEPARATOR = re.compile(r"^(\d{1,2})[/.-](\d{1,2})(\d{4})$")


def _parse_date_text(text: str) -> Normalised:
    match = _YMD.match(text)
    if match:
        year, month, day = (int(g) for g in match.groups())
        return _checked_date(text, year, month, day, "")
    match = _MDY.match(text)
    if match:
        month, day, year = (int(g) for g in match.groups())
        if year < 100:
            year += 2000
        return _checked_date(text, year, month, day, "")
    match = _MISSING_SEPARATOR.match(text)
    if match:
        month, day, year = (int(g) for g in match.groups())
        return _checked_date(text, year, month, day, f"signed date {text!r} read as {{iso}}")
    return Normalised(text, f"signed date {text!r} is not a date")


def _checked_date(text: str, year: int, month: int, day: int, note: str) -> Normalised:
    try:
        parsed = dt.date(year, month, day)
    except ValueError:
        return Normalised(text, f"signed date {text!r} is not a valid date")
    if not _plausible(parsed):
        return Normalised(text, f"signed date {text!r} is implausible")
    return Normalised(parsed.isoformat(), note.format(iso=parsed.isoformat()))


def unwrap_safelinks(url: str) -> str:
    """The real target of an Outlook safelinks URL (nested ones included)."""
    for _ in range(5):
        parts = urlsplit(url)
        if not _SAFELINKS_HOST.search(parts.hostname or ""):
            return url
        target = parse_qs(parts.query).get("url")
        if not target:
            return url
        url = target[0].strip()
    return url


_SCHEME_TYPO = re.compile(r"^(https?)\s*:\s*/*\s*", re.I)


@_cached
def normalize_url(value: object) -> Normalised:
    """An absolute http(s) URL: safelinks unwrapped, `https:/` and `http:` repaired."""
    text = clean_text(value)
    if not text:
        return Normalised("")
    original = text
    text = unwrap_safelinks(text)
    match = _SCHEME_TYPO.match(text)
    if match:
        text = f"{match.group(1).lower()}://{text[match.end():]}"
    elif text.lower().startswith("www."):
        text = "https://" + text
    text = unwrap_safelinks(text)  # a repaired scheme can reveal a safelink
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Normalised("", f"link {original!r} is not an http(s) URL")
    if parts.scheme == "http" and _ICE_HOST.search(parts.hostname):
        # ice.gov serves only https; its http links redirect there.
        parts = parts._replace(scheme="https")
    # Spaces pasted into paths are percent-encoded, as browsers do.
    return Normalised(urlunsplit(parts._replace(path=parts.path.replace(" ", "%20"))))


def is_url_text(text: str) -> bool:
    """Whether a cell's text is itself a link (a bare URL instead of a hyperlink)."""
    return bool(re.match(r"^(https?\s*:|www\.)", clean_text(text), re.I))


def document_status(text: object, url: str) -> str:
    """What the MOA cell says about the agreement document: linked, pending or none."""
    if url:
        return "linked"
    if "pending" in clean_text(text).lower():
        return "pending"
    return "none"


@dataclass
class AgreementFields:
    """An agreement's normalised fields: the one declaration the row types build on."""

    state: str
    agency: str
    agency_type: str
    county: str
    model: str
    signed_date: str
    moa_status: str  # "linked", "pending" ("link pending") or "none"
    moa_url: str
    addendum_url: str


@dataclass
class NormalisedRow(AgreementFields):
    """One sheet row: the normalised fields, the raw text of each, and the notes."""

    raw: dict[str, str]
    notes: list[str] = field(default_factory=list)


RAW_FIELDS = ("state", "agency", "agency_type", "county", "model", "signed", "moa", "addendum")


def normalize_row(values: dict[str, object], links: dict[str, str]) -> NormalisedRow:
    """Normalise one raw row: `values` are cell values and `links` cell hyperlinks, by field."""
    results = {
        "state": normalize_state(values.get("state")),
        "agency": normalize_agency(values.get("agency")),
        "agency_type": normalize_agency_type(values.get("agency_type")),
        "county": normalize_county(values.get("county")),
        "model": normalize_model(values.get("model")),
        "signed_date": normalize_signed(values.get("signed")),
    }
    urls = {}
    for name in ("moa", "addendum"):
        link = links.get(name) or ""
        if not link and is_url_text(raw_text(values.get(name))):
            link = raw_text(values.get(name))
        results[f"{name}_url"] = urls[name] = normalize_url(link)
    if urls["addendum"].value and urls["addendum"].value == urls["moa"].value:
        # One hyperlink spanning both cells is the agreement, not an addendum.
        results["addendum_url"] = Normalised("")
    raw = {name: raw_text(values.get(name)) for name in RAW_FIELDS}
    raw["moa_link"] = links.get("moa") or ""
    raw["addendum_link"] = links.get("addendum") or ""
    return NormalisedRow(
        **{name: result.value for name, result in results.items()},
        moa_status=document_status(values.get("moa"), results["moa_url"].value),
        raw=raw,
        notes=[result.note for result in results.values() if result.note],
    )
