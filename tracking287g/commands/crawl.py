"""`scrapy crawl` that exits non-zero, with a one-line reason, when the crawl failed, and
that never runs two crawls on one archive at once."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import sys

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

from tracking287g.archive import archive_root
from tracking287g.spiders.ice287g import FATAL_STAT

LOCK_NAME = ".crawl.lock"


def failure_message(stats: dict) -> str | None:
    """Why a finished crawl counts as failed, or None when it succeeded."""
    checks = stats.get("tracking287g/failed_checks")
    if checks:
        return " | ".join(checks)
    if stats.get(FATAL_STAT):
        return stats[FATAL_STAT]
    reason = stats.get("finish_reason")
    if reason != "finished":
        return f"the crawl ended with reason {reason!r} instead of 'finished'; see the log"
    return None


class ArchiveLocked(Exception):
    pass


def lock_archive(root) -> int:
    """Hold the archive's lock for this process's life; raise ArchiveLocked if it is held."""
    root.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(descriptor, 200).decode(errors="replace").strip() or "another process"
        os.close(descriptor)
        raise ArchiveLocked(
            f"another crawl ({holder}) is using the archive at {root}; this one touched "
            "nothing: wait for it to finish") from None
    os.ftruncate(descriptor, 0)
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    os.write(descriptor, f"pid {os.getpid()} since {stamp}".encode())
    return descriptor


class Command(ScrapyCrawlCommand):
    def run(self, args, opts) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider name: scrapy crawl ice287g")
        try:
            lock = lock_archive(archive_root(self.settings))
        except ArchiveLocked as exc:
            print(f"tracking287g: crawl failed: {exc}", file=sys.stderr)
            self.exitcode = 1
            return
        try:
            crawler = self._create_crawler(args[0])
            self.crawler_process.crawl(crawler, **opts.spargs)
            self.crawler_process.start()
        finally:
            os.close(lock)
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            return
        message = failure_message(crawler.stats.get_stats())
        if message:
            print(f"tracking287g: crawl failed: {message}", file=sys.stderr)
            self.exitcode = 1
