"""Settings for tracking287g. Each departure from Scrapy's defaults says why.

Paths and the User-Agent come from the environment so the same project runs unchanged on a
laptop, from cron, on Scrapyd or on Zyte Scrapy Cloud. Override any of them per crawl with
`scrapy crawl ice287g -s NAME=VALUE`.
"""

import os

BOT_NAME = "tracking287g"
SPIDER_MODULES = ["tracking287g.spiders"]
NEWSPIDER_MODULE = "tracking287g.spiders"
# Our `crawl` command replaces Scrapy's so that a failed crawl exits non-zero.
COMMANDS_MODULE = "tracking287g.commands"

# The archive root: sheets/, agreements/, data/, README.md and the SQLite manifest.
FILES_STORE = os.getenv("FILES_STORE", "output")

# ice.gov answers 403 to clients that announce themselves as robots (Scrapy's default
# User-Agent among them), so the default reads like a current browser.
USER_AGENT = os.getenv(
    "TRACKING287G_USER_AGENT",
    "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
)

# Politeness: ICE's site is a public service and blocks heavy clients.
ROBOTSTXT_OBEY = True
DOWNLOAD_DELAY = 1.0  # default 0; one request a second at most to start with
CONCURRENT_REQUESTS_PER_DOMAIN = 2  # default 8
AUTOTHROTTLE_ENABLED = True  # default off; slows down when ice.gov slows down
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
DOWNLOAD_TIMEOUT = 60  # default 180; a stalled transfer is retried sooner
# Agreements are a few MB; anything far larger is not an agreement (default 1 GiB).
DOWNLOAD_MAXSIZE = 100 * 1024 * 1024
DOWNLOAD_WARNSIZE = 30 * 1024 * 1024

# Retries with exponential backoff (Scrapy's RetryMiddleware retries at once).
RETRY_TIMES = 4  # default 2
# Default ERROR: a document that fails is reported in data/failures.csv, so an ERROR in the
# log always means something unexpected (the monitor fails the crawl on any).
RETRY_GIVE_UP_LOG_LEVEL = "WARNING"
RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408, 429]
RETRY_BACKOFF_BASE = 2.0  # seconds before the first retry; doubles on each retry
RETRY_BACKOFF_MAX = 120.0  # the longest wait between retries, Retry-After included
DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "tracking287g.middlewares.BackoffRetryMiddleware": 550,
}

# Default 100. Each row in the pipelines holds its document's body until it is hashed and
# stored: 100 rows of 2 MB PDFs is 200 MB. 32 keeps memory flat and still outpaces the
# downloader (CONCURRENT_REQUESTS_PER_DOMAIN).
CONCURRENT_ITEMS = 32
ITEM_PIPELINES = {
    "tracking287g.pipelines.ArchivePipeline": 100,
    "tracking287g.pipelines.HistoryPipeline": 800,
}
# An agreement absent from this many consecutive snapshots of its list is "removed" (before
# that "missing"); a pending one is then logged as withdrawn.
HISTORY_MISSING_AFTER = 3
# A pending agreement is logged as withdrawn only when it has also been gone this many days
# without being promoted: ICE updates the pending sheet days before the participating one.
HISTORY_WITHDRAWN_AFTER_DAYS = 7.0
# A participating list that loses more than this share of its rows is held as suspect:
# ICE once published a list that dropped 1,012 of ~1,580 agencies for a day.
HISTORY_SUSPECT_SHRINK = 0.2
# Hosts agreement documents may be fetched from (subdomains included), besides the start
# URL's: a link to anywhere else is reported in data/failures.csv, never fetched.
DOCUMENT_HOSTS = ["ice.gov"]
# ICE's http:// links redirect to https://; FilesPipeline does not follow redirects by default.
MEDIA_ALLOW_REDIRECTS = True
# Days after which an archived document is revalidated with If-Modified-Since; until then
# a known document costs no request at all.
DOCUMENTS_REVALIDATE_DAYS = float(os.getenv("TRACKING287G_REVALIDATE_DAYS", "30"))

EXTENSIONS = {
    "tracking287g.extensions.CrawlWorkspace": 100,
    "tracking287g.extensions.DocumentProgress": 500,
    "tracking287g.extensions.CrawlMonitor": 900,
}
# How often the log reports documents done of total, rate and time left (seconds).
PROGRESS_INTERVAL = 60.0
# An unattended daily crawl needs no console that runs code in it (Scrapy starts a telnet
# console and, in recent versions, an HTTP "remote control"); turn one on with -s to debug.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False

LOG_LEVEL = os.getenv("LOG_LEVEL", "INFO")  # default DEBUG logs every request

# Monitoring: checks on every crawl's stats; any failure makes `scrapy crawl` exit 1.
MONITOR_MAX_DOCUMENT_FAILURES = 0.05  # the share of linked documents that may fail
MONITOR_MAX_403 = 0  # ice.gov answers 403 when it blocks a client
MONITOR_MAX_429 = 20
# POST each crawl's summary here as JSON (Slack-compatible: {"text": ...}); empty: no post.
MONITOR_WEBHOOK_URL = os.getenv("TRACKING287G_WEBHOOK_URL", "")
# For an S3 or GCS FILES_STORE: the local folder for the database and exports during a crawl
# (default: a folder in the system's temporary directory, one per store).
TRACKING287G_WORKDIR = os.getenv("TRACKING287G_WORKDIR", "")
