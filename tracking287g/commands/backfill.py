"""`scrapy backfill DIR`: import an earlier tracker's sheets as past snapshots."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import ClassVar

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from tracking287g import archive, exports
from tracking287g.backfill import BackfillError, backfill, worker_pool
from tracking287g.commands.crawl import ArchiveLocked, lock_archive
from tracking287g.history import History
from tracking287g.sheets import SheetError


class Command(ScrapyCommand):
    requires_project = True
    default_settings: ClassVar = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return "[options] <folder of sheets_YYYYMMDD_HHMMSS folders>"

    def short_desc(self) -> str:
        return "Import an archive of ICE's sheets as past snapshots, in time order"

    def run(self, args, opts) -> None:
        if len(args) != 1:
            raise UsageError("give one folder: scrapy backfill path/to/sheets")
        source = Path(args[0])
        if not source.is_dir():
            self._fail(f"expected a folder of sheets_YYYYMMDD_HHMMSS folders, {source} is not "
                       "a folder")
            return
        settings = self.settings
        root = archive.archive_root(settings)
        try:
            lock = lock_archive(root)
        except ArchiveLocked as exc:
            self._fail(str(exc))
            return
        db = archive.connect(root)
        # One process reads sheets ahead of the history (which takes twice as long), one
        # imports matplotlib meanwhile and draws the plots at the end.
        readers, plotter = worker_pool(1), worker_pool(1, plotting=True)
        try:
            history = History(db, settings.getint("HISTORY_MISSING_AFTER"),
                              settings.getfloat("HISTORY_SUSPECT_SHRINK"),
                              settings.getfloat("HISTORY_WITHDRAWN_AFTER_DAYS"))
            result = backfill(source, root, history, archive.Manifest(db),
                              archive.AtomicFSFilesStore(str(root)), readers)
            if result.snapshots:
                last = history.last_time()
                exports.write_all(root, history, archive.parse_time(last), executor=plotter)
        except (BackfillError, SheetError) as exc:
            self._fail(str(exc))
            return
        finally:
            for pool in (readers, plotter):
                pool.shutdown(cancel_futures=True)
            db.close()
            os.close(lock)
        print(f"tracking287g: imported {result.snapshots} snapshots ({result.skipped} already "
              f"imported), {result.changes} changes, into {root}")
        for suspect in result.suspects:
            print(f"tracking287g: held as suspect: {suspect}", file=sys.stderr)
        if result.suspects:
            self.exitcode = 1

    def _fail(self, message: str) -> None:
        print(f"tracking287g: backfill failed: {message}", file=sys.stderr)
        self.exitcode = 1
