"""What a crawl did, whether it went right, and telling someone. Pure functions but the post.

A crawl that went wrong must never look like one that went right: every check that fails is
named in the log, in data/crawls.csv, in the webhook message and in the exit status.
"""

from __future__ import annotations

import json
import logging
import urllib.request

logger = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    "started", "finished", "finish_reason", "status", "sheets", "participating_rows",
    "pending_rows", "documents_linked", "documents_archived", "documents_already_archived",
    "documents_revalidated", "documents_failed", "changes", "errors", "responses_403",
    "responses_429", "failed_checks",
)


def summarize(stats: dict, reason: str, started, finished) -> dict:
    """The crawl in one flat record (one row of data/crawls.csv)."""
    def stat(name: str) -> int:
        return int(stats.get(name, 0) or 0)

    return {
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "finish_reason": reason,
        "sheets": stat("tracking287g/sheets_archived")
        + stat("tracking287g/sheets_already_archived"),
        "participating_rows": stat("tracking287g/participating_rows"),
        "pending_rows": stat("tracking287g/pending_rows"),
        "documents_linked": stat("tracking287g/documents_linked"),
        "documents_archived": stat("file_status_count/downloaded"),
        "documents_already_archived": stat("file_status_count/uptodate")
        + stat("file_status_count/already_archived"),
        "documents_revalidated": stat("file_status_count/revalidated"),
        "documents_failed": stat("tracking287g/documents_failed"),
        "changes": stat("tracking287g/changes"),
        "errors": stat("log_count/ERROR"),
        "responses_403": stat("downloader/response_status_count/403"),
        "responses_429": stat("downloader/response_status_count/429"),
    }


def failed_checks(summary: dict, stats: dict, settings) -> list[str]:
    """Each check on the crawl's stats that failed, as one line."""
    fatal = stats.get("tracking287g/fatal")
    if fatal:
        return [fatal]  # what else went wrong follows from it
    failures = []
    if summary["finish_reason"] != "finished":
        failures.append(f"the crawl ended with reason {summary['finish_reason']!r} instead of "
                        "'finished'")
    if summary["participating_rows"] == 0:
        failures.append("the participating list has no rows")
    if summary["errors"]:
        failures.append(f"{summary['errors']} errors in the log (expected none): read the log")
    linked, failed = summary["documents_linked"], summary["documents_failed"]
    share = settings.getfloat("MONITOR_MAX_DOCUMENT_FAILURES")
    if linked and failed / linked > share:
        failures.append(f"{failed} of {linked} documents failed ({failed / linked:.1%}, more "
                        f"than the {share:.1%} allowed); see data/failures.csv")
    if summary["responses_403"] > settings.getint("MONITOR_MAX_403"):
        failures.append(f"{summary['responses_403']} responses were 403 Forbidden: ice.gov may "
                        "be blocking this client; change USER_AGENT or wait")
    if summary["responses_429"] > settings.getint("MONITOR_MAX_429"):
        failures.append(f"{summary['responses_429']} responses were 429 Too Many Requests: "
                        "raise DOWNLOAD_DELAY")
    return failures


def message(summary: dict) -> str:
    """The summary as one line for people (log, Slack)."""
    verdict = "OK" if summary["status"] == "ok" else "FAILED"
    text = (f"tracking287g crawl {verdict} ({summary['started'][:16].replace('T', ' ')} UTC): "
            f"{summary['participating_rows']} participating and {summary['pending_rows']} "
            f"pending rows, {summary['changes']} changes; documents: "
            f"{summary['documents_linked']} linked, {summary['documents_archived']} newly "
            f"archived, {summary['documents_already_archived']} already archived, "
            f"{summary['documents_revalidated']} revalidated, {summary['documents_failed']} "
            "failed")
    if summary["failed_checks"]:
        text += ". Failed checks: " + " | ".join(summary["failed_checks"])
    return text


def post_webhook(url: str, summary: dict, timeout: float = 15) -> None:
    """POST the summary as JSON; `text` makes it a Slack (or Mattermost) message."""
    payload = json.dumps({"text": message(summary), "tracking287g": summary}).encode()
    request = urllib.request.Request(url, data=payload, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except OSError as exc:  # the crawl's outcome stands; the log says the message was lost
        logger.error("Could not post the crawl summary to the webhook: %s", exc)
