"""A mirror of ICE's 287(g) site, built from the real sheets and served on 127.0.0.1.

The sheets are the real ones with one change: every link to www.ice.gov (safelinks
included, where the target is percent-encoded) points at the mirror instead. Each linked
document is served as a small PDF unique to its URL.
"""

from __future__ import annotations

import contextlib
import email.utils
import html
import io
import re
import socket
import struct
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

FIXTURES = Path(__file__).parent / "fixtures" / "ice"
SHEETS = FIXTURES / "sheets"
AGREEMENTS = FIXTURES / "agreements"

_ICE = ("https://www.ice.gov", "http://www.ice.gov")
# Real links have spaces in them ("287gJEM_ etowahCoAL_06-09-2020.pdf").
_DOCUMENT_PATH = re.compile(r"/doclib/[^\n]+\.pdf", re.I)

PAGE_2025 = """<!DOCTYPE html>
<html lang="en"><head><title>Delegation of Immigration Authority Section 287(g) | ICE</title></head>
<body>
<h1>Delegation of Immigration Authority Section 287(g) Immigration and Nationality Act</h1>
<p>Read the <a href="/doclib/about/offices/ero/287g/287gFactSheet.pdf">287(g) fact sheet</a>
and the <a href="/doclib/detention/FY25_detentionStats07172025.xlsx">detention statistics</a>.</p>
<h2>Participating Agencies</h2>
<p><a href="{participating}">Participating agencies (Excel)</a></p>
<h2>Pending Agencies</h2>
<p><a href="{pending}">Pending agencies (Excel)</a></p>
<p><a href="https://www.dhs.gov/sites/default/files/budget.xlsx">DHS budget</a>
<a href="mailto:ERO287g@ice.dhs.gov">Contact</a></p>
</body></html>
"""

PAGE_2026 = """<!DOCTYPE html>
<html lang="en"><head><title>Delegation of Immigration Authority Section 287(g) | ICE</title></head>
<body>
<h1>Delegation of Immigration Authority Section 287(g) Immigration and Nationality Act</h1>
<ul>
<li><a href="/file-download/download/public/51234">View 287(g) Participating Agencies</a></li>
<li><a href="/file-download/download/public/51235">View ERO Annual Report</a></li>
<li><a href="/doclib/detention/FY26_detentionStats.xlsx">Detention statistics</a></li>
<li><a href="/doclib/about/offices/ero/287g/287gFactSheet.pdf">Fact sheet</a></li>
</ul>
</body></html>
"""


ARCHIVE_PATH = "/287g-archive"
# The archive page's layout: an accordion per state, a link per older agreement.
ARCHIVE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><title>287(g) Archive | ICE</title></head><body>
<h1>287(g) Archive</h1>
<div class="accordion">
<h3 class="accordion-title"><button>Florida</button></h3>
<div class="accordion-description"><ul>
<li><a href="/doclib/287gMOA/archive/287gJEM_FL_DOC_FL_08-21-2020.pdf">Florida Department of
Corrections [JEM] (Aug. 21, 2020)</a></li>
</ul></div>
<h3 class="accordion-title"><button>Kansas</button></h3>
<div class="accordion-description"><ul>
<li><a href="/doclib/287gMOA/archive/287gWSO_FinneyCoKs2020-03-17.pdf">Finney County Sheriff’s
Office [WSO] (Mar. 17, 2020)</a></li>
<li><a href="/doclib/287gMOA/archive/KansasBureauOfInv_TFM_MOA_02182025.pdf">Kansas Bureau of
Investigation [TFM] (Feb. 18, 2025)</a></li>
</ul></div>
</div></body></html>
"""


@dataclass
class Route:
    body: bytes
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    last_modified: float = 1750000000.0  # 2025-06-15, fixed so If-Modified-Since works
    # Misbehaviour on purpose: "reset" the connection, "stall" before answering, send a
    # "truncate"d body; for the first `fault_times` requests (0: always).
    fault: str = ""
    fault_times: int = 0
    stall: float = 0.0
    served: int = 0


def rewrite_workbook(body: bytes, base_url: str) -> bytes:
    """The same workbook with its www.ice.gov hyperlinks pointing at `base_url`."""
    source = zipfile.ZipFile(io.BytesIO(body))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith(".rels") and "worksheets" in info.filename:
                text = data.decode("utf-8")
                for prefix in _ICE:
                    text = text.replace(prefix, base_url)
                    text = text.replace(quote(prefix, safe=""), quote(base_url, safe=""))
                data = text.encode("utf-8")
            target.writestr(info, data)
    return out.getvalue()


def linked_documents(body: bytes) -> set[str]:
    """Decoded paths of the documents a workbook links to, as the server will see them."""
    paths = set()
    with zipfile.ZipFile(io.BytesIO(body)) as workbook:
        for name in workbook.namelist():
            if name.endswith(".rels") and "worksheets" in name:
                text = html.unescape(workbook.read(name).decode("utf-8"))
                for target in re.findall(r'Target="([^"]*)"', text):
                    if "safelinks" in target:
                        target = parse_qs(urlsplit(target).query)["url"][0]
                    path = unquote(urlsplit(target.strip()).path)
                    if _DOCUMENT_PATH.fullmatch(path):
                        paths.add(path)
    return paths


def fake_pdf(path: str) -> bytes:
    return (b"%PDF-1.4\n% tracking287g test mirror: " + path.encode() +
            b"\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")


class MirrorServer:
    """Serves routes from memory on 127.0.0.1 and records every request."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.times: list[tuple[str, float]] = []  # (path, monotonic time) of each request
        self.lock = threading.Lock()
        self.on_request = None  # called after each request is recorded, to change routes
        self.posts: list[tuple[str, bytes]] = []  # webhook messages received
        server = self

        class Handler(SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = unquote(urlsplit(self.path).path)
                with server.lock:
                    server.requests.append(("GET", path, dict(self.headers)))
                    server.times.append((path, time.monotonic()))
                route = server.routes.get(path)
                if server.on_request is not None:
                    server.on_request()
                with server.lock:
                    route = server.routes.get(path)
                    if route is not None:
                        route.served += 1
                        faulty = route.fault and (not route.fault_times
                                                  or route.served <= route.fault_times)
                if route is None:
                    return self._send(404, b"<html><title>Not found</title></html>", "text/html")
                if faulty and self._misbehave(route):
                    return None
                stamp = email.utils.formatdate(route.last_modified, usegmt=True)
                since = self.headers.get("If-Modified-Since")
                if route.status == 200 and since:
                    try:
                        since_time = email.utils.parsedate_to_datetime(since).timestamp()
                        if since_time >= int(route.last_modified):
                            return self._send(304, b"", None, {"Last-Modified": stamp})
                    except (TypeError, ValueError):
                        pass
                self._send(route.status, route.body, route.content_type,
                           {"Last-Modified": stamp, **route.headers})

            def _misbehave(self, route) -> bool:
                """Apply the route's fault; True when nothing more must be sent."""
                if route.fault == "stall":
                    time.sleep(route.stall)
                    return False
                if route.fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                elif route.fault == "truncate":
                    self.send_response(200)
                    self.send_header("Content-Type", route.content_type)
                    self.send_header("Content-Length", str(len(route.body) + 1000))
                    self.end_headers()
                    self.wfile.write(route.body[: len(route.body) // 2])
                    self.wfile.flush()
                self.close_connection = True
                self.connection.close()
                return True

            def finish(self):
                with contextlib.suppress(OSError):  # the connection was closed on purpose
                    super().finish()

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                with server.lock:
                    server.posts.append((self.path, self.rfile.read(length)))
                self._send(200, b"ok", "text/plain")

            def _send(self, status, body, content_type, headers=None):
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # the default 5 drops bursts of connections

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def requested(self, prefix: str = "") -> list[str]:
        with self.lock:
            return [path for _, path, _ in self.requests if path.startswith(prefix)]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()

    def add_sheet(self, path: str, sheet: Path, **route) -> set[str]:
        """Serve a rewritten real sheet at `path` and a PDF for each document it links."""
        body = rewrite_workbook(sheet.read_bytes(), self.url)
        self.routes[path] = Route(body, "application/vnd.openxmlformats-officedocument."
                                        "spreadsheetml.sheet", **route)
        documents = linked_documents(body)
        for document in documents:
            self.routes.setdefault(document, Route(fake_pdf(document), "application/pdf"))
        return documents

    def publish_archive(self) -> set[str]:
        """ICE's archive page, linking the three real agreement PDFs."""
        self.routes[ARCHIVE_PATH] = Route(ARCHIVE_PAGE.encode(), "text/html; charset=utf-8")
        paths = set()
        for pdf in sorted(AGREEMENTS.glob("*.pdf")):
            paths.add(f"/doclib/287gMOA/archive/{pdf.name}")
            self.routes[f"/doclib/287gMOA/archive/{pdf.name}"] = Route(pdf.read_bytes(),
                                                                       "application/pdf")
        return paths

    def publish_2025(self, participating: Path, pending: Path | None) -> set[str]:
        """The 2025 page: relative and absolute .xlsx links under /doclib/.../287g/."""
        base = "/doclib/about/offices/ero/287g/"
        documents = self.add_sheet(base + participating.name, participating)
        pending_href = ""
        if pending is not None:
            documents |= self.add_sheet(base + pending.name, pending)
            pending_href = self.url + base + pending.name  # absolute, as ICE sometimes links
        self.publish_archive()
        page = PAGE_2025.format(participating=base + participating.name, pending=pending_href)
        if pending is None:
            page = page.replace('<p><a href="">Pending agencies (Excel)</a></p>', "")
        self.routes["/identify-and-arrest/287g"] = Route(page.encode(), "text/html; charset=utf-8")
        return documents

    def publish_2026(self, participating: Path, name: str) -> set[str]:
        """The 2026 page: a /file-download/ link, named by Content-Disposition; no pending."""
        self.publish_archive()
        documents = self.add_sheet(
            "/file-download/download/public/51234", participating,
            headers={"Content-Disposition": f'attachment; filename="{name}"'})
        self.routes["/identify-and-arrest/287g"] = Route(PAGE_2026.encode(),
                                                          "text/html; charset=utf-8")
        return documents
