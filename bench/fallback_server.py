"""The documented fallback when nginx is not installed: a threaded static file server that
honours If-Modified-Since and writes an access log ("path status bytes") like nginx's."""

from __future__ import annotations

import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

LOCK = threading.Lock()


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    extensions_map: ClassVar = {**SimpleHTTPRequestHandler.extensions_map, "": "text/html",
                      ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}

    def log_message(self, *args):
        pass

    def log_request(self, code="-", size="-"):
        length = self._length if isinstance(code, int) or str(code).isdigit() else 0
        with LOCK, open(LOG, "a") as log:
            log.write(f"{self.path} {int(code)} {length}\n")

    def send_header(self, keyword, value):
        if keyword.lower() == "content-length":
            self._length = int(value)
        super().send_header(keyword, value)

    def send_response(self, code, message=None):
        self._length = 0
        super().send_response(code, message)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


if __name__ == "__main__":
    root, port, LOG = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    Server(("127.0.0.1", port), partial(Handler, directory=root)).serve_forever()
