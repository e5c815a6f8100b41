"""Compare HTML main-text extractors on the same pages: speed and simple quality proxies.

Usage::

    python -m bench.extractors --html-dir /usr/share/doc/python3-doc/html [--limit 500]

Why: the ``ingest`` and ``ingest_warc`` stages extract text with resiliparse; this measures the
choice against trafilatura (``pip install trafilatura``; it is not a project dependency) on
real pages. Python's HTML documentation (Debian package python3-doc) is a Sphinx site: every
page has its content in ``<div role="main">`` and the same boilerplate around it (navigation
bars, a sidebar with "Previous topic", "This Page", "Report a Bug", "Show Source", a footer),
which gives a reference without hand labels:

* ``first <p>``: pages whose first paragraph of the main content (8 words or more) appears in
  the extracted text (compared on lower-case words, so spacing and punctuation do not matter);
* ``para recall``: the same for every such paragraph, averaged over pages;
* ``boilerplate``: pages where a sidebar or footer marker ("Previous topic", "Report a Bug",
  "Show Source", "Last updated on", ...) that is on the page leaked into the text;
* ``chars / main``: extracted characters over the characters of the main ``<div>``'s text.

Pages are an even spread over all ``*.html`` files (sorted), so ``--limit`` samples every part
of the site. Times are per-page extraction calls on one core, on pages already in memory.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

BOILERPLATE_MARKERS = (
    "Previous topic",
    "Next topic",
    "This Page",
    "Report a Bug",
    "Show Source",
    "Last updated on",
    "Created using",
    "Found a bug",
)
MIN_PARAGRAPH_WORDS = 8
_NON_WORD = re.compile(r"\W+")


def words(text: str) -> str:
    return _NON_WORD.sub(" ", text).lower().strip()


@dataclass
class Page:
    path: Path
    html: str
    paragraphs: list[str]  # normalized main-content paragraphs, in order
    main_chars: int
    markers: list[str]  # boilerplate markers present on the page (outside the main content)


@dataclass
class Result:
    name: str
    seconds: float = 0.0
    chars: list[int] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    first_p: list[bool] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    leaked: list[bool] = field(default_factory=list)
    empty: int = 0
    errors: int = 0


def load_pages(html_dir: Path, limit: int) -> list[Page]:
    from lxml import html as lxml_html

    files = sorted(p for p in html_dir.rglob("*.html") if p.is_file())
    if limit and len(files) > limit:
        files = [files[i * len(files) // limit] for i in range(limit)]
    pages = []
    for path in files:
        raw = path.read_text(encoding="utf-8", errors="replace")
        tree = lxml_html.fromstring(raw)
        main = tree.xpath('//*[@role="main"]')
        if not main:
            continue
        paragraphs = [words(" ".join(p.itertext())) for p in main[0].iter("p")]
        paragraphs = [p for p in paragraphs if len(p.split()) >= MIN_PARAGRAPH_WORDS]
        outside = " ".join(
            " ".join(el.itertext()) for el in tree.xpath('//div[contains(@class,"sphinxsidebar") or @class="footer"]')
        )
        markers = [m for m in BOILERPLATE_MARKERS if m in outside and m not in " ".join(main[0].itertext())]
        main_text = re.sub(r"\s+", " ", " ".join(main[0].itertext())).strip()
        pages.append(Page(path, raw, paragraphs, len(main_text), markers))
    return pages


def extractors() -> dict[str, Callable[[str], str]]:
    from pipelines.ingest import html_to_text

    found: dict[str, Callable[[str], str]] = {
        "resiliparse (main_content, as in ingest)": lambda html: html_to_text(html, main_content=True)[0],
        "resiliparse (whole page)": lambda html: html_to_text(html, main_content=False)[0],
    }
    try:
        import trafilatura
    except ImportError:
        print("trafilatura is not installed (pip install trafilatura): measuring resiliparse only", file=sys.stderr)
        return found
    found["trafilatura (default)"] = lambda html: trafilatura.extract(html, include_comments=False) or ""
    found["trafilatura (fast)"] = lambda html: trafilatura.extract(html, include_comments=False, fast=True) or ""
    return found


def measure(name: str, extract: Callable[[str], str], pages: list[Page]) -> Result:
    result = Result(name)
    for page in pages[:5]:  # warm-up: imports, lazy initialisation
        extract(page.html)
    for page in pages:
        start = time.perf_counter()
        try:
            text = extract(page.html)
        except Exception:  # noqa: BLE001 - an extractor failing on a page is a result, not a crash
            result.errors += 1
            text = ""
        result.seconds += time.perf_counter() - start
        normalized = words(text)
        result.chars.append(len(text))
        result.ratio.append(len(re.sub(r"\s+", " ", text).strip()) / max(page.main_chars, 1))
        result.empty += not normalized
        if page.paragraphs:
            result.first_p.append(page.paragraphs[0] in normalized)
            result.recall.append(sum(p in normalized for p in page.paragraphs) / len(page.paragraphs))
        if page.markers:
            result.leaked.append(any(m in text for m in page.markers))
    return result


def pct(values: list[bool] | list[float]) -> str:
    return f"{100 * statistics.fmean(values):.1f}%" if values else "n/a"


def table(results: list[Result], pages: list[Page]) -> str:
    lines = [
        "| extractor | pages/s | first <p> | para recall | boilerplate | mean chars | chars / main | empty | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rate = len(pages) / r.seconds if r.seconds else float("inf")
        lines.append(
            f"| {r.name} | {rate:,.1f} | {pct(r.first_p)} | {pct(r.recall)} | {pct(r.leaked)} | "
            f"{statistics.fmean(r.chars):,.0f} | {statistics.median(r.ratio):.2f} | {r.empty} | {r.errors} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html-dir", type=Path, default=Path("/usr/share/doc/python3-doc/html"))
    parser.add_argument("--limit", type=int, default=500, help="pages to sample (0: all)")
    parser.add_argument("--only", action="append", default=[], help="run only extractors whose name contains this")
    args = parser.parse_args(argv)
    if not args.html_dir.is_dir():
        parser.error(f"{args.html_dir}: not a directory")
    pages = load_pages(args.html_dir, args.limit)
    if not pages:
        parser.error(f"{args.html_dir}: no HTML pages with a role=main element")
    size = sum(len(p.html.encode()) for p in pages)
    print(
        f"{len(pages)} pages ({size / 1e6:.1f} MB) from {args.html_dir}; "
        f"{sum(len(p.paragraphs) for p in pages)} main-content paragraphs of {MIN_PARAGRAPH_WORDS}+ words; "
        f"{sum(bool(p.markers) for p in pages)} pages with boilerplate markers\n",
        file=sys.stderr,
    )
    results = []
    for name, extract in extractors().items():
        if args.only and not any(o in name for o in args.only):
            continue
        results.append(measure(name, extract, pages))
        print(f"  {name}: {results[-1].seconds:.1f} s", file=sys.stderr)
    print(table(results, pages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
