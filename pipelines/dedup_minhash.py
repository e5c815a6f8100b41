"""Stage ``dedup-minhash``: near-duplicate removal with MinHash-LSH, clustered in Spark.

1. Signatures (identical to ``datasketch.MinHash``) and their LSH band hashes, computed in
   Arrow batches by ``filters.minhash`` (numpy, one call per document, no loop per hash).
2. Documents sharing a band hash are candidates: each bucket links its members to the
   bucket's smallest node, so a bucket of n documents gives n-1 edges, not n²/2.
3. Optional verification: the true Jaccard similarity of the two shingle sets of every
   candidate edge; edges below the threshold are dropped.
4. Connected components of the remaining edges (``pipelines.components``, in Spark; the edge
   list never reaches the driver). One document per component is kept: the earliest
   ``fetched_at``, then the smallest ``id``.

Incremental mode: ``reference`` names earlier outputs of this stage; their stored band
hashes (``_signatures/``) join the buckets, and a new document that falls in a cluster with
a reference document is dropped as ``seen_before``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa
from pydantic import BaseModel, Field

from filters.minhash import MinHashConfig
from pipelines.components import connected_components
from pipelines.errors import StageInputError
from pipelines.schema import BYTES_IN, DOCUMENT_COLUMNS, DROP_DETAIL, DROP_REASON
from pipelines.stage import STATS_FILE, Stage

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SIGNATURES_DIR = "_signatures"
DUPLICATES_DIR = "_duplicates"
REFERENCE_PREFIX = "ref:"
# Settings that must match between a run and the references it is deduplicated against.
SIGNATURE_KEYS = (
    "num_perm", "seed", "scheme", "ngram", "char_ngram", "lowercase", "normalize_punctuation", "normalize_digits"
)


class DedupMinHashConfig(MinHashConfig):
    """Recipe section ``dedup``: MinHash/LSH settings, verification and incremental references."""

    verify: bool = Field(True, description="check the true Jaccard of every candidate pair")
    # Verification throws false candidates away, so the LSH bands favour recall: 14 bands × 9
    # rows at 128 permutations make a pair at Jaccard 0.8 a candidate 87% of the time (9 × 13,
    # the unweighted optimum, only 40%).
    false_positive_weight: float = Field(0.1, ge=0.0)
    false_negative_weight: float = Field(0.9, ge=0.0)
    reference: list[str] = Field(
        default_factory=list, description="earlier dedup-minhash outputs to deduplicate against"
    )



def _band_hash_rows(settings: dict[str, Any], bands: int, rows: int):  # type: ignore[no-untyped-def]
    def compute(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from filters.minhash import MinHashConfig, MinHasher, band_hash_matrix

        hasher = MinHasher(MinHashConfig(**{k: v for k, v in settings.items() if k in MinHashConfig.model_fields}))
        for batch in batches:
            ids = batch.column("id").to_pylist()
            matrix, valid = hasher.signature_matrix(batch.column("text").to_pylist(), batch.column("lang").to_pylist())
            keys = band_hash_matrix(matrix, bands, rows).tolist()
            hashes = [row if ok else None for row, ok in zip(keys, valid.tolist())]
            yield pa.RecordBatch.from_pydict(
                {"node": ids, "band_hashes": hashes},
                schema=pa.schema([("node", pa.string()), ("band_hashes", pa.list_(pa.int64()))]),
            )

    return compute


def _verify_pairs(settings: dict[str, Any]):  # type: ignore[no-untyped-def]
    def compute(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from filters.minhash import MinHashConfig, jaccard, shingles

        config = MinHashConfig(**{k: v for k, v in settings.items() if k in MinHashConfig.model_fields})
        for batch in batches:
            scores = [
                jaccard(shingles(ta or "", la, config), shingles(tb or "", lb, config))
                for ta, la, tb, lb in zip(
                    batch.column("text_a").to_pylist(),
                    batch.column("lang_a").to_pylist(),
                    batch.column("text_b").to_pylist(),
                    batch.column("lang_b").to_pylist(),
                )
            ]
            yield pa.RecordBatch.from_pydict(
                {"src": batch.column("src"), "dst": batch.column("dst"), "jaccard": pa.array(scores, pa.float64())}
            )

    return compute


class DedupMinHashStage(Stage):
    name = "dedup-minhash"
    section = "dedup"
    summary = "MinHash-LSH near-duplicate removal, clusters by connected components in Spark"
    Config = DedupMinHashConfig
    code_modules = ("filters.minhash", "filters.text", "pipelines.components")

    def _reference_nodes(self, spark: "SparkSession", config: DedupMinHashConfig) -> tuple["DataFrame", "DataFrame"] | None:
        """(band hashes, node texts) of the reference corpora, nodes prefixed ``ref:``."""
        from pyspark.sql import functions as F

        if not config.reference:
            return None
        hashes, texts = [], []
        for ref in config.reference:
            root = Path(ref)
            signatures = root / SIGNATURES_DIR
            if not signatures.is_dir():
                raise StageInputError(f"{root}: no {SIGNATURES_DIR}/ here; a reference must be a dedup-minhash output")
            try:
                ref_stats = json.loads((root / STATS_FILE).read_text())
                ref_config, ref_lsh = ref_stats["config"], ref_stats["lsh"]
            except (OSError, ValueError, KeyError) as exc:
                raise StageInputError(f"{root}: cannot read {STATS_FILE} of the reference ({exc})") from exc
            mismatched = [k for k in SIGNATURE_KEYS if ref_config.get(k) != getattr(config, k)]
            if (ref_lsh.get("bands"), ref_lsh.get("rows")) != config.lsh_params():
                mismatched.append("bands/rows")
            if mismatched:
                raise StageInputError(f"{root}: its MinHash settings differ from this run's ({', '.join(mismatched)})")
            hashes.append(
                spark.read.parquet(str(signatures)).select(
                    F.concat(F.lit(REFERENCE_PREFIX), "id").alias("node"), "band_hashes"
                )
            )
            texts.append(
                self.read_documents(spark, [root]).select(
                    F.concat(F.lit(REFERENCE_PREFIX), "id").alias("node"), "text", "lang"
                )
            )
        return _union_all(hashes), _union_all(texts)

    def transform(self, spark: "SparkSession", inputs: list[Path], config: BaseModel) -> "DataFrame":
        from pyspark import StorageLevel
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        assert isinstance(config, DedupMinHashConfig)
        bands, rows = config.lsh_params()
        settings = config.model_dump()
        documents = self.read_documents(spark, inputs).persist(StorageLevel.MEMORY_AND_DISK)
        self._cached = [documents]

        signatures = documents.select("id", "text", "lang").mapInArrow(
            _band_hash_rows(settings, bands, rows), "node string, band_hashes array<bigint>"
        )
        node_texts = documents.select(F.col("id").alias("node"), "text", "lang")
        reference = self._reference_nodes(spark, config)
        all_signatures = signatures if reference is None else signatures.unionByName(reference[0])
        if reference is not None:
            node_texts = node_texts.unionByName(reference[1])
        all_signatures = all_signatures.persist(StorageLevel.MEMORY_AND_DISK)
        self._cached.append(all_signatures)

        buckets = all_signatures.where(F.col("band_hashes").isNotNull()).select(
            "node", F.posexplode("band_hashes").alias("band", "bucket")
        )
        bucket_min = Window.partitionBy("band", "bucket")
        edges = (
            buckets.withColumn("dst", F.min("node").over(bucket_min))
            .where(F.col("node") != F.col("dst"))
            .select(F.col("node").alias("src"), "dst")
            .distinct()
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        self._candidate_edges = edges
        self._cached.append(edges)
        if config.verify:
            a = node_texts.select(F.col("node").alias("src"), F.col("text").alias("text_a"), F.col("lang").alias("lang_a"))
            b = node_texts.select(F.col("node").alias("dst"), F.col("text").alias("text_b"), F.col("lang").alias("lang_b"))
            scored = edges.join(a, "src").join(b, "dst").select("src", "dst", "text_a", "lang_a", "text_b", "lang_b")
            verified = scored.mapInArrow(_verify_pairs(settings), "src string, dst string, jaccard double")
            edges = verified.where(F.col("jaccard") >= config.threshold).select("src", "dst").persist(
                StorageLevel.MEMORY_AND_DISK
            )
        self._verified_edges = edges
        self._cached.append(edges)

        components = connected_components(edges)
        node_info = documents.select(F.col("id").alias("node"), "fetched_at", F.lit(False).alias("is_ref"))
        if reference is not None:
            node_info = node_info.unionByName(
                reference[0].select("node", F.lit(None).cast("timestamp").alias("fetched_at"), F.lit(True).alias("is_ref"))
            )
        choose = Window.partitionBy("component").orderBy(
            F.col("is_ref").desc(), F.col("fetched_at").asc_nulls_last(), F.col("node").asc()
        )
        clusters = (
            components.withColumnRenamed("id", "node")
            .join(node_info, "node")
            .withColumn("representative", F.first("node").over(choose.rowsBetween(Window.unboundedPreceding, Window.currentRow)))
            .withColumn("size", F.count(F.lit(1)).over(Window.partitionBy("component")))
            .select("node", "component", "representative", "size", "is_ref")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        self._clusters = clusters
        self._signatures = signatures
        self._cached.append(clusters)

        member = clusters.where(~F.col("is_ref")).select(
            F.col("node").alias("id"), "component", "representative"
        )
        joined = documents.join(member, "id", "left")
        from_reference = F.col("representative").startswith(REFERENCE_PREFIX)
        dropped = F.col("representative").isNotNull() & (F.col("representative") != F.col("id"))
        reason = F.when(dropped & from_reference, F.lit("dedup_minhash:seen_before")).when(
            dropped, F.lit("dedup_minhash:near_duplicate")
        )
        detail = F.when(
            dropped,
            F.concat(F.lit("id="), F.col("id"), F.lit(" near-duplicate of "), F.col("representative")),
        )
        return joined.select(
            *DOCUMENT_COLUMNS,
            reason.alias(DROP_REASON),
            detail.alias(DROP_DETAIL),
            F.octet_length("text").cast("long").alias(BYTES_IN),
        )

    def summarize(self, working: Any, stats: dict[str, Any], config: BaseModel) -> dict[str, Any]:
        from pyspark.sql import functions as F

        assert isinstance(config, DedupMinHashConfig)
        sizes = (
            self._clusters.select("component", "size").distinct().groupBy("size").count().orderBy("size").collect()
        )
        return {
            "lsh": {"bands": config.lsh_params()[0], "rows": config.lsh_params()[1], "num_perm": config.num_perm},
            "candidate_pairs": self._candidate_edges.count(),
            "verified_pairs": self._verified_edges.count() if config.verify else None,
            "clusters": sum(row["count"] for row in sizes),
            "cluster_sizes": {str(row["size"]): row["count"] for row in sizes},
            "docs_removed": sum(v["docs"] for r, v in stats["dropped"].items() if r.startswith("dedup_minhash:")),
            "documents_without_shingles": self._signatures.where(F.col("band_hashes").isNull()).count(),
        }

    def release(self) -> None:
        for frame in getattr(self, "_cached", []):
            frame.unpersist()

    def write_extras(self, output: Path, config: BaseModel) -> None:
        from pyspark.sql import functions as F

        self._clusters.where(~F.col("is_ref")).select(
            F.col("node").alias("id"),
            F.col("component").alias("cluster_id"),
            F.regexp_replace("representative", f"^{REFERENCE_PREFIX}", "").alias("representative"),
            F.col("representative").startswith(REFERENCE_PREFIX).alias("representative_in_reference"),
        ).coalesce(1).write.parquet(str(output / DUPLICATES_DIR))
        kept_ids = self._clusters.where(F.col("node") != F.col("representative")).select(F.col("node").alias("id"))
        self._signatures.withColumnRenamed("node", "id").join(kept_ids, "id", "left_anti").write.parquet(
            str(output / SIGNATURES_DIR)
        )


def _union_all(frames: list["DataFrame"]) -> "DataFrame":
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result
