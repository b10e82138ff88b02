"""History between jobs that have no persistent disk (Zyte Scrapy Cloud, containers).

With FILES_STORE on S3 or GCS, Scrapy's own stores hold the sheets and documents. The SQLite
database and the exports live in a local working folder during the crawl: the database is
fetched from the store when the crawl starts and, with the exports and the log, written back
when it ends, so the next job, on an empty disk, carries on the same history.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from urllib.parse import urlparse

from scrapy.pipelines.files import FilesPipeline, GCSFilesStore, S3FilesStore

from tracking287g.archive import DATABASE_NAME

logger = logging.getLogger(__name__)

# What goes back to the store at the end of a crawl, relative to the working folder.
SYNCED = (DATABASE_NAME, "README.md", "data", "plots", "logs")
# What a crawl needs from earlier ones: the history, and the log of crawls it appends to.
FETCHED = (DATABASE_NAME, "data/crawls.csv")


class RemoteState:
    """Fetches and pushes the database and exports, with the store's own client."""

    def __init__(self, store_uri: str, folder: Path, settings):
        self.uri = store_uri
        self.folder = folder
        self.scheme = urlparse(store_uri).scheme
        # Credentials, endpoint and ACLs, set on the store classes from the settings the
        # way FilesPipeline does (it does so only when the pipelines are built, after us).
        FilesPipeline._update_stores(settings)
        self.store = (S3FilesStore if self.scheme == "s3" else GCSFilesStore)(store_uri)

    def _key(self, relative: str) -> str:
        return f"{self.store.prefix}{relative}"

    def _get(self, relative: str) -> bytes | None:
        if self.scheme == "s3":
            client = self.store.s3_client
            try:
                response = client.get_object(Bucket=self.store.bucket, Key=self._key(relative))
            except client.exceptions.NoSuchKey:
                return None
            return response["Body"].read()
        blob = self.store.bucket.blob(self._key(relative))
        return blob.download_as_bytes() if blob.exists() else None

    def _put(self, relative: str, body: bytes) -> None:
        if self.scheme == "s3":
            self.store.s3_client.put_object(Bucket=self.store.bucket, Key=self._key(relative),
                                            Body=body)
        else:
            self.store.bucket.blob(self._key(relative)).upload_from_string(body)

    def fetch(self) -> bool:
        """Bring the history down from the store; False when the store has none yet."""
        self.folder.mkdir(parents=True, exist_ok=True)
        database = self.folder / DATABASE_NAME
        for stale in (database.with_name(DATABASE_NAME + "-wal"),
                      database.with_name(DATABASE_NAME + "-shm")):
            stale.unlink(missing_ok=True)
        found = 0
        for relative in FETCHED:
            body = self._get(relative)
            local = self.folder / relative
            if body is None:
                local.unlink(missing_ok=True)  # the store is the truth, not a stale folder
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(body)
            found += 1
        if not found:
            logger.info("No history in %s yet: starting a new one", self.uri)
        else:
            logger.info("Fetched the history from %s", self.uri)
        return bool(found)

    def push(self) -> int:
        """Write the database, exports and logs back to the store; returns files written."""
        database = self.folder / DATABASE_NAME
        if database.exists():
            with sqlite3.connect(database) as db:  # fold the WAL into the file
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        written = 0
        for name in SYNCED:
            path = self.folder / name
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*")
                                                         if p.is_file() and
                                                         not p.name.endswith(".part"))
            for file in files:
                self._put(file.relative_to(self.folder).as_posix(), file.read_bytes())
                written += 1
        logger.info("Pushed the history and exports to %s (%d files)", self.uri, written)
        return written
