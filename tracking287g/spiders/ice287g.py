"""ICE's 287(g) page -> its sheets -> one item per sheet row (documents go to the pipelines)."""

from __future__ import annotations

import functools
from urllib.parse import urljoin, urlsplit

import scrapy
from scrapy.exceptions import CloseSpider

from tracking287g import discovery, errors, sheets
from tracking287g.items import AgreementRow, ArchivedAgreementItem, MissingListItem, SheetItem
from tracking287g.normalize import normalize_row

FATAL_STAT = "tracking287g/fatal"


def describe_failure(failure) -> str:
    return errors.describe(failure.value)


class Ice287gSpider(scrapy.Spider):
    name = "ice287g"

    def __init__(self, start_url: str = discovery.DEFAULT_START_URL,
                 archive_url: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.start_url = self._checked_url("start_url", start_url)
        # ICE's page of older agreements; "none" skips it.
        if archive_url is None:
            archive_url = urljoin(self.start_url, "/287g-archive")
        self.archive_url = (None if archive_url.lower() == "none"
                            else self._checked_url("archive_url", archive_url))
        self.linked_documents: set[str] = set()

    @staticmethod
    def _checked_url(name: str, url: str) -> str:
        parts = urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{name} must be an http(s) URL such as {discovery.DEFAULT_START_URL}, "
                f"got {url!r}"
            )
        return url

    async def start(self):
        yield scrapy.Request(self.start_url, callback=self.parse, errback=self.page_failed,
                             dont_filter=True)

    def fail(self, reason: str, message: str):
        """End the crawl as failed; the crawl command exits non-zero with `message`."""
        self.logger.error(message)
        self.crawler.stats.set_value(FATAL_STAT, message)
        raise CloseSpider(reason)

    def page_failed(self, failure):
        self.fail("page_unavailable",
                  f"could not fetch the 287(g) page {self.start_url}: {describe_failure(failure)}")

    def parse(self, response):
        if not isinstance(response, scrapy.http.TextResponse):
            self.fail("page_unavailable",
                      f"expected an HTML page at {response.url}, got "
                      f"{sheets.describe_bytes(response.body)}")
        found, extra = discovery.find_sheet_links(response.text, response.url)
        for link in extra:
            self.logger.warning("Ignoring a second %s sheet link %s (using %s)",
                                link.list_name, link.url, found[link.list_name].url)
        if "participating" not in found:
            self.fail("no_participating_sheet",
                      f"expected a link to the participating-agencies sheet on {response.url}, "
                      "found none; ICE may have changed the page: open it and update "
                      "tracking287g/discovery.py")
        if "pending" not in found:
            self.logger.info("ICE's page links no pending sheet")
            yield MissingListItem("pending", "not_published")
        for link in found.values():
            yield scrapy.Request(link.url, callback=self.parse_sheet, errback=self.sheet_failed,
                                 cb_kwargs={"link": link}, dont_filter=True)

    @functools.cached_property
    def document_hosts(self) -> set[str]:
        """Hosts documents may come from: ICE's, the start URL's and the archive page's."""
        hosts = {h.lower() for h in self.settings.getlist("DOCUMENT_HOSTS")}
        for url in (self.start_url, self.archive_url):
            if url:
                hosts.add(urlsplit(url).hostname.lower())
        return hosts

    def refusal(self, url: str) -> str:
        """Why a document URL is not fetched, or "" when it may be."""
        host = (urlsplit(url).hostname or "").lower()
        if any(host == h or host.endswith("." + h) for h in self.document_hosts):
            return ""
        return (f"not fetched: host {host!r} is neither ICE's nor the start URL's "
                "(add it to DOCUMENT_HOSTS if it is a real source)")

    def documents_of(self, row) -> tuple[list[str], list[dict]]:
        """A row's document URLs to fetch, and the links refused with the reason."""
        urls, refused = [], []
        for name in ("moa", "addendum"):
            url = getattr(row, f"{name}_url")
            raw = row.raw.get(f"{name}_link") or ""
            if url:
                reason = self.refusal(url)
                if reason:
                    refused.append({"url": url, "reason": reason})
                else:
                    urls.append(url)
            elif raw:  # a hyperlink normalisation could not use (javascript:, file:, ...)
                refused.append({"url": raw, "reason": f"not fetched: {raw!r} is not an "
                                                      "http(s) URL"})
        return urls, refused

    def count_documents(self, urls) -> None:
        """Progress reports count against every document linked so far, once each."""
        self.linked_documents.update(urls)
        self.crawler.stats.set_value("tracking287g/documents_linked", len(self.linked_documents))

    def archive_failed(self, failure):
        detail = describe_failure(failure)
        self.logger.warning("Could not fetch ICE's archive page %s: %s", self.archive_url, detail)
        yield MissingListItem("archive", "failed", self.archive_url, detail)

    def parse_archive(self, response):
        if not isinstance(response, scrapy.http.TextResponse):
            found = sheets.describe_bytes(response.body)
            yield MissingListItem("archive", "failed", response.url,
                                  f"expected an HTML page, got {found}")
            return
        entries = discovery.parse_archive_page(response.text, response.url)
        self.logger.info("Archive page %s: %d agreements", response.url, len(entries))
        allowed = [e for e in entries if not self.refusal(e.url)]
        self.count_documents(entry.url for entry in allowed)
        for entry in entries:
            reason = self.refusal(entry.url)
            yield ArchivedAgreementItem(**vars(entry), file_urls=[] if reason else [entry.url],
                                        failures=[{"url": entry.url, "reason": reason}]
                                        if reason else [])

    def sheet_failed(self, failure):
        link = failure.request.cb_kwargs["link"]
        detail = describe_failure(failure)
        if link.list_name == "participating":
            self.fail("participating_sheet_unavailable",
                      f"could not download the participating sheet {link.url}: {detail}")
        self.logger.warning("Could not download the %s sheet %s: %s", link.list_name, link.url,
                            detail)
        yield MissingListItem(link.list_name, "failed", link.url, detail)

    def parse_sheet(self, response, link: discovery.SheetLink):
        name = discovery.published_name(response.headers.get("Content-Disposition"), response.url)
        try:
            parsed = sheets.parse_workbook(response.body, link.list_name)
        except sheets.SheetError as exc:
            if link.list_name == "participating":
                if sheets.is_workbook(response.body):
                    # A real workbook in a layout we cannot read: keep the raw file.
                    yield SheetItem(list_name=link.list_name, url=response.url,
                                    published_name=name, body=response.body,
                                    last_modified="", worksheet="", row_count=0,
                                    suspect=str(exc))
                self.fail("participating_sheet_unreadable",
                          f"participating sheet {name} ({response.url}): {exc}")
            self.logger.warning("Pending sheet %s (%s): %s", name, response.url, exc)
            yield MissingListItem(link.list_name, "failed", response.url, str(exc))
            return
        self.logger.info("%s sheet %s: %d rows (columns %s)", link.list_name, name,
                         len(parsed.rows), ", ".join(parsed.columns.values()))
        if parsed.missing_optional:
            self.logger.warning("%s sheet %s has no %s column: those fields stay empty",
                                link.list_name, name,
                                ", ".join(f.upper() for f in parsed.missing_optional))
        yield SheetItem(
            list_name=link.list_name,
            url=response.url,
            published_name=name,
            body=response.body,
            last_modified=(response.headers.get("Last-Modified") or b"").decode("latin-1"),
            worksheet=parsed.worksheet,
            row_count=len(parsed.rows),
        )
        rows = [(raw.row_number, normalize_row(raw.values, raw.links)) for raw in parsed.rows]
        documents = [(number, row, *self.documents_of(row)) for number, row in rows]
        # Counted before the rows go out, so progress reports count against the real total.
        self.count_documents(url for _, _, urls, _ in documents for url in urls)
        for row_number, row, urls, refused in documents:
            yield AgreementRow(
                list_name=link.list_name, sheet_name=name, row_number=row_number,
                state=row.state, agency=row.agency, agency_type=row.agency_type,
                county=row.county, model=row.model, signed_date=row.signed_date,
                moa_status=row.moa_status, moa_url=row.moa_url, addendum_url=row.addendum_url,
                raw=row.raw, notes=row.notes, file_urls=urls, failures=refused,
            )
        if link.list_name == "participating" and self.archive_url:
            # Only once the main list is known good: a failed crawl fetches nothing more.
            yield scrapy.Request(self.archive_url, callback=self.parse_archive,
                                 errback=self.archive_failed, dont_filter=True)
