"""The langid, quality and pii Spark stages: equal to the filters run in plain Python."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from filters.langid import LanguageIdentifier, load_model, normalize_for_langid
from filters.pii import PiiScrubber
from filters.quality import FILTERS, FilterChain
from pipelines.langid import LangIdConfig, LangIdStage
from pipelines.pii import PiiStage, PiiStageConfig
from pipelines.quality import QualityConfig, QualityStage
from pipelines.schema import DOCUMENT_SCHEMA, validate_dataset
from pipelines.stage import run_stage
from tests import test_filters_quality as texts
from tests.langid_data import build_langid_set


def write_documents(path: Path, docs: list[dict]) -> Path:
    """A document dataset (one Parquet file) from dicts with at least id and text."""
    path.mkdir(parents=True)
    rows = [
        {
            "url": None,
            "title": None,
            "source": "tests",
            "fetched_at": datetime(2024, 5, 1, tzinfo=timezone.utc),
            "lang": None,
            "lang_score": None,
            "annotations": None,
            "metadata": None,
            **doc,
        }
        for doc in docs
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), path / "part-0.parquet")
    return path


def read_output(path: Path) -> dict[str, dict]:
    table = ds.dataset([str(f) for f in validate_dataset(path)], format="parquet").to_table()
    return {row["id"]: row for row in table.to_pylist()}


def run(spark, stage, inputs, out, config, **kwargs):
    return run_stage(stage, inputs, out, config, lambda: spark, **kwargs)


QUALITY_DOCS = [
    ("article", texts.ARTICLE, "en"),
    ("spam", texts.SPAM, "en"),
    ("menu", texts.MENU, "en"),
    ("lorem", texts.LOREM, "en"),
    ("js", texts.JS_PAGE, "en"),
    ("code", texts.PY_CODE, "en"),
    ("caps", texts.ALL_CAPS, "en"),
    ("chinese", texts.CHINESE, "zh"),
    ("japanese", texts.JAPANESE, "ja"),
    ("german", texts.GERMAN, "de"),
    ("web", texts.WEB_PAGE, "en"),
]


def test_quality_stage_equals_plain_python(spark, tmp_path: Path) -> None:
    inputs = write_documents(tmp_path / "in", [{"id": i, "text": t, "lang": lang} for i, t, lang in QUALITY_DOCS])
    result = run(spark, QualityStage(), [inputs], tmp_path / "out", QualityConfig(), keep_rejects=tmp_path / "rej")

    chain = FilterChain([cls() for cls in FILTERS.values()])
    expected = {i: chain(t, lang) for i, t, lang in QUALITY_DOCS}
    kept = read_output(tmp_path / "out")
    assert set(kept) == {i for i, v in expected.items() if v.keep}
    assert {"article", "chinese", "japanese"} <= set(kept)  # CJK survives the word-based rules
    for doc_id, row in kept.items():
        verdict = expected[doc_id]
        assert row["text"] == (verdict.text if verdict.text is not None else dict((d[0], d[1]) for d in QUALITY_DOCS)[doc_id])
        assert dict(row["annotations"]) == pytest.approx(verdict.signals)

    stats = result.stats
    dropped_expected: dict[str, int] = {}
    for verdict in expected.values():
        if verdict.reason:
            dropped_expected[verdict.reason] = dropped_expected.get(verdict.reason, 0) + 1
    assert {r: v["docs"] for r, v in stats["dropped"].items()} == dropped_expected
    assert [f["filter"] for f in stats["filters"]] == list(FILTERS)  # drops per filter, in chain order
    assert sum(f["dropped"] for f in stats["filters"]) == len(QUALITY_DOCS) - len(kept)

    rejects = ds.dataset(str(tmp_path / "rej"), format="parquet", partitioning="hive").to_table().to_pylist()
    assert {r["id"] for r in rejects} == {i for i, v in expected.items() if not v.keep}
    assert all(r["filter"] == r["reason"].split(":")[0] and r["text"] for r in rejects)  # whole documents


def test_quality_thresholds_are_recipe_keys(spark, tmp_path: Path) -> None:
    inputs = write_documents(tmp_path / "in", [{"id": "article", "text": texts.ARTICLE, "lang": "en"}])
    config = QualityConfig(**{"gopher_quality": {"min_words": 100_000 - 1, "max_words": 100_000}})
    result = run(spark, QualityStage(), [inputs], tmp_path / "out", config)
    assert result.stats["dropped"] == {"gopher_quality:word_count": {"docs": 1, "bytes": len(texts.ARTICLE.encode())}}
    assert "gopher_quality:word_count = " in result.stats["examples"]["gopher_quality:word_count"][0]


@pytest.fixture(scope="module")
def langid_set() -> list[dict]:
    data = build_langid_set(per_language=25, seed=1)
    if len({d["label"] for d in data}) < 8:
        pytest.skip("fewer than 8 languages of gettext catalogues under /usr/share/locale")
    return data


def test_langid_stage_equals_the_model_used_directly(spark, tmp_path: Path, langid_set: list[dict]) -> None:
    docs = [{"id": f"d{i}", "text": d["text"]} for i, d in enumerate(langid_set)]
    inputs = write_documents(tmp_path / "in", docs)
    result = run(spark, LangIdStage(), [inputs], tmp_path / "out", LangIdConfig())
    out = read_output(tmp_path / "out")
    assert len(out) == len(docs)

    model = load_model()
    labels, scores = model.predict([normalize_for_langid(d["text"]) for d in docs], k=1)
    correct_stage = correct_direct = 0
    for doc, gold, label, score in zip(docs, langid_set, labels, scores):
        row = out[doc["id"]]
        direct = label[0].removeprefix("__label__")
        assert row["lang"] == direct
        assert row["lang_score"] == pytest.approx(min(float(score[0]), 1.0), abs=1e-6)  # scores clipped to 1
        correct_stage += row["lang"] == gold["label"]
        correct_direct += direct == gold["label"]
    assert correct_stage == correct_direct
    accuracy = correct_stage / len(docs)
    print(f"langid accuracy on {len(docs)} gettext strings, {len({d['label'] for d in langid_set})} languages: {accuracy:.3f}")
    assert accuracy > 0.8
    assert sum(result.stats["languages"].values()) == len(docs)


def test_langid_keep_thresholds_and_language_partitions(spark, tmp_path: Path, langid_set: list[dict]) -> None:
    docs = [{"id": f"d{i}", "text": d["text"]} for i, d in enumerate(langid_set)]
    inputs = write_documents(tmp_path / "in", docs)
    predictions = LanguageIdentifier().predict([d["text"] for d in docs])
    config = LangIdConfig(keep={"de": 0.5, "fr": 0.9}, partition_by_language=True)
    result = run(spark, LangIdStage(), [inputs], tmp_path / "out", config)

    expected_kept = {
        d["id"] for d, (lang, score) in zip(docs, predictions) if lang in config.keep and score >= config.keep[lang]
    }
    assert {p.name for p in (tmp_path / "out").iterdir() if p.is_dir() and not p.name.startswith("_")} <= {
        "lang=de",
        "lang=fr",
    }
    table = ds.dataset(str(tmp_path / "out"), format="parquet", partitioning="hive").to_table()
    assert set(table.column("id").to_pylist()) == expected_kept
    below = sum(1 for lang, score in predictions if lang in config.keep and score < config.keep[lang])
    assert result.stats["dropped"].get("langid:score_below_threshold", {"docs": 0})["docs"] == below
    assert result.stats["dropped"]["langid:language_not_kept"]["docs"] == len(docs) - len(expected_kept) - below

    # The next stage reads the partitioned output and gets `lang` back from the directory names.
    after = run(spark, PiiStage(), [tmp_path / "out"], tmp_path / "pii", PiiStageConfig())
    assert after.stats["docs_in"] == len(expected_kept)
    assert {row["lang"] for row in read_output(tmp_path / "pii").values()} <= {"de", "fr"}


def test_pii_stage_equals_plain_python_and_counts(spark, tmp_path: Path) -> None:
    docs = [
        {"id": "a", "text": "Write to jane.doe@example.com or call +1 415 555 0134 for the release notes of version 1.2.3.4."},
        {"id": "b", "text": "The server at 203.0.113.7 answered; the build on 2024-01-15 used Python 3.11.2."},
        {"id": "c", "text": "Nothing personal in here at all, just a sentence about rivers and tides."},
    ]
    inputs = write_documents(tmp_path / "in", docs)
    result = run(spark, PiiStage(), [inputs], tmp_path / "out", PiiStageConfig())
    out = read_output(tmp_path / "out")
    scrubber = PiiScrubber()
    totals: dict[str, int] = {}
    for doc in docs:
        text, counts = scrubber.scrub(doc["text"])
        assert out[doc["id"]]["text"] == text
        for kind, n in counts.items():
            if n:
                totals[kind] = totals.get(kind, 0) + n
    assert "<EMAIL>" in out["a"]["text"] and "1.2.3.4" in out["a"]["text"] and "2024-01-15" in out["b"]["text"]
    assert {k: v["replaced"] for k, v in result.stats["pii"].items()} == totals
    assert dict(out["a"]["annotations"])["pii.email"] == 1.0


def test_bad_texts_are_dropped_with_a_reason_not_a_crash(spark, tmp_path: Path) -> None:
    giant = "word " * (2 * 1024 * 1024 + 10)  # > 10 MiB
    docs = [
        {"id": "empty", "text": ""},
        {"id": "blank", "text": " \n\t  \n"},
        {"id": "binary", "text": "\x00\x01\x02\x03PK\x03\x04" + "".join(chr(c) for c in range(1, 32)) * 40},
        {"id": "giant", "text": giant},
        {"id": "good", "text": texts.ARTICLE},
    ]
    inputs = write_documents(tmp_path / "in", docs)
    for stage, config in ((LangIdStage(), LangIdConfig()), (QualityStage(), QualityConfig()), (PiiStage(), PiiStageConfig())):
        out = tmp_path / stage.name
        result = run(spark, stage, [inputs], out, config)
        dropped = {r: v["docs"] for r, v in result.stats["dropped"].items()}
        assert dropped == {"empty_text": 2, "binary_content": 1, "doc_too_large": 1}, stage.name
        assert set(read_output(out)) == {"good"}
        assert any("id=giant" in d for d in result.stats["examples"]["doc_too_large"])
    stats = json.loads((tmp_path / "quality" / "_stats.json").read_text())
    assert stats["docs_in"] == len(docs)


def test_missing_langid_model_is_one_clear_error(spark, tmp_path: Path) -> None:
    from pipelines.errors import StageInputError

    inputs = write_documents(tmp_path / "in", [{"id": "a", "text": texts.ARTICLE}])
    with pytest.raises(StageInputError, match=r"langid: .*no-such-model\.ftz"):
        run(spark, LangIdStage(), [inputs], tmp_path / "out", LangIdConfig(model_path=str(tmp_path / "no-such-model.ftz")))
    assert not (tmp_path / "out").exists()


def test_one_row_group_input_is_spread_over_every_core(spark, tmp_path: Path) -> None:
    from pipelines.docstage import spread_over_cores

    inputs = write_documents(tmp_path / "in", [{"id": f"d{i}", "text": f"text number {i}"} for i in range(40)])
    assert pq.ParquetFile(next(inputs.glob("*.parquet"))).metadata.num_row_groups == 1
    documents = LangIdStage().read_documents(spark, [inputs])
    spread = spread_over_cores(spark, documents, [inputs])
    sizes = spread.rdd.glom().map(len).collect()
    cores = spark.sparkContext.defaultParallelism
    assert len(sizes) == cores and sum(sizes) == 40
    assert all(size > 0 for size in sizes), sizes


def test_columns_a_stage_does_not_write_pass_through_and_stats_are_exact(spark, tmp_path: Path) -> None:
    when = datetime(2023, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    docs = [
        {
            "id": "keep",
            "text": texts.ARTICLE,
            "url": "https://example.org/a",
            "title": "An article",
            "fetched_at": when,
            "annotations": [("ingest.bytes", 12.0)],
            "metadata": [("crawl", "round-1")],
        },
        {"id": "empty", "text": "   ", "metadata": [("crawl", "round-2")]},
        {"id": "german", "text": texts.GERMAN},
    ]
    inputs = write_documents(tmp_path / "in", docs)
    result = run(spark, LangIdStage(), [inputs], tmp_path / "out", LangIdConfig(keep={"en": 0.5}))
    kept = read_output(tmp_path / "out")
    assert set(kept) == {"keep"}
    row = kept["keep"]
    assert (row["url"], row["title"], row["fetched_at"]) == ("https://example.org/a", "An article", when)
    assert row["annotations"] == [("ingest.bytes", 12.0)] and row["metadata"] == [("crawl", "round-1")]
    assert row["text"] == texts.ARTICLE and row["lang"] == "en"

    german_bytes = len(texts.GERMAN.encode())
    stats = result.stats
    assert stats["docs_in"] == 3 and stats["docs_out"] == 1
    assert stats["bytes_in"] == len(texts.ARTICLE.encode()) + 3 + german_bytes
    assert stats["bytes_out"] == len(texts.ARTICLE.encode())
    assert stats["dropped"] == {
        "empty_text": {"docs": 1, "bytes": 3},
        "langid:language_not_kept": {"docs": 1, "bytes": german_bytes},
    }
    rejects = pq.read_table(tmp_path / "out" / "_rejects").to_pylist()
    assert {(r["id"], r["bytes_in"]) for r in rejects} == {("empty", 3), ("german", german_bytes)}
