"""Shared fixtures: one Spark session and one Prefect test server per test run."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _keep_absl_off_pytests_capture() -> None:
    """absl's log handler (absl comes with rouge-score) keeps the stream that is sys.stderr when
    it is imported, here pytest's capture file, and closes it when logging shuts its handlers
    down, unless it is sys.stderr at that moment. Prefect's logging set-up does that shutdown
    during the first flow run, inside a CliRunner, whose sys.stderr is another stream: pytest's
    capture file would be closed and the rest of the run lose its output. Point absl at the
    process's real stderr, which it never closes."""
    import absl.logging

    absl.logging.get_absl_handler().python_handler.stream = sys.__stderr__


_keep_absl_off_pytests_capture()

ARTICLE_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Tuning the garbage collector</title></head>
<body>
<nav><a href="/">Home</a> | <a href="/blog">Blog</a> | <a href="/about">About</a></nav>
<main><article>
<h1>Tuning the garbage collector</h1>
<p>Most services never need to touch the garbage collector. When latency spikes line up with
collections, though, a few settings make a large difference: the size of the young generation,
the pause-time goal, and the number of threads that run concurrent marking.</p>
<p>Start by measuring. Enable the collector's own logs, run a realistic load for an hour, and
look at the distribution of pause times rather than the average, which hides the long tail.</p>
<ul><li>Raise the heap only when the live set is close to it.</li>
<li>Lower the pause goal in small steps and watch throughput.</li></ul>
</article></main>
<footer>Copyright 2024 Example Engineering. All rights reserved.</footer>
</body></html>
"""

RUSSIAN_TEXT = (
    "Москва является столицей Российской Федерации и крупнейшим городом страны. "
    "Город расположен на реке Москве в центре Восточно-Европейской равнины.\n"
)
JAPANESE_HTML = (
    '<html><head><meta charset="shift_jis"><title>東京の天気</title></head><body><p>'
    "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。今日の天気は晴れのち曇りです。"
    "</p></body></html>"
)

JSONL_LINES = [
    json.dumps({"id": "doc-1", "text": "The quick brown fox jumps over the lazy dog near the river bank.", "url": "https://example.org/a"}),
    "{this is not json",
    json.dumps({"text": "Rivers carry sediment from the mountains to the sea over many years."}),
    "",
    json.dumps(["a", "list", "not", "an", "object"]),
    json.dumps({"body": "a record without the text field"}),
    json.dumps({"text": 42}),
    json.dumps({"text": "   "}),
    json.dumps({"id": "doc-9", "text": "Tides are caused mainly by the gravitational pull of the moon."}),
]


def write_corpus(root: Path) -> Path:
    """A small mixed input tree: good documents plus one of each kind of bad record."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "blog").mkdir()
    (root / "blog" / "gc.html").write_text(ARTICLE_HTML, encoding="utf-8")
    (root / "blog" / "tokyo.html").write_bytes(JAPANESE_HTML.encode("shift_jis"))
    (root / "ru.txt").write_bytes(RUSSIAN_TEXT.encode("cp1251"))
    (root / "notes.md").write_text("# Notes\n\nShip the release on Thursday after the last review.\n")
    (root / "records.jsonl").write_text("\n".join(JSONL_LINES) + "\n")
    (root / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with gzip.open(root / "more.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"text": "Compressed input is read transparently, line by line."}) + "\n")
    pq.write_table(
        pa.table({"content": ["A Parquet row with its text in a column called content."], "link": ["https://x.test/p"]}),
        root / "foreign.parquet",
    )
    return root


# Expected outcome of ingesting write_corpus() with default settings.
EXPECTED_KEPT = 8  # gc.html, tokyo.html, ru.txt, notes.md, 3 JSONL records, 1 gz record
EXPECTED_DROPS = {
    "malformed_jsonl": 1,
    "malformed_record": 1,
    "missing_text": 2,  # the JSONL record without "text", and foreign.parquet (no "text" column)
    "bad_text_type": 1,
    "empty_text": 1,
    "binary_content": 1,
}


@pytest.fixture(scope="session")
def spark():
    from pipelines.spark import SparkSettings, get_spark

    session = get_spark(SparkSettings(master="local[2]", shuffle_partitions=4, driver_memory="1g"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")
