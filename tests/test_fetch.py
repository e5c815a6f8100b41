"""The crawler's fetching core (pipelines.fetch) against a real HTTP server on 127.0.0.1.

The server (tests/sitegen.py) logs every request, so the tests assert what reached it and
what did not. Loopback is a private address, so the tests allow private addresses except
where they test the refusal; "public" hosts are simulated with a fake resolver and
classifier on the AddressGuard seam.
"""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest
from pydantic import ValidationError

from pipelines import fetch as fetch_mod
from pipelines.fetch import (
    AddressGuard,
    CrawlConfig,
    HostFetcher,
    RateLimiter,
    RobotsCache,
    blocked_reason,
    check_address,
    extract_links,
    fetch_host_urls,
    in_scope,
    normalize_url,
    process_rate_limiter,
)
from tests.sitegen import TestSite


def make_config(site: TestSite | None = None, **overrides: object) -> CrawlConfig:
    settings: dict[str, object] = {
        "seeds": [site.url("/")] if site else ["http://example.org/"],
        "allow_private": True,
        "per_host_delay_s": 0.0,
        "global_rate_per_s": 1000.0,
        "connect_timeout_s": 2.0,
        "read_timeout_s": 2.0,
        "backoff_s": 0.05,
        "max_body_bytes": 100_000,
    }
    settings.update(overrides)
    return CrawlConfig(**settings)


def fetch_paths(site: TestSite, paths: list[str], **overrides: object) -> dict[str, fetch_mod.FetchResult]:
    config = make_config(site, **overrides)
    with HostFetcher(config) as fetcher:
        return {p: fetcher.fetch(site.url(p)) for p in paths}


@pytest.fixture
def site():
    with TestSite() as s:
        yield s


# ============================================================================ URLs
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM/a", "http://example.com/a"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com:80/x", "http://example.com/x"),
        ("https://example.com:443/x", "https://example.com/x"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        ("https://example.com:80/x", "https://example.com:80/x"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/a/b/..", "http://example.com/a/"),
        ("http://example.com/../../x", "http://example.com/x"),
        ("http://example.com/p#frag", "http://example.com/p"),
        ("http://example.com/p?b=2&a=1#f", "http://example.com/p?b=2&a=1"),  # order kept
        ("http://example.com/p?", "http://example.com/p"),
        ("http://example.com/%7euser/%2e%2e/x", "http://example.com/x"),  # unreserved decoded first
        ("http://example.com/a%2fb%3F", "http://example.com/a%2Fb%3F"),  # reserved kept, upper hex
        ("http://example.com/a b/ü", "http://example.com/a%20b/%C3%BC"),
        ("http://example.com/100%", "http://example.com/100%25"),
        ("http://user:secret@example.com/", "http://example.com/"),
        ("http://Bücher.example/", "http://xn--bcher-kva.example/"),
        ("http://example.com./", "http://example.com/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://[0:0::1]/", "http://[::1]/"),
        ("  http://example.com/\n", "http://example.com/"),
        ("ftp://example.com/", None),
        ("file:///etc/passwd", None),
        ("mailto:a@example.com", None),
        ("javascript:alert(1)", None),
        ("/relative/path", None),
        ("http://", None),
        ("http://example.com:99999/", None),
        ("http://exa mple.com/", None),
        ("http://[::1/", None),
    ],
)
def test_normalize_url(raw, expected):
    assert normalize_url(raw) == expected


def test_normalize_url_is_idempotent():
    for raw in ["HTTP://Bücher.Example:80/a/../b c?x=%7e#f", "https://h.example/%41%2F?q=a+b&q=c"]:
        once = normalize_url(raw)
        assert once is not None and normalize_url(once) == once


def test_extract_links_resolves_relative_absolute_and_skips_non_http():
    html = """<html><body>
      <a href="/docs/page-0.html">root</a>
      <a href="sub/page.html#frag">relative</a>
      <a href="../up.html">up</a>
      <a href="https://Other.Example:443/x">absolute</a>
      <a href="//cdn.example/y">protocol-relative</a>
      <a href="/search?q=a&amp;page=2">query</a>
      <a href="#top">fragment only</a>
      <a href="">empty</a>
      <a href="mailto:a@example.org">mail</a>
      <a href="javascript:void(0)">js</a>
      <a href=" /docs/page-0.html ">duplicate</a>
      <area href="/map.html"><iframe src="/frame.html"></iframe>
    </body></html>"""
    assert extract_links("http://h.example/dir/page.html", html) == [
        "http://h.example/docs/page-0.html",
        "http://h.example/dir/sub/page.html",
        "http://h.example/up.html",
        "https://other.example/x",
        "http://cdn.example/y",
        "http://h.example/search?q=a&page=2",
        "http://h.example/map.html",
        "http://h.example/frame.html",
    ]


def test_extract_links_honours_base_href_and_nofollow():
    html = '<head><base href="/docs/"></head><a href="a.html">a</a><a rel="nofollow" href="b.html">b</a>'
    assert extract_links("http://h.example/x/y.html", html) == [
        "http://h.example/docs/a.html",
        "http://h.example/docs/b.html",
    ]
    assert extract_links("http://h.example/x/y.html", html, skip_nofollow=True) == ["http://h.example/docs/a.html"]
    meta = '<meta name="robots" content="noindex, nofollow"><a href="/a">a</a>'
    assert extract_links("http://h.example/", meta, skip_nofollow=True) == []
    assert extract_links("http://h.example/", meta) == ["http://h.example/a"]


def test_extract_links_decodes_bytes_with_header_or_meta_charset():
    latin = '<a href="/caf\u00e9">x</a>'.encode("iso-8859-1")
    assert extract_links("http://h.example/", latin, encoding="iso-8859-1") == ["http://h.example/caf%C3%A9"]
    meta = b'<meta charset="windows-1252"><a href="/caf\xe9">x</a>'
    assert extract_links("http://h.example/", meta) == ["http://h.example/caf%C3%A9"]
    assert extract_links("http://h.example/", b"<a href='/ok'>\xff\xfe broken") == ["http://h.example/ok"]


def test_in_scope_domains_filters_and_trap_guards():
    config = make_config(
        seeds=["http://site.example/"], include=[r"^https?://[^/]+/(docs|a|x|cal)"], exclude=[r"\.pdf$"]
    )
    hosts = config.scope_hosts()
    assert hosts == {"site.example"}
    assert in_scope("http://site.example/docs/1", config, hosts) is None
    assert in_scope("http://www.site.example/docs/1", config, hosts) is None  # subdomain
    assert in_scope("http://othersite.example/docs/1", config, hosts) == "domain"
    assert in_scope("http://site.example.evil/docs/1", config, hosts) == "domain"
    assert in_scope("http://site.example/blog/1", config, hosts) == "not_included"
    assert in_scope("http://site.example/docs/a.pdf", config, hosts) == "excluded"
    assert in_scope("ftp://site.example/docs/", config, hosts) == "scheme"
    assert in_scope("http://site.example/docs/" + "x" * 2100, config, hosts) == "url_too_long"
    # Traps: calendar-like depth and repeated segments.
    assert (
        in_scope("http://site.example/cal/" + "/".join(str(i) for i in range(1, 13)), config, hosts) == "path_too_deep"
    )
    assert in_scope("http://site.example/cal/" + "/".join(str(i) for i in range(1, 12)), config, hosts) is None
    assert in_scope("http://site.example/a/a/", config, hosts) is None
    assert in_scope("http://site.example/a/a/a/", config, hosts) == "repeated_segments"
    assert in_scope("http://site.example/x/y/x/y/x/", config, hosts) == "repeated_segments"
    # Seed hosts given as host:port (what the crawl stage passes) work too.
    assert in_scope("http://127.0.0.1:8000/docs/", config, ["127.0.0.1:8000"]) is None
    # allowed_domains replaces the seed hosts.
    wide = make_config(seeds=["http://www.site.example/"], allowed_domains=["site.example", ".other.example"])
    assert in_scope("http://site.example/", wide, wide.scope_hosts()) is None
    assert in_scope("http://a.other.example/", wide, wide.scope_hosts()) is None
    assert (
        in_scope(
            "http://www.site.example/",
            make_config(seeds=["http://site.example/"], allowed_domains=["other.example"]),
            ["site.example"],
        )
        == "domain"
    )


def test_trap_urls_of_the_site_are_cut_off_by_in_scope(site):
    """Follow the site's trap links breadth-first; the guards end each trap."""
    config = make_config(site, max_path_depth=6)
    with HostFetcher(config) as fetcher:
        for start, guard in (("/trap/1/", "path_too_deep"), ("/a/", "repeated_segments")):
            frontier, seen, stopped = [site.url(start)], set(), []
            while frontier:
                url = frontier.pop(0)
                if url in seen:
                    continue
                seen.add(url)
                result = fetcher.fetch(url)
                assert result.ok, (url, result.error)
                for link in result.links:
                    why = in_scope(link, config, fetcher.seed_hosts)
                    if why is None:
                        frontier.append(link)
                    else:
                        stopped.append(why)
            assert guard in stopped
            assert len(seen) < 20
    assert not site.hits.requested("/trap/1/2/3/4/5/6/")
    assert not site.hits.requested("/a/a/a/")


def test_config_validation_messages(tmp_path):
    with pytest.raises(ValidationError, match="not an http\\(s\\) URL"):
        CrawlConfig(seeds=["ftp://example.org/"])
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        CrawlConfig(seeds=["http://example.org/"], exclude=["(unclosed"])
    with pytest.raises(ValidationError, match="bare domain"):
        CrawlConfig(allowed_domains=["https://example.org/"])
    with pytest.raises(ValidationError, match="text/html"):
        CrawlConfig(content_types=["html"])
    with pytest.raises(ValidationError, match="one line"):
        CrawlConfig(user_agent="bot\r\nX-Injected: 1")
    with pytest.raises(ValidationError, match="Extra inputs"):
        CrawlConfig(seeds=[], max_pagez=3)
    with pytest.raises(ValidationError):
        CrawlConfig(per_host_delay_s=-1)
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("# comment\n\nhttp://B.example/x#f\nnot a url\nhttp://a.example/\n")
    config = CrawlConfig(seeds=["http://a.example/"], seeds_file=str(seeds), allowed_domains=["*.Example.org"])
    assert config.seed_urls() == ["http://a.example/", "http://b.example/x"]
    assert config.scope_hosts() == {"a.example", "b.example"}
    assert config.allowed_domains == ["example.org"]
    assert config.agent_token == "corpusforge-crawler"
    assert CrawlConfig(**config.model_dump()) == config  # the crawl stage round-trips settings


# ============================================================================ addresses
@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.5.5", "private"),
        ("169.254.169.254", "link_local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non_global"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link_local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:a9fe:a9fe::1", "link_local"),  # 6to4 around 169.254.169.254
        ("64:ff9b::a00:1", "private"),  # NAT64 around 10.0.0.1
        ("8.8.8.8", None),
        ("::ffff:8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_blocked_reason(address, kind):
    assert blocked_reason(ipaddress.ip_address(address)) == kind


def test_check_address_refuses_private_hosts_and_other_schemes():
    for url in [
        "http://127.0.0.1/",
        "http://localhost:8080/",
        "http://[::1]/",
        "http://10.0.0.7/",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433/",  # 127.0.0.1 written as one number
        "http://[::ffff:127.0.0.1]/",
    ]:
        assert (check_address(url, allow_private=False) or "").startswith("private_address"), url
    assert check_address("file:///etc/passwd").startswith("scheme")
    assert check_address("ftp://example.org/").startswith("scheme")
    assert check_address("http://127.0.0.1/", allow_private=True) is None
    public = AddressGuard(resolver=lambda host, port: ["93.184.216.34"])
    assert check_address("https://example.org/", guard=public) is None
    mixed = AddressGuard(resolver=lambda host, port: ["93.184.216.34", "10.0.0.1"])
    assert check_address("https://example.org/", guard=mixed).startswith("private_address")


@pytest.fixture
def connect_log(monkeypatch):
    """Every address the fetcher's connections actually connect to."""
    import urllib3.util.connection as u3conn

    calls: list[str] = []
    real = u3conn.create_connection

    def spy(address, *args, **kwargs):
        calls.append(address[0])
        return real(address, *args, **kwargs)

    monkeypatch.setattr(u3conn, "create_connection", spy)
    return calls


def test_private_targets_are_refused_before_any_connection(site, connect_log):
    config = make_config(
        site, allow_private=False, allowed_domains=["127.0.0.1", "localhost", "10.0.0.7", "169.254.169.254"]
    )
    port = site.port
    urls = {
        f"http://127.0.0.1:{port}/docs/page-0.html": "private_address",
        f"http://localhost:{port}/docs/page-0.html": "private_address",
        f"http://[::1]:{port}/docs/page-0.html": "out_of_scope",  # not an allowed domain either
        "http://10.0.0.7/": "private_address",
        "http://169.254.169.254/latest/meta-data/": "private_address",
        "file:///etc/passwd": "scheme",
        "ftp://127.0.0.1/": "scheme",
    }
    with HostFetcher(config) as fetcher:
        for url, error in urls.items():
            result = fetcher.fetch(url)
            assert result.error == error, (url, result.error, result.detail)
            assert result.status is None and result.body is None
        v6 = make_config(site, allow_private=False, allowed_domains=["::1"])
    with HostFetcher(v6) as fetcher:
        assert fetcher.fetch(f"http://[::1]:{port}/").error == "private_address"
    assert len(site.hits) == 0
    assert connect_log == []


def _public_guard(mapping: dict[str, str]) -> AddressGuard:
    """Pretend 127.0.0.1 is a public address, and resolve test names from ``mapping``."""

    def resolver(host: str, port: int) -> list[str]:
        if host in mapping:
            return [mapping[host]]
        return fetch_mod.system_resolver(host, port)

    def classify(ip):
        return None if str(ip) == "127.0.0.1" else blocked_reason(ip)

    return AddressGuard(allow_private=False, resolver=resolver, classify=classify)


def test_redirect_to_private_address_is_refused(site, connect_log):
    guard = _public_guard(
        {"public.test": "127.0.0.1", "internal.public.test": "10.1.2.3", "meta.public.test": "169.254.169.254"}
    )
    base = f"http://public.test:{site.port}"
    config = make_config(site, seeds=[base + "/"], allow_private=False, allowed_domains=["public.test"])
    with HostFetcher(config, guard=guard) as fetcher:
        ok = fetcher.fetch(base + "/docs/page-0.html")
        assert ok.ok and ok.ip_address == "127.0.0.1"
        for target, address in (
            ("http://internal.public.test/admin", "10.1.2.3"),
            ("http://meta.public.test/latest/meta-data/", "169.254.169.254"),
        ):
            # The target's robots.txt is needed first, and its fetch is refused.
            result = fetcher.fetch(f"{base}/redirect/to?url={target}")
            assert result.error == "private_address", (target, result.error, result.detail)
            assert result.status == 302 and result.final_url == f"{base}/redirect/to?url={target}"
            assert address in result.detail and target in result.detail
        outside = fetcher.fetch(f"{base}/redirect/to?url=http://127.0.0.2:{site.port}/")
        assert outside.error == "out_of_scope"
    # Without robots.txt in the way the refusal happens when connecting to the hop.
    config = config.model_copy(update={"obey_robots": False})
    with HostFetcher(config, guard=guard) as fetcher:
        target = "http://internal.public.test/admin"
        result = fetcher.fetch(f"{base}/redirect/to?url={target}")
        assert result.error == "private_address" and result.status is None
        assert result.final_url == target and len(result.redirects) == 1
        assert result.redirects[0].status == 302 and result.redirects[0].location == target
    assert set(connect_log) == {"127.0.0.1"}
    assert {h.host for h in site.hits} == {f"public.test:{site.port}"}


def test_address_is_checked_at_connect_time_not_only_before(site, connect_log):
    """DNS rebinding: the pre-check sees a public answer, the connection a private one."""
    answers = iter(["127.0.0.1"] + ["10.9.9.9"] * 10)
    calls: list[str] = []

    def rebinding_resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return [next(answers)]

    guard = _public_guard({})
    guard.resolver = rebinding_resolver
    url = f"http://rebind.test:{site.port}/docs/page-0.html"
    assert check_address(url, guard=guard) is None  # first answer: "public"
    config = make_config(site, seeds=[url], allow_private=False)
    with HostFetcher(config, guard=guard) as fetcher:
        result = fetcher.fetch(url)
    assert result.error == "private_address"
    assert "10.9.9.9" in (result.detail or "")
    assert len(site.hits) == 0 and connect_log == []


# ============================================================================ robots.txt
def test_robots_disallowed_paths_are_never_requested(site):
    paths = [
        "/docs/page-0.html",
        "/private/secret.html",
        "/private/other.html",
        "/redirect/private",
        "/blog/page-1.html",
    ]
    results = fetch_paths(site, paths)
    assert results["/docs/page-0.html"].ok and results["/blog/page-1.html"].ok
    assert results["/private/secret.html"].error == "robots"
    assert results["/private/other.html"].error == "robots"
    assert results["/redirect/private"].error == "robots"  # the redirect target is checked too
    assert results["/redirect/private"].status == 302
    assert not site.hits.requested("/private/")
    assert site.hits.count("/robots.txt") == 1
    assert site.hits.paths()[0] == "/robots.txt"


def test_robots_rules_for_a_specific_user_agent(site):
    config = make_config(site, user_agent="special-bot/1.0 (+https://example.org/bot)")
    with HostFetcher(config) as fetcher:
        docs = fetcher.fetch(site.url("/docs/page-0.html"))
        blog = fetcher.fetch(site.url("/blog/page-1.html"))
    assert docs.error == "robots" and blog.ok
    assert not site.hits.requested("/docs/")
    assert {h.user_agent for h in site.hits} == {"special-bot/1.0 (+https://example.org/bot)"}
    assert ("User-Agent", config.user_agent) in blog.request_headers


def test_crawl_delay_is_respected():
    with TestSite(crawl_delay=0.3) as site:
        config = make_config(site, per_host_delay_s=0.05)
        paths = site.page_paths()[:4]
        results = list(fetch_host_urls(f"127.0.0.1:{site.port}", [site.url(p) for p in paths], config))
        assert [r.url for r in results] == [site.url(p) for p in paths]
        assert all(r.ok for r in results)
        gaps = site.hits.gaps()
        assert site.hits.paths() == ["/robots.txt"] + paths
        assert len(gaps) == 4 and min(gaps) >= 0.28, gaps


def test_per_host_delay_without_crawl_delay(site):
    fetch_paths(site, site.page_paths()[:3], per_host_delay_s=0.2)
    gaps = site.hits.gaps()
    assert len(gaps) == 3 and min(gaps) >= 0.19, gaps


def test_crawl_delay_above_max_wait_skips_the_host():
    with TestSite(crawl_delay=120) as site:
        results = fetch_paths(site, ["/docs/page-0.html"], max_wait_s=5)
        assert results["/docs/page-0.html"].error == "crawl_delay"
        assert site.hits.paths() == ["/robots.txt"]


def test_robots_404_allows_everything():
    with TestSite(robots_txt=None) as site:
        results = fetch_paths(site, ["/private/secret.html", "/docs/page-0.html"])
        assert all(r.ok for r in results.values())
        assert site.hits.paths() == ["/robots.txt", "/private/secret.html", "/docs/page-0.html"]


def test_robots_500_fetches_nothing():
    with TestSite(robots_status=500) as site:
        results = fetch_paths(site, ["/", "/docs/page-0.html", "/blog/page-1.html"], retries=1)
        assert {r.error for r in results.values()} == {"robots"}
        assert "unavailable" in (results["/"].detail or "")
        assert set(site.hits.paths()) == {"/robots.txt"}
        assert site.hits.count("/robots.txt") == 2  # one retry, then the host counts as disallowed


def test_robots_cache_standalone_and_obey_robots_off(site):
    config = make_config(site)
    cache = RobotsCache(config)
    assert cache.allowed(site.url("/docs/page-0.html"))
    assert not cache.allowed(site.url("/private/x"))
    assert cache.crawl_delay(site.url("/")) is None
    cache.close()
    assert site.hits.count("/robots.txt") == 1
    results = fetch_paths(site, ["/private/secret.html"], obey_robots=False)
    assert results["/private/secret.html"].ok
    assert site.hits.count("/robots.txt") == 1  # not even fetched when robots are ignored


# ============================================================================ network behaviour
def test_slow_page_times_out_after_read_timeout(site):
    start = time.monotonic()
    results = fetch_paths(site, ["/slow"], read_timeout_s=0.5)
    took = time.monotonic() - start
    result = results["/slow"]
    assert result.error == "timeout" and result.status is None
    assert 0.45 <= result.elapsed_s < 1.5 and took < 2.5
    assert site.hits.count("/slow") == 1  # read timeouts are not retried


def test_trickling_page_stops_at_max_fetch_s():
    with TestSite(trickle_interval_s=0.05) as site:
        result = fetch_paths(site, ["/trickle"], max_fetch_s=0.5)["/trickle"]
        assert result.error == "timeout" and result.status == 200
        assert 0.45 <= result.elapsed_s < 1.5
        assert result.bytes < site.trickle_bytes


def test_intermittent_500_succeeds_after_retries(site):
    results = fetch_paths(site, ["/flaky?k=1"], retries=2)
    assert results["/flaky?k=1"].ok and results["/flaky?k=1"].attempts == 3
    assert site.hits.count("/flaky?k=1") == 3
    gaps = site.hits.gaps(exclude=("/robots.txt",))
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095  # exponential backoff 0.05, 0.1
    results = fetch_paths(site, ["/flaky?k=2"], retries=1)
    assert results["/flaky?k=2"].status == 500 and results["/flaky?k=2"].attempts == 2
    assert "gave up after 2 attempts" in (results["/flaky?k=2"].detail or "")


def test_429_retry_after_is_honoured(site):
    result = fetch_paths(site, ["/throttled"])["/throttled"]
    assert result.ok and result.attempts == 2
    t = [h.time for h in site.hits if h.path == "/throttled"]
    assert len(t) == 2 and t[1] - t[0] >= 0.95  # Retry-After: 1, although backoff_s is 0.05
    start = time.monotonic()
    long = fetch_paths(site, ["/throttled-long"], max_wait_s=5)["/throttled-long"]
    assert long.status == 429 and long.attempts == 1 and "Retry-After" in (long.detail or "")
    assert time.monotonic() - start < 1
    assert site.hits.count("/throttled-long") == 1


def test_redirect_chain_is_followed(site):
    result = fetch_paths(site, ["/redirect/chain/3"])["/redirect/chain/3"]
    assert result.ok and result.final_url == site.url("/redirect/chain/0")
    assert [(h.url, h.status) for h in result.redirects] == [
        (site.url("/redirect/chain/3"), 307),
        (site.url("/redirect/chain/2"), 303),
        (site.url("/redirect/chain/1"), 302),
    ]
    assert result.redirects[0].location == site.url("/redirect/chain/2")
    relative = fetch_paths(site, ["/redirect/relative"])["/redirect/relative"]
    assert relative.ok and relative.final_url == site.url("/docs/page-0.html")
    assert relative.links  # links come from the final page


def test_redirect_limits_and_loops(site):
    results = fetch_paths(
        site, ["/redirect/chain/4", "/redirect/loop/a", "/redirect/self", "/redirect/external"], max_redirects=2
    )
    assert results["/redirect/chain/4"].error == "too_many_redirects"
    assert len(results["/redirect/chain/4"].redirects) == 2
    assert not site.hits.requested("/redirect/chain/1")
    assert results["/redirect/loop/a"].error == "redirect_loop"
    assert site.hits.count("/redirect/loop/a") == 1 and site.hits.count("/redirect/loop/b") == 1
    assert results["/redirect/self"].error == "redirect_loop"
    assert results["/redirect/external"].error == "out_of_scope"
    assert "elsewhere.invalid" in (results["/redirect/external"].detail or "")


def test_big_page_is_cut_at_the_cap():
    with TestSite(big_bytes=32 * 1024 * 1024) as site:
        cap = 50_000
        results = fetch_paths(site, ["/big", "/big-chunked", "/bomb.html"], max_body_bytes=cap)
        for path, result in results.items():
            assert result.error == "too_large" and result.truncated, path
            assert result.status == 200
            assert result.bytes <= cap + 1  # stopped right after the cap
            assert result.body is not None and len(result.body) == cap
        for path in ("/big", "/big-chunked"):
            deadline = time.monotonic() + 5
            while not site.streams[path]["aborted"] and time.monotonic() < deadline:
                time.sleep(0.02)
            assert site.streams[path]["aborted"] and not site.streams[path]["done"]
            assert site.streams[path]["sent"] < site.big_bytes


def test_content_type_filter(site):
    results = fetch_paths(site, ["/image.png", "/data.csv", "/no-type", "/plain.txt", "/latin1.html", "/gzip.html"])
    for path in ("/image.png", "/data.csv", "/no-type"):
        result = results[path]
        assert result.error == "content_type" and result.status == 200, path
        assert result.body is None and result.bytes == 0
    assert results["/image.png"].content_type == "image/png"
    plain = results["/plain.txt"]
    assert plain.ok and plain.content_type == "text/plain" and "café" in plain.body.decode("utf-8")
    assert plain.links == []  # not HTML
    latin = results["/latin1.html"]
    assert latin.ok and latin.charset == "iso-8859-1" and "Crème".encode("iso-8859-1") in latin.body
    gz = results["/gzip.html"]
    assert gz.ok and gz.body.startswith(b"<!DOCTYPE html>")  # stored decoded
    assert ("Content-Encoding", "gzip") in gz.headers
    assert gz.links == [site.url("/docs/page-0.html"), site.url("/blog/page-1.html")]


def test_result_fields_and_links(site):
    config = make_config(site)
    paths = site.page_paths()
    results = list(
        fetch_host_urls(f"127.0.0.1:{site.port}", [site.url("/"), site.url(paths[2]), site.url("/status/404")], config)
    )
    index, page, missing = results
    assert index.ok and index.status == 200 and index.reason == "OK"
    assert set(site.url(p) for p in site.index_links()) <= set(index.links)
    assert page.links == [site.url(p) for p in site.page_links(2)]
    assert dict(page.request_headers)["Host"] == f"127.0.0.1:{site.port}"
    assert page.fetched_at.tzinfo is not None and page.elapsed_s > 0
    assert page.bytes == len(page.body) and page.ip_address == "127.0.0.1"
    assert dict((k.lower(), v) for k, v in page.headers)["content-type"].startswith("text/html")
    assert missing.status == 404 and missing.error is None and not missing.ok and missing.links == []


def test_out_of_scope_bad_and_limited_urls_are_not_requested(site):
    config = make_config(site, max_pages_per_host=2)
    urls = [
        site.url("/docs/page-0.html"),
        "http://elsewhere.invalid/",
        "not a url",
        site.url("/blog/page-1.html"),
        site.url("/news/page-2.html"),
    ]
    with HostFetcher(config) as fetcher:
        results = [fetcher.fetch(u) for u in urls]
    assert [r.error for r in results] == [None, "out_of_scope", "bad_url", None, "host_limit"]
    assert site.hits.paths() == ["/robots.txt", "/docs/page-0.html", "/blog/page-1.html"]


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = make_config(seeds=[f"http://127.0.0.1:{port}/"], retries=1, obey_robots=False)
    with HostFetcher(config) as fetcher:
        result = fetcher.fetch(f"http://127.0.0.1:{port}/")
    assert result.error == "connection_error" and result.attempts == 2


def test_concurrency_and_global_rate_limit(site):
    config = make_config(site, per_host_concurrency=2, per_host_delay_s=0.1)
    paths = site.page_paths()[:4]
    with HostFetcher(config) as fetcher:
        results = list(fetcher.fetch_all([site.url(p) for p in paths]))
    assert [r.url for r in results] == [site.url(p) for p in paths] and all(r.ok for r in results)
    assert min(site.hits.gaps()) >= 0.09  # starts spaced by the delay
    limiter = RateLimiter(10)
    start = time.monotonic()
    for _ in range(4):
        limiter.acquire()
    assert time.monotonic() - start >= 0.29
    assert process_rate_limiter(7.0) is process_rate_limiter(7.0)
