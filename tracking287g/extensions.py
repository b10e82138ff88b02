"""Extensions."""

from __future__ import annotations

import logging
import time

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call

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
