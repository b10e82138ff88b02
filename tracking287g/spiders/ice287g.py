"""ICE's 287(g) page -> its sheets -> one item per sheet row (documents go to the pipelines)."""

from __future__ import annotations

from urllib.parse import urlsplit

import scrapy
from scrapy.exceptions import CloseSpider
from scrapy.spidermiddlewares.httperror import HttpError

from tracking287g import discovery, sheets
from tracking287g.items import AgreementRow, MissingListItem, SheetItem
from tracking287g.normalize import normalize_row

FATAL_STAT = "tracking287g/fatal"


def describe_failure(failure) -> str:
    """One line on why a request failed, with what to do where we know it."""
    if failure.check(HttpError):
        status = failure.value.response.status
        if status in (401, 403):
            return (f"HTTP {status}: the server refused this client; set USER_AGENT "
                    "(or TRACKING287G_USER_AGENT) to one it accepts, or wait and retry")
        return f"HTTP {status}"
    return f"{type(failure.value).__name__}: {failure.value}".strip()


class Ice287gSpider(scrapy.Spider):
    name = "ice287g"

    def __init__(self, start_url: str = discovery.DEFAULT_START_URL, **kwargs):
        super().__init__(**kwargs)
        parts = urlsplit(start_url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"start_url must be an http(s) URL such as {discovery.DEFAULT_START_URL}, "
                f"got {start_url!r}"
            )
        self.start_url = start_url

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

    def sheet_failed(self, failure):
        link = failure.request.cb_kwargs["link"]
        detail = describe_failure(failure)
        if link.list_name == "participating":
            self.fail("participating_sheet_unavailable",
                      f"could not download the participating sheet {link.url}: {detail}")
        self.logger.error("Could not download the %s sheet %s: %s", link.list_name, link.url,
                          detail)
        yield MissingListItem(link.list_name, "failed", link.url, detail)

    def parse_sheet(self, response, link: discovery.SheetLink):
        name = discovery.published_name(response.headers.get("Content-Disposition"), response.url)
        try:
            parsed = sheets.parse_workbook(response.body, link.list_name)
        except sheets.SheetError as exc:
            if link.list_name == "participating":
                self.fail("participating_sheet_unreadable",
                          f"participating sheet {name} ({response.url}): {exc}")
            self.logger.error("Pending sheet %s (%s): %s", name, response.url, exc)
            yield MissingListItem(link.list_name, "failed", response.url, str(exc))
            return
        self.logger.info("%s sheet %s: %d rows (columns %s)", link.list_name, name,
                         len(parsed.rows), ", ".join(parsed.columns.values()))
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
        documents = {url for _, row in rows for url in (row.moa_url, row.addendum_url) if url}
        # Set before the rows go out, so progress reports count against the real total.
        self.crawler.stats.inc_value("tracking287g/documents_linked", len(documents))
        for row_number, row in rows:
            yield AgreementRow(
                list_name=link.list_name, sheet_name=name, row_number=row_number,
                state=row.state, agency=row.agency, agency_type=row.agency_type,
                county=row.county, model=row.model, signed_date=row.signed_date,
                moa_status=row.moa_status, moa_url=row.moa_url, addendum_url=row.addendum_url,
                raw=row.raw, notes=row.notes,
                file_urls=[url for url in (row.moa_url, row.addendum_url) if url],
            )
