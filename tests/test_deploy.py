"""Running it for real: Scrapyd, an S3 store, monitoring, the lock, logs, schedules."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.mirror import SHEETS, MirrorServer
from tests.test_crawl import PAGE, PROJECT, failure_line, read_csv, run_crawl
from tracking287g.commands.crawl import lock_archive

PARTICIPATING = SHEETS / "sheets_20250519_024922" / "participatingAgencies05162025am.xlsx"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


def get_json(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url, timeout=10).read())


def post_form(url: str, fields: list[tuple[str, str]]) -> dict:
    data = urllib.parse.urlencode(fields).encode()
    return json.loads(urllib.request.urlopen(url, data=data, timeout=30).read())


@pytest.fixture
def scrapyd(tmp_path):
    port = free_port()
    home = tmp_path / "scrapyd"
    home.mkdir()
    (home / "scrapyd.conf").write_text(
        "[scrapyd]\n"
        f"bind_address = 127.0.0.1\nhttp_port = {port}\n"
        f"eggs_dir = {home / 'eggs'}\nlogs_dir = {home / 'logs'}\ndbs_dir = {home / 'dbs'}\n"
        "items_dir =\npoll_interval = 0.5\nmax_proc = 1\n")
    process = subprocess.Popen([str(BIN / "scrapyd")], cwd=home, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url + "daemonstatus.json")
        yield url, home
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_scrapyd_deploy_schedule_and_log(scrapyd, tmp_path):
    url, home = scrapyd
    deploy = subprocess.run([str(BIN / "scrapyd-deploy"), "env", "-p", "tracking287g"],
                            cwd=PROJECT, env={**os.environ, "SCRAPYD_URL": url},
                            capture_output=True, text=True, check=False)
    assert deploy.returncode == 0, deploy.stderr
    assert json.loads(deploy.stdout)["spiders"] == 1
    shutil.rmtree(PROJECT / "build", ignore_errors=True)
    store = tmp_path / "archive"
    with MirrorServer() as server:
        documents = server.publish_2025(PARTICIPATING, None)
        job = post_form(url + "schedule.json", [
            ("project", "tracking287g"), ("spider", "ice287g"),
            ("start_url", server.url + PAGE),
            ("setting", f"FILES_STORE={store}"), ("setting", "DOWNLOAD_DELAY=0"),
            ("setting", "AUTOTHROTTLE_ENABLED=False"),
            ("setting", "CONCURRENT_REQUESTS_PER_DOMAIN=16")])
        assert job["status"] == "ok", job
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            jobs = get_json(url + "listjobs.json?project=tracking287g")
            if any(j["id"] == job["jobid"] for j in jobs["finished"]):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the Scrapyd job did not finish in 3 minutes")
    assert len(list((store / "agreements").rglob("*.pdf"))) == len(documents) + 3
    log = (home / "logs" / "tracking287g" / "ice287g" / f"{job['jobid']}.log").read_text()
    assert "tracking287g crawl OK" in log
    assert "Spider closed (finished)" in log
    assert read_csv(store / "data" / "crawls.csv")[0]["status"] == "ok"


@pytest.fixture
def s3(tmp_path):
    port = free_port()
    process = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_for(endpoint)
        import botocore.session

        client = botocore.session.get_session().create_client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket="tracking287g")
        yield endpoint, client
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_s3_store_keeps_the_history_across_jobs_with_empty_disks(s3, tmp_path):
    endpoint, client = s3
    settings = {"FILES_STORE": "s3://tracking287g/archive/", "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION_NAME": "us-east-1"}
    with MirrorServer() as server:
        documents = server.publish_2025(PARTICIPATING, None)
        first = run_crawl(server, tmp_path / "unused", TRACKING287G_WORKDIR=tmp_path / "job1",
                          **settings)
        assert first.returncode == 0, first.stderr[-3000:]
        server.clear()
        second = run_crawl(server, tmp_path / "unused", TRACKING287G_WORKDIR=tmp_path / "job2",
                           **settings)
        assert second.returncode == 0, second.stderr[-3000:]
        assert server.requested("/doclib/287gMOA/") == []  # known from the history in S3
    keys = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket="tracking287g") for o in page.get("Contents", [])}
    assert sum(k.startswith("archive/agreements/") for k in keys) == len(documents) + 3
    assert {"archive/tracking287g.sqlite", "archive/README.md", "archive/data/changes.csv",
            "archive/data/crawls.csv", "archive/plots/top_states.png"} <= keys
    assert sum(k.startswith("archive/logs/") for k in keys) == 2
    crawls = client.get_object(Bucket="tracking287g", Key="archive/data/crawls.csv")
    rows = crawls["Body"].read().decode().splitlines()
    assert len(rows) == 3 and rows[2].split(",")[3] == "ok"  # header and two crawls
    assert not (tmp_path / "unused").exists()


def test_webhook_gets_the_summary_and_failed_checks_fail_the_crawl(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        del server.routes["/doclib/287gMOA/DeafSmithCoTX_WSO_MOA_031725.pdf"]
        hook = server.url + "/hooks/slack"
        ok = run_crawl(server, tmp_path, MONITOR_WEBHOOK_URL=hook)
        assert ok.returncode == 0, ok.stderr[-3000:]
        strict = run_crawl(server, tmp_path, MONITOR_WEBHOOK_URL=hook,
                           MONITOR_MAX_DOCUMENT_FAILURES=0)
        posts = [json.loads(body) for path, body in server.posts if path == "/hooks/slack"]
    assert len(posts) == 2
    assert posts[0]["text"].startswith("tracking287g crawl OK")
    assert posts[0]["tracking287g"]["documents_failed"] == 1
    assert strict.returncode == 1
    assert failure_line(strict) == (
        "tracking287g: crawl failed: 1 of 419 documents failed (0.2%, more than the 0.0% "
        "allowed); see data/failures.csv")
    assert posts[1]["text"].startswith("tracking287g crawl FAILED")
    assert posts[1]["tracking287g"]["failed_checks"] == [
        "1 of 419 documents failed (0.2%, more than the 0.0% allowed); see data/failures.csv"]
    assert [c["status"] for c in read_csv(tmp_path / "data" / "crawls.csv")] == ["ok", "failed"]


def test_403s_on_documents_fail_the_crawl(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        server.routes["/doclib/287gMOA/DeafSmithCoTX_WSO_MOA_031725.pdf"].status = 403
        result = run_crawl(server, tmp_path)
    assert result.returncode == 1
    assert failure_line(result) == (
        "tracking287g: crawl failed: 1 responses were 403 Forbidden: ice.gov may be blocking "
        "this client; change USER_AGENT or wait")


def test_a_second_crawl_on_the_same_archive_exits_and_touches_nothing(tmp_path):
    lock = lock_archive(tmp_path)  # a crawl is running
    try:
        with MirrorServer() as server:
            server.publish_2025(PARTICIPATING, None)
            result = run_crawl(server, tmp_path)
            assert server.requested() == []
    finally:
        os.close(lock)
    assert result.returncode == 1
    assert failure_line(result) == (
        f"tracking287g: crawl failed: another crawl (pid {os.getpid()} since "
        f"{(tmp_path / '.crawl.lock').read_text().split(' since ')[1]}) is using the archive at "
        f"{tmp_path}; this one touched nothing: wait for it to finish")
    assert [p.name for p in tmp_path.iterdir()] == [".crawl.lock"]


def test_each_crawl_keeps_its_log(tmp_path):
    with MirrorServer() as server:
        server.publish_2025(PARTICIPATING, None)
        assert run_crawl(server, tmp_path).returncode == 0
        time.sleep(1.1)  # log files are named by the second the crawl started
        assert run_crawl(server, tmp_path).returncode == 0
    logs = sorted((tmp_path / "logs").glob("*.log"))
    assert len(logs) == 2
    for log in logs:
        text = log.read_text()
        assert "[scrapy.core.engine] INFO: Spider opened" in text
        assert "tracking287g crawl OK" in text
        assert "Dumping Scrapy stats" in text


def test_the_schedules_run_the_documented_command():
    readme = (PROJECT / "README.md").read_text()
    assert "make crawl" in readme
    for path in ("deploy/cron/tracking287g", "deploy/systemd/tracking287g.service",
                 ".github/workflows/crawl.yml"):
        text = (PROJECT / path).read_text()
        assert "make crawl ARGS=" in text, path
        assert path in readme, path
