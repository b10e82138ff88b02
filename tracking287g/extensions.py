"""Extensions."""

from __future__ import annotations

import logging
import time

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call

from tracking287g import archive, exports, monitor
from tracking287g.remote import RemoteState

logger = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes >= 60:
        return f"{minutes // 60}h {minutes % 60:02d}m"
    return f"{minutes}m {int(seconds % 60):02d}s"


class DocumentProgress:
    """Logs documents done of total, the rate and the time left every PROGRESS_INTERVAL s.

    A polite cold crawl of ~2,500 documents takes most of an hour; this is how an operator
    watching the log knows it is moving.
    """

    def __init__(self, crawler, interval: float):
        self.stats = crawler.stats
        self.interval = interval
        self.task = None
        self.started = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler):
        interval = crawler.settings.getfloat("PROGRESS_INTERVAL")
        if not interval:
            raise NotConfigured
        extension = cls(crawler, interval)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self, spider) -> None:
        self.started = time.monotonic()
        self.task = create_looping_call(self.log)
        self.task.start(self.interval, now=False)

    def message(self) -> str:
        total = self.stats.get_value("tracking287g/documents_linked", 0)
        done = self.stats.get_value("tracking287g/documents_done", 0)
        failed = self.stats.get_value("tracking287g/documents_failed", 0)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = done / elapsed * 60
        if not total:
            return "Documents: waiting for the participating sheet"
        if done:
            left = f"about {format_duration((total - done) / (done / elapsed))} left"
        else:
            left = "time left unknown"
        return (f"Documents: {done:,} of {total:,} done ({failed:,} failed), "
                f"{rate:.1f}/min, {left}")

    def log(self) -> None:
        logger.info(self.message())

    def spider_closed(self, spider, reason) -> None:
        if self.task and self.task.running:
            self.task.stop()
        logger.info(self.message())


class CrawlWorkspace:
    """The crawl's place in the archive: its log file under logs/ and, for an S3 or GCS
    FILES_STORE, the history fetched before the crawl and pushed back after it."""

    def __init__(self, crawler):
        settings = crawler.settings
        self.root = archive.archive_root(settings)
        store = str(settings.get("FILES_STORE"))
        self.remote = (RemoteState(store, self.root, settings) if archive.is_remote(store)
                       else None)
        if self.remote is not None:
            self.remote.fetch()  # before the pipelines open the database
        started = archive.crawl_started(crawler)
        self.log_path = self.root / "logs" / f"{started.strftime('%Y%m%d_%H%M%S')}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.log_path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter(settings.get("LOG_FORMAT"),
                                                    settings.get("LOG_DATEFORMAT")))
        self.handler.setLevel(settings.get("LOG_LEVEL"))
        logging.getLogger().addHandler(self.handler)

    @classmethod
    def from_crawler(cls, crawler):
        extension = cls(crawler)
        crawler.signals.connect(extension.engine_stopped, signal=signals.engine_stopped)
        return extension

    def engine_stopped(self) -> None:
        # After the stats are dumped, so the log file has the whole crawl.
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()
        if self.remote is not None:
            self.remote.push()


class CrawlMonitor:
    """At the end of every crawl: the summary, data/crawls.csv, the checks, the webhook."""

    def __init__(self, crawler):
        self.crawler = crawler
        self.root = archive.archive_root(crawler.settings)
        self.webhook = crawler.settings.get("MONITOR_WEBHOOK_URL")

    @classmethod
    def from_crawler(cls, crawler):
        extension = cls(crawler)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_closed(self, spider, reason) -> None:
        stats = self.crawler.stats
        summary = monitor.summarize(stats.get_stats(), reason, archive.crawl_started(self.crawler),
                                    archive.utc_now())
        failures = monitor.failed_checks(summary, stats.get_stats(), self.crawler.settings)
        summary["status"] = "failed" if failures else "ok"
        summary["failed_checks"] = failures
        stats.set_value("tracking287g/failed_checks", failures)
        (logger.error if failures else logger.info)(monitor.message(summary))
        path = self.root / "data" / "crawls.csv"
        previous = path.read_text(encoding="utf-8") if path.exists() else ""
        row = exports.csv_text(monitor.SUMMARY_COLUMNS,
                               [{**summary, "failed_checks": " | ".join(failures)}])
        exports.write_text(path, previous + row.split("\n", 1)[1] if previous else row)
        if self.webhook:
            monitor.post_webhook(self.webhook, summary)
