"""Baseline: the same job with asyncio + aiohttp at a given concurrency."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
from common import document_urls, sheet_url

HEADERS = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"}


async def main(page_url: str, out: Path, concurrency: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=HEADERS, connector=connector) as session:
        async with session.get(page_url) as page:
            html = await page.text()
        async with session.get(sheet_url(html, page_url)) as sheet:
            workbook = await sheet.read()

        async def fetch(number: int, url: str) -> None:
            async with limit, session.get(url) as response:
                body = await response.read()
            await asyncio.to_thread((out / f"{number}.pdf").write_bytes, body)

        await asyncio.gather(*(fetch(n, u) for n, u in enumerate(document_urls(workbook))))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))
