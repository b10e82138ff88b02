"""Baseline: the same job with bare Scrapy and its stock FilesPipeline, none of our code.

It measures the floor of the framework the project is built on: page, sheet, every PDF
through Scrapy's engine, downloader and media pipeline, stored under full/<sha1>.pdf. The
gap between this and our cold crawl is what our archive (paths, manifest, fsync, history,
exports) costs; the gap between this and aiohttp is what Scrapy costs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import scrapy
from common import document_urls, sheet_url
from scrapy.crawler import AsyncCrawlerProcess


class BaselineSpider(scrapy.Spider):
    name = "baseline"

    def __init__(self, page_url: str, **kwargs):
        super().__init__(**kwargs)
        self.page_url = page_url

    async def start(self):
        yield scrapy.Request(self.page_url)

    def parse(self, response):
        yield response.follow(sheet_url(response.text, response.url), self.parse_sheet)

    def parse_sheet(self, response):
        for url in document_urls(response.body):
            yield {"file_urls": [url]}


def main(page_url: str, out: Path, concurrency: int) -> None:
    process = AsyncCrawlerProcess({
        "ITEM_PIPELINES": {"scrapy.pipelines.files.FilesPipeline": 1},
        "FILES_STORE": str(out), "LOG_LEVEL": "WARNING", "ROBOTSTXT_OBEY": False,
        "TELNETCONSOLE_ENABLED": False, "DOWNLOAD_DELAY": 0,
        "CONCURRENT_REQUESTS": concurrency, "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        # As in our settings: items in flight each hold a document's body.
        "CONCURRENT_ITEMS": 32,
    })
    process.crawl(BaselineSpider, page_url=page_url)
    process.start()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
