"""A generated, deterministic test website served by a real HTTP server on 127.0.0.1.

Used by the fetcher tests and by the crawler tests::

    with TestSite(pages=9, crawl_delay=0.2) as site:
        fetch(site.url("/docs/page-0.html"))
        assert site.hits.count("/robots.txt") == 1

The server is a threaded ``http.server`` speaking HTTP/1.1 (keep-alive) on an ephemeral
port. Every request is logged in ``site.hits`` (path with query, User-Agent, monotonic
time, Host header) before it is answered, so a test can assert exactly what reached the
server and when.

Routes (all content is generated from the constructor arguments; no randomness):

=============================  ==============================================================
``/``                          index: links to every normal page, plus (``special=True``) to
                               every special page below
``/robots.txt``                ``robots_txt`` (default: see :func:`default_robots`);
                               ``robots_txt=None`` -> 404; ``robots_status`` overrides the
                               status (e.g. 500)
``/{dir}/page-{i}.html``       ``pages`` normal pages spread over ``dirs``; relative,
                               root-relative and absolute links, fragments
``/private/...``               any path: a "secret" page (disallowed by the default robots)
``/slow``                      sleeps ``slow_s`` before answering (longer than read timeouts)
``/flaky``                     500 twice, then 200 (counted per request target, so
                               ``/flaky?k=1`` and ``/flaky?k=2`` are independent)
``/throttled``                 429 with ``Retry-After: {retry_after}`` once, then 200
``/throttled-long``            always 429 with ``Retry-After: 3600``
``/redirect/chain/{n}``        redirects to ``/redirect/chain/{n-1}`` (301/302/303/307/308 in
                               turn); ``/redirect/chain/0`` is a page
``/redirect/loop/a`` (``/b``)  a -> b -> a ...
``/redirect/self``             redirects to itself
``/redirect/relative``         ``Location: ../docs/page-0.html`` (relative)
``/redirect/private``          redirects to ``/private/secret.html`` (robots-disallowed)
``/redirect/external``         redirects to ``http://elsewhere.invalid/`` (out of scope)
``/redirect/to?url=X``         open redirect to X (302)
``/redirect/no-location``      302 without a Location header
``/trap/...``                  calendar-like trap: every page links one level deeper and to
                               a ``?view=`` variant
``/a/``, ``/a/a/``, ...        repeated-segment trap: links ``a/`` (relative)
``/big``                       ``big_bytes`` of HTML, Content-Length set, streamed in chunks
``/big-chunked``               the same with chunked transfer encoding
``/bomb.html``                 gzip-encoded HTML that inflates to ``bomb_bytes``
``/gzip.html``                 a small gzip-encoded HTML page with links
``/image.png``                 a tiny valid PNG (``image/png``), linked from the index
``/data.csv``                  ``text/csv`` (a text type that is not HTML)
``/plain.txt``                 ``text/plain; charset=utf-8``
``/latin1.html``               ``text/html; charset=iso-8859-1`` with non-ASCII text
``/utf8.html``                 ``text/html; charset=utf-8`` with non-ASCII text
``/no-type``                   HTML without a Content-Type header
``/links.html``                link torture: absolute/relative links, fragments, queries,
                               mailto:, javascript:, rel=nofollow, whitespace in hrefs
``/base.html``                 uses ``<base href="/docs/">``
``/trickle``                   sends one byte every ``trickle_interval_s`` for ever (until
                               the client goes away or ``trickle_bytes`` were sent)
``/status/{code}``             an HTML page with that status
anything else                  404
=============================  ==============================================================

``site.streams[path]`` tells how many body bytes a streamed route (``/big``,
``/big-chunked``, ``/trickle``) wrote and whether it finished or the client hung up.
"""

from __future__ import annotations

import gzip
import random
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

__all__ = ["Hit", "HitLog", "TestSite", "default_robots", "png_bytes"]

WORDS = (
    "river mountain harbor lantern orchard meadow granite compass ledger violin thunder "
    "saddle copper willow beacon canyon glacier parsley tundra quarry falcon marble "
    "pepper ribbon summit timber vessel walnut yonder zephyr amber bramble cobalt dune"
).split()

REDIRECT_CODES = (301, 302, 303, 307, 308)


class Hit(NamedTuple):
    """One request as the server saw it."""

    path: str  # request target: path plus query string
    user_agent: str
    time: float  # time.monotonic() when the request line was read
    host: str  # Host header
    method: str = "GET"


class HitLog:
    """Thread-safe, append-only log of :class:`Hit` s."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: list[Hit] = []

    def append(self, hit: Hit) -> None:
        with self._lock:
            self._hits.append(hit)

    def snapshot(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._hits)

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()

    def paths(self) -> list[str]:
        """Request targets in arrival order."""
        return [h.path for h in self.snapshot()]

    def count(self, path: str) -> int:
        """How many requests had exactly this target (path plus query)."""
        return sum(1 for h in self.snapshot() if h.path == path)

    def requested(self, prefix: str) -> bool:
        """Whether any request target starts with ``prefix``."""
        return any(h.path.startswith(prefix) for h in self.snapshot())

    def times(self, *, exclude: tuple[str, ...] = ()) -> list[float]:
        """Arrival times (monotonic) of the requests whose target is not in ``exclude``."""
        return [h.time for h in self.snapshot() if h.path not in exclude]

    def gaps(self, *, exclude: tuple[str, ...] = ()) -> list[float]:
        """Seconds between consecutive requests (optionally ignoring some targets)."""
        t = self.times(exclude=exclude)
        return [b - a for a, b in zip(t, t[1:], strict=False)]


def default_robots(crawl_delay: float | None = None) -> str:
    """The default robots.txt: ``/private/`` is off limits to everyone, and a bot called
    ``special-bot`` may not read ``/docs/`` either (its group replaces the ``*`` group)."""
    lines = ["# corpusforge test site", "User-agent: *", "Disallow: /private/"]
    if crawl_delay is not None:
        lines.append(f"Crawl-delay: {crawl_delay:g}")
    lines += ["", "User-agent: special-bot", "Disallow: /docs/", "Disallow: /private/", ""]
    return "\n".join(lines)


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    """A valid, tiny RGB PNG image (deterministic)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _text(seed: int, words: int = 60) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def _html(title: str, body: str, head: str = "") -> str:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title>{head}</head>\n<body>\n<h1>{title}</h1>\n{body}\n</body></html>\n"
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    site: TestSite


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sitegen/1.0"
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.site._handle(self, head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.site._handle(self, head=True)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, OSError):
            pass  # the client hung up (timeouts, size caps): expected in these tests

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class TestSite:
    """A deterministic website on ``http://127.0.0.1:{port}``; use as a context manager."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *,
        pages: int = 9,
        dirs: tuple[str, ...] = ("docs", "blog", "news"),
        special: bool = True,
        robots_txt: str | None = "default",
        robots_status: int | None = None,
        crawl_delay: float | None = None,
        slow_s: float = 5.0,
        retry_after: str = "1",
        big_bytes: int = 4 * 1024 * 1024,
        big_chunk: int = 16 * 1024,
        bomb_bytes: int = 8 * 1024 * 1024,
        trickle_interval_s: float = 0.1,
        trickle_bytes: int = 10_000,
    ) -> None:
        if pages < 1 or not dirs:
            raise ValueError("a TestSite needs at least one page and one directory")
        self.pages = pages
        self.dirs = dirs
        self.special = special
        self.robots_txt = default_robots(crawl_delay) if robots_txt == "default" else robots_txt
        self.robots_status = robots_status
        self.slow_s = slow_s
        self.retry_after = retry_after
        self.big_bytes = big_bytes
        self.big_chunk = big_chunk
        self.bomb_bytes = bomb_bytes
        self.trickle_interval_s = trickle_interval_s
        self.trickle_bytes = trickle_bytes

        self.hits = HitLog()
        self.streams: dict[str, dict[str, int | bool]] = {}
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._bomb: bytes | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> TestSite:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.site = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sitegen", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TestSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        assert self._server is not None, "TestSite is not started"
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    # ------------------------------------------------------------------ content
    def page_paths(self) -> list[str]:
        """Paths of the normal pages, in index order."""
        return [f"/{self.dirs[i % len(self.dirs)]}/page-{i}.html" for i in range(self.pages)]

    SPECIAL_PATHS = (
        "/private/secret.html",
        "/slow",
        "/flaky",
        "/throttled",
        "/redirect/chain/3",
        "/redirect/loop/a",
        "/redirect/private",
        "/redirect/external",
        "/trap/1/",
        "/a/",
        "/big",
        "/image.png",
        "/data.csv",
        "/plain.txt",
        "/latin1.html",
        "/utf8.html",
        "/gzip.html",
        "/links.html",
        "/base.html",
    )

    def index_links(self) -> list[str]:
        """Targets of the index's links (paths), in document order."""
        return self.page_paths() + (list(self.SPECIAL_PATHS) if self.special else [])

    def page_links(self, i: int) -> list[str]:
        """Paths that normal page ``i`` links to (fragments removed, resolved)."""
        paths = self.page_paths()
        return ["/", paths[(i + 1) % self.pages], paths[(i * 3 + 1) % self.pages], paths[(i + 2) % self.pages]]

    def _index(self) -> str:
        items = [f'<li><a href="{p}">{p}</a></li>' for p in self.page_paths()]
        if self.special:
            items += [f'<li><a href="{p}">{p}</a></li>' for p in self.SPECIAL_PATHS if p != "/image.png"]
            items.append('<li><img src="/image.png" alt=""><a href="/image.png">picture</a></li>')
        return _html("Index", f"<p>{_text(0, 20)}</p>\n<ul>\n" + "\n".join(items) + "\n</ul>")

    def _page(self, i: int) -> str:
        paths = self.page_paths()
        here_dir = paths[i].rsplit("/", 1)[0]
        nxt = paths[(i + 1) % self.pages]
        other = paths[(i * 3 + 1) % self.pages]
        third = paths[(i + 2) % self.pages]
        # Relative when in the same directory, "../" otherwise; one absolute link.
        rel_next = nxt.rsplit("/", 1)[1] if nxt.startswith(here_dir + "/") else ".." + nxt
        body = (
            f"<p>{_text(i + 1)}</p>\n<p>{_text(1000 + i)}</p>\n"
            f'<p><a href="/">home</a> <a href="{rel_next}">next</a> '
            f'<a href="{other}#section-{i}">see also</a> '
            f'<a href="{self.base_url}{third}">absolute</a></p>'
        )
        return _html(f"{self.dirs[i % len(self.dirs)]} page {i}", body)

    def _links_page(self) -> str:
        body = (
            '<a href="/docs/page-0.html">root-relative</a>\n'
            '<a href="docs/page-1.html#frag">relative with fragment</a>\n'
            f'<a href="{self.base_url}/blog/page-1.html">absolute</a>\n'
            '<a href="/search?q=river&amp;page=2">query</a>\n'
            '<a href="#top">fragment only</a>\n'
            '<a href="mailto:someone@example.org">mail</a>\n'
            '<a href="javascript:void(0)">js</a>\n'
            '<a href="/nofollow.html" rel="nofollow">nofollow</a>\n'
            '<a href="  /docs/page-2.html\n">whitespace</a>\n'
            '<a href="//elsewhere.invalid/x">protocol-relative</a>\n'
            '<a href="/docs/./sub/../page-0.html">dot segments</a>\n'
            "<a>no href</a>\n"
        )
        return _html("Links", body)

    def _trap(self, path: str) -> str:
        segs = [s for s in path.split("/") if s]
        nums = [int(s) for s in segs[1:] if s.isdigit()]
        deeper = path.rstrip("/") + f"/{(nums[-1] + 1) if nums else 1}/"
        return _html("Calendar", f'<a href="{deeper}">next</a> <a href="{path}?view=month">month</a>')

    def _bomb_body(self) -> bytes:
        if self._bomb is None:
            self._bomb = gzip.compress(b"<html><body>" + b" " * self.bomb_bytes + b"</body></html>", 9)
        return self._bomb

    def counter(self, key: str) -> int:
        """How many times ``key`` (a request target) was served by a counting route."""
        with self._lock:
            return self._counters.get(key, 0)

    def _bump(self, key: str) -> int:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + 1
            return self._counters[key]

    # ------------------------------------------------------------------ serving
    def _handle(self, h: _Handler, head: bool) -> None:
        self.hits.append(
            Hit(h.path, h.headers.get("User-Agent", ""), time.monotonic(), h.headers.get("Host", ""), h.command)
        )
        try:
            self._route(h, head)
        except (ConnectionError, TimeoutError):
            h.close_connection = True

    def _send(
        self,
        h: _Handler,
        status: int,
        body: bytes | str = b"",
        ctype: str | None = "text/html; charset=utf-8",
        headers: tuple[tuple[str, str], ...] = (),
        head: bool = False,
    ) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        h.send_response(status)
        if ctype is not None:
            h.send_header("Content-Type", ctype)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if not head:
            h.wfile.write(data)

    def _redirect(self, h: _Handler, location: str, status: int = 302, head: bool = False) -> None:
        self._send(
            h, status, _html("Moved", f'<a href="{location}">here</a>'), headers=(("Location", location),), head=head
        )

    def _route(self, h: _Handler, head: bool) -> None:
        target = h.path
        parts = urlsplit(target)
        path = parts.path
        send = self._send

        if path == "/robots.txt":
            if self.robots_txt is None and self.robots_status is None:
                return send(h, 404, "not found", "text/plain", head=head)
            status = self.robots_status or 200
            return send(h, status, self.robots_txt or "", "text/plain; charset=utf-8", head=head)
        if path == "/":
            return send(h, 200, self._index(), head=head)
        for i, p in enumerate(self.page_paths()):
            if path == p:
                return send(h, 200, self._page(i), head=head)
        if path.startswith("/private/"):
            return send(h, 200, _html("Secret", "<p>You should not be reading this.</p>"), head=head)
        if path == "/slow":
            self._stopping.wait(self.slow_s)
            return send(h, 200, _html("Slow", "<p>finally</p>"), head=head)
        if path == "/flaky":
            if self._bump(target) <= 2:
                return send(h, 500, _html("Oops", "<p>try again</p>"), head=head)
            return send(h, 200, _html("Flaky", "<p>worked this time</p>"), head=head)
        if path == "/throttled":
            if self._bump(target) <= 1:
                return send(h, 429, "slow down", "text/plain", (("Retry-After", self.retry_after),), head=head)
            return send(h, 200, _html("Throttled", "<p>thanks for waiting</p>"), head=head)
        if path == "/throttled-long":
            return send(h, 429, "go away", "text/plain", (("Retry-After", "3600"),), head=head)
        if path.startswith("/redirect/chain/"):
            n = int(path.rsplit("/", 1)[1] or 0)
            if n <= 0:
                return send(h, 200, _html("End of chain", "<p>arrived</p>"), head=head)
            return self._redirect(h, f"/redirect/chain/{n - 1}", REDIRECT_CODES[n % len(REDIRECT_CODES)], head)
        if path == "/redirect/loop/a":
            return self._redirect(h, "/redirect/loop/b", 302, head)
        if path == "/redirect/loop/b":
            return self._redirect(h, "/redirect/loop/a", 302, head)
        if path == "/redirect/self":
            return self._redirect(h, "/redirect/self", 301, head)
        if path == "/redirect/relative":
            return self._redirect(h, "../docs/page-0.html", 301, head)
        if path == "/redirect/private":
            return self._redirect(h, "/private/secret.html", 302, head)
        if path == "/redirect/external":
            return self._redirect(h, "http://elsewhere.invalid/", 302, head)
        if path == "/redirect/to":
            return self._redirect(h, parse_qs(parts.query).get("url", ["/"])[0], 302, head)
        if path == "/redirect/no-location":
            return send(h, 302, _html("Moved", "<p>somewhere</p>"), head=head)
        if path.startswith("/trap/"):
            return send(h, 200, self._trap(path), head=head)
        if path.startswith("/a/") and set(s for s in path.split("/") if s) <= {"a"}:
            return send(h, 200, _html("A", '<a href="a/">deeper</a>'), head=head)
        if path in ("/big", "/big-chunked"):
            return self._stream_big(h, path, chunked=path == "/big-chunked", head=head)
        if path == "/bomb.html":
            return send(h, 200, self._bomb_body(), headers=(("Content-Encoding", "gzip"),), head=head)
        if path == "/gzip.html":
            page = _html("Gzipped", '<a href="/docs/page-0.html">zero</a> <a href="/blog/page-1.html">one</a>')
            return send(h, 200, gzip.compress(page.encode(), 6), headers=(("Content-Encoding", "gzip"),), head=head)
        if path == "/image.png":
            return send(h, 200, png_bytes(), "image/png", head=head)
        if path == "/data.csv":
            return send(h, 200, "id,name\n1,river\n2,mountain\n", "text/csv", head=head)
        if path == "/plain.txt":
            return send(h, 200, f"{_text(7)}\nNaïve café — plain text.\n", "text/plain; charset=utf-8", head=head)
        if path == "/latin1.html":
            page = _html("Caf\u00e9", "<p>Cr\u00e8me br\u00fbl\u00e9e \u00e0 la carte.</p>").replace(
                '<meta charset="utf-8">', ""
            )
            return send(h, 200, page.encode("iso-8859-1"), "text/html; charset=iso-8859-1", head=head)
        if path == "/utf8.html":
            return send(h, 200, _html("Stra\u00dfe", "<p>\u6771\u4eac \u2014 \u00fcber</p>"), head=head)
        if path == "/no-type":
            return send(h, 200, _html("Untyped", "<p>no content type</p>"), ctype=None, head=head)
        if path == "/links.html":
            return send(h, 200, self._links_page(), head=head)
        if path == "/base.html":
            head_html = '<base href="/docs/">'
            body = '<a href="page-0.html">zero</a> <a href="../blog/page-1.html">one</a>'
            return send(h, 200, _html("Base", body, head_html), head=head)
        if path == "/trickle":
            return self._trickle(h, head)
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            return send(h, code, _html(f"Status {code}", f"<p>{code}</p>"), head=head)
        return send(h, 404, _html("Not found", "<p>nothing here</p>"), head=head)

    def _stream_big(self, h: _Handler, path: str, chunked: bool, head: bool) -> None:
        state: dict[str, int | bool] = {"sent": 0, "done": False, "aborted": False}
        self.streams[path] = state
        h.send_response(200)
        h.send_header("Content-Type", "text/html; charset=utf-8")
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Length", str(self.big_bytes))
        h.end_headers()
        if head:
            return
        block = (b"<p>" + b"big page filler text " * 40 + b"</p>\n") * (self.big_chunk // 844 + 1)
        try:
            while state["sent"] < self.big_bytes and not self._stopping.is_set():
                piece = block[: min(self.big_chunk, self.big_bytes - int(state["sent"]))]
                if chunked:
                    h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                else:
                    h.wfile.write(piece)
                h.wfile.flush()
                state["sent"] = int(state["sent"]) + len(piece)
            if chunked:
                h.wfile.write(b"0\r\n\r\n")
            state["done"] = True
        except OSError:
            state["aborted"] = True
            h.close_connection = True

    def _trickle(self, h: _Handler, head: bool) -> None:
        state: dict[str, int | bool] = {"sent": 0, "done": False, "aborted": False}
        self.streams["/trickle"] = state
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", str(self.trickle_bytes))
        h.end_headers()
        if head:
            return
        try:
            while state["sent"] < self.trickle_bytes and not self._stopping.is_set():
                h.wfile.write(b"x")
                h.wfile.flush()
                state["sent"] = int(state["sent"]) + 1
                self._stopping.wait(self.trickle_interval_s)
            state["done"] = True
        except OSError:
            state["aborted"] = True
            h.close_connection = True
