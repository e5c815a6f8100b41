"""The WARC reader in plain Python: good records, charsets, and every kind of damaged input.

WARC files are written with warcio's WARCWriter; damaged ones are made by byte surgery on the
written records (cut gzip members, rewritten Content-Length, bombs, junk).
"""

from __future__ import annotations

import gzip
import random
import re
import time
import tracemalloc
import zlib
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipelines.schema import BYTES_IN, DROP_DETAIL, DROP_REASON, WORKING_SCHEMA, document_id
from pipelines.warc import WarcIngestConfig, decode_payload, list_warc_files, read_warc

MiB = 1024 * 1024
DATE = "2024-03-01T12:00:00Z"

ARTICLE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
<nav><a href="/">Home</a> | <a href="/blog">Blog</a> | <a href="/about">About</a></nav>
<main><article>
<h1>{title}</h1>
<p>{marker} Most services never need to touch the garbage collector. When latency spikes line
up with collections, though, a few settings make a large difference: the size of the young
generation, the pause-time goal, and the number of concurrent marking threads.</p>
<p>Start by measuring. Enable the collector's own logs, run a realistic load for an hour, and
look at the distribution of pause times rather than the average, which hides the long tail.</p>
</article></main>
<footer>Copyright 2024 Example Engineering. All rights reserved.</footer>
</body></html>
"""

CHINESE = (
    "北京是中华人民共和国的首都，也是全国的政治、文化和国际交往中心。北京有三千多年的建城史和八百多年的"
    "建都史，拥有众多名胜古迹，如故宫、天坛、颐和园和长城。每年都有数以百万计的游客来到这里参观，品尝烤鸭，游览胡同。"
)
JAPANESE = (
    "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。東京には多くの美術館や博物館があり、"
    "毎年たくさんの観光客が訪れます。今日の天気は晴れのち曇りで、午後から雨が降るでしょう。"
)
RUSSIAN = (
    "Москва является столицей Российской Федерации и крупнейшим городом страны. Город расположен на реке "
    "Москве в центре Восточно-Европейской равнины. В Москве находятся Кремль, Красная площадь и Большой театр."
)
LANGUAGES = {  # codec -> (title, text)
    "gbk": ("北京简介", CHINESE),
    "shift_jis": ("東京の天気", JAPANESE),
    "cp1251": ("Москва", RUSSIAN),
}


# ----------------------------------------------------------------------------------------------
# Building WARC files


def article(n: int) -> bytes:
    return ARTICLE.format(title=f"Article {n}", marker=f"MARKER-{n}").encode()


def record_id(n: int) -> str:
    return f"<urn:uuid:00000000-0000-0000-0000-{n:012d}>"


def response(
    n: int,
    body: bytes | None = None,
    content_type: str | None = "text/html; charset=utf-8",
    status: str = "200 OK",
    http_headers: list[tuple[str, str]] | None = None,
    url: str | None = None,
) -> bytes:
    """One uncompressed WARC response record written by warcio (fixed record id and date)."""
    body = article(n) if body is None else body
    headers = [("Content-Type", content_type)] if content_type else []
    headers += http_headers or []
    writer = WARCWriter(out := BytesIO(), gzip=False)
    record = writer.create_warc_record(
        url or f"https://example.test/page/{n}",
        "response",
        payload=BytesIO(body),
        http_headers=StatusAndHeaders(status, headers, protocol="HTTP/1.1"),
        warc_headers_dict={"WARC-Date": DATE, "WARC-Record-ID": record_id(n)},
    )
    writer.write_record(record)
    return out.getvalue()


def other_record(kind: str, n: int) -> bytes:
    writer = WARCWriter(out := BytesIO(), gzip=False)
    if kind == "warcinfo":
        record = writer.create_warcinfo_record("test.warc.gz", {"software": "tests", "format": "WARC/1.0"})
    elif kind == "request":
        http = StatusAndHeaders(f"GET /page/{n} HTTP/1.1", [("Host", "example.test")], is_http_request=True)
        record = writer.create_warc_record(
            f"https://example.test/page/{n}", "request", payload=BytesIO(b""), http_headers=http
        )
    else:
        record = writer.create_warc_record(
            f"https://example.test/page/{n}", "metadata", payload=BytesIO(b"fetchTimeMs: 12\r\n")
        )
    writer.write_record(record)
    return out.getvalue()


def write_warc(path: Path, records: list[bytes], gz: bool) -> list[int]:
    """Write records (one gzip member each for .gz, as warcio and Common Crawl do); their offsets."""
    offsets, pos = [], 0
    with open(path, "wb") as out:
        for raw in records:
            data = gzip.compress(raw, mtime=0) if gz else raw
            offsets.append(pos)
            out.write(data)
            pos += len(data)
    return offsets


def file_dict(path: Path) -> dict[str, Any]:
    return {"path": str(path), "rel": path.name, "format": "warc", "size": path.stat().st_size}


def rows_of(path: Path, config: WarcIngestConfig | None = None) -> list[dict]:
    rows = list(read_warc(file_dict(path), config or WarcIngestConfig()))
    pa.RecordBatch.from_pylist(rows, schema=WORKING_SCHEMA)  # every row fits the working schema
    return rows


def rows_and_peak_memory(path: Path) -> tuple[list[dict], int]:
    """The rows, and the peak of Python allocations while reading them (schema check outside:
    pyarrow's first conversion allocates ~25 MB of its own)."""
    tracemalloc.start()
    try:
        rows = list(read_warc(file_dict(path), WarcIngestConfig()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    pa.RecordBatch.from_pylist(rows, schema=WORKING_SCHEMA)
    return rows, peak


def kept(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r[DROP_REASON] is None]


def rejected(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r[DROP_REASON] is not None]


def markers(rows: list[dict]) -> list[int]:
    """Which article numbers survived, from their MARKER-n text."""
    return [int(n) for row in kept(rows) for n in re.findall(r"MARKER-(\d+)", row["text"])]


def name(gz: bool) -> str:
    return "crawl.warc.gz" if gz else "crawl.warc"


def with_content_length(raw: bytes, delta: int | None = None, value: str | None = None) -> bytes:
    """The record with its WARC Content-Length header changed (the block itself unchanged)."""
    head, sep, block = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith(b"content-length:"):
            old = int(line.split(b":", 1)[1])
            new = value if value is not None else str(old + (delta or 0))
            lines[i] = b"Content-Length: " + new.encode()
    return b"\r\n".join(lines) + sep + block


# ----------------------------------------------------------------------------------------------
# Good files


def test_good_records_written_by_warcio_gzip(tmp_path: Path) -> None:
    """A file written end to end by WARCWriter(gzip=True): only responses become rows."""
    path = tmp_path / "crawl.warc.gz"
    offsets = []
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        writer.write_record(writer.create_warcinfo_record("crawl.warc.gz", {"software": "tests"}))
        for n in (1, 2):
            url = f"https://example.test/page/{n}"
            request = StatusAndHeaders(f"GET /page/{n} HTTP/1.1", [("Host", "example.test")], is_http_request=True)
            writer.write_record(writer.create_warc_record(url, "request", payload=BytesIO(b""), http_headers=request))
            offsets.append(out.tell())
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            writer.write_record(
                writer.create_warc_record(
                    url,
                    "response",
                    payload=BytesIO(article(n)),
                    http_headers=http,
                    warc_headers_dict={"WARC-Date": DATE, "WARC-Record-ID": record_id(n)},
                )
            )
            writer.write_record(writer.create_warc_record(url, "metadata", payload=BytesIO(b"fetchTimeMs: 12\r\n")))

    rows = rows_of(path)
    assert len(rows) == 2 and not rejected(rows)
    for n, (row, offset) in enumerate(zip(rows, offsets, strict=True), start=1):
        assert row["url"] == f"https://example.test/page/{n}"
        assert row["title"] == f"Article {n}"
        assert f"MARKER-{n}" in row["text"] and "pause-time goal" in row["text"]
        assert "All rights reserved" not in row["text"]  # boilerplate is not main content
        assert row["fetched_at"] == datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
        assert row["source"] == "warc"
        assert row["id"] == document_id("warc", f"https://example.test/page/{n}@{record_id(n)}")
        assert row[BYTES_IN] == len(article(n))
        assert row["metadata"] == {
            "warc_file": "crawl.warc.gz",
            "warc_record_id": record_id(n),
            "warc_offset": str(offset),
            "http_status": "200",
            "content_type": "text/html",
            "charset": "utf-8",
            "charset_source": "header",
        }
    # Stable ids: a second read gives the same rows.
    assert [r["id"] for r in rows_of(path)] == [r["id"] for r in rows]


@pytest.mark.parametrize("gz", [False, True])
def test_plain_text_and_skipped_record_types(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / name(gz)
    records = [
        other_record("warcinfo", 0),
        other_record("request", 1),
        response(1),
        other_record("metadata", 1),
        response(2, body=b"Just a plain text file.\nSecond line.\n", content_type="text/plain"),
    ]
    offsets = write_warc(path, records, gz)
    rows = rows_of(path)
    assert [r[DROP_REASON] for r in rows] == [None, None]
    assert rows[0]["metadata"]["warc_offset"] == str(offsets[2])
    assert rows[1]["text"] == "Just a plain text file.\nSecond line."
    assert rows[1]["title"] is None
    assert rows[1]["metadata"]["content_type"] == "text/plain"


def test_list_warc_files(tmp_path: Path) -> None:
    (tmp_path / "a.warc.gz").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.warc").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    files, skipped = list_warc_files([tmp_path])
    assert [f["rel"] for f in files] == ["a.warc.gz", "sub/b.warc"]
    assert {f["format"] for f in files} == {"warc"}
    assert skipped == {".txt": 1}


# ----------------------------------------------------------------------------------------------
# HTTP-level rejects


@pytest.mark.parametrize("gz", [False, True])
def test_status_content_type_binary_and_empty(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / name(gz)
    rng = bytes((i * 7919 + 13) % 251 for i in range(20_000))  # "random" bytes, NULs included
    records = [
        response(1),
        response(2, status="404 Not Found"),
        response(3, body=b"\x89PNG\r\n\x1a\n" + rng, content_type="image/png"),
        response(4, body=rng, content_type="text/html"),  # binary served as text/html
        response(5, body=b"<html><body><p>before\x00after</p></body></html>"),  # NUL in the sniff window
        response(6, body=b""),  # HTTP headers, no body
        response(7, body=b"<html><body><nav><a href='/'>Home</a></nav></body></html>"),  # nothing but nav
        response(8, body=b"not http at all", content_type=None, status="garbage"),
        response(9),
    ]
    offsets = write_warc(path, records, gz)
    rows = rows_of(path)
    reasons = [r[DROP_REASON] for r in rows]
    assert reasons == [
        None,
        "http_status",
        "content_type",
        "binary_content",
        "binary_content",
        "empty_text",
        "empty_text",
        "malformed_http",
        None,
    ]
    for row, offset in zip(rows[1:-1], offsets[1:-1], strict=True):
        assert row[DROP_DETAIL].startswith(f"{path} at offset {offset}: "), row[DROP_DETAIL]
        assert row["url"].startswith("https://example.test/page/")
    assert "HTTP 404" in rows[1][DROP_DETAIL]
    assert rows[1]["metadata"]["http_status"] == "404"
    assert "image/png" in rows[2][DROP_DETAIL]


def test_nul_bytes_after_the_sniff_window_are_removed(tmp_path: Path) -> None:
    body = b"<html><body><p>" + b"word " * 3000 + b"NUL\x00HERE</p></body></html>"
    path = tmp_path / "nul.warc"
    write_warc(path, [response(1, body=body)], gz=False)
    [row] = rows_of(path)
    assert row[DROP_REASON] is None
    assert "\x00" not in row["text"] and "HERE" in row["text"]


def test_empty_response_record(tmp_path: Path) -> None:
    writer = WARCWriter(out := BytesIO(), gzip=False)
    writer.write_record(
        writer.create_warc_record(
            "https://example.test/empty",
            "response",
            payload=BytesIO(b""),
            length=0,
            warc_headers_dict={"WARC-Record-ID": record_id(5)},
        )
    )
    path = tmp_path / "empty.warc"
    write_warc(path, [response(1), out.getvalue(), response(2)], gz=False)
    rows = rows_of(path)
    assert [r[DROP_REASON] for r in rows] == [None, "empty_text", None]
    assert "empty response record" in rows[1][DROP_DETAIL]


def test_content_and_transfer_encodings(tmp_path: Path) -> None:
    import brotli

    page = article(1)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(page[i : i + 300]), page[i : i + 300]) for i in range(0, len(page), 300))
    chunked += b"0\r\n\r\n"
    records = [
        response(1, body=gzip.compress(page), http_headers=[("Content-Encoding", "gzip")]),
        response(2, body=zlib.compress(article(2)), http_headers=[("Content-Encoding", "deflate")]),
        response(3, body=brotli.compress(article(3)), http_headers=[("Content-Encoding", "br")]),
        response(4, body=chunked.replace(b"MARKER-1", b"MARKER-4"), http_headers=[("Transfer-Encoding", "chunked")]),
        # header says gzip, body stored decoded (common in crawls): read as is
        response(5, body=article(5), http_headers=[("Content-Encoding", "gzip")]),
    ]
    path = tmp_path / "enc.warc.gz"
    write_warc(path, records, gz=True)
    rows = rows_of(path)
    assert not rejected(rows)
    assert markers(rows) == [1, 2, 3, 4, 5]


# ----------------------------------------------------------------------------------------------
# Charsets


def page_in(codec: str, meta: bool) -> bytes:
    title, text = LANGUAGES[codec]
    head = f'<meta charset="{codec}">' if meta else ""
    html = f"<html><head>{head}<title>{title}</title></head><body><p>{text}</p><p>{text[:60]}</p></body></html>"
    return html.encode(codec)


CHARSET_CASES = [
    # codec, Content-Type charset, meta tag?, expected charset_source
    ("gbk", "gbk", False, "header"),
    ("gbk", None, False, "detected"),
    ("gbk", None, True, "meta"),
    ("gbk", "utf-8", False, "detected"),  # the header lies
    ("gbk", "utf-8", True, "meta"),  # the header lies, the meta tag is right
    ("shift_jis", "shift_jis", False, "header"),
    ("shift_jis", None, False, "detected"),
    ("shift_jis", "utf-8", False, "detected"),
    ("shift_jis", "windows-1251", False, "detected"),  # wrong single-byte label
    ("cp1251", "windows-1251", False, "header"),
    ("cp1251", None, False, "detected"),
    ("cp1251", "utf-8", False, "detected"),
    ("cp1251", "iso-8859-1", False, "detected"),  # the web's default label, wrong
]


@pytest.mark.parametrize("codec, header, meta, source", CHARSET_CASES)
def test_charsets(tmp_path: Path, codec: str, header: str | None, meta: bool, source: str) -> None:
    content_type = "text/html" + (f"; charset={header}" if header else "")
    path = tmp_path / "cs.warc.gz"
    write_warc(path, [response(1, body=page_in(codec, meta), content_type=content_type)], gz=True)
    [row] = rows_of(path)
    title, text = LANGUAGES[codec]
    assert row[DROP_REASON] is None
    assert text[:40] in row["text"]
    assert row["title"] == title
    assert row["metadata"]["charset_source"] == source
    assert row["metadata"]["charset"] == {"gbk": "gb18030", "shift_jis": "cp932", "cp1251": "cp1251"}[codec]


def test_charset_policy_details() -> None:
    utf8 = "Grüße aus Köln".encode()
    assert decode_payload(utf8, "iso-8859-1", False) == ("Grüße aus Köln", "utf-8", "utf-8")  # valid UTF-8 wins
    assert decode_payload(utf8, "utf-8", False)[2] == "header"
    french = "À la fenêtre, un élève très âgé lisait près de l'église. " * 3
    assert decode_payload(french.encode("cp1252"), "iso-8859-1", False) == (french, "cp1252", "header")
    assert decode_payload(b"\xef\xbb\xbfhello", None, False) == ("hello", "utf-8", "bom")
    text, codec, source = decode_payload("Ошибка".encode("utf-16-le").join([b"\xff\xfe", b""]), None, False)
    assert (text, source) == ("Ошибка", "bom")


# ----------------------------------------------------------------------------------------------
# Damaged gzip


def test_truncated_last_gzip_member_keeps_the_records_before(tmp_path: Path) -> None:
    path = tmp_path / "cut.warc.gz"
    offsets = write_warc(path, [response(n) for n in range(1, 5)], gz=True)
    data = path.read_bytes()
    path.write_bytes(data[: offsets[3] + (len(data) - offsets[3]) // 2])
    rows = rows_of(path)
    assert markers(rows) == [1, 2, 3]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] == "truncated_gzip"
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {offsets[3]}: ")
    assert "no record after it" in bad[DROP_DETAIL]


def test_gzip_member_cut_in_half_in_the_middle_resyncs(tmp_path: Path) -> None:
    path = tmp_path / "hole.warc.gz"
    records = [other_record("warcinfo", 0)] + [response(n) for n in range(1, 7)]
    offsets = write_warc(path, records, gz=True)
    data = path.read_bytes()
    start, end = offsets[3], offsets[4]  # the member of response 3
    path.write_bytes(data[: start + (end - start) // 2] + data[end:])
    rows = rows_of(path)
    assert markers(rows) == [1, 2, 4, 5, 6]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] in ("corrupt_gzip", "truncated_gzip")
    resumed = start + (end - start) // 2
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {start}: ")
    assert f"resumed at offset {resumed}" in bad[DROP_DETAIL]
    assert "reading the record" not in bad[DROP_DETAIL]  # found after record 2, which is kept
    # Offsets after the damage are still real file offsets.
    assert kept(rows)[2]["metadata"]["warc_offset"] == str(resumed)


def test_junk_between_gzip_members(tmp_path: Path) -> None:
    path = tmp_path / "junk.warc.gz"
    offsets = write_warc(path, [response(1), response(2)], gz=True)
    data = path.read_bytes()
    path.write_bytes(data[: offsets[1]] + b"\x00garbage\x1f\x8b\x08 not a member" + data[offsets[1] :])
    rows = rows_of(path)
    assert markers(rows) == [1, 2]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] == "corrupt_gzip"
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {offsets[1]}: ")


def test_whole_file_one_gzip_member(tmp_path: Path) -> None:
    """Not one member per record (invalid for random access, still readable)."""
    path = tmp_path / "single.warc.gz"
    path.write_bytes(gzip.compress(b"".join(response(n) for n in range(1, 4))))
    rows = rows_of(path)
    assert markers(rows) == [1, 2, 3]
    assert rows[1]["metadata"]["warc_offset"] == "0"
    assert int(rows[1]["metadata"]["warc_offset_in_member"]) == len(response(1))


@pytest.mark.parametrize("gz", [False, True])
def test_random_damage_never_loses_the_untouched_records(tmp_path: Path, gz: bool) -> None:
    """Cut, delete, flip or insert bytes anywhere: no exception, and every record whose bytes
    were not touched is kept (a flipped byte inside a record may or may not lose that one)."""
    rng = random.Random(20240301 + gz)
    records = [other_record("warcinfo", 0)] + [response(n) for n in range(1, 9)]
    path = tmp_path / name(gz)
    offsets = write_warc(path, records, gz)
    data = path.read_bytes()
    spans = list(zip(offsets, offsets[1:] + [len(data)], strict=True))[1:]  # the responses 1..8
    for _ in range(60):
        at = rng.randrange(len(data))
        op = rng.choice(["cut", "delete", "flip", "insert"])
        if op == "cut":
            damaged, hit = data[:at], (at, len(data))
        elif op == "delete":
            end = min(len(data), at + rng.choice([1, 40, 700, 3000]))
            damaged, hit = data[:at] + data[end:], (at, end)
        elif op == "flip":
            damaged, hit = data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :], (at, at + 1)
        else:
            junk = rng.choice([b"\x1f\x8b\x08\x00", b"\r\nWARC/1.0\r\n", b"\x00" * 9, b"junk"])
            damaged, hit = data[:at] + junk + data[at:], (at, at + 1)
        path.write_bytes(damaged)
        rows = rows_of(path)
        untouched = {n for n, (start, end) in enumerate(spans, 1) if end <= hit[0] or (op != "cut" and start >= hit[1])}
        assert untouched <= set(markers(rows)), (op, hit, [(r[DROP_REASON], r[DROP_DETAIL]) for r in rejected(rows)])
        for row in rejected(rows):
            assert row[DROP_DETAIL].startswith((f"{path} at offset ", f"{path}: ")), row[DROP_DETAIL]


# ----------------------------------------------------------------------------------------------
# Content-Length that lies


@pytest.mark.parametrize("gz", [False, True])
def test_content_length_too_short(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / name(gz)
    records = [response(n) for n in range(1, 5)]
    records[1] = with_content_length(records[1], delta=-50)
    offsets = write_warc(path, records, gz)
    rows = rows_of(path)
    assert markers(rows) == [1, 3, 4]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] == "bad_content_length"
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {offsets[1]}: ")
    assert f"resumed at offset {offsets[2]}" in bad[DROP_DETAIL]


@pytest.mark.parametrize("gz", [False, True])
def test_content_length_too_long_recovers_the_swallowed_records(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / name(gz)
    records = [response(n) for n in range(1, 6)]
    records[1] = with_content_length(records[1], delta=len(records[2]) + 100)  # ends inside record 4
    offsets = write_warc(path, records, gz)
    rows = rows_of(path)
    assert markers(rows) == [1, 3, 4, 5]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] == "bad_content_length"
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {offsets[1]}: ")


@pytest.mark.parametrize("gz", [False, True])
def test_content_length_past_the_end_of_file(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / name(gz)
    records = [response(n) for n in range(1, 5)]
    records[1] = with_content_length(records[1], delta=10 * MiB)
    offsets = write_warc(path, records, gz)
    rows = rows_of(path)
    assert markers(rows) == [1, 3, 4]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] == "truncated_record"
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {offsets[1]}: ")


@pytest.mark.parametrize("value", ["", "abc", "-5"])
def test_invalid_content_length(tmp_path: Path, value: str) -> None:
    path = tmp_path / "cl.warc"
    records = [response(1), with_content_length(response(2), value=value), response(3)]
    offsets = write_warc(path, records, gz=False)
    rows = rows_of(path)
    assert markers(rows) == [1, 3]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] in ("malformed_record", "bad_content_length")
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {offsets[1]}: ")


def test_truncated_plain_file_and_garbage_between_records(tmp_path: Path) -> None:
    path = tmp_path / "cut.warc"
    records = [response(1), b"this line is not a WARC header\r\n\r\n", response(2), response(3)]
    offsets = write_warc(path, records, gz=False)
    data = path.read_bytes()
    path.write_bytes(data[: offsets[3] + 400])  # record 3 cut in its payload
    rows = rows_of(path)
    assert markers(rows) == [1, 2]  # record 1 ends with its blank lines: the junk after it is the damage
    assert [(r[DROP_REASON], r[DROP_DETAIL].split(":")[0]) for r in rejected(rows)] == [
        ("malformed_record", f"{path} at offset {offsets[1]}"),
        ("truncated_record", f"{path} at offset {offsets[3]}"),
    ]
    assert f"resumed at offset {offsets[2]}" in rejected(rows)[0][DROP_DETAIL]


@pytest.mark.parametrize(
    "junk",
    [
        b"WARC/1.0\r\n" + b"X-Junk: y\r\n" * 200_000 + b"\r\n",  # 2.2 MB of header lines
        b"WARC/1.0\r\nWARC-Target-URI: https://x.test/" + b"a" * (3 * MiB) + b"\r\n\r\n",  # one 3 MB line
    ],
    ids=["many-lines", "long-line"],
)
def test_huge_header_is_rejected_quickly(tmp_path: Path, junk: bytes) -> None:
    path = tmp_path / "headers.warc"
    offsets = write_warc(path, [response(1), junk, response(2)], gz=False)
    started = time.perf_counter()
    rows, peak = rows_and_peak_memory(path)
    assert time.perf_counter() - started < 5
    assert markers(rows) == [1, 2]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] == "malformed_record"
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {offsets[1]}: ")
    assert peak < 16 * MiB, peak


# ----------------------------------------------------------------------------------------------
# Size limits and bombs


def gzip_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(size // MiB)]
    return b"".join(parts) + compressor.flush()


@pytest.mark.parametrize("gz", [False, True])
def test_60_mb_single_line_page_is_skipped_in_bounded_memory(tmp_path: Path, gz: bool) -> None:
    line = b"<html><body><p>" + b"lorem ipsum " * (60 * MiB // 12) + b"</p></body></html>"
    path = tmp_path / name(gz)
    offsets = write_warc(path, [response(1), response(2, body=line), response(3)], gz)
    del line
    rows, peak = rows_and_peak_memory(path)
    assert markers(rows) == [1, 3]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] == "record_too_large"
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {offsets[1]}: ")
    assert bad[BYTES_IN] > 60 * MiB
    assert peak < 16 * MiB, peak  # the 10 MiB cap plus buffers, never the whole page


def test_gzip_bomb_in_http_payload(tmp_path: Path) -> None:
    bomb = gzip_zeros(256 * MiB)  # ~250 KB inflating to 256 MiB
    path = tmp_path / "bomb.warc.gz"
    offsets = write_warc(
        path, [response(1), response(2, body=bomb, http_headers=[("Content-Encoding", "gzip")]), response(3)], gz=True
    )
    rows, peak = rows_and_peak_memory(path)
    assert markers(rows) == [1, 3]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] == "record_too_large"
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {offsets[1]}: ")
    assert peak < 16 * MiB, peak


def bomb_member(n: int, payload_size: int) -> bytes:
    """A gzip member holding one response record with a huge run of spaces (compresses ~1000:1)."""
    head = response(n, body=b"")
    warc_head, _, http_head = head.partition(b"\r\n\r\n")
    http_head = http_head.removesuffix(b"\r\n\r\n")  # the record's end; the HTTP headers' blank line stays
    warc_head = with_content_length(warc_head + b"\r\n\r\n", value=str(len(http_head) + payload_size))
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(warc_head + http_head)]
    block = b"<p>" + b" " * (MiB - 3)
    parts += [compressor.compress(block) for _ in range(payload_size // MiB)]
    parts.append(compressor.compress(b"\r\n\r\n"))
    return b"".join(parts) + compressor.flush()


def test_huge_record_in_its_own_gzip_member(tmp_path: Path) -> None:
    path = tmp_path / "bomb.warc.gz"
    first, third = gzip.compress(response(1)), gzip.compress(response(3))
    bomb = bomb_member(2, 200 * MiB)
    path.write_bytes(first + bomb + third)
    rows, peak = rows_and_peak_memory(path)
    assert markers(rows) == [1, 3]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] == "record_too_large"
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {len(first)}: ")
    assert peak < 16 * MiB, peak

    # The same file under a smaller whole-file cap: the file is abandoned at the bomb.
    rows = rows_of(path, WarcIngestConfig(max_decompressed_bytes=64 * MiB))
    assert markers(rows) == [1]
    [bad] = rejected(rows)
    assert bad[DROP_REASON] == "decompression_limit"
    assert bad[DROP_DETAIL].startswith(f"{path} at offset {len(first)}: ")


def test_file_and_document_size_limits(tmp_path: Path) -> None:
    path = tmp_path / "big.warc"
    write_warc(path, [response(1), response(2)], gz=False)
    [row] = rows_of(path, WarcIngestConfig(max_file_bytes=100))
    assert row[DROP_REASON] == "file_too_large"
    rows = rows_of(path, WarcIngestConfig(max_doc_bytes=100))
    assert [r[DROP_REASON] for r in rows] == ["doc_too_large", "doc_too_large"]
    rows = rows_of(path, WarcIngestConfig(max_record_bytes=100))
    assert [r[DROP_REASON] for r in rows] == ["record_too_large", "record_too_large"]


# ----------------------------------------------------------------------------------------------
# Not WARC at all


@pytest.mark.parametrize(
    "filename, data",
    [
        ("notes.warc", b"Just some text that happens to have a .warc name.\n" * 100),
        ("notes.warc.gz", gzip.compress(b"<html>not a warc</html>" * 100)),
        ("empty.warc", b""),
        ("old.warc", b"filedesc://IAH-20080430204825-00000-blackbook.arc 0.0.0.0 20080430204825 text/plain 75\n"),
        ("random.warc.gz", b"\x1f\x8b" + bytes(range(256)) * 50),
    ],
)
def test_not_warc(tmp_path: Path, filename: str, data: bytes) -> None:
    path = tmp_path / filename
    path.write_bytes(data)
    [row] = rows_of(path)
    assert row[DROP_REASON] == "not_warc"
    assert row[DROP_DETAIL].startswith(f"{path}: ")
