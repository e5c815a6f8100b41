"""Fault injection, hostile inputs: a generated corpus of bad files and records, mixed with known
good ones, through whole builds; giant documents in bounded memory; a disk that fills up mid-write.

Everything is generated under tmp_path. Each bad input is expected to be counted by the stage
that meets it, in that stage's ``_stats.json`` (reason and count) and ``_rejects/`` (a detail
naming the file and the line, row or byte offset); each good record, found by a marker word that
only it contains, must reach the final corpus and the token shards.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import psutil
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.schema import DOCUMENT_SCHEMA, document_id
from pipelines.stage import REJECTS_DIR, STATS_FILE, SUCCESS_FILE, leftovers
from tests.test_warc_reader import gzip_zeros, other_record, record_id, response, with_content_length, write_warc

MiB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_STAGES = ["langid", "quality", "pii", "dedup-exact", "dedup-minhash"]

# ---------------------------------------------------------------------------------------------
# Good texts: every one distinct (the dedup stages must keep them all) and carrying a marker word.

_NOUNS = (
    "river harbour lantern orchard bridge furnace meadow library engine garden quarry cellar tunnel "
    "market vineyard workshop glacier canal chapel kitchen valley station mill forest island "
    "telescope violin bakery tower compass"
).split()
_VERBS = (
    "carried repaired painted measured crossed guarded cleaned lifted followed described opened "
    "visited counted planted watched built mapped sold moved finished"
).split()
_ADJECTIVES = (
    "old quiet narrow bright heavy distant wooden northern patient careful small green broken "
    "famous crowded empty ancient steep gentle modern"
).split()
_PEOPLE = (
    "The miller", "The captain", "A young teacher", "The old baker", "Two engineers", "The mayor",
    "A shepherd", "The carpenter", "Our neighbour", "The librarian", "A fisherman", "The nurse",
)
_TIMES = (
    "before dawn", "after the storm", "every spring", "in the long winter", "on market day",
    "late in the evening", "during the harvest", "at noon", "last autumn", "for many years",
)


def marker(tag: str) -> str:
    """The word that identifies one good record (letters only: no filter or tokenizer splits it)."""
    return "zqmark" + "".join(chr(ord("a") + int(c)) if c.isdigit() else c for c in tag.lower()) + "zq"


def english(tag: str, sentences: int = 9) -> str:
    """An English paragraph, different for every tag, with the tag's marker word in it."""
    rng = random.Random(tag)
    out = []
    for i in range(sentences):
        who = rng.choice(_PEOPLE)
        what = f"the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
        where = f"near the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
        out.append(f"{who} {rng.choice(_VERBS)} {what} {where} {rng.choice(_TIMES)}.")
        if i == sentences // 2:
            out.append(f"Everyone in town still remembers the word {marker(tag)} from that day.")
    return " ".join(out)


RUSSIAN = {
    "ru1": "Москва является столицей Российской Федерации и крупнейшим городом страны. Город расположен на "
    "реке Москве в центре Восточно-Европейской равнины. В Москве находятся Кремль, Красная площадь и "
    "Большой театр, а по вечерам на набережных гуляют тысячи жителей.",
    "ru2": "Байкал считается самым глубоким озером на планете. Его вода настолько прозрачна, что камни на дне "
    "видны на глубине в несколько метров. Зимой лёд на озере становится толстым, и по нему ездят машины, "
    "а рыбаки сверлят лунки и ждут улова до самого заката.",
    "ru3": "Осенью в деревне убирают картофель и капусту, а в садах собирают яблоки. Дети помогают взрослым, "
    "носят корзины и складывают урожай в погреб. Вечером вся семья собирается за большим столом, пьёт чай "
    "с вареньем и рассказывает истории о прошлых годах.",
}
JAPANESE = {
    "ja1": "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。東京には多くの美術館や博物館があり、"
    "毎年たくさんの観光客が訪れます。今日の天気は晴れのち曇りで、午後から雨が降るでしょう。",
    "ja2": "京都には千年以上の歴史があり、古い寺や神社が数多く残っています。春には桜が咲き、秋には紅葉が山を"
    "赤く染めます。観光客は着物を着て石畳の道を歩き、抹茶と和菓子を楽しみます。",
}


def native(tag: str) -> str:
    """A Russian or Japanese paragraph with the tag's marker (ASCII, so every charset keeps it)."""
    text = RUSSIAN.get(tag) or JAPANESE[tag]
    return f"{text} {marker(tag)}"


def html_page(title: str, body: str, meta: str | None = "utf-8") -> str:
    head = f'<meta charset="{meta}">' if meta else ""
    return (
        f"<!DOCTYPE html><html><head>{head}<title>{title}</title></head><body>"
        f"<nav><a href='/'>Home</a> | <a href='/about'>About</a></nav>"
        f"<main><article><h1>{title}</h1><p>{body}</p></article></main>"
        "<footer>Copyright 2024. All rights reserved.</footer></body></html>"
    )


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)) * 16
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(range(256)) * 16


# ---------------------------------------------------------------------------------------------
# The hostile corpus


@dataclass
class Bad:
    stage: str
    reason: str
    detail: str  # a prefix of the reject's detail: the file and the line, row or offset


@dataclass
class Hostile:
    root: Path
    good: dict[str, str] = field(default_factory=dict)  # tag -> a piece of text that must arrive as is
    good_ids: dict[str, str] = field(default_factory=dict)  # tag -> the document id it must keep
    bad: list[Bad] = field(default_factory=list)

    def keep(self, tag: str, text: str | None = None, doc_id: str | None = None) -> str:
        self.good[tag] = text or marker(tag)
        if doc_id is not None:
            self.good_ids[tag] = doc_id
        return tag

    def reject(self, stage: str, reason: str, detail: str) -> None:
        self.bad.append(Bad(stage, reason, detail))


def jsonl(record: object) -> bytes:
    return json.dumps(record).encode() + b"\n"


def write_local_files(root: Path) -> Hostile:
    """Files for ``ingest``: good text, HTML, JSONL and Parquet records among every kind of bad one."""
    h = Hostile(root)
    root.mkdir(parents=True)
    stage = "ingest"

    # JSONL: good lines, and one of each kind of bad line; the line number is in every detail.
    path = root / "records.jsonl"
    lines: list[bytes] = []

    def line(data: bytes, reason: str | None = None, detail: str = "", stage_: str = stage) -> None:
        lines.append(data)
        if reason:
            h.reject(stage_, reason, f"{path}:{len(lines)}: {detail}")

    line(jsonl({"id": "j1", "text": english("j1"), "url": "https://example.test/j1"}))
    h.keep("j1", doc_id="j1")
    line(b'{"id": "j2", "text": "an unterminated string\n', "malformed_jsonl")
    line(jsonl({"id": "j3", "text": english("j3")}))
    h.keep("j3", doc_id="j3")
    line(b'{"id": "j4", "text": "a raw NUL \x00 byte inside a string"}\n', "malformed_jsonl")
    line(jsonl({"id": "j5", "text": "giant single line " * (11 * MiB // 18)}), "doc_too_large", "line of ")
    line(jsonl(["a", "list", "not", "an", "object"]), "malformed_record", "not a JSON object")
    line(jsonl({"body": english("j7")}), "missing_text", "no 'text' field")
    line(jsonl({"id": "j8", "text": 42}), "bad_text_type", "'text' is int")
    line(b"\xff\xfe not UTF-8 and not JSON \x80\x81\n", "malformed_jsonl")
    # A lone surrogate escape is valid JSON but not Unicode text: it must not take the file down.
    line(jsonl({"id": "j10", "text": english("j10") + " broken \ud800 escape"}))
    h.keep("j10", " broken \ufffd escape", doc_id="j10")
    # Escaped NULs are valid JSON; the first document stage drops the text as binary.
    line(jsonl({"id": "j11", "text": "\u0000" * 64 + english("j11")}))
    h.reject("langid", "binary_content", "id=j11: ")
    line(b"\n")  # blank lines are skipped, not counted
    line(jsonl({"id": "j13", "text": english("j13")}))
    h.keep("j13", doc_id="j13")
    path.write_bytes(b"".join(lines))

    # A gzip bomb: one good record, then 256 MiB of spaces on one line (about 250 KB on disk).
    bomb = root / "bomb.jsonl.gz"
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(jsonl({"id": "g1", "text": english("g1")}))]
    parts += [compressor.compress(b" " * MiB) for _ in range(256)]
    bomb.write_bytes(b"".join(parts) + compressor.flush())
    h.keep("g1", doc_id="g1")
    h.reject(stage, "decompression_limit", f"{bomb}: ")

    # A truncated .jsonl.gz: the two records before the cut survive.
    cut = root / "cut.jsonl.gz"
    noise = random.Random(1).randbytes(30_000).hex()
    whole = gzip.compress(
        jsonl({"id": "c1", "text": english("c1")}) + jsonl({"id": "c2", "text": english("c2")}) + jsonl({"id": "c3", "text": noise})
    )
    cut.write_bytes(whole[: len(whole) - 10_000])
    h.keep("c1", doc_id="c1")
    h.keep("c2", doc_id="c2")
    h.reject(stage, "truncated_gzip", f"{cut}: ")

    # Whole files: good ones (UTF-8, undeclared cp1251 and Shift-JIS, a lying meta charset) and bad ones.
    pages = root / "pages"
    pages.mkdir()
    (pages / "notes.md").write_text(f"# Notes\n\n{english('t1')}\n")
    h.keep("t1")
    (pages / "article.html").write_text(html_page("An article", english("t2")))
    h.keep("t2")
    (pages / "ru.txt").write_bytes(native("ru1").encode("cp1251"))
    h.keep("ru1", RUSSIAN["ru1"])
    (pages / "tokyo.html").write_bytes(html_page("東京", native("ja1"), meta=None).encode("shift_jis"))
    h.keep("ja1", JAPANESE["ja1"])
    (pages / "lying-meta.html").write_bytes(html_page("Байкал", native("ru2"), meta="utf-8").encode("cp1251"))
    h.keep("ru2", RUSSIAN["ru2"])
    for name, data in [("image.html", PNG), ("program.html", ELF)]:
        (pages / name).write_bytes(data)
        h.reject(stage, "binary_content", f"{pages / name}: binary data in a html file")
    (pages / "nul.txt").write_bytes(b"plain words \x00\x00\x00 then NUL bytes " * 50)
    h.reject(stage, "binary_content", f"{pages / 'nul.txt'}: binary data in a text file")
    giant = "<p>" + "a giant page of words " * (11 * MiB // 22) + "</p>"
    (pages / "giant.html").write_text(html_page("Giant", giant))
    h.reject(stage, "doc_too_large", f"{pages / 'giant.html'}: larger than")
    (pages / "logo.png").write_bytes(PNG)  # not a format ingest reads: counted by extension
    # A file name that is not UTF-8 (latin-1 "café"): Spark cannot carry it to the reader, which
    # cannot open the name it gets; counted as a read error naming the file.
    with open(os.fsencode(pages) + b"/caf\xe9.txt", "wb") as handle:
        handle.write(english("latin1name").encode())
    h.reject(stage, "read_error", f"{pages}/caf")

    # Parquet: good rows, a file with the wrong schema, a text column of the wrong type, not Parquet at all.
    tables = root / "tables"
    tables.mkdir()
    pq.write_table(
        pa.table({"id": ["p1", "p2"], "text": [english("p1"), english("p2")], "url": ["https://x.test/p1", None]}),
        tables / "good.parquet",
    )
    h.keep("p1", doc_id="p1")
    h.keep("p2", doc_id="p2")
    # Parquet does not check that strings are UTF-8: bytes that are not decode to U+FFFD, and the
    # rows around the bad one are read as ever.
    texts = [english("p3").encode(), english("p4").encode() + b" \xff\xfe not UTF-8", english("p5").encode()]
    column = pa.array(texts, pa.binary()).view(pa.string())
    pq.write_table(pa.table({"id": ["p3", "p4", "p5"], "text": column}), tables / "not-utf8.parquet")
    for tag in ("p3", "p4", "p5"):
        h.keep(tag, doc_id=tag)
    h.good["p4"] = "\ufffd\ufffd not UTF-8"
    pq.write_table(pa.table({"content": [english("w1")], "link": ["https://x.test/w"]}), tables / "wrong-schema.parquet")
    h.reject(stage, "missing_text", f"{tables / 'wrong-schema.parquet'}: no column 'text'")
    pq.write_table(pa.table({"text": [1, 2]}), tables / "typed.parquet")
    for row in range(2):
        h.reject(stage, "bad_text_type", f"{tables / 'typed.parquet'}#row={row}: ")
    (tables / "fake.parquet").write_text("plain text under a .parquet name\n" * 20)
    h.reject(stage, "read_error", f"{tables / 'fake.parquet'}: ")
    return h


def warc_response(tag: str, body: bytes, content_type: str | None, n: int, **kwargs: object) -> bytes:
    return response(n, body=body, content_type=content_type, url=f"https://example.test/{tag}", **kwargs)  # type: ignore[arg-type]


def write_warc_files(root: Path) -> Hostile:
    """Files for ``ingest-warc``: good records among damaged files and records."""
    h = Hostile(root)
    root.mkdir(parents=True)
    stage = "ingest-warc"
    source = "faults"
    n = iter(range(1, 1000))

    def good(tag: str, body: bytes, content_type: str | None = "text/html; charset=utf-8", text: str | None = None) -> bytes:
        number = next(n)
        h.keep(tag, text, document_id(source, f"https://example.test/{tag}@{record_id(number)}"))
        return warc_response(tag, body, content_type, number)

    def bad(tag: str, body: bytes, reason: str, content_type: str | None = "text/html", **kwargs: object) -> tuple[bytes, str]:
        return warc_response(tag, body, content_type, next(n), **kwargs), reason

    # One file of one gzip member per record: good pages, pages in undeclared or wrongly declared
    # charsets (they must be decoded right), and bad records the reader must skip and count.
    mixed = root / "mixed.warc.gz"
    records: list[bytes | tuple[bytes, str]] = [
        other_record("warcinfo", 0),
        good("w1", html_page("One", english("w1")).encode()),
        bad("png", PNG, "binary_content"),
        good("w2", html_page("Two", english("w2")).encode()),
        bad("elf", ELF, "binary_content", content_type="text/html; charset=utf-8"),
        good("ru3", html_page("Осень", native("ru3"), meta=None).encode("cp1251"), "text/html", RUSSIAN["ru3"]),
        good("ja2", html_page("京都", native("ja2"), meta=None).encode("shift_jis"), "text/html; charset=utf-8", JAPANESE["ja2"]),
        bad("bomb", gzip_zeros(256 * MiB), "record_too_large", http_headers=[("Content-Encoding", "gzip")]),
        bad("giant", html_page("Giant", "giant page " * (11 * MiB // 11)).encode(), "record_too_large"),
        bad("nul", b"<html><body>" + b"\x00" * 5000 + b"</body></html>", "binary_content"),
        good("w3", english("w3").encode(), "text/plain"),
    ]
    raw = [r if isinstance(r, bytes) else r[0] for r in records]
    offsets = write_warc(mixed, raw, gz=True)
    for offset, record in zip(offsets, records):
        if isinstance(record, tuple):
            h.reject(stage, record[1], f"{mixed} at offset {offset}: ")

    # A .warc.gz cut in the middle of its last record.
    cut = root / "cut.warc.gz"
    raw = [good("w4", html_page("Four", english("w4")).encode()), good("w5", html_page("Five", english("w5")).encode())]
    raw.append(warc_response("lost", html_page("Lost", english("lost")).encode(), "text/html", next(n)))
    offsets = write_warc(cut, raw, gz=True)
    data = cut.read_bytes()
    cut.write_bytes(data[: offsets[2] + (len(data) - offsets[2]) // 2])
    h.reject(stage, "truncated_gzip", f"{cut} at offset {offsets[2]}: ")

    # An uncompressed WARC whose records lie about their Content-Length: too short, and too long
    # (swallowing the next record, which must be recovered), then a file cut inside a record.
    lying = root / "lying.warc"
    raw = [
        good("w6", html_page("Six", english("w6")).encode()),
        with_content_length(warc_response("short", html_page("S", english("short")).encode(), "text/html", next(n)), delta=-40),
        good("w7", html_page("Seven", english("w7")).encode()),
    ]
    swallowed = good("w8", html_page("Eight", english("w8")).encode())
    raw.append(with_content_length(warc_response("long", html_page("L", english("long")).encode(), "text/html", next(n)), delta=len(swallowed) + 50))
    raw += [swallowed, good("w9", html_page("Nine", english("w9")).encode())]
    raw.append(warc_response("cut", html_page("Cut", english("cut")).encode(), "text/html", next(n)))
    offsets = write_warc(lying, raw, gz=False)
    lying.write_bytes(lying.read_bytes()[: offsets[6] + len(raw[6]) // 2])  # cut in the last record's payload
    h.reject(stage, "bad_content_length", f"{lying} at offset {offsets[1]}: ")
    h.reject(stage, "bad_content_length", f"{lying} at offset {offsets[3]}: ")
    h.reject(stage, "truncated_record", f"{lying} at offset {offsets[6]}: ")

    # Not WARC at all, under a WARC name.
    (root / "notes.warc").write_bytes(b"just some text with a .warc name\n" * 50)
    h.reject(stage, "not_warc", f"{root / 'notes.warc'}: ")
    return h


# ---------------------------------------------------------------------------------------------
# Checking a build


def read_dataset(path: Path) -> pa.Table:
    files = sorted(p for p in path.rglob("*.parquet") if not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts))
    return ds.dataset([str(f) for f in files], format="parquet").to_table()


def rejects_of(stage_out: Path) -> list[dict]:
    return pq.read_table(stage_out / REJECTS_DIR, columns=["id", "reason", "detail"]).to_pylist()


def check_rejects(stage_out: Path, name: str, hostile: Hostile) -> None:
    """Every bad record the stage met: counted by reason in its _stats.json, and its detail (file
    and line, row or offset) in _rejects/ and among the examples of _stats.json."""
    assert (stage_out / SUCCESS_FILE).is_file(), name
    expected = [b for b in hostile.bad if b.stage == name]
    stats = json.loads((stage_out / STATS_FILE).read_text())
    counts: dict[str, int] = {}
    for b in expected:
        counts[b.reason] = counts.get(b.reason, 0) + 1
    dropped = {reason: v["docs"] for reason, v in stats["dropped"].items()}
    assert dropped == counts, (name, dropped, counts)
    details = [r["detail"] for r in rejects_of(stage_out)]
    for b in expected:
        assert any(d.startswith(b.detail) for d in details), (name, b, details)
        if counts[b.reason] <= 5:  # _stats.json keeps five examples per reason
            assert any(d.startswith(b.detail) for d in stats["examples"][b.reason]), (name, b)
    assert stats["docs_in"] == stats["docs_out"] + sum(counts.values())


def check_kept(dataset: Path, hostile: Hostile) -> dict[str, str]:
    """Every good record in the dataset exactly once, its text decoded right and its id kept, and
    nothing else; returns the texts by id."""
    table = read_dataset(dataset)
    texts = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    for tag, fragment in hostile.good.items():
        holders = [doc_id for doc_id, text in texts.items() if marker(tag) in text]
        assert len(holders) == 1, (tag, holders)
        assert fragment in texts[holders[0]], (tag, texts[holders[0]][:300])
        if tag in hostile.good_ids:
            assert holders[0] == hostile.good_ids[tag], tag
    assert len(texts) == len(hostile.good), sorted(texts)
    return texts


def check_build(out: Path, stages: list[str], hostile: Hostile) -> None:
    """Every bad record counted by the stage it fell in; every good one in the last corpus stage's
    output and, one document each, in the token shards."""
    for name in stages:
        check_rejects(out / name, name, hostile)
    texts = check_kept(out / stages[-2], hostile)
    manifest = json.loads((out / "tokenize" / "manifest.json").read_text())
    shard_ids = []
    for shard in manifest["shards"]:
        table = pa.ipc.open_stream(pa.memory_map(str(out / "tokenize" / shard["path"]))).read_all()
        shard_ids += table.column("id").to_pylist()
    assert sorted(shard_ids) == sorted(texts)


def build_recipe(tmp_path: Path, name: str, first: str, section: str, paths: Path, extra: str = "") -> Path:
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(
        f"name: {name}\nstages: [{first}, {', '.join(CORPUS_STAGES)}, tokenize]\n"
        f"{section}:\n  paths: [{paths}]\n  source: faults\n{extra}"
        "langid:\n  keep: {en: 0.3, ru: 0.3, ja: 0.3}\n"
        "quality:\n  filters: [gopher_repetition]\n"
        "orchestration:\n  retries: 0\n"
    )
    return recipe


def run_build(*args: str) -> None:
    """``corpusforge run ...`` in this process (a real Prefect flow on the test server)."""
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["run", *args])
    assert result.exit_code == 0, (result.output, result.exception)


def test_hostile_local_files_through_a_whole_build(spark, prefect_server, tmp_path: Path) -> None:
    """Text, HTML, JSONL, .jsonl.gz and Parquet files, good and hostile, through a whole build
    (ingest, langid, quality, pii, dedup-exact, dedup-minhash, tokenize): it finishes; every bad
    record is counted where it fell with its file and line or row; every good one is in the
    corpus and the shards, decoded right."""
    hostile = write_local_files(tmp_path / "raw")
    # A lower whole-file gzip cap than the default 1 GiB keeps the bomb fast; the other caps are the defaults.
    recipe = build_recipe(tmp_path, "hostile-files", "ingest", "ingest", hostile.root, "  max_decompressed_bytes: 33554432\n")
    out = tmp_path / "build"
    run_build(str(recipe), "--out", str(out))
    stages = ["ingest", *CORPUS_STAGES, "tokenize"]
    check_build(out, stages, hostile)
    stats = json.loads((out / "ingest" / STATS_FILE).read_text())
    assert stats["files"]["skipped_by_extension"] == {".png": 1}


def test_hostile_warc_files_through_the_ingest_warc_stage(spark, tmp_path: Path) -> None:
    """The WARC half of the hostile corpus through the stage that meets it (the whole build: -m slow)."""
    from pipelines.stage import run_stage
    from pipelines.warc import IngestWarcStage, WarcIngestConfig

    hostile = write_warc_files(tmp_path / "warc")
    out = tmp_path / "ingest-warc"
    run_stage(IngestWarcStage(), [hostile.root], out, WarcIngestConfig(source="faults"), lambda: spark)
    check_rejects(out, "ingest-warc", hostile)
    check_kept(out, hostile)


@pytest.mark.slow
def test_hostile_warc_files_through_a_whole_build(spark, prefect_server, tmp_path: Path) -> None:
    hostile = write_warc_files(tmp_path / "warc")
    recipe = build_recipe(tmp_path, "hostile-warc", "ingest-warc", "ingest_warc", hostile.root)
    out = tmp_path / "build"
    run_build(str(recipe), "--out", str(out))
    check_build(out, ["ingest-warc", *CORPUS_STAGES, "tokenize"], hostile)


# ---------------------------------------------------------------------------------------------
# Parquet of the wrong schema, and corrupted token shards


@pytest.mark.parametrize("stage", ["langid", "quality", "pii", "dedup-exact", "dedup-minhash", "tokenize"])
@pytest.mark.parametrize(
    "damage, message",
    [
        ("retyped", "column 'text' has type int64, expected string"),
        ("missing", "missing column 'source' (expected string); found columns: id, url, title, text, fetched_at"),
    ],
    ids=["retyped", "missing"],
)
def test_wrong_schema_parquet_fails_naming_file_and_column(
    spark, tmp_path: Path, stage: str, damage: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "docs"
    dataset.mkdir()
    good = pa.Table.from_pylist([{"id": "a", "text": english("a"), "source": "faults"}], schema=DOCUMENT_SCHEMA)
    pq.write_table(good, dataset / "part-0.parquet")
    if damage == "retyped":
        bad = good.set_column(good.schema.get_field_index("text"), "text", pa.array([7], pa.int64()))
    else:
        bad = good.select(["id", "url", "title", "text", "fetched_at"])
    pq.write_table(bad, dataset / "part-1.parquet")
    out = tmp_path / "out"
    code, err = cli(monkeypatch, capsys, "stage", stage, "--in", str(dataset), "--out", str(out))
    assert code == 2, err
    assert err.strip().splitlines()[-1] == f"error: {dataset / 'part-1.parquet'}: {message}", err[-2000:]
    assert not out.exists() and not leftovers(out)


def test_a_flipped_byte_anywhere_in_a_shard_is_caught_or_fails_clearly(tmp_path: Path) -> None:
    """A byte flipped in a shard, keeping its size (every eighth position: header, schema, offsets,
    tokens, ids, padding): the loader's default check (SHA-256 against the manifest) refuses each
    one at construction, naming the file. Read with only sizes checked (verify="size"), a damaged
    shard fails with a ShardFormatError naming the file or is read: never another exception. (Read
    that way, a flipped token byte comes back as a wrong token; only the checksum catches it.)"""
    from pipelines.shard_format import ShardFormatError
    from pipelines.shards import ShardDataset
    from tests.test_shards import write_shards

    root = tmp_path / "tokens"
    write_shards(root, [30, 5], max_len=20)
    shard = root / "shard-000.arrow"
    original = shard.read_bytes()
    outcomes = {"refused": 0, "read": 0}
    for position in range(0, len(original), 8):
        damaged = bytearray(original)
        damaged[position] ^= 0xFF
        shard.write_bytes(bytes(damaged))
        with pytest.raises(ShardFormatError, match=r"shard-000\.arrow: SHA-256 differs"):
            ShardDataset(root)
        try:
            list(ShardDataset(root, verify="size", shuffle=False))
            outcomes["read"] += 1
        except ShardFormatError as exc:
            assert "shard-000.arrow" in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0  # structural damage (offsets, lengths, schema) is found when read
    shard.write_bytes(original)
    assert len(list(ShardDataset(root, shuffle=False))) == 35


# ---------------------------------------------------------------------------------------------
# Resource limits: a giant record costs bounded memory in the Python workers


class WorkerPeakRss:
    """Peak RSS of each Spark Python worker (``pyspark.daemon`` and the workers it forks, children of
    this process's JVM) while the block runs: samples every 10 ms, and the kernel's high-water mark
    (``VmHWM``) of workers started in the block or whose mark could be reset at its start.
    ``growth``: the largest rise of one worker above its RSS when first seen."""

    def __init__(self) -> None:
        self.first: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.trusted_marks: set[int] = set()  # workers whose VmHWM covers this block only
        self._before: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def workers() -> list[psutil.Process]:
        found = []
        for process in psutil.Process().children(recursive=True):
            try:
                if "pyspark.daemon" in " ".join(process.cmdline()):
                    found.append(process)
            except psutil.Error:
                continue
        return found

    def _sample(self) -> None:
        for process in self.workers():
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue
            self.first.setdefault(process.pid, rss)
            self.peak[process.pid] = max(self.peak.get(process.pid, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self._sample()

    @staticmethod
    def _high_water(pid: int) -> int | None:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def __enter__(self) -> "WorkerPeakRss":
        for process in self.workers():
            self._before.add(process.pid)
            try:
                Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM := current RSS
                self.trusted_marks.add(process.pid)
            except OSError:
                pass
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for pid in self.peak:
            if pid in self.trusted_marks or pid not in self._before:
                high = self._high_water(pid)
                if high is not None:
                    self.peak[pid] = max(self.peak[pid], high)
        self._sample()

    @property
    def growth(self) -> int:
        return max((self.peak[pid] - self.first[pid] for pid in self.peak), default=0)


GIANT = 200 * MiB


def write_giant_jsonl(path: Path) -> None:
    """A good record, a 200 MB record on one line, a good record."""
    with open(path, "wb") as out:
        out.write(jsonl({"id": "before", "text": english("before")}))
        out.write(b'{"id": "giant", "text": "')
        block = b"one giant line of text " * (MiB // 23)
        for _ in range(-(-GIANT // len(block))):
            out.write(block)
        out.write(b'"}\n')
        out.write(jsonl({"id": "after", "text": english("after")}))


def write_giant_warc(path: Path) -> list[int]:
    """A good response, a response with a 200 MB one-line page, a good response; their offsets."""
    head = response(2, body=b"", content_type="text/html", url="https://example.test/giant")
    warc_head, _, http_head = head.partition(b"\r\n\r\n")
    http_head = http_head.removesuffix(b"\r\n\r\n")  # keep the HTTP headers' own blank line
    start, block = b"<html><body><p>", b"one giant line of text " * (MiB // 23)
    blocks = -(-GIANT // len(block))
    first = response(1, url="https://example.test/before")
    with open(path, "wb") as out:
        out.write(first)
        length = len(http_head) + len(start) + blocks * len(block)
        out.write(with_content_length(warc_head + b"\r\n\r\n", value=str(length)))
        out.write(http_head + start)
        for _ in range(blocks):
            out.write(block)
        out.write(b"\r\n\r\n")
        third = out.tell()
        out.write(response(3, url="https://example.test/after"))
    return [0, len(first), third]


@pytest.mark.parametrize("kind", ["jsonl", pytest.param("warc", marks=pytest.mark.slow)])  # the WARC reader's own test bounds it too
def test_a_200_mb_record_is_dropped_in_bounded_worker_memory(spark, tmp_path: Path, kind: str) -> None:
    """A 200 MB record on one line (JSONL) or in one response (WARC), between two good ones, through
    the real stage at its default caps: dropped with its reason, file and line or offset, the good
    ones kept, and no Python worker growing by more than 64 MiB. (With the cap above the record,
    the same run grows a worker by about 800 MB: the measurement sees a record held whole.)"""
    from pipelines.ingest import IngestConfig, IngestStage
    from pipelines.stage import run_stage
    from pipelines.warc import IngestWarcStage, WarcIngestConfig

    raw, small = tmp_path / "raw", tmp_path / "small"
    raw.mkdir()
    small.mkdir()
    if kind == "jsonl":
        path = raw / "giant.jsonl"
        write_giant_jsonl(path)
        for name in ("a", "b"):
            (small / f"{name}.jsonl").write_bytes(jsonl({"text": english(name)}))
        stage, config = IngestStage(), IngestConfig(source="faults")
        reason, detail, kept = "doc_too_large", f"{path}:2: line of ", [marker("before"), marker("after")]
    else:
        path = raw / "giant.warc"
        offsets = write_giant_warc(path)
        for number in (1, 2):
            write_warc(small / f"{number}.warc", [response(number)], gz=False)
        stage, config = IngestWarcStage(), WarcIngestConfig(source="faults")
        reason, detail, kept = "record_too_large", f"{path} at offset {offsets[1]}: ", ["MARKER-1", "MARKER-3"]
    # The same stage on two small files first: the workers have imported and allocated what the
    # stage needs, so what they grow by below is the giant record's cost.
    run_stage(stage, [small], tmp_path / "warm", config, lambda: spark)
    with WorkerPeakRss() as rss:
        result = run_stage(stage, [raw], tmp_path / "out", config, lambda: spark)
    assert set(result.stats["dropped"]) == {reason}
    assert result.stats["dropped"][reason]["docs"] == 1 and result.stats["dropped"][reason]["bytes"] >= GIANT
    [example] = result.stats["examples"][reason]
    assert example.startswith(detail)
    texts = read_dataset(tmp_path / "out").column("text").to_pylist()
    assert len(texts) == 2 and all(any(m in t for t in texts) for m in kept)
    assert rss.peak, "no Spark Python worker was seen"
    assert rss.growth < 64 * MiB, rss.growth  # the cap (10 MiB) plus buffers, never the 200 MB record


# ---------------------------------------------------------------------------------------------
# A full disk during a write


def incompressible_text(rng: random.Random, chars: int) -> str:
    """Words of random base64: Parquet's zstd and the tokenizer cannot shrink them much."""
    import base64

    data = base64.b64encode(rng.randbytes(chars * 3 // 4)).decode()
    return " ".join(data[i : i + 8] for i in range(0, len(data), 8))


def write_big_inputs(root: Path, docs: int) -> tuple[Path, Path, Path]:
    """``docs`` times 1.5 KB of incompressible text as a JSONL file for ingest (about 1.2 KB of
    Parquet out per document, in one file) and as a document dataset for tokenize, and a
    one-token-per-character tokenizer (3 KB of shards per document), small to ship and fast to run."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    rng = random.Random(7)
    raw, dataset, tokenizer_dir = root / "raw", root / "docs", root / "tokenizer"
    for directory in (raw, dataset, tokenizer_dir):
        directory.mkdir(parents=True)
    texts = [incompressible_text(rng, 1500) for _ in range(docs)]
    with open(raw / "docs.jsonl", "w") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    rows = [{"id": f"t{i}", "text": text, "source": "faults"} for i, text in enumerate(texts)]
    # Two row groups: one per task on two cores, with no shuffle (whose scratch files would be
    # the first to hit a file-size limit).
    pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), dataset / "part-0.parquet", row_group_size=docs // 2)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= "
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "</s>": 1} | {c: i + 2 for i, c in enumerate(alphabet)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.save(str(tokenizer_dir / "tokenizer.json"))
    (tokenizer_dir / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    return raw, dataset, tokenizer_dir


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``corpusforge ARGS`` through its entry point, in this process: (exit status, stderr)."""
    from flows.cli import main

    monkeypatch.setattr(sys, "argv", ["corpusforge", *args])
    code: int | str | None = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def assert_nothing_finished(parent: Path, output: Path) -> None:
    assert not output.exists(), sorted(p.name for p in parent.iterdir())
    assert not list(parent.rglob(SUCCESS_FILE)) and not list(parent.rglob("manifest.json"))


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs (needs root: skipped where it cannot be mounted); yields (mount point, remount),
    remount(size) growing it, as an operator freeing space would."""
    where = tmp_path / "small-disk"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; test_file_size_limit_* proves the same without it")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")

    def remount(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)

    try:
        yield where, remount
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def stage_args(stage: str, inputs: tuple[Path, Path, Path], out: Path) -> list[str]:
    raw, dataset, tokenizer = inputs
    if stage == "ingest":
        return ["stage", "ingest", "--in", str(raw), "--out", str(out)]
    return ["stage", "tokenize", "--in", str(dataset), "--out", str(out), "--set", f"tokenize.tokenizer={tokenizer}"]


def files_of(out: Path) -> dict[Path, bytes]:
    return {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}


@pytest.mark.parametrize("stage", ["ingest", pytest.param("tokenize", marks=pytest.mark.slow)])  # tokenize: also under a file-size limit below
def test_full_disk_fails_cleanly_and_the_rerun_completes(
    spark, small_disk, tmp_path: Path, stage: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    disk, remount = small_disk
    inputs = write_big_inputs(tmp_path / "in", 2000)  # 2.4 MB of Parquet, 6 MB of shards: over 2 MiB
    out = disk / stage
    before = None
    if stage == "ingest":
        # A finished output of an earlier run, small enough to fit: the failed rerun must leave it as it was.
        (tmp_path / "small-in").mkdir()
        (tmp_path / "small-in" / "a.jsonl").write_text(json.dumps({"id": "a", "text": english("a")}) + "\n")
        code, err = cli(monkeypatch, capsys, "stage", stage, "--in", str(tmp_path / "small-in"), "--out", str(out))
        assert code == 0, err
        before = files_of(out)

    code, err = cli(monkeypatch, capsys, *stage_args(stage, inputs, out))
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    # The path written is named: the staging directory, for tokenize the very shard file.
    assert last.startswith(f"error: stage {stage}: No space left on device while writing {disk}/.{stage}.tmp-"), err[-3000:]
    assert ".shard-" in last if stage == "tokenize" else True, last
    if before is not None:
        assert files_of(out) == before
    else:
        assert_nothing_finished(disk, out)
    assert not leftovers(out)  # the failed run's staging directory is gone: the space is free again

    remount("64m")  # space freed
    code, err = cli(monkeypatch, capsys, *stage_args(stage, inputs, out))
    assert code == 0, err
    assert (out / SUCCESS_FILE).is_file() and not leftovers(out)
    assert json.loads((out / STATS_FILE).read_text())["docs_out"] == 2000


def _ignores_sigxfsz(pid: int) -> bool:
    """Whether the process ignores or handles SIGXFSZ (else a write past RLIMIT_FSIZE kills it)."""
    bit = 1 << (signal.SIGXFSZ - 1)
    masks = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigIgn", "SigCgt"):
            masks[key] = int(value.strip(), 16)
    return bool((masks.get("SigIgn", 0) | masks.get("SigCgt", 0)) & bit)


@contextmanager
def python_workers_file_size_limit(spark, limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE lowered to ``limit`` for the session's Spark Python workers (the daemon and
    every worker it forks; no root needed: only the soft limit moves, and back). Every write
    past ``limit`` bytes into a file there fails with EFBIG, as a full disk fails it with ENOSPC.

    Not the JVM: the first use of zstd in a JVM unpacks its native library (1 MB) into /tmp, and
    when that fails the codec stays broken for the JVM's life (every later Parquet write fails),
    which would take the rest of the session's tests with it."""
    if not hasattr(resource, "prlimit") or not Path("/proc/self/status").exists():
        pytest.skip("needs Linux prlimit and /proc")
    spark.range(4, numPartitions=2).mapInArrow(lambda batches: batches, "id long").collect()  # workers up
    jvm = psutil.Process(spark.sparkContext._gateway.proc.pid)

    def workers() -> list[psutil.Process]:
        return [p for p in jvm.children(recursive=True) if p.name().startswith("python")]

    assert workers(), "no Spark Python worker"
    if not all(_ignores_sigxfsz(p.pid) for p in workers()):
        pytest.skip("a Python worker would be killed by SIGXFSZ instead of getting EFBIG")
    soft, hard = resource.prlimit(workers()[0].pid, resource.RLIMIT_FSIZE)
    for process in workers():
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        for process in workers():  # workers forked meanwhile inherited the limit: restored too
            try:
                resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (soft, hard))
            except (ProcessLookupError, psutil.Error):
                pass


def test_file_size_limit_fails_cleanly_without_root_and_the_rerun_completes(
    spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The full-disk guarantee for tokenize's shard writer on any machine, with no root: a 512 KiB
    file-size limit on the Python workers makes its writes fail (EFBIG, "File too large") as a
    full disk does. (Parquet writers, in the JVM: the tmpfs test above, and the fresh-process-tree
    test below with -m slow.)"""
    stage = "tokenize"
    inputs = write_big_inputs(tmp_path / "in", 600)  # two shards of 0.9 MB
    out = tmp_path / "limited" / stage
    with python_workers_file_size_limit(spark, 512 * 1024):
        code, err = cli(monkeypatch, capsys, *stage_args(stage, inputs, out))
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: stage {stage}: File too large while writing {out.parent}/.{stage}.tmp-"), err[-3000:]
    assert ".shard-" in last, last
    assert_nothing_finished(out.parent, out)
    assert not leftovers(out)

    code, err = cli(monkeypatch, capsys, *stage_args(stage, inputs, out))  # the limit lifted
    assert code == 0, err
    assert (out / SUCCESS_FILE).is_file() and not leftovers(out)
    assert json.loads((out / STATS_FILE).read_text())["docs_out"] == 600


# Runs `corpusforge` (its entry point, flows.cli:main) once per argument list, in one process on one
# JVM: a session started first is one that spark_scope leaves running between the runs.
_CLI_RUNS = """
import json, sys
from pipelines.spark import SparkSettings, get_spark
get_spark(SparkSettings(master="local[2]", driver_memory="1g"))
from flows.cli import main
for number, args in enumerate(json.loads(sys.argv[1])):
    print(f"=== run {number}", file=sys.stderr, flush=True)
    sys.argv = ["corpusforge", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    print(f"=== exit {code}", file=sys.stderr, flush=True)
"""


@pytest.mark.slow
def test_file_size_limit_in_a_fresh_process_tree(spark, tmp_path: Path) -> None:
    """The same as above, the way an operator meets it: `corpusforge stage` started under
    RLIMIT_FSIZE (set in preexec_fn, SIGXFSZ ignored), so the driver, its JVM and every Python
    worker get EFBIG past 1.5 MiB per file; exit status 1 and one line naming the path."""
    from pipelines.ingest import IngestConfig, IngestStage
    from pipelines.stage import run_stage
    from pipelines.tokenize import TokenizeConfig, TokenizeStage

    inputs = write_big_inputs(tmp_path / "in", 2000)
    outs = {stage: tmp_path / "limited" / stage for stage in ("ingest", "tokenize")}
    limit = 3 * MiB // 2  # over the 1 MB native zstd library the JVM unpacks into /tmp on first use

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write() instead of a signal that kills
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    runs = [stage_args(stage, inputs, out) for stage, out in outs.items()]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _CLI_RUNS, json.dumps(runs)],
        preexec_fn=limited, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parts = done.stderr.split("=== run ")[1:]
    assert len(parts) == 2, done.stderr[-3000:]
    for (stage, out), part in zip(outs.items(), parts):
        lines = part.strip().splitlines()
        assert lines[-1] == "=== exit 1", (stage, part[-3000:])
        assert lines[-2].startswith(f"error: stage {stage}: File too large while writing {out.parent}/.{stage}.tmp-"), (stage, part[-3000:])
        assert ".shard-" in lines[-2] if stage == "tokenize" else True, lines[-2]
        assert_nothing_finished(out.parent, out)
        assert not leftovers(out), stage

    # No limit any more: the same stages complete, removing what the failed runs left.
    raw, dataset, tokenizer = inputs
    run_stage(IngestStage(), [raw], outs["ingest"], IngestConfig(), lambda: spark)
    run_stage(TokenizeStage(), [dataset], outs["tokenize"], TokenizeConfig(tokenizer=str(tokenizer)), lambda: spark)
    for out in outs.values():
        assert (out / SUCCESS_FILE).is_file() and not leftovers(out)
        assert json.loads((out / STATS_FILE).read_text())["docs_out"] == 2000
