"""The per-host fetching core of the crawler: URL rules, robots.txt, politeness, safety.

Pure Python (no Spark): the ``crawl`` stage gives every Spark task a set of hosts and calls
:func:`fetch_host_urls` once per host. Nothing here raises for a network or content problem:
every URL becomes one :class:`FetchResult`, with ``error`` set to a short reason when it was
not fetched (``robots``, ``timeout``, ``too_large``, ``private_address`` ...).

Politeness
    * robots.txt (RFC 9309, parsed by protego) is fetched once per origin through the same
      machinery as pages (timeouts, size cap, address checks, redirects). 2xx: its rules apply
      to the configured user agent's product token (``corpusforge-crawler``); 4xx: everything
      is allowed; 429, 5xx or an unreachable server: nothing on that origin is fetched.
    * One request at a time per host (``per_host_concurrency``), and at least
      ``per_host_delay_s`` between the end of one request and the start of the next; a robots
      ``Crawl-delay`` (or ``Request-rate``) raises that gap. A Crawl-delay above ``max_wait_s``
      makes the host's URLs fail with ``crawl_delay`` instead of stalling the task.
    * ``global_rate_per_s`` caps the request starts of the whole *process* (all fetchers in it
      share one limiter). In Spark every executor Python worker is a process, so the effective
      cluster-wide rate is that limit times the number of concurrently running tasks.
    * Retries (``retries``) only for 429, 500, 502, 503, 504 and connection failures, with
      exponential backoff (``backoff_s * 2**attempt``) and ``Retry-After`` honoured (seconds or
      HTTP date). A Retry-After longer than ``max_wait_s`` ends the attempts at once. Read
      timeouts are not retried: a server that is too slow once will be slow again. The
      library's own retries are switched off, so every request is counted and paced.

Safety
    * Only http and https. Userinfo (``user:pass@``) is dropped by :func:`normalize_url`.
    * Server-side request forgery: unless ``allow_private``, a connection is refused when the
      host resolves to a loopback, private, link-local, multicast, reserved, unspecified or
      otherwise non-global address (IPv4 and IPv6; IPv4-mapped, 6to4 and NAT64 addresses are
      judged by the IPv4 address inside). The check sits in the connection class used by the
      urllib3 pools (:class:`AddressGuard`): the host is resolved once, every address is
      checked, and the socket connects to a checked IP literal (TLS still verifies the
      certificate and sends SNI for the host name), so a DNS answer that changes between check
      and connect (DNS rebinding) cannot slip through. Environment proxies are not used.
    * Redirects are followed by hand, at most ``max_redirects``; every hop is checked again
      for scheme, scope, robots.txt and (at connect time) address; loops are detected.
    * Bodies are streamed and read only up to ``max_body_bytes`` + 1 *decoded* bytes (gzip
      bombs stop at the cap too); a bigger page is kept truncated and marked ``too_large``. A
      response must also finish within ``max_fetch_s``, headers included (slow-trickle servers:
      a watchdog shuts the socket down at the deadline). Bodies whose
      Content-Type is not in ``content_types`` are not read at all (``content_type``).
    * Trap guards in :func:`in_scope`: URL length, path depth, repeated path segments.

Stored bodies are *decoded* (Content-Encoding removed); ``headers`` are as received, so a WARC
writer should rename Content-Encoding / Transfer-Encoding / Content-Length.

URL normalization (:func:`normalize_url`): lower-case scheme and host, IDN hosts to
punycode, default ports and fragments dropped, dot segments resolved, percent-escapes
normalized (upper-case hex, unreserved characters decoded, unsafe characters encoded), an
empty path becomes ``/``. Query parameters keep their order: some servers depend on it, and
the fetched URL should be the one that was linked.
"""

from __future__ import annotations

import codecs
import email.utils
import ipaddress
import logging
import re
import socket
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, UTC
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger("corpusforge.fetch")

KiB = 1024
MiB = 1024 * KiB
DEFAULT_USER_AGENT = "corpusforge-crawler/0.1 (+https://github.com/corpusforge)"
ROBOTS_MAX_BYTES = 512 * KiB  # RFC 9309: parse at least the first 500 KiB
ROBOTS_MAX_REDIRECTS = 5  # RFC 9309: follow at least five consecutive redirects
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
DEFAULT_PORTS = {"http": 80, "https": 443}
READ_CHUNK = 64 * KiB
SMALL_DRAIN_BYTES = 64 * KiB  # unread bodies up to this size are drained to keep the connection

__all__ = [
    "AddressBlocked",
    "AddressGuard",
    "CrawlConfig",
    "FetchResult",
    "Hop",
    "HostFetcher",
    "RateLimiter",
    "RobotsCache",
    "RobotsRules",
    "blocked_reason",
    "check_address",
    "extract_links",
    "fetch_host_urls",
    "in_scope",
    "normalize_url",
    "process_rate_limiter",
    "system_resolver",
]


# ============================================================================ configuration
class CrawlConfig(BaseModel):
    """Recipe section ``crawl``."""

    model_config = ConfigDict(extra="forbid")

    seeds: list[str] = Field(default_factory=list, description="start URLs (http/https)")
    seeds_file: str | None = Field(None, description="file with more start URLs, one a line (# comments)")
    user_agent: str = Field(DEFAULT_USER_AGENT, description="User-Agent header; its product token picks robots rules")
    allowed_domains: list[str] = Field(
        default_factory=list, description="domains to stay in (a domain allows its subdomains); empty: the seeds' hosts"
    )
    include: list[str] = Field(default_factory=list, description="regexes; if set, a URL must match one")
    exclude: list[str] = Field(default_factory=list, description="regexes; a URL matching one is skipped")
    max_depth: int = Field(3, ge=0, description="link hops from the seeds")
    max_pages: int = Field(1000, ge=1, description="pages fetched in the whole crawl")
    max_pages_per_host: int = Field(500, ge=1, description="pages fetched per host")
    per_host_delay_s: float = Field(
        1.0, ge=0, description="least gap between requests to one host (Crawl-delay raises it)"
    )
    per_host_concurrency: int = Field(1, ge=1, le=16, description="requests in flight per host")
    global_rate_per_s: float = Field(
        10.0, gt=0, description="request starts per second for each fetcher process (each Spark worker has its own)"
    )
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(15.0, gt=0, description="longest silence while waiting for bytes")
    max_fetch_s: float = Field(120.0, gt=0, description="longest time one response may take to download")
    retries: int = Field(2, ge=0, le=10, description="extra attempts after 429, 5xx or a connection failure")
    backoff_s: float = Field(1.0, ge=0, description="first retry wait; doubles with every attempt")
    max_wait_s: float = Field(
        60.0, gt=0, description="longest Retry-After or Crawl-delay honoured; longer ones give up the URL / host"
    )
    max_redirects: int = Field(5, ge=0, le=30)
    max_body_bytes: int = Field(10 * MiB, ge=1, description="bodies are cut here and marked too_large")
    content_types: list[str] = Field(
        default_factory=lambda: ["text/html", "application/xhtml+xml", "text/plain"],
        description="media types whose bodies are kept (type/* allowed)",
    )
    max_url_length: int = Field(2048, ge=16)
    max_path_depth: int = Field(12, ge=1, description="most path segments in a URL (trap guard)")
    max_repeated_segments: int = Field(2, ge=1, description="most times one path segment may occur (trap guard)")
    allow_private: bool = Field(False, description="allow loopback/private/link-local addresses (tests, intranets)")
    obey_robots: bool = True

    @field_validator("seeds")
    @classmethod
    def _seeds_are_urls(cls, seeds: list[str]) -> list[str]:
        out = []
        for seed in seeds:
            url = normalize_url(seed)
            if url is None:
                raise ValueError(f"seed {seed!r} is not an http(s) URL")
            out.append(url)
        return out

    @field_validator("user_agent")
    @classmethod
    def _user_agent_is_a_header(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("user_agent must not be empty")
        if any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
            raise ValueError("user_agent must be printable ASCII on one line")
        return value

    @field_validator("allowed_domains")
    @classmethod
    def _domains_are_hosts(cls, domains: list[str]) -> list[str]:
        out = []
        for raw in domains:
            value = raw.strip().lower().lstrip("*").lstrip(".")
            try:  # an IP address is allowed as is (compared with the URL's host, no brackets)
                out.append(str(ipaddress.ip_address(value.strip("[]"))))
                continue
            except ValueError:
                pass
            if not value or any(c in value for c in "/:@ ") or "://" in raw:
                raise ValueError(f"allowed_domains entry {raw!r} must be a bare domain such as 'example.org'")
            host = _normalize_host(value)
            if host is None:
                raise ValueError(f"allowed_domains entry {raw!r} is not a valid host name")
            out.append(host)
        return out

    @field_validator("include", "exclude")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        for i, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"entry {i} ({pattern!r}) is not a valid regular expression: {exc}") from exc
        return patterns

    @field_validator("content_types")
    @classmethod
    def _media_types(cls, types: list[str]) -> list[str]:
        out = []
        for raw in types:
            value = raw.strip().lower()
            if not re.fullmatch(r"[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)", value):
                raise ValueError(f"content_types entry {raw!r} must look like 'text/html' or 'text/*'")
            out.append(value)
        if not out:
            raise ValueError("content_types must name at least one media type")
        return out

    # ---------------------------------------------------------------- helpers
    @property
    def agent_token(self) -> str:
        """The product token robots.txt groups are matched against (``corpusforge-crawler``)."""
        return re.split(r"[/\s]", self.user_agent, maxsplit=1)[0] or self.user_agent

    def seed_urls(self) -> list[str]:
        """``seeds`` plus the URLs of ``seeds_file`` (blank lines, ``#`` comments and lines that
        are not http(s) URLs are skipped), normalized and deduplicated in order."""
        urls = list(self.seeds)
        if self.seeds_file:
            urls += seed_lines(Path(self.seeds_file).read_text(encoding="utf-8", errors="replace"))[0]
        return list(dict.fromkeys(urls))

    def scope_hosts(self) -> set[str]:
        """Host names the seeds live on (the default scope when ``allowed_domains`` is empty).
        An unreadable ``seeds_file`` (e.g. on a Spark executor) leaves just ``seeds``."""
        try:
            urls = self.seed_urls()
        except OSError as exc:
            log.warning("crawl: cannot read seeds_file %s (%s); scope from crawl.seeds only", self.seeds_file, exc)
            urls = list(self.seeds)
        return {h for h in (urlsplit(u).hostname for u in urls) if h}

    def type_allowed(self, mime: str | None) -> bool:
        """Whether a body of this media type (lower-case, without parameters) is kept."""
        if not mime:
            return False
        major = mime.split("/", 1)[0]
        return any(t == mime or (t.endswith("/*") and t[:-2] == major) for t in self.content_types)


# ============================================================================ URLs
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_LONE_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_HOST_OK = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?")


def _normalize_escapes(text: str, safe: str) -> str:
    """Encode what must be encoded, upper-case escapes and decode escaped unreserved chars."""
    text = _LONE_PCT.sub("%25", text)
    text = quote(text, safe=safe)

    def fix(m: re.Match[str]) -> str:
        char = chr(int(m.group(1), 16))
        return char if char in _UNRESERVED else "%" + m.group(1).upper()

    return _PCT.sub(fix, text)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    if "." not in path:
        return path
    out: list[str] = []
    for seg in path.split("/")[1:] if path.startswith("/") else path.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    trailing = path.endswith(("/.", "/..", "/"))
    result = "/" + "/".join(out)
    if trailing and not result.endswith("/"):
        result += "/"
    return result


def _normalize_host(host: str) -> str | None:
    """Lower-case; IDN to punycode; IPv6 in brackets; None when not a valid host."""
    host = host.strip().rstrip(".").lower()
    if not host:
        return None
    if ":" in host:  # IPv6 literal (urlsplit().hostname strips the brackets)
        try:
            ip = ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
        return f"[{ip.compressed}]"
    if not host.isascii():
        try:
            import idna

            host = idna.encode(host, uts46=True).decode("ascii")
        except Exception:
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                return None
    if len(host) > 253 or not _HOST_OK.fullmatch(host) or any(not 0 < len(p) <= 63 for p in host.split(".")):
        return None
    return host


def normalize_url(url: str) -> str | None:
    """The canonical form of an absolute http(s) URL, or None if it is not one (see module doc)."""
    if not isinstance(url, str):
        return None
    url = re.sub(r"[\t\r\n]", "", url).strip()
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            return None
        hostname, port = parts.hostname, parts.port
    except ValueError:  # bad IPv6 brackets, port out of range or not a number
        return None
    if not hostname:
        return None
    host = _normalize_host(hostname)
    if host is None:
        return None
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _remove_dot_segments(_normalize_escapes(parts.path, _PATH_SAFE)) or "/"
    if not path.startswith("/"):
        path = "/" + path
    query = _normalize_escapes(parts.query, _QUERY_SAFE)
    return urlunsplit((scheme, netloc, path, query, ""))


def seed_lines(text: str) -> tuple[list[str], list[tuple[int, str]]]:
    """The normalized URLs of a seeds file (one a line; blank lines and ``#`` comments skipped)
    and the (line number, text) of the lines that are not http(s) URLs."""
    urls: list[str] = []
    bad: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        url = normalize_url(line)
        if url:
            urls.append(url)
        else:
            bad.append((number, line))
    return urls, bad


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a normalized URL (robots.txt applies per origin)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _hostname(value: str) -> str:
    """Host name of a URL, ``host:port`` or bare host, lower-case, without port or brackets."""
    if "://" in value:
        return (urlsplit(value).hostname or "").lower()
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _domain_matches(host: str, domains: Iterable[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def in_scope(url: str, config: CrawlConfig, seed_hosts: Iterable[str]) -> str | None:
    """None when ``url`` (normalized) may be crawled, else the reason it may not.

    Reasons: ``url_too_long``, ``scheme``, ``domain`` (not in ``allowed_domains``, or when that
    is empty not on a seed host or its subdomains), ``path_too_deep``, ``repeated_segments``,
    ``excluded``, ``not_included``. ``seed_hosts`` may hold host names or ``host:port``.
    """
    if len(url) > config.max_url_length:
        return "url_too_long"
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        return "scheme"
    host = (parts.hostname or "").lower()
    domains = config.allowed_domains or [h for h in (_hostname(s) for s in seed_hosts) if h]
    if not host or not _domain_matches(host, domains):
        return "domain"
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) > config.max_path_depth:
        return "path_too_deep"
    if segments and max(Counter(segments).values()) > config.max_repeated_segments:
        return "repeated_segments"
    if any(re.search(p, url) for p in config.exclude):
        return "excluded"
    if config.include and not any(re.search(p, url) for p in config.include):
        return "not_included"
    return None


# ---------------------------------------------------------------------------- links
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.I)
# WHATWG: these labels mean windows-1252 in HTML.
_LATIN1_LABELS = {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii", "iso_8859-1"}


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in _LATIN1_LABELS:
        return "cp1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_html(data: bytes, encoding: str | None = None) -> str:
    """Text of an HTML body: the given charset, else a BOM, else ``<meta charset>``, else UTF-8."""
    codec = _codec(encoding)
    if codec is None:
        if data.startswith(codecs.BOM_UTF8):
            codec = "utf-8-sig"
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            codec = "utf-16"
        elif m := _META_CHARSET.search(data[:4096]):
            codec = _codec(m.group(1).decode("ascii", "replace"))
    return data.decode(codec or "utf-8", errors="replace")


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[tuple[str, bool]] = []  # (href, rel=nofollow)
        self.meta_nofollow = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag in ("a", "area") and "href" in a:
            self.links.append((a["href"], "nofollow" in a.get("rel", "").lower().split()))
        elif tag in ("frame", "iframe") and "src" in a:
            self.links.append((a["src"], False))
        elif tag == "base" and self.base is None and a.get("href", "").strip():
            self.base = a["href"]
        elif tag == "meta" and a.get("name", "").lower() == "robots":
            tokens = {t.strip() for t in a.get("content", "").lower().split(",")}
            self.meta_nofollow |= bool(tokens & {"nofollow", "none"})


def extract_links(
    base_url: str, html: bytes | str, *, encoding: str | None = None, skip_nofollow: bool = False
) -> list[str]:
    """Normalized http(s) links of an HTML page (``a``/``area`` href, ``frame``/``iframe`` src),
    resolved against ``<base href>`` when present, deduplicated in document order.

    Non-http(s) links (``mailto:``, ``javascript:`` ...), empty and fragment-only hrefs are
    skipped. ``skip_nofollow`` also drops ``rel="nofollow"`` links, and every link of a page
    with ``<meta name="robots" content="nofollow">``.
    """
    text = decode_html(html, encoding) if isinstance(html, (bytes, bytearray)) else html
    parser = _LinkParser()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # html.parser is lenient; keep what was found before anything odd
        log.debug("html parse error in %s", base_url, exc_info=True)
    if skip_nofollow and parser.meta_nofollow:
        return []
    base = base_url
    if parser.base:
        candidate = urljoin(base_url, re.sub(r"[\t\r\n]", "", parser.base).strip())
        if normalize_url(candidate):
            base = candidate
    out: dict[str, None] = {}
    for href, nofollow in parser.links:
        href = re.sub(r"[\t\r\n]", "", href).strip()
        if not href or href.startswith("#") or (nofollow and skip_nofollow):
            continue
        try:
            absolute = urljoin(base, href)
        except ValueError:
            continue
        url = normalize_url(absolute)
        if url:
            out[url] = None
    return list(out)


# ============================================================================ addresses
class AddressBlocked(Exception):
    """A host resolved to an address the crawler must not connect to."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        super().__init__(f"{host} resolves to {address} ({kind})")
        self.host, self.address, self.kind = host, address, kind


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def blocked_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a crawler must not connect to ``ip`` (``loopback``, ``private`` ...), or None."""
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        return blocked_reason(inner)
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind
    if not ip.is_global:
        return "non_global"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """IP addresses of ``host`` from the system resolver (``socket.getaddrinfo``), in order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(address.split("%", 1)[0])


class AddressGuard:
    """Resolves hosts and refuses non-public addresses; the seam tests replace.

    ``resolver(host, port) -> [ip, ...]`` defaults to :func:`system_resolver`;
    ``classify(ip) -> reason | None`` defaults to :func:`blocked_reason`. The fetcher's
    connections call :meth:`resolve` and connect to one of the returned (checked) IPs.
    """

    def __init__(
        self,
        allow_private: bool = False,
        resolver: Callable[[str, int], list[str]] | None = None,
        classify: Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], str | None] | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver or system_resolver
        self.classify = classify or blocked_reason

    def resolve(self, host: str, port: int) -> list[str]:
        """Checked addresses of ``host``; raises :class:`AddressBlocked` if any is refused
        (one bad answer among good ones is treated as hostile), ``socket.gaierror`` if none."""
        host = host.strip("[]")
        addresses = self.resolver(host, port)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"no address for {host}")
        if not self.allow_private:
            for address in addresses:
                try:
                    ip = _parse_ip(address)
                except ValueError:
                    raise AddressBlocked(host, address, "not an IP address") from None
                if (kind := self.classify(ip)) is not None:
                    raise AddressBlocked(host, address, kind)
        return addresses


def check_address(url: str, allow_private: bool = False, *, guard: AddressGuard | None = None) -> str | None:
    """None when ``url`` may be fetched as far as scheme and address go, else a short reason:
    ``scheme``, ``bad_url``, ``dns_error: ...`` or ``private_address: ...``.

    With ``allow_private`` the host is not resolved. The fetcher does not rely on this
    pre-check: its connections check the address they actually connect to."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        return "bad_url"
    if scheme not in DEFAULT_PORTS:
        return f"scheme: {scheme or 'none'} is not http(s)"
    if not host:
        return "bad_url"
    guard = guard or AddressGuard(allow_private)
    if guard.allow_private:
        return None
    try:
        guard.resolve(host, port or DEFAULT_PORTS[scheme])
    except AddressBlocked as exc:
        return f"private_address: {exc}"
    except (OSError, UnicodeError) as exc:
        return f"dns_error: {exc}"
    return None


# ---------------------------------------------------------------------------- transport
def _guarded_connection_classes(guard: AddressGuard) -> dict[str, type]:
    """urllib3 pool classes whose connections resolve through ``guard`` and connect only to a
    checked IP literal (the host name still goes into Host, SNI and certificate checks)."""
    import urllib3
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
    from urllib3.util import connection as u3conn

    class GuardedMixin:
        def request(self, *args: object, **kwargs: object) -> None:
            # The request's deadline watchdog learns the connection it must cut.
            watchdog = getattr(_WATCHDOG, "current", None)
            if watchdog is not None:
                watchdog.attach(self)
            super().request(*args, **kwargs)  # type: ignore[misc]

        def getresponse(self, *args: object, **kwargs: object) -> object:
            watchdog = getattr(_WATCHDOG, "current", None)
            if watchdog is not None:
                watchdog.attach(self)  # cuts at once if the deadline passed while connecting
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]

        def _new_conn(self) -> socket.socket:  # replaces urllib3's resolve-and-connect
            conn = self  # type: ignore[assignment]
            try:
                addresses = guard.resolve(conn._dns_host, conn.port)
            except socket.gaierror as exc:
                raise NameResolutionError(conn.host, conn, exc) from exc
            error: Exception | None = None
            for address in addresses:
                try:
                    sock = u3conn.create_connection(
                        (address, conn.port),
                        conn.timeout,
                        source_address=conn.source_address,
                        socket_options=conn.socket_options,
                    )
                except TimeoutError as exc:
                    error = ConnectTimeoutError(
                        conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
                    )
                    error.__cause__ = exc
                    continue
                except OSError as exc:
                    error = NewConnectionError(conn, f"Failed to establish a new connection: {exc}")
                    continue
                try:
                    peer = _parse_ip(str(sock.getpeername()[0]))
                except (OSError, ValueError):
                    peer = None
                if peer != _parse_ip(address):  # belt and braces: we are where we checked
                    sock.close()
                    raise AddressBlocked(conn.host, str(peer), "connected to an unchecked address")
                sys.audit("http.client.connect", conn, conn.host, conn.port)
                return sock
            assert error is not None
            raise error

    http_conn = type("GuardedHTTPConnection", (GuardedMixin, HTTPConnection), {})
    https_conn = type("GuardedHTTPSConnection", (GuardedMixin, HTTPSConnection), {})
    return {
        "http": type("GuardedHTTPConnectionPool", (urllib3.HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("GuardedHTTPSConnectionPool", (urllib3.HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }


def _split_content_type(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    mime, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            charset = val.strip().strip("\"'") or None
    return (mime.strip().lower() or None), charset


_WATCHDOG = threading.local()  # the running request's _Watchdog, per thread


class _Watchdog:
    """Ends a response at its deadline whatever it is waiting for: read timeouts apply to each
    read, so a server that drips its status line and headers a byte at a time would otherwise
    hold a fetch for as long as it likes. At the deadline the socket of the attached connection
    is shut down (the blocked read returns at once); :meth:`stop` says whether that happened."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._conn: object | None = None
        self._expired = False
        self._stopped = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, conn: object) -> None:
        with self._lock:
            self._conn = conn
            if self._expired and not self._stopped:
                self._cut(conn)

    def _fire(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._expired = True
            if self._conn is not None:
                self._cut(self._conn)

    @staticmethod
    def _cut(conn: object) -> None:
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:  # the plain socket's shutdown, also under TLS: no TLS close_notify exchange
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> bool:
        """Disarm; True when the deadline passed first (the connection is then unusable)."""
        with self._lock:
            self._stopped = True
            expired = self._expired
        self._timer.cancel()
        return expired


@dataclass
class _Exchange:
    """One request and its response (or the failure), as the transport saw it."""

    url: str
    request_headers: list[tuple[str, str]]
    fetched_at: datetime
    status: int | None = None
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    bytes: int = 0
    truncated: bool = False
    content_type: str | None = None
    charset: str | None = None
    ip_address: str | None = None
    error: str | None = None
    detail: str | None = None
    retryable: bool = False
    elapsed_s: float = 0.0

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class Transport:
    """One GET at a time per call, over urllib3 pools with guarded connections.

    No retries, no redirects, no proxies; the body is streamed up to a cap. Thread-safe.
    """

    def __init__(self, guard: AddressGuard, *, pool_size: int = 1, num_pools: int = 16) -> None:
        import urllib3

        try:
            import certifi

            tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": certifi.where()}
        except ImportError:  # urllib3 then uses the system's trust store
            tls = {"cert_reqs": "CERT_REQUIRED"}
        self.guard = guard
        self._pm = urllib3.PoolManager(num_pools=num_pools, maxsize=pool_size, retries=False, **tls)
        self._pm.pool_classes_by_scheme = _guarded_connection_classes(guard)

    def close(self) -> None:
        self._pm.clear()

    def get(
        self,
        url: str,
        headers: list[tuple[str, str]],
        *,
        connect_timeout: float,
        read_timeout: float,
        max_seconds: float,
        max_bytes: int,
        want_body: Callable[[int, str | None], bool],
    ) -> _Exchange:
        import urllib3
        from urllib3.exceptions import (
            ConnectTimeoutError,
            DecodeError,
            HTTPError,
            NameResolutionError,
            NewConnectionError,
            ProtocolError,
            ReadTimeoutError,
            SSLError,
        )

        ex = _Exchange(url=url, request_headers=list(headers), fetched_at=datetime.now(UTC))
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        start = time.monotonic()
        resp = None
        reusable = False
        watchdog = _WATCHDOG.current = _Watchdog(max_seconds)
        try:
            pool = self._pm.connection_from_url(url)
            resp = pool.urlopen(
                "GET",
                target,
                headers=dict(headers),
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                release_conn=False,
                decode_content=True,
                timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            )
            ex.status, ex.reason = resp.status, resp.reason
            ex.headers = list(resp.headers.items())
            ex.content_type, ex.charset = _split_content_type(resp.headers.get("Content-Type"))
            try:
                ex.ip_address = str(resp.connection.sock.getpeername()[0])  # type: ignore[union-attr]
            except Exception:
                pass
            if want_body(resp.status, ex.content_type):
                buf = bytearray()
                while True:
                    if time.monotonic() - start > max_seconds:
                        ex.error, ex.detail = "timeout", f"download took longer than {max_seconds:g}s"
                        break
                    chunk = resp.read1(min(READ_CHUNK, max_bytes + 1 - len(buf)))
                    if not chunk:
                        reusable = True
                        break
                    buf += chunk
                    if len(buf) > max_bytes:
                        ex.truncated = True
                        ex.error, ex.detail = "too_large", f"body exceeds {max_bytes} bytes"
                        break
                ex.bytes = len(buf)
                ex.body = bytes(buf[:max_bytes])
            else:
                length = resp.headers.get("Content-Length", "")
                if length.isdigit() and int(length) <= SMALL_DRAIN_BYTES:
                    resp.drain_conn()
                    reusable = True
        except AddressBlocked as exc:
            ex.error, ex.detail = "private_address", str(exc)
        except NameResolutionError as exc:
            ex.error, ex.detail = "dns_error", _short(exc)
        except ConnectTimeoutError as exc:
            if isinstance(exc, NewConnectionError):
                ex.error, ex.detail = "connection_error", _short(exc)
            else:
                ex.error, ex.detail = "timeout", f"connect: {_short(exc)}"
            ex.retryable = True
        except ReadTimeoutError:
            ex.error, ex.detail = "timeout", f"no data for {read_timeout:g}s"
        except SSLError as exc:
            ex.error, ex.detail = "tls_error", _short(exc)
        except DecodeError as exc:
            ex.error, ex.detail = "decode_error", _short(exc)
        except ProtocolError as exc:
            ex.error, ex.detail = "connection_error", _short(exc)
            ex.retryable = ex.status is None  # the request failed before a response
        except (HTTPError, OSError, ValueError) as exc:
            ex.error, ex.detail = "connection_error", _short(exc)
        finally:
            _WATCHDOG.current = None
            if watchdog.stop():
                ex.error, ex.detail = "timeout", f"response took longer than {max_seconds:g}s"
                ex.retryable, reusable = False, False
            if resp is not None:
                if not reusable:
                    resp.close()
                resp.release_conn()
            ex.elapsed_s = time.monotonic() - start
        return ex


def _header_text(value: str) -> str:
    """http.client decodes header bytes as latin-1; raw UTF-8 (common in Location) is undone."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ============================================================================ pacing
class RateLimiter:
    """Spaces request starts at least ``1 / rate_per_s`` apart (no bursts). Thread-safe."""

    def __init__(self, rate_per_s: float) -> None:
        self.interval = 1.0 / rate_per_s
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


_LIMITERS: dict[float, RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def process_rate_limiter(rate_per_s: float) -> RateLimiter:
    """The limiter every fetcher in this process shares for a given rate."""
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(rate_per_s)
        if limiter is None:
            limiter = _LIMITERS[rate_per_s] = RateLimiter(rate_per_s)
        return limiter


class _HostGate:
    """Politeness for one host: at most ``concurrency`` requests in flight; with one, at least
    ``delay`` seconds between the end of a request and the start of the next, with more, at
    least ``delay`` between starts."""

    def __init__(self, delay: float, concurrency: int) -> None:
        self.delay = delay
        self._serial = concurrency == 1
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._next = 0.0
        self._last_end = 0.0

    def acquire(self) -> None:
        self._slots.acquire()
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.delay
        if start > now:
            time.sleep(start - now)

    def release(self) -> None:
        with self._lock:
            self._last_end = time.monotonic()
            if self._serial:
                self._next = max(self._next, self._last_end + self.delay)
        self._slots.release()

    def raise_delay(self, delay: float) -> None:
        with self._lock:
            if delay > self.delay:
                self.delay = delay
                self._next = max(self._next, self._last_end + delay)

    def defer(self, seconds: float) -> None:
        """No request before ``seconds`` from now (retry backoff, Retry-After)."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# ============================================================================ results
@dataclass
class Hop:
    """A redirect response that was followed."""

    url: str
    status: int
    location: str  # the resolved, normalized target
    headers: list[tuple[str, str]]
    request_headers: list[tuple[str, str]]
    fetched_at: datetime
    reason: str | None = None


@dataclass
class FetchResult:
    """What happened to one URL. ``error`` is None when an HTTP response was received and
    kept (whatever its status; see :attr:`ok`); otherwise a short reason:

    ``bad_url``, ``scheme``, ``out_of_scope``, ``host_limit``, ``robots``, ``crawl_delay``,
    ``private_address``, ``dns_error``, ``connection_error``, ``timeout``, ``tls_error``,
    ``decode_error``, ``too_large`` (body kept, cut at the cap, ``truncated``),
    ``content_type`` (body not read), ``redirect_loop``, ``too_many_redirects``,
    ``bad_redirect``, ``internal_error``. ``detail`` says more, for logs.
    """

    url: str
    final_url: str
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    elapsed_s: float = 0.0  # time on the network (all attempts and hops), not politeness waits
    bytes: int = 0  # decoded body bytes read (at most max_body_bytes + 1)
    error: str | None = None
    redirects: list[Hop] = field(default_factory=list)
    truncated: bool = False
    links: list[str] = field(default_factory=list)  # normalized, not scope-filtered
    reason: str | None = None  # HTTP reason phrase
    content_type: str | None = None  # media type, lower-case, no parameters
    charset: str | None = None  # from the Content-Type header
    ip_address: str | None = None  # the peer the final response came from
    attempts: int = 0  # requests sent for the final URL (1 + retries); 0 if none
    detail: str | None = None

    @property
    def ok(self) -> bool:
        """A 2xx response with its body kept."""
        return self.error is None and self.status is not None and 200 <= self.status < 300


# ============================================================================ robots.txt
@dataclass
class RobotsRules:
    """robots.txt of one origin: ``parsed``, ``allow_all`` (4xx, missing) or ``disallow_all``
    (429, 5xx, unreachable)."""

    origin: str
    mode: Literal["parsed", "allow_all", "disallow_all"]
    status: int | None = None
    detail: str | None = None
    parser: object | None = None  # protego.Protego when parsed
    error: str | None = None  # the robots.txt fetch's error, if any

    def allowed(self, url: str, agent: str) -> bool:
        if self.mode == "allow_all":
            return True
        if self.mode == "disallow_all":
            return False
        return bool(self.parser.can_fetch(url, agent))  # type: ignore[attr-defined]

    def crawl_delay(self, agent: str) -> float | None:
        """Crawl-delay, or the gap a Request-rate implies, in seconds; None if not set."""
        if self.mode != "parsed":
            return None
        delays = []
        if (delay := self.parser.crawl_delay(agent)) is not None:  # type: ignore[attr-defined]
            delays.append(float(delay))
        rate = self.parser.request_rate(agent)  # type: ignore[attr-defined]
        if rate is not None and rate.requests:
            delays.append(rate.seconds / rate.requests)
        return max(delays) if delays else None


def rules_from_result(origin: str, result: FetchResult) -> RobotsRules:
    """How a robots.txt fetch turns into rules (RFC 9309 section 2.3.1)."""
    status = result.status
    if result.error in (None, "too_large") and status is not None and 200 <= status < 300:
        from protego import Protego

        text = (result.body or b"").decode("utf-8", errors="replace").lstrip("\ufeff")
        try:
            return RobotsRules(origin, "parsed", status, result.error, Protego.parse(text))
        except Exception as exc:  # unparsable: as good as none
            return RobotsRules(origin, "allow_all", status, f"unparsable robots.txt: {_short(exc)}")
    if result.error in ("redirect_loop", "too_many_redirects"):
        return RobotsRules(origin, "allow_all", status, f"robots.txt {result.error}")
    if result.error is None and status is not None and 300 <= status < 500 and status != 429:
        return RobotsRules(origin, "allow_all", status, f"robots.txt HTTP {status}")
    why = f"HTTP {status}" if result.error is None else f"{result.error}: {result.detail}"
    return RobotsRules(origin, "disallow_all", status, f"robots.txt unavailable ({why})", error=result.error)


class RobotsCache:
    """robots.txt rules per origin, fetched once each (thread-safe).

    :meth:`rules` takes an optional ``fetch(robots_url) -> FetchResult``; the
    :class:`HostFetcher` passes its own so the robots request is paced like the pages. Without
    one the cache fetches through a private fetcher with the same config.
    """

    def __init__(self, config: CrawlConfig, *, guard: AddressGuard | None = None) -> None:
        self.config = config
        self.agent = config.agent_token
        self._guard = guard
        self._rules: dict[str, RobotsRules] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._own_fetcher: HostFetcher | None = None

    def __len__(self) -> int:
        return len(self._rules)

    def cached(self, url: str) -> RobotsRules | None:
        return self._rules.get(origin_of(url))

    def rules(self, url: str, fetch: Callable[[str], FetchResult] | None = None) -> RobotsRules:
        origin = origin_of(url)
        with self._lock:
            if (found := self._rules.get(origin)) is not None:
                return found
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:
            if (found := self._rules.get(origin)) is not None:
                return found
            if fetch is None:
                with self._lock:
                    if self._own_fetcher is None:
                        self._own_fetcher = HostFetcher(self.config, robots=self, guard=self._guard)
                fetch = self._own_fetcher.fetch_robots
            result = fetch(origin + "/robots.txt")
            rules = rules_from_result(origin, result)
            log.debug("robots %s: %s %s", origin, rules.mode, rules.detail or "")
            with self._lock:
                self._rules[origin] = rules
            return rules

    def allowed(self, url: str, fetch: Callable[[str], FetchResult] | None = None) -> bool:
        """Whether the configured user agent may fetch ``url``."""
        return self.rules(url, fetch).allowed(url, self.agent)

    def crawl_delay(self, url: str, fetch: Callable[[str], FetchResult] | None = None) -> float | None:
        """The Crawl-delay (seconds) for the configured user agent on ``url``'s origin."""
        return self.rules(url, fetch).crawl_delay(self.agent)

    def close(self) -> None:
        if self._own_fetcher is not None:
            self._own_fetcher.close()


# ============================================================================ fetching
class HostFetcher:
    """Fetches URLs politely and safely; meant for the URLs of one host (a Spark task's unit).

    Keeps a politeness gate per host it talks to (so redirect hops to another host are paced
    too), shares the process-wide rate limiter and the given :class:`RobotsCache`.
    ``seed_hosts`` defines the scope when ``allowed_domains`` is empty (default: the hosts of
    the configured seeds). ``guard`` is the address-check seam (default:
    ``AddressGuard(config.allow_private)``).
    """

    def __init__(
        self,
        config: CrawlConfig,
        robots: RobotsCache | None = None,
        *,
        seed_hosts: Iterable[str] | None = None,
        guard: AddressGuard | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.config = config
        self.guard = guard or AddressGuard(config.allow_private)
        self.transport = Transport(self.guard, pool_size=config.per_host_concurrency)
        self.robots = robots if robots is not None else RobotsCache(config, guard=self.guard)
        self.seed_hosts = {_hostname(h) for h in seed_hosts} if seed_hosts is not None else config.scope_hosts()
        self.limiter = limiter or process_rate_limiter(config.global_rate_per_s)
        self.stats: Counter[str] = Counter()
        self._gates: dict[str, _HostGate] = {}
        self._pages: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._accept = ", ".join(config.content_types) + ", */*;q=0.1"

    def __enter__(self) -> HostFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    # ---------------------------------------------------------------- public
    def fetch_all(self, urls: Iterable[str]) -> Iterator[FetchResult]:
        """One result per URL, in input order (with ``per_host_concurrency`` > 1 the requests
        overlap, paced by the host gate)."""
        if self.config.per_host_concurrency == 1:
            for url in urls:
                yield self.fetch(url)
            return
        with ThreadPoolExecutor(self.config.per_host_concurrency, thread_name_prefix="fetch") as pool:
            yield from pool.map(self.fetch, urls)

    def fetch(self, url: str) -> FetchResult:
        """Fetch one URL (following redirects); never raises for network or content problems."""
        try:
            return self._fetch(url)
        except Exception as exc:  # a bug must not kill a crawl task; it is logged and reported
            log.exception("fetch %s failed unexpectedly", url)
            return FetchResult(url=url, final_url=url, error="internal_error", detail=_short(exc))

    def fetch_robots(self, robots_url: str) -> FetchResult:
        """GET a robots.txt: paced like pages, any content type, capped at 512 KiB (or
        ``max_body_bytes``), up to five redirects to anywhere (address-checked), no scope or
        robots check."""
        self._count("robots_fetches")
        return self._follow(
            robots_url,
            robots_url,
            max_bytes=min(ROBOTS_MAX_BYTES, self.config.max_body_bytes),
            want_type=lambda mime: True,
            max_redirects=ROBOTS_MAX_REDIRECTS,
            check_hop=None,
        )

    # ---------------------------------------------------------------- internals
    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _gate(self, host: str) -> _HostGate:
        with self._lock:
            gate = self._gates.get(host)
            if gate is None:
                gate = self._gates[host] = _HostGate(self.config.per_host_delay_s, self.config.per_host_concurrency)
            return gate

    def _robots_check(self, url: str) -> tuple[str, str] | None:
        """(error, detail) when robots.txt forbids ``url``; also applies its Crawl-delay."""
        if not self.config.obey_robots:
            return None
        rules = self.robots.rules(url, fetch=self.fetch_robots)
        delay = rules.crawl_delay(self.robots.agent)
        if delay is not None:
            if delay > self.config.max_wait_s:
                return "crawl_delay", f"Crawl-delay {delay:g}s exceeds max_wait_s={self.config.max_wait_s:g}"
            self._gate(_hostname(url)).raise_delay(delay)
        if not rules.allowed(url, self.robots.agent):
            if rules.mode == "disallow_all":
                # A refused address or an unknown host says more than "robots" would.
                error = rules.error if rules.error in ("private_address", "dns_error") else "robots"
                return error, rules.detail or "robots.txt unavailable"
            return "robots", "disallowed by robots.txt"
        return None

    def _fetch(self, url: str) -> FetchResult:
        norm = normalize_url(url)
        if norm is None:
            scheme = url.split(":", 1)[0].strip().lower() if ":" in url else ""
            if scheme and scheme not in DEFAULT_PORTS and re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
                return FetchResult(url=url, final_url=url, error="scheme", detail=f"{scheme}: is not http(s)")
            return FetchResult(url=url, final_url=url, error="bad_url", detail="not an absolute http(s) URL")
        if (why := in_scope(norm, self.config, self.seed_hosts)) is not None:
            return FetchResult(url=url, final_url=norm, error="out_of_scope", detail=why)
        host = _hostname(norm)
        limit_hit = FetchResult(url=url, final_url=norm, error="host_limit", detail="max_pages_per_host reached")
        if self._pages[host] >= self.config.max_pages_per_host:
            return limit_hit

        def check_hop(target: str) -> tuple[str, str] | None:
            if (why := in_scope(target, self.config, self.seed_hosts)) is not None:
                return "out_of_scope", f"redirect to {target}: {why}"
            if (blocked := self._robots_check(target)) is not None:
                return blocked[0], f"redirect to {target}: {blocked[1]}"
            return None

        if (blocked := self._robots_check(norm)) is not None:
            return FetchResult(url=url, final_url=norm, error=blocked[0], detail=blocked[1])
        with self._lock:  # counted once a request is due (robots-refused URLs cost nothing)
            if self._pages[host] >= self.config.max_pages_per_host:
                return limit_hit
            self._pages[host] += 1
        result = self._follow(
            url,
            norm,
            max_bytes=self.config.max_body_bytes,
            want_type=self.config.type_allowed,
            max_redirects=self.config.max_redirects,
            check_hop=check_hop,
        )
        if (
            result.body
            and result.content_type in HTML_TYPES
            and result.status is not None
            and 200 <= result.status < 300
        ):
            result.links = extract_links(result.final_url, result.body, encoding=result.charset)
        self._count("pages")
        if result.error:
            self._count(f"error_{result.error}")
        return result

    def _follow(
        self,
        url: str,
        norm: str,
        *,
        max_bytes: int,
        want_type: Callable[[str | None], bool],
        max_redirects: int,
        check_hop: Callable[[str], tuple[str, str] | None] | None,
    ) -> FetchResult:
        """Request ``norm``, following redirects by hand; builds the result."""
        hops: list[Hop] = []
        seen = {norm}
        current = norm
        elapsed = 0.0

        def want_body(status: int, mime: str | None) -> bool:
            return status in REDIRECT_STATUSES or want_type(mime)

        while True:
            ex, attempts = self._request(current, max_bytes=max_bytes, want_body=want_body)
            elapsed += ex.elapsed_s
            result = FetchResult(
                url=url,
                final_url=current,
                status=ex.status,
                headers=ex.headers,
                body=ex.body,
                request_headers=ex.request_headers,
                fetched_at=ex.fetched_at,
                elapsed_s=elapsed,
                bytes=ex.bytes,
                error=ex.error,
                redirects=hops,
                truncated=ex.truncated,
                reason=ex.reason,
                content_type=ex.content_type,
                charset=ex.charset,
                ip_address=ex.ip_address,
                attempts=attempts,
                detail=ex.detail,
            )
            if ex.error is not None or ex.status is None:
                return result
            if ex.status in REDIRECT_STATUSES and (location := ex.header("Location")):
                target = normalize_url(urljoin(current, _header_text(location).strip()))
                failure: tuple[str, str] | None = None
                if target is None:
                    failure = ("bad_redirect", f"Location {location!r} is not an http(s) URL")
                elif target in seen:
                    failure = ("redirect_loop", f"redirect back to {target}")
                elif len(hops) >= max_redirects:
                    failure = ("too_many_redirects", f"more than {max_redirects} redirects")
                elif check_hop is not None:
                    failure = check_hop(target)
                if failure is not None:
                    result.error, result.detail = failure
                    return result
                assert target is not None
                hops.append(Hop(current, ex.status, target, ex.headers, ex.request_headers, ex.fetched_at, ex.reason))
                seen.add(target)
                current = target
                continue
            if ex.body is None and not want_type(ex.content_type) and ex.status not in (204, 304):
                result.error = "content_type"
                result.detail = f"{ex.content_type or 'no Content-Type'} is not in content_types"
            return result

    def _headers(self, url: str) -> list[tuple[str, str]]:
        return [
            ("Host", urlsplit(url).netloc),
            ("User-Agent", self.config.user_agent),
            ("Accept", self._accept),
            ("Accept-Encoding", "gzip, deflate"),
        ]

    def _request(
        self, url: str, *, max_bytes: int, want_body: Callable[[int, str | None], bool]
    ) -> tuple[_Exchange, int]:
        """One URL, with retries on 429/5xx/connection failures; returns the last exchange and
        the number of requests sent."""
        cfg = self.config
        gate = self._gate(_hostname(url))
        attempt = 0
        while True:
            gate.acquire()
            try:
                self.limiter.acquire()
                ex = self._transport_get(url, max_bytes, want_body)
            finally:
                gate.release()
            attempt += 1
            self._count("requests")
            retry = ex.retryable or (ex.error is None and ex.status in RETRY_STATUSES)
            if not retry:
                return ex, attempt
            if attempt > cfg.retries:
                ex.detail = (ex.detail + "; " if ex.detail else "") + f"gave up after {attempt} attempts"
                return ex, attempt
            wait = cfg.backoff_s * (2 ** (attempt - 1))
            if (after := _retry_after(ex.header("Retry-After"))) is not None:
                if after > cfg.max_wait_s:
                    ex.detail = f"Retry-After {after:g}s exceeds max_wait_s={cfg.max_wait_s:g}"
                    return ex, attempt
                wait = max(wait, after)
            self._count("retries")
            log.debug("retry %s in %.2fs (%s)", url, wait, ex.error or ex.status)
            gate.defer(wait)

    def _transport_get(self, url: str, max_bytes: int, want_body: Callable[[int, str | None], bool]) -> _Exchange:
        cfg = self.config
        return self.transport.get(
            url,
            self._headers(url),
            connect_timeout=cfg.connect_timeout_s,
            read_timeout=cfg.read_timeout_s,
            max_seconds=cfg.max_fetch_s,
            max_bytes=max_bytes,
            want_body=want_body,
        )


def fetch_host_urls(
    host: str,
    urls: Iterable[str],
    config: CrawlConfig,
    robots_cache: RobotsCache | None = None,
    *,
    seed_hosts: Iterable[str] | None = None,
    guard: AddressGuard | None = None,
    limiter: RateLimiter | None = None,
) -> Iterator[FetchResult]:
    """Fetch the URLs of one ``host`` (``host`` or ``host:port``), politely, one result each.

    The scope is ``config.allowed_domains``, else ``seed_hosts`` (default: the configured
    seeds' hosts) plus ``host`` itself, so a crawl whose seeds came from elsewhere still
    fetches the URLs it was given.
    """
    hosts = set(seed_hosts) if seed_hosts is not None else set(config.scope_hosts())
    hosts.add(_hostname(host))
    with HostFetcher(config, robots_cache, seed_hosts=hosts, guard=guard, limiter=limiter) as fetcher:
        yield from fetcher.fetch_all(urls)
