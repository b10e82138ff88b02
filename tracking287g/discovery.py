"""Which links on ICE's 287(g) page are the participating and pending sheets. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from pathlib import PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

from parsel import Selector

from tracking287g.normalize import (
    clean_text,
    normalize_model,
    normalize_signed,
    normalize_state,
    normalize_url,
)

DEFAULT_START_URL = "https://www.ice.gov/identify-and-arrest/287g"

# 2025: /doclib/about/offices/ero/287g/participatingAgencies07182025pm.xlsx (and variants).
_SHEET_PATH = re.compile(r"/doclib/about/offices/ero/287g/[^/]+\.xlsx$", re.I)
# 2026: /file-download/download/public/<id>, named only by the link text.
_DOWNLOAD_PATH = re.compile(r"/file-download/download/public/\d+/?$", re.I)


@dataclass(frozen=True)
class SheetLink:
    list_name: str  # "participating" or "pending"
    url: str
    text: str


def list_of(words: str) -> str | None:
    """Which list a file name or link text names: "pending", "participating" or None."""
    words = words.lower()
    if "pending" in words:
        return "pending"
    if "participating" in words:
        return "participating"
    return None


def find_sheet_links(html: str, base_url: str) -> tuple[dict[str, SheetLink], list[SheetLink]]:
    """The first link to each list, and any further links to a list already found."""
    found: dict[str, SheetLink] = {}
    extra: list[SheetLink] = []
    seen_urls = set()
    for anchor in Selector(text=html).css("a[href]"):
        href = (anchor.attrib.get("href") or "").strip()
        text = " ".join(" ".join(anchor.css("::text").getall()).split())
        url = urljoin(base_url, href)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            continue
        path = unquote(parts.path)
        if _SHEET_PATH.search(path):
            list_name = list_of(PurePosixPath(path).name) or list_of(text)
        elif _DOWNLOAD_PATH.search(path):
            list_name = list_of(text)
        else:
            continue
        if list_name is None or url in seen_urls:
            continue
        seen_urls.add(url)
        link = SheetLink(list_name, url, text)
        if list_name in found:
            extra.append(link)
        else:
            found[list_name] = link
    return found, extra


def published_name(content_disposition: bytes | str | None, url: str) -> str:
    """The file name ICE published: Content-Disposition first, else the URL's last segment."""
    if content_disposition:
        if isinstance(content_disposition, bytes):
            content_disposition = content_disposition.decode("latin-1")
        message = Message()
        message["content-disposition"] = content_disposition
        name = message.get_filename()
        if name:
            return PurePosixPath(name.replace("\\", "/")).name.strip()
    return unquote(PurePosixPath(urlsplit(url).path).name).strip()


# "Etowah County Sheriff's Office [JEM] (Jun. 9, 2020)"
_ARCHIVE_ENTRY = re.compile(r"^(?P<agency>.*?)\s*\[(?P<model>[^\]]+)\]\s*\((?P<date>[^)]*)\)\s*$")
_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}


def archive_date(text: str) -> str:
    """`Jun. 9, 2020` / `Sept. 10, 2019` / `May 5, 2019` -> ISO; other text is kept."""
    match = re.match(r"^([A-Za-z]{3})[a-z]*\.?\s+(\d{1,2}),?\s+(\d{4})$", text.strip())
    if match and match.group(1).lower() in _MONTHS:
        month = _MONTHS[match.group(1).lower()]
        return normalize_signed(f"{month}/{match.group(2)}/{match.group(3)}").value
    return text.strip()


@dataclass(frozen=True)
class ArchiveEntry:
    state: str
    agency: str
    model: str
    date: str
    url: str
    text: str


def parse_archive_page(html: str, base_url: str) -> list[ArchiveEntry]:
    """Entries of ICE's 287(g) archive page: an accordion per state, a link per agreement."""
    entries = []
    for title in Selector(text=html).css("h3.accordion-title"):
        state = normalize_state(" ".join(title.css("::text").getall())).value
        panel = title.xpath("following::div[contains(concat(' ', normalize-space(@class), ' '),"
                            " ' accordion-description ')][1]")
        for anchor in panel.css("li > a[href]"):
            text = clean_text(" ".join(anchor.css("::text").getall()))
            url = normalize_url(urljoin(base_url, anchor.attrib["href"].strip())).value
            match = _ARCHIVE_ENTRY.match(text)
            if not url:
                continue
            if match:
                entries.append(ArchiveEntry(state, clean_text(match.group("agency")),
                                            normalize_model(match.group("model")).value,
                                            archive_date(match.group("date")), url, text))
            else:
                entries.append(ArchiveEntry(state, text, "", "", url, text))
    return entries
