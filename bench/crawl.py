"""Crawl throughput on a loopback website: the Spark ``crawl`` stage vs the fetcher in a loop.

    python -m bench.crawl [--pages 2000] [--repeat 1]

A generated site (``tests/sitegen.py``, normal pages only, no politeness delay, robots.txt
allowing everything but ``/private/``) is crawled twice in the same process:

- **baseline**: ``fetch_host_urls`` over every page URL in one loop (no Spark, no WARC);
- **stage**: ``CrawlStage`` through ``run_stage``: breadth-first rounds, link extraction,
  frontier anti-join, WARC writing, crawl log, stats.

One host means one task per round (a host is never fetched concurrently), so this measures
the per-host pipeline's overhead, not parallel speed-up across hosts.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pipelines.crawl import CrawlStage
from pipelines.fetch import CrawlConfig, RobotsCache, fetch_host_urls
from pipelines.spark import SparkSettings, get_spark
from pipelines.stage import run_stage
from tests.sitegen import TestSite

SETTINGS = dict(
    allow_private=True,
    per_host_delay_s=0.0,
    global_rate_per_s=1_000_000.0,
    max_depth=2,
    max_pages_per_host=1_000_000,
)


def machine() -> str:
    import psutil

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    spark = get_spark(SparkSettings())
    baseline_runs, stage_runs = [], []
    with TestSite(pages=args.pages, special=False, robots_txt="User-agent: *\nDisallow: /private/\n") as site:
        config = CrawlConfig(seeds=[site.url("/")], max_pages=args.pages + 1, **SETTINGS)
        urls = [site.url("/")] + [site.url(p) for p in site.page_paths()]
        host = site.base_url.split("//", 1)[1]
        for run in range(args.repeat + 1):  # run 0 is an untimed warm-up
            started = time.perf_counter()
            results = list(fetch_host_urls(host, urls, config, RobotsCache(config)))
            if run:
                baseline_runs.append(time.perf_counter() - started)
            assert sum(r.ok for r in results) == len(urls), "baseline fetch failed"
        work = Path(tempfile.mkdtemp(prefix="corpusforge-bench-crawl-"))
        try:
            for run in range(args.repeat + 1):  # run 0 warms up Spark's Python workers and the JIT
                out = work / f"crawl-{run}"
                started = time.perf_counter()
                result = run_stage(CrawlStage(), [], out, config, lambda: spark, force=True)
                if run:
                    stage_runs.append(time.perf_counter() - started)
                assert result.stats["docs_out"] == len(urls), result.stats
        finally:
            shutil.rmtree(work, ignore_errors=True)

    pages = len(urls)
    base, stage = statistics.median(baseline_runs), statistics.median(stage_runs)
    print(f"machine: {machine()}")
    print(f"site: {pages} pages on one loopback host, depth 2, no politeness delay")
    print(f"1 warm-up run + {args.repeat} timed run(s) each")
    print("| run | wall s (median) | pages | pages/s | vs baseline |")
    print("|---|---:|---:|---:|---:|")
    print(f"| baseline: fetch_host_urls loop | {base:.2f} | {pages:,} | {pages / base:,.0f} | 1.00× |")
    print(f"| crawl stage (Spark, WARC) | {stage:.2f} | {pages:,} | {pages / stage:,.0f} | {base / stage:.2f}× |")


if __name__ == "__main__":
    main()
