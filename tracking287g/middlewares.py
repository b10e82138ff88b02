"""Downloader middlewares."""

from __future__ import annotations

import asyncio
import email.utils
import time

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.utils.response import response_status_message


def retry_after_seconds(value: bytes | None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    text = value.decode("latin-1").strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class BackoffRetryMiddleware(RetryMiddleware):
    """RetryMiddleware that waits before each retry: Retry-After when the server sends one
    (capped), otherwise RETRY_BACKOFF_BASE doubled on every retry (capped)."""

    def __init__(self, settings):
        super().__init__(settings)
        self.backoff_base = settings.getfloat("RETRY_BACKOFF_BASE", 2.0)
        self.backoff_max = settings.getfloat("RETRY_BACKOFF_MAX", 120.0)

    def delay(self, request, response=None) -> float:
        retries = request.meta.get("retry_times", 0)
        delay = self.backoff_base * (2 ** retries)
        if response is not None:
            requested = retry_after_seconds(response.headers.get("Retry-After"))
            if requested is not None:
                delay = requested
        return min(delay, self.backoff_max)

    async def process_response(self, request, response):
        if request.meta.get("dont_retry", False) or response.status not in self.retry_http_codes:
            return response
        retry = self._retry(request, response_status_message(response.status))
        if retry is None:
            return response
        await asyncio.sleep(self.delay(request, response))
        return retry

    async def process_exception(self, request, exception):
        if not isinstance(exception, self.exceptions_to_retry) or request.meta.get("dont_retry"):
            return None
        retry = self._retry(request, exception)
        if retry is not None:
            await asyncio.sleep(self.delay(request))
        return retry
