"""The exports under the archive root: current lists, counts, failures and the dataset README."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tracking287g.items import AgreementRow, MissingListItem, SheetItem

LISTS = ("participating", "pending")

ROW_COLUMNS = (
    "list", "sheet", "row_number", "state", "agency", "agency_type", "county", "model",
    "signed_date", "moa_status", "moa_url", "moa_path", "addendum_url", "addendum_path",
    "notes", "state_raw", "agency_raw", "agency_type_raw", "county_raw", "model_raw",
    "signed_raw", "moa_raw", "moa_link_raw", "addendum_raw", "addendum_link_raw",
)
FAILURE_COLUMNS = ("list", "state", "agency", "row_number", "url", "reason")

BAR_WIDTH = 40
BAR_BLOCK = "\u2588"
# Leading characters that make spreadsheets run a cell as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class CurrentList:
    """What a list holds now, and where that came from."""

    list_name: str
    taken_at: str
    published: bool
    published_name: str = ""
    sheet_sha256: str = ""
    sheet_path: str = ""
    rows: list[dict] = field(default_factory=list)
    note: str = ""


def export_row(row: AgreementRow) -> dict:
    paths = {document["url"]: document["path"] for document in row.files}
    values = {
        "list": row.list_name, "sheet": row.sheet_name, "row_number": row.row_number,
        "state": row.state, "agency": row.agency, "agency_type": row.agency_type,
        "county": row.county, "model": row.model, "signed_date": row.signed_date,
        "moa_status": row.moa_status, "moa_url": row.moa_url,
        "moa_path": paths.get(row.moa_url, ""), "addendum_url": row.addendum_url,
        "addendum_path": paths.get(row.addendum_url, ""), "notes": "; ".join(row.notes),
    }
    for name in ("state", "agency", "agency_type", "county", "model", "signed", "moa",
                 "addendum"):
        values[f"{name}_raw"] = row.raw.get(name, "")
    values["moa_link_raw"] = row.raw.get("moa_link", "")
    values["addendum_link_raw"] = row.raw.get("addendum_link", "")
    return values


def update_current_lists(db: sqlite3.Connection, started: dt.datetime,
                         sheets: dict[str, SheetItem], missing: dict[str, MissingListItem],
                         rows: dict[str, list[AgreementRow]]) -> dict[str, CurrentList]:
    """Store what each list holds after this crawl; a list that failed keeps its last state."""
    result = {}
    for name in LISTS:
        sheet = sheets.get(name)
        if sheet is not None:
            current = CurrentList(
                name, started.isoformat(), True, sheet.published_name, sheet.sha256,
                sheet.path, [export_row(r) for r in sorted(rows[name], key=lambda r: r.row_number)])
        elif name in missing and missing[name].reason == "not_published":
            current = CurrentList(name, started.isoformat(), False,
                                  note="ICE's page links no sheet for this list")
        else:
            current = _load_current(db, name) or CurrentList(name, started.isoformat(), False)
            detail = missing[name].detail if name in missing else "not read"
            current.note = (f"this crawl could not read the sheet ({detail}); "
                            f"kept from {current.taken_at}")
            result[name] = current
            continue  # nothing new to store
        db.execute(
            """INSERT OR REPLACE INTO current_lists VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (name, current.taken_at, int(current.published), current.published_name,
             current.sheet_sha256, current.sheet_path, json.dumps(current.rows)))
        result[name] = current
    return result


def _load_current(db: sqlite3.Connection, name: str) -> CurrentList | None:
    row = db.execute("SELECT * FROM current_lists WHERE list_name = ?", (name,)).fetchone()
    if row is None:
        return None
    return CurrentList(name, row["taken_at"], bool(row["published"]), row["published_name"],
                       row["sheet_sha256"], row["sheet_path"], json.loads(row["rows_json"]))


def collect_failures(rows: dict[str, list[AgreementRow]],
                     missing: dict[str, MissingListItem]) -> list[dict]:
    """One line per document (or sheet) that could not be archived this crawl."""
    failures, seen = [], set()
    for item in missing.values():
        if item.reason == "failed":
            failures.append({"list": item.list_name, "state": "", "agency": "",
                             "row_number": "", "url": item.url, "reason": item.detail})
    for name in LISTS:
        for row in sorted(rows[name], key=lambda r: r.row_number):
            for failure in row.failures:
                if failure["url"] not in seen:
                    seen.add(failure["url"])
                    failures.append({"list": name, "state": row.state, "agency": row.agency,
                                     "row_number": row.row_number, **failure})
    return failures


def state_counts(rows: list[dict]) -> Counter:
    """Sheet rows per state, the way the original tracker counted (duplicates included)."""
    return Counter(row["state"] for row in rows if row["state"])


def bar_chart(counts: Counter) -> str:
    """The original tracker's chart: ` 1. FLORIDA         | ████ 270`, ties alphabetical."""
    if not counts:
        return ""
    top = max(counts.values())
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return "\n".join(
        f"{rank:2d}. {state:<15} | {BAR_BLOCK * (BAR_WIDTH * count // top)} {count}"
        for rank, (state, count) in enumerate(ordered, start=1)
    )


def neutralise(value: object) -> object:
    """Spreadsheet formula injection: a cell starting with =, +, -, @ is shown as text."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_text(columns: tuple[str, ...], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: neutralise(row.get(column, "")) for column in columns})
    return buffer.getvalue()


def write_text(path: Path, text: str) -> Path:
    """Replace an export atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path


def counts_rows(lists: dict[str, CurrentList]) -> list[dict]:
    participating = state_counts(lists["participating"].rows)
    pending = state_counts(lists["pending"].rows)
    return [{"state": state, "participating": participating[state], "pending": pending[state]}
            for state in sorted(set(participating) | set(pending))]


def dataset_readme(started: dt.datetime, lists: dict[str, CurrentList],
                   failures: list[dict]) -> str:
    lines = [
        "# ICE 287(g) agreements: the tracking287g archive",
        "",
        "A daily archive of the 287(g) program records ICE publishes at "
        "https://www.ice.gov/identify-and-arrest/287g: the participating and pending "
        "agencies sheets and every agreement (MOA) and addendum they link to.",
        "",
        f"Last crawl: {started.strftime('%Y-%m-%d %H:%M:%S')} UTC.",
        "",
        "| List | Rows | States | Sheet | Archived copy |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for name in LISTS:
        current = lists[name]
        if not current.published:
            lines.append(f"| {name} | 0 | 0 | not published | |")
            continue
        copy = f"[{current.sheet_path}]({current.sheet_path})" if current.sheet_path else ""
        lines.append(f"| {name} | {len(current.rows)} | {len(state_counts(current.rows))} | "
                     f"{current.published_name} | {copy} |")
    documents = {row[f"{kind}_path"] for row in lists["participating"].rows
                 for kind in ("moa", "addendum") if row[f"{kind}_path"]}
    lines += [
        "",
        f"Agreement documents linked from the current participating list and archived: "
        f"{len(documents)}. Documents that could not be archived this crawl: {len(failures)}.",
        "",
        "Files:",
        "- [data/participating.csv](data/participating.csv) and "
        "[data/pending.csv](data/pending.csv): the current lists, one row per sheet row, "
        "normalised fields beside the raw text, document URLs and archive paths",
        "- [data/counts.csv](data/counts.csv): sheet rows per state",
        "- [data/failures.csv](data/failures.csv): what could not be archived this crawl, and why",
        "- `sheets/` and `agreements/`: every file as ICE published it; "
        "`tracking287g.sqlite`: the manifest of every archived file",
    ]
    notes = [f"- {name}: {lists[name].note}" for name in LISTS if lists[name].note]
    if notes:
        lines += ["", "Notes:", *notes]
    lines += ["", "## Agency Counts", "### Pending Agencies Count:", ""]
    pending = bar_chart(state_counts(lists["pending"].rows))
    lines.append(pending or "ICE's current pending list is empty or not published.")
    lines += ["", "### Participating Agencies Count:", ""]
    lines.append(bar_chart(state_counts(lists["participating"].rows)))
    return "\n".join(lines) + "\n"


def write_all(root: Path, started: dt.datetime, lists: dict[str, CurrentList],
              failures: list[dict]) -> list[Path]:
    data = root / "data"
    return [
        write_text(data / "participating.csv", csv_text(ROW_COLUMNS, lists["participating"].rows)),
        write_text(data / "pending.csv", csv_text(ROW_COLUMNS, lists["pending"].rows)),
        write_text(data / "counts.csv",
                   csv_text(("state", "participating", "pending"), counts_rows(lists))),
        write_text(data / "failures.csv", csv_text(FAILURE_COLUMNS, failures)),
        write_text(root / "README.md", dataset_readme(started, lists, failures)),
    ]
