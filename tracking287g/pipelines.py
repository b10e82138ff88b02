"""Storage: the archive pipeline (sheets and documents) and the export pipeline."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import asdict
from email.utils import format_datetime, parsedate_to_datetime
from io import BytesIO
from typing import ClassVar

from itemadapter import ItemAdapter
from scrapy import Request
from scrapy.pipelines.files import FilesPipeline
from scrapy.pipelines.media import FileException
from scrapy.utils.defer import ensure_awaitable, maybe_deferred_to_future
from twisted.internet.threads import deferToThread

from tracking287g import archive, errors, exports
from tracking287g.discovery import published_name
from tracking287g.history import History, history_row
from tracking287g.items import AgreementRow, ArchivedAgreementItem, MissingListItem, SheetItem
from tracking287g.sheets import LISTS, describe_bytes
from tracking287g.spiders.ice287g import FATAL_STAT

logger = logging.getLogger(__name__)

DONE_STAT = "tracking287g/documents_done"


class DocumentFailureFilter(logging.Filter):
    """Scrapy's media pipeline logs each failed download as an ERROR with a traceback. Ours
    are expected (ICE's server fails now and then) and reported in data/failures.csv and
    retried next crawl, so they become one WARNING line; an ERROR then always means
    something unexpected, which the monitor fails the crawl on."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, FileException):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info, record.exc_text = (
                "Document not archived: %s", (error,), None, None)
        return True


def is_pdf(body: bytes) -> bool:
    # The PDF specification lets the header sit anywhere in the first 1024 bytes.
    return b"%PDF-" in body[:1024]


class ArchivePipeline(FilesPipeline):
    """Archives every sheet and every agreement document exactly once.

    Built on FilesPipeline so documents go through Scrapy's downloader and stores, and
    each URL is fetched at most once per crawl. The manifest (SQLite) decides what is
    already archived, so later crawls download nothing they already have.
    """

    STORE_SCHEMES: ClassVar = {**FilesPipeline.STORE_SCHEMES,
                     "": archive.AtomicFSFilesStore, "file": archive.AtomicFSFilesStore}

    def __init__(self, store_uri, *, crawler):
        super().__init__(store_uri, crawler=crawler)
        media_logger = logging.getLogger("scrapy.pipelines.media")
        if not any(isinstance(f, DocumentFailureFilter) for f in media_logger.filters):
            media_logger.addFilter(DocumentFailureFilter())
        self.root = archive.archive_root(crawler.settings)
        self.revalidate_after = dt.timedelta(
            days=crawler.settings.getfloat("DOCUMENTS_REVALIDATE_DAYS"))
        self.manifest: archive.Manifest | None = None

    def open_spider(self) -> None:
        super().open_spider()
        self.started = archive.crawl_started(self.crawler)
        self.manifest = archive.Manifest(archive.connect(self.root))

    def close_spider(self) -> None:
        self.manifest.db.close()

    async def process_item(self, item):
        if isinstance(item, SheetItem):
            await self._archive_sheet(item)
            return item
        if isinstance(item, (AgreementRow, ArchivedAgreementItem)):
            return await super().process_item(item)
        return item

    # Sheets: downloaded by the spider (it has to read them), stored here.

    async def _archive_sheet(self, item: SheetItem) -> None:
        item.sha256 = archive.sha256_hex(item.body)
        known = self.manifest.by_sha256(item.sha256)
        if known:
            item.path, item.status = known.path, "already_archived"
        else:
            item.path = await self._persist(
                archive.sheet_path(self.started, item.published_name), item.body)
            item.status = "archived"
        self.manifest.record(url=item.url, kind="sheet", published_name=item.published_name,
                             sha256=item.sha256, size=len(item.body),
                             last_modified=item.last_modified, path=item.path, now=self.started)
        self.crawler.stats.inc_value(f"tracking287g/sheets_{item.status}")
        logger.info("Sheet %s: %s (%s)", item.published_name, item.status.replace("_", " "),
                    item.path)

    async def _stat(self, path: str) -> dict:
        try:
            return await ensure_awaitable(self.store.stat_file(path, self.spiderinfo)) or {}
        except Exception:  # S3 and GCS stores raise for a missing object
            return {}

    async def _persist(self, path: str, body: bytes) -> str:
        """Store `body` at `path`, or beside it when that path already holds another file."""
        candidate, number = path, 1
        while self.manifest.path_taken(candidate) or not await self._store_at(candidate, body):
            number += 1
            candidate = archive.with_suffix_number(path, number)
        return candidate

    async def _store_at(self, path: str, body: bytes) -> bool:
        """True when `path` now holds `body`, False when another file is there."""
        try:
            if isinstance(self.store, archive.AtomicFSFilesStore):
                # One thread hop checks, writes and syncs; the reactor goes on meanwhile.
                return await maybe_deferred_to_future(
                    deferToThread(self.store.store_new, path, body))
            stat = await self._stat(path)
            if stat:
                # Stored by a crawl that was killed before it could record it?
                return stat.get("checksum") == hashlib.md5(body).hexdigest()  # stores' checksum
            await ensure_awaitable(self.store.persist_file(path, BytesIO(body), self.spiderinfo))
            return True
        except OSError as exc:
            raise FileException(f"could not store {path}: {exc.strerror or exc}; "
                                "check the archive's disk") from exc

    # Documents: FilesPipeline's hooks, driven by the manifest.

    def get_media_requests(self, item, info):
        return [Request(url, meta={"tracking287g_row": (item.state, item.agency)})
                for url in ItemAdapter(item).get(self.files_urls_field, [])]

    def media_to_download(self, request, info, *, item=None):
        if not self.crawler.engine.running:
            # Stopped (SIGTERM, Ctrl-C): Scrapy would still finish every queued item, which
            # on a polite crawl takes up to an hour. What is not fetched now, the next does.
            raise FileException("not downloaded: the crawl was stopped; the next crawl "
                                "fetches it")
        known = self.manifest.latest_version(request.url)
        if known is None:
            return None
        last_checked = dt.datetime.fromisoformat(known.last_checked)
        if self.started - last_checked < self.revalidate_after:
            self.manifest.mark_seen(known.id, self.started, checked=False)
            return self._done(request, known, "uptodate")
        # Due for revalidation: ICE honours If-Modified-Since (it ignores If-None-Match).
        since = known.last_modified or format_datetime(last_checked, usegmt=True)
        request.headers["If-Modified-Since"] = since
        request.meta["tracking287g_known"] = known
        return None

    def _done(self, request, file: archive.ArchivedFile, status: str) -> dict:
        self.inc_stats(status)
        self.crawler.stats.inc_value(DONE_STAT)
        return {"url": request.url, "path": file.path, "checksum": file.sha256,
                "status": status}

    def media_failed(self, failure, request, info):
        # Every failure ends here, including the FileExceptions media_downloaded raises.
        self.crawler.stats.inc_value(DONE_STAT)
        self.crawler.stats.inc_value("tracking287g/documents_failed")
        error = failure.value
        reason = str(error) if isinstance(error, FileException) else errors.describe(error)
        logger.warning("Document %s failed: %s", request.url, reason)
        raise FileException(reason)

    async def media_downloaded(self, response, request, info, *, item=None):
        known = request.meta.get("tracking287g_known")
        if response.status == 304 and known:
            self.manifest.mark_seen(known.id, self.started, checked=True)
            return self._done(request, known, "revalidated")
        if response.status != 200:
            raise FileException(f"HTTP {response.status}")
        body = response.body
        if not is_pdf(body):
            raise FileException(f"expected a PDF (starting %PDF), got {describe_bytes(body)}")
        return await self._archive_document(response, request)

    async def _archive_document(self, response, request) -> dict:
        body = response.body
        # hashlib releases the GIL: a thread hashes a large PDF while the reactor goes on.
        sha256 = await maybe_deferred_to_future(deferToThread(archive.sha256_hex, body))
        name = published_name(response.headers.get("Content-Disposition"), response.url)
        existing = self.manifest.by_sha256(sha256)
        if existing:
            path, status = existing.path, "already_archived"
        else:
            state, agency = request.meta["tracking287g_row"]
            path = await self._persist(
                archive.document_path(state, agency, self.started.date(), name), body)
            status = "downloaded"
        last_modified = (response.headers.get("Last-Modified") or b"").decode("latin-1")
        if last_modified:
            try:
                parsedate_to_datetime(last_modified)
            except (TypeError, ValueError):
                last_modified = ""  # a malformed date would make a useless If-Modified-Since
        record = self.manifest.record(
            url=request.url, kind="document", published_name=name, sha256=sha256,
            size=len(body), last_modified=last_modified, path=path, now=self.started)
        self.inc_stats(status)
        self.crawler.stats.inc_value(DONE_STAT)
        return {"url": request.url, "path": record.path, "checksum": sha256, "status": status}

    def item_completed(self, results, item, info):
        adapter = ItemAdapter(item)
        files, failures = [], []
        for url, (ok, value) in zip(adapter["file_urls"], results, strict=True):
            if ok:
                files.append(value)
                continue
            failures.append({"url": url, "reason": str(value.value) or type(value.value).__name__})
            known = self.manifest.latest_version(url)
            if known is not None:
                # Failed this time, archived before: the row keeps pointing at the archived copy.
                files.append({"url": url, "path": known.path, "checksum": known.sha256,
                              "status": "kept"})
        adapter["files"] = files
        adapter["failures"] = [*adapter.get("failures", []), *failures]  # keep the spider's
        return item


class HistoryPipeline:
    """Records this crawl's snapshots and changes, then writes the exports.

    A participating list that lost its columns or shrank too much is recorded as suspect:
    it changes no status and no export, and the crawl fails so that a person looks.
    """

    def __init__(self, crawler):
        self.crawler = crawler
        settings = crawler.settings
        self.root = archive.archive_root(settings)
        self.missing_after = settings.getint("HISTORY_MISSING_AFTER")
        self.shrink_limit = settings.getfloat("HISTORY_SUSPECT_SHRINK")
        self.withdrawn_after = settings.getfloat("HISTORY_WITHDRAWN_AFTER_DAYS")
        self.sheets: dict[str, SheetItem] = {}
        self.missing: dict[str, MissingListItem] = {}
        self.rows: dict[str, list[AgreementRow]] = {"participating": [], "pending": []}
        self.archived: list[ArchivedAgreementItem] = []

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item):
        if isinstance(item, SheetItem):
            item.body = b""  # archived already; do not hold every sheet in memory
            self.sheets[item.list_name] = item
        elif isinstance(item, MissingListItem):
            self.missing[item.list_name] = item
        elif isinstance(item, AgreementRow):
            self.rows[item.list_name].append(item)
        elif isinstance(item, ArchivedAgreementItem):
            self.archived.append(item)
        return item

    def close_spider(self) -> None:
        stats = self.crawler.stats
        fatal = stats.get_value(FATAL_STAT)
        suspect_sheet = any(sheet.suspect for sheet in self.sheets.values())
        if "participating" not in self.sheets or (fatal and not suspect_sheet):
            logger.error("The crawl failed; the exports in %s are left as they were", self.root)
            return
        started = archive.crawl_started(self.crawler)
        db = archive.connect(self.root)
        try:
            history = History(db, self.missing_after, self.shrink_limit, self.withdrawn_after)
            snapshots = {name: {"sha256": sheet.sha256, "published_name": sheet.published_name,
                                "path": sheet.path, "suspect": sheet.suspect}
                         for name, sheet in self.sheets.items()}
            rows = {name: [self._history_row(item) for item in
                           sorted(items, key=lambda r: r.row_number)]
                    for name, items in self.rows.items()}
            changes, suspects = history.record(started, snapshots, rows)
            if suspects:
                held = ("; the raw sheet is archived and recorded as a suspect snapshot, "
                        "statuses and exports are unchanged")
                if fatal:  # the spider already said what is wrong with the sheet
                    stats.set_value(FATAL_STAT, fatal + held)
                else:
                    reasons = "; ".join(f"{name}: {why}" for name, why in suspects.items())
                    stats.set_value(FATAL_STAT, (
                        f"held the new sheet as suspect: {reasons}{held}; check ICE's page, "
                        "and if the list really changed this much, rerun with "
                        "-s HISTORY_SUSPECT_SHRINK=1"))
                    logger.error(stats.get_value(FATAL_STAT))
                return
            failures = collect_failures(self.rows, self.missing, self.archived)
            unpublished = {name for name, item in self.missing.items()
                           if item.reason == "not_published"}
            archived = (history.link_archived([asdict(entry) for entry in self.archived],
                                              started)
                        if "archive" not in self.missing else None)
            written = exports.write_all(self.root, history, started, unpublished=unpublished,
                                        failures=failures, archived=archived)
        finally:
            db.close()
        stats.set_value("tracking287g/changes", len(changes))
        stats.set_value("tracking287g/failures", len(failures))
        for name, items in self.rows.items():
            stats.set_value(f"tracking287g/{name}_rows", len(items))
        logger.info("Exports written: %s", ", ".join(str(path) for path in written))
        logger.info(
            "Summary: %d participating rows, %d pending rows; %d changes; documents: %d "
            "linked, %d newly archived, %d already archived, %d revalidated, %d failed%s",
            len(self.rows["participating"]), len(self.rows["pending"]), len(changes),
            stats.get_value("tracking287g/documents_linked", 0),
            stats.get_value("file_status_count/downloaded", 0),
            stats.get_value("file_status_count/uptodate", 0)
            + stats.get_value("file_status_count/already_archived", 0),
            stats.get_value("file_status_count/revalidated", 0), len(failures),
            " (listed in data/failures.csv; retried next crawl)" if failures else "")

    @staticmethod
    def _history_row(item: AgreementRow):
        documents = {document["url"]: document for document in item.files}
        return history_row(item.list_name, item.row_number, item, documents)


def collect_failures(rows: dict[str, list[AgreementRow]], missing: dict[str, MissingListItem],
                     archived: list[ArchivedAgreementItem]) -> list[dict]:
    """One line per document (or sheet, or page) that could not be archived this crawl."""
    failures, seen = [], set()
    for item in missing.values():
        if item.reason == "failed":
            failures.append({"list": item.list_name, "state": "", "agency": "",
                             "row_number": "", "url": item.url, "reason": item.detail})
    sources = [(name, row) for name in LISTS
               for row in sorted(rows[name], key=lambda r: r.row_number)]
    sources += [("archive", entry) for entry in archived]
    for list_name, source in sources:
        for failure in source.failures:
            if failure["url"] not in seen:
                seen.add(failure["url"])
                failures.append({"list": list_name, "state": source.state,
                                 "agency": source.agency,
                                 "row_number": getattr(source, "row_number", ""), **failure})
    return failures
