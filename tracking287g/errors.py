"""Download errors in words a person can act on, for failures.csv and the exit line."""

from __future__ import annotations

import re

from scrapy.spidermiddlewares.httperror import HttpError

_CONNECTION_ERRORS = {
    "ConnectionLost", "ConnectionDone", "ConnectionRefusedError", "ConnectError",
    "DNSLookupError", "ResponseNeverReceived", "DownloadConnectionRefusedError",
    "ConnectionAborted", "TCPTimedOutError",
}
_MAX_SIZE = re.compile(r"larger than (?:download )?(?:max size|maxsize) \((\d+)\)", re.I)


def describe(error: BaseException) -> str:
    """One line on why a download failed, with what to do where we know it."""
    name = type(error).__name__
    text = str(error)
    if isinstance(error, HttpError):
        status = error.response.status
        if status in (401, 403):
            return (f"HTTP {status}: the server refused this client; set USER_AGENT "
                    "(or TRACKING287G_USER_AGENT) to one it accepts, or wait and retry")
        return f"HTTP {status}"
    size = _MAX_SIZE.search(text)
    if size:
        return (f"larger than DOWNLOAD_MAXSIZE ({size.group(1)} bytes): not downloaded; raise "
                "DOWNLOAD_MAXSIZE if this document is real")
    if name == "ResponseDataLossError" or "DataLoss" in text:
        return ("truncated: the server sent less than it announced, on every retry "
                f"({name})")
    if "Timeout" in name or "timed out" in text.lower():
        return f"timed out after DOWNLOAD_TIMEOUT, on every retry ({name})"
    # Twisted wraps the cause: "DownloadFailedError: [<...Failure ...error.ConnectionLost: ...>]"
    inner = re.findall(r"(?:error|_newclient)\.(\w+)", text)
    cause = inner[0] if inner else name
    if name in _CONNECTION_ERRORS or cause in _CONNECTION_ERRORS:
        return f"connection failed on every retry ({cause})"
    if name == "IgnoreRequest" and "robots" in text.lower():
        return "forbidden by the site's robots.txt"
    return f"{name}: {text}".rstrip(": ")
