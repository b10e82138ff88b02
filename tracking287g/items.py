"""The items the spider yields, declared once and used through itemadapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from tracking287g.normalize import AgreementFields


@dataclass
class SheetItem:
    """A participating or pending sheet that was downloaded and read."""

    list_name: str
    url: str
    published_name: str
    body: bytes = field(repr=False)
    last_modified: str
    worksheet: str
    row_count: int
    # Why the sheet cannot be trusted (it was read but lacks the expected columns).
    suspect: str = ""
    # Filled in by the archive pipeline.
    sha256: str = ""
    path: str = ""
    status: str = ""  # "archived" or "already_archived"


@dataclass
class MissingListItem:
    """A list with no sheet this crawl: not published (normal for pending) or failed."""

    list_name: str
    reason: str  # "not_published" or "failed"
    url: str = ""
    detail: str = ""


@dataclass
class AgreementRow(AgreementFields):
    """One row of a sheet, normalised, with the raw text of every field beside it."""

    list_name: str
    sheet_name: str
    row_number: int
    raw: dict[str, str]
    notes: list[str]
    # FilesPipeline input and output: the document URLs, and what became of each.
    file_urls: list[str] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


@dataclass
class ArchivedAgreementItem:
    """An entry of ICE's archive page of older agreements (https://www.ice.gov/287g-archive)."""

    state: str
    agency: str
    model: str
    date: str  # ISO, or the text as published when it is not a date
    url: str
    text: str  # the link text as published
    file_urls: list[str] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
