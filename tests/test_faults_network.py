"""Network faults against loopback servers, for the crawler's fetcher and the OpenAI-compatible
synth backend: hung connections, headers then silence, TCP resets mid-headers and mid-body,
responses dripped a byte at a time, 429 with Retry-After as an HTTP date. Each must end in
bounded time, be retried where the policy says (and only there) and come back as a failure of
that one URL or item; a crawl must finish with the good pages and count the bad ones.

Timing-sensitive faults that tests/test_fetch.py and tests/test_synth_openai.py already cover
(slow page, body trickle, 429 with Retry-After in seconds, connection refused, hung chat
server) are not repeated here. Every server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import math
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq
import pytest

from pipelines.crawl import CrawlStage
from pipelines.fetch import CrawlConfig, HostFetcher, normalize_url
from pipelines.stage import run_stage
from synth.backends import GenerationConfig, OpenAISettings
from synth.backends.openai_compat import OpenAIBackend
from tests.faultserver import (
    HEADERS_200,
    FaultServer,
    Request,
    drip,
    hang,
    http_response,
    reply,
    reset_after,
    route,
    stall_after,
)
from tests.sitegen import TestSite
from tests.test_crawl import warc_records
from tests.test_fetch import make_config
from tests.test_synth_openai import PARAMS, FakeServer, Reply, chat, make, server  # noqa: F401 (fixtures)

PARTIAL_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/ht"
HALF_BODY = http_response(body=b"", length=2000) + b"<html><body>" + b"x" * 500


def soon() -> str:
    """An HTTP date (whole seconds) at least 0.35 s and at most 1.35 s from now."""
    return formatdate(math.ceil(time.time() + 0.35), usegmt=True)


def headers_then_drip(headers: bytes, body: bytes, interval: float):
    """Send the headers at once, then the body a byte every ``interval``."""

    def behaviour(conn, request: Request, stop) -> None:
        conn.sendall(headers)
        drip(body, interval)(conn, request, stop)

    return behaviour


def fetch_one(fault: FaultServer, path: str = "/page", **overrides: object):
    """Fetch one URL of ``fault`` (robots off unless asked) and time it."""
    settings: dict[str, Any] = {"obey_robots": False, "read_timeout_s": 0.4, "max_fetch_s": 1.0}
    settings.update(overrides)
    config = make_config(None, seeds=[fault.url("/")], **settings)
    started = time.monotonic()
    with HostFetcher(config) as fetcher:
        result = fetcher.fetch(fault.url(path))
    return result, time.monotonic() - started


# ============================================================================ the fetcher
def test_fetch_accepted_but_never_answered_times_out_once():
    with FaultServer(hang) as fault:
        result, took = fetch_one(fault, retries=2)
    assert result.error == "timeout" and result.status is None and result.body is None
    assert result.attempts == 1 and fault.connections == 1  # a read timeout is not retried
    assert 0.35 <= took < 1.5


def test_fetch_headers_then_silence_times_out_with_the_status_kept():
    with FaultServer(stall_after(HEADERS_200)) as fault:
        result, took = fetch_one(fault, retries=2)
    assert result.error == "timeout" and result.status == 200 and result.body is None
    assert result.attempts == 1 and fault.connections == 1
    assert 0.35 <= took < 1.5


def test_fetch_reset_mid_headers_is_retried_then_reported():
    with FaultServer(reset_after(PARTIAL_HEADERS)) as fault:
        result, took = fetch_one(fault, retries=2, backoff_s=0.05)
    assert result.error == "connection_error" and result.status is None
    assert result.attempts == 3 and fault.connections == 3  # no response yet: retried
    assert "gave up after 3 attempts" in (result.detail or "")
    assert took < 2.0


def test_fetch_reset_mid_body_is_reported_not_retried():
    with FaultServer(reset_after(HALF_BODY)) as fault:
        result, took = fetch_one(fault, retries=2)
    assert result.error == "connection_error" and result.status == 200
    assert result.body is None and not result.ok  # a cut page is not kept as if whole
    assert result.attempts == 1 and fault.connections == 1
    assert took < 1.5


def test_fetch_dripped_headers_stop_at_max_fetch_s():
    """Each byte comes well within the read timeout; the whole response would take 4 s."""
    data = http_response(body=b"x" * 10)
    assert len(data) * 0.05 > 3.5
    with FaultServer(drip(data, 0.05)) as fault:
        result, took = fetch_one(fault, read_timeout_s=2.0, max_fetch_s=0.5, retries=2)
    assert result.error == "timeout" and "0.5s" in (result.detail or "")
    assert result.attempts == 1 and fault.connections == 1
    assert 0.45 <= result.elapsed_s < 1.2 and took < 1.5


def test_fetch_retry_after_as_http_date_is_honoured():
    with TestSite(retry_after=soon()) as site:
        config = make_config(site)
        with HostFetcher(config) as fetcher:
            result = fetcher.fetch(site.url("/throttled"))
        times = [h.time for h in site.hits if h.path == "/throttled"]
    assert result.ok and result.attempts == 2
    assert len(times) == 2 and times[1] - times[0] >= 0.3  # backoff_s alone would be 0.05


def test_fetch_retry_after_http_date_beyond_max_wait_gives_up_at_once():
    later = formatdate(time.time() + 3600, usegmt=True)
    with TestSite(retry_after=later) as site:
        config = make_config(site, max_wait_s=5)
        started = time.monotonic()
        with HostFetcher(config) as fetcher:
            result = fetcher.fetch(site.url("/throttled"))
        took = time.monotonic() - started
        hits = site.hits.count("/throttled")
    assert result.status == 429 and result.attempts == 1 and hits == 1
    assert "exceeds max_wait_s" in (result.detail or "")
    assert took < 1.0


def test_hung_host_costs_one_timeout_not_one_per_url():
    """robots.txt hangs: the host's URLs all fail at once after that one timeout."""
    with FaultServer(hang) as fault:
        config = make_config(None, seeds=[fault.url("/")], read_timeout_s=0.4, retries=2)
        started = time.monotonic()
        with HostFetcher(config) as fetcher:
            results = [fetcher.fetch(fault.url(f"/page-{i}")) for i in range(5)]
        took = time.monotonic() - started
        paths = fault.paths()
    assert [r.error for r in results] == ["robots"] * 5
    assert all("robots.txt unavailable (timeout" in (r.detail or "") for r in results)
    assert paths == ["/robots.txt"]
    assert took < 1.5


# ============================================================================ the crawl stage
GOOD_PAGE = http_response(body=b"<html><body><p>a good page on the fault host</p></body></html>")
FAULTS = {
    "/hang": (hang, "timeout"),
    "/stall": (stall_after(HEADERS_200), "timeout"),
    "/reset-headers": (reset_after(PARTIAL_HEADERS), "connection_error"),
    "/reset-body": (reset_after(HALF_BODY), "connection_error"),
    "/drip-headers": (drip(http_response(body=b"x" * 10), 0.05), "timeout"),
    "/drip-body": (headers_then_drip(http_response(body=b"", length=400), b"<html>" + b"x" * 394, 0.02), "timeout"),
}


# URLs that would escape a directory if a stage ever made a file name of them (404s here).
HOSTILE_PATHS = [
    "/../../../../escape-crawl",
    "/%2e%2e/%2e%2e/escape-crawl-pct",
    "/%2F..%2F..%2Fescape-crawl-slash",
    "/nul%00byte",
    "/q?file=../../escape-crawl-query",
    "/" + "L" * 1500,
]


def test_crawl_with_hanging_resetting_and_dripping_pages_finishes(
    spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: hostile URLs are only data, the crawl writes nothing outside its output."""
    routes = {path: behaviour for path, (behaviour, _) in FAULTS.items()}
    routes["/good"] = reply(GOOD_PAGE)
    sandbox = tmp_path / "cwd"
    sandbox.mkdir()
    monkeypatch.chdir(sandbox)
    with TestSite(pages=3, special=False) as site, FaultServer(route(routes)) as fault:
        good = [site.url("/")] + [site.url(p) for p in site.page_paths()] + [fault.url("/good")]
        bad = {fault.url(path): error for path, (_, error) in FAULTS.items()}
        hostile = [normalize_url(site.url(p)) for p in HOSTILE_PATHS]
        config = CrawlConfig(
            seeds=good + list(bad) + hostile,
            max_depth=0,
            allow_private=True,
            per_host_delay_s=0.0,
            global_rate_per_s=1000.0,
            connect_timeout_s=1.0,
            read_timeout_s=0.3,
            max_fetch_s=0.6,
            retries=2,
            backoff_s=0.05,
        )
        out = tmp_path / "out" / "crawl"
        result = run_stage(CrawlStage(), [], out, config, lambda: spark)

    written = {p for p in tmp_path.rglob("*")} - {sandbox, out.parent, out.parent / ".crawl.lock"}
    assert sorted(str(p) for p in written if p != out and out not in p.parents) == []
    assert not list(tmp_path.parent.rglob("escape-crawl*"))
    log = {row["url"]: row for row in pq.read_table(out / "crawl_log").to_pylist()}
    assert set(log) == set(good) | set(bad) | set(hostile)
    for url in hostile:
        assert log[url]["status"] == 404 and log[url]["warc_file"], url
    for url in good:
        assert log[url]["status"] == 200 and log[url]["error"] is None and log[url]["warc_file"], url
    for url, error in bad.items():
        assert log[url]["error"] == error and log[url]["warc_file"] is None, (url, log[url])
    # Bounded: no fault held its URL longer than max_fetch_s (plus a little), retries included.
    for url in bad:
        assert log[url]["elapsed_s"] < config.max_fetch_s + 0.5, (url, log[url]["elapsed_s"])
    assert log[[u for u in bad if u.endswith("/reset-headers")][0]]["detail"].endswith("gave up after 3 attempts")

    archived = {uri for kind, uri, _ in warc_records(out / "warc") if kind == "response"}
    assert archived == set(good) | set(hostile)  # whole responses (404s too), nothing of the bad ones

    stats = result.stats
    assert stats["docs_in"] == len(good) + len(bad) + len(hostile)
    assert stats["dropped"]["crawl:http_404"]["docs"] == len(hostile)
    assert stats["dropped"]["crawl:timeout"]["docs"] == 4
    assert stats["dropped"]["crawl:connection_error"]["docs"] == 2
    # Each failure is kept with its URL and reason in the output's rejects.
    rejects = pq.read_table(out / "_rejects").to_pylist()
    by_url = {r["url"]: r for r in rejects}
    assert set(by_url) == set(bad) | set(hostile)
    for url, error in bad.items():
        assert by_url[url]["reason"] == f"crawl:{error}", by_url[url]
        assert url in by_url[url]["detail"] and error in by_url[url]["detail"]


# ============================================================================ the synth backend
@pytest.fixture
def backend_at(monkeypatch: pytest.MonkeyPatch):
    """Builds backends pointed at a fault server (no key, fast retries); closes them afterwards."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    built: list[OpenAIBackend] = []

    def build(base_url: str, **settings: Any) -> OpenAIBackend:
        values: dict[str, Any] = {"base_url": base_url, "timeout_s": 5.0, "max_retries": 3, "backoff_s": 0.01}
        values.update(settings)
        backend = OpenAIBackend(GenerationConfig(backend="openai", model="test-model", openai=OpenAISettings(**values)))
        built.append(backend)
        return backend

    yield build
    for backend in built:
        backend.close()


def _timed(backend: OpenAIBackend, prompts: list[str]) -> tuple[list[Any], float]:
    started = time.monotonic()
    results = backend.generate([chat(p) for p in prompts], PARAMS, seed=0)
    return results, time.monotonic() - started


CHAT_BODY = json.dumps(
    {"choices": [{"message": {"content": "hello there"}, "finish_reason": "stop"}], "usage": {}}
).encode()
CHAT_REPLY = http_response(body=CHAT_BODY, headers=(("Content-Type", "application/json"),))


def test_synth_headers_then_silence_times_out_and_is_retried(backend_at: Callable[..., OpenAIBackend]) -> None:
    with FaultServer(stall_after(HEADERS_200)) as fault:
        [result], took = _timed(backend_at(fault.url("/v1"), timeout_s=0.3, max_retries=1), ["hi"])
        connections = fault.connections
    assert not result.ok and "timed out" in (result.error or "") and "2 attempt" in (result.error or "")
    assert connections == 2
    assert 0.55 <= took < 2.0


@pytest.mark.parametrize("data", [PARTIAL_HEADERS, CHAT_REPLY[: len(CHAT_REPLY) - 20]], ids=["mid-headers", "mid-body"])
def test_synth_reset_is_retried_then_reported(backend_at: Callable[..., OpenAIBackend], data: bytes) -> None:
    with FaultServer(reset_after(data)) as fault:
        [result], took = _timed(backend_at(fault.url("/v1"), max_retries=2, backoff_s=0.01), ["hi"])
        connections = fault.connections
    assert not result.ok and "connection error" in (result.error or "") and "3 attempt" in (result.error or "")
    assert connections == 3
    assert took < 2.0


@pytest.mark.parametrize("headers_only", [True, False], ids=["drip-headers", "drip-body"])
def test_synth_dripped_reply_stops_at_timeout_s(backend_at: Callable[..., OpenAIBackend], headers_only: bool) -> None:
    """Every byte comes well within timeout_s; the whole reply would take about 3 s."""
    if headers_only:
        data = http_response(body=CHAT_BODY, headers=(("Content-Type", "application/json"), ("X-Pad", "p" * 60)))
        interval = 3.0 / data.index(b"\r\n\r\n")
    else:
        data = CHAT_REPLY
        interval = 3.0 / len(CHAT_BODY)
    cut = data.index(b"\r\n\r\n") + 4
    behaviour = drip(data, interval) if headers_only else headers_then_drip(data[:cut], data[cut:], interval)
    with FaultServer(behaviour) as fault:
        [result], took = _timed(backend_at(fault.url("/v1"), timeout_s=0.5, max_retries=0), ["hi"])
    assert not result.ok and "timed out after 0.5 s" in (result.error or "")
    assert 0.45 <= took < 1.3


def test_synth_one_bad_item_fails_alone_in_bounded_time(backend_at: Callable[..., OpenAIBackend]) -> None:
    """A batch where one item's request hangs and one is reset: the others come back whole."""

    def behaviour(conn, request: Request, stop) -> None:
        last = json.loads(request.body)["messages"][-1]["content"]
        {"hang": hang, "reset": reset_after(PARTIAL_HEADERS)}.get(last, reply(CHAT_REPLY))(conn, request, stop)

    with FaultServer(behaviour) as fault:
        backend = backend_at(fault.url("/v1"), timeout_s=0.4, max_retries=1, concurrency=4)
        results, took = _timed(backend, ["a", "hang", "b", "reset", "c"])
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert [r.text for r in results if r.ok] == ["hello there"] * 3
    assert "timed out" in (results[1].error or "") and "connection error" in (results[3].error or "")
    assert took < 2.0


def test_synth_retry_after_as_http_date_is_honoured(server: FakeServer, make: Callable[..., OpenAIBackend]) -> None:
    server.script.extend([Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": soon()}), Reply()])
    [result], took = _timed(make(backoff_s=0.01), ["hello"])
    assert result.ok and server.hits == 2
    assert 0.3 <= took < 3.0
    past = formatdate(time.time() - 60, usegmt=True)  # already due: retried at once
    server.script.extend([Reply(status=503, headers={"Retry-After": past}), Reply()])
    [result], took = _timed(make(backoff_s=0.01), ["again"])
    assert result.ok and server.hits == 4 and took < 0.5
