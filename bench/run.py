"""The benchmark: one command builds a synthetic mirror of ICE's site, serves it from a real
web server on 127.0.0.1 and measures our crawls beside three baselines doing the same job:
sequential requests, aiohttp, and bare Scrapy with its stock FilesPipeline (the floor of the
framework we build on).

    python bench/run.py --agreements 2500 --pdf-kb 100 --concurrency 16

Prints wall time, CPU time, peak RSS, HTTP requests and bytes for each run, and the ratios to
the baselines. nginx serves the mirror when installed (apt-get install nginx-light); otherwise
bench/fallback_server.py does (a threaded Python server, slower: say which in any report).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import openpyxl

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
STATES = ("FLORIDA", "TEXAS", "GEORGIA", "VIRGINIA", "ALABAMA", "SOUTH CAROLINA", "OHIO")
MODELS = ("Task Force Model", "Warrant Service Officer", "Jail Enforcement Model")
SHEET = "doclib/about/offices/ero/287g/participatingAgencies12012026am.xlsx"
NGINX_CONF = """daemon off; worker_processes 2; pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  types {{ text/html html; application/pdf pdf;
          application/vnd.openxmlformats-officedocument.spreadsheetml.sheet xlsx; }}
  default_type text/html;
  log_format bench '$uri $status $body_bytes_sent';
  access_log {log} bench;
  server {{ listen 127.0.0.1:{port}; root {site}; }}
}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build_site(site: Path, base: str, agreements: int, pdf_bytes: int) -> None:
    """The page, a participating sheet of `agreements` rows with hyperlinks (a third behind
    Outlook safelinks) and a PDF each. PDFs already there are left as they are."""
    (site / "identify-and-arrest").mkdir(parents=True, exist_ok=True)
    (site / "identify-and-arrest" / "287g").write_text(
        f'<html><body><a href="/{SHEET}">Participating agencies</a></body></html>')
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["STATE", "LAW ENFORCEMENT AGENCY", "TYPE", "COUNTY", "SUPPORT TYPE",
                  "SIGNED", "MOA"])
    documents = site / "doclib" / "287gMOA"
    documents.mkdir(parents=True, exist_ok=True)
    for number in range(agreements):
        url = f"{base}/doclib/287gMOA/bench_{number:05d}.pdf"
        if number % 3 == 0:
            url = ("https://gcc02.safelinks.protection.outlook.com/?url=" + quote(url, safe="")
                   + "&data=05%7C02%7Cbench&reserved=0")
        sheet.append([STATES[number % len(STATES)], f"Bench {number} Police Department",
                      "Municipality", "#N/A", MODELS[number % 3], 45700 + number % 300, "link"])
        sheet.cell(number + 2, 7).hyperlink = url
        pdf = documents / f"bench_{number:05d}.pdf"
        if not pdf.exists():
            head = f"%PDF-1.4\n% bench document {number}\n".encode()
            pdf.write_bytes(head + os.urandom(max(0, pdf_bytes - len(head) - 6)) + b"\n%%EOF")
    (site / SHEET).parent.mkdir(parents=True, exist_ok=True)
    out = io.BytesIO()
    workbook.save(out)
    (site / SHEET).write_bytes(out.getvalue())


def serve(site: Path, port: int, folder: Path) -> tuple[subprocess.Popen, Path, str]:
    log = folder / "access.log"
    log.touch()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if nginx:
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=folder, log=log, port=port, site=site))
        process = subprocess.Popen([nginx, "-c", str(conf), "-p", str(folder)],
                                   stderr=subprocess.DEVNULL)
        kind = "nginx"
    else:
        process = subprocess.Popen([sys.executable, str(BENCH / "fallback_server.py"),
                                    str(site), str(port), str(log)])
        kind = "python fallback server"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, log, kind
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the mirror's web server did not start")


def measure(command: list[str], log: Path, env=None) -> dict:
    """Run a command; its wall and CPU time, peak RSS, and the requests it made."""
    offset = log.stat().st_size
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{stderr[-3000:]}")
    time.sleep(0.2)  # let the server flush its log
    with open(log) as handle:
        handle.seek(offset)
        lines = [line.split() for line in handle if line.strip()]
    pdfs = [line for line in lines if line[0].endswith(".pdf")]
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss": usage.ru_maxrss / 1024, "requests": len(lines),
            "bytes": sum(int(line[2]) for line in lines if line[2].isdigit()),
            "pdf_requests": len(pdfs),
            "pdf_bytes": sum(int(line[2]) for line in pdfs if line[2].isdigit())}


def crawl(base: str, store: Path, concurrency: int) -> list[str]:
    return [sys.executable, "-m", "scrapy", "crawl", "ice287g",
            "-a", f"start_url={base}/identify-and-arrest/287g", "-s", f"FILES_STORE={store}",
            "-s", "DOWNLOAD_DELAY=0", "-s", "AUTOTHROTTLE_ENABLED=False",
            "-s", f"CONCURRENT_REQUESTS={concurrency}",
            "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={concurrency}", "-s", "LOG_LEVEL=WARNING",
            "-s", "MONITOR_MAX_DOCUMENT_FAILURES=0"]


def parse_time(sheet: Path) -> float:
    sys.path.insert(0, str(PROJECT))
    from tracking287g.normalize import normalize_row
    from tracking287g.sheets import parse_workbook

    body, best = sheet.read_bytes(), float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for raw in parse_workbook(body, "participating").rows:
            normalize_row(raw.values, raw.links)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agreements", type=int, default=2500)
    parser.add_argument("--pdf-kb", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="tracking287g-bench-"))
    folder.chmod(0o755)  # nginx's workers run as an unprivileged user
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site, store = folder / "site", folder / "archive"
    build_site(site, base, args.agreements, args.pdf_kb * 1024)
    server, log, kind = serve(site, port, folder)
    results = {}
    try:
        results["cold crawl"] = measure(crawl(base, store, args.concurrency), log)
        results["warm crawl"] = measure(crawl(base, store, args.concurrency), log)
        build_site(site, base, args.agreements + args.agreements // 100, args.pdf_kb * 1024)
        results["1% added"] = measure(crawl(base, store, args.concurrency), log)
        if not args.skip_baselines:
            results["sequential requests"] = measure(
                [sys.executable, str(BENCH / "baseline_requests.py"),
                 f"{base}/identify-and-arrest/287g", str(folder / "requests")], log)
            results["aiohttp"] = measure(
                [sys.executable, str(BENCH / "baseline_aiohttp.py"),
                 f"{base}/identify-and-arrest/287g", str(folder / "aiohttp"),
                 str(args.concurrency)], log)
            results["bare Scrapy FilesPipeline"] = measure(
                [sys.executable, str(BENCH / "baseline_scrapy.py"),
                 f"{base}/identify-and-arrest/287g", str(folder / "scrapy"),
                 str(args.concurrency)], log)
        sheet_seconds = parse_time(site / SHEET)
        backfill = folder / "backfill"
        results["backfill (real archive)"] = measure(
            [sys.executable, "-m", "scrapy", "backfill", str(PROJECT / "tests/fixtures/ice/sheets"),
             "-s", f"FILES_STORE={backfill}"], log)
    finally:
        server.terminate()
        server.wait()

    print(f"\nN = {args.agreements} agreements, {args.pdf_kb} KB PDFs, concurrency "
          f"{args.concurrency}, served by {kind}, {os.cpu_count()} cores\n")
    header = (f"{'run':<26}{'wall s':>8}{'CPU s':>8}{'RSS MB':>8}{'requests':>10}"
              f"{'MB':>9}{'PDF req':>9}{'vs seq':>8}{'vs aio':>8}{'vs Scrapy':>10}")
    print(header)
    print("-" * len(header))
    seq = results.get("sequential requests", {}).get("wall")
    aio = results.get("aiohttp", {}).get("wall")
    floor = results.get("bare Scrapy FilesPipeline", {}).get("wall")
    for name, r in results.items():
        vs_seq = f"{r['wall'] / seq:.2f}x" if seq else "-"
        vs_aio = f"{r['wall'] / aio:.2f}x" if aio else "-"
        vs_floor = f"{r['wall'] / floor:.2f}x" if floor else "-"
        print(f"{name:<26}{r['wall']:>8.2f}{r['cpu']:>8.2f}{r['rss']:>8.0f}{r['requests']:>10}"
              f"{r['bytes'] / 1e6:>9.1f}{r['pdf_requests']:>9}{vs_seq:>8}{vs_aio:>8}"
              f"{vs_floor:>10}")
    print(f"\nparse + normalise of the {args.agreements}-row participating sheet: "
          f"{sheet_seconds:.3f} s (best of 3)")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
