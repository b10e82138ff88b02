"""Baseline: the same job with plain sequential `requests` (page, sheet, every PDF)."""

from __future__ import annotations

import sys
from pathlib import Path

import requests
from common import document_urls, sheet_url

HEADERS = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"}


def main(page_url: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with requests.Session() as session:
        page = session.get(page_url, headers=HEADERS, timeout=60)
        sheet = session.get(sheet_url(page.text, page_url), headers=HEADERS, timeout=60)
        for number, url in enumerate(document_urls(sheet.content)):
            body = session.get(url, headers=HEADERS, timeout=60).content
            (out / f"{number}.pdf").write_bytes(body)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
