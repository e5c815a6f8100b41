"""The ingest readers in plain Python: formats, encodings and every kind of bad record."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import StageInputError
from pipelines.ingest import IngestConfig, balance_files, list_input_files, read_file
from pipelines.schema import DROP_DETAIL, DROP_REASON, WORKING_SCHEMA
from tests.conftest import ARTICLE_HTML, JAPANESE_HTML, RUSSIAN_TEXT


def rows_of(path: Path, config: IngestConfig | None = None) -> list[dict]:
    config = config or IngestConfig()
    files, _ = list_input_files([path], config.formats)
    assert len(files) == 1, files
    rows = list(read_file(files[0], config))
    pa.RecordBatch.from_pylist(rows, schema=WORKING_SCHEMA)  # every row fits the working schema
    return rows


def kept(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r[DROP_REASON] is None]


def test_html_main_text_and_title(tmp_path: Path) -> None:
    page = tmp_path / "gc.html"
    page.write_text(ARTICLE_HTML)
    [row] = rows_of(page)
    assert row[DROP_REASON] is None
    assert row["title"] == "Tuning the garbage collector"
    assert "pause-time goal" in row["text"]
    assert "All rights reserved" not in row["text"]  # footer boilerplate is not main content
    assert row["url"] == page.as_uri()
    assert row["metadata"]["encoding"] == "utf-8"
    assert row["fetched_at"].tzinfo is not None


def test_charset_from_meta_tag_and_detection(tmp_path: Path) -> None:
    sjis = tmp_path / "tokyo.html"
    sjis.write_bytes(JAPANESE_HTML.encode("shift_jis"))
    [row] = rows_of(sjis)
    assert "東京は日本の首都" in row["text"]
    assert row["title"] == "東京の天気"

    # No charset declared anywhere: windows-1251 Russian must still be detected.
    ru = tmp_path / "ru.txt"
    ru.write_bytes(RUSSIAN_TEXT.encode("cp1251"))
    [row] = rows_of(ru)
    assert row["text"] == RUSSIAN_TEXT.strip("\n") or row["text"].startswith("Москва является столицей")
    assert row["metadata"]["encoding"].lower() in ("windows-1251", "cp1251")


def test_jsonl_bad_lines_are_counted_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "text": "First good record about rivers."}),
                "{broken",
                json.dumps({"text": "Second good record about tides."}),
                json.dumps({"no_text": True}),
                json.dumps({"text": ["not", "a", "string"]}),
            ]
        )
    )
    rows = rows_of(path)
    assert [r["text"] for r in kept(rows)] == ["First good record about rivers.", "Second good record about tides."]
    assert kept(rows)[0]["id"] == "a"  # an id in the record is kept as is
    dropped = {r[DROP_REASON]: r[DROP_DETAIL] for r in rows if r[DROP_REASON]}
    assert dropped["malformed_jsonl"].startswith(f"{path}:2: ")
    assert dropped["missing_text"].startswith(f"{path}:4: ")
    assert dropped["bad_text_type"] == f"{path}:5: 'text' is list, not a string"


def test_custom_keys_and_derived_ids_are_stable(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"body": "Text under another key.", "link": "https://e.test/1"}) + "\n")
    config = IngestConfig(text_key="body", url_key="link")
    first, second = rows_of(path, config), rows_of(path, config)
    assert first[0]["text"] == "Text under another key."
    assert first[0]["url"] == "https://e.test/1"
    assert first[0]["id"] == second[0]["id"] and len(first[0]["id"]) == 32
    other_source = rows_of(path, IngestConfig(text_key="body", source="other"))
    assert other_source[0]["id"] != first[0]["id"]


def test_binary_body_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "image.html"
    path.write_bytes(b"GIF89a\x01\x00\x01\x00\x00\xff\x00," + bytes(range(256)))
    [row] = rows_of(path)
    assert row[DROP_REASON] == "binary_content"
    assert str(path) in row[DROP_DETAIL]


def test_gzip_bomb_is_capped_and_earlier_records_kept(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write((json.dumps({"text": "A record before the bomb."}) + "\n").encode())
        handle.write(b" " * 5_000_000)  # compresses to a few KB
    assert path.stat().st_size < 50_000
    rows = rows_of(path, IngestConfig(max_decompressed_bytes=1_000_000))
    assert [r["text"] for r in kept(rows)] == ["A record before the bomb."]
    assert rows[-1][DROP_REASON] == "decompression_limit"
    assert str(path) in rows[-1][DROP_DETAIL]


def test_truncated_gzip_keeps_the_records_read(tmp_path: Path) -> None:
    whole = gzip.compress(
        "".join(json.dumps({"text": f"Record number {i} of a truncated file."}) + "\n" for i in range(2000)).encode()
    )
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    rows = rows_of(path)
    good = kept(rows)
    assert 0 < len(good) < 2000
    assert good[0]["text"] == "Record number 0 of a truncated file."
    assert rows[-1][DROP_REASON] == "truncated_gzip"


def test_size_limits(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("word " * 1000)
    assert rows_of(big, IngestConfig(max_file_bytes=100))[0][DROP_REASON] == "file_too_large"
    assert rows_of(big, IngestConfig(max_doc_bytes=100))[0][DROP_REASON] == "doc_too_large"
    line = tmp_path / "long.jsonl"
    line.write_text(json.dumps({"text": "x" * 500}) + "\n" + json.dumps({"text": "short"}) + "\n")
    rows = rows_of(line, IngestConfig(max_doc_bytes=100))
    assert [r[DROP_REASON] for r in rows] == ["doc_too_large", None]


def test_parquet_input_with_mapped_columns(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": ["one text", "two text"], "doc": ["d1", "d2"]}), path)
    rows = rows_of(path, IngestConfig(text_key="content", id_key="doc"))
    assert [(r["id"], r["text"]) for r in rows] == [("d1", "one text"), ("d2", "two text")]
    [missing] = rows_of(path)
    assert missing[DROP_REASON] == "missing_text" and "columns: content, doc" in missing[DROP_DETAIL]


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_text("this is plain text with a .parquet name")
    [row] = rows_of(path)
    assert row[DROP_REASON] == "read_error" and str(path) in row[DROP_DETAIL]


def test_listing_counts_unsupported_files(corpus: Path) -> None:
    files, skipped = list_input_files([corpus], ["text", "html", "jsonl", "parquet"])
    assert {Path(f["rel"]).name for f in files} >= {"gc.html", "records.jsonl", "more.jsonl.gz", "ru.txt"}
    assert skipped == {".png": 1}
    only_html, skipped_html = list_input_files([corpus], ["html"])
    assert len(only_html) == 2 and skipped_html[".jsonl"] == 1
    with pytest.raises(StageInputError, match="does-not-exist"):
        list_input_files([corpus / "does-not-exist"], ["text"])


def test_balance_files_spreads_sizes() -> None:
    files = [{"path": str(i), "size": size} for i, size in enumerate([100, 90, 10, 10, 10, 10, 5])]
    bins = balance_files(files, 2)
    totals = sorted(sum(f["size"] for f in b) for b in bins)
    assert totals == [115, 120]
    assert sorted(f["path"] for b in bins for f in b) == sorted(f["path"] for f in files)


def test_lines_are_the_same_however_the_bytes_are_chunked() -> None:
    import random

    from pipelines.ingest import LongLine, iter_lines

    rng = random.Random(0)
    for _ in range(500):
        data = bytes(rng.choice(b"ab\n") for _ in range(rng.randint(0, 40)))
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 5)))) if len(data) > 1 else []
        pieces = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)])] if data else []
        expected = data.split(b"\n")
        if expected and expected[-1] == b"":
            expected.pop()
        assert list(iter_lines(pieces)) == expected
        for limit in (0, 2, 5):  # a line over the limit comes back as its length, never whole
            limited = list(iter_lines(pieces, limit))
            assert limited == [LongLine(len(line)) if len(line) > limit else line for line in expected]
            assert all(isinstance(line, LongLine) == (len(whole) > limit) for line, whole in zip(limited, expected))
