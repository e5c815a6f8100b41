"""The crawl and ingest-warc stages on a real loopback website, with real Spark and warcio."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from pipelines.crawl import CrawlStage
from pipelines.fetch import CrawlConfig
from pipelines.stage import run_stage
from pipelines.warc import IngestWarcStage, WarcIngestConfig
from tests.sitegen import TestSite

REPO = Path(__file__).resolve().parent.parent

FAST = dict(
    allow_private=True,
    per_host_delay_s=0.0,
    connect_timeout_s=1.0,
    read_timeout_s=0.5,
    max_fetch_s=1.0,
    backoff_s=0.05,
    max_wait_s=1.0,
    max_body_bytes=256 * 1024,
    global_rate_per_s=1000.0,
)


def warc_records(root: Path) -> list[tuple[str, str, dict]]:
    records = []
    for path in sorted(root.rglob("*.warc.gz")):
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                headers = dict(record.rec_headers.headers)
                record.content_stream().read()
                records.append((record.rec_type, headers.get("WARC-Target-URI", ""), headers))
    return records


def crawl_log(out: Path) -> dict[str, dict]:
    return {row["url"]: row for row in pq.read_table(out / "crawl_log").to_pylist()}


def test_crawl_is_polite_bounded_and_writes_warc(spark, tmp_path: Path) -> None:
    with TestSite(pages=9, slow_s=3.0, trickle_bytes=200, big_bytes=600 * 1024) as site:
        config = CrawlConfig(seeds=[site.url("/")], max_depth=3, max_pages=60, **FAST)
        out = tmp_path / "crawl"
        result = run_stage(CrawlStage(), [], out, config, lambda: spark)
        requested = set(site.hits.paths())
        base, pages = site.base_url, site.page_paths()

    # robots.txt: read once, /private/ never requested, not even through the redirect to it.
    assert site.hits.count("/robots.txt") == 1
    assert not any(p.startswith("/private/") for p in requested)
    # Every normal page was fetched, once.
    for path in pages:
        assert site.hits.count(path) == 1, path

    log = crawl_log(out)
    assert len(log) <= 60
    by_path = {url.split(base, 1)[-1]: row for url, row in log.items()}
    assert by_path["/slow"]["error"] == "timeout"
    assert by_path["/big"]["error"] == "too_large"
    assert by_path["/image.png"]["error"] == "content_type"
    assert by_path["/flaky"]["status"] == 200 and by_path["/flaky"]["error"] is None
    assert by_path["/redirect/loop/a"]["error"] in ("redirect_loop", "too_many_redirects")
    assert by_path["/redirect/private"]["error"] == "robots"
    # Trap guards: the repeated-segment and calendar traps stop early.
    assert max((p.count("/a/") for p in requested), default=0) <= config.max_repeated_segments
    assert all(p.count("/") <= config.max_path_depth + 1 for p in requested)

    # WARC: a request and a response record per stored page, with the standard headers.
    records = warc_records(out / "warc")
    responses = [r for r in records if r[0] == "response"]
    requests = [r for r in records if r[0] == "request"]
    stored = [row for row in log.values() if row["warc_file"]]
    assert len(responses) == len(requests) == len(stored) > 9
    for _, uri, headers in responses:
        assert uri.startswith(base)
        assert headers["WARC-Date"].endswith("Z") and headers["WARC-Payload-Digest"].startswith("sha1:")

    stats = result.stats
    assert stats["docs_in"] == len(log)
    assert stats["dropped"]["crawl:robots"]["docs"] >= 1
    assert stats["dropped"]["crawl:timeout"]["docs"] == 1
    assert not (tmp_path / ".crawl.crawl-state").exists()  # state removed once the output is complete

    # ingest-warc reads the crawl's output: one document per stored HTML page, url and title kept.
    docs_out = tmp_path / "docs"
    ingest = run_stage(IngestWarcStage(), [out], docs_out, WarcIngestConfig(), lambda: spark)
    docs = ds.dataset(str(docs_out), format="parquet", exclude_invalid_files=True).to_table().to_pylist()
    page_urls = {base + p for p in pages}
    assert page_urls <= {d["url"] for d in docs}
    page = next(d for d in docs if d["url"] == base + pages[0])
    assert page["title"] and page["text"] and page["fetched_at"] is not None
    assert ingest.stats["docs_in"] == len(responses)


def test_private_addresses_are_refused_unless_allowed(spark, tmp_path: Path) -> None:
    with TestSite(pages=2, special=False) as site:
        config = CrawlConfig(seeds=[site.url("/")], **{**FAST, "allow_private": False})
        result = run_stage(CrawlStage(), [], tmp_path / "crawl", config, lambda: spark)
        assert len(site.hits) == 0
    assert result.stats["docs_out"] == 0
    assert result.stats["dropped"] == {"crawl:private_address": {"docs": 1, "bytes": 0}}


def test_seed_errors_are_clear(spark, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("# comment\nftp://example.org/file\nnot a url\n")
    with pytest.raises(Exception, match="no seed URLs"):
        run_stage(CrawlStage(), [seeds], tmp_path / "crawl", CrawlConfig(**FAST), lambda: spark)


def test_killed_crawl_resumes_at_the_first_unfinished_round(spark, tmp_path: Path) -> None:
    out = tmp_path / "crawl"
    state = tmp_path / ".crawl.crawl-state"
    with TestSite(pages=9, special=False) as site:
        settings = {**FAST, "per_host_delay_s": 0.4}  # round 1 (9 pages) takes > 3 s
        sets = [f"crawl.seeds=[{site.url('/')}]"] + [f"crawl.{k}={v}" for k, v in settings.items()]
        command = [sys.executable, "-m", "flows.cli", "stage", "crawl", "--out", str(out)]
        for item in sets:
            command += ["--set", item]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 120
            while not (state / "round-000" / "_DONE").exists():
                assert process.poll() is None, process.stderr.read().decode()[-2000:]
                assert time.time() < deadline, "round 0 never finished"
                time.sleep(0.1)
            while site.hits.count(site.page_paths()[0]) == 0 and time.time() < deadline:
                time.sleep(0.05)  # round 1 has started
            process.send_signal(signal.SIGKILL)
            process.wait()
        finally:
            if process.poll() is None:
                process.kill()
        assert not out.exists()  # nothing that looks finished
        assert site.hits.count("/") == 1
        fetched_before = set(site.hits.paths())

        config = CrawlConfig(seeds=[site.url("/")], **settings)
        run_stage(CrawlStage(), [], out, config, lambda: spark)
        pages = site.page_paths()

    assert site.hits.count("/") == 1  # round 0 was not fetched again
    for path in pages:
        assert site.hits.count(path) in (1, 2), path  # a page the kill interrupted may be refetched
    assert fetched_before <= set(site.hits.paths())
    assert len(crawl_log(out)) == 10
    assert json.loads((out / "_stats.json").read_text())["crawl"]["rounds"] == 2


def test_page_caps_and_depth_bound_the_crawl(spark, tmp_path: Path) -> None:
    with TestSite(pages=9, special=False) as site:
        config = CrawlConfig(seeds=[site.url("/")], max_pages_per_host=5, **FAST)
        run_stage(CrawlStage(), [], tmp_path / "per-host", config, lambda: spark)
        assert len(crawl_log(tmp_path / "per-host")) == 5
        shallow = CrawlConfig(seeds=[site.url("/")], max_depth=0, **FAST)
        result = run_stage(CrawlStage(), [], tmp_path / "depth-0", shallow, lambda: spark)
        assert list(crawl_log(tmp_path / "depth-0")) == [site.url("/")]
        assert result.stats["crawl"]["rounds"] == 1
        page_hits = sum(site.hits.count(p) for p in site.page_paths())
    assert page_hits == 4  # only the per-host run fetched pages: 4 besides the index
