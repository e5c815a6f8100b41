"""Paragraph-level language ID (issue #12): the pure splitter and shares, then the langid stage
with real fastText and real Spark in each paragraph mode (keep, drop, split, disabled)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from filters.langid_paragraphs import identify_paragraphs, paragraph_languages, split_paragraphs
from pipelines.docstage import batch_runner
from pipelines.langid import MIXED_REASON, LangIdConfig, LangIdStage
from pipelines.schema import BYTES_IN, DOCUMENT_COLUMNS, WORKING_SCHEMA, document_id
from pipelines.stage import run_stage
from tests.test_stages_filters import read_output, write_documents

HEADING = "River notes"  # shorter than min_chars: not identified, travels with the paragraph below it
EN = [
    "The river rises in the northern hills and runs south for almost two hundred kilometres. "
    "Along its banks farmers grow wheat and barley, and small towns have grown up around the old stone bridges.",
    "In spring the snow melts quickly and the water level can rise by several metres in a single week. "
    "The town council has built new walls to protect the houses that stand closest to the water.",
    "Visitors come in summer to walk the footpaths, watch the birds and swim in the quiet pools below the waterfall. "
    "Most of them stay in the guest houses of the villages.",
]
DE = (
    "Der Fluss entspringt in den nördlichen Hügeln und fließt fast zweihundert Kilometer nach Süden. "
    "An seinen Ufern bauen die Bauern Weizen und Gerste an, und um die alten Steinbrücken sind kleine Städte entstanden."
)
FR = (
    "La rivière prend sa source dans les collines du nord et coule vers le sud sur près de deux cents kilomètres. "
    "Les habitants des villages pêchent la truite le long de ses rives depuis des siècles."
)
MIXED = "\n\n".join([HEADING, EN[0], EN[1], DE, EN[2], FR]) + "\n"
ENGLISH = EN[0] + "\n\n" + EN[2]
CHARS = {"en": sum(map(len, EN)), "de": len(DE), "fr": len(FR)}
TOTAL = sum(CHARS.values())
WHEN = datetime(2024, 5, 1, tzinfo=timezone.utc)


# ---------------------------------------------------------------- pure logic


def test_paragraphs_are_cut_at_blank_lines_else_at_line_breaks() -> None:
    assert split_paragraphs("one\ntwo\n\n\nthree\n \t\nfour\n") == ["one\ntwo", "three", "four"]
    assert split_paragraphs("a b\r\n\r\n  c d  \r\n") == ["a b", "c d"]
    assert split_paragraphs("first line\nsecond line\n") == ["first line", "second line"]
    assert split_paragraphs("  just one paragraph  ") == ["just one paragraph"]
    assert split_paragraphs(" \n\n \n") == []


def test_shares_are_characters_of_identified_paragraphs() -> None:
    calls: list[list[str]] = []

    def predict(texts):
        calls.append(list(texts))
        return [(t[0], 0.5 if t[0] == "d" else 0.9) for t in texts]

    short, e1, d1, e2 = "ee", "e" * 60, "d" * 20, "e" * 20
    [doc, single] = identify_paragraphs([f"{short}\n\n{e1}\n\n{d1}\n\n{e2}", "e" * 50], predict, min_chars=20)
    assert calls == [[e1, d1, e2, "e" * 50]]  # one call for the batch; the 2-character paragraph is skipped
    assert doc.shares == pytest.approx({"e": 0.8, "d": 0.2})
    assert doc.annotations() == pytest.approx(
        {"lang_share.e": 0.8, "lang_share.d": 0.2, "lang_share.paragraphs": 3.0, "lang_share.chars": 100.0}
    )
    assert doc.dominant == "e" and doc.is_mixed(0.81) and not doc.is_mixed(0.8)
    assert single.shares == {"e": 1.0} and not single.is_mixed(1.0)

    en, de = doc.pieces()
    assert (en.lang, en.text, en.score) == ("e", f"{short}\n\n{e1}\n\n{e2}", pytest.approx(0.9))
    assert (de.lang, de.text, de.score) == ("d", d1, 0.5)
    assert de.annotations() == {"lang_share.d": 1.0, "lang_share.paragraphs": 1.0, "lang_share.chars": 20.0}

    trailing = paragraph_languages(["x" * 30, "sig"], [("x", 1.0), None])
    assert [(p.lang, p.text) for p in trailing.pieces()] == [("x", "x" * 30 + "\n\nsig")]
    nothing = paragraph_languages(["hi", "ok"], [None, None])
    assert nothing.shares == {} and not nothing.is_mixed(1.0) and nothing.pieces() == []


def test_batch_runner_appends_new_rows_and_builds_every_column() -> None:
    rows = [
        {"id": "a", "url": None, "title": "t", "text": "alpha", "source": "s", "fetched_at": WHEN, "lang": None,
         "lang_score": None, "annotations": None, "metadata": [("k", "v")], BYTES_IN: 5},
        {"id": "b", "url": None, "title": None, "text": "", "source": "s", "fetched_at": None, "lang": None,
         "lang_score": None, "annotations": None, "metadata": None, BYTES_IN: 0},
    ]
    batch = pa.RecordBatch.from_pylist(rows, schema=pa.schema([WORKING_SCHEMA.field(c) for c in [*DOCUMENT_COLUMNS, BYTES_IN]]))

    def one_to_two(passed):
        passed[0]["lang"] = "en"
        return [{"id": "a2", "text": "beta", "source": "s", "lang": "de"}]

    [out] = batch_runner(one_to_two, ("text",), ("lang",), 1000)([batch])
    got = out.to_pylist()
    assert [r["id"] for r in got] == ["a", "b", "a2"]
    assert got[0]["lang"] == "en" and got[0]["title"] == "t" and got[0]["metadata"] == [("k", "v")]
    assert got[1]["_drop_reason"] == "empty_text"
    assert (got[2]["lang"], got[2][BYTES_IN], got[2]["title"]) == ("de", 0, None)

    [same] = batch_runner(lambda passed: None, ("text",), ("lang",), 1000)([batch])
    # No new rows: the columns the processor does not write pass through, same buffers.
    assert same.column("title").buffers()[2].address == batch.column("title").buffers()[2].address


# ---------------------------------------------------------------- the stage, real fastText and Spark


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    docs = [
        {"id": "mixed", "text": MIXED, "url": "https://example.org/river", "title": "The river", "source": "web",
         "fetched_at": WHEN, "annotations": [("ingest.bytes", 1.0)], "metadata": [("file", "river.html")]},
        {"id": "english", "text": ENGLISH, "source": "web"},
    ]
    return write_documents(tmp_path_factory.mktemp("paragraphs") / "in", docs)


@pytest.fixture(scope="module")
def predictions() -> dict[str, tuple[str, float]]:
    from filters.langid import LanguageIdentifier

    texts = {"mixed": MIXED, "english": ENGLISH, "en0": EN[0], "en1": EN[1], "en2": EN[2], "de": DE, "fr": FR}
    return dict(zip(texts, LanguageIdentifier().predict(list(texts.values()))))


def run(spark, inputs: Path, out: Path, **config):
    return run_stage(LangIdStage(), [inputs], out, LangIdConfig(**config), lambda: spark, keep_rejects=out.parent / "rejects")


def mixed_paragraphs(action: str) -> dict:
    return {"enabled": True, "min_dominant_share": 0.9, "action": action}


def test_keep_records_shares_and_leaves_documents_as_they_were(spark, tmp_path: Path, inputs: Path, predictions) -> None:
    assert {predictions[k][0] for k in ("en0", "en1", "en2")} == {"en"} and predictions["de"][0] == "de"
    result = run(spark, inputs, tmp_path / "out", paragraphs=mixed_paragraphs("keep"))
    kept = read_output(tmp_path / "out")
    mixed = kept["mixed"]
    annotations = dict(mixed["annotations"])
    assert annotations == pytest.approx({
        "ingest.bytes": 1.0,
        **{f"lang_share.{lang}": n / TOTAL for lang, n in CHARS.items()},
        "lang_share.paragraphs": 5.0,
        "lang_share.chars": float(TOTAL),
    })
    assert mixed["text"] == MIXED  # whole-document prediction and text unchanged
    assert (mixed["lang"], mixed["lang_score"]) == (predictions["mixed"][0], pytest.approx(predictions["mixed"][1]))
    assert dict(kept["english"]["annotations"]) == pytest.approx(
        {"lang_share.en": 1.0, "lang_share.paragraphs": 2.0, "lang_share.chars": float(len(EN[0]) + len(EN[2]))}
    )
    stats = result.stats
    assert stats["languages"] == {"en": 2} and stats["dropped"] == {}
    assert (stats["mixed_documents"], stats["split_documents"]) == (1, 0)
    assert stats["paragraph_languages"] == {"en": CHARS["en"] + len(EN[0]) + len(EN[2]), "fr": len(FR), "de": len(DE)}


def test_drop_rejects_the_mixed_document_with_its_shares(spark, tmp_path: Path, inputs: Path) -> None:
    result = run(spark, inputs, tmp_path / "out", paragraphs=mixed_paragraphs("drop"))
    assert set(read_output(tmp_path / "out")) == {"english"}
    assert result.stats["dropped"] == {MIXED_REASON: {"docs": 1, "bytes": len(MIXED.encode())}}
    [detail] = result.stats["examples"][MIXED_REASON]
    share = CHARS["en"] / TOTAL
    assert detail == (
        f"id=mixed url=https://example.org/river: dominant share {share:.2f} < 0.90 "
        f"(en {share:.2f}, de {len(DE) / TOTAL:.2f}, fr {len(FR) / TOTAL:.2f})"
    )
    rejects = ds.dataset(str(tmp_path / "rejects"), format="parquet", partitioning="hive").to_table().to_pylist()
    assert [(r["id"], r["reason"], r["text"]) for r in rejects] == [("mixed", MIXED_REASON, MIXED)]
    assert result.stats["mixed_documents"] == 1 and result.stats["paragraph_languages"] == {"en": len(EN[0]) + len(EN[2])}


def test_split_makes_one_document_per_language(spark, tmp_path: Path, inputs: Path, predictions) -> None:
    result = run(spark, inputs, tmp_path / "out", keep={"en": 0.5, "de": 0.5}, paragraphs=mixed_paragraphs("split"))
    kept = read_output(tmp_path / "out")
    german_id, french_id = document_id("mixed", "de"), document_id("mixed", "fr")
    assert set(kept) == {"mixed", german_id, "english"}

    parent = kept["mixed"]
    assert parent["text"] == "\n\n".join([HEADING, *EN])
    assert parent["lang"] == "en"
    assert parent["lang_score"] == pytest.approx(sum(predictions[k][1] for k in ("en0", "en1", "en2")) / 3)
    assert dict(parent["annotations"]) == pytest.approx(
        {"ingest.bytes": 1.0, "lang_share.en": 1.0, "lang_share.paragraphs": 3.0, "lang_share.chars": float(CHARS["en"])}
    )
    assert parent["metadata"] == [("file", "river.html")]

    german = kept[german_id]
    assert (german["text"], german["lang"]) == (DE, "de")
    assert german["lang_score"] == pytest.approx(predictions["de"][1])
    assert (german["url"], german["title"], german["source"], german["fetched_at"]) == (
        "https://example.org/river", "The river", "web", WHEN)
    assert dict(german["metadata"]) == {"file": "river.html", "split_from": "mixed"}
    assert dict(german["annotations"]) == {"lang_share.de": 1.0, "lang_share.paragraphs": 1.0, "lang_share.chars": float(len(DE))}

    english = kept["english"]  # one language: untouched
    assert (english["text"], english["lang"]) == (ENGLISH, "en")
    assert english["lang_score"] == pytest.approx(predictions["english"][1])

    # The keep thresholds judge every resulting document: the French piece is not kept.
    rejects = ds.dataset(str(tmp_path / "rejects"), format="parquet", partitioning="hive").to_table().to_pylist()
    assert [(r["id"], r["reason"], r["text"], r["lang"]) for r in rejects] == [(french_id, "langid:language_not_kept", FR, "fr")]

    stats = result.stats
    assert stats["dropped"] == {"langid:language_not_kept": {"docs": 1, "bytes": 0}}  # new rows bring no input bytes
    assert stats["bytes_in"] == len(MIXED.encode()) + len(ENGLISH.encode())
    assert (stats["docs_in"], stats["docs_out"]) == (2, 3)  # 2 read; the parent's 2 split-offs made, one dropped
    assert (stats["mixed_documents"], stats["split_documents"]) == (1, 2)
    assert stats["languages"] == {"en": 2, "de": 1}
    assert stats["paragraph_languages"] == {"en": CHARS["en"] + len(EN[0]) + len(EN[2]), "de": len(DE)}


def test_disabled_adds_no_shares(spark, tmp_path: Path, inputs: Path) -> None:
    result = run(spark, inputs, tmp_path / "out")
    kept = read_output(tmp_path / "out")
    assert kept["mixed"]["annotations"] == [("ingest.bytes", 1.0)] and kept["english"]["annotations"] is None
    assert kept["mixed"]["text"] == MIXED
    assert not {"mixed_documents", "split_documents", "paragraph_languages"} & set(result.stats)
