"""Stage ``crawl``: a polite breadth-first crawl in Spark rounds, written as gzip WARC files.

Each round is one Spark job over the frontier (normalized URLs with their depth):

1. the frontier is capped (``max_pages`` overall, ``max_pages_per_host``) and partitioned by
   host, so one task owns a host for the whole round and its politeness (robots.txt,
   Crawl-delay, per-host delay, retries, redirects, body cap, address checks) lives in
   :mod:`pipelines.fetch`, in plain Python;
2. every task writes its own ``part-<task>.warc.gz`` (warcinfo, then a request and a response
   record per fetched page, with WARC-Target-URI, WARC-Date and payload digests; warcio) and
   returns one crawl-log row per URL, with the in-scope links it found;
3. the rows are written as the round's log (Parquet); the next frontier is a DataFrame of the
   new links, one depth deeper, anti-joined with every URL (and redirect target) already tried.

Rounds are kept in a state directory beside the output (``.OUT.crawl-state/``), each marked
done only when complete, so a killed crawl resumes at its first unfinished round. When the
last round is done the stage contract takes over: the WARC files and the crawl log are copied
into the output, failed fetches go to ``_rejects/`` with their reason, and ``_SUCCESS`` is
written last.

Output::

    OUT/warc/round-000/part-00000.warc.gz ...   the pages (input of ``ingest-warc``)
    OUT/crawl_log/part-*.parquet                 url, final_url, host, depth, round, status,
                                                 bytes, elapsed_s, error, fetched_at, warc_file
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import time
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from pipelines.errors import StageInputError
from pipelines.fetch import (
    CrawlConfig,
    FetchResult,
    HostFetcher,
    RobotsCache,
    fetch_host_urls,
    in_scope,
    origin_of,
    seed_lines,
)
from pipelines.schema import BYTES_IN, DROP_DETAIL, DROP_REASON
from pipelines.stage import Stage, hash_json
from pipelines.storage import write_text

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("corpusforge.crawl")

LOG_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("final_url", pa.string()),
        ("host", pa.string()),
        ("depth", pa.int32()),
        ("round", pa.int32()),
        ("status", pa.int32()),
        ("bytes", pa.int64()),
        ("elapsed_s", pa.float64()),
        ("error", pa.string()),
        ("detail", pa.string()),
        ("fetched_at", pa.timestamp("us", tz="UTC")),
        ("warc_file", pa.string()),
        ("content_type", pa.string()),
        ("links", pa.list_(pa.string())),
    ]
)
DONE_FILE = "_DONE"
STATE_FILE = "state.json"
# Response headers that describe the transfer, not the stored payload (the fetcher stores
# decoded bodies), renamed so WARC readers do not decode the body a second time.
TRANSFER_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}


def host_of(url: str) -> str:
    return urlsplit(url).netloc.lower()


def read_seeds(inputs: list[Path], config: CrawlConfig) -> list[str]:
    """Seed URLs from ``config.seeds``, ``config.seeds_file`` and the input files (one URL a line)."""
    seeds = list(config.seeds)  # normalized by CrawlConfig
    files = [Path(p) for p in inputs] + ([Path(config.seeds_file)] if config.seeds_file else [])
    bad = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise StageInputError(f"crawl: cannot read seeds file {file} ({exc.strerror or exc})") from exc
        urls, unusable = seed_lines(text)
        seeds += urls
        bad += [f"{file}:{number}: {line!r}" for number, line in unusable]
    if bad:
        log.warning("crawl: %d seed line(s) are not http(s) URLs, e.g. %s", len(bad), bad[0])
    if not seeds:
        raise StageInputError(
            "crawl: no seed URLs (set crawl.seeds, crawl.seeds_file, or pass a file of URLs with --in)"
            + (f"; unusable lines: {'; '.join(bad[:3])}" if bad else "")
        )
    return list(dict.fromkeys(seeds))


class StoredRobotsCache(RobotsCache):
    """A robots.txt cache that outlives the task: each origin's robots.txt answer is kept in
    the crawl state, so a host's robots.txt is fetched once per crawl, not once per round."""

    def __init__(self, config: CrawlConfig, directory: Path) -> None:
        super().__init__(config)
        self.directory = directory

    def rules(self, url: str, fetch: Any = None) -> Any:
        origin = origin_of(url)
        stored = self.directory / (hashlib.sha256(origin.encode()).hexdigest()[:32] + ".json")

        def fetch_once(robots_url: str) -> FetchResult:
            if stored.is_file():
                data = json.loads(stored.read_text())
                return FetchResult(
                    url=robots_url,
                    final_url=data["final_url"],
                    status=data["status"],
                    body=base64.b64decode(data["body"]) if data["body"] is not None else None,
                    error=data["error"],
                    detail=data["detail"],
                )
            result = (fetch or HostFetcher(self.config, robots=self).fetch_robots)(robots_url)
            body = None if result.body is None else base64.b64encode(result.body).decode()
            _write_json(
                stored,
                {
                    "origin": origin,
                    "final_url": result.final_url,
                    "status": result.status,
                    "body": body,
                    "error": result.error,
                    "detail": result.detail,
                },
            )
            return result

        return super().rules(url, fetch_once)


def _response_record(writer: Any, result: FetchResult) -> Any:
    from warcio.statusandheaders import StatusAndHeaders

    headers = [
        (f"X-Crawler-{name}" if name.lower() in TRANSFER_HEADERS else name, value) for name, value in result.headers
    ]
    headers.append(("Content-Length", str(len(result.body or b""))))
    http_headers = StatusAndHeaders(f"{result.status} {result.reason or ''}".strip(), headers, protocol="HTTP/1.1")
    return writer.create_warc_record(
        result.final_url,
        "response",
        payload=BytesIO(result.body or b""),
        http_headers=http_headers,
        warc_headers_dict={"WARC-Date": result.fetched_at.strftime("%Y-%m-%dT%H:%M:%SZ")},
    )


def _request_record(writer: Any, result: FetchResult) -> Any:
    from warcio.statusandheaders import StatusAndHeaders

    parts = urlsplit(result.final_url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    http_headers = StatusAndHeaders(f"GET {target} HTTP/1.1", list(result.request_headers), is_http_request=True)
    return writer.create_warc_record(
        result.final_url,
        "request",
        payload=BytesIO(b""),
        http_headers=http_headers,
        warc_headers_dict={"WARC-Date": result.fetched_at.strftime("%Y-%m-%dT%H:%M:%SZ")},
    )


def crawl_task(settings: dict[str, Any], seed_hosts: list[str], round_index: int, warc_dir: str, robots_dir: str) -> Any:
    """``mapInArrow`` function: fetch this task's hosts, write its WARC, return log rows."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext
        from warcio.warcwriter import WARCWriter

        config = CrawlConfig(**settings)
        by_host: dict[str, list[tuple[str, int]]] = {}
        for batch in batches:
            for row in batch.to_pylist():
                by_host.setdefault(row["host"], []).append((row["url"], row["depth"]))
        if not by_host:
            return
        partition = TaskContext.get().partitionId()
        name = f"part-{partition:05d}.warc.gz"
        final = Path(warc_dir) / name
        tmp = Path(warc_dir) / f".{name}.tmp-{os.getpid()}"
        robots = StoredRobotsCache(config, Path(robots_dir))
        rows: list[dict[str, Any]] = []
        with open(tmp, "wb") as handle:
            writer = WARCWriter(handle, gzip=True)
            writer.write_record(
                writer.create_warcinfo_record(name, {"software": "corpusforge crawl", "round": str(round_index)})
            )
            for host in sorted(by_host):
                urls = sorted(by_host[host], key=lambda item: (item[1], item[0]))
                depths = dict(urls)
                for result in fetch_host_urls(host, [u for u, _ in urls], config, robots, seed_hosts=seed_hosts):
                    # Every HTTP response that came back whole is archived (404s too, as Common
                    # Crawl does); ingest-warc decides what becomes a document.
                    stored = result.error is None and result.body is not None
                    if stored:
                        writer.write_record(_request_record(writer, result))
                        writer.write_record(_response_record(writer, result))
                    depth = depths.get(result.url, 0)
                    links = [
                        link
                        for link in (result.links if result.ok else [])
                        if depth + 1 <= config.max_depth and in_scope(link, config, seed_hosts) is None
                    ]
                    rows.append(
                        {
                            "url": result.url,
                            "final_url": result.final_url,
                            "host": host,
                            "depth": depth,
                            "round": round_index,
                            "status": result.status,
                            "bytes": result.bytes,
                            "elapsed_s": result.elapsed_s,
                            "error": result.error,
                            "detail": result.detail,
                            "fetched_at": result.fetched_at,
                            "warc_file": f"round-{round_index:03d}/{name}" if stored else None,
                            "content_type": result.content_type,
                            "links": links,
                        }
                    )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        yield pa.RecordBatch.from_pylist(rows, schema=LOG_SCHEMA)

    return run


class CrawlStage(Stage):
    name = "crawl"
    summary = "polite breadth-first crawl from seed URLs -> gzip WARC files + crawl log"
    Config = CrawlConfig
    reads_raw_files = True
    inputs_optional = True  # seeds may come from the recipe alone
    writes_uris = False  # fetchers write WARC files and crawl state with local file I/O
    code_modules = ("pipelines.fetch",)

    def state_dir(self) -> Path:
        output = self.output_path
        return output.parent / f".{output.name}.crawl-state"

    def transform(self, spark: "SparkSession", inputs: list[Path], config: BaseModel) -> "DataFrame":
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        assert isinstance(config, CrawlConfig)
        seeds = read_seeds(inputs, config)
        seed_hosts = sorted({host_of(s) for s in seeds})
        state = self.state_dir()
        identity = hash_json({"config": config.model_dump(mode="json"), "seeds": seeds})
        previous = _read_json(state / STATE_FILE)
        if previous.get("identity") != identity:
            if state.exists():
                log.warning("crawl: settings or seeds changed; discarding the earlier unfinished crawl in %s", state)
            shutil.rmtree(state, ignore_errors=True)
        (state / "robots").mkdir(parents=True, exist_ok=True)
        _write_json(state / STATE_FILE, {"identity": identity, "seeds": seeds})
        settings = config.model_dump()

        frontier = spark.createDataFrame([(u, host_of(u), 0) for u in seeds], "url string, host string, depth int")
        round_index, fetched_total = 0, 0
        while True:
            round_dir = state / f"round-{round_index:03d}"
            if (round_dir / DONE_FILE).is_file():
                log.info("crawl: round %d already done, resuming after it", round_index)
            else:
                shutil.rmtree(round_dir, ignore_errors=True)
                capped = self._cap_frontier(spark, frontier, config, state, fetched_total).persist()
                try:
                    urls = capped.count()
                    if not urls:
                        break
                    hosts = capped.select("host").distinct().count()
                    (round_dir / "warc").mkdir(parents=True)
                    log.info("crawl: round %d: %d URLs on %d hosts", round_index, urls, hosts)
                    partitions = max(1, min(hosts, spark.sparkContext.defaultParallelism * 4))
                    run = crawl_task(settings, seed_hosts, round_index, str(round_dir / "warc"), str(state / "robots"))
                    round_started = time.perf_counter()
                    (
                        capped.repartition(partitions, "host")
                        .mapInArrow(run, from_arrow_schema(LOG_SCHEMA))
                        .write.parquet(str(round_dir / "log"))
                    )
                    log.info("crawl: round %d fetched in %.1fs", round_index, time.perf_counter() - round_started)
                finally:
                    capped.unpersist()
                for leftover in (round_dir / "warc").glob(".part-*"):
                    leftover.unlink(missing_ok=True)
                (round_dir / DONE_FILE).write_text(datetime.now(timezone.utc).isoformat() + "\n")
            fetched_total += pq.ParquetDataset(str(round_dir / "log")).read(columns=["url"]).num_rows
            round_index += 1
            if fetched_total >= config.max_pages or round_index > config.max_depth:
                break
            frontier = self._next_frontier(spark, state, round_dir, config)
            if frontier.isEmpty():
                break

        logs = self._logs(state)
        if not logs:
            raise StageInputError("crawl: nothing to fetch (max_pages or max_pages_per_host leave no room)")
        self.extra_stats = {"crawl": {"rounds": len(logs), "seeds": len(seeds), "hosts": seed_hosts[:20]}}
        log_frame = spark.read.parquet(*logs)
        error, status = F.col("error"), F.col("status")
        reason = (
            F.when(error.isNotNull(), F.concat(F.lit("crawl:"), error))
            .when((status < 200) | (status >= 300), F.concat(F.lit("crawl:http_"), status.cast("string")))
        )
        working = log_frame.select(
            F.sha2(F.concat(F.lit("crawl\x00"), F.col("url")), 256).substr(1, 32).alias("id"),
            F.col("url"),
            F.lit(None).cast("string").alias("title"),
            F.lit("").alias("text"),
            F.lit("crawl").alias("source"),
            F.col("fetched_at"),
            F.lit(None).cast("string").alias("lang"),
            F.lit(None).cast("float").alias("lang_score"),
            F.lit(None).cast("map<string,double>").alias("annotations"),
            F.create_map(
                F.lit("status"), F.col("status").cast("string"),
                F.lit("final_url"), F.col("final_url"),
                F.lit("depth"), F.col("depth").cast("string"),
                F.lit("round"), F.col("round").cast("string"),
                F.lit("warc_file"), F.col("warc_file"),
            ).alias("metadata"),
            reason.alias(DROP_REASON),
            F.when(
                reason.isNotNull(),
                F.concat_ws(" ", F.concat(F.col("url"), F.lit(":")), reason, F.col("detail")),
            ).alias(DROP_DETAIL),
            F.coalesce(F.col("bytes"), F.lit(0)).cast("long").alias(BYTES_IN),
        )
        return working

    @staticmethod
    def _logs(state: Path) -> list[str]:
        """The crawl logs (Parquet directories) of the finished rounds."""
        return sorted(str(p.parent / "log") for p in state.glob(f"round-*/{DONE_FILE}"))

    def _next_frontier(self, spark: "SparkSession", state: Path, round_dir: Path, config: CrawlConfig) -> "DataFrame":
        """The round's new links, one level deeper, anti-joined with every URL already tried."""
        from pyspark.sql import functions as F

        links = (
            spark.read.parquet(str(round_dir / "log"))
            .select(F.explode("links").alias("url"), (F.col("depth") + 1).alias("depth"))
            .where(F.col("depth") <= config.max_depth)
            .groupBy("url")
            .agg(F.min("depth").cast("int").alias("depth"))
        )
        logs = spark.read.parquet(*self._logs(state))
        seen = logs.select("url").union(logs.select(F.col("final_url").alias("url"))).where(F.col("url").isNotNull())
        return links.join(seen, "url", "left_anti").select(
            "url", F.lower(F.regexp_extract("url", "^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", 1)).alias("host"), "depth"
        )

    def _cap_frontier(
        self, spark: "SparkSession", frontier: "DataFrame", config: CrawlConfig, state: Path, fetched_total: int
    ) -> "DataFrame":
        """At most ``max_pages`` in all and ``max_pages_per_host`` per host, shallowest first."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        done = self._logs(state)
        if done:
            tried = (
                spark.read.parquet(*done)
                .groupBy("host")
                .agg(F.count(F.lit(1)).alias("tried"))
            )
            frontier = frontier.join(tried, "host", "left").fillna(0, ["tried"])
        else:
            frontier = frontier.withColumn("tried", F.lit(0))
        per_host = Window.partitionBy("host").orderBy("depth", "url")
        return (
            frontier.withColumn("rank", F.row_number().over(per_host))
            .where(F.col("rank") + F.col("tried") <= config.max_pages_per_host)
            .orderBy("depth", "url")
            .limit(max(0, config.max_pages - fetched_total))
            .select("url", "host", "depth")
        )

    def write_kept(self, kept: "DataFrame", output: Path, config: BaseModel) -> None:
        """The crawl's products: WARC files and the crawl log (every URL tried, fetched or not)."""
        # The pages are in the WARC files already; one pass over the kept rows gathers the totals.
        kept.write.format("noop").mode("overwrite").save()
        state = self.state_dir()
        output.mkdir(parents=True, exist_ok=True)
        warc_root = output / "warc"
        warc_root.mkdir()
        for round_dir in sorted(state.glob("round-*")):
            target = warc_root / round_dir.name
            shutil.copytree(round_dir / "warc", target)
        log_dir = output / "crawl_log"
        log_dir.mkdir()
        tables = [pq.ParquetDataset(p).read() for p in self._logs(state)]
        pq.write_table(pa.concat_tables(tables).drop_columns(["links"]), log_dir / "part-00000.parquet")

    def finished(self) -> None:
        """The output is complete: the rounds' state is no longer needed."""
        shutil.rmtree(self.state_dir(), ignore_errors=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")
