"""What the baselines share: finding the sheet and its document links (openpyxl, as we do)."""

from __future__ import annotations

import io
import re
from urllib.parse import parse_qs, urljoin, urlsplit

import openpyxl


def sheet_url(html: str, page_url: str) -> str:
    href = re.search(r'href="([^"]*participating[^"]*\.xlsx)"', html, re.I).group(1)
    return urljoin(page_url, href)


def document_urls(workbook: bytes) -> list[str]:
    sheet = openpyxl.load_workbook(io.BytesIO(workbook)).worksheets[0]
    urls = []
    for row in sheet.iter_rows(min_row=2):
        for cell in row:
            if cell.hyperlink is not None and cell.hyperlink.target:
                url = cell.hyperlink.target
                if "safelinks" in url:
                    url = parse_qs(urlsplit(url).query)["url"][0]
                urls.append(url)
    return list(dict.fromkeys(urls))
