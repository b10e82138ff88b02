"""The archive: safe paths, the manifest of every archived file (SQLite), atomic writes."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from scrapy.exceptions import NotConfigured
from scrapy.pipelines.files import FSFilesStore
from twisted.internet.threads import deferToThread

DATABASE_NAME = "tracking287g.sqlite"

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)),
                     *(f"LPT{i}" for i in range(10))}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
# Bytes, not characters: most file systems limit a name to 255 bytes.
_MAX_COMPONENT_BYTES = 120


def safe_component(text: str, fallback: str = "_") -> str:
    """One path component that is safe on Linux, macOS and Windows; unicode is kept."""
    text = unicodedata.normalize("NFC", text or "")
    text = _UNSAFE.sub("_", text)
    text = re.sub(r"\s+", "_", text.strip())
    text = text.strip(". ")
    if not text or set(text) <= {"_", "."}:
        text = fallback
    stem, dot, suffix = text.rpartition(".")
    if (stem if dot else text).upper() in _WINDOWS_RESERVED:
        text = "_" + text
    encoded = text.encode("utf-8")
    if len(encoded) > _MAX_COMPONENT_BYTES:
        keep_suffix = f".{suffix}" if dot and len(suffix) <= 8 else ""
        digest = hashlib.sha256(encoded).hexdigest()[:10]
        budget = _MAX_COMPONENT_BYTES - len(keep_suffix.encode()) - len(digest) - 1
        head = encoded[:budget].decode("utf-8", "ignore").rstrip(". ")
        text = f"{head}-{digest}{keep_suffix}"
    return text


def document_path(state: str, agency: str, day: dt.date, name: str) -> str:
    """agreements/<STATE>/<Agency>/<YYYY-MM-DD>/<published name>."""
    return "/".join(("agreements", safe_component(state, "UNKNOWN_STATE"),
                     safe_component(agency, "UNKNOWN_AGENCY"), day.isoformat(),
                     safe_component(name, "document.pdf")))


def sheet_path(started: dt.datetime, name: str) -> str:
    """sheets/<YYYYMMDD_HHMMSS>/<published name>, the time being the crawl's start (UTC)."""
    return "/".join(("sheets", started.strftime("%Y%m%d_%H%M%S"),
                     safe_component(name, "sheet.xlsx")))


def with_suffix_number(path: str, number: int) -> str:
    """`a/b/name.pdf` -> `a/b/name-2.pdf`, for a different file that wants a taken path."""
    posix = PurePosixPath(path)
    return str(posix.with_name(f"{posix.stem}-{number}{posix.suffix}"))


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def crawl_started(crawler) -> dt.datetime:
    """The crawl's start time (UTC, whole seconds), the same for every component."""
    value = crawler.stats.get_value("tracking287g/crawl_started")
    if value is None:
        value = utc_now()
        crawler.stats.set_value("tracking287g/crawl_started", value)
    return value


REMOTE_SCHEMES = ("s3", "gs")


def is_remote(store: str) -> bool:
    return urlparse(store).scheme in REMOTE_SCHEMES


def working_folder(store: str, configured: str | None) -> Path:
    """The local folder for a remote store's database and exports (one per store)."""
    if configured:
        return Path(configured)
    digest = hashlib.sha256(store.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tracking287g-{digest}"


def archive_root(settings) -> Path:
    """The local folder with the SQLite database and the exports.

    For a local FILES_STORE it is the archive itself; for S3 or GCS it is a working folder
    (TRACKING287G_WORKDIR) that tracking287g.remote keeps in step with the store.
    """
    store = str(settings.get("FILES_STORE") or "")
    if not store:
        raise NotConfigured("FILES_STORE is empty: set it to the archive folder")
    if store.startswith("file://"):
        return Path(store[len("file://"):])
    if is_remote(store):
        return working_folder(store, settings.get("TRACKING287G_WORKDIR"))
    if urlparse(store).scheme not in ("", "file") and not Path(store).is_absolute():
        raise NotConfigured(f"FILES_STORE={store!r}: expected a folder, s3://bucket/prefix "
                            "or gs://bucket/prefix")
    return Path(store)


INCOMING = ".incoming"


class AtomicFSFilesStore(FSFilesStore):
    """FSFilesStore that never leaves a partial file and never replaces an existing one.

    A file is written in full under .incoming/ (outside sheets/ and agreements/), synced,
    then linked into place: killed at any moment, the archive holds the whole file or none.
    What a killed crawl left in .incoming/ is removed when the next one starts.
    """

    def __init__(self, basedir):
        super().__init__(basedir)
        self.incoming = Path(self.basedir) / INCOMING
        shutil.rmtree(self.incoming, ignore_errors=True)  # the crawl lock is held: ours
        self.incoming.mkdir(parents=True, exist_ok=True)

    def persist_file(self, path, buf, info, meta=None, headers=None):
        """Write in a thread: the fsync that makes a file durable must not stall the crawl."""
        if info is None:  # outside a crawl (backfill): no reactor to wait on
            return self._write(path, buf)
        return deferToThread(self._write, path, buf)

    def _write(self, path, buf) -> None:
        if not self.store_new(path, buf.getvalue()):
            raise FileExistsError(errno.EEXIST, "another file is archived there", path)

    def store_new(self, path: str, body: bytes) -> bool:
        """Store `body` at `path` unless another file is there. True when `path` now holds
        `body`: written now, or already there because a killed crawl stored it but never
        recorded it. A crawl runs this in a thread."""
        absolute_path = self._get_filesystem_path(path)
        absolute_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.incoming / f"{os.getpid()}-{uuid.uuid4().hex}.part"
        try:
            with open(temporary, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            # link() fails when the target exists: an archived file is never replaced.
            os.link(temporary, absolute_path)
            return True
        except FileExistsError:
            return absolute_path.read_bytes() == body
        finally:
            temporary.unlink(missing_ok=True)


@dataclass
class ArchivedFile:
    id: int
    url: str
    kind: str
    published_name: str
    sha256: str
    size: int
    last_modified: str
    path: str
    first_seen: str
    last_seen: str
    last_checked: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,            -- where this version was fetched from
    kind TEXT NOT NULL,           -- 'sheet' or 'document'
    published_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    last_modified TEXT NOT NULL,  -- the server's Last-Modified header, as sent
    path TEXT NOT NULL,           -- relative to the archive root
    first_seen TEXT NOT NULL,     -- UTC, ISO 8601
    last_seen TEXT NOT NULL,      -- last crawl that found this version current
    last_checked TEXT NOT NULL,   -- last time the server confirmed it (200 or 304)
    UNIQUE (url, sha256)
);
CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256);
CREATE INDEX IF NOT EXISTS files_path ON files (path);
CREATE TABLE IF NOT EXISTS current_lists (
    list_name TEXT PRIMARY KEY,   -- 'participating' or 'pending'
    taken_at TEXT NOT NULL,
    published INTEGER NOT NULL,   -- 0 when ICE's page linked no sheet for this list
    published_name TEXT NOT NULL,
    sheet_sha256 TEXT NOT NULL,
    sheet_path TEXT NOT NULL,
    rows_json TEXT NOT NULL
);
"""


def connect(root: Path) -> sqlite3.Connection:
    root.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(root / DATABASE_NAME, isolation_level=None, timeout=30)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(_SCHEMA)
    return connection


class Manifest:
    """Every file in the archive: where it came from, its hash, and when it was seen."""

    def __init__(self, connection: sqlite3.Connection):
        self.db = connection

    @staticmethod
    def _file(row) -> ArchivedFile | None:
        return ArchivedFile(**dict(row)) if row else None

    def latest_version(self, url: str) -> ArchivedFile | None:
        return self._file(self.db.execute(
            "SELECT * FROM files WHERE url = ? ORDER BY first_seen DESC, id DESC LIMIT 1",
            (url,)).fetchone())

    def by_sha256(self, sha256: str) -> ArchivedFile | None:
        return self._file(self.db.execute(
            "SELECT * FROM files WHERE sha256 = ? ORDER BY id LIMIT 1", (sha256,)).fetchone())

    def path_taken(self, path: str) -> bool:
        return self.db.execute("SELECT 1 FROM files WHERE path = ?", (path,)).fetchone() is not None

    def record(self, *, url: str, kind: str, published_name: str, sha256: str, size: int,
               last_modified: str, path: str, now: dt.datetime) -> ArchivedFile:
        """Record that `url` served these bytes now (a new version, or one seen before)."""
        stamp = now.isoformat()
        self.db.execute(
            """INSERT INTO files (url, kind, published_name, sha256, size, last_modified, path,
                                  first_seen, last_seen, last_checked)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (url, sha256) DO UPDATE SET
                   last_seen = excluded.last_seen, last_checked = excluded.last_checked,
                   last_modified = CASE WHEN excluded.last_modified != ''
                                   THEN excluded.last_modified ELSE last_modified END""",
            (url, kind, published_name, sha256, size, last_modified, path, stamp, stamp, stamp))
        return self._file(self.db.execute(
            "SELECT * FROM files WHERE url = ? AND sha256 = ?", (url, sha256)).fetchone())

    def mark_seen(self, file_id: int, now: dt.datetime, *, checked: bool) -> None:
        column = "last_seen = ?, last_checked = ?" if checked else "last_seen = ?"
        values = (now.isoformat(), now.isoformat()) if checked else (now.isoformat(),)
        self.db.execute(f"UPDATE files SET {column} WHERE id = ?", (*values, file_id))

    def count(self, kind: str | None = None) -> int:
        if kind:
            query = ("SELECT COUNT(*) FROM files WHERE kind = ?", (kind,))
            return self.db.execute(*query).fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
