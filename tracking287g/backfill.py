"""Import an existing archive of sheets as past snapshots, in time order.

The layout is the earlier tracker's: `sheets_YYYYMMDD_HHMMSS/<published name>.xlsx`, where a
folder may hold only the list that changed since the folder before it (the other list was
then seen unchanged).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from tracking287g import archive, exports
from tracking287g.discovery import list_of
from tracking287g.history import History, Row, history_row
from tracking287g.normalize import normalize_row
from tracking287g.sheets import SheetError, parse_workbook

logger = logging.getLogger(__name__)

_FOLDER = re.compile(r"^sheets_(\d{8}_\d{6})$")


class BackfillError(ValueError):
    """The folder cannot be imported; the message says why and what to do."""


@dataclass
class BackfillResult:
    snapshots: int
    skipped: int
    changes: int
    suspects: list[str]


def folders(source: Path) -> list[tuple[dt.datetime, Path]]:
    found = []
    for folder in source.iterdir():
        match = _FOLDER.match(folder.name)
        if folder.is_dir() and match:
            when = dt.datetime.strptime(match.group(1), "%Y%m%d_%H%M%S").replace(tzinfo=dt.UTC)
            found.append((when, folder))
    if not found:
        raise BackfillError(
            f"expected folders named sheets_YYYYMMDD_HHMMSS in {source}, found none; point "
            "backfill at the folder that holds them")
    return sorted(found)


def backfill(source: Path, root: Path, history: History, manifest: archive.Manifest,
             store: archive.AtomicFSFilesStore, pool: Executor | None = None) -> BackfillResult:
    """Import every snapshot under `source` into the archive at `root`.

    With a `pool` (see worker_pool), its processes read and normalise the sheets ahead
    while history is recorded here, one snapshot after another."""
    latest = history.last_time() or ""
    result = BackfillResult(0, 0, 0, [])
    todo = []
    for when, folder in folders(source):
        if _imported(history, when, folder):
            result.skipped += 1
            continue  # imported by an earlier backfill
        if when.isoformat() <= latest:
            raise BackfillError(
                f"the archive already has snapshots up to {latest}, later than {folder.name}; "
                "snapshots go in time order: backfill into a new archive (-s FILES_STORE=DIR)")
        todo.append((when, folder))
    reads = (pool.map if pool else map)(read_folder, [folder for _, folder in todo])
    for (when, folder), found in zip(todo, reads, strict=True):
        sheets, rows = {}, {}
        for sheet in found:
            if sheet.list_name is None:
                logger.warning("Skipping %s: not a participating or pending sheet", sheet.path)
                continue
            known = manifest.by_sha256(sheet.sha256)
            stored = known.path if known else archive.sheet_path(when, sheet.path.name)
            if not known:
                store.persist_file(stored, BytesIO(sheet.path.read_bytes()), info=None)
            manifest.record(url=f"backfill:{folder.name}/{sheet.path.name}", kind="sheet",
                            published_name=sheet.path.name, sha256=sheet.sha256,
                            size=sheet.size, last_modified="", path=stored, now=when)
            sheets[sheet.list_name] = {"sha256": sheet.sha256, "path": stored,
                                       "published_name": sheet.path.name}
            rows[sheet.list_name] = sheet.rows
        # A list missing from a folder was unchanged: record that it was seen again.
        for list_name in ("participating", "pending"):
            if list_name not in sheets and sheets:
                previous = history.latest_snapshot(list_name)
                if previous is not None:
                    sheets[list_name] = {"sha256": previous["sheet_sha256"],
                                         "published_name": previous["published_name"],
                                         "path": previous["sheet_path"]}
                    rows[list_name] = []
        if not sheets:
            continue
        changes, suspects = history.record(when, sheets, rows)
        result.snapshots += 1
        result.changes += len(changes)
        result.suspects += [f"{folder.name}: {name}: {why}" for name, why in suspects.items()]
    return result


@dataclass
class SheetRead:
    path: Path
    list_name: str | None  # None: not a participating or pending sheet
    sha256: str = ""
    size: int = 0
    rows: list[Row] = field(default_factory=list)


def read_folder(folder: Path) -> list[SheetRead]:
    """Read and normalise the sheets of one snapshot folder (in a worker process)."""
    found = []
    for path in sorted(folder.glob("*.xlsx")):
        list_name = list_of(path.name)
        if list_name is None:
            found.append(SheetRead(path, None))
            continue
        body = path.read_bytes()
        try:
            parsed = parse_workbook(body, list_name)
        except SheetError as exc:
            raise SheetError(f"{path}: {exc}") from None
        rows = [history_row(list_name, raw.row_number, normalize_row(raw.values, raw.links))
                for raw in parsed.rows]
        found.append(SheetRead(path, list_name, archive.sha256_hex(body), len(body), rows))
    return found


def worker_pool(workers: int, *, plotting: bool = False) -> ProcessPoolExecutor:
    """Processes that work for a backfill: reading sheets, or drawing the plots at the end
    (`plotting`: matplotlib is imported at once, while there is time, not when they are due)."""
    pool = ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(plotting,))
    pool.submit(os.getpid)  # the processes start now (the pool starts them on first use)
    return pool


def _start_worker(plotting: bool) -> None:
    # A lower priority: the process recording history, using what workers make, sets the pace.
    os.nice(10)
    if plotting:
        exports.import_plotting()


def _imported(history: History, when: dt.datetime, folder: Path) -> bool:
    return all(history.has_snapshot(list_of(p.name) or "", when.isoformat(),
                                    archive.sha256_hex(p.read_bytes()))
               for p in folder.glob("*.xlsx"))
