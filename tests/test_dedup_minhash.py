"""The MinHash-LSH stage on real Spark, scored against brute-force ground truth."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.dedup_minhash import DUPLICATES_DIR, SIGNATURES_DIR, DedupMinHashConfig, DedupMinHashStage
from pipelines.errors import StageInputError
from pipelines.stage import run_stage
from tests.dedup_data import brute_force_pairs, build_dedup_corpus, from_filters_minhash
from tests.test_stages_filters import read_output, write_documents

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return build_dedup_corpus(seed=3, n_docs=600)


@pytest.fixture(scope="module")
def truth(corpus: list[dict]) -> set[tuple[str, str]]:
    return {tuple(sorted(pair)) for pair in brute_force_pairs(corpus, from_filters_minhash(), 0.8)}


def documents(corpus: list[dict]) -> list[dict]:
    return [{"id": d["id"], "text": d["text"], "fetched_at": T0 + timedelta(minutes=i)} for i, d in enumerate(corpus)]


def clusters_of(output: Path) -> dict[str, list[str]]:
    clusters: dict[str, list[str]] = {}
    for row in pq.read_table(output / DUPLICATES_DIR).to_pylist():
        clusters.setdefault(row["cluster_id"], []).append(row["id"])
    return clusters


def test_precision_and_recall_against_brute_force(spark, tmp_path: Path, corpus, truth) -> None:
    inputs = write_documents(tmp_path / "in", documents(corpus))
    result = run_stage(DedupMinHashStage(), [inputs], tmp_path / "out", DedupMinHashConfig(), lambda: spark)

    clusters = clusters_of(tmp_path / "out")
    predicted = {pair for members in clusters.values() for pair in itertools.combinations(sorted(members), 2)}
    true_docs = set(itertools.chain.from_iterable(truth))
    flagged = set(itertools.chain.from_iterable(predicted))
    doc_precision = len(true_docs & flagged) / len(flagged)
    doc_recall = len(true_docs & flagged) / len(true_docs)
    pair_recall = len(predicted & truth) / len(truth)
    print(f"{len(truth)} true pairs; documents P={doc_precision:.3f} R={doc_recall:.3f}; pair recall {pair_recall:.3f}")
    assert doc_precision >= 0.98 and doc_recall >= 0.95 and pair_recall >= 0.95

    kept = set(read_output(tmp_path / "out"))
    assert len(kept) == len(corpus) - result.stats["docs_removed"]
    for members in clusters.values():  # one survivor per cluster: the earliest fetched
        survivors = kept & set(members)
        assert survivors == {min(members, key=lambda i: (corpus_index(corpus, i), i))}
    stats = result.stats
    assert stats["lsh"] == {"bands": 14, "rows": 9, "num_perm": 128}
    assert stats["candidate_pairs"] >= stats["verified_pairs"] > 0
    assert stats["clusters"] == len(clusters)
    assert sum(int(size) * n for size, n in stats["cluster_sizes"].items()) == sum(map(len, clusters.values()))


def corpus_index(corpus: list[dict], doc_id: str) -> int:
    return next(i for i, d in enumerate(corpus) if d["id"] == doc_id)


def test_reruns_are_identical(spark, tmp_path: Path, corpus) -> None:
    inputs = write_documents(tmp_path / "in", documents(corpus[:300]))
    run_stage(DedupMinHashStage(), [inputs], tmp_path / "a", DedupMinHashConfig(), lambda: spark)
    run_stage(DedupMinHashStage(), [inputs], tmp_path / "b", DedupMinHashConfig(), lambda: spark, force=True)
    assert set(read_output(tmp_path / "a")) == set(read_output(tmp_path / "b"))
    assert sorted(map(sorted, clusters_of(tmp_path / "a").values())) == sorted(map(sorted, clusters_of(tmp_path / "b").values()))


def test_short_and_empty_texts_are_kept_not_crashed(spark, tmp_path: Path) -> None:
    docs = [
        {"id": "one-word", "text": "Hello"},
        {"id": "one-word-again", "text": "hello!"},
        {"id": "punctuation", "text": "?!... --"},
        {"id": "sentence", "text": "Tides are caused mainly by the gravitational pull of the moon."},
    ]
    inputs = write_documents(tmp_path / "in", docs)
    result = run_stage(DedupMinHashStage(), [inputs], tmp_path / "out", DedupMinHashConfig(), lambda: spark)
    # A text shorter than one shingle is one shingle of its normalized text; no shingles at all: kept.
    assert set(read_output(tmp_path / "out")) == {"one-word", "punctuation", "sentence"}
    assert result.stats["documents_without_shingles"] == 1


def test_incremental_mode_drops_what_the_reference_has(spark, tmp_path: Path, corpus, truth) -> None:
    by_id = {d["id"]: d for d in documents(corpus)}
    first_ids = sorted(by_id)[: len(by_id) // 2]
    second_ids = sorted(by_id)[len(by_id) // 2 :]
    week1 = write_documents(tmp_path / "week1", [by_id[i] for i in first_ids])
    week2 = write_documents(tmp_path / "week2", [by_id[i] for i in second_ids])
    run_stage(DedupMinHashStage(), [week1], tmp_path / "out1", DedupMinHashConfig(), lambda: spark)
    assert (tmp_path / "out1" / SIGNATURES_DIR).is_dir()
    kept1 = set(read_output(tmp_path / "out1"))

    config = DedupMinHashConfig(reference=[str(tmp_path / "out1")])
    result = run_stage(DedupMinHashStage(), [week2], tmp_path / "out2", config, lambda: spark)
    seen = {r["id"] for r in pq.read_table(tmp_path / "out2" / "_rejects").to_pylist() if r["reason"] == "dedup_minhash:seen_before"}
    expected_seen = {b for a, b in truth if a in kept1 and b in second_ids} | {a for a, b in truth if b in kept1 and a in second_ids}
    assert seen, "week 2 contains near-duplicates of week 1"
    assert len(seen & expected_seen) / len(expected_seen) >= 0.9
    assert not (set(read_output(tmp_path / "out2")) & seen)
    assert result.stats["dropped"]["dedup_minhash:seen_before"]["docs"] == len(seen)

    mismatched = DedupMinHashConfig(reference=[str(tmp_path / "out1")], num_perm=64)
    with pytest.raises(StageInputError, match="MinHash settings differ"):
        run_stage(DedupMinHashStage(), [week2], tmp_path / "out3", mismatched, lambda: spark)
    with pytest.raises(StageInputError, match="no _signatures"):
        run_stage(DedupMinHashStage(), [week2], tmp_path / "out4", DedupMinHashConfig(reference=[str(week1)]), lambda: spark)
