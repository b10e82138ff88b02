"""Snapshots of each list, stable agreement identities, and the log of what changed.

ICE's sheets have no identifiers and ICE renames and corrects rows without notice. An
agreement gets a readable id when it first appears; later snapshots carry it forward by
matching on every piece of evidence (state, model, document URL and bytes, signed date,
name), so a rename or a correction keeps its id and is logged as such, never as a removal
plus an addition. Spelling artefacts (case, spacing, punctuation, apostrophes, model typos)
are not changes at all: the rows are normalised before they get here.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import json
import re
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tracking287g.normalize import AgreementFields, NormalisedRow

CHANGE_KINDS = ("added", "removed", "renamed", "corrected", "document_published",
                "document_replaced", "superseded", "promoted", "withdrawn")

STATE_CODES = {
    "ALABAMA": "AL", "ALASKA": "AK", "ARIZONA": "AZ", "ARKANSAS": "AR", "CALIFORNIA": "CA",
    "COLORADO": "CO", "CONNECTICUT": "CT", "DELAWARE": "DE", "DISTRICT OF COLUMBIA": "DC",
    "FLORIDA": "FL", "GEORGIA": "GA", "HAWAII": "HI", "IDAHO": "ID", "ILLINOIS": "IL",
    "INDIANA": "IN", "IOWA": "IA", "KANSAS": "KS", "KENTUCKY": "KY", "LOUISIANA": "LA",
    "MAINE": "ME", "MARYLAND": "MD", "MASSACHUSETTS": "MA", "MICHIGAN": "MI",
    "MINNESOTA": "MN", "MISSISSIPPI": "MS", "MISSOURI": "MO", "MONTANA": "MT",
    "NEBRASKA": "NE", "NEVADA": "NV", "NEW HAMPSHIRE": "NH", "NEW JERSEY": "NJ",
    "NEW MEXICO": "NM", "NEW YORK": "NY", "NORTH CAROLINA": "NC", "NORTH DAKOTA": "ND",
    "OHIO": "OH", "OKLAHOMA": "OK", "OREGON": "OR", "PENNSYLVANIA": "PA",
    "RHODE ISLAND": "RI", "SOUTH CAROLINA": "SC", "SOUTH DAKOTA": "SD", "TENNESSEE": "TN",
    "TEXAS": "TX", "UTAH": "UT", "VERMONT": "VT", "VIRGINIA": "VA", "WASHINGTON": "WA",
    "WEST VIRGINIA": "WV", "WISCONSIN": "WI", "WYOMING": "WY", "AMERICAN SAMOA": "AS",
    "GUAM": "GU", "NORTHERN MARIANA ISLANDS": "MP", "PUERTO RICO": "PR",
    "U.S. VIRGIN ISLANDS": "VI",
}
MODEL_CODES = {"Jail Enforcement Model": "jem", "Task Force Model": "tfm",
               "Warrant Service Officer": "wso"}

# Words ICE abbreviates one day and spells out the next ("Ft. Myers" / "Fort Myers").
_ABBREVIATIONS = {
    "ft": "fort", "mt": "mount", "st": "saint", "ste": "sainte", "dept": "department",
    "co": "county", "cnty": "county", "twp": "township", "pd": "police department",
    "so": "sheriffs office", "univ": "university", "&": "and", "sherriffs": "sheriffs",
    "sheriff": "sheriffs", "sherrifs": "sheriffs", "countys": "county",
}
# Words every agency name has; similarity is judged on the other, distinctive words, or
# "Milam County Sheriff's Office" would pass for "Dallam County Sheriff's Office".
_GENERIC = {
    "county", "sheriffs", "office", "police", "department", "city", "town", "village",
    "borough", "township", "of", "the", "state", "board", "trustees", "commissioners",
    "and", "services", "division", "law", "enforcement", "parish", "constable",
    "constables", "university", "detention", "center", "corrections", "patrol",
}
# The prefixes ICE adds and drops ("City of Melbourne Police Department").
_PREFIX = re.compile(r"^(city|town|village|borough) of ")
# Similarity (difflib ratio) of distinctive words above which two names can be one agency.
SIMILAR_NAMES = 0.85
# A corrected signed date moves by "a day or a month"; further apart is another agreement.
CLOSE_DATES = dt.timedelta(days=62)


@functools.lru_cache(maxsize=65536)  # the same names recur in every snapshot
def spelling_key(name: str) -> str:
    """The name with case, spacing, punctuation and apostrophes gone: equal keys, no change."""
    return re.sub(r"[^a-z0-9]+", "", name.lower().replace("&", "and"))


@functools.lru_cache(maxsize=65536)  # the same names recur in every snapshot
def match_key(name: str) -> str:
    """The name with abbreviations spelt out, for matching one agency across snapshots."""
    text = re.sub(r"['’`]", "", name.lower().replace("&", " and "))
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    return _PREFIX.sub("", " ".join(_ABBREVIATIONS.get(word, word) for word in words))


@functools.lru_cache(maxsize=65536)  # the same names recur in every snapshot
def distinctive_words(name: str) -> frozenset[str]:
    return frozenset(word for word in match_key(name).split() if word not in _GENERIC)


def similar_names(a: str, b: str, *, strict: bool = False) -> bool:
    """Whether two names can be one agency: one's distinctive words contain the other's
    ("Idaho State Police" / "Idaho State Police Department"), or, unless strict, they are
    spelt nearly alike ("Lake Clark Shores" / "Lake Clarke Shores")."""
    first, second = distinctive_words(a), distinctive_words(b)
    if not first or not second:
        return False
    if first <= second or second <= first:
        return True
    if strict:
        return False
    ratio = difflib.SequenceMatcher(None, " ".join(sorted(first)), " ".join(sorted(second)))
    return ratio.ratio() >= SIMILAR_NAMES


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", match_key(text)).strip("-") or "agency"


@dataclass
class Row(AgreementFields):
    """One normalised sheet row, as history stores it."""

    list_name: str
    row_number: int
    moa_sha256: str = ""
    addendum_sha256: str = ""
    moa_path: str = ""
    addendum_path: str = ""
    notes: str = ""
    raw: dict = field(default_factory=dict)
    agreement_id: str = ""


def history_row(list_name: str, row_number: int, row: NormalisedRow,
                documents: dict[str, dict] | None = None) -> Row:
    """A history row from a normalised sheet row and what became of its documents."""
    documents = documents or {}
    moa, addendum = documents.get(row.moa_url, {}), documents.get(row.addendum_url, {})
    return Row(
        list_name=list_name, row_number=row_number, state=row.state, agency=row.agency,
        agency_type=row.agency_type, county=row.county, model=row.model,
        signed_date=row.signed_date, moa_status=row.moa_status, moa_url=row.moa_url,
        addendum_url=row.addendum_url, moa_sha256=moa.get("checksum", ""),
        addendum_sha256=addendum.get("checksum", ""), moa_path=moa.get("path", ""),
        addendum_path=addendum.get("path", ""), notes="; ".join(row.notes), raw=row.raw)


@dataclass
class Instance:
    """One agreement as it stands in one snapshot (a duplicated row is one instance)."""

    rows: list[Row]
    agreement_id: str = ""
    # The row that says most: the first with a document if any, else the first. Kept up to
    # date by add(): matching asks for it hundreds of thousands of times in a backfill.
    best: Row | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rows, self.rows = self.rows, []
        for row in rows:
            self.add(row)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        if self.best is None or (row.moa_url and not self.best.moa_url):
            self.best = row

    # The fields matching reads most, spared __getattr__'s failed lookup first.
    state = property(lambda self: self.best.state)
    model = property(lambda self: self.best.model)
    agency = property(lambda self: self.best.agency)
    signed_date = property(lambda self: self.best.signed_date)
    moa_url = property(lambda self: self.best.moa_url)
    moa_sha256 = property(lambda self: self.best.moa_sha256)

    def __getattr__(self, name):
        return getattr(self.best, name)


@dataclass
class Change:
    change: str
    agreement_id: str
    state: str
    agency: str
    model: str
    signed_date: str
    details: str = ""
    list_name: str = ""


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _close_dates(a: str, b: str) -> bool:
    first, second = _date(a), _date(b)
    return bool(first and second and abs(first - second) <= CLOSE_DATES)


def _same_document(a: Row, b: Row) -> bool:
    if a.moa_sha256 and b.moa_sha256:
        return a.moa_sha256 == b.moa_sha256
    return bool(a.moa_url) and a.moa_url == b.moa_url


def group_instances(rows: list[Row]) -> list[Instance]:
    """Rows that are one agreement listed twice become one instance.

    Same state, model and agency, and either the same signed date or one row still
    "link pending" with a date close to the other's (ICE left the old row in place when it
    published the agreement: St. Cloud PD in July 2025). Rows with different documents
    or far-apart dates stay distinct agreements.
    """
    instances: list[Instance] = []
    by_key: dict[tuple, list[Instance]] = defaultdict(list)
    for row in rows:
        key = (row.state, row.model, match_key(row.agency))
        for instance in by_key[key]:
            other = instance.best
            if other.signed_date == row.signed_date and (
                    not row.moa_url or not other.moa_url or _same_document(row, other)):
                break
            if (not row.moa_url or not other.moa_url) and _close_dates(other.signed_date,
                                                                        row.signed_date):
                break
        else:
            instance = Instance([])
            by_key[key].append(instance)
            instances.append(instance)
        instance.add(row)
    return instances


def match_instances(old: list[Instance], new: list[Instance]) -> list[tuple[Instance, Instance]]:
    """Pair old and new instances of one list, strongest evidence first."""
    pairs: list[tuple[Instance, Instance]] = []
    left_old, left_new = list(old), list(new)

    def take(key, accept=lambda o, n: True) -> None:
        nonlocal left_old, left_new
        waiting: dict[tuple, list[Instance]] = defaultdict(list)
        for instance in left_old:
            for k in key(instance):
                waiting[k].append(instance)
        used_old, used_new = set(), set()
        for instance in left_new:
            for k in key(instance):
                candidates = [o for o in waiting.get(k, ()) if id(o) not in used_old
                              and accept(o, instance)]
                if candidates:
                    chosen = candidates[0]
                    used_old.add(id(chosen))
                    used_new.add(id(instance))
                    pairs.append((chosen, instance))
                    break
        left_old = [o for o in left_old if id(o) not in used_old]
        left_new = [n for n in left_new if id(n) not in used_new]

    def base(i):
        return (i.state, i.model)

    # 1. Same agency (spelling and abbreviations aside) and the same signed date.
    take(lambda i: [(*base(i), match_key(i.agency), i.signed_date)])
    # 2. The same agreement document.
    take(lambda i: [(*base(i), "sha", i.moa_sha256)] * bool(i.moa_sha256)
         + [(*base(i), "url", i.moa_url)] * bool(i.moa_url))
    # 3. Same agency, another date: a corrected date or a re-signing (told apart later).
    take(lambda i: [(*base(i), match_key(i.agency))])
    # 4. A renamed agency: a similar name and the same or a close signed date. Without
    #    dates (the pending list) only names whose distinctive words contain the other's.
    if left_old and left_new:
        scored = []
        for o in left_old:
            for n in left_new:
                if base(o) != base(n):
                    continue
                dated = bool(o.signed_date and n.signed_date)
                if dated and not (o.signed_date == n.signed_date
                                  or _close_dates(o.signed_date, n.signed_date)):
                    continue
                if bool(o.signed_date) != bool(n.signed_date) and not _same_document(o, n):
                    continue
                if similar_names(o.agency, n.agency, strict=not dated):
                    ratio = difflib.SequenceMatcher(None, match_key(o.agency),
                                                    match_key(n.agency)).ratio()
                    scored.append((ratio, o, n))
        used = set()
        for _, o, n in sorted(scored, key=lambda s: -s[0]):
            if id(o) not in used and id(n) not in used:
                used.update((id(o), id(n)))
                pairs.append((o, n))
        left_old = [o for o in left_old if id(o) not in used]
        left_new = [n for n in left_new if id(n) not in used]
    # 5. A corrected model: same agency, same signed date (or document), another model.
    take(lambda i: [(i.state, match_key(i.agency), i.signed_date)] * bool(i.signed_date))
    return pairs


def _field_changes(old: Row, new: Row) -> list[str]:
    def change(name: str, before: str, after: str) -> str:
        return f"{name}: {before or '(none)'} -> {after or '(none)'}"

    changes = []
    if old.model != new.model:
        changes.append(change("model", old.model, new.model))
    if old.signed_date != new.signed_date:
        changes.append(change("signed_date", old.signed_date, new.signed_date))
    if spelling_key(old.county) != spelling_key(new.county):
        changes.append(change("county", old.county, new.county))
    if spelling_key(old.agency_type) != spelling_key(new.agency_type):
        changes.append(change("type", old.agency_type, new.agency_type))
    return changes


def _document_changes(old: Row, new: Row) -> list[tuple[str, str]]:
    result = []
    for kind, url, sha in (("moa", "moa_url", "moa_sha256"),
                           ("addendum", "addendum_url", "addendum_sha256")):
        before, after = getattr(old, url), getattr(new, url)
        if not after:
            continue
        old_sha, new_sha = getattr(old, sha), getattr(new, sha)
        if not before:
            result.append(("document_published", f"{kind}: {after}"))
        elif before != after:
            result.append(("document_replaced", f"{kind}: {before} -> {after}"))
        elif old_sha and new_sha and old_sha != new_sha:
            result.append(("document_replaced", f"{kind}: new bytes at {after} "
                                                 f"(sha256 {old_sha[:12]} -> {new_sha[:12]})"))
    return result


def is_resigning(old: Row, new: Row, new_documents: set[str]) -> bool:
    """A new signed date with a new document while the old document left the list."""
    if not (old.moa_url and new.moa_url) or _same_document(old, new):
        return False
    before, after = _date(old.signed_date), _date(new.signed_date)
    return bool(before and after and after > before and old.moa_url not in new_documents)


class History:
    """Snapshots, agreements and changes in the archive's SQLite database."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS snapshots (
        id INTEGER PRIMARY KEY,
        list_name TEXT NOT NULL,
        taken_at TEXT NOT NULL,          -- UTC, ISO 8601
        status TEXT NOT NULL,            -- 'normal', 'unchanged' or 'suspect'
        sheet_sha256 TEXT NOT NULL,
        published_name TEXT NOT NULL,
        sheet_path TEXT NOT NULL,
        row_count INTEGER NOT NULL,
        rows_from INTEGER,               -- for 'unchanged': the snapshot whose rows these are
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX IF NOT EXISTS snapshots_list ON snapshots (list_name, taken_at);
    CREATE TABLE IF NOT EXISTS snapshot_rows (
        snapshot_id INTEGER NOT NULL REFERENCES snapshots (id),
        row_number INTEGER NOT NULL,
        agreement_id TEXT NOT NULL,
        data TEXT NOT NULL,              -- the row as JSON (normalised fields, raw, notes)
        PRIMARY KEY (snapshot_id, row_number)
    );
    CREATE TABLE IF NOT EXISTS agreements (
        agreement_id TEXT PRIMARY KEY,
        list_name TEXT NOT NULL,         -- the list it is (or was last) on
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        absent INTEGER NOT NULL DEFAULT 0,  -- consecutive normal snapshots without it
        superseded_by TEXT NOT NULL DEFAULT '',
        withdrawn TEXT NOT NULL DEFAULT '',  -- when its withdrawal was logged (pending only)
        latest TEXT NOT NULL             -- its latest row as JSON
    );
    CREATE TABLE IF NOT EXISTS snapshot_counts (  -- the time series, computed once
        snapshot_id INTEGER NOT NULL REFERENCES snapshots (id),
        grp TEXT NOT NULL,               -- 'total', 'model' or 'state'
        key TEXT NOT NULL,
        agreements INTEGER NOT NULL,
        PRIMARY KEY (snapshot_id, grp, key)
    );
    CREATE TABLE IF NOT EXISTS changes (
        id INTEGER PRIMARY KEY,
        snapshot_id INTEGER NOT NULL REFERENCES snapshots (id),
        snapshot_time TEXT NOT NULL,
        list_name TEXT NOT NULL,
        change TEXT NOT NULL,
        agreement_id TEXT NOT NULL,
        state TEXT NOT NULL,
        agency TEXT NOT NULL,
        model TEXT NOT NULL,
        signed_date TEXT NOT NULL,
        details TEXT NOT NULL
    );
    """

    def __init__(self, db: sqlite3.Connection, missing_after: int = 3,
                 shrink_limit: float = 0.2, withdrawn_after_days: float = 7):
        self.db = db
        self.missing_after = missing_after
        self.shrink_limit = shrink_limit
        self.withdrawn_after = dt.timedelta(days=withdrawn_after_days)
        # The rows this object last stored, per list: the next record() compares with them,
        # and decoding them again from JSON was a third of a backfill. Never mutated.
        self._stored: dict[str, tuple[int, list[Row]]] = {}
        self._encoded: dict[int, tuple[Row, str]] = {}  # JSON of this record()'s rows
        db.executescript(self.SCHEMA)

    # Reading

    def latest_snapshot(self, list_name: str,
                        statuses=("normal", "unchanged")) -> sqlite3.Row | None:
        marks = ",".join("?" * len(statuses))
        return self.db.execute(
            f"SELECT * FROM snapshots WHERE list_name = ? AND status IN ({marks}) "
            "ORDER BY taken_at DESC, id DESC LIMIT 1", (list_name, *statuses)).fetchone()

    def snapshot_rows(self, snapshot: sqlite3.Row) -> list[Row]:
        source = snapshot["rows_from"] or snapshot["id"]
        stored_id, rows = self._stored.get(snapshot["list_name"], (None, []))
        if stored_id == source:
            return list(rows)
        return [Row(**{**json.loads(r["data"]), "agreement_id": r["agreement_id"]})
                for r in self.db.execute(
                    "SELECT * FROM snapshot_rows WHERE snapshot_id = ? ORDER BY row_number",
                    (source,))]

    def has_snapshot(self, list_name: str, taken_at: str, sha256: str) -> bool:
        return self.db.execute(
            "SELECT 1 FROM snapshots WHERE list_name = ? AND taken_at = ? AND sheet_sha256 = ?",
            (list_name, taken_at, sha256)).fetchone() is not None

    def last_time(self) -> str | None:
        return self.db.execute("SELECT MAX(taken_at) FROM snapshots").fetchone()[0]

    # Recording

    def check_suspect(self, list_name: str, rows: list[Row]) -> str:
        """Why a new list looks broken (empty string when it does not)."""
        if list_name != "participating":
            return ""
        if not rows:
            return "the participating list has no rows"
        previous = self.latest_snapshot(list_name)
        if previous is None or not previous["row_count"]:
            return ""
        lost = 1 - len(rows) / previous["row_count"]
        if lost > self.shrink_limit:
            return (f"the participating list shrank from {previous['row_count']} to {len(rows)} "
                    f"rows ({lost:.0%}, more than the {self.shrink_limit:.0%} allowed)")
        return ""

    def record(self, taken_at: dt.datetime, sheets: dict[str, dict],
               rows: dict[str, list[Row]]) -> tuple[list[Change], dict[str, str]]:
        """Record one crawl's snapshots (`sheets[list]` has sha256, published_name, path).

        Returns the changes and, per list, why the snapshot was held as suspect.
        """
        try:
            return self._record(taken_at, sheets, rows)
        except BaseException:
            self._stored.clear()  # rolled back: SQLite may give the same ids again
            raise
        finally:
            self._encoded.clear()

    def _record(self, taken_at, sheets, rows):
        stamp = taken_at.isoformat()
        suspects: dict[str, str] = {}
        unchanged_withdrawals: list[Change] = []
        snapshot_ids: dict[str, int] = {}
        fresh: dict[str, tuple[int, list[Instance], list[Instance]]] = {}
        with self.db:
            for name, sheet in sheets.items():
                previous = self.latest_snapshot(name)
                if (previous is not None and previous["sheet_sha256"] == sheet["sha256"]
                        and not self._documents_changed(previous, rows[name])):
                    snapshot_ids[name] = self._insert_snapshot(
                        name, stamp, "unchanged", sheet, previous["row_count"],
                        rows_from=previous["rows_from"] or previous["id"])
                    self.db.execute(
                        "INSERT INTO snapshot_counts SELECT ?, grp, key, agreements FROM "
                        "snapshot_counts WHERE snapshot_id = ?",
                        (snapshot_ids[name], previous["id"]))
                    self.db.execute(
                        "UPDATE agreements SET last_seen = ? WHERE agreement_id IN "
                        "(SELECT agreement_id FROM snapshot_rows WHERE snapshot_id = ?)",
                        (stamp, previous["rows_from"] or previous["id"]))
                    # Still absent from a list seen again: one more snapshot without them.
                    self.db.execute("UPDATE agreements SET absent = absent + 1 WHERE "
                                    "list_name = ? AND absent > 0", (name,))
                    if name == "pending":
                        unchanged_withdrawals.extend(self._withdrawals(stamp))
                    continue
                reason = sheet.get("suspect") or self.check_suspect(name, rows[name])
                if reason:
                    suspects[name] = reason
                    snapshot_id = self._insert_snapshot(name, stamp, "suspect", sheet,
                                                        len(rows[name]), reason=reason)
                    self._store_rows(snapshot_id, rows[name])
                    continue
                old = group_instances(self.snapshot_rows(previous)) if previous else []
                for instance in old:
                    instance.agreement_id = instance.rows[0].agreement_id
                snapshot_id = self._insert_snapshot(name, stamp, "normal", sheet, len(rows[name]))
                snapshot_ids[name] = snapshot_id
                fresh[name] = (snapshot_id, old, group_instances(rows[name]))
            changes = self._compare(stamp, fresh) + unchanged_withdrawals
            for snapshot_id, _, new in fresh.values():
                self._store_rows(snapshot_id, [row for i in new for row in i.rows])
                self.counts(self.db.execute("SELECT * FROM snapshots WHERE id = ?",
                                            (snapshot_id,)).fetchone())
            for change in changes:
                snapshot_id = snapshot_ids[change.list_name]
                self.db.execute(
                    "INSERT INTO changes (snapshot_id, snapshot_time, list_name, change, "
                    "agreement_id, state, agency, model, signed_date, details) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (snapshot_id, stamp, change.list_name, change.change, change.agreement_id,
                     change.state, change.agency, change.model, change.signed_date,
                     change.details))
        return changes, suspects

    def counts(self, snapshot: sqlite3.Row) -> list[tuple[str, str, int]]:
        """Agreements in a snapshot, in total, by model and by state (stored once)."""
        stored = self.db.execute("SELECT grp, key, agreements FROM snapshot_counts WHERE "
                                 "snapshot_id = ?", (snapshot["id"],)).fetchall()
        if stored:
            return [tuple(row) for row in stored]
        agreements = {}
        for row in self.snapshot_rows(snapshot):
            agreements.setdefault(row.agreement_id, row)
        result = [("total", "all", len(agreements))]
        for group in ("model", "state"):
            counted = Counter(getattr(row, group) for row in agreements.values())
            result += [(group, key, count) for key, count in sorted(counted.items())]
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO snapshot_counts VALUES (?, ?, ?, ?)",
                                [(snapshot["id"], *row) for row in result])
        return result

    def _documents_changed(self, previous: sqlite3.Row, rows: list[Row]) -> bool:
        """Whether a document behind an unchanged sheet now has other bytes."""
        known = {}
        for row in self.snapshot_rows(previous):
            known[row.moa_url] = row.moa_sha256
            known[row.addendum_url] = row.addendum_sha256
        return any(sha and sha != known.get(url)
                   for row in rows
                   for url, sha in ((row.moa_url, row.moa_sha256),
                                    (row.addendum_url, row.addendum_sha256)) if url)

    def _insert_snapshot(self, name, stamp, status, sheet, row_count, rows_from=None,
                         reason="") -> int:
        return self.db.execute(
            "INSERT INTO snapshots (list_name, taken_at, status, sheet_sha256, published_name, "
            "sheet_path, row_count, rows_from, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, stamp, status, sheet["sha256"], sheet["published_name"],
             sheet.get("path", ""), row_count, rows_from, reason)).lastrowid

    def _store_rows(self, snapshot_id: int, rows: list[Row]) -> None:
        rows = sorted(rows, key=lambda r: r.row_number)
        self.db.executemany(
            "INSERT INTO snapshot_rows (snapshot_id, row_number, agreement_id, data) "
            "VALUES (?, ?, ?, ?)",
            [(snapshot_id, r.row_number, r.agreement_id, self._json(r)) for r in rows])
        if rows:
            self._stored[rows[0].list_name] = (snapshot_id, rows)

    def _json(self, row: Row) -> str:
        """The row as JSON without its agreement_id (which is a column of its own)."""
        key = id(row)
        if self._encoded.get(key, (None,))[0] is not row:
            data = {k: v for k, v in vars(row).items() if k != "agreement_id"}
            self._encoded[key] = (row, json.dumps(data))
        return self._encoded[key][1]

    def _new_id(self, row: Row) -> str:
        code = STATE_CODES.get(row.state, slug(row.state).upper()[:6] or "XX")
        model = MODEL_CODES.get(row.model, slug(row.model)[:12] or "model")
        base = f"{code}-{slug(row.agency)}-{model}-{row.signed_date or 'undated'}"
        candidate, number = base, 1
        while self.db.execute("SELECT 1 FROM agreements WHERE agreement_id = ?",
                              (candidate,)).fetchone():
            number += 1
            candidate = f"{base}-{number}"
        return candidate

    def _assign(self, instance: Instance, agreement_id: str, list_name: str, stamp: str) -> None:
        instance.agreement_id = agreement_id
        for row in instance.rows:
            row.agreement_id = agreement_id
        # The row as JSON with its agreement_id last, as json.dumps(vars(row)) writes it.
        latest = f'{self._json(instance.best)[:-1]}, "agreement_id": {json.dumps(agreement_id)}}}'
        self.db.execute(
            "INSERT INTO agreements (agreement_id, list_name, first_seen, last_seen, absent, "
            "latest) VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (agreement_id) DO UPDATE SET "
            # A promoted agreement ICE still lists as pending stays on the participating list.
            "list_name = CASE WHEN agreements.list_name = 'participating' "
            "THEN 'participating' ELSE excluded.list_name END, "
            "last_seen = excluded.last_seen, absent = 0, withdrawn = '', "
            "latest = excluded.latest",
            (agreement_id, list_name, stamp, stamp, latest))

    def _agreements(self, list_name: str, *, absent_only: bool) -> list[Instance]:
        """Agreements on a list (only those that dropped out earlier, with absent_only)."""
        query = ("SELECT agreement_id, latest FROM agreements WHERE list_name = ? "
                 "AND superseded_by = ''" + (" AND absent > 0" if absent_only else ""))
        return [Instance([Row(**json.loads(row["latest"]))], row["agreement_id"])
                for row in self.db.execute(query, (list_name,))]

    def _list_of(self, agreement_id: str) -> str:
        row = self.db.execute("SELECT list_name FROM agreements WHERE agreement_id = ?",
                              (agreement_id,)).fetchone()
        return row[0] if row else ""

    def _compare(self, stamp: str, fresh: dict) -> list[Change]:
        changes: list[Change] = []
        gone: dict[str, list[Instance]] = {}
        arrived: dict[str, list[Instance]] = {}
        for name, (_, old, new) in fresh.items():
            pairs = match_instances(old, new)
            new_documents = {r.moa_url for i in new for r in i.rows if r.moa_url}
            matched_old = {id(o) for o, _ in pairs}
            matched_new = {id(n) for _, n in pairs}
            for o, n in pairs:
                if is_resigning(o.best, n.best, new_documents):
                    new_id = self._new_id(n.best)
                    self._assign(n, new_id, name, stamp)
                    self.db.execute("UPDATE agreements SET superseded_by = ? WHERE "
                                    "agreement_id = ?", (new_id, o.agreement_id))
                    changes.append(self._change("superseded", n, name,
                                                f"re-signed; supersedes {o.agreement_id} "
                                                f"(signed {o.signed_date})"))
                    continue
                self._assign(n, o.agreement_id, name, stamp)
                if spelling_key(o.agency) != spelling_key(n.agency):
                    changes.append(self._change("renamed", n, name, f"{o.agency} -> {n.agency}"))
                corrections = _field_changes(o.best, n.best)
                if corrections:
                    changes.append(self._change("corrected", n, name, "; ".join(corrections)))
                for kind, details in _document_changes(o.best, n.best):
                    changes.append(self._change(kind, n, name, details))
            gone[name] = [o for o in old if id(o) not in matched_old]
            arrived[name] = [n for n in new if id(n) not in matched_new]

        # Pending -> participating: the pending agreement keeps its id. ICE may keep it on
        # the pending sheet for a while; it is promoted all the same.
        if "participating" in fresh:
            pending = self._agreements("pending", absent_only=False)
            for o, n in match_instances(pending, arrived["participating"]):
                self._assign(n, o.agreement_id, "participating", stamp)
                changes.append(self._change("promoted", n, "participating",
                                            f"from the pending list ({o.agency})"))
                arrived["participating"].remove(n)

        for name in fresh:
            # An agreement that dropped out earlier and is back keeps its id.
            returning = self._agreements(name, absent_only=True)
            for o, n in match_instances(returning, arrived[name]):
                absent = self.db.execute("SELECT absent FROM agreements WHERE agreement_id = ?",
                                         (o.agreement_id,)).fetchone()[0]
                self._assign(n, o.agreement_id, name, stamp)
                changes.append(self._change("added", n, name,
                                            f"back after {absent} snapshot(s) without it"))
                arrived[name].remove(n)
            for n in arrived[name]:
                self._assign(n, self._new_id(n.best), name, stamp)
                changes.append(self._change("added", n, name))
            if name == "participating":
                changes += [self._change("removed", o, name) for o in gone[name]]
            # Everything of this list not in the new snapshot is absent once more.
            self.db.execute(
                "UPDATE agreements SET absent = absent + 1 WHERE list_name = ? AND last_seen < ?",
                (name, stamp))
        if "pending" in fresh:
            changes += self._withdrawals(stamp)
        return changes

    def _withdrawals(self, stamp: str) -> list[Change]:
        """Pending agreements gone for K snapshots and some days, and not promoted.

        ICE updates the pending sheet days before the participating one (Pickens County,
        SC took four days in May 2025), so an agreement leaving the pending list is usually
        about to appear as participating; calling it withdrawn at once would be false news.
        """
        cutoff = (dt.datetime.fromisoformat(stamp) - self.withdrawn_after).isoformat()
        rows = self.db.execute(
            "SELECT agreement_id, latest, last_seen FROM agreements WHERE list_name = 'pending' "
            "AND superseded_by = '' AND withdrawn = '' AND absent >= ? AND last_seen <= ?",
            (self.missing_after, cutoff)).fetchall()
        self.db.executemany("UPDATE agreements SET withdrawn = ? WHERE agreement_id = ?",
                            [(stamp, row["agreement_id"]) for row in rows])
        return [
            self._change("withdrawn", Instance([Row(**json.loads(row["latest"]))],
                                               row["agreement_id"]), "pending",
                         f"not on the pending list since {row['last_seen'][:10]} and not "
                         "on the participating list")
            for row in rows
        ]

    @staticmethod
    def _change(kind: str, instance: Instance, list_name: str, details: str = "") -> Change:
        return Change(kind, instance.agreement_id, instance.state, instance.agency,
                      instance.model, instance.signed_date, details, list_name)

    def link_archived(self, entries: list[dict], stamp: dt.datetime) -> list[dict]:
        """Archive-page entries with the agreement_id each matches (same state, agency and
        model; the same signed date when several do), and when each was first seen."""
        candidates: dict[tuple, list[tuple[str, str]]] = defaultdict(list)
        for record in self.db.execute("SELECT agreement_id, latest FROM agreements"):
            latest = json.loads(record["latest"])
            key = (latest["state"], latest["model"], match_key(latest["agency"]))
            candidates[key].append((record["agreement_id"], latest["signed_date"]))
        self.db.execute("""CREATE TABLE IF NOT EXISTS archived_agreements (
            url TEXT PRIMARY KEY, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL)""")
        result = []
        for entry in entries:
            found = candidates.get((entry["state"], entry["model"], match_key(entry["agency"])), [])
            same_day = [aid for aid, signed in found if signed == entry["date"]]
            agreement_id = (same_day or [aid for aid, _ in found])[:1]
            self.db.execute(
                "INSERT INTO archived_agreements VALUES (?, ?, ?) ON CONFLICT (url) "
                "DO UPDATE SET last_seen = excluded.last_seen",
                (entry["url"], stamp.isoformat(), stamp.isoformat()))
            first_seen = self.db.execute("SELECT first_seen FROM archived_agreements WHERE "
                                         "url = ?", (entry["url"],)).fetchone()[0]
            paths = [f["path"] for f in entry.get("files", [])]
            result.append({**entry, "agreement_id": agreement_id[0] if agreement_id else "",
                           "path": paths[0] if paths else "", "first_seen": first_seen,
                           "last_seen": stamp.isoformat()})
        return result

    # Status

    def status_of(self, absent: int, superseded_by: str) -> str:
        if superseded_by:
            return "superseded"
        if absent == 0:
            return "active"
        return "missing" if absent < self.missing_after else "removed"
