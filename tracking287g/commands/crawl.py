"""`scrapy crawl` that exits non-zero, with a one-line reason, when the crawl failed."""

from __future__ import annotations

import sys

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

from tracking287g.spiders.ice287g import FATAL_STAT


def failure_message(stats: dict) -> str | None:
    """Why a finished crawl counts as failed, or None when it succeeded."""
    if stats.get(FATAL_STAT):
        return stats[FATAL_STAT]
    reason = stats.get("finish_reason")
    if reason != "finished":
        return f"the crawl ended with reason {reason!r} instead of 'finished'; see the log"
    return None


class Command(ScrapyCrawlCommand):
    def run(self, args, opts) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider name: scrapy crawl ice287g")
        crawler = self._create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            return
        message = failure_message(crawler.stats.get_stats())
        if message:
            print(f"tracking287g: crawl failed: {message}", file=sys.stderr)
            self.exitcode = 1
