"""Build a benchmark WARC from a directory of HTML pages (default: Python's HTML documentation).

    python -m bench.make_warc --out /tmp/corpusforge-bench/warc [--html-dir DIR] [--files 4]

Each page becomes a request + response record pair (gzip, one member per record, as Common
Crawl writes them), spread over ``--files`` files.
"""

from __future__ import annotations

import argparse
from io import BytesIO
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

DEFAULT_HTML = Path("/usr/share/doc/python3-doc/html")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--html-dir", type=Path, default=DEFAULT_HTML)
    parser.add_argument("--files", type=int, default=4)
    args = parser.parse_args()
    pages = sorted(p for p in args.html_dir.rglob("*.html") if p.is_file())
    if not pages:
        raise SystemExit(f"no HTML pages under {args.html_dir}")
    args.out.mkdir(parents=True, exist_ok=True)
    handles = [open(args.out / f"bench-{i:03d}.warc.gz", "wb") for i in range(args.files)]
    writers = [WARCWriter(h, gzip=True) for h in handles]
    for index, page in enumerate(pages):
        writer = writers[index % len(writers)]
        url = f"https://docs.example.org/{page.relative_to(args.html_dir)}"
        body = page.read_bytes()
        headers = StatusAndHeaders(
            "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))], protocol="HTTP/1.1"
        )
        request = StatusAndHeaders(f"GET /{page.relative_to(args.html_dir)} HTTP/1.1", [("Host", "docs.example.org")], is_http_request=True)
        writer.write_record(writer.create_warc_record(url, "request", payload=BytesIO(b""), http_headers=request))
        writer.write_record(writer.create_warc_record(url, "response", payload=BytesIO(body), http_headers=headers))
    for handle in handles:
        handle.close()
    print(f"{len(pages)} pages -> {args.files} WARC files in {args.out}")


if __name__ == "__main__":
    main()
