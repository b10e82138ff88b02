"""The exports under the archive root, all derived from the history database.

Current lists, counts, failures, the change log, every agreement with its status, the time
series, plots, and the dataset README.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import os
from collections import Counter, defaultdict
from concurrent.futures import BrokenExecutor, Executor
from pathlib import Path

from tracking287g.history import History, Row
from tracking287g.sheets import LISTS

ROW_COLUMNS = (
    "list", "sheet", "row_number", "agreement_id", "state", "agency", "agency_type", "county",
    "model", "signed_date", "moa_status", "moa_url", "moa_path", "addendum_url",
    "addendum_path", "notes", "state_raw", "agency_raw", "agency_type_raw", "county_raw",
    "model_raw", "signed_raw", "moa_raw", "moa_link_raw", "addendum_raw", "addendum_link_raw",
)
FAILURE_COLUMNS = ("list", "state", "agency", "row_number", "url", "reason")
CHANGE_COLUMNS = ("snapshot_time", "list", "change", "agreement_id", "state", "agency", "model",
                  "signed_date", "details")
AGREEMENT_COLUMNS = ("agreement_id", "status", "list", "first_seen", "last_seen", "state",
                     "agency", "agency_type", "county", "model", "signed_date", "moa_status",
                     "moa_url", "moa_path", "addendum_url", "addendum_path", "superseded_by")
TIMESERIES_COLUMNS = ("snapshot_time", "list", "group", "key", "agreements")
ARCHIVED_COLUMNS = ("state", "agency", "model", "date", "url", "path", "agreement_id",
                    "first_seen", "last_seen")

BAR_WIDTH = 40
BAR_BLOCK = "\u2588"
# Leading characters that make spreadsheets run a cell as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# How many changes of one kind the README lists before pointing to changes.csv.
README_CHANGES_PER_KIND = 25


def export_row(row: Row, sheet: str) -> dict:
    values = {"list": row.list_name, "sheet": sheet, "row_number": row.row_number,
              "agreement_id": row.agreement_id, "state": row.state, "agency": row.agency,
              "agency_type": row.agency_type, "county": row.county, "model": row.model,
              "signed_date": row.signed_date, "moa_status": row.moa_status,
              "moa_url": row.moa_url, "moa_path": row.moa_path,
              "addendum_url": row.addendum_url, "addendum_path": row.addendum_path,
              "notes": row.notes}
    for name in ("state", "agency", "agency_type", "county", "model", "signed", "moa",
                 "addendum", "moa_link", "addendum_link"):
        values[f"{name}_raw"] = row.raw.get(name, "")
    return values


def current_rows(history: History, list_name: str) -> tuple[list[dict], dict | None]:
    """The rows of a list's latest trustworthy snapshot, and that snapshot."""
    snapshot = history.latest_snapshot(list_name)
    if snapshot is None:
        return [], None
    sheet = snapshot["published_name"]
    return [export_row(row, sheet) for row in history.snapshot_rows(snapshot)], dict(snapshot)


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
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: neutralise(row.get(column, "")) for column in columns})
    return buffer.getvalue()


def write_text(path: Path, text: str | bytes) -> Path:
    """Replace an export atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    if isinstance(text, bytes):
        temporary.write_bytes(text)
    else:
        temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path


def counts_rows(lists: dict[str, list[dict]]) -> list[dict]:
    participating = state_counts(lists["participating"])
    pending = state_counts(lists["pending"])
    return [{"state": state, "participating": participating[state], "pending": pending[state]}
            for state in sorted(set(participating) | set(pending))]


def change_rows(history: History) -> list[dict]:
    return [{"snapshot_time": r["snapshot_time"], "list": r["list_name"], "change": r["change"],
             "agreement_id": r["agreement_id"], "state": r["state"], "agency": r["agency"],
             "model": r["model"], "signed_date": r["signed_date"], "details": r["details"]}
            for r in history.db.execute("SELECT * FROM changes ORDER BY id")]


def agreement_rows(history: History) -> list[dict]:
    rows = []
    for record in history.db.execute("SELECT * FROM agreements ORDER BY agreement_id"):
        latest = json.loads(record["latest"])
        rows.append({**latest, "agreement_id": record["agreement_id"],
                     "status": history.status_of(record["absent"], record["superseded_by"]),
                     "list": record["list_name"], "first_seen": record["first_seen"],
                     "last_seen": record["last_seen"], "superseded_by": record["superseded_by"]})
    return rows


def timeseries_rows(history: History) -> list[dict]:
    """Per trustworthy snapshot: agreements in total, by model and by state."""
    rows = []
    for snapshot in history.db.execute(
            "SELECT * FROM snapshots WHERE status IN ('normal', 'unchanged') "
            "ORDER BY taken_at, id").fetchall():
        base = {"snapshot_time": snapshot["taken_at"], "list": snapshot["list_name"]}
        order = {"total": 0, "model": 1, "state": 2}
        rows += [{**base, "group": group, "key": key, "agreements": count}
                 for group, key, count in sorted(history.counts(snapshot),
                                                 key=lambda c: (order[c[0]], c[1]))]
    return rows


def import_plotting() -> None:
    """Import what plots() needs (a third of a second), e.g. in a worker ahead of time."""
    import matplotlib.figure  # noqa: F401


def plots(timeseries: list[dict], lists: dict[str, list[dict]]) -> dict[str, bytes]:
    """PNG plots: participating agreements over time by model; the states with the most."""
    # Figure without pyplot: no global state, and a third less to import.
    from matplotlib.figure import Figure

    result = {}
    figure = Figure(figsize=(9, 5))
    axes = figure.subplots()
    for label, points in sorted(plotted_series(timeseries).items()):
        when = [dt.datetime.fromisoformat(p[0]) for p in points]
        axes.step(when, [p[1] for p in points], where="post", marker=".", label=label)
    axes.set_title("287(g) participating agreements over time, by model")
    axes.set_ylabel("agreements")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    result["agreements_by_model.png"] = _png(figure)

    agreements = {}
    for row in lists["participating"]:
        agreements.setdefault(row["agreement_id"], row)
    top = Counter(row["state"] for row in agreements.values()).most_common(15)[::-1]
    figure = Figure(figsize=(9, 6))
    axes = figure.subplots()
    axes.barh([state.title() for state, _ in top], [count for _, count in top])
    axes.set_title("States with the most 287(g) participating agreements")
    axes.set_xlabel("agreements")
    for index, (_, count) in enumerate(top):
        axes.text(count, index, f" {count}", va="center")
    result["top_states.png"] = _png(figure)
    return result


def plotted_series(timeseries: list[dict]) -> dict[str, list[tuple[str, int]]]:
    """Participating agreements over time, in total and by model: a point where a value
    changed (the plot steps there), so a crawl that changed nothing changes no plot."""
    series: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for row in timeseries:
        if row["list"] == "participating" and row["group"] in ("total", "model"):
            points = series["All agreements" if row["group"] == "total" else row["key"]]
            if not points or points[-1][1] != row["agreements"]:
                points.append((row["snapshot_time"], row["agreements"]))
    return series


def write_plots(folder: Path, timeseries: list[dict], lists: dict[str, list[dict]],
                executor: Executor | None = None) -> list[Path]:
    """Draw the plots again only when what they show changed (matplotlib costs a second);
    in `executor`'s process when one is given."""
    shown = plotted_series(timeseries)
    states = sorted(Counter(r["state"] for r in {r["agreement_id"]: r for r in
                                                  lists["participating"]}.values()).items())
    digest = hashlib.sha256(json.dumps([shown, states]).encode()).hexdigest()
    marker = folder / ".drawn-from"
    names = ("agreements_by_model.png", "top_states.png")
    if (marker.exists() and marker.read_text() == digest
            and all((folder / name).exists() for name in names)):
        return []
    images = None
    # A worker that died (killed, out of memory) leaves the drawing to this process.
    with contextlib.suppress(BrokenExecutor):
        if executor is not None:
            images = executor.submit(plots, timeseries, lists).result()
    if images is None:
        images = plots(timeseries, lists)
    written = [write_text(folder / name, image) for name, image in images.items()]
    write_text(marker, digest)
    return written


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    # No timestamp in the file, so an unchanged plot is an unchanged file.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _describe(change: dict) -> str:
    signed = f", signed {change['signed_date']}" if change["signed_date"] else ""
    details = f": {change['details']}" if change["details"] else ""
    return (f"- {change['state'].title()}: {change['agency']} ({change['model']}{signed}) "
            f"`{change['agreement_id']}`{details}")


def what_changed(changes: list[dict], latest: str | None) -> list[str]:
    lines = ["## What changed", ""]
    recent = [c for c in changes if latest and c["snapshot_time"] == latest]
    if not recent:
        return [*lines, "No changes in the latest crawl. The whole log: "
                        "[data/changes.csv](data/changes.csv).", ""]
    lines.append(f"In the crawl of {latest[:16].replace('T', ' ')} UTC "
                 "(the whole log: [data/changes.csv](data/changes.csv)):")
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for change in recent:
        by_kind[change["change"]].append(change)
    for kind, items in by_kind.items():
        lines += ["", f"### {kind.replace('_', ' ').capitalize()} ({len(items)})", ""]
        lines += [_describe(c) for c in items[:README_CHANGES_PER_KIND]]
        if len(items) > README_CHANGES_PER_KIND:
            lines.append(f"- and {len(items) - README_CHANGES_PER_KIND} more in data/changes.csv")
    return [*lines, ""]


def dataset_readme(started: dt.datetime, lists: dict[str, list[dict]],
                   snapshots: dict[str, dict | None], unpublished: set[str],
                   failures: list[dict], changes: list[dict], statuses: Counter,
                   latest_change_time: str | None) -> str:
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
        snapshot = snapshots.get(name)
        if name in unpublished or snapshot is None:
            lines.append(f"| {name} | 0 | 0 | not published | |")
            continue
        path = snapshot["sheet_path"]
        copy = f"[{path}]({path})" if path else ""
        lines.append(f"| {name} | {len(lists[name])} | {len(state_counts(lists[name]))} | "
                     f"{snapshot['published_name']} | {copy} |")
    documents = {row[f"{kind}_path"] for row in lists["participating"]
                 for kind in ("moa", "addendum") if row[f"{kind}_path"]}
    status_text = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
    lines += [
        "",
        f"Agreement documents linked from the current participating list and archived: "
        f"{len(documents)}. Documents that could not be archived this crawl: {len(failures)}.",
        f"Agreements ever seen: {sum(statuses.values())} ({status_text}).",
        "",
        "Files:",
        "- [data/participating.csv](data/participating.csv) and "
        "[data/pending.csv](data/pending.csv): the current lists, one row per sheet row, "
        "normalised fields beside the raw text, agreement ids, document URLs and archive paths",
        "- [data/counts.csv](data/counts.csv): sheet rows per state",
        "- [data/changes.csv](data/changes.csv): every change ever seen, by snapshot",
        "- [data/agreements.csv](data/agreements.csv): every agreement ever seen, its first and "
        "last sighting and status (active, missing, removed, superseded)",
        "- [data/timeseries.csv](data/timeseries.csv): agreements per snapshot, in total, by "
        "model and by state",
        "- [data/archived_agreements.csv](data/archived_agreements.csv): ICE's archive page of "
        "older agreements",
        "- [data/failures.csv](data/failures.csv): what could not be archived this crawl, and why",
        "- `sheets/` and `agreements/`: every file as ICE published it; "
        "`tracking287g.sqlite`: the manifest, snapshots and history",
        "",
        "![Agreements over time by model](plots/agreements_by_model.png)",
        "",
        "![States with the most agreements](plots/top_states.png)",
        "",
    ]
    lines += what_changed(changes, latest_change_time)
    lines += ["## Agency Counts", "### Pending Agencies Count:", ""]
    pending = bar_chart(state_counts(lists["pending"]))
    lines.append(pending or "ICE's current pending list is empty or not published.")
    lines += ["", "### Participating Agencies Count:", ""]
    lines.append(bar_chart(state_counts(lists["participating"])))
    return "\n".join(lines) + "\n"


def write_all(root: Path, history: History, started: dt.datetime, *,
              unpublished: set[str] = frozenset(), failures: list[dict] = (),
              archived: list[dict] | None = None,
              executor: Executor | None = None) -> list[Path]:
    """Write every export from the history; `archived` replaces archived_agreements.csv;
    `executor` draws the plots."""
    lists, snapshots = {}, {}
    for name in LISTS:
        lists[name], snapshots[name] = ([], None) if name in unpublished else current_rows(
            history, name)
    changes = change_rows(history)
    agreements = agreement_rows(history)
    timeseries = timeseries_rows(history)
    latest = history.db.execute("SELECT MAX(snapshot_time) FROM changes").fetchone()[0]
    latest_snapshot = history.last_time()
    data = root / "data"
    written = [
        write_text(data / "participating.csv", csv_text(ROW_COLUMNS, lists["participating"])),
        write_text(data / "pending.csv", csv_text(ROW_COLUMNS, lists["pending"])),
        write_text(data / "counts.csv",
                   csv_text(("state", "participating", "pending"), counts_rows(lists))),
        write_text(data / "failures.csv", csv_text(FAILURE_COLUMNS, list(failures))),
        write_text(data / "changes.csv", csv_text(CHANGE_COLUMNS, changes)),
        write_text(data / "agreements.csv", csv_text(AGREEMENT_COLUMNS, agreements)),
        write_text(data / "timeseries.csv", csv_text(TIMESERIES_COLUMNS, timeseries)),
    ]
    if archived is not None:
        written.append(write_text(data / "archived_agreements.csv",
                                  csv_text(ARCHIVED_COLUMNS, archived)))
    written += write_plots(root / "plots", timeseries, lists, executor)
    statuses = Counter(row["status"] for row in agreements)
    readme = dataset_readme(started, lists, snapshots, set(unpublished), list(failures),
                            changes, statuses, latest if latest == latest_snapshot else None)
    written.append(write_text(root / "README.md", readme))
    return written
